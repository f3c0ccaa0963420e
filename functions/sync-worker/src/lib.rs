//! sync-worker: takes sync jobs from SQS, runs them through the engine, and
//! continues a long run in a new invocation before this one's time is up.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use dirsync_shared::app::App;
use dirsync_shared::app::worker::{JobOutcome, give_up, process};
use dirsync_shared::queue::Job;

/// Deliveries before SQS moves a message to the dead-letter queue; must
/// match `maxReceiveCount` in template.yaml.
pub const MAX_RECEIVES: u32 = 3;

/// Stop this long before the Lambda deadline (checkpoint, enqueue, return).
pub const SAFETY: Duration = Duration::from_secs(20);

pub async fn handle(
    app: &App,
    event: SqsEvent,
    deadline: Option<tokio::time::Instant>,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let receives: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let job: Job = match record.body.as_deref().map(serde_json::from_str) {
            Some(Ok(job)) => job,
            _ => {
                tracing::error!(message = %id, "not a sync job; it will end in the dead-letter queue");
                failures.push(failure(id));
                continue;
            }
        };
        match process(app, &job, deadline).await {
            Ok(outcome) => {
                let what = match &outcome {
                    JobOutcome::Finished(r) => format!("finished {:?}", r.status),
                    JobOutcome::Continued(_) => "continues".into(),
                    JobOutcome::AlreadyRunning => "already running".into(),
                    JobOutcome::Skipped(why) => format!("skipped: {why}"),
                    JobOutcome::Deferred { due } => format!("sent on until it is due at {due}"),
                };
                tracing::info!(account = %job.account, connector = %job.connector, outcome = %what, "job done");
            }
            Err(e) => {
                tracing::error!(account = %job.account, connector = %job.connector, attempt = receives, error_type = e.failure_kind().error_type(), error = %e, "job failed");
                if receives >= MAX_RECEIVES
                    && let Err(e2) = give_up(app, &job, &e.to_string()).await
                {
                    tracing::error!(error = %e2, "could not record the failed run");
                }
                failures.push(failure(id));
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

/// The instant to stop by, from the invocation's deadline (epoch ms).
pub fn stop_by(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    tokio::time::Instant::now() + left.saturating_sub(SAFETY)
}
