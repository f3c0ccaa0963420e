//! A connector's directory as people look it up: a user or a group by id,
//! address or name ([`super::lookup`]), a user's groups and a group's
//! members, directly (a page at a time) or through nested groups (whole).

use std::collections::HashMap;

use axum::extract::State;
use http::StatusCode;
use serde_json::{Value, json};

use crate::domain::{Group, MemberKind, SourceId, User};
use crate::store::{Reached, Scope, StateStore, StoreError, StoredUsers};

use super::super::{App, AppError};
use super::extract::{Ids, QueryParams};
use super::lookup::resolve;
use super::{Reply, ok};

pub(super) async fn user(State(app): State<App>, ids: Ids) -> Reply {
    let user: User = resolve(&app, &ids.scope()?, ids.reference()).await?;
    ok(StatusCode::OK, json!({"user": user}))
}

pub(super) async fn group(State(app): State<App>, ids: Ids) -> Reply {
    let group: Group = resolve(&app, &ids.scope()?, ids.reference()).await?;
    ok(StatusCode::OK, json!({"group": group}))
}

pub(super) async fn user_groups(State(app): State<App>, ids: Ids, q: QueryParams) -> Reply {
    let scope = ids.scope()?;
    let user: User = resolve(&app, &scope, ids.reference()).await?;
    let (reached, next) = listing(&app.store, &scope, &user.id, Listing::GroupsOf, &q).await?;
    let groups = groups_of(
        &app.store,
        &scope,
        reached.iter().map(|r| &r.membership.group),
    )
    .await?;
    let rows: Vec<Value> = reached
        .iter()
        .map(|r| group_row(r, groups.get(&r.membership.group)))
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "user": {"id": user.id, "primary_email": user.primary_email, "display_name": user.display_name},
            "groups": rows,
            "next": next,
        }),
    )
}

pub(super) async fn group_members(State(app): State<App>, ids: Ids, q: QueryParams) -> Reply {
    let scope = ids.scope()?;
    let group: Group = resolve(&app, &scope, ids.reference()).await?;
    let (reached, next) = listing(&app.store, &scope, &group.id, Listing::MembersOf, &q).await?;
    let names = Names::of(&app.store, &scope, &reached).await?;
    let rows: Vec<Value> = reached.iter().map(|r| names.member_row(r)).collect();
    ok(
        StatusCode::OK,
        json!({
            "group": {"id": group.id, "name": group.name, "mail": group.mail},
            "members": rows,
            "next": next,
        }),
    )
}

/// Which memberships of an object a listing follows.
#[derive(Clone, Copy)]
enum Listing {
    GroupsOf,
    MembersOf,
}

/// A page of `id`'s direct memberships with the token for the next, or
/// with `?transitive=true` every one reached through nested groups.
async fn listing(
    store: &StateStore,
    scope: &Scope,
    id: &SourceId,
    listing: Listing,
    q: &QueryParams,
) -> Result<(Vec<Reached>, Option<String>), AppError> {
    if q.flag("transitive")? {
        let all = match listing {
            Listing::GroupsOf => store.groups_reached(scope, id).await?,
            Listing::MembersOf => store.members_reached(scope, id).await?,
        };
        return Ok((all, None));
    }
    let page = match listing {
        Listing::GroupsOf => store.member_of(scope, id, q.page()?).await?,
        Listing::MembersOf => store.group_members(scope, id, q.page()?).await?,
    };
    let direct = page.items.into_iter().map(Reached::direct).collect();
    Ok((direct, page.next))
}

/// The stored groups among `ids`, in one batched read.
async fn groups_of<'a>(
    store: &StateStore,
    scope: &Scope,
    ids: impl Iterator<Item = &'a SourceId>,
) -> Result<HashMap<SourceId, Group>, StoreError> {
    store.get_groups(scope, &ids.collect::<Vec<_>>()).await
}

/// A group a user is in; a group no longer stored has only its id.
fn group_row(r: &Reached, group: Option<&Group>) -> Value {
    json!({
        "id": r.membership.group,
        "name": group.map(|g| &g.name),
        "mail": group.and_then(|g| g.mail.as_ref()),
        "kind": group.map(|g| g.kind),
        "depth": r.depth,
        "via": r.via,
    })
}

/// The users and groups a member listing names, each kind read in one batch.
struct Names {
    users: StoredUsers,
    groups: HashMap<SourceId, Group>,
}

impl Names {
    async fn of(
        store: &StateStore,
        scope: &Scope,
        reached: &[Reached],
    ) -> Result<Self, StoreError> {
        let of_kind = |kind| {
            reached
                .iter()
                .map(|r| &r.membership)
                .filter(move |m| m.member_kind == kind)
                .map(|m| &m.member)
        };
        let users: Vec<&SourceId> = of_kind(MemberKind::User).collect();
        Ok(Self {
            users: store.stored_users(scope, &users).await?,
            groups: groups_of(store, scope, of_kind(MemberKind::Group)).await?,
        })
    }

    /// A member with its name and address: a user's display name (else its
    /// address) and primary address, a group's name and mail; otherwise no
    /// name and the address the membership carries.
    fn member_row(&self, r: &Reached) -> Value {
        let m = &r.membership;
        let named = match m.member_kind {
            MemberKind::User => self.users.get(&m.member).map(|u| {
                let name = u
                    .display_name
                    .clone()
                    .unwrap_or(u.primary_email.to_string());
                (Some(name), Some(u.primary_email.clone()))
            }),
            MemberKind::Group => self
                .groups
                .get(&m.member)
                .map(|g| (Some(g.name.clone()), g.mail.clone())),
            _ => None,
        };
        let (name, address) = named.unwrap_or((None, m.address.clone()));
        json!({
            "id": m.member,
            "kind": m.member_kind,
            "name": name,
            "address": address,
            "depth": r.depth,
            "via": r.via,
        })
    }
}
