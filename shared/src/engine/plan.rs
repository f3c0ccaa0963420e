//! Destructive actions held until a run is complete, the deletion guard
//! that may stage them for review, and the itemised plan of a dry run.

use serde::{Deserialize, Serialize};

use crate::domain::{Membership, SourceId, User};

/// A removal or a disable, kept aside until the run knows its total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum HeldAction {
    RemoveUser {
        id: SourceId,
        label: String,
        reason: String,
        /// The stored user's content hash when the removal was held: an
        /// approval later skips a user that has changed since.
        #[serde(default)]
        stored_hash: Option<String>,
    },
    /// The user as the source now has it (disabled).
    DisableUser {
        user: User,
        reason: String,
    },
    RemoveGroup {
        id: SourceId,
        label: String,
        reason: String,
    },
    RemoveMembership {
        membership: Membership,
    },
}

impl HeldAction {
    pub fn entry(&self) -> PlanEntry {
        match self {
            HeldAction::RemoveUser {
                id, label, reason, ..
            } => PlanEntry::new(Action::Remove, "user", id, label, reason),
            HeldAction::DisableUser { user, reason } => PlanEntry::new(
                Action::Disable,
                "user",
                &user.id,
                user.primary_email.as_str(),
                reason,
            ),
            HeldAction::RemoveGroup { id, label, reason } => {
                PlanEntry::new(Action::Remove, "group", id, label, reason)
            }
            HeldAction::RemoveMembership { membership: m } => PlanEntry::new(
                Action::Remove,
                "membership",
                &m.member,
                &format!("{} in group {}", m.member, m.group),
                "no longer a member at the source",
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Disable,
    Enable,
    Remove,
    Skip,
}

/// One line of a plan: what would happen to an object and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    pub action: Action,
    pub object_type: String,
    pub id: String,
    /// Something a person recognises: an address or a name.
    pub label: String,
    pub reason: String,
}

impl PlanEntry {
    pub fn new(
        action: Action,
        object_type: &str,
        id: &SourceId,
        label: &str,
        reason: &str,
    ) -> Self {
        Self {
            action,
            object_type: object_type.into(),
            id: id.to_string(),
            label: label.into(),
            reason: reason.into(),
        }
    }
}

/// When a run would remove or disable too much, nothing of it is applied:
/// the run is staged and an administrator approves or rejects the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionGuard {
    /// More than this many removals and disables always stage.
    pub max_count: u64,
    /// More than this percentage of the stored users and groups stages…
    pub max_percent: u64,
    /// …once at least this many are affected (small tenants are not staged
    /// for one leaver in ten).
    pub percent_floor: u64,
}

impl Default for DeletionGuard {
    fn default() -> Self {
        Self {
            max_count: 500,
            max_percent: 10,
            percent_floor: 10,
        }
    }
}

impl DeletionGuard {
    /// Whether the number of stored objects can change the verdict on
    /// `destructive` removals/disables: not below the floor, nor above the
    /// absolute cap (which stages whatever is stored).
    pub fn weighs_stored(&self, destructive: u64) -> bool {
        destructive >= self.percent_floor && destructive <= self.max_count
    }

    /// Whether `destructive` removals/disables out of `stored` objects stage.
    pub fn trips(&self, destructive: u64, stored: u64) -> bool {
        destructive > self.max_count
            || (destructive >= self.percent_floor
                && destructive * 100 > self.max_percent * stored.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_thresholds() {
        let g = DeletionGuard::default();
        assert!(!g.trips(0, 0));
        assert!(!g.trips(3, 10), "a few leavers in a small tenant are fine");
        assert!(g.trips(10, 50), "20% of a tenant stages");
        assert!(!g.trips(10, 1000));
        assert!(g.trips(501, 1_000_000), "the absolute cap always applies");
        assert!(g.trips(1000, 1000), "an almost empty source stages");
        // The stored count matters exactly where it can change the verdict.
        for destructive in [0, 9, 10, 500, 501, 5000] {
            let matters = (0..=100_000u64)
                .step_by(1000)
                .any(|stored| g.trips(destructive, stored) != g.trips(destructive, 100_000));
            assert!(
                !matters || g.weighs_stored(destructive),
                "{destructive}: the count matters but would not be taken"
            );
        }
        assert!(g.weighs_stored(10) && g.weighs_stored(500));
        assert!(!g.weighs_stored(9) && !g.weighs_stored(501));
    }
}
