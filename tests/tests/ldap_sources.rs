//! The LDAP sources against real servers started by the test command: a
//! Samba Active Directory domain controller and OpenLDAP with Domino-style
//! entries. Full and incremental syncs, TLS (LDAPS and StartTLS), and the
//! errors people see.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use common::{Backend, Fixture, fixture};
use dirsync_shared::domain::*;
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use dirsync_shared::source::DirectorySource;
use dirsync_shared::source::ldap::LdapSource;
use dirsync_shared::store::{Scope, all_pages};
use ldap3::{LdapConnAsync, LdapConnSettings, Mod, Scope as LdapScope, SearchEntry};
use serde_json::json;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `infra/test`, which installs and starts Samba AD and OpenLDAP")
    })
}

const PASSWORD_REF: &str = "dirsync/test/ldap-password";

fn secrets(password: &str) -> Arc<LocalSecretStore> {
    let s = Arc::new(LocalSecretStore::in_memory());
    s.set(
        &PASSWORD_REF.parse().unwrap(),
        Stage::Current,
        SecretValue::new(password),
    );
    s
}

fn ad_connector(url: &str, extra: serde_json::Value) -> Connector {
    let mut spec = json!({
        "id": "ad", "kind": "ldap-ad", "url": url, "base_dn": env("DIRSYNC_TEST_AD_BASE_DN"),
        "bind_dn": env("DIRSYNC_TEST_AD_BIND_DN"), "password_ref": PASSWORD_REF,
        "ca_certificate": std::fs::read_to_string(env("DIRSYNC_TEST_AD_CA")).unwrap(),
        "acknowledge_disabled": true,
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let spec: ConnectorSpec = serde_json::from_value(spec).unwrap();
    spec.validate(AccountId::new("acme").unwrap(), Utc::now())
        .unwrap()
}

async fn run(f: &Fixture, c: &Connector, source: &dyn DirectorySource, full: bool) -> SyncRun {
    let engine = SyncEngine::new(f.store.clone(), EngineSettings::default());
    let request = RunRequest {
        full,
        ..RunRequest::new(Trigger::Manual { requested_by: None })
    };
    match engine.run(c, source, request).await.unwrap() {
        RunOutcome::Finished(r) => r,
        other => panic!("{other:?}"),
    }
}

/// An administrator's session on the AD, for changes between syncs.
async fn admin() -> ldap3::Ldap {
    let (conn, mut ldap) =
        LdapConnAsync::with_settings(LdapConnSettings::new(), &env("DIRSYNC_TEST_AD_URL"))
            .await
            .unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(
        &env("DIRSYNC_TEST_AD_ADMIN_DN"),
        &env("DIRSYNC_TEST_AD_ADMIN_PASSWORD"),
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap
}

async fn ad_entries(ldap: &mut ldap3::Ldap, filter: &str, attrs: Vec<&str>) -> Vec<SearchEntry> {
    let (entries, _) = ldap
        .search(
            &env("DIRSYNC_TEST_AD_BASE_DN"),
            LdapScope::Subtree,
            filter,
            attrs,
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    entries.into_iter().map(SearchEntry::construct).collect()
}

fn guid_of(e: &SearchEntry) -> String {
    dirsync_shared::source::ldap::map::object_guid(e).unwrap()
}

fn first(e: &SearchEntry, a: &str) -> Option<String> {
    dirsync_shared::source::ldap::map::first(e, a).map(str::to_owned)
}

async fn users(f: &Fixture, c: &Connector) -> Vec<User> {
    let s = Scope::new(c.account.clone(), c.id.clone());
    all_pages(|p| f.store.list_users(&s, p)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_full_and_incremental_syncs_match_the_directory() {
    let f = fixture(Backend::Embedded).await;
    let secrets = secrets(&env("DIRSYNC_TEST_AD_PASSWORD"));
    let c = ad_connector(&env("DIRSYNC_TEST_AD_LDAPS_URL"), json!({}));
    let source = LdapSource::for_connector(&c, secrets.clone()).unwrap();

    let r = run(&f, &c, &source, false).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.mode, SyncMode::Full);

    // Ground truth, read as the administrator.
    let mut ldap = admin().await;
    let people = ad_entries(
        &mut ldap,
        "(&(objectCategory=person)(objectClass=user))",
        vec!["objectGUID", "mail", "proxyAddresses", "userAccountControl"],
    )
    .await;
    let with_address: Vec<&SearchEntry> = people
        .iter()
        .filter(|e| {
            first(e, "mail").is_some()
                || dirsync_shared::source::ldap::map::all(e, "proxyAddresses")
                    .iter()
                    .any(|p| p.starts_with("SMTP:"))
        })
        .collect();
    let stored = users(&f, &c).await;
    assert_eq!(
        stored.len(),
        with_address.len(),
        "every user with an address, and only those"
    );
    assert!(
        r.warnings.iter().any(|w| w.kind == WarningKind::NoAddress),
        "users without mail are reported"
    );
    let ids: HashSet<String> = stored.iter().map(|u| u.id.to_string()).collect();
    for e in &with_address {
        assert!(
            ids.contains(&guid_of(e)),
            "{} is stored under its objectGUID",
            e.dn
        );
    }
    let disabled: Vec<&SearchEntry> = with_address
        .iter()
        .copied()
        .filter(|e| {
            first(e, "userAccountControl")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|u| u & 2 != 0)
        })
        .collect();
    assert!(!disabled.is_empty());
    for e in &disabled {
        let u = stored.iter().find(|u| u.id.as_str() == guid_of(e)).unwrap();
        assert!(!u.enabled, "{} is disabled", e.dn);
    }
    assert!(
        stored.iter().any(|u| !u.aliases.is_empty()),
        "smtp: aliases are kept"
    );

    // The big group: more than 1,500 members, all stored.
    let scope = Scope::new(c.account.clone(), c.id.clone());
    let groups = ad_entries(
        &mut ldap,
        "(objectClass=group)",
        vec!["objectGUID", "member"],
    )
    .await;
    let big = groups
        .iter()
        .max_by_key(|g| dirsync_shared::source::ldap::map::all(g, "member").len())
        .unwrap();
    let big_id = SourceId::new(guid_of(big)).unwrap();
    let members = all_pages(|p| f.store.group_members(&scope, &big_id, p))
        .await
        .unwrap();
    assert!(members.len() > 1500, "{} members", members.len());
    let mut nested = false;
    for g in &groups {
        let id = SourceId::new(guid_of(g)).unwrap();
        let ms = all_pages(|p| f.store.group_members(&scope, &id, p))
            .await
            .unwrap();
        nested |= ms.iter().any(|m| m.member_kind == MemberKind::Group);
    }
    assert!(
        nested,
        "a group inside a group is kept as a nested membership"
    );

    // Changes as the administrator: a user disabled, an alias added, a
    // member removed, a user deleted.
    let (a, b, gone) = (with_address[0], with_address[1], with_address[2]);
    let a_uac: u32 = first(a, "userAccountControl").unwrap().parse().unwrap();
    ldap.modify(
        &a.dn,
        vec![Mod::Replace(
            "userAccountControl",
            HashSet::from([(a_uac | 2).to_string().as_str()]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.modify(
        &b.dn,
        vec![Mod::Add(
            "proxyAddresses",
            HashSet::from(["smtp:extra.alias@corp.dirsync.test"]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let member_dn = dirsync_shared::source::ldap::map::all(big, "member")[0].to_owned();
    ldap.modify(
        &big.dn,
        vec![Mod::Delete("member", HashSet::from([member_dn.as_str()]))],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.delete(&gone.dn).await.unwrap().success().unwrap();

    let r = run(&f, &c, &source, false).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(
        r.mode,
        SyncMode::Delta,
        "incremental: changes above the stored USN"
    );
    let stored = users(&f, &c).await;
    assert!(
        !stored
            .iter()
            .find(|u| u.id.as_str() == guid_of(a))
            .unwrap()
            .enabled,
        "disabled"
    );
    let b_user = stored.iter().find(|u| u.id.as_str() == guid_of(b)).unwrap();
    assert!(
        b_user
            .aliases
            .contains(&"extra.alias@corp.dirsync.test".parse().unwrap()),
        "alias added"
    );
    let members_after = all_pages(|p| f.store.group_members(&scope, &big_id, p))
        .await
        .unwrap();
    // One removed by hand; the deleted user left the group with it (AD
    // drops a deleted user's memberships).
    assert_eq!(members_after.len(), members.len() - 2, "member removed");
    assert!(
        stored.iter().any(|u| u.id.as_str() == guid_of(gone)),
        "a delta read cannot see the deletion"
    );

    // The full read (the 23:00 window) sweeps it.
    let r = run(&f, &c, &source, true).await;
    assert_eq!(r.counts.removed, 1, "{:?}", r.counts);
    assert!(
        !users(&f, &c)
            .await
            .iter()
            .any(|u| u.id.as_str() == guid_of(gone))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_plain_words_for_a_wrong_password() {
    let f = fixture(Backend::Embedded).await;
    // StartTLS on the plain port, verified against the private CA.
    let c = ad_connector(
        &env("DIRSYNC_TEST_AD_URL").replace("127.0.0.1", "localhost"),
        json!({"transport": "start-tls"}),
    );
    let source = LdapSource::for_connector(&c, secrets(&env("DIRSYNC_TEST_AD_PASSWORD"))).unwrap();
    let report = source.test_connection().await;
    assert!(report.ok, "{report:?}");

    // Without the CA the certificate is refused, and the message says why.
    let mut untrusted = c.clone();
    if let SourceConfig::ActiveDirectory { ldap } = &mut untrusted.source {
        ldap.ca_certificate = None;
    }
    let report = LdapSource::for_connector(&untrusted, secrets(&env("DIRSYNC_TEST_AD_PASSWORD")))
        .unwrap()
        .test_connection()
        .await;
    assert!(!report.ok);
    assert!(report.steps[0].detail.contains("certificate"), "{report:?}");

    // A wrong password: AD's data 52e in plain words, never the password.
    let wrong = secrets("Not-the-password-1");
    let report = LdapSource::for_connector(&c, wrong)
        .unwrap()
        .test_connection()
        .await;
    assert!(!report.ok);
    assert!(
        report.steps[0].detail.contains("password is wrong"),
        "{report:?}"
    );
    assert!(!format!("{report:?}").contains("Not-the-password-1"));
    let r = run(
        &f,
        &c,
        &LdapSource::for_connector(&c, secrets("Not-the-password-1")).unwrap(),
        false,
    )
    .await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(r.message.as_deref().unwrap().contains("password is wrong"));
    // A wrong base DN.
    let mut lost = c.clone();
    if let SourceConfig::ActiveDirectory { ldap } = &mut lost.source {
        ldap.base_dn = format!("OU=Nowhere,{}", env("DIRSYNC_TEST_AD_DOMAIN_DN"));
    }
    let report = LdapSource::for_connector(&lost, secrets(&env("DIRSYNC_TEST_AD_PASSWORD")))
        .unwrap()
        .test_connection()
        .await;
    assert!(
        !report.ok && report.steps.iter().any(|s| s.detail.contains("base DN")),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domino_people_groups_and_the_deny_access_group() {
    let f = fixture(Backend::Embedded).await;
    let spec: ConnectorSpec = serde_json::from_value(json!({
        "id": "domino", "kind": "ldap-domino", "url": env("DIRSYNC_TEST_DOMINO_URL"), "transport": "plain-insecure",
        "base_dn": env("DIRSYNC_TEST_DOMINO_BASE_DN"), "bind_dn": env("DIRSYNC_TEST_DOMINO_BIND_DN"),
        "password_ref": PASSWORD_REF, "deny_access_group": env("DIRSYNC_TEST_DOMINO_DENY_GROUP"),
        "acknowledge_disabled": true,
    }))
    .unwrap();
    let c = spec
        .validate(AccountId::new("acme").unwrap(), Utc::now())
        .unwrap();
    let source =
        LdapSource::for_connector(&c, secrets(&env("DIRSYNC_TEST_DOMINO_PASSWORD"))).unwrap();
    assert!(source.test_connection().await.ok);
    let r = run(&f, &c, &source, false).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let stored = users(&f, &c).await;
    assert!(stored.len() >= 10, "{} people", stored.len());
    assert!(
        r.warnings.iter().any(|w| w.kind == WarningKind::NoAddress),
        "people without mail are reported"
    );
    let disabled = stored.iter().filter(|u| !u.enabled).count();
    assert_eq!(disabled, 2, "the deny-access group's members are disabled");
    let scope = Scope::new(c.account.clone(), c.id.clone());
    let groups = all_pages(|p| f.store.list_groups(&scope, p)).await.unwrap();
    let nested = futures::future::join_all(groups.iter().map(|g| {
        let store = f.store.clone();
        let scope = scope.clone();
        let id = g.id.clone();
        async move {
            all_pages(|p| store.group_members(&scope, &id, p))
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(
        nested
            .iter()
            .flatten()
            .any(|m| m.member_kind == MemberKind::Group),
        "a group inside a group"
    );
}

/// Seed 001's password refresh: update the password, it is stored, a
/// connection test runs, and its result is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_refresh_flow_through_the_admin_api() {
    let w = common::world::world(10).await;
    w.account("acme", Region::Europe).await;
    let call = |method: &'static str, path: String, body: serde_json::Value| {
        let app = &w.app;
        async move {
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
            let resp = dirsync_shared::app::api::handle(
                app,
                req,
                dirsync_shared::app::Caller::operator("test"),
            )
            .await;
            (
                resp.status().as_u16(),
                serde_json::from_str::<serde_json::Value>(resp.body()).unwrap(),
            )
        }
    };
    let (s, b) = call(
        "POST",
        "/accounts/acme/connectors".into(),
        json!({"connector": {"id": "ad", "kind": "ldap-ad", "url": env("DIRSYNC_TEST_AD_LDAPS_URL"),
            "base_dn": env("DIRSYNC_TEST_AD_BASE_DN"), "bind_dn": env("DIRSYNC_TEST_AD_BIND_DN"),
            "ca_certificate": std::fs::read_to_string(env("DIRSYNC_TEST_AD_CA")).unwrap()},
            "secret": "an-old-password"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, report) = call(
        "POST",
        "/accounts/acme/connectors/ad/test".into(),
        json!({}),
    )
    .await;
    assert_eq!(report["ok"], false);
    assert!(
        report["steps"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("password is wrong"),
        "{report}"
    );
    let (_, c) = call("GET", "/accounts/acme/connectors/ad".into(), json!({})).await;
    let (s, b) = call(
        "PUT",
        "/accounts/acme/connectors/ad/secret".into(),
        json!({"value": env("DIRSYNC_TEST_AD_PASSWORD"), "version": c["version"]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["stored"], true);
    assert_eq!(b["test"]["ok"], true, "{b}");
    assert!(
        !b.to_string().contains(&env("DIRSYNC_TEST_AD_PASSWORD")),
        "the password is never returned"
    );
}
