//! Sync runs, and the cursors and leases that keep them resumable and single.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AccountId, ConnectorId, RunId};

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    /// A scheduled window (its scheduled time, as the scheduler gave it).
    Schedule { window: DateTime<Utc> },
    /// "Sync now" by an administrator or operator.
    Manual { requested_by: Option<String> },
    /// The same run continued in a new invocation (Lambda time ran out).
    Continuation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Enumerate everything; objects not seen are removed at the end.
    Full,
    /// Read changes since the stored cursor.
    Delta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// Removals over the deletion threshold wait for an administrator.
    Staged,
    /// Finished, but some objects could not be applied.
    Partial,
    Failed,
    /// Was staged, but a later run read the directory again: its list no
    /// longer describes the directory and can no longer be approved.
    Superseded,
    /// Was staged; an administrator approved it and its list was applied.
    Approved,
    /// Was staged; an administrator rejected it and nothing was applied.
    Rejected,
    /// Was staged, and not reviewed in time: nothing was applied.
    Expired,
}

impl RunStatus {
    /// The status as the API and the CLI name it.
    pub fn code(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Staged => "staged",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Superseded => "superseded",
            RunStatus::Approved => "approved",
            RunStatus::Rejected => "rejected",
            RunStatus::Expired => "expired",
        }
    }

    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

/// Objects by what the run did with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCounts {
    pub created: u64,
    pub updated: u64,
    pub disabled: u64,
    pub enabled: u64,
    pub removed: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub members_added: u64,
    pub members_removed: u64,
    /// Memberships whose role, address or kind changed (a member that
    /// became an external recipient, a new role).
    #[serde(default)]
    pub members_updated: u64,
}

/// "3 created, 1 updated, …; memberships +2 -1", and ", N changed" when
/// memberships changed in place: how runs report what they did.
impl std::fmt::Display for ActionCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} created, {} updated, {} enabled, {} disabled, {} removed, {} unchanged, {} skipped; \
             memberships +{} -{}",
            self.created,
            self.updated,
            self.enabled,
            self.disabled,
            self.removed,
            self.unchanged,
            self.skipped,
            self.members_added,
            self.members_removed
        )?;
        if self.members_updated > 0 {
            write!(f, ", {} changed", self.members_updated)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    NoAddress,
    AddressConflict,
    /// Two objects of one directory list the same address; one owns it.
    AddressShared,
    /// A user whose proxy addresses name two primary addresses.
    ExtraPrimary,
    OutOfScope,
    Guest,
    Unreadable,
    /// An object without a lasting id of its own (a Domino document
    /// without `dominoUNID`): kept by a name a rename changes.
    NoStableId,
    /// Not about one object: the connector's objects took new ids (see
    /// `engine::rekey`).
    IdsMigrated,
}

/// One object the run could not take as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectWarning {
    pub kind: WarningKind,
    pub object: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    pub id: RunId,
    pub account: AccountId,
    pub connector: ConnectorId,
    pub trigger: Trigger,
    pub mode: SyncMode,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub counts: ActionCounts,
    pub requests: u64,
    pub throttled: u64,
    pub retries: u64,
    /// The first [`SyncRun::MAX_WARNINGS`] warnings; `warnings_total` counts all.
    pub warnings: Vec<ObjectWarning>,
    pub warnings_total: u64,
    /// What happened and, when something went wrong, what to do.
    pub message: Option<String>,
    /// For a staged run: the administrator's decision, once made.
    #[serde(default)]
    pub review: Option<Review>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub approved: bool,
    pub by: Option<String>,
    pub at: DateTime<Utc>,
    /// How many staged actions were applied (0 when rejected).
    pub applied: u64,
    /// Staged objects an approval left alone, because they changed since.
    #[serde(default)]
    pub skipped: Vec<String>,
}

impl SyncRun {
    /// Keeps a run record well under DynamoDB's 400 KB item limit.
    pub const MAX_WARNINGS: usize = 200;

    pub fn start(
        account: AccountId,
        connector: ConnectorId,
        trigger: Trigger,
        mode: SyncMode,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: RunId::generate(now),
            account,
            connector,
            trigger,
            mode,
            status: RunStatus::Running,
            started_at: now,
            ended_at: None,
            counts: ActionCounts::default(),
            requests: 0,
            throttled: 0,
            retries: 0,
            warnings: Vec::new(),
            warnings_total: 0,
            message: None,
            review: None,
        }
    }

    pub fn warn(&mut self, warning: ObjectWarning) {
        self.warnings_total += 1;
        if self.warnings.len() < Self::MAX_WARNINGS {
            self.warnings.push(warning);
        }
    }

    pub fn finish(&mut self, status: RunStatus, message: Option<String>, now: DateTime<Utc>) {
        self.status = status;
        self.message = message;
        self.ended_at = Some(now);
    }
}

/// Where a source stream (users, groups…) of a connector stands: a delta link,
/// a USN, a page token. Opaque to everything but its source adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub stream: String,
    pub value: String,
    pub updated_at: DateTime<Utc>,
}

/// The right to run one connector's sync until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub account: AccountId,
    pub connector: ConnectorId,
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_capped_but_counted() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut run = SyncRun::start(
            AccountId::new("a").unwrap(),
            ConnectorId::new("c").unwrap(),
            Trigger::Manual { requested_by: None },
            SyncMode::Full,
            now,
        );
        for i in 0..(SyncRun::MAX_WARNINGS + 5) {
            run.warn(ObjectWarning {
                kind: WarningKind::NoAddress,
                object: format!("u{i}"),
                detail: "no mail and no proxy address".into(),
            });
        }
        assert_eq!(run.warnings.len(), SyncRun::MAX_WARNINGS);
        assert_eq!(run.warnings_total, SyncRun::MAX_WARNINGS as u64 + 5);
        run.finish(RunStatus::Succeeded, None, now);
        assert!(run.status.is_finished());
    }
}
