//! A `Table` that counts what passes through it, so the benchmark can report
//! store items written and read without touching the adapters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use dirsync_shared::store::Table;
use dirsync_shared::store::table::{Item, ItemPage, Key, Query, TableError, WriteOp, WriteResult};

#[derive(Default)]
pub struct Counts {
    pub written: AtomicU64,
    pub read: AtomicU64,
}

impl Counts {
    /// (written, read) since the last call.
    pub fn take(&self) -> (u64, u64) {
        (
            self.written.swap(0, Ordering::Relaxed),
            self.read.swap(0, Ordering::Relaxed),
        )
    }
}

pub struct CountingTable {
    pub inner: Arc<dyn Table>,
    pub counts: Arc<Counts>,
}

#[async_trait]
impl Table for CountingTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.counts.read.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.counts
            .read
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.inner.get_many(keys).await
    }

    async fn write_many(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, TableError> {
        self.counts
            .written
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        self.inner.write_many(ops).await
    }

    async fn query(&self, query: &Query) -> Result<ItemPage, TableError> {
        let page = self.inner.query(query).await?;
        self.counts
            .read
            .fetch_add(page.items.len() as u64, Ordering::Relaxed);
        Ok(page)
    }
}
