//! A `Table` that counts what passes through it, so the benchmark can report
//! store items written and read without touching the adapters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use dirsync_shared::store::Table;
use dirsync_shared::store::table::{Item, ItemPage, Key, Query, TableError, WriteOp, WriteResult};

#[derive(Default)]
pub struct Counts {
    directory_written: AtomicU64,
    other_written: AtomicU64,
    read: AtomicU64,
}

/// Items since the last [`Counts::take`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Items {
    /// Users, groups, memberships and address claims: what DESIGN.md §8's
    /// "0 directory items written" is about.
    pub directory_written: u64,
    /// The run's bookkeeping: run records, checkpoints, progress, cursors,
    /// the lease.
    pub other_written: u64,
    pub read: u64,
}

impl Counts {
    pub fn take(&self) -> Items {
        Items {
            directory_written: self.directory_written.swap(0, Ordering::Relaxed),
            other_written: self.other_written.swap(0, Ordering::Relaxed),
            read: self.read.swap(0, Ordering::Relaxed),
        }
    }
}

/// Whether a key holds directory data, by the partitions of
/// `shared/src/store/keys.rs`: users (`…#U#NN`), groups (`…#G`), members
/// (`…#M#group`) and address claims (`A#account#@#address`).
fn is_directory(key: &Key) -> bool {
    let pk = &key.pk;
    pk.contains("#U#")
        || pk.ends_with("#G")
        || pk.contains("#M#")
        || (pk.starts_with("A#") && pk.contains("#@#"))
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
        let directory = ops.iter().filter(|op| is_directory(op.key())).count() as u64;
        self.counts
            .directory_written
            .fetch_add(directory, Ordering::Relaxed);
        self.counts
            .other_written
            .fetch_add(ops.len() as u64 - directory, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_keys_are_told_from_bookkeeping() {
        let dir = [
            "A#a#C#c#U#03",
            "A#a#C#c#G",
            "A#a#C#c#M#g1",
            "A#a#@#x@contoso.com",
        ];
        let other = [
            "A#a#C#c",
            "A#a#C#c#RUNS",
            "A#a#C#c#RUN#1-2",
            "A#a#C#c#NK",
            "A#a",
        ];
        assert!(dir.iter().all(|pk| is_directory(&Key::new(*pk, "s"))));
        assert!(!other.iter().any(|pk| is_directory(&Key::new(*pk, "s"))));
    }
}
