//! The admin API as another customer would try it: every route of account
//! A called by account B's administrators (and by nobody), platform routes
//! by a customer, secrets named across connectors, endpoints moved without
//! the secret. Each is refused with a clear message, and the store is
//! unchanged apart from audit records (a diff of DynamoDB Local's table).
//! Also: the route table in `docs/api.md` is the router's.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use common::world::{OPERATOR, World, world};
use common::{table_items, table_without_audit};
use dirsync_entra_sim::Faults;
use dirsync_shared::app::Caller;
use dirsync_shared::app::api::{self, Access};
use dirsync_shared::app::worker::{JobOutcome, process};
use dirsync_shared::domain::*;
use dirsync_shared::queue::Job;
use dirsync_shared::secrets::{SecretStore, Stage};
use serde_json::{Value, json};
use uuid::Uuid;

const ACME_ADMIN: &str = "arn:aws:iam::111111111111:role/acme-admins";
const GLOBEX_ADMIN: &str = "arn:aws:iam::222222222222:role/globex-admins";

async fn call(w: &World, caller: Caller, method: &str, path: &str, body: Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let resp = api::handle(&w.app, req, caller).await;
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(resp.body()).unwrap_or(Value::Null),
    )
}

/// A call by acme's administrators.
async fn acme(w: &World, method: &str, path: &str, body: Value) -> (u16, Value) {
    call(w, iam(ACME_ADMIN), method, path, body).await
}

fn iam(arn: &str) -> Caller {
    Caller::iam(Some(arn.into()))
}

fn operator() -> Caller {
    iam(OPERATOR)
}

/// Two customers, each with its administrators granted; acme has an LDAP
/// connector whose password is stored.
async fn two_customers(w: &World) {
    for (id, admin) in [("acme", ACME_ADMIN), ("globex", GLOBEX_ADMIN)] {
        let (s, b) = call(
            w,
            operator(),
            "POST",
            "/accounts",
            json!({"id": id, "name": id, "region": "eu", "administrators": [admin]}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = call(
        w,
        iam(ACME_ADMIN),
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "ad", "kind": "ldap-ad", "url": "ldap://127.0.0.1:9",
            "transport": "plain-insecure", "base_dn": "DC=acme", "bind_dn": "svc@acme"},
            "secret": "acme-password"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

/// A route's path with ids of account acme's filled in.
fn acme_path(path: &str) -> String {
    path.replace("{a}", "acme")
        .replace("{c}", "ad")
        .replace("{run}", RunId::generate(Utc::now()).as_str())
        .replace("{id}", "u1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_caller_is_refused_on_every_route_and_changes_nothing() {
    let w = world(10).await;
    two_customers(&w).await;
    let before = table_without_audit(&w.f).await;
    let audit_before = table_items(&w.f).await.len() - before.len();

    let mut mutating = 0;
    for r in api::routes() {
        if r.access != Access::Account {
            continue;
        }
        let path = acme_path(r.path);
        let query = if r.path.ends_with("/users") {
            "?address=a@acme.com"
        } else {
            ""
        };
        for caller in [iam(GLOBEX_ADMIN), Caller::anonymous()] {
            let (s, b) = call(
                &w,
                caller.clone(),
                r.method.as_str(),
                &format!("{path}{query}"),
                json!({}),
            )
            .await;
            assert_eq!(s, 403, "{} {path} as {caller}: {b}", r.method);
            let e = b["error"].as_str().unwrap_or_default();
            assert!(
                e.contains("may not act for account acme") || e.contains("not signed"),
                "{} {path}: {e}",
                r.method
            );
        }
        // An assumed-role session of globex's role is globex's role.
        let session = "arn:aws:sts::222222222222:assumed-role/globex-admins/mallory";
        let (s, _) = call(&w, iam(session), r.method.as_str(), &path, json!({})).await;
        assert_eq!(s, 403, "{} {path} as a globex session", r.method);
        if r.action.is_some() {
            mutating += 1;
        }
    }
    assert!(mutating >= 10, "the mutating routes were tried");
    assert_eq!(
        table_without_audit(&w.f).await,
        before,
        "nothing but audit records changed"
    );

    // Acme's administrators see globex's attempts in their trail.
    let (s, b) = acme(&w, "GET", "/accounts/acme/audit?limit=200", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let records = b["records"].as_array().unwrap();
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "refused" && r["caller"] == GLOBEX_ADMIN)
        .collect();
    assert_eq!(
        refused.len(),
        mutating,
        "one refused record per mutating route: {b}"
    );
    assert!(
        refused
            .iter()
            .all(|r| r["detail"].as_str().unwrap().starts_with("403"))
    );
    assert!(table_items(&w.f).await.len() - before.len() > audit_before);

    // Globex's administrators cannot read acme's trail either, and their
    // own account list holds only globex.
    let (s, _) = call(
        &w,
        iam(GLOBEX_ADMIN),
        "GET",
        "/accounts/acme/audit",
        json!({}),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = call(&w, iam(GLOBEX_ADMIN), "GET", "/accounts", json!({})).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["globex"]);
    // Their own account works.
    let (s, b) = call(
        &w,
        iam(GLOBEX_ADMIN),
        "GET",
        "/accounts/globex/connectors",
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_platform_administrators_create_accounts_and_grant_access() {
    let w = world(10).await;
    two_customers(&w).await;
    let before = table_without_audit(&w.f).await;
    for (method, path, body) in [
        (
            "POST",
            "/accounts",
            json!({"id": "evil", "name": "e", "region": "eu"}),
        ),
        (
            "POST",
            "/accounts/acme/grants",
            json!({"principal": GLOBEX_ADMIN}),
        ),
        (
            "POST",
            "/accounts/globex/grants",
            json!({"principal": "arn:aws:iam::222222222222:user/x"}),
        ),
        (
            "DELETE",
            "/accounts/acme/grants?principal=arn:aws:iam::111111111111:role/acme-admins",
            json!({}),
        ),
    ] {
        let (s, b) = call(&w, iam(GLOBEX_ADMIN), method, path, body).await;
        assert_eq!(s, 403, "{method} {path}: {b}");
        assert!(
            b["error"]
                .as_str()
                .unwrap()
                .contains("not a platform administrator"),
            "{b}"
        );
    }
    assert_eq!(table_without_audit(&w.f).await, before);

    // The operator grants and revokes; the grant takes effect at once.
    let (s, _) = call(&w, iam(GLOBEX_ADMIN), "GET", "/accounts/acme", json!({})).await;
    assert_eq!(s, 403);
    let (s, b) = call(
        &w,
        operator(),
        "POST",
        "/accounts/acme/grants",
        json!({"principal": GLOBEX_ADMIN}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = call(&w, iam(GLOBEX_ADMIN), "GET", "/accounts/acme", json!({})).await;
    assert_eq!(s, 200);
    let (s, b) = call(
        &w,
        operator(),
        "DELETE",
        &format!("/accounts/acme/grants?principal={GLOBEX_ADMIN}"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = call(&w, iam(GLOBEX_ADMIN), "GET", "/accounts/acme", json!({})).await;
    assert_eq!(s, 403);
    // Grants and the account's creation are in acme's trail.
    let (_, b) = acme(&w, "GET", "/accounts/acme/audit", json!({})).await;
    let actions: Vec<&str> = b["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "create-account",
        "grant-access",
        "revoke-access",
        "create-connector",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_exact_and_methods_checked() {
    let w = world(10).await;
    two_customers(&w).await;
    let cases = [
        ("GET", "/accounts//connectors", 400, "empty segment"),
        ("GET", "/accounts/acme/", 400, "empty segment"),
        (
            "GET",
            "/accounts/acme%2Fconnectors",
            400,
            "encoded separator",
        ),
        (
            "GET",
            "/accounts/acme/connectors/ad%2F..%2F..",
            400,
            "encoded separator",
        ),
        ("GET", "/accounts/%2e%2e/connectors", 400, ". or .."),
        ("GET", "/accounts/acme/connectors/a%zz", 400, "malformed"),
        // `+` is a plus in a path, not a space: not an account id.
        ("GET", "/accounts/ac+me", 400, "contains '+'"),
        // `&` does not cut an id short.
        ("GET", "/accounts/acme&x=1/connectors", 400, "contains '&'"),
        ("PUT", "/accounts/acme", 405, "does not take PUT"),
        (
            "DELETE",
            "/accounts/acme/connectors/ad/runs",
            405,
            "does not take DELETE",
        ),
        ("GET", "/accounts/acme/nothing", 404, "docs/api.md"),
    ];
    for (method, path, status, says) in cases {
        let (s, b) = call(&w, operator(), method, path, json!({})).await;
        assert_eq!(s, status, "{method} {path}: {b}");
        assert!(
            b["error"].as_str().unwrap().contains(says),
            "{method} {path}: {b}"
        );
    }
    // Percent-encoded ids are decoded once.
    let (s, b) = call(
        &w,
        operator(),
        "GET",
        "/accounts/%61cme/connectors/a%64",
        json!({}),
    )
    .await;
    assert_eq!((s, &b["id"]), (200, &json!("ad")), "{b}");
    // A body that is not declared JSON is not read as JSON.
    let req = http::Request::builder()
        .method("POST")
        .uri("/accounts/acme/connectors/ad/sync")
        .header("content-type", "text/plain")
        .body(br#"{"full": true}"#.to_vec())
        .unwrap();
    let resp = api::handle(&w.app, req, operator()).await;
    assert_eq!(resp.status(), 400, "{}", resp.body());
    assert!(resp.body().contains("Content-Type: application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_secret_is_not_echoed_anywhere() {
    let w = world(10).await;
    two_customers(&w).await;
    let (_, c) = acme(&w, "GET", "/accounts/acme/connectors/ad", json!({})).await;
    for body in [
        json!("Winter2026!"),
        json!({"value": 87654321, "version": c["version"]}),
        json!({"value": ["Winter2026!"], "version": c["version"]}),
    ] {
        let (s, b) = acme(&w, "PUT", "/accounts/acme/connectors/ad/secret", body).await;
        assert_eq!(s, 400, "{b}");
        let e = b["error"].as_str().unwrap();
        assert!(e.contains("wrong type"), "{e}");
        assert!(!e.contains("Winter2026") && !e.contains("87654321"), "{e}");
    }
    let (s, b) = acme(
        &w,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "ad2", "kind": "ldap-ad", "url": "ldaps://dc.acme",
            "base_dn": "DC=acme", "bind_dn": "svc"}, "secret": 424242}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(!b.to_string().contains("424242"), "{b}");
    let trail = format!("{:?}", table_items(&w.f).await);
    for secret in ["Winter2026", "87654321", "424242"] {
        assert!(!trail.contains(secret), "{secret} reached the table");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_while_a_sync_holds_the_connector_waits_for_it() {
    let w = world(10).await;
    two_customers(&w).await;
    let scope = dirsync_shared::store::Scope::new(
        AccountId::new("acme").unwrap(),
        ConnectorId::new("ad").unwrap(),
    );
    let lease =
        w.f.store
            .acquire_lease(&scope, "run-x", chrono::Duration::minutes(5))
            .await
            .unwrap();
    let before = table_without_audit(&w.f).await;
    let (_, c) = acme(&w, "GET", "/accounts/acme/connectors/ad", json!({})).await;
    for (method, path, body) in [
        (
            "PUT",
            "/accounts/acme/connectors/ad/secret",
            json!({"value": "p2", "version": c["version"]}),
        ),
        (
            "PATCH",
            "/accounts/acme/connectors/ad",
            json!({"version": c["version"], "url": "ldap://127.0.0.1:10", "secret": "p2"}),
        ),
    ] {
        let (s, b) = acme(&w, method, path, body).await;
        assert_eq!(s, 409, "{b}");
        assert!(b["error"].as_str().unwrap().contains("under way"), "{b}");
    }
    assert_eq!(table_without_audit(&w.f).await, before);
    let secret = format!("{}/acme/ad", w.app.settings.secret_prefix);
    let stored = w
        .secrets
        .get(&secret.parse().unwrap(), Stage::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expose(), "acme-password", "the secret is as it was");
    w.f.store.release_lease(&lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_edge_refuses_paths_lambda_http_would_rewrite() {
    let w = world(10).await;
    two_customers(&w).await;
    let fixture = std::fs::read_to_string(format!(
        "{}/../events/http-list-runs.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let event: Value = serde_json::from_str(&fixture).unwrap();
    let sent = event["rawPath"].as_str().unwrap().to_owned();
    for raw in [
        "/accounts/globex/%2e%2e/acme/connectors",
        "/accounts/globex/../acme/connectors",
        "/accounts/acme/connectors/ad/runs/.",
        "/accounts/acme%2Fconnectors",
    ] {
        let req = lambda_http::request::from_str(&fixture.replace(&sent, raw)).unwrap();
        let resp = admin_api::handle(&w.app, req).await;
        assert_eq!(resp.status(), 400, "{raw}");
        let lambda_http::Body::Text(t) = resp.body() else {
            panic!()
        };
        assert!(t.contains("ambiguous"), "{raw}: {t}");
    }
    // The fixture's own path is served (the operator is a platform admin).
    let req = lambda_http::request::from_str(&fixture).unwrap();
    let resp = admin_api::handle(&w.app, req).await;
    assert_ne!(resp.status(), 400, "{sent}");
}

#[test]
fn the_documented_routes_are_the_routers() {
    let doc =
        std::fs::read_to_string(format!("{}/../docs/api.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let documented: BTreeSet<(String, String, String)> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", method, path, who, ..] if path.starts_with('/') => {
                    Some((method.to_string(), path.to_string(), who.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    let routed: BTreeSet<(String, String, String)> = api::routes()
        .iter()
        .map(|r| {
            let who = match r.access {
                Access::Signed => "signed",
                Access::Platform => "platform",
                Access::Account => "account",
            };
            (r.method.to_string(), r.path.to_owned(), who.to_owned())
        })
        .collect();
    assert_eq!(
        documented, routed,
        "docs/api.md lists exactly the router's routes"
    );
}

/// An LDAP server that is not one: it records every byte a client sends.
#[derive(Clone, Default)]
struct Listener {
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Listener {
    async fn start() -> (Self, u16) {
        let l = Listener::default();
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let me = l.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            while let Ok((mut s, _)) = socket.accept().await {
                *me.connections.lock().unwrap() += 1;
                let me = me.clone();
                // The bind request comes in one read; then the connection
                // is dropped, so the client fails at once.
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    if let Ok(n) = s.read(&mut buf).await {
                        me.received.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        (l, port)
    }

    fn saw(&self, needle: &str) -> bool {
        let r = self.received.lock().unwrap();
        r.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_goes_only_where_it_was_given_for() {
    let w = world(10).await;
    two_customers(&w).await;
    let (listener, port) = Listener::start().await;
    let evil = format!("ldap://127.0.0.1:{port}");
    let acme_secret = format!("{}/acme/ad", w.app.settings.secret_prefix);
    let before = table_without_audit(&w.f).await;

    // A connector that names another connector's secret: refused, whoever
    // asks, in any account.
    for (caller, account) in [
        (iam(GLOBEX_ADMIN), "globex"),
        (iam(ACME_ADMIN), "acme"),
        (operator(), "globex"),
    ] {
        let (s, b) = call(
            &w,
            caller,
            "POST",
            &format!("/accounts/{account}/connectors"),
            json!({"connector": {"id": "steal", "kind": "ldap-ad", "url": evil, "transport": "plain-insecure",
                "base_dn": "DC=x", "bind_dn": "x", "password_ref": acme_secret}}),
        )
        .await;
        assert_eq!(s, 400, "{b}");
        assert!(
            b["error"]
                .as_str()
                .unwrap()
                .contains("password_ref cannot be given"),
            "{b}"
        );
    }
    // Moving acme's connector without the secret: refused; its test still
    // goes where it went.
    let (_, c) = acme(&w, "GET", "/accounts/acme/connectors/ad", json!({})).await;
    for change in [
        json!({"url": evil}),
        json!({"bind_dn": "cn=attacker"}),
        json!({"url": "ldap://127.0.0.1:9", "transport": "start-tls"}),
        json!({"ca_certificate": a_ca_pem()}),
    ] {
        let mut body = change.clone();
        body["version"] = c["version"].clone();
        let (s, b) = acme(&w, "PATCH", "/accounts/acme/connectors/ad", body).await;
        assert_eq!(s, 400, "{change}: {b}");
        assert!(
            b["error"].as_str().unwrap().contains("give it again"),
            "{b}"
        );
    }
    // Secret names cannot be changed at all.
    let (s, b) = acme(
        &w,
        "PATCH",
        "/accounts/acme/connectors/ad",
        json!({"version": c["version"], "password_ref": acme_secret}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = acme(&w, "POST", "/accounts/acme/connectors/ad/test", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(listener.connections(), 0, "the listener got nothing");
    assert_eq!(
        table_without_audit(&w.f).await,
        before,
        "only audit records were written"
    );

    // A connector moved behind the API's back (a hand-edited item): its
    // secret is not sent there — nothing connects at all.
    let scope_account = AccountId::new("acme").unwrap();
    let mut moved =
        w.f.store
            .get_connector(&scope_account, &ConnectorId::new("ad").unwrap())
            .await
            .unwrap()
            .unwrap();
    if let SourceConfig::ActiveDirectory { ldap } = &mut moved.source {
        ldap.url = evil.clone();
    }
    let moved = w.f.store.update_connector(&moved).await.unwrap();
    let (s, b) = acme(&w, "POST", "/accounts/acme/connectors/ad/test", json!({})).await;
    assert_eq!((s, &b["ok"]), (200, &json!(false)), "{b}");
    assert!(b.to_string().contains("give the secret again"), "{b}");
    assert_eq!(listener.connections(), 0, "no bind reached the listener");

    // Given without the version read, or with an older one: refused.
    for version in [json!(null), json!(moved.version - 1)] {
        let (s, b) = acme(
            &w,
            "PUT",
            "/accounts/acme/connectors/ad/secret",
            json!({"value": "the-new-password", "version": version}),
        )
        .await;
        assert!(s == 400 || s == 409, "{b}");
    }
    assert_eq!(listener.connections(), 0);
    // Given again for the connector as it now is, the secret goes there,
    // and only the new one (forced: the listener is no directory, so the
    // new secret's own test fails).
    let (s, b) = acme(
        &w,
        "PUT",
        "/accounts/acme/connectors/ad/secret",
        json!({"value": "the-new-password", "version": moved.version, "force": true}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(listener.connections() > 0);
    assert!(listener.saw("the-new-password"));
    assert!(
        !listener.saw("acme-password"),
        "the old secret never went there"
    );
    let stored = w
        .secrets
        .get(&acme_secret.parse().unwrap(), Stage::Current)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.expose(), "the-new-password");
    assert!(
        !b.to_string().contains("the-new-password"),
        "a secret is never echoed"
    );

    // A change with the secret in the same request moves it.
    let (_, c) = acme(&w, "GET", "/accounts/acme/connectors/ad", json!({})).await;
    assert_eq!(c["version"].as_u64(), Some(moved.version + 1));
    let (s, b) = acme(
        &w,
        "PATCH",
        "/accounts/acme/connectors/ad",
        json!({"version": c["version"], "url": "ldap://127.0.0.1:9", "secret": "back-home"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(!b.to_string().contains("back-home"));
    // The audit trail holds every refusal and change, and no secret.
    let trail = table_items(&w.f).await;
    let text = format!("{trail:?}");
    for secret in ["acme-password", "the-new-password", "back-home"] {
        assert!(!text.contains(secret), "{secret} is in the table");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_turns_its_hold_off_and_says_so_in_its_audit() {
    let w = world(10).await;
    two_customers(&w).await;
    let (s, b) = acme(&w, "GET", "/accounts/acme", json!({})).await;
    assert_eq!((s, &b["hold_on_connector_trouble"]), (200, &json!(true)));
    for (body, says) in [
        (json!({}), "nothing to change"),
        (json!({"hold": false}), "unknown field"),
        (
            json!({"hold_on_connector_trouble": "no"}),
            "expected a boolean",
        ),
    ] {
        let (s, b) = acme(&w, "PATCH", "/accounts/acme", body).await;
        assert_eq!(s, 400, "{b}");
        assert!(b["error"].as_str().unwrap().contains(says), "{b}");
    }
    let body = json!({"hold_on_connector_trouble": false});
    let (s, b) = acme(&w, "PATCH", "/accounts/acme", body).await;
    assert_eq!((s, &b["hold_on_connector_trouble"]), (200, &json!(false)));
    let (_, b) = acme(&w, "GET", "/accounts/acme", json!({})).await;
    assert_eq!(b["hold_on_connector_trouble"], json!(false));
    let (_, audit) = acme(&w, "GET", "/accounts/acme/audit", json!({})).await;
    let changed = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "update-account" && r["outcome"] == "succeeded")
        .count();
    assert_eq!(changed, 1, "the change is audited: {audit}");
}

/// A Domino connector of acme on the real OpenLDAP, with its password.
async fn acme_on_openldap(w: &World) -> (String, SecretRef) {
    let env = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} (run infra/test)"));
    let (s, b) = acme(
        w,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "domino", "kind": "ldap-domino", "url": env("DIRSYNC_TEST_DOMINO_URL"),
            "transport": "plain-insecure", "base_dn": env("DIRSYNC_TEST_DOMINO_BASE_DN"),
            "bind_dn": env("DIRSYNC_TEST_DOMINO_BIND_DN")},
            "secret": env("DIRSYNC_TEST_DOMINO_PASSWORD")}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let name = w.app.secret_name(
        &AccountId::new("acme").unwrap(),
        &ConnectorId::new("domino").unwrap(),
    );
    (env("DIRSYNC_TEST_DOMINO_PASSWORD"), name.unwrap())
}

/// `connector add` and a change check Domino's bases and deny group's
/// shape; add does not contact the server, so a deny group that is not
/// there is found by the connection test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domino_bases_are_checked_when_given_and_a_missing_deny_group_by_test() {
    let w = world(10).await;
    two_customers(&w).await;
    let env = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} (run infra/test)"));
    let (s, b) = acme(
        &w,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "bad", "kind": "ldap-domino", "url": env("DIRSYNC_TEST_DOMINO_URL"),
            "transport": "plain-insecure", "base_dn": "o=Dirsync; Sales",
            "bind_dn": env("DIRSYNC_TEST_DOMINO_BIND_DN")},
            "secret": env("DIRSYNC_TEST_DOMINO_PASSWORD")}),
    )
    .await;
    let e = b["error"].as_str().unwrap_or_default();
    assert!(
        s == 400 && e.contains("base_dn") && e.contains("\"Sales\" is not a DN"),
        "{b}"
    );

    acme_on_openldap(&w).await;
    let path = "/accounts/acme/connectors/domino";
    let (_, c) = acme(&w, "GET", path, json!({})).await;
    let bad = json!({"version": c["version"], "deny_access_group": "cn=Deny Access,,o=Dirsync"});
    let (s, b) = acme(&w, "PATCH", path, bad).await;
    assert!(
        s == 400 && b.to_string().contains("deny_access_group"),
        "{b}"
    );
    let change = json!({"version": c["version"],
        "base_dn": "ou=Sales,o=Dirsync; ou=Engineering,o=Dirsync", "deny_access_group": "No Such Group"});
    let (s, b) = acme(&w, "PATCH", path, change).await;
    assert_eq!(s, 200, "{b}");
    let (_, test) = acme(&w, "POST", &format!("{path}/test"), json!({})).await;
    let steps = test["steps"].as_array().unwrap();
    let bases: Vec<&serde_json::Value> = steps.iter().filter(|s| s["name"] == "base DN").collect();
    assert_eq!(bases.len(), 2, "{test}");
    let deny = steps.iter().find(|s| s["name"] == "deny group").unwrap();
    assert_eq!(test["ok"], json!(false), "{test}");
    assert!(
        deny["detail"]
            .as_str()
            .unwrap()
            .contains("deny group \"No Such Group\" not found"),
        "{test}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_refresh_that_fails_its_test_keeps_the_working_secret() {
    let w = world(10).await;
    two_customers(&w).await;
    let (working, name) = acme_on_openldap(&w).await;
    let path = "/accounts/acme/connectors/domino";
    let (_, c) = acme(&w, "GET", path, json!({})).await;
    let wrong = "Not-The-Password-1";
    let body = json!({"value": wrong, "version": c["version"]});
    let (s, b) = acme(&w, "PUT", &format!("{path}/secret"), body).await;
    assert_eq!(s, 422, "{b}");
    let e = b["error"].as_str().unwrap();
    assert!(
        e.contains("current secret stays") && e.contains("bind"),
        "{e}"
    );
    assert!(
        !b.to_string().contains(wrong),
        "the value is never echoed: {b}"
    );
    assert_eq!(b["stored"], json!(false));
    let now = w.secrets.get(&name, Stage::Current).await.unwrap().unwrap();
    assert_eq!(now.expose(), working, "the working secret stays");
    let (_, test) = acme(&w, "POST", &format!("{path}/test"), json!({})).await;
    assert_eq!(test["ok"], json!(true), "and still works: {test}");

    // With force it is stored anyway, and the answer says the test failed.
    let (_, c) = acme(&w, "GET", path, json!({})).await;
    let body = json!({"value": wrong, "version": c["version"], "force": true});
    let (s, b) = acme(&w, "PUT", &format!("{path}/secret"), body).await;
    assert_eq!(
        (s, &b["stored"], &b["test"]["ok"]),
        (200, &json!(true), &json!(false)),
        "{b}"
    );
    let now = w.secrets.get(&name, Stage::Current).await.unwrap().unwrap();
    assert_eq!(now.expose(), wrong);
    // A good value passes its test and is stored.
    let (_, c) = acme(&w, "GET", path, json!({})).await;
    let body = json!({"value": working, "version": c["version"]});
    let (s, b) = acme(&w, "PUT", &format!("{path}/secret"), body).await;
    assert_eq!((s, &b["test"]["ok"]), (200, &json!(true)), "{b}");
}

/// The client secret an Entra legacy connector of acme starts with.
const LEGACY_SECRET: &str = "Lg5~the-working-client-secret";

/// An Entra legacy connector of acme on the simulator: the customer's own
/// app registration, with one client secret, stored. Returns the app's
/// client id, the secret's key id at Entra and its name in the store.
async fn acme_on_entra_legacy(w: &World) -> (Uuid, Uuid, SecretRef) {
    let client = Uuid::new_v4();
    let key = w.sim.add_legacy_app(
        w.tenant,
        client,
        LEGACY_SECRET,
        Utc::now() + chrono::Duration::days(30),
        &["Directory.Read.All"],
    );
    let (s, b) = acme(
        w,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "legacy", "kind": "entra-legacy", "tenant": "contoso.com",
            "client_id": client.to_string(), "acknowledge_disabled": true,
            "authority_url": w.sim.authority_url(), "graph_url": w.sim.graph_url()},
            "secret": LEGACY_SECRET}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let name = w.app.secret_name(
        &AccountId::new("acme").unwrap(),
        &ConnectorId::new("legacy").unwrap(),
    );
    (client, key, name.unwrap())
}

/// A sync of acme's connector `id` now, as the worker runs it (through the
/// app's sources, with their token cache).
async fn sync(w: &World, id: &str) -> SyncRun {
    let job = Job {
        account: AccountId::new("acme").unwrap(),
        connector: ConnectorId::new(id).unwrap(),
        trigger: Trigger::Manual { requested_by: None },
        full: false,
        continues: None,
        due: None,
    };
    match process(&w.app, &job, None).await.unwrap() {
        JobOutcome::Finished(r) => r,
        other => panic!("{other:?}"),
    }
}

/// A secret PUT with the connector's version as read now.
async fn put_secret(w: &World, path: &str, value: &str, force: bool) -> (u16, Value) {
    let (_, c) = acme(w, "GET", path, json!({})).await;
    let body = json!({"value": value, "version": c["version"], "force": force});
    acme(w, "PUT", &format!("{path}/secret"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_legacy_client_secret_is_tested_before_it_is_stored() {
    let w = world(20).await;
    two_customers(&w).await;
    let (client, working_key, name) = acme_on_entra_legacy(&w).await;
    let path = "/accounts/acme/connectors/legacy";
    let stored = || async {
        let v = w.secrets.get(&name, Stage::Current).await.unwrap().unwrap();
        v.expose().to_owned()
    };
    // A sync leaves a token made from the working secret in the app's cache.
    let run = sync(&w, "legacy").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
    assert_eq!(w.sim.stats().sign_ins_with(working_key), 1);

    // A wrong secret is put to Entra, not passed on that cached token, and
    // refused: the answer names the step and Entra's advice, never the value.
    let wrong = "Zq8~not-the-client-secret";
    let tokens = w.sim.stats().route("POST token");
    let (s, b) = put_secret(&w, path, wrong, false).await;
    assert_eq!(s, 422, "{b}");
    let e = b["error"].as_str().unwrap();
    assert!(
        e.contains("current secret stays")
            && e.contains("sign-in: ")
            && e.contains("AADSTS7000215")
            && e.contains("new client secret"),
        "{e}"
    );
    assert_eq!(b["stored"], json!(false), "{b}");
    assert_eq!(
        (&b["test"]["ok"], &b["test"]["steps"][0]["name"]),
        (&json!(false), &json!("sign-in")),
        "{b}"
    );
    assert!(!b.to_string().contains(wrong), "never echoed: {b}");
    assert_eq!(
        w.sim.stats().route("POST token"),
        tokens + 1,
        "the candidate was tested at the token endpoint"
    );
    assert_eq!(stored().await, LEGACY_SECRET, "the working secret stays");
    let run = sync(&w, "legacy").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
    let trail = format!("{:?}", table_items(&w.f).await);
    assert!(!trail.contains(wrong), "the value reached the table");

    // The customer makes a new secret beside the old one: it passes its
    // test, is stored, and the test after storing signs in with it (not on
    // the old secret's cached token).
    let new = "Nw3~the-new-client-secret";
    let new_key = w
        .sim
        .add_client_secret(client, new, Utc::now() + chrono::Duration::days(60));
    let (s, b) = put_secret(&w, path, new, false).await;
    assert_eq!(
        (s, &b["stored"], &b["test"]["ok"]),
        (200, &json!(true), &json!(true)),
        "{b}"
    );
    assert_eq!(stored().await, new);
    assert_eq!(
        w.sim.stats().sign_ins_with(new_key),
        2,
        "signed in with the new secret to test it, and again once stored"
    );
    // The old secret can go: syncs need only the new one.
    w.sim.remove_client_secret(client, working_key);
    let run = sync(&w, "legacy").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
    assert_eq!(w.sim.stats().sign_ins_with(working_key), 1);

    // With force a wrong one is stored anyway; the test after storing puts
    // it to Entra (no token of the secret it replaced stands for it), and
    // syncs use it.
    let (s, b) = put_secret(&w, path, wrong, true).await;
    assert_eq!(
        (s, &b["stored"], &b["test"]["ok"]),
        (200, &json!(true), &json!(false)),
        "{b}"
    );
    assert!(
        b["test"]["steps"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("AADSTS7000215"),
        "{b}"
    );
    assert!(!b.to_string().contains(wrong), "never echoed: {b}");
    assert_eq!(stored().await, wrong);
    let run = sync(&w, "legacy").await;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.message
            .as_deref()
            .unwrap_or_default()
            .contains("AADSTS7000215"),
        "{:?}",
        run.message
    );
    // And the good one back.
    let (s, b) = put_secret(&w, path, new, false).await;
    assert_eq!((s, &b["test"]["ok"]), (200, &json!(true)), "{b}");
    let run = sync(&w, "legacy").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_candidate_client_secret_leaves_no_token_behind() {
    let w = world(20).await;
    two_customers(&w).await;
    let (client, working_key, name) = acme_on_entra_legacy(&w).await;
    let path = "/accounts/acme/connectors/legacy";
    // A secret Entra accepts, whose test fails past the sign-in (Graph is
    // unavailable meanwhile): it got a token, and is not stored.
    let candidate = "Cd6~signs-in-but-not-stored";
    let candidate_key =
        w.sim
            .add_client_secret(client, candidate, Utc::now() + chrono::Duration::days(60));
    w.sim.set_faults(Faults {
        server_error_next: 1000,
        ..Default::default()
    });
    let (s, b) = put_secret(&w, path, candidate, false).await;
    w.sim.set_faults(Faults::default());
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["stored"], json!(false), "{b}");
    assert_eq!(
        (&b["test"]["steps"][0]["ok"], &b["test"]["steps"][1]["name"]),
        (&json!(true), &json!("organization")),
        "{b}"
    );
    assert!(
        b["error"].as_str().unwrap().contains("organization: "),
        "{b}"
    );
    assert!(!b.to_string().contains(candidate), "never echoed: {b}");
    assert_eq!(w.sim.stats().sign_ins_with(candidate_key), 1);
    let now = w.secrets.get(&name, Stage::Current).await.unwrap().unwrap();
    assert_eq!(now.expose(), LEGACY_SECRET);

    // The next token request is the stored secret's: the candidate's token
    // was not kept for the connector.
    let run = sync(&w, "legacy").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
    assert_eq!(
        (
            w.sim.stats().sign_ins_with(working_key),
            w.sim.stats().sign_ins_with(candidate_key)
        ),
        (1, 1),
        "the sync signed in with the working secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_google_key_is_refused_when_it_is_given() {
    let w = world(10).await;
    two_customers(&w).await;
    let oauth_client =
        json!({"installed": {"client_id": "x", "client_secret": "oauth-secret-value"}});
    let (s, b) = acme(
        &w,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "gw", "kind": "google", "admin_email": "admin@acme.com"},
            "secret": oauth_client.to_string()}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("OAuth client file"),
        "{b}"
    );
    assert!(!b.to_string().contains("oauth-secret-value"), "{b}");
    let (s, _) = acme(&w, "GET", "/accounts/acme/connectors/gw", json!({})).await;
    assert_eq!(s, 404, "nothing was created");
}

/// A certificate that parses, to stand for a CA's.
fn a_ca_pem() -> String {
    use dirsync_shared::auth::certificate::{AppCertificate, KeyBits};
    let cert = AppCertificate::generate(
        "ca",
        Utc::now(),
        chrono::Duration::days(1),
        KeyBits::Rsa2048,
    )
    .unwrap();
    let stored: serde_json::Value = serde_json::from_str(cert.to_secret().expose()).unwrap();
    stored["certificate_pem"].as_str().unwrap().to_owned()
}
