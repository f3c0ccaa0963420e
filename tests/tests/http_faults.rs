//! The HTTP sources (Graph, Google) under every fault their simulators
//! inject, at every request of a full read: each run ends equal to the
//! source or failed with no directory row changed (a store diff). Then
//! Google's quota storms, a crash at every page, and the sources' request
//! counters against the simulators' own.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::rows::directory_rows;
use common::{Backend, Fixture, fixture_at};
use dirsync_shared::auth::{AppCertificate, AssertionAlg, KeyBits};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::*;
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use dirsync_shared::source::google::GoogleSource;
use dirsync_shared::source::graph::{EntraApp, GraphDeps, GraphSource};
use dirsync_shared::source::retry::RetryPolicy;
use dirsync_shared::source::{DirectorySource, RequestStats};
use serde_json::{Value, json};

/// The faults both simulators inject, as each names them.
#[derive(Debug, Clone, Copy)]
enum Fault {
    CutBody,
    NotJson,
    NoCollection,
    Reset,
    Unavailable,
}

const FAULTS: [Fault; 5] = [
    Fault::CutBody,
    Fault::NotJson,
    Fault::NoCollection,
    Fault::Reset,
    Fault::Unavailable,
];

fn engine(f: &Fixture) -> SyncEngine {
    SyncEngine::new(f.store.clone(), EngineSettings::default())
}

fn full() -> RunRequest {
    RunRequest {
        full: true,
        ..RunRequest::new(Trigger::Manual { requested_by: None })
    }
}

async fn finished(f: &Fixture, c: &Connector, source: &dyn DirectorySource) -> SyncRun {
    match engine(f).run(c, source, full()).await.unwrap() {
        RunOutcome::Finished(r) => r,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

/// A run under a fault ends equal to the source (the rows of a clean
/// sync), or failed with the directory rows as they were: here they are
/// the same rows, so either way the store diff is empty.
async fn assert_nothing_lost(
    at: &str,
    r: &SyncRun,
    f: &Fixture,
    c: &Connector,
    truth: &BTreeMap<String, String>,
) {
    assert!(
        matches!(r.status, RunStatus::Succeeded | RunStatus::Failed),
        "{at}: {:?} {:?}",
        r.status,
        r.message
    );
    let rows = directory_rows(f, c).await;
    let changed: Vec<_> = truth
        .iter()
        .filter(|(k, v)| rows.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .chain(rows.keys().filter(|k| !truth.contains_key(*k)))
        .take(5)
        .collect();
    assert!(changed.is_empty(), "{at}: rows changed, e.g. {changed:?}");
}

/// One fault on one request is ridden out by the retry policy, except a
/// listing's only page without its list: that reads as an empty listing
/// (Google leaves an empty list out), which the engine refuses to sweep.
fn assert_ridden_out(at: &str, fault: Fault, r: &SyncRun) {
    if r.status == RunStatus::Failed {
        assert!(
            matches!(fault, Fault::NoCollection),
            "{at}: {:?}",
            r.message
        );
        return;
    }
    assert!(r.retries >= 1, "{at}: the page was read again");
}

// ---- Google --------------------------------------------------------------

const KEY_REF: &str = "dirsync/test/google-key";
const GOOGLE_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
];

struct Google {
    sim: dirsync_google_sim::GoogleSim,
    secrets: Arc<LocalSecretStore>,
    f: Fixture,
}

/// A customer of `users` users and `groups` groups, the first group
/// holding everyone, so that its members span pages (200 a page).
async fn google(backend: Backend, users: u32, groups: u32) -> Google {
    let sim = dirsync_google_sim::GoogleSim::start().await.unwrap();
    let customer = sim.add_customer("example.com", "admin@example.com");
    let key = sim.add_service_account("dirsync@dirsync-test.iam.gserviceaccount.com");
    let client_id = serde_json::from_str::<Value>(&key).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.grant_delegation(&customer, &client_id, &GOOGLE_SCOPES);
    sim.generate(&customer, users, groups, 7);
    let snap = sim.snapshot(&customer);
    let everyone = &snap.groups[0].id;
    for u in &snap.users {
        sim.add_member(&customer, everyone, &u.id);
    }
    let secrets = Arc::new(LocalSecretStore::in_memory());
    secrets.set(
        &KEY_REF.parse().unwrap(),
        Stage::Current,
        SecretValue::new(key),
    );
    Google {
        sim,
        secrets,
        f: fixture_at(backend, Utc::now()).await,
    }
}

impl Google {
    fn connector(&self, id: &str) -> Connector {
        let spec = json!({
            "id": id, "kind": "google", "admin_email": "admin@example.com",
            "service_account_key_ref": KEY_REF, "api_url": self.sim.api_url(),
            "acknowledge_disabled": true,
        });
        serde_json::from_value::<ConnectorSpec>(spec)
            .unwrap()
            .validate(AccountId::new(id).unwrap(), Utc::now())
            .unwrap()
    }

    fn source(&self, c: &Connector, policy: RetryPolicy) -> GoogleSource {
        GoogleSource::for_connector(c, self.secrets.clone(), Arc::new(SystemClock), policy).unwrap()
    }

    /// The simulator's (requests, throttled) since `since`.
    fn served(&self, since: &dirsync_google_sim::Stats) -> (u64, u64) {
        let now = self.sim.stats();
        (
            now.api_requests - since.api_requests,
            now.api_throttled - since.api_throttled,
        )
    }
}

fn counted(s: RequestStats) -> (u64, u64) {
    (s.requests, s.throttled)
}

fn google_fault(fault: Fault) -> dirsync_google_sim::PageFault {
    use dirsync_google_sim::PageFault as G;
    match fault {
        Fault::CutBody => G::CutBody,
        Fault::NotJson => G::NotJson,
        Fault::NoCollection => G::NoCollection,
        Fault::Reset => G::Reset,
        Fault::Unavailable => G::Unavailable { retry_after: None },
    }
}

fn google_faults_at(n: u64, fault: dirsync_google_sim::PageFault) -> dirsync_google_sim::Faults {
    dirsync_google_sim::Faults {
        at: BTreeMap::from([(n, fault)]),
        ..Default::default()
    }
}

async fn google_fault_matrix(backend: Backend) {
    let g = google(backend, 650, 3).await;
    let c = g.connector("acme");
    let before = g.sim.stats();
    let source = g.source(&c, RetryPolicy::fast());
    let r = finished(&g.f, &c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let truth = directory_rows(&g.f, &c).await;
    let (requests, _) = g.served(&before);
    // users: 2 pages; groups: 1 page; members: 4 pages of the big group
    // and one for each other group.
    assert!(requests >= 8, "a read of several pages: {requests}");
    assert_eq!(r.requests, requests, "a clean run counts every request");
    for n in 0..requests {
        for fault in FAULTS {
            g.sim.set_faults(google_faults_at(n, google_fault(fault)));
            let sent = g.sim.stats();
            let r = finished(&g.f, &c, &source).await;
            let at = format!("{fault:?} at request {n}");
            // Failed or not, the run record counts what the simulator saw.
            assert_eq!((r.requests, r.throttled), g.served(&sent), "{at}");
            assert_nothing_lost(&at, &r, &g.f, &c, &truth).await;
            assert_ridden_out(&at, fault, &r);
            assert_eq!(counted(source.stats().unwrap()), g.served(&before), "{at}");
        }
    }
    let injected = g.sim.stats().faults_by_reason;
    for reason in [
        "cutBody",
        "notJson",
        "noCollection",
        "reset",
        "backendError",
    ] {
        assert_eq!(injected.get(reason), Some(&requests), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_every_fault_at_every_request_loses_nothing_embedded() {
    google_fault_matrix(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_every_fault_at_every_request_loses_nothing_on_dynamodb() {
    google_fault_matrix(Backend::Dynamo).await;
}

/// Google's policy with minutes scaled to seconds: a quota ridden out for
/// 3 s per page read (3 minutes in production), a pause of 1 s.
fn scaled_policy() -> RetryPolicy {
    RetryPolicy {
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
        ..RetryPolicy::fast()
    }
}

fn storm(secs: f64) -> dirsync_google_sim::Faults {
    dirsync_google_sim::Faults {
        quota_storm: Some(dirsync_google_sim::QuotaStorm {
            lasts: Duration::from_secs_f64(secs),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_minute_quota_storm_is_ridden_out() {
    let g = google(Backend::Embedded, 120, 3).await;
    let c = g.connector("acme");
    let source = g.source(&c, scaled_policy());
    let clean = finished(&g.f, &c, &source).await;
    assert_eq!(clean.status, RunStatus::Succeeded, "{:?}", clean.message);
    let truth = directory_rows(&g.f, &c).await;

    let before = g.sim.stats();
    let counted_before = source.stats().unwrap();
    // 2 s for 2 minutes, within the 3 s budget.
    g.sim.set_faults(storm(2.0));
    let r = finished(&g.f, &c, &source).await;
    assert_nothing_lost("a 2-minute storm", &r, &g.f, &c, &truth).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let (requests, throttled) = g.served(&before);
    assert!(throttled >= 3, "the storm was met: {throttled}");
    let mut spent = source.stats().unwrap();
    spent.requests -= counted_before.requests;
    spent.throttled -= counted_before.throttled;
    assert_eq!((spent.requests, spent.throttled), (requests, throttled));
    assert_eq!(
        (r.requests, r.throttled),
        (requests, throttled),
        "the run record counts what the simulator served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_longer_than_the_budget_pauses_and_the_continuation_completes() {
    let g = google(Backend::Embedded, 120, 3).await;
    let c = g.connector("acme");
    let source = g.source(&c, scaled_policy());
    let clean = finished(&g.f, &c, &source).await;
    assert_eq!(clean.status, RunStatus::Succeeded, "{:?}", clean.message);
    let truth = directory_rows(&g.f, &c).await;

    let before = g.sim.stats();
    // 5 s for 5 minutes: more than the 3 s budget.
    g.sim.set_faults(storm(5.0));
    let mut request = full();
    let mut pauses = 0;
    let r = loop {
        match engine(&g.f).run(&c, &source, request).await.unwrap() {
            RunOutcome::Continue { after, run } => {
                assert!(after > Duration::ZERO, "a pause says how long: {run:?}");
                pauses += 1;
                assert!(pauses < 10, "the run makes no progress");
                tokio::time::sleep(after).await;
                request = RunRequest::new(Trigger::Continuation);
            }
            RunOutcome::Finished(r) => break r,
            other => panic!("{other:?}"),
        }
    };
    assert!(pauses >= 1, "a storm past the budget pauses the run");
    assert_nothing_lost("a 5-minute storm", &r, &g.f, &c, &truth).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let total = source.stats().unwrap();
    let spent = (
        total.requests - clean.requests,
        total.throttled - clean.throttled,
    );
    assert_eq!(
        spent,
        g.served(&before),
        "the source counts what was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_interrupted_at_every_page_resumes_to_the_same_state() {
    let g = google(Backend::Embedded, 650, 3).await;
    let base = g.connector("baseline");
    let before = g.sim.stats();
    let r = finished(&g.f, &base, &g.source(&base, RetryPolicy::fast())).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let pages = g.served(&before).0;
    let want = without_connector(directory_rows(&g.f, &base).await, &base);

    for k in 0..pages {
        let c = g.connector(&format!("crash{k}"));
        let source = g.source(&c, RetryPolicy::fast());
        let start = g.sim.stats().api_requests;
        // The k-th request of the run never gets an answer, and the process
        // dies while waiting for it: the run's future is dropped.
        g.sim
            .set_faults(google_faults_at(k, dirsync_google_sim::PageFault::Stall));
        let reached = async {
            while g.sim.stats().api_requests <= start + k {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let dying = engine(&g.f);
        tokio::select! {
            r = dying.run(&c, &source, full()) => panic!("page {k}: the run hangs, got {r:?}"),
            () = reached => {}
        }
        g.sim.set_faults(Default::default());
        // Past the lease of the run that died, another takes over.
        g.f.clock.advance(chrono::Duration::minutes(11));
        let r = finished(&g.f, &c, &g.source(&c, RetryPolicy::fast())).await;
        assert_eq!(r.status, RunStatus::Succeeded, "page {k}: {:?}", r.message);
        let have = without_connector(directory_rows(&g.f, &c).await, &c);
        assert_eq!(have, want, "interrupted at page {k}");
    }
}

/// Rows keyed without the connector's name, so that two connectors
/// reading one source compare equal.
fn without_connector(rows: BTreeMap<String, String>, c: &Connector) -> BTreeMap<String, String> {
    rows.into_iter()
        .map(|(k, v)| (k.replace(c.id.as_str(), "·"), v.replace(c.id.as_str(), "·")))
        .collect()
}

// ---- Graph ---------------------------------------------------------------

const CERT_SECRET: &str = "dirsync/app-certificate";

struct Entra {
    sim: dirsync_entra_sim::EntraSim,
    tenant: uuid::Uuid,
    deps: Arc<GraphDeps>,
    f: Fixture,
}

/// A tenant whose users and groups' members each span pages (999 users a
/// page, 5,000 member references a page).
async fn entra(backend: Backend) -> Entra {
    use dirsync_entra_sim::{CONSENT_ROLES, EntraSim, GenSpec, MultiTenantApp, TenantSpec};
    let sim = EntraSim::start().await.unwrap();
    let tenant = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into()],
        ..Default::default()
    });
    sim.generate_directory(tenant, GenSpec::sized(2100, 8, 3));
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    let cert = AppCertificate::generate(
        "dirsync test app",
        Utc::now(),
        chrono::Duration::days(3),
        KeyBits::Rsa2048,
    )
    .unwrap();
    let client_id = uuid::Uuid::new_v4();
    sim.register_multitenant_app(MultiTenantApp {
        client_id,
        object_id: uuid::Uuid::new_v4(),
        home_tenant: home,
        redirect_uris: vec!["https://dirsync.example/consent/callback".into()],
        certificates: vec![cert.der().to_vec()],
    });
    sim.grant_admin_consent(tenant, client_id, &CONSENT_ROLES);
    let secrets = Arc::new(LocalSecretStore::in_memory());
    secrets.set(
        &CERT_SECRET.parse().unwrap(),
        Stage::Current,
        cert.to_secret(),
    );
    let f = fixture_at(backend, Utc::now()).await;
    let app = EntraApp {
        client_id,
        certificate: CERT_SECRET.parse().unwrap(),
        assertion: AssertionAlg::Ps256,
    };
    let deps = common::world::graph_deps(&f, secrets, Some(app));
    Entra {
        sim,
        tenant,
        deps,
        f,
    }
}

impl Entra {
    fn connector(&self) -> Connector {
        let spec = json!({
            "id": "entra", "kind": "entra", "tenant": self.tenant.to_string(),
            "acknowledge_disabled": true,
            "authority_url": self.sim.authority_url(), "graph_url": self.sim.graph_url(),
        });
        let mut c = serde_json::from_value::<ConnectorSpec>(spec)
            .unwrap()
            .validate(AccountId::new("acme").unwrap(), Utc::now())
            .unwrap();
        if let SourceConfig::EntraConsent { consent, .. } = &mut c.source {
            *consent = Consent::granted(self.tenant, Utc::now());
        }
        c
    }

    fn served(&self, since: &dirsync_entra_sim::SimStats) -> (u64, u64) {
        let now = self.sim.stats();
        (
            now.graph_requests - since.graph_requests,
            now.graph_throttled - since.graph_throttled,
        )
    }
}

fn graph_fault(fault: Fault) -> dirsync_entra_sim::PageFault {
    use dirsync_entra_sim::PageFault as E;
    match fault {
        Fault::CutBody => E::CutBody,
        Fault::NotJson => E::NotJson,
        Fault::NoCollection => E::NoCollection,
        Fault::Reset => E::Reset,
        Fault::Unavailable => E::Unavailable { retry_after: None },
    }
}

async fn graph_fault_matrix(backend: Backend) {
    let e = entra(backend).await;
    let c = e.connector();
    let source = GraphSource::for_connector(&c, &e.deps).unwrap();
    let before = e.sim.stats();
    let r = finished(&e.f, &c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let truth = directory_rows(&e.f, &c).await;
    let (requests, _) = e.served(&before);
    assert!(
        requests >= 5,
        "users and groups over several pages: {requests}"
    );
    assert_eq!(r.requests, requests, "a clean run counts every request");
    for n in 0..requests {
        for fault in FAULTS {
            e.sim.set_faults(dirsync_entra_sim::Faults {
                at: BTreeMap::from([(n, graph_fault(fault))]),
                ..Default::default()
            });
            let sent = e.sim.stats();
            let r = finished(&e.f, &c, &source).await;
            let at = format!("{fault:?} at request {n}");
            assert_eq!((r.requests, r.throttled), e.served(&sent), "{at}");
            assert_nothing_lost(&at, &r, &e.f, &c, &truth).await;
            // Graph always sends `value`: a page without it is never empty.
            assert_eq!(r.status, RunStatus::Succeeded, "{at}: {:?}", r.message);
            assert!(r.retries >= 1, "{at}: the page was read again");
            assert_eq!(counted(source.stats().unwrap()), e.served(&before), "{at}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_every_fault_at_every_request_loses_nothing_embedded() {
    graph_fault_matrix(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_every_fault_at_every_request_loses_nothing_on_dynamodb() {
    graph_fault_matrix(Backend::Dynamo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_429s_with_retry_after_and_503s_are_counted_as_the_simulator_sent_them() {
    use dirsync_entra_sim::PageFault as E;
    let e = entra(Backend::Embedded).await;
    let c = e.connector();
    let source = GraphSource::for_connector(&c, &e.deps).unwrap();
    let before = e.sim.stats();
    e.sim.set_faults(dirsync_entra_sim::Faults {
        at: BTreeMap::from([
            (0, E::TooMany { retry_after: 1 }),
            (
                2,
                E::Unavailable {
                    retry_after: Some(1),
                },
            ),
            (3, E::Unavailable { retry_after: None }),
        ]),
        throttle_next: 2,
        retry_after_secs: 1,
        ..Default::default()
    });
    let r = finished(&e.f, &c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    let (requests, throttled) = e.served(&before);
    assert_eq!(throttled, 5, "three scripted, two counted");
    assert_eq!(counted(source.stats().unwrap()), (requests, throttled));
    assert_eq!((r.requests, r.throttled), (requests, throttled));
    assert_eq!(r.retries, 5, "each throttled request sent again once");
}
