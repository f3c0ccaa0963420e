//! `dirsync-bench`: syncs simulated Entra tenants of growing size and
//! measures what DESIGN.md §8 sets targets for. Per tenant, in this order
//! (`--cases` picks some):
//!
//! 1. `baseline`: the Graph pages fetched with no processing (floors.rs);
//!    its page count is the minimum number of requests of a full sync;
//! 2. `read`: the same pages fetched and mapped by the Graph source, no store;
//! 3. `full`: the first full sync, against both floors;
//! 4. `resync`: a full re-sync of the unchanged tenant (target: 0 directory
//!    items written);
//! 5. `overlap`: the reads alone (fetched and mapped, no store), then a
//!    first full sync into a fresh store, with `--latency-ms` as every Graph
//!    page's response time, each against the longest stream's latency sum;
//! 6. `continuation`: the same in invocations of `--invocation-s`, continued
//!    as the worker continues a run on Lambda;
//! 7. `delta`: a delta round after 1% of users changed (last, because it
//!    changes the tenant the others read).
//!
//! The simulator runs in a child process (sim_process.rs), so the peak RSS
//! reported for each case is the engine's alone.
//!
//! `cargo run --release -p dirsync-bench -- --users 1000,10000`
//! (`--dynamodb TABLE` runs on DynamoDB Local through `AWS_ENDPOINT_URL`).
//! The method and the figures are in `BENCHMARKS.md`.

mod floors;
mod platform;
mod rss;
mod sim_process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Parser, Subcommand, ValueEnum};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::{AccountId, Connector, ConnectorSpec, RunStatus, SyncRun, Trigger};
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use dirsync_shared::source::graph::{GraphDeps, GraphSource};
use dirsync_shared::source::retry::RetryPolicy;
use dirsync_shared::store::counting::{Counts, Items};
use dirsync_shared::store::{CountingTable, DynamoTable, EmbeddedTable, StateStore, Table};
use floors::Pages;
use serde_json::json;
use sim_process::{Hello, SimProcess, Stats};

#[derive(Parser)]
#[command(about = "Sync simulated Entra tenants of growing size and measure each case")]
struct Args {
    /// Tenant sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    users: Vec<u32>,
    /// Run on this DynamoDB table (created if missing) instead of the
    /// embedded store; the standard AWS configuration applies.
    #[arg(long)]
    dynamodb: Option<String>,
    /// Cases to run, comma-separated; they always run in the order above.
    /// `resync` and `delta` read what `full` stored, so they bring it along.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "baseline,read,full,resync,overlap,continuation,delta"
    )]
    cases: Vec<CaseKind>,
    /// Latency added to every Graph page in the overlap and continuation
    /// cases (milliseconds).
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// How long one invocation of the continuation case may run (seconds).
    #[arg(long, default_value_t = 5.0)]
    invocation_s: f64,
    /// Internal: be the simulator's process (see sim_process.rs).
    #[arg(long, hide = true)]
    sim_child: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// One sync window of a whole platform sharing one Graph app budget
    /// (platform.rs).
    Platform(platform::PlatformArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CaseKind {
    Baseline,
    Read,
    Full,
    Resync,
    Overlap,
    Continuation,
    Delta,
}

impl Args {
    fn wants(&self, kind: CaseKind) -> bool {
        self.cases.contains(&kind)
            || (kind == CaseKind::Full
                && self
                    .cases
                    .iter()
                    .any(|c| matches!(c, CaseKind::Resync | CaseKind::Delta)))
    }
}

/// What the simulator, the store counters and `/proc` saw during one case.
struct Measured {
    wall_s: f64,
    sim: Stats,
    items: Items,
    engine_rss_mib: f64,
    sim_rss_mib: f64,
}

/// One row of the table. `run` is `None` for the floors, which touch no
/// store.
struct Case {
    users: u32,
    name: String,
    m: Measured,
    minimum: Option<u64>,
    run: Option<SyncRun>,
    note: String,
}

/// [`measure`] with `latency_ms` as every Graph page's response time, taken
/// off again afterwards whether the work succeeded or not.
async fn measure_at<T>(
    latency_ms: u64,
    sim: &mut SimProcess,
    counts: &Counts,
    work: impl Future<Output = Result<T, String>>,
) -> Result<(T, Measured), String> {
    sim.set_latency(latency_ms)?;
    let result = measure(sim, counts, work).await;
    sim.set_latency(0)?;
    result
}

/// Runs `work` as one case: counters and both processes' peak RSS start
/// afresh, so every figure is this case's alone.
async fn measure<T>(
    sim: &mut SimProcess,
    counts: &Counts,
    work: impl Future<Output = Result<T, String>>,
) -> Result<(T, Measured), String> {
    sim.reset()?;
    counts.take();
    rss::reset_peak();
    let started = Instant::now();
    let out = work.await?;
    let wall_s = started.elapsed().as_secs_f64();
    let engine_rss_mib = rss::peak_mib();
    let m = Measured {
        wall_s,
        sim: sim.stats()?,
        items: counts.take(),
        engine_rss_mib,
        sim_rss_mib: sim.peak_rss_mib()?,
    };
    Ok((out, m))
}

/// A store and its engine. The embedded store's folder (with its WAL) is
/// removed once the engine has closed it (fields drop in declaration order).
struct Store {
    engine: SyncEngine,
    _files: Option<tempfile::TempDir>,
}

/// A fresh store for `users` (`label` tells the overlap and continuation
/// cases' stores from the main one), counted into `counts`.
async fn open_store(
    args: &Args,
    users: u32,
    label: &str,
    counts: &Arc<Counts>,
    settings: EngineSettings,
) -> Result<Store, String> {
    let (inner, files): (Arc<dyn Table>, _) = match &args.dynamodb {
        Some(prefix) => {
            let table = DynamoTable::from_env(format!("{prefix}-{users}{label}")).await;
            table.create_table().await.map_err(|e| e.to_string())?;
            (Arc::new(table), None)
        }
        None => {
            // A fresh folder each, so concurrent benchmarks do not meet.
            let files = tempfile::Builder::new()
                .prefix(&format!("dirsync-bench-{users}{label}-"))
                .tempdir()
                .map_err(|e| format!("cannot create a folder for the embedded store: {e}"))?;
            let table =
                EmbeddedTable::open(&files.path().join("dirsync.db")).map_err(|e| e.to_string())?;
            (Arc::new(table), Some(files))
        }
    };
    let table = CountingTable::new(inner, counts.clone());
    let store = StateStore::new(Arc::new(table), Arc::new(SystemClock));
    Ok(Store {
        engine: SyncEngine::new(store, settings),
        _files: files,
    })
}

/// The legacy connector for the simulator's app, read by the real Graph
/// source with the production retry policy.
fn connect(hello: &Hello) -> Result<(Connector, GraphSource), String> {
    let secrets = Arc::new(LocalSecretStore::in_memory());
    let secret_ref = "dirsync/bench/entra".parse().map_err(|e| format!("{e}"))?;
    secrets.set(
        &secret_ref,
        Stage::Current,
        SecretValue::new(&hello.client_secret),
    );
    let connector = serde_json::from_value::<ConnectorSpec>(json!({
        "id": "entra", "kind": "entra-legacy", "tenant": "contoso.com", "acknowledge_disabled": true,
        "client_id": hello.client_id.to_string(), "client_secret_ref": "dirsync/bench/entra",
        "authority_url": hello.authority_url, "graph_url": hello.graph_url,
    }))
    .map_err(|e| e.to_string())?
    .validate(AccountId::new("bench").map_err(|e| e.to_string())?, Utc::now())
    .map_err(|e| e.to_string())?;
    let deps = GraphDeps::new(secrets, Arc::new(SystemClock), RetryPolicy::default(), None);
    let source = GraphSource::for_connector(&connector, &deps).map_err(|e| e.to_string())?;
    Ok((connector, source))
}

/// A run that must finish. A delta round at 100,000 users disables and
/// deletes more than the deletion guard's 500: staging is the product
/// working, and is reported in the status column.
fn finished(outcome: RunOutcome) -> Result<SyncRun, String> {
    match outcome {
        RunOutcome::Finished(run)
            if matches!(run.status, RunStatus::Succeeded | RunStatus::Staged) =>
        {
            Ok(run)
        }
        RunOutcome::Finished(run) => Err(format!("{:?}: {:?}", run.status, run.message)),
        other => Err(format!("the run did not finish: {other:?}")),
    }
}

async fn run_once(
    engine: &SyncEngine,
    connector: &Connector,
    source: &GraphSource,
    full: bool,
) -> Result<SyncRun, String> {
    let mut request = RunRequest::new(Trigger::Manual { requested_by: None });
    request.full = full;
    finished(
        engine
            .run(connector, source, request)
            .await
            .map_err(|e| e.to_string())?,
    )
}

/// A first full sync in invocations of `length`, each continuing the last
/// as the worker does on Lambda (the same request, `Trigger::Continuation`).
/// Returns the run, the number of invocations and the longest one's wall
/// time (an invocation overruns its deadline by the page in flight, and the
/// last by the run's finish). Each invocation reads through a source of its
/// own, as each job on Lambda does: nothing one asked for ahead is left to
/// the next.
async fn run_in_invocations(
    engine: &SyncEngine,
    connector: &Connector,
    hello: &Hello,
    length: Duration,
) -> Result<(SyncRun, u32, f64), String> {
    let mut request = RunRequest::new(Trigger::Manual { requested_by: None });
    request.full = true;
    let (mut invocations, mut longest_s, mut requests) = (0, 0.0_f64, 0);
    loop {
        invocations += 1;
        let started = tokio::time::Instant::now();
        request.deadline = Some(started + length);
        let (_, source) = connect(hello)?;
        let outcome = engine
            .run(connector, &source, request.clone())
            .await
            .map_err(|e| e.to_string())?;
        longest_s = longest_s.max(started.elapsed().as_secs_f64());
        match outcome {
            // An invocation that checkpointed no page would be followed by
            // the same one forever.
            RunOutcome::Continue { run, .. } if run.requests > requests => {
                requests = run.requests;
                request.trigger = Trigger::Continuation;
            }
            RunOutcome::Continue { .. } => {
                return Err(format!(
                    "an invocation of {length:?} read no page: give it longer (--invocation-s)"
                ));
            }
            outcome => return Ok((finished(outcome)?, invocations, longest_s)),
        }
    }
}

/// The cases of one tenant size, with the simulator's process alive
/// throughout.
async fn tenant(users: u32, args: &Args) -> Result<Vec<Case>, String> {
    let mut sim = SimProcess::spawn(users)?;
    let (connector, source) = connect(&sim.hello)?;
    // Sign in before any case: the simulator makes its signing key on the
    // first token request, which no case should pay for.
    floors::token(&source).await?;
    let counts = Arc::new(Counts::default());
    let row = |name: &str, m: Measured| Case {
        users,
        name: name.to_owned(),
        m,
        minimum: None,
        run: None,
        note: String::new(),
    };
    let pages_note = |p: Pages| format!("users {} + groups {} pages", p.users, p.groups);
    let mut cases = Vec::new();

    // The floors first, before anything else has read the tenant.
    let mut fetch_only_s = None;
    let mut minimum = None;
    if args.wants(CaseKind::Baseline) {
        let (pages, m) = measure(&mut sim, &counts, floors::fetch_only(&source)).await?;
        fetch_only_s = Some(m.wall_s);
        minimum = Some(pages.total());
        cases.push(Case {
            minimum,
            note: pages_note(pages),
            ..row("baseline: fetch only", m)
        });
    }
    let mut fetch_map_s = None;
    if args.wants(CaseKind::Read) {
        let (pages, m) = measure(&mut sim, &counts, floors::fetch_and_map(&source)).await?;
        fetch_map_s = Some(m.wall_s);
        cases.push(Case {
            minimum,
            note: pages_note(pages),
            ..row("baseline: fetch + map", m)
        });
    }

    let main = if args.wants(CaseKind::Full) {
        Some(open_store(args, users, "", &counts, EngineSettings::default()).await?)
    } else {
        None
    };
    if let Some(store) = &main {
        let (run, m) = measure(
            &mut sim,
            &counts,
            run_once(&store.engine, &connector, &source, true),
        )
        .await?;
        let note = [("fetch only", fetch_only_s), ("fetch + map", fetch_map_s)]
            .iter()
            .filter_map(|(floor, s)| Some(format!("{:.2}× {floor}", m.wall_s / (*s)?)))
            .collect::<Vec<_>>()
            .join(", ");
        cases.push(Case {
            minimum,
            run: Some(run),
            note,
            ..row("first full sync", m)
        });
    }
    if let (Some(store), true) = (&main, args.wants(CaseKind::Resync)) {
        let (run, m) = measure(
            &mut sim,
            &counts,
            run_once(&store.engine, &connector, &source, true),
        )
        .await?;
        cases.push(Case {
            minimum,
            run: Some(run),
            ..row("unchanged full re-sync", m)
        });
    }

    let latency = args.latency_ms;
    // Streams are read concurrently, so the overlap's floor is the slowest
    // stream's pages, each waiting out the latency.
    let latency_note = |m: &Measured| {
        let (stream, pages) = [("users", m.sim.users_pages), ("groups", m.sim.groups_pages)]
            .into_iter()
            .max_by_key(|(_, pages)| *pages)
            .unwrap_or_default();
        let floor_s = (pages * latency) as f64 / 1000.0;
        if floor_s > 0.0 {
            format!(
                "{:.2}× the longest stream's latency ({stream}: {pages} × {latency} ms)",
                m.wall_s / floor_s
            )
        } else {
            "no latency injected".into()
        }
    };
    if args.wants(CaseKind::Overlap) {
        // The reads alone at the same latency: what the source costs before
        // any store work, so the overlap's excess can be split between them.
        let (pages, m) =
            measure_at(latency, &mut sim, &counts, floors::fetch_and_map(&source)).await?;
        cases.push(Case {
            minimum,
            note: format!("{}; {}", latency_note(&m), pages_note(pages)),
            ..row(&format!("overlap: fetch + map, {latency} ms/page"), m)
        });
        let store = open_store(args, users, "-overlap", &counts, EngineSettings::default()).await?;
        let (run, m) = measure_at(
            latency,
            &mut sim,
            &counts,
            run_once(&store.engine, &connector, &source, true),
        )
        .await?;
        let note = latency_note(&m);
        cases.push(Case {
            minimum,
            run: Some(run),
            note,
            ..row(&format!("overlap: first full sync, {latency} ms/page"), m)
        });
    }
    if args.wants(CaseKind::Continuation) {
        // The production margin (30 s) is sized for Lambda's 15-minute
        // invocations; these last seconds, so pages start up to the deadline.
        let settings = EngineSettings {
            deadline_margin: Duration::ZERO,
            ..EngineSettings::default()
        };
        let store = open_store(args, users, "-continuation", &counts, settings).await?;
        let length = Duration::from_secs_f64(args.invocation_s);
        let hello = sim.hello.clone();
        let ((run, invocations, longest_s), m) = measure_at(
            latency,
            &mut sim,
            &counts,
            run_in_invocations(&store.engine, &connector, &hello, length),
        )
        .await?;
        cases.push(Case {
            minimum,
            run: Some(run),
            note: format!(
                "{invocations} invocation{}, the longest {longest_s:.2} s",
                if invocations == 1 { "" } else { "s" }
            ),
            ..row(
                &format!(
                    "continuation: first full sync, {} s invocations, {latency} ms/page",
                    args.invocation_s
                ),
                m,
            )
        });
    }

    if let (Some(store), true) = (&main, args.wants(CaseKind::Delta)) {
        sim.change_one_percent()?;
        let (run, m) = measure(
            &mut sim,
            &counts,
            run_once(&store.engine, &connector, &source, false),
        )
        .await?;
        cases.push(Case {
            run: Some(run),
            ..row("delta, 1% changed", m)
        });
    }
    Ok(cases)
}

fn print(cases: &[Case], store: &str) {
    println!("\nstore: {store}");
    println!(
        "| users | case | wall s | objects/s | Graph requests | minimum requests | resource units | throttled | directory items written | other items written | items read | created | updated | disabled | removed | engine peak RSS MiB | sim peak RSS MiB | status | notes |"
    );
    println!(
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for c in cases {
        let m = &c.m;
        // The floors touch no store and count no actions: "-".
        let engine = |f: &dyn Fn(&SyncRun) -> String| c.run.as_ref().map_or("-".into(), f);
        let items = |n: u64| engine(&|_| n.to_string());
        let cells = [
            c.users.to_string(),
            c.name.clone(),
            format!("{:.2}", m.wall_s),
            engine(&|r| {
                let k = &r.counts;
                let objects =
                    k.created + k.updated + k.disabled + k.removed + k.unchanged + k.skipped;
                format!("{:.0}", objects as f64 / m.wall_s.max(1e-9))
            }),
            m.sim.graph_requests.to_string(),
            c.minimum.map_or("-".into(), |n| n.to_string()),
            m.sim.resource_units.to_string(),
            m.sim.throttled.to_string(),
            items(m.items.directory_written),
            items(m.items.other_written),
            items(m.items.read),
            engine(&|r| r.counts.created.to_string()),
            engine(&|r| r.counts.updated.to_string()),
            engine(&|r| r.counts.disabled.to_string()),
            engine(&|r| r.counts.removed.to_string()),
            format!("{:.0}", m.engine_rss_mib),
            format!("{:.0}", m.sim_rss_mib),
            engine(&|r| format!("{:?}", r.status)),
            c.note.clone(),
        ];
        println!("| {} |", cells.join(" | "));
    }
}

async fn bench(args: &Args) -> Result<(), String> {
    let store = match &args.dynamodb {
        Some(t) => format!("DynamoDB ({t}-N; {t}-N-overlap and {t}-N-continuation)"),
        None => "embedded (SQLite)".to_string(),
    };
    let mut all = Vec::new();
    for &users in &args.users {
        eprintln!("tenant of {users} users …");
        all.extend(tenant(users, args).await?);
    }
    print(&all, &store);
    Ok(())
}

fn main() {
    let args = Args::parse();
    let result = if let Some(Command::Platform(p)) = args.command {
        tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|runtime| runtime.block_on(platform::run(p)))
    } else if args.sim_child {
        sim_process::child(args.users.first().copied().unwrap_or(1000))
    } else {
        tokio::runtime::Runtime::new()
            .map_err(|e| e.to_string())
            .and_then(|runtime| runtime.block_on(bench(&args)))
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
