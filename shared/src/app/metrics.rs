//! Run metrics in CloudWatch's embedded metric format: one JSON log line per
//! finished run, turned into metrics by CloudWatch Logs with no API calls.

use serde_json::{Value, json};

use crate::domain::{ConnectorKind, RunStatus, SyncRun};

pub const NAMESPACE: &str = "dirsync";

/// The EMF record of a run: counts by action, duration, requests,
/// throttles, and one of Succeeded/Staged/Partial/Failed set to 1 (the
/// template alarms on Failed and Staged).
pub fn run_record(run: &SyncRun, kind: ConnectorKind) -> Value {
    let c = &run.counts;
    let duration_ms = run
        .ended_at
        .map(|e| (e - run.started_at).num_milliseconds().max(0))
        .unwrap_or(0);
    let status = |s: RunStatus| u64::from(run.status == s);
    let metrics = [
        ("Created", "Count"),
        ("Updated", "Count"),
        ("Disabled", "Count"),
        ("Enabled", "Count"),
        ("Removed", "Count"),
        ("Unchanged", "Count"),
        ("Skipped", "Count"),
        ("Requests", "Count"),
        ("Throttled", "Count"),
        ("Succeeded", "Count"),
        ("Staged", "Count"),
        ("Partial", "Count"),
        ("Failed", "Count"),
        ("DurationMs", "Milliseconds"),
    ];
    json!({
        "_aws": {
            "Timestamp": run.ended_at.unwrap_or(run.started_at).timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Kind"], []],
                "Metrics": metrics.iter().map(|(n, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        },
        "Kind": kind.code(),
        "account": run.account,
        "connector": run.connector,
        "run": run.id,
        "status": run.status,
        "Created": c.created,
        "Updated": c.updated,
        "Disabled": c.disabled,
        "Enabled": c.enabled,
        "Removed": c.removed,
        "Unchanged": c.unchanged,
        "Skipped": c.skipped,
        "Requests": run.requests,
        "Throttled": run.throttled,
        "Succeeded": status(RunStatus::Succeeded),
        "Staged": status(RunStatus::Staged),
        "Partial": status(RunStatus::Partial),
        "Failed": status(RunStatus::Failed),
        "DurationMs": duration_ms,
    })
}

/// Writes the record to standard output (the Lambda log stream).
pub fn emit(run: &SyncRun, kind: ConnectorKind) {
    println!("{}", run_record(run, kind));
}
