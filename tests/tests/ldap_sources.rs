//! The LDAP sources against real servers started by the test command: a
//! Samba Active Directory domain controller and OpenLDAP with Domino-style
//! entries. Full and incremental syncs, TLS (LDAPS and StartTLS), and the
//! errors people see.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use common::before_unids::BeforeUnids;
use common::{Backend, Fixture, fixture};
use dirsync_shared::domain::*;
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use dirsync_shared::source::ldap::LdapSource;
use dirsync_shared::source::ldap::conn::Limits;
use dirsync_shared::source::{
    Change, ConnectionReport, ConnectionStep, DirectorySource, Next, ReadFrom, Stream,
};
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
    search(
        ldap,
        &env("DIRSYNC_TEST_AD_BASE_DN"),
        LdapScope::Subtree,
        filter,
        attrs,
    )
    .await
}

async fn search(
    ldap: &mut ldap3::Ldap,
    base: &str,
    scope: LdapScope,
    filter: &str,
    attrs: Vec<&str>,
) -> Vec<SearchEntry> {
    let (entries, _) = ldap
        .search(base, scope, filter, attrs)
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
async fn active_directory_full_sync_matches_the_directory() {
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
    let report = source.test_connection().await;
    assert!(report.ok, "{report:?}");
    let r = run(&f, &c, &source, false).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let stored = users(&f, &c).await;
    assert!(stored.len() >= 10, "{} people", stored.len());
    assert!(
        r.warnings.iter().any(|w| w.kind == WarningKind::NoAddress),
        "people without mail are reported"
    );
    // Kept by dominoUNID, the DN an attribute.
    for u in &stored {
        assert_eq!(u.id.as_str().len(), 32, "{}", u.id);
        assert!(u.attributes["distinguishedName"].ends_with(",o=Dirsync"));
    }
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

/// The tests that read the whole domain, or add objects to it, one at a
/// time: the first would see the second's objects come and go.
static DOMAIN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn groups(f: &Fixture, c: &Connector) -> Vec<Group> {
    let s = Scope::new(c.account.clone(), c.id.clone());
    all_pages(|p| f.store.list_groups(&s, p)).await.unwrap()
}

async fn member_ids(f: &Fixture, c: &Connector, group: &SourceId) -> HashSet<String> {
    let s = Scope::new(c.account.clone(), c.id.clone());
    all_pages(|p| f.store.group_members(&s, group, p))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.member.to_string())
        .collect()
}

fn named<'a>(groups: &'a [Group], name: &str) -> &'a Group {
    groups
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no group named {name:?}"))
}

/// Every stored membership names a stored user or group.
async fn assert_no_dangling_member(f: &Fixture, c: &Connector) {
    let mut known: HashSet<String> = users(f, c).await.iter().map(|u| u.id.to_string()).collect();
    let groups = groups(f, c).await;
    known.extend(groups.iter().map(|g| g.id.to_string()));
    for g in &groups {
        for m in member_ids(f, c, &g.id).await {
            assert!(known.contains(&m), "{}: member {m} is not stored", g.name);
        }
    }
}

/// A group's primaryGroupToken: the RID its primary members name.
async fn rid_of(ldap: &mut ldap3::Ldap, dn: &str) -> String {
    let e = search(
        ldap,
        dn,
        LdapScope::Base,
        "(objectClass=*)",
        vec!["primaryGroupToken"],
    )
    .await;
    first(&e[0], "primaryGroupToken").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_groups_are_complete_named_and_scoped() {
    let _domain = DOMAIN.lock().await;
    let f = fixture(Backend::Embedded).await;
    let domain = env("DIRSYNC_TEST_AD_DOMAIN_DN");
    let c = ad_connector(
        &env("DIRSYNC_TEST_AD_LDAPS_URL"),
        json!({"base_dn": domain}),
    );
    let source = LdapSource::for_connector(&c, secrets(&env("DIRSYNC_TEST_AD_PASSWORD"))).unwrap();
    let r = run(&f, &c, &source, true).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);

    // Ground truth: each stored user's primary group, and the groups'
    // own member lists.
    let mut ldap = admin().await;
    let people = search(
        &mut ldap,
        &domain,
        LdapScope::Subtree,
        "(&(objectCategory=person)(objectClass=user))",
        vec!["objectGUID", "primaryGroupID"],
    )
    .await;
    let stored: HashSet<String> = users(&f, &c)
        .await
        .iter()
        .map(|u| u.id.to_string())
        .collect();
    let expected = |rid: &str, listed: &[&str]| -> HashSet<String> {
        people
            .iter()
            .filter(|e| {
                first(e, "primaryGroupID").as_deref() == Some(rid)
                    || listed.iter().any(|dn| dn.eq_ignore_ascii_case(&e.dn))
            })
            .map(guid_of)
            .filter(|id| stored.contains(id))
            .collect()
    };
    let groups = groups(&f, &c).await;
    for (name, dn) in [
        ("Domain Users", format!("CN=Domain Users,CN=Users,{domain}")),
        (
            "Contractors",
            format!("CN=Contractors,OU=Groups,OU=Dirsync,{domain}"),
        ),
    ] {
        let rid = rid_of(&mut ldap, &dn).await;
        let e = search(
            &mut ldap,
            &dn,
            LdapScope::Base,
            "(objectClass=*)",
            vec!["member"],
        )
        .await;
        let listed = dirsync_shared::source::ldap::map::all(&e[0], "member");
        let want = expected(&rid, &listed);
        let got = member_ids(&f, &c, &named(&groups, name).id).await;
        assert_eq!(got, want, "{name}: its primary members and its listed ones");
    }
    let domain_users = member_ids(&f, &c, &named(&groups, "Domain Users").id).await;
    assert!(
        domain_users.len() > 1500,
        "{} in Domain Users",
        domain_users.len()
    );
    let contractors = member_ids(&f, &c, &named(&groups, "Contractors").id).await;
    assert_eq!(
        contractors.len(),
        20,
        "Contractors' member attribute is empty in AD"
    );

    // Named by cn, exactly; the other names kept; scope and type kept.
    let rnd = named(&groups, "R&D, Berlin");
    assert_eq!(rnd.attributes["sAMAccountName"], "rnd-berlin");
    assert_eq!(
        rnd.attributes["distinguishedName"],
        format!("CN=R&D\\, Berlin,OU=Groups,OU=Dirsync,{domain}")
    );
    let scoped = [
        ("R&D, Berlin", GroupScope::DomainLocal, GroupKind::Security),
        ("Équipe Qualité", GroupScope::Universal, GroupKind::Security),
        (
            "Partner Newsletter",
            GroupScope::Universal,
            GroupKind::Distribution,
        ),
        ("Sales", GroupScope::Global, GroupKind::Distribution),
        ("Domain Users", GroupScope::Global, GroupKind::Security),
        (
            "Administrators",
            GroupScope::DomainLocal,
            GroupKind::Security,
        ),
    ];
    for (name, scope, kind) in scoped {
        let g = named(&groups, name);
        assert_eq!((g.scope, g.kind), (Some(scope), kind), "{name}");
    }
    assert_eq!(
        named(&groups, "Équipe Qualité").attributes["sAMAccountName"],
        "equipe-qualite"
    );

    // The contact is not kept, so it is no member: the newsletter's five
    // users only.
    let newsletter = member_ids(&f, &c, &named(&groups, "Partner Newsletter").id).await;
    assert_eq!(newsletter.len(), 5);
    assert_no_dangling_member(&f, &c).await;
}

/// Objects of one test in an OU of their own outside the seeded ones, so
/// the test can change them freely and runs again on the same domain.
struct Sandbox {
    ou: String,
    tag: String,
}

impl Sandbox {
    async fn new(ldap: &mut ldap3::Ldap) -> Self {
        let tag = format!(
            "dirsync-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let ou = format!("OU={tag},{}", env("DIRSYNC_TEST_AD_DOMAIN_DN"));
        add(ldap, &ou, &[("objectClass", &["organizationalUnit"])]).await;
        Self { ou, tag }
    }

    /// A user with a mail address, tagged so the connector's filter finds it.
    async fn user(&self, ldap: &mut ldap3::Ldap, name: &str) -> String {
        let dn = format!("CN={name},{}", self.ou);
        let mail = format!("{name}.{}@dirsync.test", self.tag);
        let sam = format!("{name}-{}", &self.tag[13..]);
        add(
            ldap,
            &dn,
            &[
                ("objectClass", &["user"]),
                ("sAMAccountName", &[&sam]),
                ("mail", &[&mail]),
                ("department", &[&self.tag]),
                ("userAccountControl", &["512"]),
            ],
        )
        .await;
        dn
    }

    /// Removes every object of the sandbox: users first (AD refuses to
    /// delete a group that is still someone's primary group), then the
    /// deepest first.
    async fn remove(self, ldap: &mut ldap3::Ldap) {
        let filter = "(objectClass=*)";
        let mut all = search(
            ldap,
            &self.ou,
            LdapScope::Subtree,
            filter,
            vec!["objectClass"],
        )
        .await;
        let user = |e: &SearchEntry| {
            dirsync_shared::source::ldap::map::all(e, "objectClass").contains(&"user")
        };
        all.sort_by_key(|e| (!user(e), std::cmp::Reverse(e.dn.len())));
        for e in all {
            ldap.delete(&e.dn).await.unwrap().success().unwrap();
        }
    }
}

async fn add(ldap: &mut ldap3::Ldap, dn: &str, attrs: &[(&str, &[&str])]) {
    let attrs = attrs
        .iter()
        .map(|(k, v)| (*k, v.iter().copied().collect::<HashSet<&str>>()))
        .collect();
    ldap.add(dn, attrs).await.unwrap().success().unwrap();
}

async fn replace(ldap: &mut ldap3::Ldap, dn: &str, attr: &str, value: &str) {
    let m = Mod::Replace(attr, HashSet::from([value]));
    ldap.modify(dn, vec![m]).await.unwrap().success().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_incremental_reads_follow_users_and_primary_groups() {
    let _domain = DOMAIN.lock().await;
    let mut ldap = admin().await;
    let sandbox = Sandbox::new(&mut ldap).await;
    let [a, b, c, gone] = ["ann", "bob", "cy", "gone"].map(|n| n.to_owned());
    let mut dns = Vec::new();
    for name in [&a, &b, &c, &gone] {
        dns.push(sandbox.user(&mut ldap, name).await);
    }
    let team = format!("CN=Team,{}", sandbox.ou);
    add(
        &mut ldap,
        &team,
        &[
            ("objectClass", &["group"]),
            ("sAMAccountName", &[&format!("team-{}", &sandbox.tag[13..])]),
            ("description", &[&sandbox.tag]),
            ("member", &[&dns[0], &dns[1]]),
        ],
    )
    .await;
    // The sandbox's users and groups, and Domain Users, from the whole domain.
    let f = fixture(Backend::Embedded).await;
    let conn = ad_connector(
        &env("DIRSYNC_TEST_AD_LDAPS_URL"),
        json!({"base_dn": env("DIRSYNC_TEST_AD_DOMAIN_DN"),
               "user_filter": format!("(department={})", sandbox.tag),
               "group_filter": format!("(|(cn=Domain Users)(description={}))", sandbox.tag)}),
    );
    let source =
        LdapSource::for_connector(&conn, secrets(&env("DIRSYNC_TEST_AD_PASSWORD"))).unwrap();
    let r = run(&f, &conn, &source, false).await;
    assert_eq!(
        (r.status, r.mode),
        (RunStatus::Succeeded, SyncMode::Full),
        "{:?}",
        r.message
    );

    let mut guid = HashMap::new();
    for (name, dn) in [&a, &b, &c, &gone].into_iter().zip(&dns) {
        let e = search(
            &mut ldap,
            dn,
            LdapScope::Base,
            "(objectClass=*)",
            vec!["objectGUID"],
        )
        .await;
        guid.insert(name.clone(), guid_of(&e[0]));
    }
    let ids =
        |names: &[&String]| -> HashSet<String> { names.iter().map(|n| guid[*n].clone()).collect() };
    let members_of = |name: &'static str| {
        let (f, conn) = (&f, &conn);
        async move { member_ids(f, conn, &named(&groups(f, conn).await, name).id).await }
    };
    assert_eq!(
        members_of("Domain Users").await,
        ids(&[&a, &b, &c, &gone]),
        "primary members"
    );
    assert_eq!(members_of("Team").await, ids(&[&a, &b]));

    // Ann's primary group becomes Team (AD moves her from Team's member to
    // Domain Users'); Bob is disabled; Cy gains an alias; a new user joins
    // Domain Users without Domain Users changing; one user is deleted.
    let rid = rid_of(&mut ldap, &team).await;
    replace(&mut ldap, &dns[0], "primaryGroupID", &rid).await;
    replace(&mut ldap, &dns[1], "userAccountControl", "514").await;
    let alias = format!("smtp:extra.{}@dirsync.test", sandbox.tag);
    let m = Mod::Add("proxyAddresses", HashSet::from([alias.as_str()]));
    ldap.modify(&dns[2], vec![m])
        .await
        .unwrap()
        .success()
        .unwrap();
    let new = "new".to_owned();
    let new_dn = sandbox.user(&mut ldap, &new).await;
    let e = search(
        &mut ldap,
        &new_dn,
        LdapScope::Base,
        "(objectClass=*)",
        vec!["objectGUID"],
    )
    .await;
    guid.insert(new.clone(), guid_of(&e[0]));
    ldap.delete(&dns[3]).await.unwrap().success().unwrap();

    let r = run(&f, &conn, &source, false).await;
    assert_eq!(
        (r.status, r.mode),
        (RunStatus::Succeeded, SyncMode::Delta),
        "{:?}",
        r.message
    );
    let ids =
        |names: &[&String]| -> HashSet<String> { names.iter().map(|n| guid[*n].clone()).collect() };
    assert_eq!(
        members_of("Team").await,
        ids(&[&a, &b]),
        "Ann is Team's by her primary group"
    );
    assert_eq!(
        members_of("Domain Users").await,
        ids(&[&a, &b, &c, &new]),
        "Ann listed, the new user by primary group, the deleted one gone"
    );
    let stored = users(&f, &conn).await;
    let user = |n: &String| stored.iter().find(|u| u.id.as_str() == guid[n]).unwrap();
    assert!(!user(&b).enabled, "disabled");
    let extra = format!("extra.{}@dirsync.test", sandbox.tag);
    assert!(
        user(&c).aliases.contains(&extra.parse().unwrap()),
        "alias added"
    );
    assert!(
        stored.iter().any(|u| u.id.as_str() == guid[&gone]),
        "a delta read cannot see the deletion"
    );
    assert_no_dangling_member(&f, &conn).await;

    // The full read (the 23:00 window) sweeps it.
    let r = run(&f, &conn, &source, true).await;
    assert_eq!(r.counts.removed, 1, "{:?}", r.counts);
    assert!(
        !users(&f, &conn)
            .await
            .iter()
            .any(|u| u.id.as_str() == guid[&gone])
    );
    assert_eq!(members_of("Domain Users").await, ids(&[&a, &b, &c, &new]));
    sandbox.remove(&mut ldap).await;
}

// ---- Domino: the whole directory, several bases, the deny list ---------------

/// Domino tests that add entries, or compare two syncs, hold this: a sync
/// must not see another test's groups come and go.
static DOMINO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn domino_connector(id: &str, extra: serde_json::Value) -> Connector {
    let mut spec = json!({
        "id": id, "kind": "ldap-domino", "url": env("DIRSYNC_TEST_DOMINO_URL"), "transport": "plain-insecure",
        "bind_dn": env("DIRSYNC_TEST_DOMINO_BIND_DN"), "password_ref": PASSWORD_REF,
        "acknowledge_disabled": true, "base_dn": env("DIRSYNC_TEST_DOMINO_BASE_DN"),
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let spec: ConnectorSpec = serde_json::from_value(spec).unwrap();
    // An account each: two connectors of one account cannot both own an
    // address.
    spec.validate(AccountId::new(id).unwrap(), Utc::now())
        .unwrap()
}

fn domino_source(c: &Connector, page_size: i32) -> LdapSource {
    LdapSource::for_connector(c, secrets(&env("DIRSYNC_TEST_DOMINO_PASSWORD")))
        .unwrap()
        .with_limits(Limits {
            page_size,
            ..Limits::default()
        })
}

/// The directory's administrator, for entries added by a test.
async fn domino_admin() -> ldap3::Ldap {
    let (conn, mut ldap) =
        LdapConnAsync::with_settings(LdapConnSettings::new(), &env("DIRSYNC_TEST_DOMINO_URL"))
            .await
            .unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(
        &env("DIRSYNC_TEST_DOMINO_ADMIN_DN"),
        &env("DIRSYNC_TEST_DOMINO_ADMIN_PASSWORD"),
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap
}

/// The Internet addresses of the people under `base`.
async fn domino_mail_under(base: &str) -> HashSet<String> {
    let mut ldap = domino_admin().await;
    search(
        &mut ldap,
        base,
        LdapScope::Subtree,
        "(&(objectClass=dominoPerson)(mail=*))",
        vec!["mail"],
    )
    .await
    .iter()
    .filter_map(|e| first(e, "mail"))
    .collect()
}

/// What a sync stored, by content rather than by id: each user's address
/// and whether enabled, each group's name and its members' addresses or
/// names.
async fn synced(
    f: &Fixture,
    c: &Connector,
) -> (HashSet<(String, bool)>, HashSet<(String, String)>) {
    let users = users(f, c).await;
    let by_id: HashMap<String, String> = users
        .iter()
        .map(|u| (u.id.to_string(), u.primary_email.to_string()))
        .collect();
    let groups = groups(f, c).await;
    let group_names: HashMap<String, String> = groups
        .iter()
        .map(|g| (g.id.to_string(), g.name.clone()))
        .collect();
    let mut members = HashSet::new();
    for g in &groups {
        for m in member_ids(f, c, &g.id).await {
            let who = by_id.get(&m).or(group_names.get(&m)).cloned().unwrap_or(m);
            members.insert((g.name.clone(), who));
        }
    }
    let users = users
        .iter()
        .map(|u| (u.primary_email.to_string(), u.enabled))
        .collect();
    (users, members)
}

/// How many entries `filter` selects under `base`.
async fn domino_count(base: &str, filter: &str) -> usize {
    let mut ldap = domino_admin().await;
    search(&mut ldap, base, LdapScope::Subtree, filter, vec!["1.1"])
        .await
        .len()
}

/// The naming contexts the server's rootDSE names (OpenLDAP: its
/// databases' suffixes).
async fn naming_contexts() -> Vec<String> {
    let mut ldap = domino_admin().await;
    let root = search(
        &mut ldap,
        "",
        LdapScope::Base,
        "(objectClass=*)",
        vec!["namingContexts"],
    )
    .await;
    dirsync_shared::source::ldap::map::all(&root[0], "namingContexts")
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn disabled(users: &[User]) -> HashSet<String> {
    users
        .iter()
        .filter(|u| !u.enabled)
        .map(|u| u.primary_email.to_string())
        .collect()
}

fn step<'a>(report: &'a ConnectionReport, name: &str) -> Vec<&'a ConnectionStep> {
    report.steps.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_domino_base_dn_reads_the_whole_directory() {
    let _directory = DOMINO.lock().await;
    let f = fixture(Backend::Embedded).await;
    // The server serves a tree from the root (the Domino-shaped one, with
    // no common root: two organizations and groups at the root), and says
    // so in its naming contexts: a blank base searches from there.
    assert!(naming_contexts().await.contains(&String::new()));
    // No base_dn at all: the whole directory is the default.
    let whole = domino_connector(
        "whole",
        json!({"base_dn": null, "deny_access_group": "Deny Access"}),
    );
    let SourceConfig::Domino { ldap, .. } = &whole.source else {
        panic!()
    };
    assert_eq!(ldap.base_dn, "");
    let r = run(&f, &whole, &domino_source(&whole, 500), true).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env("DIRSYNC_TEST_DOMINO_ROOT_MANIFEST")).unwrap(),
    )
    .unwrap();
    let counts = &manifest["counts"];
    let users = users(&f, &whole).await;
    assert_eq!(
        users.len() as u64,
        counts["people_with_mail"].as_u64().unwrap()
    );
    let groups = groups(&f, &whole).await;
    assert_eq!(groups.len() as u64, counts["groups"].as_u64().unwrap());
    let (_, members) = synced(&f, &whole).await;
    assert!(
        members.iter().any(|(g, _)| g == "All Staff"),
        "memberships of the root-level groups"
    );
    // Every alias as the manifest lists it (extra cn values, lower-cased,
    // once, never the primary).
    let people = manifest["people"].as_array().unwrap();
    let mail_of = |dn: &str| -> Option<String> {
        people
            .iter()
            .find(|p| p["dn"] == dn)
            .and_then(|p| p["mail"].as_str())
            .map(str::to_owned)
    };
    let by_mail: HashMap<String, &User> = users
        .iter()
        .map(|u| (u.primary_email.to_string(), u))
        .collect();
    let mut mismatches = Vec::new();
    for p in people {
        let Some(mail) = p["mail"].as_str().filter(|m| !m.contains('%')) else {
            continue;
        };
        let u = by_mail
            .get(mail)
            .unwrap_or_else(|| panic!("{mail} ({}) was not synced", p["dn"]));
        let want: BTreeSet<String> = p["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let got: BTreeSet<String> = u.aliases.iter().map(ToString::to_string).collect();
        if got != want {
            mismatches.push((u.primary_email.to_string(), want, got));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} alias mismatches: {mismatches:?}",
        mismatches.len()
    );
    // The deny list through its nested groups, by name.
    let denied: BTreeSet<String> = manifest["deny_members_expanded"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|dn| mail_of(dn.as_str().unwrap()))
        .collect();
    assert!(denied.len() >= 10, "{denied:?}");
    let disabled: BTreeSet<String> = disabled(&users).into_iter().collect();
    assert_eq!(disabled, denied);
    // Member values written another way than their entries still match.
    for m in manifest["escaped_memberships"].as_array().unwrap() {
        let group = m["group"].as_str().unwrap().trim_start_matches("cn=");
        let member = mail_of(m["entry_dn"].as_str().unwrap()).expect("an addressed person");
        assert!(
            members.contains(&(group.to_owned(), member.clone())),
            "{m} as ({group}, {member})"
        );
    }
    for org in ["o=acme", "o=acmeeu"] {
        assert!(
            users.iter().any(|u| u.attributes["distinguishedName"]
                .to_lowercase()
                .ends_with(org)),
            "people of {org}"
        );
    }
    // Identified by dominoUNID, each as the manifest has it.
    let unids: HashSet<&str> = people
        .iter()
        .chain(manifest["groups"].as_array().unwrap())
        .map(|p| p["dominoUNID"].as_str().unwrap())
        .collect();
    for id in users
        .iter()
        .map(|u| &u.id)
        .chain(groups.iter().map(|g| &g.id))
    {
        assert!(unids.contains(id.as_str()), "{id} is no dominoUNID");
    }

    let report = domino_source(&whole, 1000).test_connection().await;
    assert!(report.ok, "{report:?}");
    let bases = step(&report, "base DN");
    assert!(bases[0].detail.contains("whole directory"), "{bases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_domino_bases_see_their_people_and_resume_in_the_right_base() {
    let f = fixture(Backend::Embedded).await;
    let (sales, engineering) = ("ou=Sales,o=Dirsync", "ou=Engineering,o=Dirsync");
    let c = domino_connector("two", json!({"base_dn": format!("{sales}; {engineering}")}));
    let want_sales = domino_mail_under(sales).await;
    let want_eng = domino_mail_under(engineering).await;
    assert!(want_sales.len() >= 10 && want_eng.len() >= 10);

    // Page by page, each read by a new source (a new invocation): a
    // continuation begins its base again, never the first base.
    let mut from = ReadFrom::Full;
    let (mut seen, mut bases_seen) = (HashSet::new(), Vec::new());
    let mut in_engineering = false;
    for read in 0.. {
        assert!(read < 100, "the stream makes no progress");
        let page = domino_source(&c, 4)
            .read(Stream::Users, &from)
            .await
            .unwrap();
        for change in &page.changes {
            if let Change::User(u) = change {
                let mail = u.primary_email.to_string();
                assert!(
                    !(in_engineering && want_sales.contains(&mail)),
                    "{mail}: Sales re-read after the stream moved on to Engineering"
                );
                seen.insert(mail);
            }
        }
        match page.next {
            Next::Page(p) => {
                let position: serde_json::Value = serde_json::from_str(&p).unwrap();
                let base = position["base"].as_str().unwrap().to_owned();
                in_engineering = base == engineering;
                if bases_seen.last() != Some(&base) {
                    bases_seen.push(base);
                }
                from = ReadFrom::Continue(p);
            }
            Next::Done { .. } => break,
        }
    }
    assert_eq!(bases_seen, [sales, engineering]);
    let want: HashSet<String> = want_sales.union(&want_eng).cloned().collect();
    assert_eq!(seen, want, "exactly the people of the two OUs");

    // A sync in pages of 4: the same people, each once.
    let r = run(&f, &c, &domino_source(&c, 4), true).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let stored: Vec<String> = users(&f, &c)
        .await
        .iter()
        .map(|u| u.primary_email.to_string())
        .collect();
    assert_eq!(stored.len(), want.len());
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), want);

    let report = domino_source(&c, 1000).test_connection().await;
    assert!(report.ok, "{report:?}");
    let details: Vec<&str> = step(&report, "base DN")
        .iter()
        .map(|s| s.detail.as_str())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    let people = domino_count(sales, "(objectClass=dominoPerson)").await;
    assert!(details[0].starts_with(&format!("{sales} exists: {people} people")));
    assert!(details[1].starts_with(&format!("{engineering} exists:")));

    // A base under another is read once, with it.
    let nested = domino_connector("nested", json!({"base_dn": format!("{sales}; o=Dirsync")}));
    let r = run(&f, &nested, &domino_source(&nested, 4), true).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(
        users(&f, &nested).await.len(),
        domino_mail_under("o=Dirsync").await.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_group_given_by_its_domino_name_disables_its_members() {
    let f = fixture(Backend::Embedded).await;
    let by_dn = domino_connector(
        "dn",
        json!({"deny_access_group": env("DIRSYNC_TEST_DOMINO_DENY_GROUP")}),
    );
    let by_name = domino_connector("name", json!({"deny_access_group": "Deny Access"}));
    for c in [&by_dn, &by_name] {
        let r = run(&f, c, &domino_source(c, 1000), true).await;
        assert_eq!(r.status, RunStatus::Succeeded, "{}: {:?}", c.id, r.message);
    }
    let denied = disabled(&users(&f, &by_dn).await);
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert_eq!(disabled(&users(&f, &by_name).await), denied);
    let report = domino_source(&by_name, 1000).test_connection().await;
    let deny = step(&report, "deny group");
    assert!(
        report.ok
            && deny[0]
                .detail
                .contains("cn=Deny Access,o=Dirsync denies 2 of the people"),
        "{report:?}"
    );
}

/// Groups added for one test, removed when it ends.
struct Added(Vec<String>);

impl Added {
    async fn group(&mut self, ldap: &mut ldap3::Ldap, cn: &str, members: &[&str]) -> String {
        let dn = format!("cn={cn},o=Dirsync");
        let names = [cn];
        let mut attrs: Vec<(&str, &[&str])> =
            vec![("objectClass", &["dominoGroup"]), ("cn", &names)];
        if !members.is_empty() {
            attrs.push(("member", members));
        }
        add(ldap, &dn, &attrs).await;
        self.0.push(dn.clone());
        dn
    }

    async fn remove(self, ldap: &mut ldap3::Ldap) {
        for dn in self.0.iter().rev() {
            ldap.delete(dn).await.unwrap().success().unwrap();
        }
    }
}

/// The DN of the person with this Internet address.
async fn person(ldap: &mut ldap3::Ldap, mail: &str) -> String {
    let filter = format!("(mail={mail})");
    search(ldap, "o=Dirsync", LdapScope::Subtree, &filter, vec!["1.1"]).await[0]
        .dn
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_deny_groups_disable_their_members_and_a_cycle_ends() {
    let _directory = DOMINO.lock().await;
    let f = fixture(Backend::Embedded).await;
    let mut ldap = domino_admin().await;
    let mut people = Vec::new();
    for mail in domino_mail_under("ou=Support,o=Dirsync")
        .await
        .iter()
        .take(4)
    {
        people.push((mail.clone(), person(&mut ldap, mail).await));
    }
    let dn = |i: usize| people[i].1.as_str();
    let mut added = Added(Vec::new());
    // Deny Nested ⊃ Terminations 2025 ⊃ Leavers Q4; the two inner
    // groups also name each other, and the outer one.
    let leavers = "cn=Leavers Q4,o=Dirsync";
    let outer = "cn=Deny Nested,o=Dirsync";
    let terminations = added
        .group(&mut ldap, "Terminations 2025", &[dn(1), leavers, outer])
        .await;
    added
        .group(&mut ldap, "Leavers Q4", &[dn(2), &terminations])
        .await;
    added
        .group(&mut ldap, "Deny Nested", &[dn(0), &terminations])
        .await;

    let c = domino_connector("nested", json!({"deny_access_group": "Deny Nested"}));
    let r = run(&f, &c, &domino_source(&c, 1000), true).await;
    let stored = users(&f, &c).await;
    added.remove(&mut ldap).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let want: HashSet<String> = people[..3].iter().map(|(m, _)| m.clone()).collect();
    assert_eq!(
        disabled(&stored),
        want,
        "the members of all three groups, once"
    );
    assert!(
        stored
            .iter()
            .any(|u| u.primary_email.as_str() == people[3].0 && u.enabled)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_group_that_is_not_there_fails_sync_and_test_clearly() {
    let f = fixture(Backend::Embedded).await;
    for (id, given) in [
        ("name", "No Such Group"),
        ("dn", "cn=No Such Group,o=Dirsync"),
    ] {
        let c = domino_connector(id, json!({"deny_access_group": given}));
        let says = format!("deny group {given:?} not found");
        let report = domino_source(&c, 1000).test_connection().await;
        let failed: Vec<&ConnectionStep> = report.steps.iter().filter(|s| !s.ok).collect();
        assert!(!report.ok && failed.len() == 1, "{report:?}");
        assert_eq!(failed[0].name, "deny group");
        assert!(failed[0].detail.contains(&says), "{report:?}");
        let r = run(&f, &c, &domino_source(&c, 1000), true).await;
        assert_eq!(r.status, RunStatus::Failed, "{given}");
        let message = r.message.unwrap_or_default();
        assert!(message.contains(&says), "{message}");
        assert!(users(&f, &c).await.is_empty(), "nothing stored");
    }
}

fn root_manifest() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(env("DIRSYNC_TEST_DOMINO_ROOT_MANIFEST")).unwrap(),
    )
    .unwrap()
}

/// The Domino-shaped directory's administrator.
async fn domino_root_admin() -> ldap3::Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(&env("DIRSYNC_TEST_DOMINO_ROOT_URL"))
        .await
        .unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(
        &env("DIRSYNC_TEST_DOMINO_ROOT_ADMIN_DN"),
        &env("DIRSYNC_TEST_DOMINO_ROOT_ADMIN_PASSWORD"),
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap
}

/// A DN's first RDN and its parent ("" at the root); the DNs renamed here
/// have no escaped commas.
fn rdn_and_parent(dn: &str) -> (&str, &str) {
    dn.split_once(',').unwrap_or((dn, ""))
}

/// Applies the manifest's documented renames and moves (a person renamed,
/// moved between OUs, moved to the other organization; a group renamed),
/// or undoes them; the directory's referential integrity rewrites the
/// member values that name them, as Domino does.
async fn domino_changes(forward: bool) {
    let mut ldap = domino_root_admin().await;
    for c in root_manifest()["changes"].as_array().unwrap() {
        let (old, new) = (c["dn"].as_str().unwrap(), c["new_dn"].as_str().unwrap());
        let (from, to) = if forward { (old, new) } else { (new, old) };
        let (rdn, parent) = rdn_and_parent(to);
        let superior = (parent != rdn_and_parent(from).1).then_some(parent);
        ldap.modifydn(from, rdn, true, superior)
            .await
            .unwrap()
            .success()
            .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    }
    member_values_rewritten(forward).await;
}

/// Waits until no group names the old DNs any more: the directory's
/// referential integrity rewrites member values after it has answered
/// (as Domino's administration process does, later still).
async fn member_values_rewritten(forward: bool) {
    let mut ldap = domino_root_admin().await;
    for _ in 0..100 {
        let mut stale = 0;
        for c in root_manifest()["changes"].as_array().unwrap() {
            let old = c[if forward { "dn" } else { "new_dn" }].as_str().unwrap();
            let filter = format!("(member={})", ldap3::ldap_escape(old));
            let (found, _) = ldap
                .search("", LdapScope::Subtree, &filter, vec!["1.1"])
                .await
                .unwrap()
                .success()
                .unwrap();
            stale += found.len();
        }
        if stale == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("member values still name the DNs before the changes after 10 s");
}

/// Whether the documented changes are applied (a test stopped before
/// undoing them).
async fn domino_changed() -> bool {
    let first = &root_manifest()["changes"][0];
    let mut ldap = domino_root_admin().await;
    let dn = first["new_dn"].as_str().unwrap();
    let found = ldap
        .search(dn, LdapScope::Base, "(objectClass=*)", vec!["1.1"])
        .await
        .unwrap()
        .success();
    found.is_ok_and(|(entries, _)| !entries.is_empty())
}

fn no_removals_or_creations(r: &SyncRun) {
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let c = &r.counts;
    assert_eq!(
        (c.created, c.removed, c.members_added, c.members_removed),
        (0, 0, 0, 0),
        "{c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domino_renames_and_moves_keep_ids_and_dn_keyed_connectors_migrate() {
    let _directory = DOMINO.lock().await;
    if domino_changed().await {
        domino_changes(false).await;
    }
    let f = fixture(Backend::Embedded).await;
    let mut c = domino_connector(
        "renames",
        json!({"base_dn": null, "deny_access_group": "Deny Access"}),
    );
    // As stored before dominoUNID was read: keyed by DN.
    let SourceConfig::Domino { identity, .. } = &mut c.source else {
        panic!()
    };
    *identity = DominoIdentity::Dn;
    let account = Account::new(c.account.clone(), "Renames", Region::Europe, Utc::now()).unwrap();
    f.store.create_account(&account).await.unwrap();
    let c = f.store.create_connector(&c).await.unwrap();
    let r = run(&f, &c, &BeforeUnids(domino_source(&c, 500)), true).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert!(
        users(&f, &c)
            .await
            .iter()
            .all(|u| u.id.as_str().contains("o=acme"))
    );
    let before = synced(&f, &c).await;
    let (n_users, n_groups) = (users(&f, &c).await.len(), groups(&f, &c).await.len());

    // The next run re-keys first: nothing removed or created; each user
    // updated once, for the DN it now keeps as an attribute.
    let r = run(&f, &c, &domino_source(&c, 500), true).await;
    no_removals_or_creations(&r);
    assert_eq!(r.counts.updated, n_users as u64, "{:?}", r.counts);
    let again = run(&f, &c, &domino_source(&c, 500), true).await;
    no_removals_or_creations(&again);
    assert_eq!(
        again.counts.updated, 0,
        "then nothing changes: {:?}",
        again.counts
    );
    let note = r
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::IdsMigrated)
        .expect("the run says the connector was re-keyed");
    assert!(
        note.detail
            .contains(&format!("{n_users} users and {n_groups} groups")),
        "{}",
        note.detail
    );
    let stored = f
        .store
        .get_connector(&c.account, &c.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.source.keyed_by_legacy_ids());
    assert_eq!(synced(&f, &c).await, before);
    let m = root_manifest();
    let unid_of: HashMap<&str, &str> = m["people"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["mail"].as_str()?, p["dominoUNID"].as_str().unwrap())))
        .collect();
    for u in users(&f, &c).await {
        assert_eq!(
            u.id.as_str(),
            unid_of[u.primary_email.as_str()],
            "{}",
            u.primary_email
        );
    }

    // Renamed and moved between runs: the same ids, updated in place.
    domino_changes(true).await;
    let r = run(&f, &stored, &domino_source(&stored, 500), true).await;
    no_removals_or_creations(&r);
    let changes = m["changes"].as_array().unwrap();
    assert_eq!(r.counts.updated, changes.len() as u64, "{:?}", r.counts);
    let s = Scope::new(c.account.clone(), c.id.clone());
    for ch in changes {
        let id = SourceId::new(ch["dominoUNID"].as_str().unwrap()).unwrap();
        let dn = match f.store.get_user(&s, &id).await.unwrap() {
            Some(u) => u.attributes["distinguishedName"].clone(),
            None => {
                let g = f.store.get_group(&s, &id).await.unwrap().expect("kept");
                g.attributes["distinguishedName"].clone()
            }
        };
        assert!(
            dn.eq_ignore_ascii_case(ch["new_dn"].as_str().unwrap()),
            "{ch}: {dn}"
        );
    }
    let (users_now, members_now) = synced(&f, &c).await;
    assert_eq!(users_now, before.0);
    let renamed = |(g, m): &(String, String)| {
        let g = if g == "Project A" { "Project Alpha" } else { g };
        (g.to_owned(), m.clone())
    };
    assert_eq!(
        members_now,
        before.1.iter().map(renamed).collect::<HashSet<_>>()
    );

    // And back: the same ids again.
    domino_changes(false).await;
    let r = run(&f, &stored, &domino_source(&stored, 500), true).await;
    no_removals_or_creations(&r);
    assert_eq!(r.counts.updated, changes.len() as u64, "{:?}", r.counts);
    assert_eq!(synced(&f, &c).await, before);
}
