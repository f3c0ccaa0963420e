//! Directory reads: organization, users, groups, members and delta.

use axum::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::{Call, Params, Reply, Route};
use crate::access_token::Principal;
use crate::delta::{self, DEFAULT_DELTA_PAGE_SIZE};
use crate::directory::Tenant;
use crate::error::GraphError;
use crate::model::MemberKind;
use crate::pages::{self, PageCtx, Readable, select_names};
use crate::props::{GroupView, Select, Target, UserView};
use crate::state::{Inner, SharedTenant, read};
use crate::token::{Cursor, PageToken, Query, Round, TokenError};

/// Default `$top` of Graph list operations.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page Graph serves.
const MAX_PAGE_SIZE: u32 = 999;

/// Query options the simulator does not implement; refused rather than
/// silently ignored, so a client never believes a filter was applied.
const UNSUPPORTED: [&str; 5] = ["$filter", "$orderby", "$search", "$count", "$expand"];

fn tenant_of(inner: &Inner, principal: &Principal) -> Result<SharedTenant, GraphError> {
    inner.tenant(principal.tenant).ok_or_else(|| {
        GraphError::unauthenticated("The tenant of the access token does not exist.")
    })
}

fn readable(principal: &Principal) -> Readable {
    Readable {
        users: principal.can_read_users(),
        groups: principal.can_read_groups(),
        contacts: principal.can_read_contacts(),
    }
}

fn invalid_token(_: TokenError) -> GraphError {
    GraphError::bad_request("The $skiptoken or $deltatoken is not valid.")
}

fn refuse_unsupported(params: &Params, allowed: &[&str]) -> Result<(), GraphError> {
    for option in UNSUPPORTED {
        if params.has(option) && !allowed.contains(&option) {
            return Err(GraphError::unsupported_query(format!(
                "The query option '{option}' is not supported by this simulator."
            )));
        }
    }
    Ok(())
}

/// Opens a token presented to this tenant, refusing foreign and expired ones.
fn open_token(
    inner: &Inner,
    tenant: &Tenant,
    raw: &str,
    gone_location: impl FnOnce(&PageToken) -> String,
) -> Result<PageToken, GraphError> {
    let token = inner.sealer.open(raw).map_err(invalid_token)?;
    if token.tenant != tenant.id {
        return Err(invalid_token(TokenError::Invalid));
    }
    if token.epoch != tenant.dir.epoch {
        return Err(GraphError::new(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state generation is not found; the token has expired. Start a full synchronization.",
        )
        .with_header("Location", gone_location(&token)));
    }
    Ok(token)
}

pub(super) fn organization(inner: &Inner, principal: &Principal) -> Result<Reply, GraphError> {
    if !principal.can_read_organization() {
        return Err(GraphError::forbidden());
    }
    let shared = tenant_of(inner, principal)?;
    let tenant = read(&shared);
    let domains: Vec<_> = tenant
        .domains
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": i == 0,
                "isInitial": *name == tenant.initial_domain,
                "name": name,
                "type": "Managed",
            })
        })
        .collect();
    Ok(Reply::value(&json!({
        "@odata.context": format!("{}/v1.0/$metadata#organization", inner.graph_base()),
        "value": [{
            "id": tenant.id,
            "deletedDateTime": null,
            "displayName": tenant.display_name,
            "tenantType": "AAD",
            "onPremisesSyncEnabled": null,
            "verifiedDomains": domains,
        }],
    })))
}

fn target_of(route: &Route) -> Target {
    match route {
        Route::Users | Route::UsersDelta | Route::User(_) => Target::Users,
        Route::Groups | Route::GroupsDelta | Route::Group(_) => Target::Groups,
        _ => Target::DirectoryObjects,
    }
}

fn check_read(principal: &Principal, route: &Route) -> Result<(), GraphError> {
    let allowed = match target_of(route) {
        Target::Users => principal.can_read_users(),
        Target::Groups | Target::DirectoryObjects => principal.can_read_groups(),
    };
    if allowed {
        Ok(())
    } else {
        Err(GraphError::forbidden())
    }
}

/// `/users`, `/groups`, `/groups/{id}/members`, `/groups/{id}/transitiveMembers`.
pub(super) fn list(
    inner: &Inner,
    principal: &Principal,
    route: &Route,
    params: &Params,
) -> Result<Reply, GraphError> {
    check_read(principal, route)?;
    refuse_unsupported(params, &[])?;
    let shared = tenant_of(inner, principal)?;
    let tenant = read(&shared);
    let query = match route {
        Route::Users => Query::Users,
        Route::Groups => Query::Groups,
        Route::Members { group, transitive } => {
            let id = Uuid::parse_str(group)
                .ok()
                .filter(|id| tenant.dir.groups.contains_key(id))
                .ok_or_else(|| GraphError::not_found(group))?;
            Query::Members {
                group: id,
                transitive: *transitive,
            }
        }
        _ => unreachable!("list serves collection routes"),
    };
    let top = params.top()?;
    let token = match params.get("$skiptoken") {
        Some(raw) => {
            let path = match route {
                Route::Users => "users".to_string(),
                Route::Groups => "groups".to_string(),
                Route::Members { group, transitive } => format!(
                    "groups/{group}/{}",
                    if *transitive {
                        "transitiveMembers"
                    } else {
                        "members"
                    }
                ),
                _ => unreachable!("list serves collection routes"),
            };
            let restart = |_: &PageToken| format!("{}/v1.0/{path}", inner.graph_base());
            let token = open_token(inner, &tenant, raw, restart)?;
            if token.query != query {
                return Err(invalid_token(TokenError::Invalid));
            }
            token
        }
        None => PageToken {
            tenant: tenant.id,
            epoch: tenant.dir.epoch,
            query,
            select: Select::parse(params.get("$select"), target_of(route), false)?,
            page_size: top.unwrap_or(DEFAULT_PAGE_SIZE),
            cursor: Cursor::default(),
        },
    };
    let base = inner.graph_base();
    let ctx = PageCtx {
        base: &base,
        sealer: &inner.sealer,
        readable: readable(principal),
    };
    let top_given = top.is_some();
    let body = match query {
        Query::Users => pages::users_page(&tenant, token, top_given, &ctx),
        Query::Groups => pages::groups_page(&tenant, token, top_given, &ctx),
        _ => pages::members_page(&tenant, token, top_given, &ctx),
    };
    Ok(Reply::json(body))
}

/// `odata.maxpagesize` from a `Prefer` header, capped at Graph's maximum.
fn max_page_size(prefer: Option<&str>) -> Option<u32> {
    prefer?
        .split(',')
        .filter_map(|pref| pref.trim().strip_prefix("odata.maxpagesize="))
        .find_map(|n| n.trim().parse::<u32>().ok())
        .map(|n| n.clamp(1, MAX_PAGE_SIZE))
}

/// Whether a `Prefer` header asks for `return=minimal`.
fn return_minimal(prefer: Option<&str>) -> bool {
    prefer.is_some_and(|p| {
        p.split(',')
            .any(|pref| pref.trim().eq_ignore_ascii_case("return=minimal"))
    })
}

/// `users/delta` and `groups/delta`.
pub(super) fn delta(
    inner: &Inner,
    principal: &Principal,
    route: &Route,
    call: &Call,
    params: &Params,
) -> Result<Reply, GraphError> {
    check_read(principal, route)?;
    let groups = *route == Route::GroupsDelta;
    let entity_set = if groups { "groups" } else { "users" };
    if params.has("$top") {
        return Err(GraphError::unsupported_query(
            "The query option '$top' is not supported with delta. Use the 'Prefer: odata.maxpagesize' header.",
        ));
    }
    // `$expand=members` is the older spelling of selecting members.
    let expand_members = params
        .get("$expand")
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("members"));
    if groups && expand_members {
        refuse_unsupported(params, &["$expand"])?;
    } else {
        refuse_unsupported(params, &[])?;
    }
    let select_param = || -> Result<Select, GraphError> {
        let mut select = Select::parse(params.get("$select"), target_of(route), groups)?;
        if expand_members {
            select.members = true;
        }
        Ok(select)
    };
    let shared = tenant_of(inner, principal)?;
    let tenant = read(&shared);
    let base = inner.graph_base();
    let restart = |token: &PageToken| {
        if token.select.explicit {
            format!(
                "{base}/v1.0/{entity_set}/delta?$select={}",
                select_names(token.select)
            )
        } else {
            format!("{base}/v1.0/{entity_set}/delta")
        }
    };
    let preferred = max_page_size(call.prefer);
    let minimal = return_minimal(call.prefer);
    let seq = tenant.dir.seq();
    let in_round = |round: Round| {
        if groups {
            Query::GroupsDelta(round)
        } else {
            Query::UsersDelta(round)
        }
    };

    let mut token = if let Some(raw) = params.get("$skiptoken") {
        let token = open_token(inner, &tenant, raw, restart)?;
        match token.query {
            Query::UsersDelta(_) if !groups => token,
            Query::GroupsDelta(_) if groups => token,
            _ => return Err(invalid_token(TokenError::Invalid)),
        }
    } else if let Some(raw) = params.get("$deltatoken") {
        if raw.eq_ignore_ascii_case("latest") {
            // "Sync from now": no data, just a deltaLink for later rounds.
            let token = PageToken {
                tenant: tenant.id,
                epoch: tenant.dir.epoch,
                query: in_round(Round {
                    since: Some(seq),
                    until: seq,
                }),
                select: select_param()?,
                page_size: preferred.unwrap_or(DEFAULT_DELTA_PAGE_SIZE),
                cursor: Cursor::default(),
            };
            return Ok(delta_reply(
                &tenant, token, groups, preferred, minimal, inner, principal,
            ));
        }
        let token = open_token(inner, &tenant, raw, restart)?;
        let since = match token.query {
            Query::UsersDeltaLink { since } if !groups => since,
            Query::GroupsDeltaLink { since } if groups => since,
            _ => return Err(invalid_token(TokenError::Invalid)),
        };
        if since > seq {
            return Err(invalid_token(TokenError::Invalid));
        }
        // A deltaLink may change what is tracked with a new $select.
        let select = if params.has("$select") {
            select_param()?
        } else {
            token.select
        };
        PageToken {
            query: in_round(Round {
                since: Some(since),
                until: seq,
            }),
            select,
            ..token
        }
    } else {
        PageToken {
            tenant: tenant.id,
            epoch: tenant.dir.epoch,
            query: in_round(Round {
                since: None,
                until: seq,
            }),
            select: select_param()?,
            page_size: DEFAULT_DELTA_PAGE_SIZE,
            cursor: Cursor::default(),
        }
    };
    if let Some(size) = preferred {
        token.page_size = size;
    }
    Ok(delta_reply(
        &tenant, token, groups, preferred, minimal, inner, principal,
    ))
}

fn delta_reply(
    tenant: &Tenant,
    token: PageToken,
    groups: bool,
    preferred: Option<u32>,
    minimal: bool,
    inner: &Inner,
    principal: &Principal,
) -> Reply {
    let base = inner.graph_base();
    let ctx = PageCtx {
        base: &base,
        sealer: &inner.sealer,
        readable: readable(principal),
    };
    let body = if groups {
        delta::groups_page(tenant, token, &ctx, minimal)
    } else {
        delta::users_page(tenant, token, &ctx, minimal)
    };
    let mut reply = Reply::json(body);
    let applied: Vec<String> = preferred
        .map(|size| format!("odata.maxpagesize={size}"))
        .into_iter()
        .chain(minimal.then(|| "return=minimal".to_owned()))
        .collect();
    if !applied.is_empty() {
        reply
            .headers
            .push(("Preference-Applied", applied.join(", ")));
    }
    reply
}

/// `GET /users/{id | userPrincipalName}`.
pub(super) fn user(
    inner: &Inner,
    principal: &Principal,
    id: &str,
    params: &Params,
) -> Result<Reply, GraphError> {
    check_read(principal, &Route::User(String::new()))?;
    let select = Select::parse(params.get("$select"), Target::Users, false)?;
    let shared = tenant_of(inner, principal)?;
    let tenant = read(&shared);
    let user = match Uuid::parse_str(id) {
        Ok(uuid) => tenant.dir.users.get(&uuid),
        Err(_) => tenant
            .dir
            .users
            .values()
            .find(|u| u.user_principal_name.eq_ignore_ascii_case(id)),
    }
    .ok_or_else(|| GraphError::not_found(id))?;
    let mut value = serde_json::to_value(UserView {
        user,
        mask: select.mask_for(MemberKind::User),
        typed: false,
    })
    .expect("a user serializes");
    value["@odata.context"] = json!(format!(
        "{}/v1.0/$metadata#users{}/$entity",
        inner.graph_base(),
        select.context_suffix()
    ));
    Ok(Reply::value(&value))
}

/// `GET /groups/{id}`.
pub(super) fn group(
    inner: &Inner,
    principal: &Principal,
    id: &str,
    params: &Params,
) -> Result<Reply, GraphError> {
    check_read(principal, &Route::Group(String::new()))?;
    let select = Select::parse(params.get("$select"), Target::Groups, false)?;
    let shared = tenant_of(inner, principal)?;
    let tenant = read(&shared);
    let entry = Uuid::parse_str(id)
        .ok()
        .and_then(|uuid| tenant.dir.groups.get(&uuid))
        .ok_or_else(|| GraphError::not_found(id))?;
    let mut value = serde_json::to_value(GroupView {
        group: &entry.group,
        mask: select.mask_for(MemberKind::Group),
        typed: false,
        members_delta: None,
    })
    .expect("a group serializes");
    value["@odata.context"] = json!(format!(
        "{}/v1.0/$metadata#groups{}/$entity",
        inner.graph_base(),
        select.context_suffix()
    ));
    Ok(Reply::value(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxpagesize_is_read_among_other_preferences() {
        assert_eq!(max_page_size(Some("odata.maxpagesize=250")), Some(250));
        assert_eq!(
            max_page_size(Some("return=minimal, odata.maxpagesize=5000")),
            Some(999)
        );
        assert_eq!(max_page_size(Some("return=minimal")), None);
        assert_eq!(max_page_size(None), None);
    }
}
