//! The embedded table: SQLite on local disk (or in memory), for the CLI, the
//! demo and tests. One table `items` mirrors the DynamoDB item layout, with a
//! partial index playing `gsi1`; inspect it with
//! `sqlite3 dirsync.db "select pk, sk, attrs from items limit 10"`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

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
    CREATE INDEX IF NOT EXISTS gsi1 ON items (gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
    CREATE INDEX IF NOT EXISTS ttl ON items (ttl) WHERE ttl IS NOT NULL;
";

/// Upper bound for "starts with": every key that starts with the prefix sorts
/// below prefix + U+10FFFF (keys never contain that non-character).
const PREFIX_END: char = '\u{10FFFF}';

#[derive(Clone)]
pub struct EmbeddedTable {
    conn: Arc<Mutex<Connection>>,
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
        Self::with_connection(conn)
    }

    /// A private in-memory store (tests).
    pub fn in_memory() -> Result<Self, TableError> {
        Self::with_connection(Connection::open_in_memory().map_err(backend)?)
    }

    fn with_connection(conn: Connection) -> Result<Self, TableError> {
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Deletes items whose TTL has passed, as DynamoDB's TTL sweeper does
    /// (reads never depend on it having run).
    pub async fn purge_expired(&self, now_epoch_seconds: i64) -> Result<usize, TableError> {
        self.run(move |c| {
            c.execute(
                "DELETE FROM items WHERE ttl IS NOT NULL AND ttl <= ?1",
                [now_epoch_seconds],
            )
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

const COLUMNS: &str = "pk, sk, gsi1pk, gsi1sk, ttl, attrs";

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
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM items WHERE pk = ?1 AND sk = ?2"
    ))?
    .query_row(params![key.pk, key.sk], row_to_item)
    .optional()
}

fn put_one(conn: &Connection, item: &Item) -> rusqlite::Result<()> {
    let attrs = serde_json::to_string(&item.attrs)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO items ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
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

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        let key = key.clone();
        self.run(move |c| get_one(c, &key)).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        let keys = keys.to_vec();
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
        self.run(move |c| {
            // One transaction for the whole batch: each op still sees the
            // effect of the ones before it, as sequential DynamoDB calls would.
            let tx = c.transaction()?;
            let mut results = Vec::with_capacity(ops.len());
            for op in &ops {
                let current = get_one(&tx, op.key())?;
                if op.cond().is_some_and(|cond| !cond.holds(current.as_ref())) {
                    results.push(Err(super::table::ConditionFailed));
                    continue;
                }
                match op {
                    WriteOp::Put { item, .. } => put_one(&tx, item)?,
                    WriteOp::Delete { key, .. } => delete_one(&tx, key)?,
                }
                results.push(Ok(current));
            }
            tx.commit()?;
            Ok(results)
        })
        .await
    }

    async fn query(&self, query: &Query) -> Result<ItemPage, TableError> {
        let q = query.clone();
        self.run(move |c| {
            let (pk_col, sk_col) = match q.index {
                Index::Primary => ("pk", "sk"),
                Index::Gsi1 => ("gsi1pk", "gsi1sk"),
            };
            let (cmp, order) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
            // Order by the index key and then the table key, which is what
            // makes an index page token unambiguous.
            let order_by = match q.index {
                Index::Primary => format!("sk {order}"),
                Index::Gsi1 => format!("gsi1sk {order}, pk {order}, sk {order}"),
            };
            let after = match (&q.start, q.index) {
                (None, _) => String::new(),
                (Some(_), Index::Primary) => format!("AND sk {cmp} ?4"),
                (Some(_), Index::Gsi1) => format!("AND (gsi1sk, pk, sk) {cmp} (?4, ?5, ?6)"),
            };
            let sql = format!(
                "SELECT {COLUMNS} FROM items WHERE {pk_col} = ?1 AND {sk_col} >= ?2 AND {sk_col} < ?3 {after} \
                 ORDER BY {order_by} LIMIT ?7"
            );
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
            let mut stmt = c.prepare_cached(&sql)?;
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
        })
        .await
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
}
