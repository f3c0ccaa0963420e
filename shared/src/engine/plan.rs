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
        /// The stored user's content hash when the disable was held.
        #[serde(default)]
        stored_hash: Option<String>,
    },
    RemoveGroup {
        id: SourceId,
        label: String,
        reason: String,
        #[serde(default)]
        stored_hash: Option<String>,
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
            HeldAction::DisableUser { user, reason, .. } => PlanEntry::new(
                Action::Disable,
                "user",
                &user.id,
                user.primary_email.as_str(),
                reason,
            ),
            HeldAction::RemoveGroup {
                id, label, reason, ..
            } => PlanEntry::new(Action::Remove, "group", id, label, reason),
            HeldAction::RemoveMembership { membership: m } => {
                PlanEntry::membership(Action::Remove, m, "no longer a member at the source")
            }
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

    /// A membership's entry: under its member's id, labelled with both ends.
    pub fn membership(action: Action, m: &Membership, reason: &str) -> Self {
        let label = format!(
            "{} {} in group {}",
            m.member_kind.label(),
            m.member,
            m.group
        );
        Self::new(action, "membership", &m.member, &label, reason)
    }
}

/// How many entries of a list share an object type and an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionCount {
    pub object_type: String,
    pub action: Action,
    pub count: u64,
}

/// `entries` counted by object type and action, in the order each pair
/// first appears.
pub fn summarize(entries: &[PlanEntry]) -> Vec<ActionCount> {
    let mut counts: Vec<ActionCount> = Vec::new();
    for e in entries {
        let same = |c: &&mut ActionCount| c.object_type == e.object_type && c.action == e.action;
        match counts.iter_mut().find(same) {
            Some(c) => c.count += 1,
            None => counts.push(ActionCount {
                object_type: e.object_type.clone(),
                action: e.action,
                count: 1,
            }),
        }
    }
    counts
}

impl HeldAction {
    /// The user or group it acts on (for a membership, the group).
    pub fn object(&self) -> &SourceId {
        match self {
            HeldAction::RemoveUser { id, .. } | HeldAction::RemoveGroup { id, .. } => id,
            HeldAction::DisableUser { user, .. } => &user.id,
            HeldAction::RemoveMembership { membership } => &membership.group,
        }
    }

    /// The stored object's content hash when the action was held, where
    /// kept (an approval skips an object changed since).
    pub fn staged_hash(&self) -> Option<&str> {
        match self {
            HeldAction::RemoveUser { stored_hash, .. }
            | HeldAction::DisableUser { stored_hash, .. }
            | HeldAction::RemoveGroup { stored_hash, .. } => stored_hash.as_deref(),
            HeldAction::RemoveMembership { .. } => None,
        }
    }

    /// What the deletion guard weighs it as.
    pub fn weighed_as(&self) -> Weighed {
        match self {
            HeldAction::RemoveUser { .. } | HeldAction::DisableUser { .. } => Weighed::User,
            HeldAction::RemoveGroup { .. } => Weighed::Group,
            HeldAction::RemoveMembership { .. } => Weighed::Membership,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighed {
    User,
    Group,
    Membership,
}
