//! The single-table port that both stores implement.
//!
//! [`StateStore`](super::StateStore) speaks only this small vocabulary —
//! items under a partition and sort key, one overloaded secondary index,
//! a TTL attribute, conditional writes, ordered paged queries — which is
//! exactly what DynamoDB offers. The embedded store implements the same
//! vocabulary on SQLite, so both behave alike by construction and the
//! conformance suite checks that they do.

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Non-key attributes of an item.
pub type Attrs = serde_json::Map<String, Value>;

/// Attribute names the table itself owns; an item's `attrs` may not use them.
pub const RESERVED: [&str; 5] = ["pk", "sk", "gsi1pk", "gsi1sk", "ttl"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    /// The item's key in the `gsi1` index, if it is indexed there.
    pub gsi1: Option<Key>,
    /// Epoch seconds after which the item counts as gone (DynamoDB TTL).
    pub ttl: Option<i64>,
    pub attrs: Attrs,
}

impl Item {
    pub fn new(key: Key, attrs: Attrs) -> Self {
        Self {
            key,
            gsi1: None,
            ttl: None,
            attrs,
        }
    }

    pub fn with_gsi1(mut self, key: Key) -> Self {
        self.gsi1 = Some(key);
        self
    }

    pub fn with_ttl(mut self, epoch_seconds: i64) -> Self {
        self.ttl = Some(epoch_seconds);
        self
    }

    pub fn is_expired(&self, now_epoch_seconds: i64) -> bool {
        self.ttl.is_some_and(|t| t <= now_epoch_seconds)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(Value::as_str)
    }
}

/// A condition on the item currently stored under a write's key, evaluated
/// atomically with the write.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Exists,
    NotExists,
    /// The attribute exists and equals the value.
    Eq(String, Value),
    /// The attribute exists and is less than the value (numbers or strings).
    Lt(String, Value),
    /// The item has a TTL that is at or before the given epoch second. Lets a
    /// write replace an item that has expired but is not yet purged.
    ExpiredBy(i64),
    Or(Vec<Cond>),
    And(Vec<Cond>),
}

impl Cond {
    pub fn eq(name: &str, value: impl Into<Value>) -> Self {
        Cond::Eq(name.to_owned(), value.into())
    }

    pub fn or(self, other: Cond) -> Self {
        Cond::Or(vec![self, other])
    }

    pub fn and(self, other: Cond) -> Self {
        Cond::And(vec![self, other])
    }

    /// Evaluates against the stored item (`None` when there is none). The
    /// embedded store uses this; the DynamoDB store sends the same tree as a
    /// condition expression.
    pub fn holds(&self, current: Option<&Item>) -> bool {
        match self {
            Cond::Exists => current.is_some(),
            Cond::NotExists => current.is_none(),
            Cond::Eq(name, want) => current
                .and_then(|i| i.attrs.get(name))
                .is_some_and(|have| have == want),
            Cond::Lt(name, bound) => current
                .and_then(|i| i.attrs.get(name))
                .is_some_and(|have| less_than(have, bound)),
            Cond::ExpiredBy(now) => current.and_then(|i| i.ttl).is_some_and(|t| t <= *now),
            Cond::Or(all) => all.iter().any(|c| c.holds(current)),
            Cond::And(all) => all.iter().all(|c| c.holds(current)),
        }
    }
}

fn less_than(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x < y,
            _ => x.as_f64().unwrap_or(f64::NAN) < y.as_f64().unwrap_or(f64::NAN),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes() < y.as_bytes(),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Put { item: Item, cond: Option<Cond> },
    Delete { key: Key, cond: Option<Cond> },
}

impl WriteOp {
    pub fn put(item: Item) -> Self {
        WriteOp::Put { item, cond: None }
    }

    pub fn put_if(item: Item, cond: Cond) -> Self {
        WriteOp::Put {
            item,
            cond: Some(cond),
        }
    }

    pub fn delete(key: Key) -> Self {
        WriteOp::Delete { key, cond: None }
    }

    pub fn delete_if(key: Key, cond: Cond) -> Self {
        WriteOp::Delete {
            key,
            cond: Some(cond),
        }
    }

    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Put { item, .. } => &item.key,
            WriteOp::Delete { key, .. } => key,
        }
    }

    pub fn cond(&self) -> Option<&Cond> {
        match self {
            WriteOp::Put { cond, .. } | WriteOp::Delete { cond, .. } => cond.as_ref(),
        }
    }
}

/// The outcome of one write: the item that was stored before it (for a
/// conditional write; an unconditional one reports `None`, as DynamoDB's
/// batched writes return nothing), or the refusal of its condition.
pub type WriteResult = Result<Option<Item>, ConditionFailed>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the condition of a write did not hold")]
pub struct ConditionFailed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    Primary,
    Gsi1,
}

/// Items of one partition (of the table or of `gsi1`) whose sort key starts
/// with `sk_prefix`, in sort-key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub index: Index,
    pub pk: String,
    pub sk_prefix: String,
    pub descending: bool,
    pub limit: usize,
    pub start: Option<PageToken>,
}

impl Query {
    pub fn partition(index: Index, pk: impl Into<String>) -> Self {
        Self {
            index,
            pk: pk.into(),
            sk_prefix: String::new(),
            descending: false,
            limit: 100,
            start: None,
        }
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.sk_prefix = prefix.into();
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    pub fn start(mut self, start: Option<PageToken>) -> Self {
        self.start = start;
        self
    }
}

/// Where the next page of a query starts: the keys of the last item returned
/// (for an index query, both its table key and its index key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    pub key: Key,
    pub gsi1: Option<Key>,
}

impl PageToken {
    pub fn encode(&self) -> String {
        encode_token(self)
    }

    pub fn decode(s: &str) -> Option<Self> {
        decode_token(s)
    }
}

/// An opaque, URL-safe form of a listing position, for callers to hand back.
pub fn encode_token<T: Serialize>(position: &T) -> String {
    let json = serde_json::to_vec(position).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub fn decode_token<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemPage {
    pub items: Vec<Item>,
    /// Present when the query may have more items.
    pub next: Option<PageToken>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The backend failed or refused; the message is safe to show (no values).
    #[error("{0}")]
    Backend(String),
    /// A stored item could not be read back as written.
    #[error("stored item {pk}/{sk} is unreadable: {problem}")]
    Corrupt {
        pk: String,
        sk: String,
        problem: String,
    },
}

/// The single-table port.
#[async_trait]
pub trait Table: Send + Sync {
    /// A strongly consistent read of one item (expired items included: TTL
    /// is the caller's business, as with DynamoDB's lazy TTL deletion).
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError>;

    /// Strongly consistent reads of many items; missing keys are left out.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, TableError>;

    /// Applies each write with its own condition; the writes are not atomic
    /// as a group. Results are in the order of `ops`. Unconditional writes of
    /// the same key twice: the later one wins.
    async fn write_many(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, TableError>;

    async fn query(&self, query: &Query) -> Result<ItemPage, TableError>;

    /// How many items the query would return over all its pages, without
    /// returning them (the store still reads each one, as DynamoDB does for
    /// `Select: COUNT`). The start is ignored; the limit is how many items
    /// one request may count, where the store pages.
    async fn count(&self, query: &Query) -> Result<u64, TableError>;

    /// Brings the secondary index up to date with every write so far, where
    /// the store defers that work (the embedded store does; DynamoDB keeps
    /// its index itself). Reads never need this; it lets a run pay for the
    /// index it wrote instead of whoever reads it next.
    async fn settle(&self) -> Result<(), TableError> {
        Ok(())
    }

    /// Every item of each query, in the queries' order: many small listings
    /// (the memberships of a few thousand users) in one call. By default
    /// each query is paged through on its own, eight at a time; a store that
    /// can read them together does (the embedded store, in one transaction).
    async fn query_each(&self, queries: &[Query]) -> Result<Vec<Vec<Item>>, TableError> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(queries.iter().cloned().map(|q| all_items(self, q)))
            .buffered(8)
            .try_collect()
            .await
    }

    /// Adds `by` to the number attribute `attr` of the item at `key`,
    /// creating it (with `ttl`) if there is none, unless the sum would pass
    /// `at_most`: then nothing changes and the answer is `None`. The new
    /// total otherwise. Atomic: adders racing on one key never pass the
    /// bound together. By default a read and a write conditional on what
    /// was read, again until one holds; DynamoDB does it in one request.
    /// The item holds the counter alone.
    async fn add(
        &self,
        key: &Key,
        attr: &str,
        by: u64,
        at_most: Option<u64>,
        ttl: i64,
    ) -> Result<Option<u64>, TableError> {
        for _ in 0..64 {
            let current = self.get(key).await?;
            let had = current
                .as_ref()
                .and_then(|i| i.attrs.get(attr))
                .and_then(Value::as_u64);
            let total = had.unwrap_or(0).saturating_add(by);
            if at_most.is_some_and(|bound| total > bound) {
                return Ok(None);
            }
            let cond = match (had, &current) {
                (Some(n), _) => Cond::eq(attr, n),
                (None, None) => Cond::NotExists,
                (None, Some(_)) => {
                    return Err(TableError::Corrupt {
                        pk: key.pk.clone(),
                        sk: key.sk.clone(),
                        problem: format!("a counter without its number {attr}"),
                    });
                }
            };
            let mut attrs = Attrs::new();
            attrs.insert(attr.to_owned(), total.into());
            let item = Item::new(key.clone(), attrs).with_ttl(ttl);
            if self.write(WriteOp::put_if(item, cond)).await?.is_ok() {
                return Ok(Some(total));
            }
        }
        Err(TableError::Backend(format!(
            "the counter {}/{} kept changing under 64 tries to add to it",
            key.pk, key.sk
        )))
    }

    /// One write, with its outcome.
    async fn write(&self, op: WriteOp) -> Result<WriteResult, TableError> {
        let mut results = self.write_many(vec![op]).await?;
        results
            .pop()
            .ok_or_else(|| TableError::Backend("the store returned no result for a write".into()))
    }
}

/// Every item of a query, page by page.
pub async fn all_items<T: Table + ?Sized>(
    table: &T,
    mut query: Query,
) -> Result<Vec<Item>, TableError> {
    let mut all = Vec::new();
    loop {
        let page = table.query(&query).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => query.start = Some(next),
            None => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(attrs: Value, ttl: Option<i64>) -> Item {
        let Value::Object(attrs) = attrs else {
            panic!()
        };
        Item {
            key: Key::new("p", "s"),
            gsi1: None,
            ttl,
            attrs,
        }
    }

    #[test]
    fn conditions_evaluate_like_dynamodb() {
        let it = item(json!({"owner": "a", "exp": 10}), Some(100));
        assert!(Cond::Exists.holds(Some(&it)));
        assert!(Cond::NotExists.holds(None));
        assert!(Cond::eq("owner", "a").holds(Some(&it)));
        assert!(!Cond::eq("owner", "b").holds(Some(&it)));
        assert!(!Cond::eq("missing", "a").holds(Some(&it)));
        assert!(Cond::Lt("exp".into(), json!(11)).holds(Some(&it)));
        assert!(!Cond::Lt("exp".into(), json!(10)).holds(Some(&it)));
        assert!(Cond::ExpiredBy(100).holds(Some(&it)));
        assert!(!Cond::ExpiredBy(99).holds(Some(&it)));
        assert!(Cond::NotExists.or(Cond::eq("owner", "a")).holds(Some(&it)));
        assert!(!Cond::Exists.and(Cond::eq("owner", "b")).holds(Some(&it)));
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = PageToken {
            key: Key::new("A#x", "u#1"),
            gsi1: Some(Key::new("g", "h")),
        };
        assert_eq!(PageToken::decode(&t.encode()), Some(t));
        assert_eq!(PageToken::decode("not a token"), None);
    }
}
