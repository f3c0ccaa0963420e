//! A scheduled sync window: every due connector of the region gets one job,
//! spread over part of the window so that all customers do not hit the
//! shared Graph budget at the same second.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{ConnectorKind, Region, Trigger};
use crate::engine::progress::fingerprint;
use crate::queue::{Job, JobQueue, MAX_DELAY};
use crate::store::{PageRequest, StateStore};

use super::AppError;

/// What the scheduler sends (the schedule's own `Input`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowEvent {
    pub region: Region,
    /// `<aws.scheduler.scheduled-time>`: the window this invocation is for,
    /// the same on a retry of the same window.
    pub scheduled_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOut {
    pub enqueued: u64,
    /// Already enqueued for this window (the window fired twice).
    pub already: u64,
    /// Paused, or waiting for consent.
    pub not_due: u64,
}

/// Markers that make a window idempotent live this long.
const MARKER_DAYS: i64 = 2;

/// Where in the spread a connector's job goes: fixed per connector, so a
/// customer syncs at about the same minute every day.
pub fn spread_delay(key: &str, spread: Duration) -> Duration {
    let spread = spread.min(MAX_DELAY).as_secs();
    if spread == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(fingerprint(&[key]) % spread)
}

/// LDAP directories report deletions only through a full read (a read-only
/// account cannot see tombstones): their 23:00 window reads in full.
fn wants_full(kind: ConnectorKind, region: Region, window: DateTime<Utc>) -> bool {
    matches!(kind, ConnectorKind::ActiveDirectory | ConnectorKind::Domino)
        && window.with_timezone(&region.timezone()).hour() == 23
}

pub async fn fan_out(
    store: &StateStore,
    queue: &dyn JobQueue,
    event: &WindowEvent,
    spread: Duration,
) -> Result<FanOut, AppError> {
    let mut report = FanOut::default();
    let mut token = None;
    loop {
        let page = store
            .list_connectors_in_region(event.region, PageRequest::after(token, 100))
            .await?;
        for c in page.items {
            if !c.is_due() {
                report.not_due += 1;
                continue;
            }
            let key = format!(
                "{}#{}#{}",
                c.account,
                c.id,
                event.scheduled_time.timestamp()
            );
            // Counted from now as well: a late retry of an old window must
            // still find its claim.
            let expires =
                event.scheduled_time.max(store.now()) + chrono::Duration::days(MARKER_DAYS);
            // Claim the (connector, window) pair first: a second firing of the
            // same window finds the claim and enqueues nothing.
            if !store
                .put_ephemeral("window", &key, &json!({"state": "enqueued"}), expires, true)
                .await?
            {
                report.already += 1;
                continue;
            }
            let job = Job {
                account: c.account.clone(),
                connector: c.id.clone(),
                trigger: Trigger::Schedule {
                    window: event.scheduled_time,
                },
                full: wants_full(c.kind(), event.region, event.scheduled_time),
                continues: None,
            };
            if let Err(e) = queue.send(&job, spread_delay(&key, spread)).await {
                // Give the claim back so that a retry of the window enqueues it.
                store.take_ephemeral("window", &key).await?;
                return Err(e.into());
            }
            report.enqueued += 1;
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_stable_and_bounded() {
        let d = spread_delay("acme#main#1", Duration::from_secs(600));
        assert_eq!(d, spread_delay("acme#main#1", Duration::from_secs(600)));
        assert!(d < Duration::from_secs(600));
        assert!(spread_delay("x", Duration::from_secs(10_000)) < MAX_DELAY);
        assert_eq!(spread_delay("x", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn ldap_reads_in_full_at_23_local() {
        let t: DateTime<Utc> = "2026-07-01T22:00:00Z".parse().unwrap(); // 23:00 in London (BST)
        assert!(wants_full(
            ConnectorKind::ActiveDirectory,
            Region::Europe,
            t
        ));
        assert!(!wants_full(ConnectorKind::EntraConsent, Region::Europe, t));
        assert!(!wants_full(ConnectorKind::Domino, Region::NorthAmerica, t));
    }
}
