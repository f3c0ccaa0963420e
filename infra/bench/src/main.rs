//! `dirsync-bench`: syncs simulated Entra tenants of growing size and
//! reports, per case, wall time, Graph requests, resource units, throttled
//! requests, store items written, peak memory and objects per second.
//!
//! `cargo run --release -p dirsync-bench -- --users 1000,10000,100000`
//! (`--dynamodb TABLE` runs on DynamoDB Local through `AWS_ENDPOINT_URL`).
//! The method and the figures are in `BENCHMARKS.md`.

mod counting;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use counting::{CountingTable, Counts};
use dirsync_entra_sim::{EntraSim, GenSpec, SimUser, TenantSpec};
use dirsync_shared::auth::TokenProvider;
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::{AccountId, ConnectorSpec, RunStatus, SyncRun, Trigger};
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use dirsync_shared::source::graph::{GraphDeps, GraphSource};
use dirsync_shared::source::retry::{Limiters, RetryPolicy};
use dirsync_shared::store::{DynamoTable, EmbeddedTable, StateStore, Table};
use serde_json::json;
use uuid::Uuid;

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
}

/// One measured sync.
struct Case {
    users: u32,
    name: &'static str,
    run: SyncRun,
    wall_s: f64,
    graph_requests: u64,
    resource_units: u64,
    throttled: u64,
    written: u64,
    read: u64,
    peak_rss_mib: f64,
}

/// The process's peak resident set (`VmHWM`), which includes the in-process
/// simulator: the benchmark reports it as an upper bound for the engine.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn open_table(args: &Args, users: u32) -> Result<Arc<dyn Table>, String> {
    match &args.dynamodb {
        Some(name) => {
            let table = DynamoTable::from_env(format!("{name}-{users}")).await;
            table.create_table().await.map_err(|e| e.to_string())?;
            Ok(Arc::new(table))
        }
        None => {
            remove_embedded(users);
            Ok(Arc::new(
                EmbeddedTable::open(&embedded_path(users)).map_err(|e| e.to_string())?,
            ))
        }
    }
}

/// The embedded store of one tenant size, private to this process.
fn embedded_path(users: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("dirsync-bench-{}-{users}.db", std::process::id()))
}

fn remove_embedded(users: u32) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", embedded_path(users).display()));
    }
}

async fn tenant(users: u32, args: &Args) -> Result<Vec<Case>, String> {
    let sim = EntraSim::start().await.map_err(|e| e.to_string())?;
    let tenant = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
        ..Default::default()
    });
    // Realistic proportions: a group per 40 users and an all-staff group.
    let mut spec = GenSpec::sized(users, (users / 40).max(5), 7);
    spec.large_group_members = Some(users);
    sim.generate_directory(tenant, spec);

    let client_id = Uuid::new_v4();
    let secrets = Arc::new(LocalSecretStore::in_memory());
    sim.add_legacy_app(
        tenant,
        client_id,
        "bench-secret",
        Utc::now() + chrono::Duration::days(1),
        &["Directory.Read.All"],
    );
    let secret_ref = "dirsync/bench/entra".parse().map_err(|e| format!("{e}"))?;
    secrets.set(
        &secret_ref,
        Stage::Current,
        SecretValue::new("bench-secret"),
    );
    let connector = serde_json::from_value::<ConnectorSpec>(json!({
        "id": "entra", "kind": "entra-legacy", "tenant": "contoso.com", "acknowledge_disabled": true,
        "client_id": client_id.to_string(), "client_secret_ref": "dirsync/bench/entra",
        "authority_url": sim.authority_url(), "graph_url": sim.graph_url(),
    }))
    .map_err(|e| e.to_string())?
    .validate(AccountId::new("bench").map_err(|e| e.to_string())?, Utc::now())
    .map_err(|e| e.to_string())?;

    let clock = Arc::new(SystemClock);
    let counts = Arc::new(Counts::default());
    let table = CountingTable {
        inner: open_table(args, users).await?,
        counts: counts.clone(),
    };
    let store = StateStore::new(Arc::new(table), clock.clone());
    let engine = SyncEngine::new(store, EngineSettings::default());
    let deps = GraphDeps {
        tokens: Arc::new(TokenProvider::new(
            reqwest::Client::new(),
            secrets.clone(),
            clock,
        )),
        limiters: Arc::new(Limiters::new(4)),
        policy: RetryPolicy::default(),
        app: None,
    };
    let source = GraphSource::for_connector(&connector, &deps).map_err(|e| e.to_string())?;

    let mut cases = Vec::new();
    for name in [
        "first full sync",
        "unchanged full re-sync",
        "delta, 1% changed",
    ] {
        if name.starts_with("delta") {
            change_one_percent(&sim, tenant);
        }
        let mut request = RunRequest::new(Trigger::Manual { requested_by: None });
        request.full = name.contains("full");
        sim.reset_stats();
        counts.take();
        let started = Instant::now();
        let outcome = engine
            .run(&connector, &source, request)
            .await
            .map_err(|e| e.to_string())?;
        let wall_s = started.elapsed().as_secs_f64();
        let RunOutcome::Finished(run) = outcome else {
            return Err(format!("{name}: the run did not finish: {outcome:?}"));
        };
        // A delta round at 100,000 users disables and deletes more than the
        // deletion guard's 500: staging is the product working, and is
        // reported in the table's status column.
        if !matches!(run.status, RunStatus::Succeeded | RunStatus::Staged) {
            return Err(format!("{name}: {:?} {:?}", run.status, run.message));
        }
        let stats = sim.stats();
        let (written, read) = counts.take();
        cases.push(Case {
            users,
            name,
            wall_s,
            graph_requests: stats.requests_total - stats.route("POST token"),
            resource_units: stats.resource_units.values().sum(),
            throttled: stats.throttled,
            written,
            read,
            peak_rss_mib: peak_rss_mib(),
            run,
        });
    }
    drop(engine);
    remove_embedded(users);
    Ok(cases)
}

/// 1% of users: a third renamed, a third disabled, a third deleted, and
/// as many new hires who join the first group.
fn change_one_percent(sim: &EntraSim, tenant: Uuid) {
    let snap = sim.snapshot(tenant);
    let n = (snap.users.len() / 100).max(3);
    for (i, user) in snap.users.iter().take(n).enumerate() {
        let id = user.id.to_string();
        match i % 3 {
            0 => sim.update_user(tenant, &id, |u| u.display_name.push_str(" (renamed)")),
            1 => sim.update_user(tenant, &id, |u| u.account_enabled = false),
            _ => sim.purge_user(tenant, &id),
        }
    }
    let group = snap.groups.first().map(|g| g.id.to_string());
    for i in 0..n / 3 {
        let id = Uuid::new_v4();
        sim.add_user(
            tenant,
            SimUser::new(id, &format!("hire{i}@contoso.com"), &format!("Hire {i}")),
        );
        if let Some(group) = &group {
            sim.add_member(tenant, group, &id.to_string());
        }
    }
}

fn print(cases: &[Case], store: &str) {
    println!("\nstore: {store}");
    println!(
        "| users | case | wall s | objects/s | Graph requests | resource units | throttled | items written | items read | created | updated | disabled | removed | peak RSS MiB | status |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for c in cases {
        let k = &c.run.counts;
        let objects = k.created + k.updated + k.disabled + k.removed + k.unchanged + k.skipped;
        println!(
            "| {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:?} |",
            c.users,
            c.name,
            c.wall_s,
            objects as f64 / c.wall_s.max(1e-9),
            c.graph_requests,
            c.resource_units,
            c.throttled,
            c.written,
            c.read,
            k.created,
            k.updated,
            k.disabled,
            k.removed,
            c.peak_rss_mib,
            c.run.status
        );
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let store = match &args.dynamodb {
        Some(t) => format!("DynamoDB ({t}-N)"),
        None => "embedded (SQLite)".to_string(),
    };
    let mut all = Vec::new();
    for &users in &args.users {
        eprintln!("tenant of {users} users …");
        match tenant(users, &args).await {
            Ok(cases) => all.extend(cases),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    print(&all, &store);
}
