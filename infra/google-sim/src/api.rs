//! The Directory API routes: `users.list`, `groups.list`, `members.list`.
//!
//! Every request passes [`gate`]: route stats, the front-door fault (503),
//! the bearer token (401), quota faults (403/429), scopes (403
//! `insufficientPermissions`) and the impersonated admin (403 `forbidden`).
//! The `fields` parameter is accepted and ignored: responses always carry
//! every field.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::directory::{Customer, SCOPE_PREFIX};
use crate::errors::ApiError;
use crate::faults::Injected;
use crate::model::{MemberType, SimGroup, SimUser};
use crate::state::{Inner, lock, read};

pub(crate) const USERS_ROUTE: &str = "GET /admin/directory/v1/users";
pub(crate) const GROUPS_ROUTE: &str = "GET /admin/directory/v1/groups";
pub(crate) const MEMBERS_ROUTE: &str = "GET /admin/directory/v1/groups/{groupKey}/members";

const USER_SCOPES: [&str; 2] = ["admin.directory.user.readonly", "admin.directory.user"];
const GROUP_SCOPES: [&str; 2] = ["admin.directory.group.readonly", "admin.directory.group"];
const MEMBER_SCOPES: [&str; 4] = [
    "admin.directory.group.member.readonly",
    "admin.directory.group.member",
    "admin.directory.group.readonly",
    "admin.directory.group",
];

type Params = Query<HashMap<String, String>>;

/// Checks a request up to the point of reading the directory; returns the
/// caller's customer id.
fn gate(
    inner: &Inner,
    route: &str,
    headers: &HeaderMap,
    scopes: &[&str],
) -> Result<String, ApiError> {
    inner.record(route);
    if lock(&inner.faults).take_front().is_some() {
        lock(&inner.stats).fault("backendError");
        return Err(ApiError::backend_error());
    }
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(ApiError::login_required)?;
    let token = lock(&inner.tokens)
        .get(bearer)
        .filter(|t| t.expires > Utc::now())
        .cloned()
        .ok_or_else(ApiError::invalid_credentials)?;
    if let Some(storm) = lock(&inner.script).storm() {
        lock(&inner.stats).fault(storm.reason);
        return Err(storm);
    }
    if let Some(fault) = lock(&inner.faults).take_quota() {
        let (error, reason) = match fault {
            Injected::UserRateLimit => (ApiError::user_rate_limit(), "userRateLimitExceeded"),
            Injected::Quota => (ApiError::quota_exceeded(), "quotaExceeded"),
            Injected::TooMany | Injected::ServerError => {
                (ApiError::too_many(), "rateLimitExceeded")
            }
        };
        lock(&inner.stats).fault(reason);
        return Err(error);
    }
    let scoped = scopes
        .iter()
        .any(|s| token.scopes.contains(&format!("{SCOPE_PREFIX}{s}")));
    if !scoped {
        return Err(ApiError::insufficient_scopes());
    }
    let (Some(customer), Some(user_id)) = (token.customer, token.user_id) else {
        return Err(ApiError::not_authorized());
    };
    let dir = read(&inner.dir);
    let admin = dir
        .customers
        .get(&customer)
        .and_then(|c| c.users.get(&user_id))
        .is_some_and(|u| u.is_admin && !u.suspended);
    if !admin {
        return Err(ApiError::not_authorized());
    }
    Ok(customer)
}

/// `customer=my_customer|<id>` or `domain=<primary domain>` must name the
/// caller's customer.
fn check_customer(c: &Customer, params: &HashMap<String, String>) -> Result<(), ApiError> {
    match (params.get("customer"), params.get("domain")) {
        (Some(id), _) if id == "my_customer" || *id == c.id => Ok(()),
        (None, Some(domain)) if domain.eq_ignore_ascii_case(&c.primary_domain) => Ok(()),
        (None, None) => Err(ApiError::bad_request("Bad Request")),
        _ => Err(ApiError::not_authorized()),
    }
}

fn max_results(
    params: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(raw) = params.get("maxResults") else {
        return Ok(default);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "Invalid value '{raw}'. Values must be within the range: [1, {max}]"
        ))),
    }
}

/// Page tokens are opaque to clients: base64url of `<kind>:<last id>`.
fn encode_page_token(kind: &str, last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{last}"))
}

fn decode_page_token(
    kind: &str,
    params: &HashMap<String, String>,
) -> Result<Option<String>, ApiError> {
    let Some(raw) = params.get("pageToken").filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(&format!("{kind}:")).map(str::to_string))
        .map(Some)
        .ok_or_else(|| ApiError::invalid("Invalid Input: pageToken"))
}

/// One page from an ordered map, after `cursor`; the next page token when
/// more remain.
fn page<'a, V>(
    map: &'a std::collections::BTreeMap<String, V>,
    cursor: Option<&str>,
    size: usize,
    kind: &str,
) -> (Vec<(&'a String, &'a V)>, Option<String>) {
    let start = match cursor {
        Some(c) => Bound::Excluded(c.to_string()),
        None => Bound::Unbounded,
    };
    let mut items: Vec<_> = map
        .range((start, Bound::Unbounded))
        .take(size + 1)
        .collect();
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(|(id, _)| encode_page_token(kind, id))
    } else {
        None
    };
    (items, next)
}

/// A list page. Like Google, an empty page leaves its collection out.
fn list_body(kind: &str, field: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut body = json!({ "kind": kind });
    if !items.is_empty() {
        body[field] = json!(items);
    }
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    body
}

async fn respond(inner: &Inner, result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => {
            let (latency, spoil) = {
                let mut faults = lock(&inner.faults);
                (faults.page_latency, faults.take_spoil())
            };
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            match spoil {
                None => Json(body).into_response(),
                Some(how) => crate::script::spoilt(inner, how, &body),
            }
        }
        Err(e) => e.into_response(),
    }
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn user_json(u: &SimUser, customer_id: &str, full: bool, deleted: Option<DateTime<Utc>>) -> Value {
    let mut emails = vec![json!({"address": u.primary_email, "primary": true})];
    emails.extend(u.aliases.iter().map(|a| json!({"address": a})));
    let mut v = json!({
        "kind": "admin#directory#user",
        "id": u.id,
        "primaryEmail": u.primary_email,
        "name": {
            "givenName": u.given_name,
            "familyName": u.family_name,
            "fullName": format!("{} {}", u.given_name, u.family_name).trim().to_string(),
        },
        "isAdmin": u.is_admin,
        "isDelegatedAdmin": false,
        "agreedToTerms": true,
        "suspended": u.suspended,
        "archived": u.archived,
        "changePasswordAtNextLogin": false,
        "ipWhitelisted": false,
        "emails": emails,
        "customerId": customer_id,
        "orgUnitPath": u.org_unit_path,
        "isMailboxSetup": true,
        "includeInGlobalAddressList": true,
    });
    if u.suspended {
        v["suspensionReason"] = json!("ADMIN");
    }
    if !u.aliases.is_empty() {
        v["aliases"] = json!(u.aliases);
    }
    if full && (u.department.is_some() || u.title.is_some()) {
        let mut org = json!({"primary": true, "customType": ""});
        if let Some(d) = &u.department {
            org["department"] = json!(d);
        }
        if let Some(t) = &u.title {
            org["title"] = json!(t);
        }
        v["organizations"] = json!([org]);
    }
    if let Some(t) = deleted {
        v["deletionTime"] = json!(timestamp(t));
    }
    v
}

fn group_json(g: &SimGroup, direct_members: usize) -> Value {
    let mut v = json!({
        "kind": "admin#directory#group",
        "id": g.id,
        "email": g.email,
        "name": g.name,
        "description": "",
        // int64 fields are strings in Google's JSON.
        "directMembersCount": direct_members.to_string(),
        "adminCreated": true,
    });
    if !g.aliases.is_empty() {
        v["aliases"] = json!(g.aliases);
    }
    if !g.non_editable_aliases.is_empty() {
        v["nonEditableAliases"] = json!(g.non_editable_aliases);
    }
    v
}

pub(crate) async fn list_users(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let result = users_page(&inner, &headers, &params);
    respond(&inner, result).await
}

fn users_page(
    inner: &Inner,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let customer_id = gate(inner, USERS_ROUTE, headers, &USER_SCOPES)?;
    let dir = read(&inner.dir);
    let c = dir
        .customers
        .get(&customer_id)
        .ok_or_else(ApiError::not_authorized)?;
    check_customer(c, params)?;
    let size = max_results(params, 100, 500)?;
    let full = match params.get("projection").map(|p| p.to_ascii_lowercase()) {
        None => false,
        Some(p) if p == "basic" => false,
        Some(p) if p == "full" || p == "custom" => true,
        Some(p) => return Err(ApiError::invalid(format!("Invalid value '{p}'"))),
    };
    let show_deleted = params
        .get("showDeleted")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let cursor = decode_page_token("users", params)?;
    let (users, next) = if show_deleted {
        let (items, next) = page(&c.deleted, cursor.as_deref(), size, "users");
        let users = items
            .into_iter()
            .map(|(_, (u, at))| user_json(u, &c.id, full, Some(*at)))
            .collect();
        (users, next)
    } else {
        let (items, next) = page(&c.users, cursor.as_deref(), size, "users");
        let users = items
            .into_iter()
            .map(|(_, u)| user_json(u, &c.id, full, None))
            .collect();
        (users, next)
    };
    Ok(list_body("admin#directory#users", "users", users, next))
}

pub(crate) async fn list_groups(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let result = groups_page(&inner, &headers, &params);
    respond(&inner, result).await
}

fn groups_page(
    inner: &Inner,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let customer_id = gate(inner, GROUPS_ROUTE, headers, &GROUP_SCOPES)?;
    let dir = read(&inner.dir);
    let c = dir
        .customers
        .get(&customer_id)
        .ok_or_else(ApiError::not_authorized)?;
    check_customer(c, params)?;
    let size = max_results(params, 200, 200)?;
    let cursor = decode_page_token("groups", params)?;
    let (items, next) = page(&c.groups, cursor.as_deref(), size, "groups");
    let groups = items
        .into_iter()
        .map(|(id, g)| group_json(g, c.members.get(id).map_or(0, |m| m.len())))
        .collect();
    Ok(list_body("admin#directory#groups", "groups", groups, next))
}

pub(crate) async fn list_members(
    State(inner): State<Arc<Inner>>,
    Path(group_key): Path<String>,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let result = members_page(&inner, &group_key, &headers, &params);
    respond(&inner, result).await
}

fn members_page(
    inner: &Inner,
    group_key: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let customer_id = gate(inner, MEMBERS_ROUTE, headers, &MEMBER_SCOPES)?;
    let dir = read(&inner.dir);
    let c = dir
        .customers
        .get(&customer_id)
        .ok_or_else(ApiError::not_authorized)?;
    let group = c
        .find_group(group_key)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    let size = max_results(params, 200, 200)?;
    let cursor = decode_page_token(&format!("members.{}", group.id), params)?;
    let empty = std::collections::BTreeMap::new();
    let members = c.members.get(&group.id).unwrap_or(&empty);
    let (items, next) = page(
        members,
        cursor.as_deref(),
        size,
        &format!("members.{}", group.id),
    );
    let members: Vec<Value> = items
        .into_iter()
        .map(|(id, m)| {
            let mut v = json!({
                "kind": "admin#directory#member",
                "id": id,
                "role": m.role.as_str(),
                "type": m.kind.as_str(),
            });
            match m.kind {
                MemberType::User => {
                    if let Some(u) = c.users.get(id) {
                        v["email"] = json!(u.primary_email);
                        v["status"] = json!(if u.suspended { "SUSPENDED" } else { "ACTIVE" });
                    }
                }
                MemberType::Group => {
                    if let Some(g) = c.groups.get(id) {
                        v["email"] = json!(g.email);
                        v["status"] = json!("ACTIVE");
                    }
                }
                MemberType::Customer => {}
                MemberType::External => {
                    if let Some((email, account)) = &m.external {
                        v["email"] = json!(email);
                        v["status"] = json!("ACTIVE");
                        if !account && let Some(o) = v.as_object_mut() {
                            o.remove("id");
                        }
                    }
                }
            }
            v
        })
        .collect();
    Ok(list_body(
        "admin#directory#members",
        "members",
        members,
        next,
    ))
}

/// Any other path: Google's 404 shape.
pub(crate) async fn not_found() -> Response {
    ApiError::not_found("path").into_response()
}
