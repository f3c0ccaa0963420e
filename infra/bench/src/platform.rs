//! `dirsync-bench platform`: one sync window of a whole platform. N consent
//! tenants of a realistic size mix, one platform app, the real window
//! fan-out and worker code, M workers taking jobs from a queue that delays
//! them as SQS does, and the simulator enforcing Graph's budgets (each
//! tenant's, and the app's across tenants). Run with the shared app budget
//! and without it; for each: the window's completion against its span,
//! app- and tenant-level 429s, requests against the minimum, each tenant's
//! delay from its offset by size class, and store items written.
//!
//! Time is compressed: a 3-hour span becomes `--span-s` seconds (6 min).
//! The app's budget is scaled further than time (`--app-budget`, 500 RU per
//! 20 s, Graph's ÷ 300): the engine's own speed is not compressed, and at
//! Graph's budget scaled by time alone (÷ 30) a thousand tenants never come
//! near it; the scale at which the budget binds is what is under test.
//! Tenants' own budgets are Graph's, unscaled. The report states both
//! factors; the method is in `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use dirsync_entra_sim::{CONSENT_ROLES, EntraSim, Faults, GenSpec, MultiTenantApp, TenantSpec};
use dirsync_shared::app::window::{WindowEvent, WindowSpans, fan_out};
use dirsync_shared::app::worker::{JobOutcome, process};
use dirsync_shared::app::{App, AppSettings};
use dirsync_shared::auth::{AppCertificate, AssertionAlg, KeyBits};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::{
    Account, AccountId, Connector, ConnectorSpec, Consent, Region, RunStatus, SourceConfig,
};
use dirsync_shared::queue::{Job, JobQueue, QueueError};
use dirsync_shared::secrets::{LocalSecretStore, Stage};
use dirsync_shared::source::budget::BudgetLimits;
use dirsync_shared::source::graph::{EntraApp, GraphDeps, GraphSource};
use dirsync_shared::source::retry::RetryPolicy;
use dirsync_shared::store::counting::Counts;
use dirsync_shared::store::{CountingTable, DynamoTable, EmbeddedTable, StateStore, Table};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

/// The real span a compressed one stands for.
const REAL_SPAN_S: f64 = 3.0 * 3600.0;
/// Graph's app budget across tenants, per 20 s.
const GRAPH_APP_BUDGET: f64 = 150_000.0;
const CERT_SECRET: &str = "dirsync/platform-app-certificate";

#[derive(Args, Clone)]
pub struct PlatformArgs {
    /// Tenants in the window: 70% under 200 users, 25% 200–5,000, 5%
    /// 5,000–50,000.
    #[arg(long, default_value_t = 1000)]
    tenants: u32,
    /// The window's span, compressed (3 hours in production).
    #[arg(long, default_value_t = 360)]
    span_s: u64,
    /// Workers taking jobs at once, as Lambda runs concurrent invocations.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// The app's budget in resource units per 20 s, for the simulator and
    /// the workers (Graph's is 150,000; see the module's note on scale).
    #[arg(long, default_value_t = 500)]
    app_budget: u64,
    /// How long one worker invocation may run (seconds).
    #[arg(long, default_value_t = 60)]
    invocation_s: u64,
    /// Modes to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "shared,unpaced,shared-burst,unpaced-burst"
    )]
    modes: Vec<Mode>,
    /// Run on DynamoDB tables with this prefix (one per mode) instead of
    /// the embedded store.
    #[arg(long)]
    dynamodb: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Mode {
    /// Every worker paces its requests by the app budget in the table.
    Shared,
    /// Each worker alone, riding out Graph's 429s.
    Unpaced,
    /// Shared, with every job at the window's start (no span).
    SharedBurst,
    /// Unpaced, with every job at the window's start.
    UnpacedBurst,
}

impl Mode {
    fn paced(self) -> bool {
        matches!(self, Mode::Shared | Mode::SharedBurst)
    }

    fn span(self, span: Duration) -> Duration {
        match self {
            Mode::Shared | Mode::Unpaced => span,
            Mode::SharedBurst | Mode::UnpacedBurst => Duration::ZERO,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Shared => "shared budget",
            Mode::Unpaced => "unpaced",
            Mode::SharedBurst => "shared budget, all at the start",
            Mode::UnpacedBurst => "unpaced, all at the start",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Size {
    Small,
    Medium,
    Large,
}

impl Size {
    fn label(self) -> &'static str {
        match self {
            Size::Small => "under 200",
            Size::Medium => "200–5,000",
            Size::Large => "5,000–50,000",
        }
    }
}

/// One customer: an account with one consent connector to its tenant.
struct Customer {
    account: AccountId,
    tenant: Uuid,
    users: u32,
    size: Size,
}

/// A deterministic stream of numbers in [0, 1) (SplitMix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

/// Tenant `i` of `n`: the first 70% small (uniform 5–199 users), the next
/// 25% medium and the last 5% large (each log-uniform over its range, as
/// tenant sizes are heavy-tailed).
fn size_of(i: u32, n: u32) -> (u32, Size) {
    let r = unit(u64::from(i));
    let log_uniform = |lo: f64, hi: f64| (lo.ln() + r * (hi.ln() - lo.ln())).exp() as u32;
    let share = f64::from(i) / f64::from(n);
    if share < 0.70 {
        (5 + (r * 195.0) as u32, Size::Small)
    } else if share < 0.95 {
        (log_uniform(200.0, 5_000.0), Size::Medium)
    } else {
        (log_uniform(5_000.0, 50_000.0), Size::Large)
    }
}

/// The simulator with every tenant, the platform app consented in each.
struct Platform {
    sim: EntraSim,
    customers: Vec<Customer>,
    app: EntraApp,
    secrets: Arc<LocalSecretStore>,
}

async fn platform(args: &PlatformArgs) -> Result<Platform, String> {
    let sim = EntraSim::start().await.map_err(|e| e.to_string())?;
    let cert = AppCertificate::generate(
        "dirsync",
        Utc::now(),
        chrono::Duration::days(3),
        KeyBits::Rsa2048,
    )
    .map_err(|e| e.to_string())?;
    let (client_id, object_id) = (Uuid::new_v4(), Uuid::new_v4());
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    sim.register_multitenant_app(MultiTenantApp {
        client_id,
        object_id,
        home_tenant: home,
        redirect_uris: vec!["https://dirsync.example/consent".into()],
        certificates: vec![cert.der().to_vec()],
    });
    let mut customers = Vec::new();
    for i in 0..args.tenants {
        let (users, size) = size_of(i, args.tenants);
        let tenant = sim.add_tenant(TenantSpec {
            display_name: format!("Customer {i}"),
            verified_domains: vec![format!("c{i}.example")],
            ..Default::default()
        });
        sim.generate_directory(
            tenant,
            GenSpec::sized(users, (users / 50).max(2), u64::from(i)),
        );
        sim.grant_admin_consent(tenant, client_id, &CONSENT_ROLES);
        customers.push(Customer {
            account: AccountId::new(format!("c{i}")).map_err(|e| e.to_string())?,
            tenant,
            users,
            size,
        });
    }
    let secrets = Arc::new(LocalSecretStore::in_memory());
    let secret = CERT_SECRET.parse().map_err(|e| format!("{e}"))?;
    secrets.set(&secret, Stage::Current, cert.to_secret());
    Ok(Platform {
        sim,
        customers,
        app: EntraApp {
            client_id,
            certificate: secret,
            assertion: AssertionAlg::Ps256,
        },
        secrets,
    })
}

impl Platform {
    fn connector(&self, c: &Customer) -> Result<Connector, String> {
        let spec: ConnectorSpec = serde_json::from_value(json!({
            "id": "entra", "kind": "entra", "tenant": c.tenant.to_string(), "acknowledge_disabled": true,
            "authority_url": self.sim.authority_url(), "graph_url": self.sim.graph_url(),
        }))
        .map_err(|e| e.to_string())?;
        let mut connector = spec
            .validate(c.account.clone(), Utc::now())
            .map_err(|e| e.to_string())?;
        if let SourceConfig::EntraConsent { consent, .. } = &mut connector.source {
            *consent = Consent::granted(c.tenant, Utc::now());
        }
        Ok(connector)
    }

    /// The pages a bare read of every tenant takes: the requests a window
    /// needs at least.
    async fn minimum_requests(&self) -> Result<u64, String> {
        let deps = GraphDeps::new(
            self.secrets.clone(),
            Arc::new(SystemClock),
            RetryPolicy::default(),
            Some(self.app.clone()),
        );
        let mut total = 0;
        for c in &self.customers {
            let source = GraphSource::for_connector(&self.connector(c)?, &deps)
                .map_err(|e| e.to_string())?;
            total += crate::floors::fetch_only(&source).await?.total();
        }
        Ok(total)
    }
}

/// Jobs by the instant each becomes visible, then the order sent.
#[derive(Default)]
struct Waiting {
    sent: u64,
    jobs: BTreeMap<(Instant, u64), Job>,
}

/// Jobs delivered when their delay is up, as SQS delivers them.
#[derive(Default)]
struct DelayQueue {
    waiting: Mutex<Waiting>,
    arrived: Notify,
}

#[async_trait]
impl JobQueue for DelayQueue {
    async fn send(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        let delay = Duration::from_secs(dirsync_shared::queue::whole_seconds(delay));
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        w.sent += 1;
        let key = (Instant::now() + delay, w.sent);
        w.jobs.insert(key, job.clone());
        drop(w);
        self.arrived.notify_waiters();
        Ok(())
    }
}

impl DelayQueue {
    /// The next job whose delay is up, or how long until one may be.
    fn take(&self) -> Result<Job, Duration> {
        let mut w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match w.jobs.first_key_value() {
            Some(((at, _), _)) if *at <= now => Ok(w
                .jobs
                .pop_first()
                .map(|(_, job)| job)
                .ok_or(Duration::ZERO)?),
            Some(((at, _), _)) => Err(at.saturating_duration_since(now)),
            None => Err(Duration::from_millis(100)),
        }
    }
}

/// What happened to one connector in the window.
#[derive(Default, Clone)]
struct Track {
    due: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    status: Option<RunStatus>,
    invocations: u32,
}

/// One mode's figures.
struct Outcome {
    mode: Mode,
    completion_s: f64,
    failed: usize,
    unfinished: usize,
    app_429: u64,
    /// The most units spent in one of Graph's app windows.
    app_peak: u64,
    tenant_429: u64,
    requests: u64,
    continued: u64,
    /// Seconds from each tenant's offset to its run's end, by size class.
    delays: BTreeMap<Size, Vec<f64>>,
    directory_items: u64,
    other_items: u64,
    budget_items: u64,
}

async fn open_table(
    args: &PlatformArgs,
    mode: Mode,
) -> Result<(Arc<dyn Table>, Option<tempfile::TempDir>), String> {
    match &args.dynamodb {
        Some(prefix) => {
            let name = format!("{prefix}-{}", format!("{mode:?}").to_lowercase());
            let table = DynamoTable::from_env(name).await;
            table.create_table().await.map_err(|e| e.to_string())?;
            Ok((Arc::new(table), None))
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("dirsync-platform-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let table =
                EmbeddedTable::open(&dir.path().join("dirsync.db")).map_err(|e| e.to_string())?;
            Ok((Arc::new(table), Some(dir)))
        }
    }
}

async fn window(
    p: &Platform,
    args: &PlatformArgs,
    mode: Mode,
    app_budget: u64,
) -> Result<Outcome, String> {
    let (inner, _files) = open_table(args, mode).await?;
    let counts = Arc::new(Counts::default());
    let table = Arc::new(CountingTable::new(inner, counts.clone()));
    let store = StateStore::new(table, Arc::new(SystemClock));
    for c in &p.customers {
        let account = Account::new(
            c.account.clone(),
            c.account.as_str(),
            Region::Europe,
            Utc::now(),
        )
        .map_err(|e| e.to_string())?;
        store
            .create_account(&account)
            .await
            .map_err(|e| e.to_string())?;
        store
            .create_connector(&p.connector(c)?)
            .await
            .map_err(|e| e.to_string())?;
    }
    let queue = Arc::new(DelayQueue::default());
    let span = mode.span(Duration::from_secs(args.span_s));
    let app = App::builder(store.clone(), queue.clone(), p.secrets.clone())
        .entra_app(Some(p.app.clone()))
        .settings(AppSettings {
            window_spans: WindowSpans {
                entra: span,
                ..WindowSpans::NONE
            },
            allow_custom_cloud: true,
            graph_budget: mode.paced().then(|| BudgetLimits::of(app_budget)),
            ..Default::default()
        })
        .build();
    counts.take();
    p.sim.reset_stats();
    p.sim.take_app_window_peak();

    let start = Utc::now();
    let event = WindowEvent {
        region: Region::Europe,
        scheduled_time: start,
    };
    let fanned = fan_out(&store, queue.as_ref(), &event, &app.settings.window_spans)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "  {}: {} jobs over {:?}",
        mode.name(),
        fanned.enqueued,
        span
    );
    let tracks: Arc<Mutex<BTreeMap<String, Track>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let (app, n) = (Arc::new(app), p.customers.len());
    let give_up = Instant::now() + Duration::from_secs(args.span_s) * 3;
    let workers = (0..args.workers).map(|_| {
        let (app, queue, tracks, done) = (app.clone(), queue.clone(), tracks.clone(), done.clone());
        let invocation = Duration::from_secs(args.invocation_s);
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < n && Instant::now() < give_up {
                let job = match queue.take() {
                    Ok(job) => job,
                    Err(wait) => {
                        let wait = wait.min(Duration::from_millis(100));
                        let _ = tokio::time::timeout(wait, queue.arrived.notified()).await;
                        continue;
                    }
                };
                let deadline = Instant::now() + invocation;
                let outcome = process(&app, &job, Some(deadline)).await;
                let mut t = tracks.lock().unwrap_or_else(|p| p.into_inner());
                let track = t.entry(job.account.to_string()).or_default();
                if job.due.is_some() {
                    track.due = job.due;
                }
                match outcome {
                    Ok(JobOutcome::Deferred { .. }) => {}
                    Ok(JobOutcome::Finished(run)) => {
                        track.invocations += 1;
                        track.finished = Some(Utc::now());
                        track.status = Some(run.status);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => track.invocations += 1,
                    Err(e) => {
                        eprintln!("  {}: {e}", job.account);
                        track.status = Some(RunStatus::Failed);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    });
    for w in workers.collect::<Vec<_>>() {
        w.await.map_err(|e| e.to_string())?;
    }

    let stats = p.sim.stats();
    let items = counts.take();
    let tracks = tracks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut delays: BTreeMap<Size, Vec<f64>> = BTreeMap::new();
    let (mut last, mut failed, mut unfinished, mut continued) = (start, 0, 0, 0);
    for c in &p.customers {
        let t = tracks.get(c.account.as_str()).cloned().unwrap_or_default();
        match (t.due, t.finished, t.status) {
            (Some(due), Some(end), Some(RunStatus::Succeeded)) => {
                last = last.max(end);
                delays
                    .entry(c.size)
                    .or_default()
                    .push((end - due).num_milliseconds() as f64 / 1000.0);
            }
            (_, Some(_), _) => failed += 1,
            _ => unfinished += 1,
        }
        continued += u64::from(t.invocations.saturating_sub(1));
    }
    Ok(Outcome {
        mode,
        completion_s: (last - start).num_milliseconds() as f64 / 1000.0,
        failed,
        unfinished,
        app_429: stats.app_throttled,
        app_peak: p.sim.take_app_window_peak(),
        tenant_429: stats.tenant_throttled,
        requests: stats.graph_requests,
        continued,
        delays,
        directory_items: items.directory_written,
        other_items: items.other_written,
        budget_items: items.added,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(args: &PlatformArgs, p: &Platform, app_budget: u64, minimum: u64, outcomes: &[Outcome]) {
    let k = REAL_SPAN_S / args.span_s as f64;
    let mut by_size: BTreeMap<Size, (u32, u64)> = BTreeMap::new();
    for c in &p.customers {
        let e = by_size.entry(c.size).or_default();
        e.0 += 1;
        e.1 += u64::from(c.users);
    }
    println!(
        "{} tenants ({}), {} workers, span {} s (3 h ÷ {k:.0}), app budget {app_budget} RU per 20 s \
         (150,000 ÷ {:.0}), invocations of {} s",
        args.tenants,
        by_size
            .iter()
            .map(|(s, (n, u))| format!("{n} {} users, {u} users in all", s.label()))
            .collect::<Vec<_>>()
            .join("; "),
        args.workers,
        args.span_s,
        GRAPH_APP_BUDGET / app_budget as f64,
        args.invocation_s,
    );
    println!("minimum requests (every tenant's pages, read bare): {minimum}\n");
    println!(
        "| mode | window done s | of span | failed | unfinished | app 429s | peak RU / 20 s | tenant 429s | requests | × minimum | continued | small p50 s | small p99 s | small p99 % span | medium p50 s | medium p99 s | large p50 s | large p99 s | directory items | other items | budget adds |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for o in outcomes {
        let pct = |size: Size, q: f64| {
            let mut d = o.delays.get(&size).cloned().unwrap_or_default();
            d.sort_by(f64::total_cmp);
            percentile(&d, q)
        };
        let cells = [
            o.mode.name().to_owned(),
            format!("{:.1}", o.completion_s),
            format!("{:.0}%", 100.0 * o.completion_s / args.span_s as f64),
            o.failed.to_string(),
            o.unfinished.to_string(),
            o.app_429.to_string(),
            format!(
                "{} ({:.0}%)",
                o.app_peak,
                100.0 * o.app_peak as f64 / app_budget as f64
            ),
            o.tenant_429.to_string(),
            o.requests.to_string(),
            format!("{:.3}", o.requests as f64 / minimum as f64),
            o.continued.to_string(),
            format!("{:.2}", pct(Size::Small, 50.0)),
            format!("{:.2}", pct(Size::Small, 99.0)),
            format!(
                "{:.1}%",
                100.0 * pct(Size::Small, 99.0) / args.span_s as f64
            ),
            format!("{:.2}", pct(Size::Medium, 50.0)),
            format!("{:.2}", pct(Size::Medium, 99.0)),
            format!("{:.2}", pct(Size::Large, 50.0)),
            format!("{:.2}", pct(Size::Large, 99.0)),
            o.directory_items.to_string(),
            o.other_items.to_string(),
            o.budget_items.to_string(),
        ];
        println!("| {} |", cells.join(" | "));
    }
}

pub async fn run(args: PlatformArgs) -> Result<(), String> {
    let app_budget = args.app_budget;
    eprintln!("building {} tenants …", args.tenants);
    let p = platform(&args).await?;
    let minimum = p.minimum_requests().await?;
    p.sim.set_app_budget(app_budget, Duration::from_secs(20));
    p.sim.set_faults(Faults {
        enforce_resource_units: true,
        ..Default::default()
    });
    let mut outcomes = Vec::new();
    for &mode in &args.modes {
        // The app's window from the last mode is over before the next.
        tokio::time::sleep(Duration::from_secs(21)).await;
        outcomes.push(window(&p, &args, mode, app_budget).await?);
    }
    report(&args, &p, app_budget, minimum, &outcomes);
    Ok(())
}
