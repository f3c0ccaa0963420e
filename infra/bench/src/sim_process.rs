//! The Entra simulator in a process of its own, so that the benchmark's
//! peak RSS is the engine's alone: the simulator holds its own copy of the
//! tenant, as large as the engine's working set.
//!
//! The child is this binary re-executed with [`FLAG`]. It generates the
//! tenant, registers the legacy app, prints one JSON line ([`Hello`]), then
//! answers each command line on stdin with one JSON line on stdout:
//!
//! | command      | does                                            | answer |
//! |--------------|-------------------------------------------------|--------|
//! | `change`     | changes 1% of users ([`change_one_percent`])    | `{}` |
//! | `reset`      | restarts the request counters and the peak RSS  | `{}` |
//! | `stats`      | —                                               | [`Stats`] |
//! | `latency MS` | delays every Graph response by MS milliseconds  | `{}` |
//! | `rss`        | —                                               | `{"peak_mib": …}` |
//!
//! Failures answer `{"error": "…"}`. End of input ends the child.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use dirsync_entra_sim::{EntraSim, Faults, GenSpec, SimUser, TenantSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::rss;

/// The hidden flag that makes the binary the simulator's child.
pub const FLAG: &str = "--sim-child";

/// Where the simulator listens and the legacy app's credentials.
#[derive(Clone, Serialize, Deserialize)]
pub struct Hello {
    pub authority_url: String,
    pub graph_url: String,
    pub client_id: Uuid,
    pub client_secret: String,
}

/// What the simulator served since the last `reset`.
#[derive(Serialize, Deserialize)]
pub struct Stats {
    /// Graph requests (token requests left out: they are not pages).
    pub graph_requests: u64,
    pub users_pages: u64,
    pub groups_pages: u64,
    pub resource_units: u64,
    pub throttled: u64,
}

/// The parent's handle. The calls block, which is fine: they are made
/// between cases, never while a sync is in flight.
pub struct SimProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub hello: Hello,
}

impl SimProcess {
    /// Starts the child; returns once its tenant of `users` is generated.
    pub fn spawn(users: u32) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args([FLAG, "--users", &users.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the simulator: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the simulator's pipes are missing".into());
        };
        let mut stdout = BufReader::new(stdout);
        let hello = serde_json::from_value(read_answer(&mut stdout)?).map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout,
            hello,
        })
    }

    fn call(&mut self, command: &str) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().ok_or("the simulator is closed")?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("simulator: {e}"))?;
        read_answer(&mut self.stdout)
    }

    pub fn change_one_percent(&mut self) -> Result<(), String> {
        self.call("change").map(drop)
    }

    pub fn reset(&mut self) -> Result<(), String> {
        self.call("reset").map(drop)
    }

    pub fn stats(&mut self) -> Result<Stats, String> {
        serde_json::from_value(self.call("stats")?).map_err(|e| e.to_string())
    }

    pub fn set_latency(&mut self, ms: u64) -> Result<(), String> {
        self.call(&format!("latency {ms}")).map(drop)
    }

    pub fn peak_rss_mib(&mut self) -> Result<f64, String> {
        Ok(self.call("rss")?["peak_mib"].as_f64().unwrap_or(0.0))
    }
}

impl Drop for SimProcess {
    /// Closing stdin ends the child; wait for it so no process outlives the
    /// benchmark.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn read_answer(stdout: &mut impl BufRead) -> Result<Value, String> {
    let mut line = String::new();
    match stdout.read_line(&mut line) {
        Ok(0) => return Err("the simulator exited".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("simulator: {e}")),
    }
    let answer: Value = serde_json::from_str(&line).map_err(|e| format!("simulator: {e}"))?;
    match answer["error"].as_str() {
        Some(e) => Err(format!("simulator: {e}")),
        None => Ok(answer),
    }
}

/// The child's main: serves the simulator on a runtime of its own while
/// this thread answers commands.
pub fn child(users: u32) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let sim = runtime
        .block_on(EntraSim::start())
        .map_err(|e| e.to_string())?;
    let tenant = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
        ..Default::default()
    });
    // The design's tenant (§8): at 100,000 users, 5,000 groups and about
    // 500,000 memberships — a group per 20 users holding 80 on average,
    // plus an all-staff group holding everyone.
    let groups = (users / 20).max(5);
    let mut spec = GenSpec::sized(users, groups, 7);
    spec.avg_group_size = (users * 4 / groups).max(1);
    spec.large_group_members = Some(users);
    sim.generate_directory(tenant, spec);
    let hello = Hello {
        authority_url: sim.authority_url(),
        graph_url: sim.graph_url(),
        client_id: Uuid::new_v4(),
        client_secret: "bench-secret".into(),
    };
    sim.add_legacy_app(
        tenant,
        hello.client_id,
        &hello.client_secret,
        Utc::now() + chrono::Duration::days(1),
        &["Directory.Read.All"],
    );
    println!(
        "{}",
        serde_json::to_string(&hello).map_err(|e| e.to_string())?
    );

    for line in std::io::stdin().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let answer = match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["change"] => {
                change_one_percent(&sim, tenant);
                json!({})
            }
            ["reset"] => {
                sim.reset_stats();
                rss::reset_peak();
                json!({})
            }
            ["stats"] => {
                let s = sim.stats();
                serde_json::to_value(Stats {
                    graph_requests: s.requests_total - s.route("POST token"),
                    users_pages: s.route("GET /v1.0/users/delta"),
                    groups_pages: s.route("GET /v1.0/groups/delta"),
                    resource_units: s.resource_units.values().sum(),
                    throttled: s.throttled,
                })
                .map_err(|e| e.to_string())?
            }
            ["latency", ms] => match ms.parse() {
                Ok(ms) => {
                    sim.set_faults(Faults {
                        page_latency: Duration::from_millis(ms),
                        ..Faults::default()
                    });
                    json!({})
                }
                Err(_) => json!({ "error": format!("latency {ms:?}: not milliseconds") }),
            },
            ["rss"] => json!({ "peak_mib": rss::peak_mib() }),
            _ => json!({ "error": format!("unknown command {line:?}") }),
        };
        println!("{answer}");
    }
    Ok(())
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
