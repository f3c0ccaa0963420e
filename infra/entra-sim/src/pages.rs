//! Collection pages for plain listings (`/users`, `/groups`, `/members`,
//! `/transitiveMembers`), written straight from the ordered maps: a page is a
//! range scan from the cursor, never a scan or sort of the whole tenant.

use std::ops::Bound;

use serde::Serialize;
use uuid::Uuid;

use crate::directory::Tenant;
use crate::model::MemberKind;
use crate::props::{ContactView, GroupView, Prop, Select, UserView, bit};
use crate::token::{Cursor, PageToken, Query, TokenSealer};

/// Writes `{"@odata.context": ..., "value": [...], "@odata.nextLink": ...}`
/// item by item.
pub(crate) struct PageWriter {
    buf: Vec<u8>,
    empty: bool,
}

impl PageWriter {
    pub fn new(context: &str) -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(b"{\"@odata.context\":");
        serde_json::to_writer(&mut buf, context).expect("writing to a Vec cannot fail");
        buf.extend_from_slice(b",\"value\":[");
        PageWriter { buf, empty: true }
    }

    pub fn push(&mut self, item: &impl Serialize) {
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        serde_json::to_writer(&mut self.buf, item).expect("writing to a Vec cannot fail");
    }

    /// Closes the page with an optional `@odata.nextLink` / `@odata.deltaLink`.
    pub fn finish(mut self, link: Option<(&str, &str)>) -> Vec<u8> {
        self.buf.push(b']');
        if let Some((name, url)) = link {
            self.buf.push(b',');
            serde_json::to_writer(&mut self.buf, name).expect("writing to a Vec cannot fail");
            self.buf.push(b':');
            serde_json::to_writer(&mut self.buf, url).expect("writing to a Vec cannot fail");
        }
        self.buf.push(b'}');
        self.buf
    }
}

/// Which object types the caller may read in full. Graph returns objects of
/// a type the app has no permission for in a directoryObject collection, but
/// with only `@odata.type` and `id`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Readable {
    pub users: bool,
    pub groups: bool,
    pub contacts: bool,
}

/// What page rendering needs besides the tenant and the token.
pub(crate) struct PageCtx<'a> {
    /// The Graph root, e.g. `http://127.0.0.1:PORT/graph`.
    pub base: &'a str,
    pub sealer: &'a TokenSealer,
    pub readable: Readable,
}

impl PageCtx<'_> {
    pub fn context(&self, entity_set: &str, select: Select) -> String {
        format!(
            "{}/v1.0/$metadata#{entity_set}{}",
            self.base,
            select.context_suffix()
        )
    }

    /// A list `nextLink`. Like Graph's, it repeats `$select` and `$top` (which
    /// also keeps their resource-unit discount on later pages) next to the
    /// `$skiptoken` that carries the state.
    fn list_link(&self, path: &str, token: &PageToken, top_given: bool) -> String {
        let mut url = format!("{}/v1.0/{path}?", self.base);
        if token.select.explicit {
            url.push_str("$select=");
            url.push_str(&select_names(token.select));
            url.push('&');
        }
        if top_given {
            url.push_str(&format!("$top={}&", token.page_size));
        }
        url.push_str("$skiptoken=");
        url.push_str(&self.sealer.seal(token));
        url
    }
}

/// The selected names, comma-separated, as they would be written in `$select`.
pub(crate) fn select_names(select: Select) -> String {
    let suffix = select.context_suffix();
    suffix
        .trim_start_matches('(')
        .trim_end_matches(')')
        .to_string()
}

fn start_bound(cursor: Cursor) -> Bound<Uuid> {
    match cursor.start {
        Some(id) => Bound::Included(id),
        None => Bound::Unbounded,
    }
}

/// A page of `/users` (active users only; the recycle bin is not listed).
pub(crate) fn users_page(
    tenant: &Tenant,
    token: PageToken,
    top_given: bool,
    ctx: &PageCtx,
) -> Vec<u8> {
    let mask = token.select.mask_for(MemberKind::User);
    let mut page = PageWriter::new(&ctx.context("users", token.select));
    let mut range = tenant
        .dir
        .users
        .range((start_bound(token.cursor), Bound::Unbounded));
    for (_, user) in range.by_ref().take(token.page_size as usize) {
        page.push(&UserView {
            user,
            mask,
            typed: false,
        });
    }
    let next = range.next().map(|(id, _)| *id);
    finish_list(page, "users", token, next, top_given, ctx)
}

/// A page of `/groups`.
pub(crate) fn groups_page(
    tenant: &Tenant,
    token: PageToken,
    top_given: bool,
    ctx: &PageCtx,
) -> Vec<u8> {
    let mask = token.select.mask_for(MemberKind::Group);
    let mut page = PageWriter::new(&ctx.context("groups", token.select));
    let mut range = tenant
        .dir
        .groups
        .range((start_bound(token.cursor), Bound::Unbounded));
    for (_, entry) in range.by_ref().take(token.page_size as usize) {
        page.push(&GroupView {
            group: &entry.group,
            mask,
            typed: false,
            members_delta: None,
        });
    }
    let next = range.next().map(|(id, _)| *id);
    finish_list(page, "groups", token, next, top_given, ctx)
}

/// A page of `/groups/{id}/members` or `/transitiveMembers`. The caller has
/// checked the group exists.
pub(crate) fn members_page(
    tenant: &Tenant,
    token: PageToken,
    top_given: bool,
    ctx: &PageCtx,
) -> Vec<u8> {
    let Query::Members { group, transitive } = token.query else {
        unreachable!("members_page is called with a members token");
    };
    let mut page = PageWriter::new(&ctx.context("directoryObjects", token.select));
    let take = token.page_size as usize;
    let next = if transitive {
        let all = tenant.dir.transitive_members(group);
        let from = match token.cursor.start {
            Some(start) => all.partition_point(|(id, _)| *id < start),
            None => 0,
        };
        for &(id, kind) in all.iter().skip(from).take(take) {
            push_member(&mut page, tenant, id, kind, token.select, ctx.readable);
        }
        all.get(from + take).map(|(id, _)| *id)
    } else {
        let Some(entry) = tenant.dir.groups.get(&group) else {
            return page.finish(None);
        };
        let mut range = entry
            .members
            .range((start_bound(token.cursor), Bound::Unbounded));
        for (&id, &kind) in range.by_ref().take(take) {
            push_member(&mut page, tenant, id, kind, token.select, ctx.readable);
        }
        range.next().map(|(id, _)| *id)
    };
    let path = format!(
        "groups/{group}/{}",
        if transitive {
            "transitiveMembers"
        } else {
            "members"
        }
    );
    finish_list(page, &path, token, next, top_given, ctx)
}

/// Writes a member with `@odata.type`, limited to its id when the caller may
/// not read that type.
pub(crate) fn push_member(
    page: &mut PageWriter,
    tenant: &Tenant,
    id: Uuid,
    kind: MemberKind,
    select: Select,
    readable: Readable,
) {
    let allowed = match kind {
        MemberKind::User => readable.users,
        MemberKind::Group => readable.groups,
        MemberKind::Contact => readable.contacts,
    };
    let mask = if allowed {
        select.mask_for(kind)
    } else {
        bit(Prop::Id)
    };
    match kind {
        MemberKind::User => {
            if let Some(user) = tenant.dir.users.get(&id) {
                page.push(&UserView {
                    user,
                    mask,
                    typed: true,
                });
            }
        }
        MemberKind::Group => {
            if let Some(entry) = tenant.dir.groups.get(&id) {
                page.push(&GroupView {
                    group: &entry.group,
                    mask,
                    typed: true,
                    members_delta: None,
                });
            }
        }
        MemberKind::Contact => {
            if let Some(contact) = tenant.dir.contacts.get(&id) {
                page.push(&ContactView {
                    contact,
                    mask,
                    typed: true,
                });
            }
        }
    }
}

fn finish_list(
    page: PageWriter,
    path: &str,
    token: PageToken,
    next: Option<Uuid>,
    top_given: bool,
    ctx: &PageCtx,
) -> Vec<u8> {
    match next {
        Some(start) => {
            let next_token = PageToken {
                cursor: Cursor {
                    start: Some(start),
                    member_after: None,
                },
                ..token
            };
            let link = ctx.list_link(path, &next_token, top_given);
            page.finish(Some(("@odata.nextLink", &link)))
        }
        None => page.finish(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_produces_valid_json() {
        let mut page = PageWriter::new("ctx");
        page.push(&serde_json::json!({"id": "a"}));
        page.push(&serde_json::json!({"id": "b"}));
        let body = page.finish(Some(("@odata.nextLink", "http://x/next")));
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["value"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["@odata.nextLink"], "http://x/next");
        let empty: serde_json::Value =
            serde_json::from_slice(&PageWriter::new("c").finish(None)).unwrap();
        assert_eq!(empty["value"], serde_json::json!([]));
    }
}
