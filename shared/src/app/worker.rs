//! One sync job, as the sync-worker runs it: load the connector, build its
//! source, run the engine until done or until the invocation's time runs
//! low, and enqueue the continuation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{RunStatus, SyncRun, Trigger};
use crate::engine::{RunOutcome, RunRequest};
use crate::queue::Job;

use super::window::delay_until;
use super::{App, AppError, metrics};

#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Finished(SyncRun),
    /// Checkpointed; a continuation job was enqueued.
    Continued(SyncRun),
    /// Another run holds the connector: this job is dropped.
    AlreadyRunning,
    /// The connector no longer exists or is paused.
    Skipped(String),
    /// Delivered before it is due: sent on to arrive nearer the time.
    Deferred {
        due: DateTime<Utc>,
    },
}

/// A job delivered this close to its due time runs (SQS delays are
/// counted in whole seconds).
const EARLY_ENOUGH: chrono::Duration = chrono::Duration::seconds(1);

/// How the worker reports its jobs in logs.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobLog {
    pub account: String,
    pub connector: String,
    pub outcome: String,
}

pub async fn process(
    app: &App,
    job: &Job,
    deadline: Option<tokio::time::Instant>,
) -> Result<JobOutcome, AppError> {
    if let Some(due) = job.due
        && due - app.store.now() > EARLY_ENOUGH
    {
        app.queue
            .send(job, delay_until(due, app.store.now()))
            .await?;
        return Ok(JobOutcome::Deferred { due });
    }
    let Some(connector) = app
        .store
        .get_connector(&job.account, &job.connector)
        .await?
    else {
        return Ok(JobOutcome::Skipped("the connector was deleted".into()));
    };
    if matches!(job.trigger, Trigger::Schedule { .. }) && !connector.is_due() {
        return Ok(JobOutcome::Skipped(
            "the connector is paused or waiting for consent".into(),
        ));
    }
    let source = match app.sources.source_for(&connector) {
        Ok(s) => s,
        Err(e) => {
            let run = app
                .engine
                .record_failure(&connector, job.trigger.clone(), &e.to_string())
                .await?;
            metrics::emit(&run, connector.kind());
            return Ok(JobOutcome::Finished(run));
        }
    };
    let request = RunRequest {
        trigger: job.trigger.clone(),
        full: job.full,
        dry_run: false,
        deadline,
    };
    match app.engine.run(&connector, source.as_ref(), request).await? {
        RunOutcome::Finished(run) => {
            metrics::emit(&run, connector.kind());
            tracing::info!(
                account = %run.account, connector = %run.connector, run = %run.id,
                status = ?run.status, "run finished"
            );
            Ok(JobOutcome::Finished(run))
        }
        RunOutcome::Continue { run, after } => {
            let next = Job {
                trigger: Trigger::Continuation,
                continues: Some(run.id.clone()),
                due: None,
                ..job.clone()
            };
            app.queue.send(&next, after).await?;
            tracing::info!(account = %run.account, connector = %run.connector, run = %run.id, "run continues");
            Ok(JobOutcome::Continued(run))
        }
        RunOutcome::AlreadyRunning { holder, until } => {
            tracing::info!(account = %job.account, connector = %job.connector, %holder, %until, "already running");
            Ok(JobOutcome::AlreadyRunning)
        }
        RunOutcome::DryRun { run, .. } => Ok(JobOutcome::Finished(run)),
    }
}

/// A job that failed on every delivery: record a failed run that says so
/// (the message itself goes to the dead-letter queue).
pub async fn give_up(app: &App, job: &Job, error: &str) -> Result<SyncRun, AppError> {
    let connector = app
        .store
        .get_connector(&job.account, &job.connector)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!("connector {}/{}", job.account, job.connector))
        })?;
    let message = format!(
        "The sync job failed on every attempt and was moved to the dead-letter queue: {error}. \
         Nothing was removed; use Sync now once the cause is fixed."
    );
    let run = app
        .engine
        .record_failure(&connector, job.trigger.clone(), &message)
        .await?;
    debug_assert_eq!(run.status, RunStatus::Failed);
    metrics::emit(&run, connector.kind());
    Ok(run)
}
