//! The embedded table: SQLite on local disk (or in memory), for the CLI, the
//! demo and tests. One table `items` mirrors the DynamoDB item layout; the
//! table `gsi1` plays the index of that name; inspect them with
//! `sqlite3 dirsync.db "select pk, sk, attrs from items limit 10"`.
//!
//! `gsi1` is maintained in sorted batches rather than on every write. Its
//! keys (the member of a membership, an address) arrive in random order, and
//! a live SQLite index of them made each page's commit rewrite thousands of
//! scattered index pages: the benchmark measured 600,000 memberships at
//! about 20 s with the index and 6 s without it plus a sorted build. So
//! triggers on `items` append what each write does to the index to
//! `gsi1_pending` (sequential, cheap, and without reading the old item a
//! second time: the trigger sees it). The end of a run (`Table::settle`), or
//! else the first index query after writes, applies the pending entries in
//! index order, in one transaction. Reads of the index therefore always see
//! every earlier write, on any connection, and a crash loses nothing: the
//! pending entries are in the same transactions as the items.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::table::{
    Attrs, Index, Item, ItemPage, Key, PageToken, Query, Table, TableError, WriteOp, WriteResult,
};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS items (
        pk     TEXT NOT NULL,
        sk     TEXT NOT NULL,
        gsi1pk TEXT,
        gsi1sk TEXT,
        ttl    INTEGER,
        attrs  TEXT NOT NULL,
        PRIMARY KEY (pk, sk)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ttl ON items (ttl) WHERE ttl IS NOT NULL;
    CREATE TABLE IF NOT EXISTS gsi1 (
        gsi1pk TEXT NOT NULL,
        gsi1sk TEXT NOT NULL,
        pk     TEXT NOT NULL,
        sk     TEXT NOT NULL,
        PRIMARY KEY (gsi1pk, gsi1sk, pk, sk)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS gsi1_pending (
        put    INTEGER NOT NULL,
        gsi1pk TEXT NOT NULL,
        gsi1sk TEXT NOT NULL,
        pk     TEXT NOT NULL,
        sk     TEXT NOT NULL
    );
    CREATE TRIGGER IF NOT EXISTS gsi1_on_insert AFTER INSERT ON items
        WHEN NEW.gsi1pk IS NOT NULL
    BEGIN
        INSERT INTO gsi1_pending VALUES (1, NEW.gsi1pk, NEW.gsi1sk, NEW.pk, NEW.sk);
    END;
    CREATE TRIGGER IF NOT EXISTS gsi1_on_update AFTER UPDATE OF gsi1pk, gsi1sk ON items
        WHEN OLD.gsi1pk IS NOT NEW.gsi1pk OR OLD.gsi1sk IS NOT NEW.gsi1sk
    BEGIN
        INSERT INTO gsi1_pending SELECT 0, OLD.gsi1pk, OLD.gsi1sk, OLD.pk, OLD.sk
            WHERE OLD.gsi1pk IS NOT NULL;
        INSERT INTO gsi1_pending SELECT 1, NEW.gsi1pk, NEW.gsi1sk, NEW.pk, NEW.sk
            WHERE NEW.gsi1pk IS NOT NULL;
    END;
    CREATE TRIGGER IF NOT EXISTS gsi1_on_delete AFTER DELETE ON items
        WHEN OLD.gsi1pk IS NOT NULL
    BEGIN
        INSERT INTO gsi1_pending VALUES (0, OLD.gsi1pk, OLD.gsi1sk, OLD.pk, OLD.sk);
    END;
";

/// Stores written before `gsi1` became a table had it as a partial index on
/// `items` (dropped first: the name is taken until then); its entries move
/// to the table, once.
const FILL_GSI1: &str = "
    INSERT INTO gsi1 SELECT gsi1pk, gsi1sk, pk, sk FROM items
        WHERE gsi1pk IS NOT NULL ORDER BY gsi1pk, gsi1sk, pk, sk;
";

/// Upper bound for "starts with": every key that starts with the prefix sorts
/// below prefix + U+10FFFF (keys never contain that non-character).
const PREFIX_END: char = '\u{10FFFF}';

/// Index reads of one [`Table::query_each`] call done in one transaction.
const QUERIES_PER_TRANSACTION: usize = 500;

/// How often the checkpoint thread copies the write-ahead log back.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Clone)]
pub struct EmbeddedTable {
    // Declared first, so dropped first: the checkpoint thread's connection
    // closes before the writer's, which as the last one checkpoints and
    // removes the log, as a store closed by one connection does.
    checkpointer: Option<Arc<Checkpointer>>,
    conn: Arc<Mutex<Connection>>,
}

/// The checkpoint thread (see [`EmbeddedTable::start_checkpointer`]),
/// stopped and waited for when the last clone of its table goes.
struct Checkpointer {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EmbeddedTable {
    /// Opens (creating if needed) a durable store at `path`.
    pub fn open(path: &Path) -> Result<Self, TableError> {
        let conn = Connection::open(path).map_err(|e| {
            TableError::Backend(format!(
                "cannot open the embedded store at {}: {e}; check the path and its permissions",
                path.display()
            ))
        })?;
        // WAL keeps readers going while a sync writes; NORMAL is durable
        // across process crashes (an OS crash can lose the last commits).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        // The default 2 MiB page cache makes a 100,000-user sync re-read
        // B-tree pages from the OS for most writes (the benchmark's profile
        // showed a fifth of the time in pread); 32 MiB holds the hot inner
        // pages (96 MiB was no faster). A larger WAL between checkpoints copies
        // each hot page back less often: checkpoints were a tenth of a first
        // sync at 8,192 pages, and 32,768 (up to 128 MiB of WAL on disk) took
        // about a second off it; beyond that the time moves to the close.
        conn.pragma_update(None, "cache_size", -32 * 1024)
            .map_err(backend)?;
        conn.pragma_update(None, "wal_autocheckpoint", 32_768)
            .map_err(backend)?;
        let mut table = Self::with_connection(conn)?;
        table.checkpointer = Some(Arc::new(Self::start_checkpointer(path)?));
        Ok(table)
    }

    /// Copies the write-ahead log back into the database file on a thread
    /// and connection of its own, so that the copying (a tenth of a large
    /// first sync, on the writer's thread) happens on another core while the
    /// writer goes on. A passive checkpoint never blocks the writer; the
    /// writer's own checkpoint at 32,768 pages stays as the bound on the
    /// log's size, and finds most of its pages already copied.
    fn start_checkpointer(path: &Path) -> Result<Checkpointer, TableError> {
        let conn = Connection::open(path).map_err(backend)?;
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("dirsync-checkpoint".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let mut stopped = stopped.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    stopped = wake
                        .wait_timeout(stopped, CHECKPOINT_EVERY)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stopped {
                        break;
                    }
                    // A failed pass (the writer's own checkpoint running, a
                    // reader in the way) leaves the log for the next one.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .map_err(|e| TableError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// A private in-memory store (tests).
    pub fn in_memory() -> Result<Self, TableError> {
        Self::with_connection(Connection::open_in_memory().map_err(backend)?)
    }

    fn with_connection(mut conn: Connection) -> Result<Self, TableError> {
        // Immediate: two processes opening an old store at once take turns.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let old_index: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'gsi1')",
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if old_index {
            tx.execute_batch("DROP INDEX gsi1;").map_err(backend)?;
        }
        tx.execute_batch(SCHEMA).map_err(backend)?;
        if old_index {
            tx.execute_batch(FILL_GSI1).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(Self {
            checkpointer: None,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Deletes items whose TTL has passed, as DynamoDB's TTL sweeper does
    /// (reads never depend on it having run).
    pub async fn purge_expired(&self, now_epoch_seconds: i64) -> Result<usize, TableError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let purged = tx.execute(
                "DELETE FROM items WHERE ttl IS NOT NULL AND ttl <= ?1",
                [now_epoch_seconds],
            )?;
            tx.commit()?;
            Ok(purged)
        })
        .await
    }

    async fn run<T, F>(&self, f: F) -> Result<T, TableError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| TableError::Backend(format!("embedded store task failed: {e}")))?
        .map_err(backend)
    }
}

fn backend(e: rusqlite::Error) -> TableError {
    TableError::Backend(format!("embedded store: {e}"))
}

// A macro rather than a `const`, so that the statements below are literals:
// a `format!` per call allocated and hashed a fresh string for the statement
// cache on every one of a sync's million point reads and writes.
macro_rules! columns {
    () => {
        "pk, sk, gsi1pk, gsi1sk, ttl, attrs"
    };
}

/// The index joined to the items it points at, for index reads: CROSS JOIN
/// keeps the index as the outer loop, in order, and the join checks that the
/// item still has that index key.
macro_rules! gsi1_join {
    () => {
        "FROM gsi1 g CROSS JOIN items i ON i.pk = g.pk AND i.sk = g.sk \
         AND i.gsi1pk = g.gsi1pk AND i.gsi1sk = g.gsi1sk"
    };
}

/// A transaction for reading through `index`. An index read writes first
/// (the pending entries) and then reads, both in one transaction taken for
/// writing from the start, so that another process's commit cannot come in
/// between.
fn read_transaction(c: &mut Connection, index: Index) -> rusqlite::Result<Transaction<'_>> {
    match index {
        Index::Primary => c.transaction(),
        Index::Gsi1 => {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            apply_pending_gsi1(&tx)?;
            Ok(tx)
        }
    }
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let pk: String = row.get(0)?;
    let sk: String = row.get(1)?;
    let gsi1pk: Option<String> = row.get(2)?;
    let gsi1sk: Option<String> = row.get(3)?;
    let attrs: String = row.get(5)?;
    let attrs: Attrs = serde_json::from_str(&attrs).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Item {
        gsi1: gsi1pk.zip(gsi1sk).map(|(pk, sk)| Key { pk, sk }),
        key: Key { pk, sk },
        ttl: row.get(4)?,
        attrs,
    })
}

fn get_one(conn: &Connection, key: &Key) -> rusqlite::Result<Option<Item>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        columns!(),
        " FROM items WHERE pk = ?1 AND sk = ?2"
    ))?
    .query_row(params![key.pk, key.sk], row_to_item)
    .optional()
}

fn put_one(conn: &Connection, item: &Item) -> rusqlite::Result<()> {
    let attrs = serde_json::to_string(&item.attrs)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(concat!(
        "INSERT INTO items (",
        columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (pk, sk) DO UPDATE SET \
         gsi1pk = excluded.gsi1pk, gsi1sk = excluded.gsi1sk, ttl = excluded.ttl, \
         attrs = excluded.attrs"
    ))?
    .execute(params![
        item.key.pk,
        item.key.sk,
        item.gsi1.as_ref().map(|k| &k.pk),
        item.gsi1.as_ref().map(|k| &k.sk),
        item.ttl,
        attrs
    ])?;
    Ok(())
}

fn delete_one(conn: &Connection, key: &Key) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")?
        .execute(params![key.pk, key.sk])?;
    Ok(())
}

/// Applies the pending index entries in index order, in SQL (stepping
/// through 700,000 entries of a first sync in Rust, one statement each, was
/// a tenth of it). For each entry only the last word counts: SQLite takes a
/// bare column of a `max()` aggregate from the row holding the maximum. When
/// nothing was removed from the index (a first sync), every entry is a put
/// and the grouping is not needed.
///
/// Runs inside the index query's own write transaction, so that no other
/// connection can write between bringing the index up to date and reading it.
fn apply_pending_gsi1(tx: &Connection) -> rusqlite::Result<()> {
    let (pending, removals): (bool, bool) = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM gsi1_pending), \
                EXISTS (SELECT 1 FROM gsi1_pending WHERE put = 0)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if !pending {
        return Ok(());
    }
    if removals {
        tx.execute_batch(
            "INSERT OR IGNORE INTO gsi1 SELECT gsi1pk, gsi1sk, pk, sk FROM ( \
                 SELECT put, gsi1pk, gsi1sk, pk, sk, max(rowid) FROM gsi1_pending \
                 GROUP BY gsi1pk, gsi1sk, pk, sk) WHERE put = 1 \
                 ORDER BY gsi1pk, gsi1sk, pk, sk; \
             DELETE FROM gsi1 WHERE (gsi1pk, gsi1sk, pk, sk) IN ( \
                 SELECT gsi1pk, gsi1sk, pk, sk FROM ( \
                     SELECT put, gsi1pk, gsi1sk, pk, sk, max(rowid) FROM gsi1_pending \
                     GROUP BY gsi1pk, gsi1sk, pk, sk) WHERE put = 0);",
        )?;
    } else {
        tx.execute(
            "INSERT OR IGNORE INTO gsi1 SELECT gsi1pk, gsi1sk, pk, sk FROM gsi1_pending \
             ORDER BY gsi1pk, gsi1sk, pk, sk",
            [],
        )?;
    }
    tx.execute("DELETE FROM gsi1_pending", [])?;
    Ok(())
}

/// One page of `q`, read inside `tx` (an index read's transaction has
/// brought the index up to date: [`read_transaction`]).
fn query_in(tx: &Connection, q: &Query) -> rusqlite::Result<ItemPage> {
    let (cmp, order) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    // Order by the index key and then the table key, which is what
    // makes an index page token unambiguous.
    let sql = match q.index {
        Index::Primary => {
            let after = if q.start.is_some() {
                format!("AND sk {cmp} ?4")
            } else {
                String::new()
            };
            format!(
                "SELECT {} FROM items WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 {after} \
                 ORDER BY sk {order} LIMIT ?7",
                columns!()
            )
        }
        Index::Gsi1 => {
            let after = if q.start.is_some() {
                format!("AND (g.gsi1sk, g.pk, g.sk) {cmp} (?4, ?5, ?6)")
            } else {
                String::new()
            };
            format!(
                concat!(
                    "SELECT i.pk, i.sk, i.gsi1pk, i.gsi1sk, i.ttl, i.attrs ",
                    gsi1_join!(),
                    " WHERE g.gsi1pk = ?1 AND g.gsi1sk >= ?2 AND g.gsi1sk < ?3 {after} \
                     ORDER BY g.gsi1sk {order}, g.pk {order}, g.sk {order} LIMIT ?7"
                ),
                after = after,
                order = order
            )
        }
    };
    let (s_sk, s_pk, s_tsk) = match &q.start {
        None => (String::new(), String::new(), String::new()),
        Some(t) => match q.index {
            Index::Primary => (t.key.sk.clone(), String::new(), String::new()),
            Index::Gsi1 => (
                t.gsi1.as_ref().map(|g| g.sk.clone()).unwrap_or_default(),
                t.key.pk.clone(),
                t.key.sk.clone(),
            ),
        },
    };
    let limit = q.limit.max(1);
    let mut stmt = tx.prepare_cached(&sql)?;
    let mut items: Vec<Item> = stmt
        .query_map(
            params![
                q.pk,
                q.sk_prefix,
                format!("{}{PREFIX_END}", q.sk_prefix),
                s_sk,
                s_pk,
                s_tsk,
                (limit + 1) as i64
            ],
            row_to_item,
        )?
        .collect::<rusqlite::Result<_>>()?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| PageToken {
            key: last.key.clone(),
            gsi1: last.gsi1.clone(),
        })
    } else {
        None
    };
    Ok(ItemPage { items, next })
}

/// Every item of `q`, page by page, inside `tx`.
fn all_items_in(tx: &Connection, mut q: Query) -> rusqlite::Result<Vec<Item>> {
    let mut items = Vec::new();
    loop {
        let page = query_in(tx, &q)?;
        items.extend(page.items);
        match page.next {
            Some(next) => q.start = Some(next),
            None => return Ok(items),
        }
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        let key = key.clone();
        self.run(move |c| get_one(c, &key)).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        // In key order, so that neighbouring keys share B-tree pages in the
        // cache (a page's memberships, for one): random order re-read pages
        // from the OS for a tenth of a first sync.
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        self.run(move |c| {
            let mut found = Vec::with_capacity(keys.len());
            for key in &keys {
                if let Some(item) = get_one(c, key)? {
                    found.push(item);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn write_many(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, TableError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.run(move |c| {
            // One transaction for the whole batch: each op still sees the
            // effect of the ones before it on its key, as sequential
            // DynamoDB calls would. Applied in key order (as `get_many`,
            // and stable, so writes of one key keep their order; a write
            // depends on no other key), results reported in the callers'.
            let mut order: Vec<usize> = (0..ops.len()).collect();
            order.sort_by(|a, b| ops[*a].key().cmp(ops[*b].key()));
            let tx = c.transaction()?;
            let mut results: Vec<WriteResult> = vec![Ok(None); ops.len()];
            for i in order {
                let op = &ops[i];
                // Only a conditional write reads what it replaces, as on
                // DynamoDB (a batched write returns no old item): reading
                // every item before writing it was a fifth of a first sync.
                let current = match op.cond() {
                    Some(cond) => {
                        let current = get_one(&tx, op.key())?;
                        if !cond.holds(current.as_ref()) {
                            results[i] = Err(super::table::ConditionFailed);
                            continue;
                        }
                        current
                    }
                    None => None,
                };
                match op {
                    WriteOp::Put { item, .. } => put_one(&tx, item)?,
                    WriteOp::Delete { key, .. } => delete_one(&tx, key)?,
                }
                results[i] = Ok(current);
            }
            tx.commit()?;
            Ok(results)
        })
        .await
    }

    async fn settle(&self) -> Result<(), TableError> {
        self.run(|c| read_transaction(c, Index::Gsi1)?.commit())
            .await
    }

    async fn count(&self, query: &Query) -> Result<u64, TableError> {
        let q = query.clone();
        self.run(move |c| {
            let sql = match q.index {
                Index::Primary => {
                    "SELECT count(*) FROM items WHERE pk = ?1 AND sk >= ?2 AND sk < ?3"
                }
                Index::Gsi1 => concat!(
                    "SELECT count(*) ",
                    gsi1_join!(),
                    " WHERE g.gsi1pk = ?1 AND g.gsi1sk >= ?2 AND g.gsi1sk < ?3"
                ),
            };
            let tx = read_transaction(c, q.index)?;
            let n: i64 = tx.prepare_cached(sql)?.query_row(
                params![q.pk, q.sk_prefix, format!("{}{PREFIX_END}", q.sk_prefix)],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    async fn query(&self, query: &Query) -> Result<ItemPage, TableError> {
        let q = query.clone();
        self.run(move |c| {
            let tx = read_transaction(c, q.index)?;
            let page = query_in(&tx, &q)?;
            tx.commit()?;
            Ok(page)
        })
        .await
    }

    async fn query_each(&self, queries: &[Query]) -> Result<Vec<Vec<Item>>, TableError> {
        // A transaction per few hundred: thousands of small index reads each
        // paid for a blocking task and a write transaction of their own, and
        // one for all of them would keep every other writer waiting.
        let mut all = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(QUERIES_PER_TRANSACTION) {
            let chunk = chunk.to_vec();
            let index = if chunk.iter().any(|q| q.index == Index::Gsi1) {
                Index::Gsi1
            } else {
                Index::Primary
            };
            all.extend(
                self.run(move |c| {
                    let tx = read_transaction(c, index)?;
                    let found = chunk
                        .into_iter()
                        .map(|q| all_items_in(&tx, q))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    tx.commit()?;
                    Ok(found)
                })
                .await?,
            );
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::table::{Cond, Query};

    fn item(pk: &str, sk: &str) -> Item {
        Item::new(
            Key::new(pk, sk),
            Attrs::from_iter([("v".to_owned(), serde_json::json!(sk))]),
        )
    }

    #[tokio::test]
    async fn survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let t = EmbeddedTable::open(&path).unwrap();
            t.write(WriteOp::put(item("p", "a")))
                .await
                .unwrap()
                .unwrap();
        }
        let t = EmbeddedTable::open(&path).unwrap();
        assert_eq!(
            t.get(&Key::new("p", "a")).await.unwrap(),
            Some(item("p", "a"))
        );
    }

    /// The writer's own checkpoint waits for 32,768 pages of log; the
    /// checkpoint thread copies a few hundred back within moments, while the
    /// table stays open.
    #[tokio::test]
    async fn the_log_is_copied_back_while_the_table_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let t = EmbeddedTable::open(&path).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        let ops = (0..2_000)
            .map(|i| WriteOp::put(item("p", &format!("{i:05}{}", "x".repeat(200)))))
            .collect();
        t.write_many(ops).await.unwrap();
        let wait = std::time::Instant::now();
        while size() < before + 400 * 1024 && wait.elapsed() < std::time::Duration::from_secs(5) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            size() >= before + 400 * 1024,
            "the database file grew from {before} to only {} bytes",
            size()
        );
        assert!(t.get(&Key::new("p", "00007")).await.is_ok());
        // Closed, the store is one file again: the thread's connection went
        // first, and the writer's, the last, removed the log.
        drop(t);
        assert!(!dir.path().join("state.db-wal").exists());
    }

    #[tokio::test]
    async fn prefixes_do_not_leak_into_neighbouring_keys() {
        let t = EmbeddedTable::in_memory().unwrap();
        let ops = ["C#a", "C#b", "CURSOR#x", "C", "D#"].map(|sk| WriteOp::put(item("p", sk)));
        t.write_many(ops.to_vec()).await.unwrap();
        let page = t
            .query(&Query::partition(Index::Primary, "p").prefix("C#"))
            .await
            .unwrap();
        let sks: Vec<_> = page.items.iter().map(|i| i.key.sk.as_str()).collect();
        assert_eq!(sks, ["C#a", "C#b"]);
    }

    #[tokio::test]
    async fn a_failed_condition_leaves_the_rest_of_the_batch_applied() {
        let t = EmbeddedTable::in_memory().unwrap();
        let results = t
            .write_many(vec![
                WriteOp::put_if(item("p", "a"), Cond::NotExists),
                WriteOp::put_if(item("p", "a"), Cond::NotExists),
                WriteOp::put(item("p", "b")),
            ])
            .await
            .unwrap();
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
        assert_eq!(t.purge_expired(i64::MAX).await.unwrap(), 0);
    }

    fn indexed(pk: &str, sk: &str, gsi: &str) -> Item {
        item(pk, sk).with_gsi1(Key::new(gsi, sk))
    }

    async fn in_index(t: &EmbeddedTable, gsi: &str) -> Vec<String> {
        let page = t.query(&Query::partition(Index::Gsi1, gsi)).await.unwrap();
        page.items.into_iter().map(|i| i.key.pk).collect()
    }

    #[tokio::test]
    async fn the_index_follows_moves_deletes_and_expiry() {
        let t = EmbeddedTable::in_memory().unwrap();
        t.write_many(vec![
            WriteOp::put(indexed("a", "x", "one")),
            WriteOp::put(indexed("b", "x", "one")),
            // Moved within the same batch: only the last word counts.
            WriteOp::put(indexed("b", "x", "two")),
            WriteOp::put(indexed("c", "x", "one").with_ttl(10)),
        ])
        .await
        .unwrap();
        assert_eq!(in_index(&t, "one").await, ["a", "c"]);
        assert_eq!(in_index(&t, "two").await, ["b"]);

        t.write(WriteOp::delete(Key::new("a", "x")))
            .await
            .unwrap()
            .unwrap();
        // Back and forth after the index was brought up to date.
        t.write(WriteOp::put(indexed("b", "x", "one")))
            .await
            .unwrap()
            .unwrap();
        t.write(WriteOp::put(indexed("b", "x", "two")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.purge_expired(10).await.unwrap(), 1);
        assert!(in_index(&t, "one").await.is_empty());
        assert_eq!(in_index(&t, "two").await, ["b"]);
    }

    #[tokio::test]
    async fn settling_builds_the_index_ahead_of_the_first_read() {
        let t = EmbeddedTable::in_memory().unwrap();
        t.write_many(vec![
            WriteOp::put(indexed("a", "x", "one")),
            WriteOp::put(indexed("b", "x", "one")),
        ])
        .await
        .unwrap();
        t.write(WriteOp::delete(Key::new("a", "x")))
            .await
            .unwrap()
            .unwrap();
        let counts = |t: &EmbeddedTable| {
            let c = t.conn.lock().unwrap();
            let n = |table: &str| -> i64 {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                    .unwrap()
            };
            (n("gsi1_pending"), n("gsi1"))
        };
        assert_eq!(counts(&t), (3, 0), "two puts and a delete, pending");
        t.settle().await.unwrap();
        assert_eq!(counts(&t), (0, 1), "applied: only b is left");
        assert_eq!(in_index(&t, "one").await, ["b"]);
    }

    #[tokio::test]
    async fn a_store_with_the_old_index_keeps_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The layout before gsi1 became a table.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE items (pk TEXT NOT NULL, sk TEXT NOT NULL, gsi1pk TEXT, gsi1sk TEXT, \
                 ttl INTEGER, attrs TEXT NOT NULL, PRIMARY KEY (pk, sk)) WITHOUT ROWID;
                 CREATE INDEX gsi1 ON items (gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
                 INSERT INTO items VALUES ('p', 's', 'g', 's', NULL, '{}');",
            )
            .unwrap();
        }
        let t = EmbeddedTable::open(&path).unwrap();
        assert_eq!(in_index(&t, "g").await, ["p"]);
        drop(t);
        // Opening again changes nothing.
        let t = EmbeddedTable::open(&path).unwrap();
        assert_eq!(in_index(&t, "g").await, ["p"]);
    }
}
