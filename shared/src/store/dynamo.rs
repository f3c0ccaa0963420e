//! The production table on DynamoDB. The key schema is in `docs/state-schema.md`
//! and `template.yaml`; [`DynamoTable::create_table`] builds the same table for
//! DynamoDB Local and tests.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, PutRequest,
    ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, Select,
    TimeToLiveSpecification, WriteRequest,
};
use futures::{StreamExt, TryStreamExt, stream};

use super::table::{
    Attrs, Cond, ConditionFailed, Index, Item, ItemPage, Key, PageToken, Query, Table, TableError,
    WriteOp, WriteResult,
};

type Av = HashMap<String, AttributeValue>;

/// DynamoDB's limits: 25 writes per BatchWriteItem, 100 keys per BatchGetItem.
const WRITE_BATCH: usize = 25;
const GET_BATCH: usize = 100;
/// Requests in flight at once from one call (batches or conditional writes).
const CONCURRENCY: usize = 8;
/// Attempts for unprocessed items before giving up with an error.
const UNPROCESSED_ATTEMPTS: u32 = 8;

pub const GSI1: &str = "gsi1";

#[derive(Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Builds a client from the standard AWS configuration (environment,
    /// profile, role); `AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local.
    pub async fn from_env(table: impl Into<String>) -> Self {
        let config = aws_config::load_from_env().await;
        Self::new(Client::new(&config), table)
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Creates the table exactly as `template.yaml` declares it (on-demand,
    /// `pk`/`sk`, the `gsi1` index projecting all attributes, TTL on `ttl`)
    /// and waits until it is active. For DynamoDB Local and tests; production
    /// tables come from the SAM template.
    pub async fn create_table(&self) -> Result<(), TableError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| TableError::Backend(e.to_string()))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| TableError::Backend(e.to_string()))
        };
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key("gsi1pk", KeyType::Hash)?)
            .key_schema(key("gsi1sk", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| TableError::Backend(e.to_string()))?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .attribute_definitions(attr("gsi1pk")?)
            .attribute_definitions(attr("gsi1sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(gsi)
            .send()
            .await;
        if let Err(e) = created
            && e.code() != Some("ResourceInUseException")
        {
            return Err(sdk_error("CreateTable", e));
        }
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| sdk_error("DescribeTable", e))?;
            let status = described
                .table()
                .and_then(|t| t.table_status())
                .map(|s| s.as_str().to_owned());
            if status.as_deref() == Some("ACTIVE") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("ttl")
                    .enabled(true)
                    .build()
                    .map_err(|e| TableError::Backend(e.to_string()))?,
            )
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                // Already enabled is fine.
                if e.code() == Some("ValidationException") {
                    Ok(())
                } else {
                    Err(sdk_error("UpdateTimeToLive", e))
                }
            })
    }

    async fn write_one(&self, op: WriteOp) -> Result<WriteResult, TableError> {
        let (expr, names, values) = match op.cond() {
            Some(cond) => {
                let mut b = ExprBuilder::default();
                let e = b.render(cond);
                (Some(e), b.names, b.values)
            }
            None => (None, HashMap::new(), HashMap::new()),
        };
        let names = (!names.is_empty()).then_some(names);
        let values = (!values.is_empty()).then_some(values);
        let outcome = match op {
            WriteOp::Put { item, .. } => self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_av(&item)?))
                .set_condition_expression(expr)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None)
                .send()
                .await
                .map(|out| out.attributes)
                .map_err(classify("PutItem")),
            WriteOp::Delete { key, .. } => self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key_av(&key)))
                .set_condition_expression(expr)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map(|out| out.attributes)
                .map_err(classify("DeleteItem")),
        };
        match outcome {
            Ok(old) => Ok(Ok(old
                .filter(|m| !m.is_empty())
                .map(from_av)
                .transpose()?)),
            Err(None) => Ok(Err(ConditionFailed)),
            Err(Some(e)) => Err(e),
        }
    }

    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), TableError> {
        let mut pending = requests;
        for attempt in 0..UNPROCESSED_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(TableError::Backend(format!(
            "DynamoDB left {} writes unprocessed after {UNPROCESSED_ATTEMPTS} attempts (throttled); \
             the run can be retried and will resume",
            pending.len()
        )))
    }

    async fn batch_get(&self, keys: Vec<Av>) -> Result<Vec<Item>, TableError> {
        let mut pending = keys;
        let mut found = Vec::new();
        for attempt in 0..UNPROCESSED_ATTEMPTS {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(|e| TableError::Backend(e.to_string()))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", e))?;
            for av in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                found.push(from_av(av)?);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut m| m.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(TableError::Backend(format!(
            "DynamoDB left {} reads unprocessed after {UNPROCESSED_ATTEMPTS} attempts (throttled)",
            pending.len()
        )))
    }
}

/// Exponential backoff with full jitter, as AWS recommends for unprocessed items.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = 50u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(rand::random_range(0..=cap_ms))
}

fn sdk_error<E, R>(op: &str, e: SdkError<E, R>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = match &e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("")
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            "the DynamoDB endpoint did not answer; check AWS_ENDPOINT_URL_DYNAMODB or the network"
                .into()
        }
        other => other.to_string(),
    };
    TableError::Backend(format!("DynamoDB {op} failed: {detail}"))
}

/// A failed conditional write: `None` when its condition failed, otherwise
/// the error to report.
fn classify<E, R>(op: &'static str) -> impl Fn(SdkError<E, R>) -> Option<TableError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| (e.code() != Some("ConditionalCheckFailedException")).then(|| sdk_error(op, e))
}

fn key_av(key: &Key) -> Av {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

fn to_av(item: &Item) -> Result<Av, TableError> {
    let mut av: Av = serde_dynamo::to_item(&item.attrs).map_err(|e| TableError::Corrupt {
        pk: item.key.pk.clone(),
        sk: item.key.sk.clone(),
        problem: e.to_string(),
    })?;
    av.extend(key_av(&item.key));
    if let Some(g) = &item.gsi1 {
        av.insert("gsi1pk".into(), AttributeValue::S(g.pk.clone()));
        av.insert("gsi1sk".into(), AttributeValue::S(g.sk.clone()));
    }
    if let Some(ttl) = item.ttl {
        av.insert("ttl".into(), AttributeValue::N(ttl.to_string()));
    }
    Ok(av)
}

fn from_av(mut av: Av) -> Result<Item, TableError> {
    let mut take_s = |name: &str| match av.remove(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    };
    let pk = take_s("pk").unwrap_or_default();
    let sk = take_s("sk").unwrap_or_default();
    let gsi1 = take_s("gsi1pk")
        .zip(take_s("gsi1sk"))
        .map(|(pk, sk)| Key { pk, sk });
    let ttl = match av.remove("ttl") {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    };
    let attrs: Attrs = serde_dynamo::from_item(av).map_err(|e| TableError::Corrupt {
        pk: pk.clone(),
        sk: sk.clone(),
        problem: e.to_string(),
    })?;
    Ok(Item {
        key: Key { pk, sk },
        gsi1,
        ttl,
        attrs,
    })
}

/// Renders a [`Cond`] tree as a DynamoDB condition expression with
/// placeholders for every name and value.
#[derive(Default)]
struct ExprBuilder {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl ExprBuilder {
    fn name(&mut self, name: &str) -> String {
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn json_value(&mut self, value: &serde_json::Value) -> String {
        let av = serde_dynamo::to_attribute_value(value).unwrap_or(AttributeValue::Null(true));
        self.value(av)
    }

    fn render(&mut self, cond: &Cond) -> String {
        match cond {
            Cond::Exists => "attribute_exists(pk)".into(),
            Cond::NotExists => "attribute_not_exists(pk)".into(),
            Cond::Eq(name, v) => {
                let (n, v) = (self.name(name), self.json_value(v));
                format!("{n} = {v}")
            }
            Cond::Lt(name, v) => {
                let (n, v) = (self.name(name), self.json_value(v));
                format!("{n} < {v}")
            }
            Cond::ExpiredBy(now) => {
                let (n, v) = (
                    self.name("ttl"),
                    self.value(AttributeValue::N(now.to_string())),
                );
                format!("{n} <= {v}")
            }
            Cond::Or(all) => self.join(all, " OR "),
            Cond::And(all) => self.join(all, " AND "),
        }
    }

    fn join(&mut self, all: &[Cond], op: &str) -> String {
        let parts: Vec<String> = all
            .iter()
            .map(|c| format!("({})", self.render(c)))
            .collect();
        parts.join(op)
    }
}

impl DynamoTable {
    /// A query's key condition and index, shared by reads and counts.
    fn query_request(
        &self,
        query: &Query,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let (pk_name, sk_name) = match query.index {
            Index::Primary => ("pk", "sk"),
            Index::Gsi1 => ("gsi1pk", "gsi1sk"),
        };
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", AttributeValue::S(query.pk.clone()));
        let request = if query.sk_prefix.is_empty() {
            request.key_condition_expression("#pk = :pk")
        } else {
            request
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":prefix", AttributeValue::S(query.sk_prefix.clone()))
        };
        match query.index {
            Index::Primary => request.consistent_read(true),
            Index::Gsi1 => request.index_name(GSI1),
        }
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_av(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.map(from_av).transpose()
    }

    /// One UpdateItem: `ADD` under a condition that leaves room for `by`.
    async fn add(
        &self,
        key: &Key,
        attr: &str,
        by: u64,
        at_most: Option<u64>,
        ttl: i64,
    ) -> Result<Option<u64>, TableError> {
        let room = match at_most {
            Some(bound) if by > bound => return Ok(None),
            Some(bound) => Some(bound - by),
            None => None,
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_av(key)))
            .update_expression("ADD #a :by SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#a", attr)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":by", AttributeValue::N(by.to_string()))
            .expression_attribute_values(":ttl", AttributeValue::N(ttl.to_string()))
            .return_values(ReturnValue::UpdatedNew);
        if let Some(room) = room {
            request = request
                .condition_expression("attribute_not_exists(#a) OR #a <= :room")
                .expression_attribute_values(":room", AttributeValue::N(room.to_string()));
        }
        match request.send().await.map_err(classify("UpdateItem")) {
            Ok(out) => Ok(Some(
                out.attributes
                    .and_then(|mut a| a.remove(attr))
                    .and_then(|v| v.as_n().ok().and_then(|n| n.parse().ok()))
                    .unwrap_or(by),
            )),
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        // BatchGetItem refuses duplicate keys in one request.
        let mut unique: Vec<&Key> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let chunks: Vec<Vec<Av>> = unique
            .chunks(GET_BATCH)
            .map(|c| c.iter().map(|k| key_av(k)).collect())
            .collect();
        let pages: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|chunk| self.batch_get(chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    async fn write_many(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, TableError> {
        // Unconditional writes go in batches of 25 (last write of a key wins,
        // as BatchWriteItem refuses a key twice); conditional ones need their
        // own request each, sent concurrently.
        let mut results: Vec<Option<WriteResult>> = vec![None; ops.len()];
        let mut batched: HashMap<Key, (usize, WriteRequest)> = HashMap::new();
        let mut conditional = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            if op.cond().is_some() {
                conditional.push((i, op));
                continue;
            }
            let request = match op {
                WriteOp::Put { item, .. } => WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(to_av(&item)?))
                            .build()
                            .map_err(|e| TableError::Backend(e.to_string()))?,
                    )
                    .build(),
                WriteOp::Delete { key, .. } => WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(key_av(&key)))
                            .build()
                            .map_err(|e| TableError::Backend(e.to_string()))?,
                    )
                    .build(),
            };
            let key = match (&request.put_request, &request.delete_request) {
                (Some(p), _) => key_of(&p.item),
                (_, Some(d)) => key_of(&d.key),
                _ => continue,
            };
            if let Some((earlier, _)) = batched.insert(key, (i, request)) {
                // Superseded by the later write of the same key.
                results[earlier] = Some(Ok(None));
            }
        }
        for (i, _) in batched.values() {
            // BatchWriteItem does not return old items.
            results[*i] = Some(Ok(None));
        }
        let requests: Vec<WriteRequest> = batched.into_values().map(|(_, r)| r).collect();
        let batches: Vec<Vec<WriteRequest>> =
            requests.chunks(WRITE_BATCH).map(<[_]>::to_vec).collect();
        stream::iter(batches)
            .map(|b| self.batch_write(b))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;

        let outcomes: Vec<(usize, WriteResult)> = stream::iter(conditional)
            .map(|(i, op)| async move { self.write_one(op).await.map(|r| (i, r)) })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        for (i, r) in outcomes {
            results[i] = Some(r);
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(None))).collect())
    }

    async fn query(&self, query: &Query) -> Result<ItemPage, TableError> {
        let mut request = self
            .query_request(query)
            .scan_index_forward(!query.descending)
            .limit(query.limit.clamp(1, 10_000) as i32);
        if let Some(start) = &query.start {
            let mut key = key_av(&start.key);
            if let (Index::Gsi1, Some(g)) = (query.index, &start.gsi1) {
                key.insert("gsi1pk".into(), AttributeValue::S(g.pk.clone()));
                key.insert("gsi1sk".into(), AttributeValue::S(g.sk.clone()));
            }
            request = request.set_exclusive_start_key(Some(key));
        }
        let out = request.send().await.map_err(|e| sdk_error("Query", e))?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_av)
            .collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key
            .filter(|k| !k.is_empty())
            .map(|mut k| {
                let mut s = |n: &str| match k.remove(n) {
                    Some(AttributeValue::S(s)) => Some(s),
                    _ => None,
                };
                PageToken {
                    key: Key {
                        pk: s("pk").unwrap_or_default(),
                        sk: s("sk").unwrap_or_default(),
                    },
                    gsi1: s("gsi1pk").zip(s("gsi1sk")).map(|(pk, sk)| Key { pk, sk }),
                }
            });
        Ok(ItemPage { items, next })
    }

    async fn count(&self, query: &Query) -> Result<u64, TableError> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let out = self
                .query_request(query)
                .select(Select::Count)
                .limit(query.limit.clamp(1, 10_000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            total += out.count.max(0) as u64;
            match out.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => return Ok(total),
            }
        }
    }
}

fn key_of(av: &Av) -> Key {
    let s = |n: &str| match av.get(n) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    Key {
        pk: s("pk"),
        sk: s("sk"),
    }
}
