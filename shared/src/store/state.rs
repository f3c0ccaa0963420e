//! [`StateStore`]: everything persistent, in domain terms, over a [`Table`].

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::domain::{
    Account, AccountId, Connector, ConnectorId, Cursor, Lease, Region, RunId, SyncRun,
};

use super::keys::{self, Scope};
use super::table::{
    Attrs, Cond, ConditionFailed, Index, Item, PageToken, Query, RESERVED, Table, TableError,
    WriteOp,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id:?} already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("{what} {id:?} does not exist; {hint}")]
    NotFound {
        what: &'static str,
        id: String,
        hint: &'static str,
    },
    #[error(
        "connector {id:?} was changed by someone else since it was read (you had version {expected}, \
         it is now {current}); read it again and reapply your change"
    )]
    VersionConflict {
        id: String,
        expected: u64,
        current: u64,
    },
    #[error(
        "connector {connector:?} is already being synced (by {holder}, until {until}); wait for that run to finish"
    )]
    LeaseHeld {
        connector: String,
        holder: String,
        until: DateTime<Utc>,
    },
    #[error("the page token is not valid for this listing; start again without one")]
    BadPageToken,
    #[error("stored {what} is unreadable ({problem}); this is a bug or a manual edit of the table")]
    Corrupt { what: String, problem: String },
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Which page of a listing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub token: Option<String>,
}

impl PageRequest {
    pub const MAX_LIMIT: usize = 1000;

    pub fn first(limit: usize) -> Self {
        Self {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            token: None,
        }
    }

    pub fn after(token: Option<String>, limit: usize) -> Self {
        Self {
            token,
            ..Self::first(limit)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Hand back in a [`PageRequest`] for more; `None` at the end.
    pub next: Option<String>,
}

/// Every item of a paged listing: calls `read` with each page request in
/// turn until the listing ends.
pub async fn all_pages<T, F, Fut>(read: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut all = Vec::new();
    each_page(read, |items| all.extend(items)).await?;
    Ok(all)
}

/// Hands every page of a listing to `visit` in turn, holding one page at a
/// time: what a caller that keeps little of a large listing wants.
pub async fn each_page<T, F, Fut>(
    mut read: F,
    mut visit: impl FnMut(Vec<T>),
) -> Result<(), StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut token = None;
    loop {
        let page = read(PageRequest::after(token, PageRequest::MAX_LIMIT)).await?;
        visit(page.items);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(()),
        }
    }
}

/// How long run records are kept (DynamoDB TTL removes older ones).
pub const RUN_RETENTION_DAYS: i64 = 90;

/// Everything persistent, in domain terms. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    pub(super) table: Arc<dyn Table>,
    pub(super) clock: Arc<dyn Clock>,
}

pub(super) fn to_attrs<T: Serialize>(value: &T) -> Attrs {
    match serde_json::to_value(value) {
        Ok(Value::Object(mut map)) => {
            for name in RESERVED {
                map.remove(name);
            }
            map
        }
        // Domain types are structs; anything else would be a programming error
        // caught by the conformance suite.
        _ => Attrs::new(),
    }
}

pub(super) fn from_item<T: DeserializeOwned>(what: &str, item: Item) -> Result<T, StoreError> {
    serde_json::from_value(Value::Object(item.attrs)).map_err(|e| StoreError::Corrupt {
        what: format!("{what} {}/{}", item.key.pk, item.key.sk),
        problem: e.to_string(),
    })
}

impl StateStore {
    pub fn new(table: Arc<dyn Table>, clock: Arc<dyn Clock>) -> Self {
        Self { table, clock }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The clock the store stamps with, for what must agree with it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    pub(super) fn now_secs(&self) -> i64 {
        self.clock.now().timestamp()
    }

    pub(super) fn decode_token(token: &Option<String>) -> Result<Option<PageToken>, StoreError> {
        token
            .as_deref()
            .map(|t| PageToken::decode(t).ok_or(StoreError::BadPageToken))
            .transpose()
    }

    /// Reads one page of a query, dropping expired items, as a typed page.
    pub(super) async fn query_page<T: DeserializeOwned>(
        &self,
        what: &str,
        query: Query,
    ) -> Result<Page<T>, StoreError> {
        let page = self.table.query(&query).await?;
        Ok(Page {
            items: self.live_items(what, page.items)?,
            next: page.next.map(|t| t.encode()),
        })
    }

    /// `items` read back as `T`, expired ones left out.
    pub(super) fn live_items<T: DeserializeOwned>(
        &self,
        what: &str,
        items: impl IntoIterator<Item = Item>,
    ) -> Result<Vec<T>, StoreError> {
        let now = self.now_secs();
        items
            .into_iter()
            .filter(|i| !i.is_expired(now))
            .map(|i| from_item(what, i))
            .collect()
    }

    /// Every item of a query, page by page (for small partitions and clean-ups).
    pub(super) async fn query_all(&self, query: Query) -> Result<Vec<Item>, StoreError> {
        Ok(super::table::all_items(self.table.as_ref(), query).await?)
    }

    // ---- accounts -------------------------------------------------------

    pub async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let item = Item::new(keys::account(&account.id), to_attrs(account))
            .with_gsi1(keys::account_gsi(&account.id));
        match self
            .table
            .write(WriteOp::put_if(item, Cond::NotExists))
            .await?
        {
            Ok(_) => Ok(()),
            Err(ConditionFailed) => Err(StoreError::AlreadyExists {
                what: "account",
                id: account.id.to_string(),
            }),
        }
    }

    /// Replaces an existing account's settings.
    pub async fn update_account(&self, account: &Account) -> Result<(), StoreError> {
        let item = Item::new(keys::account(&account.id), to_attrs(account))
            .with_gsi1(keys::account_gsi(&account.id));
        match self
            .table
            .write(WriteOp::put_if(item, Cond::Exists))
            .await?
        {
            Ok(_) => Ok(()),
            Err(ConditionFailed) => Err(StoreError::NotFound {
                what: "account",
                id: account.id.to_string(),
                hint: "create it first",
            }),
        }
    }

    pub async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.table
            .get(&keys::account(id))
            .await?
            .map(|i| from_item("account", i))
            .transpose()
    }

    pub async fn list_accounts(&self, page: PageRequest) -> Result<Page<Account>, StoreError> {
        let query = Query::partition(Index::Gsi1, "ACCOUNTS")
            .limit(page.limit)
            .start(Self::decode_token(&page.token)?);
        self.query_page("account", query).await
    }

    async fn require_account(&self, id: &AccountId) -> Result<Account, StoreError> {
        self.get_account(id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "account",
                id: id.to_string(),
                hint: "create the account first",
            })
    }

    // ---- connectors -----------------------------------------------------

    fn connector_item(connector: &Connector, region: Region) -> Item {
        Item::new(
            keys::connector(&connector.account, &connector.id),
            to_attrs(connector),
        )
        .with_gsi1(keys::connector_gsi(
            region,
            &connector.account,
            &connector.id,
        ))
    }

    /// Stores a new connector (its account must exist) as version 1.
    pub async fn create_connector(&self, connector: &Connector) -> Result<Connector, StoreError> {
        let account = self.require_account(&connector.account).await?;
        let mut stored = connector.clone();
        stored.version = 1;
        let item = Self::connector_item(&stored, account.region);
        match self
            .table
            .write(WriteOp::put_if(item, Cond::NotExists))
            .await?
        {
            Ok(_) => Ok(stored),
            Err(ConditionFailed) => Err(StoreError::AlreadyExists {
                what: "connector",
                id: connector.id.to_string(),
            }),
        }
    }

    /// Replaces a connector if it is still at `connector.version`; returns
    /// it at the next version.
    pub async fn update_connector(&self, connector: &Connector) -> Result<Connector, StoreError> {
        let account = self.require_account(&connector.account).await?;
        let mut stored = connector.clone();
        stored.version = connector.version + 1;
        stored.updated_at = self.now();
        let item = Self::connector_item(&stored, account.region);
        let cond = Cond::eq("version", connector.version);
        match self.table.write(WriteOp::put_if(item, cond)).await? {
            Ok(_) => Ok(stored),
            Err(ConditionFailed) => {
                match self
                    .get_connector(&connector.account, &connector.id)
                    .await?
                {
                    Some(current) => Err(StoreError::VersionConflict {
                        id: connector.id.to_string(),
                        expected: connector.version,
                        current: current.version,
                    }),
                    None => Err(StoreError::NotFound {
                        what: "connector",
                        id: connector.id.to_string(),
                        hint: "it may have been deleted; list the account's connectors",
                    }),
                }
            }
        }
    }

    pub async fn get_connector(
        &self,
        account: &AccountId,
        id: &ConnectorId,
    ) -> Result<Option<Connector>, StoreError> {
        self.table
            .get(&keys::connector(account, id))
            .await?
            .map(|i| from_item("connector", i))
            .transpose()
    }

    pub async fn list_connectors(&self, account: &AccountId) -> Result<Vec<Connector>, StoreError> {
        let query = Query::partition(Index::Primary, keys::account(account).pk)
            .prefix(keys::CONNECTOR_PREFIX)
            .limit(PageRequest::MAX_LIMIT);
        self.query_all(query)
            .await?
            .into_iter()
            .map(|i| from_item("connector", i))
            .collect()
    }

    /// The connectors of every account in a region, page by page (the sync
    /// windows fan out from this).
    pub async fn list_connectors_in_region(
        &self,
        region: Region,
        page: PageRequest,
    ) -> Result<Page<Connector>, StoreError> {
        let query = Query::partition(Index::Gsi1, keys::region_partition(region))
            .limit(page.limit)
            .start(Self::decode_token(&page.token)?);
        self.query_page("connector", query).await
    }

    /// Deletes a connector with everything it synced (users, their addresses,
    /// groups, memberships), its cursors, lease and runs. Returns false if
    /// there was no such connector.
    pub async fn delete_connector(
        &self,
        account: &AccountId,
        id: &ConnectorId,
    ) -> Result<bool, StoreError> {
        if self.get_connector(account, id).await?.is_none() {
            return Ok(false);
        }
        let scope = Scope::new(account.clone(), id.clone());
        self.purge_directory(&scope).await?;
        let mut keys: Vec<_> = self
            .query_all(
                Query::partition(Index::Primary, keys::control_partition(&scope)).limit(1000),
            )
            .await?
            .into_iter()
            .map(|i| i.key)
            .collect();
        keys.extend(
            self.query_all(
                Query::partition(Index::Primary, keys::runs_partition(&scope)).limit(1000),
            )
            .await?
            .into_iter()
            .map(|i| i.key),
        );
        keys.push(keys::connector(account, id));
        self.table
            .write_many(keys.into_iter().map(WriteOp::delete).collect())
            .await?;
        Ok(true)
    }

    // ---- cursors --------------------------------------------------------

    pub async fn get_cursor(
        &self,
        scope: &Scope,
        stream: &str,
    ) -> Result<Option<Cursor>, StoreError> {
        self.table
            .get(&keys::cursor(scope, stream))
            .await?
            .map(|i| from_item("cursor", i))
            .transpose()
    }

    pub async fn put_cursor(&self, scope: &Scope, cursor: &Cursor) -> Result<(), StoreError> {
        let item = Item::new(keys::cursor(scope, &cursor.stream), to_attrs(cursor));
        self.table.write(WriteOp::put(item)).await?.ok();
        Ok(())
    }

    /// Forgets every cursor of a connector, so the next run is a full one.
    pub async fn clear_cursors(&self, scope: &Scope) -> Result<(), StoreError> {
        let items = self
            .query_all(
                Query::partition(Index::Primary, keys::control_partition(scope))
                    .prefix(keys::CURSOR_PREFIX),
            )
            .await?;
        self.table
            .write_many(items.into_iter().map(|i| WriteOp::delete(i.key)).collect())
            .await?;
        Ok(())
    }

    // ---- leases ---------------------------------------------------------

    fn lease_item(&self, scope: &Scope, holder: &str, expires_at: DateTime<Utc>) -> Item {
        let lease = Lease {
            account: scope.account.clone(),
            connector: scope.connector.clone(),
            holder: holder.to_owned(),
            expires_at,
        };
        let mut attrs = to_attrs(&lease);
        attrs.insert("expires_ms".into(), json!(expires_at.timestamp_millis()));
        // DynamoDB removes a dead run's lease eventually; correctness rests on
        // `expires_ms`, not on that.
        Item::new(keys::lease(scope), attrs).with_ttl(expires_at.timestamp() + 3600)
    }

    /// Takes the connector's lease for `ttl`: refused while another holder's
    /// lease is unexpired; a dead run's expired lease is taken over; taking
    /// it again as the same holder extends it.
    pub async fn acquire_lease(
        &self,
        scope: &Scope,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let now = self.now();
        let expires_at = now + ttl;
        let item = self.lease_item(scope, holder, expires_at);
        let cond = Cond::NotExists
            .or(Cond::Lt(
                "expires_ms".into(),
                json!(now.timestamp_millis() + 1),
            ))
            .or(Cond::eq("holder", holder));
        match self.table.write(WriteOp::put_if(item, cond)).await? {
            Ok(_) => Ok(Lease {
                account: scope.account.clone(),
                connector: scope.connector.clone(),
                holder: holder.to_owned(),
                expires_at,
            }),
            Err(ConditionFailed) => {
                let current: Option<Lease> = self
                    .table
                    .get(&keys::lease(scope))
                    .await?
                    .map(|i| from_item("lease", i))
                    .transpose()?;
                Err(StoreError::LeaseHeld {
                    connector: scope.connector.to_string(),
                    holder: current
                        .as_ref()
                        .map(|l| l.holder.clone())
                        .unwrap_or_default(),
                    until: current.map(|l| l.expires_at).unwrap_or(now),
                })
            }
        }
    }

    /// Extends a lease still held by its holder.
    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let scope = Scope::new(lease.account.clone(), lease.connector.clone());
        let expires_at = self.now() + ttl;
        let item = self.lease_item(&scope, &lease.holder, expires_at);
        match self
            .table
            .write(WriteOp::put_if(
                item,
                Cond::eq("holder", lease.holder.as_str()),
            ))
            .await?
        {
            Ok(_) => Ok(Lease {
                expires_at,
                ..lease.clone()
            }),
            Err(ConditionFailed) => {
                let current: Option<Lease> = self
                    .table
                    .get(&keys::lease(&scope))
                    .await?
                    .map(|i| from_item("lease", i))
                    .transpose()?;
                Err(StoreError::LeaseHeld {
                    connector: lease.connector.to_string(),
                    holder: current
                        .as_ref()
                        .map(|l| l.holder.clone())
                        .unwrap_or_default(),
                    until: current.map(|l| l.expires_at).unwrap_or(expires_at),
                })
            }
        }
    }

    /// The connector's lease, if one is held and unexpired.
    pub async fn current_lease(&self, scope: &Scope) -> Result<Option<Lease>, StoreError> {
        let now = self.now();
        Ok(self
            .table
            .get(&keys::lease(scope))
            .await?
            .map(|i| from_item::<Lease>("lease", i))
            .transpose()?
            .filter(|l| l.expires_at > now))
    }

    /// Gives a lease back; false if it had already passed to someone else.
    pub async fn release_lease(&self, lease: &Lease) -> Result<bool, StoreError> {
        let scope = Scope::new(lease.account.clone(), lease.connector.clone());
        let op = WriteOp::delete_if(
            keys::lease(&scope),
            Cond::eq("holder", lease.holder.as_str()),
        );
        Ok(self.table.write(op).await?.is_ok())
    }

    // ---- runs -----------------------------------------------------------

    pub async fn put_run(&self, run: &SyncRun) -> Result<(), StoreError> {
        let scope = Scope::new(run.account.clone(), run.connector.clone());
        let ttl = (run.started_at + Duration::days(RUN_RETENTION_DAYS)).timestamp();
        let item = Item::new(keys::run(&scope, &run.id), to_attrs(run)).with_ttl(ttl);
        self.table.write(WriteOp::put(item)).await?.ok();
        Ok(())
    }

    /// Replaces a run record only while it is still staged (a review
    /// claims it); false if someone else reviewed it first.
    pub async fn put_run_if_staged(&self, run: &SyncRun) -> Result<bool, StoreError> {
        let scope = Scope::new(run.account.clone(), run.connector.clone());
        let ttl = (run.started_at + Duration::days(RUN_RETENTION_DAYS)).timestamp();
        let item = Item::new(keys::run(&scope, &run.id), to_attrs(run)).with_ttl(ttl);
        Ok(self
            .table
            .write(WriteOp::put_if(item, Cond::eq("status", "staged")))
            .await?
            .is_ok())
    }

    pub async fn get_run(&self, scope: &Scope, id: &RunId) -> Result<Option<SyncRun>, StoreError> {
        let now = self.now_secs();
        self.table
            .get(&keys::run(scope, id))
            .await?
            .filter(|i| !i.is_expired(now))
            .map(|i| from_item("run", i))
            .transpose()
    }

    /// A connector's runs, newest first.
    pub async fn list_runs(
        &self,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<SyncRun>, StoreError> {
        let query = Query::partition(Index::Primary, keys::runs_partition(scope))
            .descending()
            .limit(page.limit)
            .start(Self::decode_token(&page.token)?);
        self.query_page("run", query).await
    }

    /// Deletes all but the newest `keep` runs of a connector (with any data
    /// they left); returns how many were deleted.
    pub async fn prune_runs(&self, scope: &Scope, keep: usize) -> Result<u64, StoreError> {
        let all = self
            .query_all(
                Query::partition(Index::Primary, keys::runs_partition(scope))
                    .descending()
                    .limit(1000),
            )
            .await?;
        let mut deleted = 0;
        // A run still waiting for review is never pruned.
        let awaiting = |i: &Item| i.str("status") == Some("staged");
        for item in all.into_iter().skip(keep).filter(|i| !awaiting(i)) {
            if let Ok(id) = item.key.sk.parse::<RunId>() {
                self.delete_run_chunks(scope, &id).await?;
            }
            self.table.write(WriteOp::delete(item.key)).await?.ok();
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Connects an Entra tenant to an account, once: `Ok(None)` when the
    /// tenant is (now) this account's, `Ok(Some(other))` when another
    /// account holds it.
    pub async fn claim_tenant(
        &self,
        tenant: &uuid::Uuid,
        account: &AccountId,
    ) -> Result<Option<AccountId>, StoreError> {
        let item = Item::new(
            keys::tenant_claim(tenant),
            to_attrs(&json!({"account": account, "tenant": tenant})),
        );
        let op = WriteOp::put_if(
            item,
            Cond::NotExists.or(Cond::eq("account", account.as_str())),
        );
        if self.table.write(op).await?.is_ok() {
            return Ok(None);
        }
        let holder = self.tenant_holder(tenant).await?;
        Ok(holder.filter(|h| h != account))
    }

    /// The account an Entra tenant is connected to, if any.
    pub async fn tenant_holder(
        &self,
        tenant: &uuid::Uuid,
    ) -> Result<Option<AccountId>, StoreError> {
        Ok(self
            .table
            .get(&keys::tenant_claim(tenant))
            .await?
            .and_then(|i| i.str("account").and_then(|a| AccountId::new(a).ok())))
    }

    /// Gives up `account`'s claim on a tenant, so that the tenant can be
    /// connected again; false if the account did not hold it (a claim
    /// of another account is never removed).
    pub async fn release_tenant(
        &self,
        tenant: &uuid::Uuid,
        account: &AccountId,
    ) -> Result<bool, StoreError> {
        let op = WriteOp::delete_if(
            keys::tenant_claim(tenant),
            Cond::eq("account", account.as_str()),
        );
        Ok(self.table.write(op).await?.is_ok())
    }

    // ---- run progress ---------------------------------------------------

    /// The engine's checkpoint `name` of the connector's run in progress.
    pub async fn get_progress(
        &self,
        scope: &Scope,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        Ok(self
            .table
            .get(&keys::progress(scope, name))
            .await?
            .and_then(|mut i| i.attrs.remove("value")))
    }

    pub async fn put_progress(
        &self,
        scope: &Scope,
        name: &str,
        value: &Value,
    ) -> Result<(), StoreError> {
        let item = Item::new(
            keys::progress(scope, name),
            Attrs::from_iter([("value".to_owned(), value.clone())]),
        );
        self.table.write(WriteOp::put(item)).await?.ok();
        Ok(())
    }

    /// Forgets every checkpoint of the connector (the run finished).
    pub async fn clear_progress(&self, scope: &Scope) -> Result<(), StoreError> {
        let items = self
            .query_all(
                Query::partition(Index::Primary, keys::control_partition(scope))
                    .prefix(keys::PROGRESS_PREFIX),
            )
            .await?;
        self.table
            .write_many(items.into_iter().map(|i| WriteOp::delete(i.key)).collect())
            .await?;
        Ok(())
    }

    /// Stores one chunk of a run's data of some kind, under `part` (a
    /// later write of the same part replaces it). Chunks expire with the run
    /// record.
    pub async fn put_run_chunk(
        &self,
        scope: &Scope,
        run: &RunId,
        kind: &str,
        part: &str,
        value: &Value,
    ) -> Result<(), StoreError> {
        let ttl = (self.now() + Duration::days(RUN_RETENTION_DAYS)).timestamp();
        let item = Item::new(
            keys::run_chunk(scope, run, kind, part),
            Attrs::from_iter([("value".to_owned(), value.clone())]),
        )
        .with_ttl(ttl);
        self.table.write(WriteOp::put(item)).await?.ok();
        Ok(())
    }

    /// Every chunk of one kind of a run's data, in order.
    pub async fn run_chunks(
        &self,
        scope: &Scope,
        run: &RunId,
        kind: &str,
    ) -> Result<Vec<Value>, StoreError> {
        Ok(self
            .run_chunk_parts(scope, run, kind)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Every chunk of one kind of a run's data with the part it was stored
    /// under, in the order of the parts.
    pub async fn run_chunk_parts(
        &self,
        scope: &Scope,
        run: &RunId,
        kind: &str,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        let prefix = format!("{kind}#");
        let query = Query::partition(Index::Primary, keys::run_data_partition(scope, run))
            .prefix(prefix.clone())
            .limit(100);
        Ok(self
            .query_all(query)
            .await?
            .into_iter()
            .filter_map(|mut i| {
                let part = i.key.sk.strip_prefix(&prefix)?.to_owned();
                Some((part, i.attrs.remove("value")?))
            })
            .collect())
    }

    /// Deletes the chunks of one kind whose parts start with `prefix`.
    pub async fn delete_run_chunk_parts(
        &self,
        scope: &Scope,
        run: &RunId,
        kind: &str,
        prefix: &str,
    ) -> Result<(), StoreError> {
        let query = Query::partition(Index::Primary, keys::run_data_partition(scope, run))
            .prefix(format!("{kind}#{prefix}"))
            .limit(100);
        let items = self.query_all(query).await?;
        self.table
            .write_many(items.into_iter().map(|i| WriteOp::delete(i.key)).collect())
            .await?;
        Ok(())
    }

    pub async fn delete_run_chunks(&self, scope: &Scope, run: &RunId) -> Result<(), StoreError> {
        self.delete_run_chunks_except(scope, run, None).await
    }

    /// Deletes a run's data chunks, except those of kind `keep`.
    pub async fn delete_run_chunks_except(
        &self,
        scope: &Scope,
        run: &RunId,
        keep: Option<&str>,
    ) -> Result<(), StoreError> {
        let kept = keep.map(|k| format!("{k}#"));
        let items = self
            .query_all(
                Query::partition(Index::Primary, keys::run_data_partition(scope, run)).limit(100),
            )
            .await?;
        let items: Vec<Item> = items
            .into_iter()
            .filter(|i| {
                kept.as_ref()
                    .is_none_or(|k| !i.key.sk.starts_with(k.as_str()))
            })
            .collect();
        self.table
            .write_many(items.into_iter().map(|i| WriteOp::delete(i.key)).collect())
            .await?;
        Ok(())
    }

    // ---- short-lived items ----------------------------------------------

    fn ephemeral_item(kind: &str, key: &str, value: &Value, expires_at: DateTime<Utc>) -> Item {
        Item::new(
            keys::ephemeral(kind, key),
            Attrs::from_iter([("value".to_owned(), value.clone())]),
        )
        .with_ttl(expires_at.timestamp())
    }

    /// Stores a value until `expires_at`. With `only_if_absent`, an existing
    /// unexpired value wins and `false` is returned (a once-only marker).
    pub async fn put_ephemeral(
        &self,
        kind: &str,
        key: &str,
        value: &Value,
        expires_at: DateTime<Utc>,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let item = Self::ephemeral_item(kind, key, value, expires_at);
        let op = if only_if_absent {
            WriteOp::put_if(item, Cond::NotExists.or(Cond::ExpiredBy(self.now_secs())))
        } else {
            WriteOp::put(item)
        };
        Ok(self.table.write(op).await?.is_ok())
    }

    /// Replaces a value that is still stored (never brings back one that
    /// was taken meanwhile); false if it is gone.
    pub async fn replace_ephemeral(
        &self,
        kind: &str,
        key: &str,
        value: &Value,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let item = Self::ephemeral_item(kind, key, value, expires_at);
        Ok(self
            .table
            .write(WriteOp::put_if(item, Cond::Exists))
            .await?
            .is_ok())
    }

    pub async fn get_ephemeral(&self, kind: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let now = self.now_secs();
        Ok(self
            .table
            .get(&keys::ephemeral(kind, key))
            .await?
            .filter(|i| !i.is_expired(now))
            .and_then(|mut i| i.attrs.remove("value")))
    }

    /// Adds `by` to the counter at `key` unless that would pass `at_most`
    /// (see [`Table::add`]); the counter is gone after `expires_at`.
    pub async fn add_to_counter(
        &self,
        key: &super::table::Key,
        by: u64,
        at_most: Option<u64>,
        expires_at: i64,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self.table.add(key, "n", by, at_most, expires_at).await?)
    }

    /// Reads and deletes a value in one step: of two concurrent takers, one
    /// gets it (single-use tokens such as consent states).
    pub async fn take_ephemeral(&self, kind: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let now = self.now_secs();
        let op = WriteOp::delete_if(keys::ephemeral(kind, key), Cond::Exists);
        Ok(match self.table.write(op).await? {
            Ok(Some(old)) if !old.is_expired(now) => {
                let mut old = old;
                old.attrs.remove("value")
            }
            _ => None,
        })
    }
}
