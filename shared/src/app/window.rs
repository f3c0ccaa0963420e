//! A scheduled sync window: every due connector of the region gets one job,
//! each at its own offset into the window's span for its kind of directory,
//! so that all customers do not hit the shared Graph budget at the same
//! second. Spans are longer than SQS's 15-minute delay: a job carries the
//! time it is due, and a worker that receives it early sends it on with the
//! delay still left (`worker::process`), so a three-hour span costs up to
//! twelve deliveries per job and nothing else to run.

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

/// How long a window's jobs are spread over, per kind of directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpans {
    /// Entra: every consent connector reads Graph as the one platform app,
    /// whose budget across all tenants is shared by every customer.
    pub entra: Duration,
    /// Active Directory and Domino: each customer's own server.
    pub ldap: Duration,
    /// Google Workspace: quotas are per customer's project and domain.
    pub google: Duration,
}

impl WindowSpans {
    /// Windows are at least five hours apart (08:00, 13:00, 23:00): a span
    /// ends an hour before the next window begins.
    pub const MAX: Duration = Duration::from_secs(4 * 3600);

    /// Every job at the window's start (local runs, the demo, tests).
    pub const NONE: WindowSpans = WindowSpans {
        entra: Duration::ZERO,
        ldap: Duration::ZERO,
        google: Duration::ZERO,
    };

    pub fn of(&self, kind: ConnectorKind) -> Duration {
        match kind {
            ConnectorKind::EntraConsent | ConnectorKind::EntraLegacy => self.entra,
            ConnectorKind::ActiveDirectory | ConnectorKind::Domino => self.ldap,
            ConnectorKind::Google => self.google,
        }
    }
}

impl Default for WindowSpans {
    /// Three hours for Entra, as the large multi-tenant syncs spread theirs;
    /// an hour for the others.
    fn default() -> Self {
        WindowSpans {
            entra: Duration::from_secs(3 * 3600),
            ldap: Duration::from_secs(3600),
            google: Duration::from_secs(3600),
        }
    }
}

/// Where in its span a connector's job goes: fixed per connector (the same
/// in every window), so a customer syncs at about the same minute every
/// day. Jobs start in the span's first nine tenths: the last tenth is for
/// the syncs that started last to finish inside the span.
pub fn offset(account: &str, connector: &str, span: Duration) -> Duration {
    let starts = span.min(WindowSpans::MAX).as_millis() as u64 * 9 / 10;
    if starts == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(fingerprint(&[account, connector]) % starts)
}

/// The SQS delay that brings a job due at `due` closest to it: what is
/// left, at most SQS's longest delay.
pub fn delay_until(due: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (due - now).to_std().unwrap_or_default().min(MAX_DELAY)
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
    spans: &WindowSpans,
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
            let offset = offset(c.account.as_str(), c.id.as_str(), spans.of(c.kind()));
            let due = event.scheduled_time + chrono::Duration::from_std(offset).unwrap_or_default();
            let job = Job {
                account: c.account.clone(),
                connector: c.id.clone(),
                trigger: Trigger::Schedule {
                    window: event.scheduled_time,
                },
                full: wants_full(c.kind(), event.region, event.scheduled_time),
                continues: None,
                due: Some(due),
            };
            if let Err(e) = queue.send(&job, delay_until(due, store.now())).await {
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
    fn offsets_are_stable_per_connector_and_fill_the_span() {
        let span = Duration::from_secs(3 * 3600);
        let d = offset("acme", "main", span);
        assert_eq!(d, offset("acme", "main", span), "the same every window");
        assert!(d < span * 9 / 10, "{d:?} leaves the span's last tenth");
        assert_eq!(offset("acme", "main", Duration::ZERO), Duration::ZERO);
        assert!(offset("acme", "main", Duration::from_secs(86_400)) < WindowSpans::MAX);
        // A thousand connectors cover the three hours, not SQS's 15 minutes.
        let late = (0..1000)
            .filter(|i| offset("acme", &format!("c{i}"), span) > Duration::from_secs(2 * 3600))
            .count();
        assert!(
            (180..340).contains(&late),
            "{late} of 1000 in the last 42 minutes of starts"
        );
    }

    #[test]
    fn a_delay_is_what_is_left_at_most_15_minutes() {
        let now: DateTime<Utc> = "2026-07-01T08:00:00Z".parse().unwrap();
        let at = |m: i64| now + chrono::Duration::minutes(m);
        assert_eq!(delay_until(at(5), now), Duration::from_secs(300));
        assert_eq!(delay_until(at(100), now), MAX_DELAY);
        assert_eq!(delay_until(at(-5), now), Duration::ZERO);
    }

    #[test]
    fn each_kind_has_its_span() {
        let spans = WindowSpans::default();
        assert_eq!(
            spans.of(ConnectorKind::EntraConsent),
            Duration::from_secs(10_800)
        );
        assert_eq!(
            spans.of(ConnectorKind::EntraLegacy),
            Duration::from_secs(10_800)
        );
        assert_eq!(spans.of(ConnectorKind::Domino), Duration::from_secs(3600));
        assert_eq!(spans.of(ConnectorKind::Google), Duration::from_secs(3600));
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
