//! Fixtures shared by the cross-crate tests: stores on the real backends.

#![allow(dead_code)]

use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use chrono::{DateTime, Utc};
use dirsync_shared::clock::ManualClock;
use dirsync_shared::store::{DynamoTable, EmbeddedTable, StateStore, Table};

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
    /// Keeps the embedded store's folder alive for the test.
    _dir: Option<tempfile::TempDir>,
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .into()
}

/// A DynamoDB client for DynamoDB Local. The test command exports the
/// endpoint; running without it is a setup error, never a skip.
pub fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let endpoint = std::env::var(DYNAMODB_ENV).unwrap_or_else(|_| {
        panic!(
            "{DYNAMODB_ENV} is not set: run the tests with `infra/test` (it installs and starts \
             DynamoDB Local), or start DynamoDB Local yourself and export {DYNAMODB_ENV}=http://127.0.0.1:8000"
        )
    });
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "dirsync-tests",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
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
    let clock = Arc::new(ManualClock::new(start_time()));
    let (table, dir): (Arc<dyn Table>, _) = match backend {
        Backend::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            let table = EmbeddedTable::open(&dir.path().join("dirsync.db")).unwrap();
            (Arc::new(table), Some(dir))
        }
        Backend::Dynamo => (Arc::new(dynamo_table().await), None),
    };
    Fixture {
        store: StateStore::new(table, clock.clone()),
        clock,
        _dir: dir,
    }
}
