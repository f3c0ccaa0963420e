//! `users/delta` and `groups/delta` pages.
//!
//! A round is identified by its start and end in the tenant's change log.
//! The initial round pages through the current state (ordered maps, ranged
//! from the cursor) and ends with a deltaLink at the sequence number the round
//! started at, so anything that changes while a client pages is reported again
//! in the next round: a replay, which Graph also allows, never a loss. A later
//! round pages through the objects touched in its log window, computed once
//! per round and cached.
//!
//! Objects are written as Graph's delta docs describe: a property never set
//! is left out (one set to null since is written as null), and with
//! `Prefer: return=minimal` a later round writes only the properties that
//! changed in its window (objects created or restored in it: all).
//!
//! Groups carry `members@delta`. One page holds at most
//! [`MEMBER_REFS_PER_PAGE`] member entries; a group with more is split, the
//! page ending with part of its members and the next page repeating the group
//! with the rest, as Graph does with large groups.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use uuid::Uuid;

use crate::directory::{Change, Directory, ObjChange, Tenant};
use crate::model::MemberKind;
use crate::pages::{PageCtx, PageWriter};
use crate::props::{
    GroupView, MemberRef, Prop, RemovedView, Select, UserView, bit, set_group_props, set_user_props,
};
use crate::token::{Cursor, PageToken, Query, Round};

/// Largest number of `members@delta` entries in one page.
pub const MEMBER_REFS_PER_PAGE: usize = 5_000;

/// Default delta page size when the client sends no
/// `Prefer: odata.maxpagesize`.
pub const DEFAULT_DELTA_PAGE_SIZE: u32 = 100;

/// A group touched in a round: the properties that changed (see
/// [`UserChange`]) and its membership changes sorted by member.
pub(crate) struct GroupChange {
    pub id: Uuid,
    pub props: u64,
    pub members: Vec<MemberRef>,
}

/// A user touched in a round and the properties that changed in it
/// ([`EVERY_PROP`] for one created or restored).
pub(crate) struct UserChange {
    pub id: Uuid,
    pub props: u64,
}

/// Every property changed: an object new to the round.
const EVERY_PROP: u64 = u64::MAX;

enum ChangeSet {
    Users(Vec<UserChange>),
    Groups(Vec<GroupChange>),
}

/// How a page writes objects: which of the selected properties.
#[derive(Clone, Copy)]
pub(crate) struct Writing {
    /// The selection's properties for the page's object type.
    mask: u64,
    /// `Prefer: return=minimal` on a later round: only changed properties.
    minimal: bool,
}

impl Writing {
    /// The properties written for an object holding `held` (see
    /// [`Directory::delta_props`]) of which `changed` changed in the round.
    fn props(self, held: u64, changed: u64) -> u64 {
        let mut props = self.mask & held;
        if self.minimal {
            props &= changed | bit(Prop::Id);
        }
        props
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    groups: bool,
    mask: u64,
    explicit: bool,
    members: bool,
    since: u64,
    until: u64,
}

/// Change sets of recent rounds. A round's set depends only on the log
/// window, which never changes, so entries stay valid; the cache is bounded.
#[derive(Default)]
pub(crate) struct DeltaCache {
    sets: HashMap<CacheKey, Arc<ChangeSet>>,
}

const CACHE_ROUNDS: usize = 16;

fn change_set(
    dir: &Directory,
    groups: bool,
    select: Select,
    since: u64,
    until: u64,
) -> Arc<ChangeSet> {
    let key = CacheKey {
        groups,
        mask: select.mask,
        explicit: select.explicit,
        members: select.members,
        since,
        until,
    };
    let mut cache = dir.delta_cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = cache.sets.get(&key) {
        return Arc::clone(set);
    }
    let window = &dir.log[since as usize..until as usize];
    let set = Arc::new(if groups {
        ChangeSet::Groups(group_changes(dir, window, select))
    } else {
        ChangeSet::Users(user_changes(window, select))
    });
    if cache.sets.len() >= CACHE_ROUNDS {
        cache.sets.clear();
    }
    cache.sets.insert(key, Arc::clone(&set));
    set
}

fn tracked(what: ObjChange, select: Select) -> bool {
    match what {
        ObjChange::Props(changed) => select.tracks(changed),
        ObjChange::Created | ObjChange::Removed | ObjChange::Restored => true,
    }
}

/// The properties a log entry changed.
fn changed_by(what: ObjChange) -> u64 {
    match what {
        ObjChange::Props(changed) => changed,
        ObjChange::Created | ObjChange::Removed | ObjChange::Restored => EVERY_PROP,
    }
}

fn user_changes(window: &[Change], select: Select) -> Vec<UserChange> {
    let mut touched: BTreeMap<Uuid, u64> = BTreeMap::new();
    for change in window {
        if let Change::User { id, what } = *change
            && tracked(what, select)
        {
            *touched.entry(id).or_default() |= changed_by(what);
        }
    }
    touched
        .into_iter()
        .map(|(id, props)| UserChange { id, props })
        .collect()
}

fn group_changes(dir: &Directory, window: &[Change], select: Select) -> Vec<GroupChange> {
    let mut touched: BTreeMap<Uuid, (u64, BTreeMap<Uuid, MemberKind>)> = BTreeMap::new();
    for change in window {
        match *change {
            Change::Group { id, what } if tracked(what, select) => {
                touched.entry(id).or_default().0 |= changed_by(what);
            }
            Change::Member {
                group,
                member,
                kind,
            } if select.includes_members() => {
                touched.entry(group).or_default().1.insert(member, kind);
            }
            _ => {}
        }
    }
    touched
        .into_iter()
        .map(|(id, (props, members))| {
            let current = dir.groups.get(&id).map(|entry| &entry.members);
            let members = match current {
                // A removed group is reported as removed, without members.
                None => Vec::new(),
                Some(current) => members
                    .into_iter()
                    .map(|(member, kind)| MemberRef {
                        id: member,
                        kind,
                        removed: !current.contains_key(&member),
                    })
                    .collect(),
            };
            GroupChange { id, props, members }
        })
        .collect()
}

fn delta_link(ctx: &PageCtx, entity_set: &str, token: &PageToken, until: u64) -> String {
    let query = if entity_set == "users" {
        Query::UsersDeltaLink { since: until }
    } else {
        Query::GroupsDeltaLink { since: until }
    };
    let link = PageToken {
        query,
        cursor: Cursor::default(),
        ..*token
    };
    format!(
        "{}/v1.0/{entity_set}/delta?$deltatoken={}",
        ctx.base,
        ctx.sealer.seal(&link)
    )
}

fn next_link(ctx: &PageCtx, entity_set: &str, token: &PageToken, cursor: Cursor) -> String {
    let next = PageToken { cursor, ..*token };
    format!(
        "{}/v1.0/{entity_set}/delta?$skiptoken={}",
        ctx.base,
        ctx.sealer.seal(&next)
    )
}

fn round_of(token: &PageToken) -> Round {
    match token.query {
        Query::UsersDelta(round) | Query::GroupsDelta(round) => round,
        _ => unreachable!("delta pages are served for delta tokens"),
    }
}

/// A page of `users/delta` for `token` (a round in progress); `minimal`:
/// the request asked for `Prefer: return=minimal`.
pub(crate) fn users_page(
    tenant: &Tenant,
    token: PageToken,
    ctx: &PageCtx,
    minimal: bool,
) -> Vec<u8> {
    let round = round_of(&token);
    let dir = &tenant.dir;
    let writing = Writing {
        mask: token.select.mask_for(MemberKind::User),
        minimal: minimal && round.since.is_some(),
    };
    let view = |user, changed| UserView {
        user,
        mask: writing.props(dir.delta_props(user.id, set_user_props(user)), changed),
        typed: false,
    };
    let size = token.page_size as usize;
    let mut page = PageWriter::new(&ctx.context("users", token.select));
    let next = match round.since {
        None => {
            let start = token.cursor.start.map_or(Bound::Unbounded, Bound::Included);
            let mut range = dir.users.range((start, Bound::Unbounded));
            for (_, user) in range.by_ref().take(size) {
                page.push(&view(user, EVERY_PROP));
            }
            range.next().map(|(id, _)| *id)
        }
        Some(since) => {
            let set = change_set(dir, false, token.select, since, round.until);
            let ChangeSet::Users(changes) = &*set else {
                unreachable!("a users round has a users change set");
            };
            let from = token
                .cursor
                .start
                .map_or(0, |start| changes.partition_point(|c| c.id < start));
            for UserChange { id, props } in changes.iter().skip(from).take(size) {
                if let Some(user) = dir.users.get(id) {
                    page.push(&view(user, *props));
                } else {
                    let reason = if dir.deleted_users.contains_key(id) {
                        "changed"
                    } else {
                        "deleted"
                    };
                    page.push(&RemovedView { id: *id, reason });
                }
            }
            changes.get(from + size).map(|c| c.id)
        }
    };
    match next {
        Some(start) => {
            let cursor = Cursor {
                start: Some(start),
                member_after: None,
            };
            let link = next_link(ctx, "users", &token, cursor);
            page.finish(Some(("@odata.nextLink", &link)))
        }
        None => {
            let link = delta_link(ctx, "users", &token, round.until);
            page.finish(Some(("@odata.deltaLink", &link)))
        }
    }
}

/// Fills a groups page within the page-size and member budgets.
struct GroupPager<'a> {
    page: PageWriter,
    tenant: &'a Tenant,
    select: Select,
    writing: Writing,
    groups_left: usize,
    members_left: usize,
}

enum Placed {
    /// The group and all its remaining members are on the page.
    Whole,
    /// The page ended inside the group's members, after this member.
    Split(Uuid),
}

impl GroupPager<'_> {
    fn full(&self) -> bool {
        self.groups_left == 0 || self.members_left == 0
    }

    /// Places a live group, whose properties `changed` in the round, with up
    /// to the remaining member budget of `members` (already positioned after
    /// the cursor).
    fn place(
        &mut self,
        id: Uuid,
        changed: u64,
        members: impl Iterator<Item = MemberRef>,
    ) -> Placed {
        let Some(entry) = self.tenant.dir.groups.get(&id) else {
            return Placed::Whole;
        };
        let mut refs = Vec::new();
        let mut split = None;
        let mut members = members.peekable();
        while let Some(member) = members.next() {
            refs.push(member);
            if refs.len() == self.members_left && members.peek().is_some() {
                split = Some(member.id);
                break;
            }
        }
        let held = self
            .tenant
            .dir
            .delta_props(id, set_group_props(&entry.group));
        self.page.push(&GroupView {
            group: &entry.group,
            mask: self.writing.props(held, changed),
            typed: false,
            members_delta: (!refs.is_empty()).then_some(refs.as_slice()),
        });
        self.groups_left -= 1;
        self.members_left -= refs.len();
        match split {
            Some(last) => Placed::Split(last),
            None => Placed::Whole,
        }
    }

    fn place_removed(&mut self, id: Uuid) {
        let reason = if self.tenant.dir.deleted_groups.contains_key(&id) {
            "changed"
        } else {
            "deleted"
        };
        self.page.push(&RemovedView { id, reason });
        self.groups_left -= 1;
    }
}

/// A page of `groups/delta` for `token` (a round in progress); `minimal` as
/// for [`users_page`].
pub(crate) fn groups_page(
    tenant: &Tenant,
    token: PageToken,
    ctx: &PageCtx,
    minimal: bool,
) -> Vec<u8> {
    let round = round_of(&token);
    let dir = &tenant.dir;
    let mut pager = GroupPager {
        page: PageWriter::new(&ctx.context("groups", token.select)),
        tenant,
        select: token.select,
        writing: Writing {
            mask: token.select.mask_for(MemberKind::Group),
            minimal: minimal && round.since.is_some(),
        },
        groups_left: token.page_size as usize,
        members_left: MEMBER_REFS_PER_PAGE,
    };
    let with_members = pager.select.includes_members();
    let mut next: Option<Cursor> = None;
    match round.since {
        None => {
            let start = token.cursor.start.map_or(Bound::Unbounded, Bound::Included);
            for (&id, entry) in dir.groups.range((start, Bound::Unbounded)) {
                if pager.full() {
                    next = Some(Cursor {
                        start: Some(id),
                        member_after: None,
                    });
                    break;
                }
                let resume = token
                    .cursor
                    .member_after
                    .filter(|_| token.cursor.start == Some(id));
                let from = resume.map_or(Bound::Unbounded, Bound::Excluded);
                let members = entry
                    .members
                    .range((from, Bound::Unbounded))
                    .take(if with_members { usize::MAX } else { 0 })
                    .map(|(&member, &kind)| MemberRef {
                        id: member,
                        kind,
                        removed: false,
                    });
                if let Placed::Split(last) = pager.place(id, EVERY_PROP, members) {
                    next = Some(Cursor {
                        start: Some(id),
                        member_after: Some(last),
                    });
                    break;
                }
            }
        }
        Some(since) => {
            let set = change_set(dir, true, token.select, since, round.until);
            let ChangeSet::Groups(changes) = &*set else {
                unreachable!("a groups round has a groups change set");
            };
            let from = token
                .cursor
                .start
                .map_or(0, |start| changes.partition_point(|c| c.id < start));
            for change in &changes[from..] {
                if pager.full() {
                    next = Some(Cursor {
                        start: Some(change.id),
                        member_after: None,
                    });
                    break;
                }
                if !dir.groups.contains_key(&change.id) {
                    pager.place_removed(change.id);
                    continue;
                }
                let skip = match token.cursor.member_after {
                    Some(after) if token.cursor.start == Some(change.id) => {
                        change.members.partition_point(|m| m.id <= after)
                    }
                    _ => 0,
                };
                let members = change.members[skip..].iter().copied();
                if let Placed::Split(last) = pager.place(change.id, change.props, members) {
                    next = Some(Cursor {
                        start: Some(change.id),
                        member_after: Some(last),
                    });
                    break;
                }
            }
        }
    }
    let page = pager.page;
    match next {
        Some(cursor) => {
            let link = next_link(ctx, "groups", &token, cursor);
            page.finish(Some(("@odata.nextLink", &link)))
        }
        None => {
            let link = delta_link(ctx, "groups", &token, round.until);
            page.finish(Some(("@odata.deltaLink", &link)))
        }
    }
}
