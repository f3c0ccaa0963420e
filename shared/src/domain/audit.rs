//! Audit records: who did what to which account, and how it ended.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AccountId, ConnectorId};

/// What was done (or tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    CreateAccount,
    UpdateAccount,
    GrantAccess,
    RevokeAccess,
    CreateConnector,
    UpdateConnector,
    DeleteConnector,
    SetSecret,
    TestConnection,
    SyncNow,
    StartConsent,
    StartMigration,
    ChangeTenant,
    /// The consent callback recorded (or refused) a grant.
    Consent,
    /// The consent callback completed (or refused) a migration.
    Migration,
    Approve,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Succeeded,
    /// Refused: bad input, no access, a check that did not pass.
    Refused,
    Failed,
    /// Accepted and still under way (a grant being confirmed).
    Pending,
    /// The other side said no: the administrator cancelled or declined
    /// consent, or Entra sent an error instead of a grant.
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// Who did it: the IAM principal, the local operator, or for the consent
    /// callback whoever started the consent.
    pub caller: String,
    pub action: AuditAction,
    pub account: AccountId,
    #[serde(default)]
    pub connector: Option<ConnectorId>,
    pub outcome: AuditOutcome,
    /// A short what and why (the refusal's message); never a secret.
    #[serde(default)]
    pub detail: String,
}

impl AuditRecord {
    pub fn new(action: AuditAction, account: AccountId, caller: impl Into<String>) -> Self {
        Self {
            id: Uuid::new_v4(),
            at: Utc::now(),
            caller: caller.into(),
            action,
            account,
            connector: None,
            outcome: AuditOutcome::Succeeded,
            detail: String::new(),
        }
    }

    pub fn connector(mut self, connector: Option<ConnectorId>) -> Self {
        self.connector = connector;
        self
    }

    pub fn outcome(mut self, outcome: AuditOutcome, detail: impl Into<String>) -> Self {
        self.outcome = outcome;
        self.detail = detail.into().chars().take(500).collect();
        self
    }
}

/// Audit records are kept this long.
pub const AUDIT_RETENTION_DAYS: i64 = 400;
