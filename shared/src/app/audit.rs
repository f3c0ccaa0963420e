//! The audit trail: every mutating admin call, and every consent,
//! migration, approval and rejection, leaves one record in the account's
//! trail (listed by `GET /accounts/{a}/audit`, `dirsync audit`) and one
//! structured log line. Refusals are recorded too: an attempt on another
//! customer's account is something its administrators want to see.

pub use crate::domain::{AuditAction, AuditOutcome, AuditRecord};

use super::App;

impl App {
    /// Records `record` (at the store's time). A record that cannot be
    /// stored is still logged, and the action it describes stands.
    pub async fn audit(&self, mut record: AuditRecord) {
        record.at = self.store.now();
        tracing::info!(
            audit = true,
            action = ?record.action,
            account = %record.account,
            connector = record.connector.as_ref().map(|c| c.as_str()),
            caller = %record.caller,
            outcome = ?record.outcome,
            detail = %record.detail,
            "audit"
        );
        if let Err(e) = self.store.put_audit(&record).await {
            tracing::error!(error = %e, account = %record.account, "audit record not stored");
        }
    }
}
