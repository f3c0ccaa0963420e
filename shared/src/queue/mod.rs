//! The `JobQueue` port: how sync jobs travel from the sync windows and the
//! admin API to the workers. SQS in production; in-process locally.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::domain::{AccountId, ConnectorId, RunId, Trigger};

/// One connector to sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub account: AccountId,
    pub connector: ConnectorId,
    pub trigger: Trigger,
    /// Read everything even where a delta cursor is stored.
    #[serde(default)]
    pub full: bool,
    /// Set on continuations: the run this job carries on.
    #[serde(default)]
    pub continues: Option<RunId>,
    /// Not to start before this (a window's offset, which may lie beyond
    /// SQS's longest delay): an early delivery is sent on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the job queue refused the job: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends a job to be delivered after `delay` (SQS allows up to 15 min).
    async fn send(&self, job: &Job, delay: Duration) -> Result<(), QueueError>;
}

/// SQS's longest message delay.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// A delay as SQS takes it, in whole seconds, rounded up: a job is never
/// delivered before it is due.
pub fn whole_seconds(delay: Duration) -> u64 {
    let d = delay.min(MAX_DELAY);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(whole_seconds(delay) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                QueueError(format!(
                    "SQS SendMessage failed: {}",
                    e.message()
                        .or(e.code())
                        .unwrap_or("no answer from the service")
                ))
            })
    }
}

/// Jobs kept in memory, for local runs and tests.
#[derive(Debug, Default)]
pub struct LocalQueue {
    jobs: Mutex<VecDeque<(Job, Duration)>>,
}

impl LocalQueue {
    pub fn take_all(&self) -> Vec<(Job, Duration)> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl JobQueue for LocalQueue {
    async fn send(&self, job: &Job, delay: Duration) -> Result<(), QueueError> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((job.clone(), delay.min(MAX_DELAY)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_seconds_at_most_15_minutes() {
        let s = |ms| whole_seconds(Duration::from_millis(ms));
        assert_eq!((s(0), s(1), s(1_000), s(1_001)), (0, 1, 1, 2));
        assert_eq!(s(5_000_000), 900);
    }
}
