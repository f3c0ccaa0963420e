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

/// Writes the record to standard output, which in Lambda is the log stream
/// CloudWatch turns into metrics. Elsewhere (the CLI) it would only be noise.
pub fn emit(run: &SyncRun, kind: ConnectorKind) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        println!("{}", run_record(run, kind));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountId, ConnectorId, SyncMode, Trigger};

    #[test]
    fn a_run_becomes_one_emf_record_with_every_metric_declared() {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut run = SyncRun::start(
            AccountId::new("acme").unwrap(),
            ConnectorId::new("main").unwrap(),
            Trigger::Manual { requested_by: None },
            SyncMode::Full,
            t0,
        );
        run.counts.created = 7;
        run.throttled = 2;
        run.finish(RunStatus::Staged, None, t0 + chrono::Duration::seconds(3));
        let r = run_record(&run, ConnectorKind::EntraConsent);
        let declared: Vec<&str> = r["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in &declared {
            assert!(r.get(*name).is_some(), "{name} is declared and present");
        }
        assert_eq!(r["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(
            (r["Created"].as_u64(), r["Throttled"].as_u64()),
            (Some(7), Some(2))
        );
        assert_eq!(
            (r["Staged"].as_u64(), r["Failed"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(r["DurationMs"].as_i64(), Some(3000));
        assert_eq!(r["Kind"], "entra");
    }
}
