//! A [`Table`] decorator that counts the items passing through it, split
//! into directory items and bookkeeping (see [`keys::is_directory`]): how the
//! benchmark reports store work and how tests prove that an unchanged
//! re-sync writes no directory item. The adapters stay untouched.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::keys;
use super::table::{Item, ItemPage, Key, Query, Table, TableError, WriteOp, WriteResult};

/// How many of the last directory keys written are kept, for messages.
const RECENT: usize = 8;

/// Counters, shareable between several counted tables.
#[derive(Default)]
pub struct Counts {
    directory_written: AtomicU64,
    other_written: AtomicU64,
    added: AtomicU64,
    read: AtomicU64,
    recent: Mutex<VecDeque<String>>,
}

/// Items counted (since the start, or since the last [`Counts::take`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Items {
    /// Users, groups, memberships and address claims.
    pub directory_written: u64,
    /// Run records, checkpoints, progress, cursors, the lease.
    pub other_written: u64,
    /// Adds to counters (the shared Graph budget's), apart from the rest.
    pub added: u64,
    /// Items asked for by key, and items returned (or counted) by queries.
    pub read: u64,
}

impl Counts {
    pub fn now(&self) -> Items {
        Items {
            directory_written: self.directory_written.load(Ordering::SeqCst),
            other_written: self.other_written.load(Ordering::SeqCst),
            added: self.added.load(Ordering::SeqCst),
            read: self.read.load(Ordering::SeqCst),
        }
    }

    /// The counts so far, starting again from zero.
    pub fn take(&self) -> Items {
        Items {
            directory_written: self.directory_written.swap(0, Ordering::SeqCst),
            other_written: self.other_written.swap(0, Ordering::SeqCst),
            added: self.added.swap(0, Ordering::SeqCst),
            read: self.read.swap(0, Ordering::SeqCst),
        }
    }

    /// The last directory keys written, as `pk/sk`.
    pub fn recent(&self) -> Vec<String> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }
}

pub struct CountingTable {
    inner: Arc<dyn Table>,
    counts: Arc<Counts>,
}

impl CountingTable {
    pub fn new(inner: Arc<dyn Table>, counts: Arc<Counts>) -> Self {
        Self { inner, counts }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Directory items written since the start.
    pub fn directory_writes(&self) -> u64 {
        self.counts.now().directory_written
    }

    pub fn recent(&self) -> Vec<String> {
        self.counts.recent()
    }
}

#[async_trait]
impl Table for CountingTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.counts.read.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.counts
            .read
            .fetch_add(keys.len() as u64, Ordering::SeqCst);
        self.inner.get_many(keys).await
    }

    async fn write_many(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, TableError> {
        let mut directory = 0;
        {
            let mut recent = self.counts.recent.lock().unwrap_or_else(|p| p.into_inner());
            for key in ops
                .iter()
                .map(WriteOp::key)
                .filter(|k| keys::is_directory(k))
            {
                directory += 1;
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(format!("{}/{}", key.pk, key.sk));
            }
        }
        self.counts
            .directory_written
            .fetch_add(directory, Ordering::SeqCst);
        self.counts
            .other_written
            .fetch_add(ops.len() as u64 - directory, Ordering::SeqCst);
        self.inner.write_many(ops).await
    }

    async fn add(
        &self,
        key: &Key,
        attr: &str,
        by: u64,
        at_most: Option<u64>,
        ttl: i64,
    ) -> Result<Option<u64>, TableError> {
        self.counts.added.fetch_add(1, Ordering::SeqCst);
        self.inner.add(key, attr, by, at_most, ttl).await
    }

    async fn settle(&self) -> Result<(), TableError> {
        self.inner.settle().await
    }

    async fn count(&self, query: &Query) -> Result<u64, TableError> {
        let n = self.inner.count(query).await?;
        self.counts.read.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }

    async fn query_each(&self, queries: &[Query]) -> Result<Vec<Vec<Item>>, TableError> {
        let all = self.inner.query_each(queries).await?;
        let n: usize = all.iter().map(Vec::len).sum();
        self.counts.read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(all)
    }

    async fn query(&self, query: &Query) -> Result<ItemPage, TableError> {
        let page = self.inner.query(query).await?;
        self.counts
            .read
            .fetch_add(page.items.len() as u64, Ordering::SeqCst);
        Ok(page)
    }
}
