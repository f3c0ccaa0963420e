//! Graph listings: paging, `$select`, members, permissions, token lifetime.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Fixture;
use dirsync_entra_sim::{Faults, GenSpec, SimContact, SimGroup, SimUser};
use serde_json::Value;
use uuid::Uuid;

const READ: [&str; 2] = ["User.Read.All", "Group.Read.All"];

/// Follows `@odata.nextLink` to the end (bounded); returns the pages.
async fn all_pages(fx: &Fixture, token: &str, first: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(link) = next {
        assert!(pages.len() < 1_000, "paging does not end");
        let (status, _, page) = fx.get(token, &link).await;
        assert_eq!(status, 200, "{page}");
        next = page["@odata.nextLink"].as_str().map(str::to_string);
        pages.push(page);
    }
    pages
}

fn ids(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap().iter())
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn users_page_by_999_and_each_user_comes_exactly_once() {
    let fx = Fixture::new(&READ).await;
    fx.sim
        .generate_directory(fx.tenant, GenSpec::sized(2_500, 10, 3));
    let token = fx.token().await;
    let pages = all_pages(&fx, &token, "users?$top=999&$select=id,userPrincipalName").await;
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0]["value"].as_array().unwrap().len(), 999);
    assert_eq!(pages[2]["value"].as_array().unwrap().len(), 502);
    let got = ids(&pages);
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(got.len(), 2_500);
    assert_eq!(unique.len(), 2_500, "no user twice");
    let expected: HashSet<String> = fx
        .sim
        .snapshot(fx.tenant)
        .users
        .iter()
        .map(|u| u.id.to_string())
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<HashSet<_>>(),
        expected
    );
    let context = pages[0]["@odata.context"].as_str().unwrap();
    assert!(
        context.ends_with("$metadata#users(id,userPrincipalName)"),
        "{context}"
    );
    // The link is opaque but repeats $select and $top, as Graph's does.
    let link = pages[0]["@odata.nextLink"].as_str().unwrap();
    assert!(
        link.contains("$top=999") && link.contains("$skiptoken="),
        "{link}"
    );
    assert_eq!(fx.sim.stats().route("GET /v1.0/users"), 3);
}

#[tokio::test]
async fn select_returns_only_what_was_asked_and_account_enabled_only_then() {
    let fx = Fixture::new(&READ).await;
    let id = Uuid::new_v4();
    let mut user = SimUser::new(id, "ada@contoso.example", "Ada Lovelace");
    user.account_enabled = false;
    user.proxy_addresses.push("smtp:ada@contoso.test".into());
    fx.sim.add_user(fx.tenant, user);
    let token = fx.token().await;

    let (_, _, default) = fx.get(&token, "users").await;
    let u = &default["value"][0];
    assert_eq!(u["id"], id.to_string());
    assert_eq!(u["userPrincipalName"], "ada@contoso.example");
    assert!(
        u.get("accountEnabled").is_none(),
        "not in the default set: {u}"
    );
    assert!(
        u.get("proxyAddresses").is_none(),
        "not in the default set: {u}"
    );

    let (_, _, chosen) = fx
        .get(&token, "users?$select=accountEnabled,proxyAddresses")
        .await;
    let u = chosen["value"][0].as_object().unwrap();
    let mut keys: Vec<&str> = u.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["accountEnabled", "id", "proxyAddresses"]);
    assert_eq!(u["accountEnabled"], false);
    assert_eq!(
        u["proxyAddresses"],
        serde_json::json!(["SMTP:ada@contoso.example", "smtp:ada@contoso.test"])
    );

    let (status, _, error) = fx.get(&token, "users?$select=shoeSize").await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "Request_BadRequest");
    assert!(error["error"]["innerError"]["request-id"].is_string());
    let (status, _, error) = fx.get(&token, "users?$top=1000").await;
    assert_eq!(status, 400, "{error}");
}

#[tokio::test]
async fn members_and_transitive_members_with_types() {
    let fx = Fixture::new(&READ).await;
    let t = fx.tenant;
    let (outer, inner) = (Uuid::new_v4(), Uuid::new_v4());
    fx.sim.add_group(t, SimGroup::security(outer, "Outer"));
    fx.sim.add_group(
        t,
        SimGroup::unified(inner, "Inner", "inner@contoso.example"),
    );
    let users: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (i, id) in users.iter().enumerate() {
        fx.sim.add_user(
            t,
            SimUser::new(*id, &format!("u{i}@contoso.example"), &format!("U{i}")),
        );
    }
    let contact = Uuid::new_v4();
    fx.sim
        .add_contact(t, SimContact::new(contact, "Partner", "p@partner.example"));
    let s = |id: &Uuid| id.to_string();
    fx.sim.add_member(t, &s(&outer), &s(&users[0]));
    fx.sim.add_member(t, &s(&outer), &s(&inner));
    fx.sim.add_member(t, &s(&outer), &s(&contact));
    for user in &users[1..] {
        fx.sim.add_member(t, &s(&inner), &s(user));
    }
    // Already a direct member: transitive lists it once.
    fx.sim.add_member(t, &s(&inner), &s(&users[0]));
    let token = fx.token().await;

    let pages = all_pages(&fx, &token, &format!("groups/{outer}/members?$top=2")).await;
    assert_eq!(pages.len(), 2);
    let members: Vec<&Value> = pages
        .iter()
        .flat_map(|p| p["value"].as_array().unwrap())
        .collect();
    assert_eq!(members.len(), 3);
    let type_of = |id: &Uuid| {
        members
            .iter()
            .find(|m| m["id"] == id.to_string())
            .map(|m| m["@odata.type"].as_str().unwrap().to_string())
    };
    assert_eq!(type_of(&users[0]).as_deref(), Some("#microsoft.graph.user"));
    assert_eq!(type_of(&inner).as_deref(), Some("#microsoft.graph.group"));
    assert_eq!(
        type_of(&contact).as_deref(),
        Some("#microsoft.graph.orgContact")
    );

    let pages = all_pages(
        &fx,
        &token,
        &format!("groups/{outer}/transitiveMembers?$select=id,displayName"),
    )
    .await;
    let mut got = ids(&pages);
    got.sort();
    let mut expected: Vec<String> = users
        .iter()
        .chain([inner, contact].iter())
        .map(|id| id.to_string())
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    let stats = fx.sim.stats();
    assert_eq!(stats.route("GET /v1.0/groups/{id}/members"), 2);
    assert_eq!(stats.route("GET /v1.0/groups/{id}/transitiveMembers"), 1);

    let (status, _, _) = fx
        .get(&token, &format!("groups/{}/members", Uuid::new_v4()))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn missing_roles_are_403_and_limit_member_details() {
    let fx = Fixture::new(&["Group.Read.All"]).await;
    let (group, user) = (Uuid::new_v4(), Uuid::new_v4());
    fx.sim.add_group(fx.tenant, SimGroup::security(group, "G"));
    fx.sim
        .add_user(fx.tenant, SimUser::new(user, "x@contoso.example", "X"));
    fx.sim
        .add_member(fx.tenant, &group.to_string(), &user.to_string());
    let token = fx.token().await;
    let (status, _, body) = fx.get(&token, "users").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(
        body["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    // Without User.Read.All, member users come back with their id only.
    let (status, _, body) = fx.get(&token, &format!("groups/{group}/members")).await;
    assert_eq!(status, 200);
    let member = body["value"][0].as_object().unwrap();
    assert_eq!(member.len(), 2, "{member:?}");
    assert_eq!(member["@odata.type"], "#microsoft.graph.user");
    // Reading the organization needs Organization.Read.All or Directory.Read.All.
    let (status, _, _) = fx.get(&token, "organization").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn organization_lists_the_verified_domains() {
    let fx = Fixture::new(&["Directory.Read.All"]).await;
    let token = fx.token().await;
    let (status, _, body) = fx.get(&token, "organization").await;
    assert_eq!(status, 200);
    let org = &body["value"][0];
    assert_eq!(org["id"], fx.tenant.to_string());
    assert_eq!(org["displayName"], "Contoso");
    let domains = org["verifiedDomains"].as_array().unwrap();
    assert_eq!(domains.len(), 3, "two verified plus the initial domain");
    assert_eq!(domains[0]["name"], "contoso.example");
    assert_eq!(domains[0]["isDefault"], true);
    assert_eq!(domains[2]["name"], "contoso.onmicrosoft.com");
    assert_eq!(domains[2]["isInitial"], true);
    assert_eq!(domains[0]["type"], "Managed");
}

#[tokio::test]
async fn an_expired_or_foreign_access_token_is_401() {
    let fx = Fixture::new(&READ).await;
    // Two seconds: at least one whole second of validity whatever the
    // sub-second moment of issue.
    fx.sim.set_faults(Faults {
        token_lifetime_secs: Some(2),
        ..Faults::default()
    });
    let token = fx.token().await;
    let (status, _, _) = fx.get(&token, "users").await;
    assert_eq!(status, 200, "fresh token works");
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    let exp_ms = claims["exp"].as_u64().unwrap() * 1_000;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(exp_ms.saturating_sub(now_ms) + 20)).await;
    let (status, headers, body) = fx.get(&token, "users").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(headers.contains_key("www-authenticate"));

    let (status, _, body) = fx.get("not-a-token", "users").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
}

#[tokio::test]
async fn expiring_the_issued_tokens_refuses_them_and_not_the_next_one() {
    let fx = Fixture::new(&READ).await;
    let old = fx.token().await;
    fx.sim.expire_access_tokens();
    let (status, _, body) = fx.get(&old, "users").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    let new = fx.token().await;
    let (status, _, body) = fx.get(&new, "users").await;
    assert_eq!(status, 200, "{body}");
}
