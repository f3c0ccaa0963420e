//! The LDAP source bounded: a server that stalls or hands out ranges that
//! do not move forward fails the run with nothing changed (throw-away
//! hostile listeners); a read stopped after any page, or cut at an
//! invocation's deadline, continues in a new invocation with a new source
//! and ends equal to the directory (the real OpenLDAP server).

mod common;

#[path = "common/ldap_listener.rs"]
mod ldap_listener;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use common::before_unids::BeforeUnids;
use common::{Backend, Fixture, fixture};
use dirsync_shared::domain::*;
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use dirsync_shared::source::ldap::LdapSource;
use dirsync_shared::source::ldap::conn::Limits;
use dirsync_shared::source::{
    ConnectionReport, DirectorySource, ReadFrom, RequestStats, SourceError, SourcePage, Stream,
};
use dirsync_shared::store::Scope;
use ldap_listener::{Entry, Fault, Listener};
use serde_json::json;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `infra/test`, which installs and starts OpenLDAP"
        )
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

/// A Domino connector (plain LDAP) on `url`, for `account`.
fn domino(account: &str, url: &str, base: &str, bind: &str) -> Connector {
    let spec: ConnectorSpec = serde_json::from_value(json!({
        "id": "domino", "kind": "ldap-domino", "url": url, "transport": "plain-insecure",
        "base_dn": base, "bind_dn": bind, "password_ref": PASSWORD_REF,
        "acknowledge_disabled": true,
    }))
    .unwrap();
    spec.validate(AccountId::new(account).unwrap(), Utc::now())
        .unwrap()
}

/// The seeded OpenLDAP (Domino-style) directory.
fn openldap(account: &str) -> Connector {
    domino(
        account,
        &env("DIRSYNC_TEST_DOMINO_URL"),
        &env("DIRSYNC_TEST_DOMINO_BASE_DN"),
        &env("DIRSYNC_TEST_DOMINO_BIND_DN"),
    )
}

fn openldap_source(c: &Connector, page_size: i32) -> LdapSource {
    LdapSource::for_connector(c, secrets(&env("DIRSYNC_TEST_DOMINO_PASSWORD")))
        .unwrap()
        .with_limits(Limits {
            page_size,
            ..Limits::default()
        })
}

fn engine(f: &Fixture) -> SyncEngine {
    let settings = EngineSettings {
        deadline_margin: Duration::ZERO,
        ..Default::default()
    };
    SyncEngine::new(f.store.clone(), settings)
}

fn full() -> RunRequest {
    RunRequest {
        full: true,
        ..RunRequest::new(Trigger::Manual { requested_by: None })
    }
}

async fn run(f: &Fixture, c: &Connector, source: &dyn DirectorySource) -> SyncRun {
    match engine(f).run(c, source, full()).await.unwrap() {
        RunOutcome::Finished(r) => r,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

/// What the store holds for a connector: users, groups and memberships.
#[derive(Debug, PartialEq)]
struct State {
    users: BTreeMap<String, User>,
    groups: BTreeMap<String, Group>,
    members: BTreeSet<(String, String)>,
}

async fn state(f: &Fixture, c: &Connector) -> State {
    let common::rows::Stored {
        users,
        groups,
        members,
    } = common::rows::stored(f, c).await;
    // Times of the last write differ between runs; the content may not.
    let key = |id: &SourceId| id.to_string();
    State {
        users: users.into_iter().map(|u| (key(&u.id), u)).collect(),
        groups: groups.into_iter().map(|g| (key(&g.id), g)).collect(),
        members,
    }
}

// ---- hostile listeners ---------------------------------------------------------

const BASE: &str = "o=Hostile";

/// Five people and a group of all of them (its members come in three
/// ranges of two).
fn hostile_directory() -> Vec<Entry> {
    people_directory(5)
}

/// `n` people and a group of all of them.
fn people_directory(n: usize) -> Vec<Entry> {
    let people: Vec<String> = (1..=n).map(|i| format!("cn=Person {i},{BASE}")).collect();
    let mut entries: Vec<Entry> = people
        .iter()
        .enumerate()
        .map(|(i, dn)| {
            let mail = format!("person{}@hostile.test", i + 1);
            Entry::new(
                dn,
                &[
                    ("objectClass", &["dominoPerson"]),
                    ("cn", &[dn[3..].split(',').next().unwrap()]),
                    ("mail", &[mail.as_str()]),
                ],
            )
        })
        .collect();
    let members: Vec<&str> = people.iter().map(String::as_str).collect();
    entries.push(Entry::new(
        &format!("cn=Everyone,{BASE}"),
        &[
            ("objectClass", &["dominoGroup"]),
            ("cn", &["Everyone"]),
            ("member", &members),
        ],
    ));
    entries
}

/// A source on a listener: pages of two.
fn listener_source(c: &Connector, timeout: Duration) -> LdapSource {
    LdapSource::for_connector(c, secrets("a-password"))
        .unwrap()
        .with_limits(Limits {
            timeout,
            page_size: 2,
        })
}

/// A connector on a hostile listener, synced once while it behaves: the
/// store holds the whole directory before the fault.
async fn synced_on_listener(
    f: &Fixture,
    timeout: Duration,
) -> (Listener, Connector, LdapSource, State) {
    let listener = Listener::start(hostile_directory()).await;
    let c = domino("acme", &listener.url, BASE, &format!("cn=Reader,{BASE}"));
    let source = listener_source(&c, timeout);
    let r = run(f, &c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let before = state(f, &c).await;
    assert_eq!((before.users.len(), before.members.len()), (5, 5));
    (listener, c, source, before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_mid_search_fails_the_run_within_its_timeout_changing_nothing() {
    let f = fixture(Backend::Dynamo).await;
    let timeout = Duration::from_secs(1);
    let (listener, c, source, before) = synced_on_listener(&f, timeout).await;

    // The first page (two people) comes, then one entry of the second,
    // then silence. Taken as the end, the full read would sweep three users.
    listener.set_fault(Fault::StallAfter(3));
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), run(&f, &c, &source))
        .await
        .expect("the run ends although the server stalls");
    let took = started.elapsed();
    assert_eq!(r.status, RunStatus::Failed);
    let message = r.message.unwrap();
    // The people search's second page, or the read of every DN that the
    // groups stream makes at the same time: each stalls in its second page.
    assert!(
        message.contains("did not answer the ") && message.contains(" within 1 s"),
        "names the operation and the limit: {message}"
    );
    assert!(took < timeout * 4, "failed within its timeout ({took:?})");
    assert_eq!(state(&f, &c).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_repeats_a_member_range_fails_the_run_changing_nothing() {
    let f = fixture(Backend::Dynamo).await;
    let (listener, c, source, before) = synced_on_listener(&f, Duration::from_secs(5)).await;

    // Asked for the members from 2 on, it answers 0-1 again: followed, the
    // read would loop; stopped there, the group would lose three members.
    listener.set_fault(Fault::RepeatRange);
    let r = tokio::time::timeout(Duration::from_secs(20), run(&f, &c, &source))
        .await
        .expect("the run ends: a repeated range is not followed");
    assert_eq!(r.status, RunStatus::Failed);
    let message = r.message.unwrap();
    assert!(
        message.contains("member;range=0-1") && message.contains("does not start where asked"),
        "{message}"
    );
    assert_eq!(state(&f, &c).await, before, "nothing changed");
}

// ---- stops and continuations on the real server ---------------------------------

/// A source that counts its reads, can die at one of them (the read never
/// returns: the process is gone) and can make each read slow.
struct Probe {
    inner: LdapSource,
    reads: AtomicUsize,
    die_at: Option<usize>,
    delay: Duration,
    died: tokio::sync::Notify,
}

impl Probe {
    fn new(inner: LdapSource) -> Self {
        Self {
            inner,
            reads: AtomicUsize::new(0),
            die_at: None,
            delay: Duration::ZERO,
            died: tokio::sync::Notify::new(),
        }
    }
}

#[async_trait]
impl DirectorySource for Probe {
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if self.die_at == Some(n) {
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.delay).await;
        self.inner.read(stream, from).await
    }

    fn stats(&self) -> Option<RequestStats> {
        self.inner.stats()
    }

    async fn test_connection(&self) -> ConnectionReport {
        self.inner.test_connection().await
    }
}

const SMALL_PAGES: i32 = 3;

/// The OpenLDAP directory synced in one go (small pages), and how many
/// reads that took.
async fn baseline(f: &Fixture) -> (State, usize) {
    let c = openldap("baseline");
    let probe = Probe::new(openldap_source(&c, SMALL_PAGES));
    let r = run(f, &c, &probe).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let want = state(f, &c).await;
    assert!(want.users.len() >= 10 && !want.members.is_empty());
    (want, probe.reads.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldap_read_stopped_after_every_page_resumes_to_the_same_state() {
    let f = fixture(Backend::Embedded).await;
    let (want, reads) = baseline(&f).await;
    assert!(reads >= 5, "a sync of several pages ({reads} reads)");

    for k in 1..=reads {
        let c = openldap(&format!("crash{k}"));
        let mut dying = Probe::new(openldap_source(&c, SMALL_PAGES));
        dying.die_at = Some(k);
        let e = engine(&f);
        // The process dies while reading page k: the run is dropped there.
        tokio::select! {
            r = e.run(&c, &dying, full()) => panic!("read {k}: the run ended: {r:?}"),
            () = dying.died.notified() => {}
        }
        // A new invocation, with a new source, once the lease has expired.
        f.clock.advance(chrono::Duration::minutes(11));
        let fresh = openldap_source(&c, SMALL_PAGES);
        let r = match e
            .run(&c, &fresh, RunRequest::new(Trigger::Continuation))
            .await
        {
            Ok(RunOutcome::Finished(r)) => r,
            other => panic!("read {k}: {other:?}"),
        };
        assert_eq!(r.status, RunStatus::Succeeded, "read {k}: {:?}", r.message);
        assert_eq!(state(&f, &c).await, want, "stopped at read {k}");
    }
}

/// Runs a full sync in invocations of 100 ms, each a new process with a
/// new source (reads of 40 ms), calling `between` after each paused one.
async fn in_short_invocations(
    f: &Fixture,
    c: &Connector,
    new_source: impl Fn() -> LdapSource,
    mut between: impl FnMut(usize),
) -> (SyncRun, usize) {
    let e = engine(f);
    let mut request = full();
    for invocation in 1..50 {
        let mut probe = Probe::new(new_source());
        probe.delay = Duration::from_millis(40);
        request.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(100));
        match e.run(c, &probe, request.clone()).await.unwrap() {
            RunOutcome::Continue { .. } => request = RunRequest::new(Trigger::Continuation),
            RunOutcome::Finished(r) => return (r, invocation),
            other => panic!("{other:?}"),
        }
        between(invocation);
    }
    panic!("the run makes no progress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldap_read_cut_at_the_deadline_continues_in_a_new_invocation() {
    let f = fixture(Backend::Embedded).await;
    let (want, _) = baseline(&f).await;
    let c = openldap("acme");
    let (r, invocations) =
        in_short_invocations(&f, &c, || openldap_source(&c, SMALL_PAGES), |_| {}).await;
    assert!(invocations >= 3, "cut at the deadline ({invocations})");
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(state(&f, &c).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_changes_between_invocations_loses_no_one() {
    let f = fixture(Backend::Embedded).await;
    let (listener, c, _, before) = synced_on_listener(&f, Duration::from_secs(5)).await;
    // After the first invocation (which applied at least the first page:
    // Persons 1 and 2) Person 1 leaves, and every later entry moves up one.
    // A continuation that skipped the entries already read by count would
    // pass over one person it never saw, and the sweep would remove them.
    let gone = format!("cn=Person 1,{BASE}");
    let (r, invocations) = in_short_invocations(
        &f,
        &c,
        || listener_source(&c, Duration::from_secs(5)),
        |i| {
            if i == 1 {
                listener.remove(&gone);
            }
        },
    )
    .await;
    assert!(invocations >= 2, "continued ({invocations} invocations)");
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    // The leaver was seen earlier in this run, so this run keeps them.
    assert_eq!(r.counts.removed, 0, "{:?}", r.counts);
    let after = state(&f, &c).await;
    assert_eq!(after.users, before.users, "everyone is kept");
    // The next full read removes the leaver, and only them.
    let r = run(&f, &c, &listener_source(&c, Duration::from_secs(5))).await;
    assert_eq!((r.status, r.counts.removed), (RunStatus::Succeeded, 1));
    let key = dirsync_shared::source::ldap::map::dn_key(&gone);
    assert!(!state(&f, &c).await.users.contains_key(&key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_limit_fails_the_run_with_advice_changing_nothing() {
    let f = fixture(Backend::Dynamo).await;
    let (listener, c, source, before) = synced_on_listener(&f, Duration::from_secs(5)).await;
    for (rc, name) in [
        (3, "timeLimitExceeded"),
        (4, "sizeLimitExceeded"),
        (11, "adminLimitExceeded"),
    ] {
        // The page's entries come, then the server says it stopped at a
        // limit: never a complete read (which would sweep the rest).
        listener.set_fault(Fault::Answer(rc));
        let r = run(&f, &c, &source).await;
        assert_eq!(r.status, RunStatus::Failed, "result {rc}");
        let message = r.message.unwrap();
        assert!(
            message.contains(name) && message.contains("raise"),
            "{message}"
        );
        assert_eq!(state(&f, &c).await, before, "result {rc}: nothing changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_people_leaving_stages_the_run_and_it_removes_no_membership() {
    let f = fixture(Backend::Dynamo).await;
    let listener = Listener::start(people_directory(30)).await;
    let c = domino("acme", &listener.url, BASE, &format!("cn=Reader,{BASE}"));
    let source = || listener_source(&c, Duration::from_secs(5));
    let r = run(&f, &c, &source()).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let before = state(&f, &c).await;
    assert_eq!((before.users.len(), before.members.len()), (30, 30));
    // Twenty leave: the group's complete member list no longer names them.
    for i in 1..=20 {
        listener.remove(&format!("cn=Person {i},{BASE}"));
    }
    let staged = run(&f, &c, &source()).await;
    assert_eq!(staged.status, RunStatus::Staged, "{:?}", staged.message);
    let message = staged.message.clone().unwrap_or_default();
    assert!(
        message.contains("group Everyone would lose 20 of its 30 members"),
        "{message}"
    );
    assert_eq!(state(&f, &c).await, before, "a staged run changes no row");
    // Approved, exactly those rows go, and the counts say so.
    let s = Scope::new(c.account.clone(), c.id.clone());
    let approved = engine(&f).approve(&s, &staged.id, None).await.unwrap();
    let after = state(&f, &c).await;
    assert_eq!((after.users.len(), after.members.len()), (10, 10));
    assert_eq!(
        (approved.counts.removed, approved.counts.members_removed),
        (20, 20),
        "{:?}",
        approved.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_without_a_domino_unid_is_kept_by_dn_and_the_run_says_so() {
    let f = fixture(Backend::Embedded).await;
    let mut entries = people_directory(3);
    let unid = "0123456789ABCDEF0123456789abcdef";
    entries.push(Entry::new(
        &format!("cn=Person 4,{BASE}"),
        &[
            ("objectClass", &["dominoPerson"]),
            ("cn", &["Person 4"]),
            ("mail", &["person4@hostile.test"]),
            ("dominoUNID", &[unid]),
        ],
    ));
    let listener = Listener::start(entries).await;
    let c = domino("acme", &listener.url, BASE, &format!("cn=Reader,{BASE}"));
    let r = run(&f, &c, &listener_source(&c, Duration::from_secs(5))).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let s = state(&f, &c).await;
    let ids: BTreeSet<&str> = s.users.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            "cn=person 1,o=hostile",
            "cn=person 2,o=hostile",
            "cn=person 3,o=hostile",
            "0123456789ABCDEF0123456789ABCDEF",
        ])
    );
    let unstable: BTreeSet<&str> = r
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::NoStableId)
        .map(|w| w.object.as_str())
        .collect();
    // Three people and the group.
    assert_eq!(unstable.len(), 4, "{:?}", r.warnings);
    assert!(unstable.contains(format!("cn=Everyone,{BASE}").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_keying_supersedes_a_staged_list_that_names_the_old_ids() {
    let f = fixture(Backend::Embedded).await;
    let mut entries = people_directory(30);
    for (i, e) in entries.iter_mut().enumerate() {
        e.attrs
            .push(("dominoUNID".into(), vec![format!("{:032X}", i + 1)]));
    }
    let listener = Listener::start(entries).await;
    let mut c = domino("acme", &listener.url, BASE, &format!("cn=Reader,{BASE}"));
    let SourceConfig::Domino { identity, .. } = &mut c.source else {
        panic!()
    };
    *identity = DominoIdentity::Dn;
    let source = || listener_source(&c, Duration::from_secs(5));
    let r = run(&f, &c, &BeforeUnids(source())).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    for i in 1..=20 {
        listener.remove(&format!("cn=Person {i},{BASE}"));
    }
    let staged = run(&f, &c, &BeforeUnids(source())).await;
    assert_eq!(staged.status, RunStatus::Staged, "{:?}", staged.message);

    // The next run re-keys first: the staged list, by DN, can no longer
    // be approved; the run stages the same removals by dominoUNID.
    let again = run(&f, &c, &source()).await;
    assert_eq!(again.status, RunStatus::Staged, "{:?}", again.message);
    let s = Scope::new(c.account.clone(), c.id.clone());
    let old = f.store.get_run(&s, &staged.id).await.unwrap().unwrap();
    assert_eq!(old.status, RunStatus::Superseded);
    assert!(old.message.unwrap().contains("re-keyed"));
    let refused = engine(&f).approve(&s, &staged.id, None).await.unwrap_err();
    assert!(refused.to_string().contains("superseded"), "{refused}");
    let approved = engine(&f).approve(&s, &again.id, None).await.unwrap();
    assert_eq!(approved.counts.removed, 20, "{:?}", approved.message);
    let left: BTreeSet<String> = state(&f, &c).await.users.into_keys().collect();
    let want: BTreeSet<String> = (21..=30).map(|i| format!("{i:032X}")).collect();
    assert_eq!(left, want);
}
