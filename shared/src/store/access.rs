//! Access grants (principal → account) and the accounts' audit trails.

use chrono::Duration;
use serde_json::json;

use crate::domain::{AUDIT_RETENTION_DAYS, AccountId, AuditRecord};

use super::keys;
use super::state::{Page, PageRequest, StateStore, StoreError, to_attrs};
use super::table::{Cond, Index, Item, Query, WriteOp};

impl StateStore {
    /// Lets `principal` act for `account` (idempotent).
    pub async fn put_grant(&self, account: &AccountId, principal: &str) -> Result<(), StoreError> {
        let item = Item::new(
            keys::grant(account, principal),
            to_attrs(
                &json!({"account": account, "principal": principal, "granted_at": self.now()}),
            ),
        )
        .with_gsi1(keys::grant_gsi(account, principal));
        self.table.write(WriteOp::put(item)).await?.ok();
        Ok(())
    }

    /// Whether a grant was removed.
    pub async fn delete_grant(
        &self,
        account: &AccountId,
        principal: &str,
    ) -> Result<bool, StoreError> {
        let op = WriteOp::delete_if(keys::grant(account, principal), Cond::Exists);
        Ok(self.table.write(op).await?.is_ok())
    }

    pub async fn has_grant(
        &self,
        account: &AccountId,
        principal: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .table
            .get(&keys::grant(account, principal))
            .await?
            .is_some())
    }

    /// The principals granted on an account.
    pub async fn list_grants(&self, account: &AccountId) -> Result<Vec<String>, StoreError> {
        let items = self
            .query_all(
                Query::partition(Index::Primary, keys::account_partition(account))
                    .prefix(keys::GRANT_PREFIX)
                    .limit(1000),
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| i.str("principal").map(str::to_owned))
            .collect())
    }

    /// The accounts a principal may act for.
    pub async fn granted_accounts(&self, principal: &str) -> Result<Vec<AccountId>, StoreError> {
        let items = self
            .query_all(
                Query::partition(Index::Gsi1, keys::principal_partition(principal)).limit(1000),
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| i.str("account").and_then(|a| AccountId::new(a).ok()))
            .collect())
    }

    /// Whether a refusal of `what` should be recorded now: true at most
    /// once until `until`.
    pub async fn first_refusal(
        &self,
        account: &AccountId,
        what: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let item = Item::new(keys::audit_limit(account, what), Default::default())
            .with_ttl(until.timestamp());
        let op = WriteOp::put_if(item, Cond::NotExists.or(Cond::ExpiredBy(self.now_secs())));
        Ok(self.table.write(op).await?.is_ok())
    }

    pub async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let sort = format!(
            "{}#{}",
            record.at.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
            record.id
        );
        let ttl = (record.at + Duration::days(AUDIT_RETENTION_DAYS)).timestamp();
        let item = Item::new(keys::audit(&record.account, &sort), to_attrs(record)).with_ttl(ttl);
        self.table.write(WriteOp::put(item)).await?.ok();
        Ok(())
    }

    /// An account's audit records, newest first.
    pub async fn list_audit(
        &self,
        account: &AccountId,
        page: PageRequest,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let query = Query::partition(Index::Primary, keys::audit_partition(account))
            .descending()
            .limit(page.limit)
            .start(Self::decode_token(&page.token)?);
        self.query_page("audit record", query).await
    }
}
