//! Fixtures shared by the cross-crate tests: stores on the real backends.

#![allow(dead_code)]

pub mod before_unids;
pub mod consent;
pub mod lambda;
pub mod memory;
pub mod mirror;
pub mod rows;
pub mod world;

use serde_json::Value;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dirsync_shared::clock::ManualClock;
use dirsync_shared::store::{CountingTable, DynamoTable, EmbeddedTable, StateStore, Table};

/// Declares each named async test function (taking a [`Fixture`]) twice: on
/// the embedded store and on DynamoDB Local.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::fixture(super::common::Backend::Embedded).await).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::fixture(super::common::Backend::Dynamo).await).await
                }
            )*
        }
    };
}

/// Where the test command started DynamoDB Local.
pub const DYNAMODB_ENV: &str = "DIRSYNC_TEST_DYNAMODB_ENDPOINT";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Embedded,
    Dynamo,
}

pub struct Fixture {
    pub store: StateStore,
    pub clock: Arc<ManualClock>,
    /// Counts the directory items (users, groups, memberships, addresses)
    /// written through the store.
    pub writes: Arc<CountingTable>,
    /// The DynamoDB Local table, when the fixture is on DynamoDB.
    pub table: Option<String>,
    /// Keeps the embedded store's folder alive for the test.
    _dir: Option<tempfile::TempDir>,
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .into()
}

/// Where DynamoDB Local listens. The test command exports the endpoint;
/// running without it is a setup error, never a skip.
pub fn dynamodb_endpoint() -> String {
    std::env::var(DYNAMODB_ENV).unwrap_or_else(|_| {
        panic!(
            "{DYNAMODB_ENV} is not set: run the tests with `infra/test` (it installs and starts \
             DynamoDB Local), or start DynamoDB Local yourself and export {DYNAMODB_ENV}=http://127.0.0.1:8000"
        )
    })
}

/// A DynamoDB client for DynamoDB Local.
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&local_aws(dynamodb_endpoint()))
}

/// A fresh table on DynamoDB Local, named uniquely so tests run in parallel.
pub async fn dynamo_table() -> DynamoTable {
    let name = format!("dirsync-test-{}", uuid::Uuid::new_v4().simple());
    let table = DynamoTable::new(dynamodb_client(), name);
    table
        .create_table()
        .await
        .expect("create table on DynamoDB Local");
    table
}

pub async fn fixture(backend: Backend) -> Fixture {
    fixture_at(backend, start_time()).await
}

/// A fixture whose clock starts at `start` (tests that talk to a simulator
/// checking real time start at now).
pub async fn fixture_at(backend: Backend, start: DateTime<Utc>) -> Fixture {
    let clock = Arc::new(ManualClock::new(start));
    let (table, dir, name): (Arc<dyn Table>, _, _) = match backend {
        Backend::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            let table = EmbeddedTable::open(&dir.path().join("dirsync.db")).unwrap();
            (Arc::new(table), Some(dir), None)
        }
        Backend::Dynamo => {
            let table = dynamo_table().await;
            let name = table.table_name().to_owned();
            (Arc::new(table), None, Some(name))
        }
    };
    let writes = Arc::new(CountingTable::new(table, Default::default()));
    Fixture {
        store: StateStore::new(writes.clone(), clock.clone()),
        clock,
        writes,
        table: name,
        _dir: dir,
    }
}

/// Every item of a DynamoDB fixture's table, by `pk sk`, as JSON text:
/// what a store diff compares.
pub async fn table_items(f: &Fixture) -> std::collections::BTreeMap<String, String> {
    let name = f.table.as_deref().expect("a DynamoDB fixture");
    let client = dynamodb_client();
    let mut items = std::collections::BTreeMap::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(name)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan DynamoDB Local");
        for item in page.items() {
            // As JSON, whose maps are ordered: equal items print equal.
            let value: Value = serde_dynamo::from_item(item.clone()).expect("an item");
            let key = format!(
                "{} {}",
                value["pk"].as_str().unwrap_or_default(),
                value["sk"].as_str().unwrap_or_default()
            );
            items.insert(key, value.to_string());
        }
        match page.last_evaluated_key() {
            Some(k) => start = Some(k.clone()),
            None => return items,
        }
    }
}

/// The table without its audit trails: what a refused request must leave
/// as it was.
pub async fn table_without_audit(f: &Fixture) -> std::collections::BTreeMap<String, String> {
    let mut items = table_items(f).await;
    // Audit records and the marks that limit outsiders' records.
    items.retain(|k, _| !k.split(' ').next().unwrap_or_default().contains("#AUDIT"));
    items
}

/// Where the test command started the Secrets Manager emulator.
pub const SECRETS_ENV: &str = "DIRSYNC_TEST_SECRETS_ENDPOINT";

/// The region the tests use on the emulators (moto keeps queues and
/// secrets per region).
pub const EMULATOR_REGION: &str = "us-east-1";

/// AWS configuration for a local emulator: fixed region and credentials.
fn local_aws(endpoint: String) -> aws_config::SdkConfig {
    let credentials =
        aws_sdk_sqs::config::Credentials::new("local", "local", None, None, "dirsync-tests");
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(EMULATOR_REGION))
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            credentials,
        ))
        .endpoint_url(endpoint)
        .build()
}

/// The moto emulator the test command started (Secrets Manager and SQS).
fn emulator() -> aws_config::SdkConfig {
    local_aws(emulator_endpoint())
}

/// Where the moto emulator (Secrets Manager and SQS) listens.
pub fn emulator_endpoint() -> String {
    std::env::var(SECRETS_ENV).unwrap_or_else(|_| {
        panic!("{SECRETS_ENV} is not set: run the tests with `infra/test` (it installs and starts the AWS emulator for Secrets Manager and SQS)")
    })
}

pub fn secrets_manager() -> dirsync_shared::secrets::SecretsManagerStore {
    dirsync_shared::secrets::SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(
        &emulator(),
    ))
}

/// An SQS client for the emulator.
pub fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&emulator())
}

/// A fresh queue on the emulator; returns its URL.
pub async fn sqs_queue(client: &aws_sdk_sqs::Client) -> String {
    let name = format!("dirsync-test-{}", uuid::Uuid::new_v4().simple());
    client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Every message waiting on a queue, received and deleted.
pub async fn drain_queue(
    client: &aws_sdk_sqs::Client,
    url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return all;
        }
        for m in &msgs {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.clone().unwrap())
                .send()
                .await
                .unwrap();
        }
        all.extend(msgs);
    }
}
