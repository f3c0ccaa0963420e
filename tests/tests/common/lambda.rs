//! The deployment's function binaries run as Lambda runs them
//! (`dirsync-lambda-host`) against the local services, the job queue with
//! its dead-letter queue, and a poller that plays the SQS event-source
//! mapping for the worker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use dirsync_lambda_host::events::{self, HttpRequest, HttpResponse, SqsRecord};
use dirsync_lambda_host::{Function, Sandbox};
use serde_json::{Value, json};

use super::{EMULATOR_REGION, sqs_queue};

/// How long one invocation may take before the test gives up on it: far
/// more than a debug build needs, so only a hang trips it.
pub const INVOCATION_WAIT: Duration = Duration::from_secs(120);

/// How long the event source keeps polling for messages still in flight.
const DRAIN_WAIT: Duration = Duration::from_secs(300);

/// A failed message is visible again after this long: template.yaml's
/// 5400 s scaled down so a redelivery takes a second. The poller is
/// sequential, so a message can never be received twice at once.
const VISIBILITY_TIMEOUT_S: i32 = 1;

/// A function as template.yaml deploys it.
#[derive(Debug, Clone, Copy)]
pub struct Deployed {
    pub binary: &'static str,
    pub memory_mb: u32,
    pub timeout_s: u64,
}

pub const SYNC_WINDOW: Deployed = Deployed {
    binary: "sync-window",
    memory_mb: 512,
    timeout_s: 120,
};
pub const SYNC_WORKER: Deployed = Deployed {
    binary: "sync-worker",
    memory_mb: 1024,
    timeout_s: 900,
};
pub const ADMIN_API: Deployed = Deployed {
    binary: "admin-api",
    memory_mb: 512,
    timeout_s: 30,
};
pub const CONSENT_CALLBACK: Deployed = Deployed {
    binary: "consent-callback",
    memory_mb: 512,
    timeout_s: 30,
};
pub const CERT_ROTATION: Deployed = Deployed {
    binary: "cert-rotation",
    memory_mb: 512,
    timeout_s: 120,
};

/// A function binary of this build: cargo puts them in the folder above
/// the test executable's (`target/debug/deps/binaries-…` → `target/debug`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (infra/test does), and again \
         after changing the code, so that the test runs this checkout's binaries",
        path.display()
    );
    path
}

/// Starts `f`'s binary in a new sandbox with the given settings.
pub async fn start(f: Deployed, settings: &[(String, String)]) -> Sandbox {
    let function = Function {
        binary: binary(f.binary),
        name: format!("dirsync-test-{}", f.binary),
        memory_mb: f.memory_mb,
        timeout: Duration::from_secs(f.timeout_s),
        region: EMULATOR_REGION.to_owned(),
        env: settings.to_vec(),
    };
    Sandbox::start(&function)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Invokes the function with `event` and returns its response; a function
/// error fails the test with the function's output.
pub async fn call(sandbox: &mut Sandbox, event: &Value) -> Value {
    let invocation = sandbox
        .invoke(event.to_string().as_bytes(), INVOCATION_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body = invocation
        .outcome
        .response()
        .unwrap_or_else(|e| panic!("{e}; its output ends:\n{}", sandbox.output_tail()));
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "the response is not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

/// An HTTP API request through an HTTP function, which must answer with
/// `status`.
pub async fn http(sandbox: &mut Sandbox, request: &HttpRequest<'_>, status: u16) -> HttpResponse {
    let posted = call(sandbox, &events::http_api(request)).await;
    let response =
        HttpResponse::parse(posted.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        response.status,
        status,
        "{} {}: {}\nthe function's output ends:\n{}",
        request.method,
        request.path,
        response.body,
        sandbox.output_tail()
    );
    response
}

/// A job queue and the dead-letter queue its messages go to after
/// `max_receives` deliveries (template.yaml's `RedrivePolicy`).
pub struct JobQueues {
    pub url: String,
    pub arn: String,
    pub dead_letters: String,
}

pub async fn job_queues(sqs: &aws_sdk_sqs::Client, max_receives: u32) -> JobQueues {
    let dead_letters = sqs_queue(sqs).await;
    let redrive = json!({
        "deadLetterTargetArn": queue_arn(sqs, &dead_letters).await,
        "maxReceiveCount": max_receives,
    });
    let url = sqs
        .create_queue()
        .queue_name(format!("dirsync-jobs-{}", uuid::Uuid::new_v4().simple()))
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .expect("create the job queue on the emulator")
        .queue_url
        .expect("a created queue has a URL");
    JobQueues {
        arn: queue_arn(sqs, &url).await,
        url,
        dead_letters,
    }
}

async fn queue_attribute(sqs: &aws_sdk_sqs::Client, url: &str, name: QueueAttributeName) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .expect("read the queue's attributes")
        .attributes
        .and_then(|mut a| a.remove(&name))
        .unwrap_or_else(|| panic!("the queue {url} has no {name:?}"))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    queue_attribute(sqs, url, QueueAttributeName::QueueArn).await
}

/// One message of a batch, as the worker received it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub message_id: String,
    pub body: String,
    pub receive_count: u32,
}

/// One invocation of the worker: the batch and what it reported failed.
#[derive(Debug)]
pub struct Delivery {
    pub records: Vec<Delivered>,
    pub failed: Vec<String>,
}

/// Plays template.yaml's SQS event-source mapping for the worker: receives
/// a batch (hidden for the visibility timeout), invokes the worker with it,
/// and deletes every message the worker did not name in
/// `batchItemFailures`. A failed message reappears when its visibility
/// timeout is over; SQS itself moves it to the dead-letter queue once it
/// has been received `maxReceiveCount` times.
pub struct EventSource<'a> {
    pub sqs: &'a aws_sdk_sqs::Client,
    pub queues: &'a JobQueues,
    pub batch_size: i32,
}

impl EventSource<'_> {
    /// Delivers batches to the worker until the queue holds nothing,
    /// visible, in flight or delayed; returns every delivery in order.
    pub async fn drain(&self, worker: &mut Sandbox) -> Vec<Delivery> {
        let give_up = Instant::now() + DRAIN_WAIT;
        let mut deliveries = Vec::new();
        loop {
            let batch = self.receive().await;
            if !batch.is_empty() {
                deliveries.push(self.deliver(worker, batch).await);
            } else if self.is_empty().await {
                return deliveries;
            }
            assert!(
                Instant::now() < give_up,
                "messages still on the queue after {DRAIN_WAIT:?}; delivered so far: {deliveries:#?}"
            );
        }
    }

    /// One long poll (a second at most).
    async fn receive(&self) -> Vec<Message> {
        self.sqs
            .receive_message()
            .queue_url(&self.queues.url)
            .max_number_of_messages(self.batch_size)
            .visibility_timeout(VISIBILITY_TIMEOUT_S)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive from the job queue")
            .messages
            .unwrap_or_default()
    }

    async fn deliver(&self, worker: &mut Sandbox, batch: Vec<Message>) -> Delivery {
        let records: Vec<SqsRecord> = batch.iter().map(record).collect();
        let response = call(worker, &events::sqs(&self.queues.arn, &records)).await;
        let failed: Vec<String> = response["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("the worker's answer has no batchItemFailures: {response}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_owned())
            .collect();
        for r in records.iter().filter(|r| !failed.contains(&r.message_id)) {
            self.sqs
                .delete_message()
                .queue_url(&self.queues.url)
                .receipt_handle(&r.receipt_handle)
                .send()
                .await
                .expect("delete a handled message");
        }
        let records = records
            .into_iter()
            .map(|r| Delivered {
                message_id: r.message_id,
                body: r.body,
                receive_count: r.receive_count,
            })
            .collect();
        Delivery { records, failed }
    }

    async fn is_empty(&self) -> bool {
        let counts = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        for name in counts {
            if queue_attribute(self.sqs, &self.queues.url, name).await != "0" {
                return false;
            }
        }
        true
    }
}

/// A received message as the event-source mapping hands it to Lambda.
fn record(m: &Message) -> SqsRecord {
    SqsRecord {
        message_id: m.message_id.clone().unwrap_or_default(),
        receipt_handle: m.receipt_handle.clone().unwrap_or_default(),
        body: m.body.clone().unwrap_or_default(),
        md5_of_body: m.md5_of_body.clone().unwrap_or_default(),
        receive_count: attribute(m, MessageSystemAttributeName::ApproximateReceiveCount),
        sent_ms: attribute(m, MessageSystemAttributeName::SentTimestamp),
        first_receive_ms: attribute(
            m,
            MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
        ),
    }
}

/// A numeric system attribute of a received message.
fn attribute<T: std::str::FromStr>(m: &Message, name: MessageSystemAttributeName) -> T {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&name))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the message carries no numeric {name:?}: {m:?}"))
}

/// The messages waiting on the dead-letter queue, received and left there.
pub async fn dead_letters(sqs: &aws_sdk_sqs::Client, queues: &JobQueues) -> Vec<Message> {
    sqs.receive_message()
        .queue_url(&queues.dead_letters)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive from the dead-letter queue")
        .messages
        .unwrap_or_default()
}

/// The `DIRSYNC_*` variables template.yaml gives any function: what a
/// deployment's test must set too.
pub fn template_variables() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with("DIRSYNC_")
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}
