//! What the consent tests do over a [`World`]: call the admin API as the
//! operator, send the administrator to the simulator's consent page, hand
//! Entra's redirect to the callback, follow the callback to the sign-in
//! that proves who completes the consent, and check what a refusal left.

use std::collections::BTreeMap;

use dirsync_entra_sim::ConsentDecision;
use dirsync_shared::app::api;
use dirsync_shared::app::consent::{CallbackPage, Outcome, callback};
use dirsync_shared::domain::{AccountId, AuditRecord, Region};
use dirsync_shared::store::{PageRequest, keys};
use serde_json::{Value, json};
use uuid::Uuid;

use super::world::{OPERATOR, REDIRECT, World};

pub fn fixture_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// An admin API call as the operator (a platform administrator).
pub async fn api_call(w: &World, method: &str, path: &str, body: Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let resp = api::handle(
        &w.app,
        req,
        dirsync_shared::app::Caller::iam(Some(OPERATOR.into())),
    )
    .await;
    (
        resp.status().as_u16(),
        serde_json::from_str(resp.body()).unwrap(),
    )
}

/// Creates a consent connector for `tenant` (a domain or GUID) on the
/// simulator and starts its consent; returns the consent URL.
pub async fn new_consent_connector(w: &World, account: &str, id: &str, tenant: &str) -> String {
    let (s, b) = api_call(
        w,
        "POST",
        &format!("/accounts/{account}/connectors"),
        json!({"connector": {"id": id, "kind": "entra", "tenant": tenant, "acknowledge_disabled": true,
            "authority_url": w.sim.authority_url(), "graph_url": w.sim.graph_url()}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    start(w, account, id, "consent").await
}

/// Starts consent (`what` = "consent") or migration ("migrate"); returns
/// the consent URL.
pub async fn start(w: &World, account: &str, id: &str, what: &str) -> String {
    let (s, b) = api_call(
        w,
        "POST",
        &format!("/accounts/{account}/connectors/{id}/{what}"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["consent_url"].as_str().unwrap().to_owned()
}

pub fn state_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

/// The administrator opens the consent URL and approves (or cancels): the
/// simulator answers with a redirect to our callback; returns its query.
pub async fn administrator(w: &World, url: &str, decision: ConsentDecision) -> String {
    w.sim.set_next_consent_decision(decision);
    redirected_query(url).await
}

/// The query of the callback address the simulator redirects `url` to.
pub async fn redirected_query(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    url::Url::parse(&location)
        .unwrap()
        .query()
        .unwrap_or_default()
        .to_owned()
}

/// The browser follows the callback's redirect to the sign-in, where a user
/// whose home tenant is `user_tenant` signs in (by default, a user of the
/// tenant signed in to); returns the query Entra sends back with the code.
pub async fn sign_in(w: &World, page: &CallbackPage, user_tenant: Option<Uuid>) -> String {
    assert_eq!(
        (page.status, page.outcome),
        (302, Outcome::SignIn),
        "{}",
        page.html
    );
    let location = page
        .location
        .as_deref()
        .expect("a redirect names its target");
    assert!(
        location.starts_with(&w.sim.authority_url())
            && location.contains("/oauth2/v2.0/authorize?"),
        "{location}"
    );
    if let Some(tenant) = user_tenant {
        w.sim.set_next_sign_in(tenant);
    }
    redirected_query(location).await
}

/// A legitimate consent of `tenant` from start to end: the administrator
/// approves, the callback confirms the grant and sends them to sign in,
/// they sign in as a user of that tenant, and the callback commits. Returns
/// the last page and the query it answered (to replay it).
pub async fn consent_and_sign_in(w: &World, url: &str, tenant: Uuid) -> (CallbackPage, String) {
    let query = administrator(w, url, ConsentDecision::Approve { tenant }).await;
    let page = callback(&w.app, &w.app.graph, &query).await;
    let query = sign_in(w, &page, None).await;
    (callback(&w.app, &w.app.graph, &query).await, query)
}

/// The callback through the Lambda handler, with the fixture request.
pub async fn callback_handler(
    w: &World,
    query: &str,
) -> (u16, String, lambda_http::http::HeaderMap) {
    let req = lambda_http::request::from_str(
        &fixture_file("http-consent-callback.json").replace("QUERY", query),
    )
    .unwrap();
    let resp = consent_callback::handle(&w.app, req).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let lambda_http::Body::Text(html) = resp.into_body() else {
        panic!("a page is text")
    };
    (status, html, headers)
}

/// Lets `seconds` pass for the simulator and for the deployment alike.
pub fn advance(w: &World, seconds: u64) {
    w.sim.advance_clock(std::time::Duration::from_secs(seconds));
    w.f.clock.advance(chrono::Duration::seconds(seconds as i64));
}

/// The table's items but the audit trails, the consent state `state`
/// (which a refusal spends) and the Graph budget's counters (the checks a
/// refusal made with Graph spent units, as any request does).
pub async fn stored(w: &World, state: &str) -> BTreeMap<String, String> {
    let spent = keys::ephemeral("consent", state);
    let spent = format!("{} {}", spent.pk, spent.sk);
    let mut items = super::table_without_audit(&w.f).await;
    items.remove(&spent);
    items.retain(|k, _| !k.starts_with("B#"));
    items
}

/// Asserts that nothing but audit records and the state changed since
/// `before` (taken with [`stored`]).
pub async fn assert_unchanged(w: &World, before: &BTreeMap<String, String>, state: &str) {
    assert!(!before.is_empty(), "nothing stored to compare with");
    let after = stored(w, state).await;
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "the store changed: {changed:?}");
}

/// The account's audit records, newest first.
pub async fn audit_trail(w: &World, account: &str) -> Vec<AuditRecord> {
    w.f.store
        .list_audit(&AccountId::new(account).unwrap(), PageRequest::first(100))
        .await
        .unwrap()
        .items
}

/// The `code` of a sign-in's return query.
pub fn code_of(query: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .expect("a sign-in's return carries a code")
        .1
        .into_owned()
}

/// A grant Entra will know only `delay` seconds after it is made: acme's
/// connector main (named contoso.com) is consented, and the query the
/// administrator is sent back with returned, with the consent's state.
pub async fn replicating_grant(w: &World, delay: u64) -> (String, String) {
    w.sim.revoke_consent(w.tenant, w.client_id);
    w.sim
        .set_consent_replication_delay(std::time::Duration::from_secs(delay));
    w.account("acme", Region::Europe).await;
    let url = new_consent_connector(w, "acme", "main", "contoso.com").await;
    let query = administrator(w, &url, ConsentDecision::Approve { tenant: w.tenant }).await;
    (state_of(&url), query)
}
