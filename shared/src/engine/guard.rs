//! The deletion guard's verdict on what a run would remove or disable:
//! users, groups and memberships each against the connector's limits, and
//! each group against the share of its own members it would lose.

use std::collections::HashMap;

use crate::domain::{DeletionGuard, Membership, PERCENT_FLOOR, SourceId};
use crate::store::{Scope, StoreError};

use super::SyncEngine;
use super::plan::{HeldAction, Weighed};
use super::sweep::Sweep;

/// How many of the groups over the limit a run's message names.
const NAMED_GROUPS: usize = 3;

/// Everything destructive a run holds, with the totals to weigh it by.
pub(super) struct Weighing<'a> {
    pub held: &'a [HeldAction],
    pub sweep: &'a Sweep,
    /// Removals per group, for the groups that lose enough to matter, with
    /// their names and stored sizes.
    pub groups_losing: Vec<GroupLoss>,
}

pub(super) struct GroupLoss {
    pub name: String,
    pub removed: u64,
    pub stored: u64,
}

impl Weighing<'_> {
    fn count(&self, kind: Weighed) -> u64 {
        let held = self.held.iter().filter(|h| h.weighed_as() == kind).count() as u64;
        match kind {
            Weighed::Membership => held + self.sweep.memberships.len() as u64,
            _ => held,
        }
    }

    /// Why the run must be staged, if it must: every limit it exceeds.
    pub fn verdict(&self, guard: &DeletionGuard) -> Option<String> {
        let mut why = Vec::new();
        for (kind, limit, what, stored) in [
            (
                Weighed::User,
                &guard.users,
                "user removals or disables",
                self.sweep.stored_users.map(|n| (n, "stored users")),
            ),
            (
                Weighed::Group,
                &guard.groups,
                "group removals",
                self.sweep.stored_groups.map(|n| (n, "stored groups")),
            ),
            (
                Weighed::Membership,
                &guard.memberships,
                "membership removals",
                self.sweep
                    .stored_memberships
                    .filter(|n| *n > 0)
                    .map(|n| (n, "stored memberships")),
            ),
        ] {
            let n = self.count(kind);
            if limit.over_count(n) {
                why.push(format!(
                    "{n} {what} exceed the deletion guard's limit of {}",
                    limit.max_count
                ));
            } else if let Some((stored, of)) = stored
                && limit.over_percent(n, stored)
            {
                why.push(format!(
                    "{n} {what} of {stored} {of} exceed the deletion guard's {}%",
                    limit.max_percent
                ));
            }
        }
        // The groups that lose most are named (the staged list has all).
        let pct = guard.memberships.max_percent;
        for loss in self.groups_losing.iter().take(NAMED_GROUPS) {
            why.push(format!(
                "group {} would lose {} of its {} members, more than the deletion guard's {pct}%",
                loss.name, loss.removed, loss.stored
            ));
        }
        let more = self.groups_losing.len().saturating_sub(NAMED_GROUPS);
        if more > 0 {
            why.push(format!(
                "{more} more groups would each lose more than {pct}% of their members"
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

impl SyncEngine {
    /// The groups that would lose more than the memberships percentage of
    /// their own members (at least the floor of them).
    pub(super) async fn groups_losing(
        &self,
        scope: &Scope,
        guard: &DeletionGuard,
        held: &[HeldAction],
        sweep: &Sweep,
    ) -> Result<Vec<GroupLoss>, StoreError> {
        let mut removed: HashMap<&SourceId, u64> = HashMap::new();
        let staged = held.iter().filter_map(|h| match h {
            HeldAction::RemoveMembership { membership } => Some(membership),
            _ => None,
        });
        for m in sweep.memberships.iter().chain(staged) {
            *removed.entry(&m.group).or_default() += 1;
        }
        let mut losing = Vec::new();
        for (group, n) in removed.into_iter().filter(|(_, n)| *n >= PERCENT_FLOOR) {
            let stored = match sweep.group_sizes.get(group) {
                Some(size) => *size,
                None => self.store.count_group_members(scope, group).await?,
            };
            if guard.memberships.over_percent(n, stored) {
                let name = self
                    .store
                    .get_group(scope, group)
                    .await?
                    .map_or_else(|| group.to_string(), |g| g.name);
                losing.push(GroupLoss {
                    name,
                    removed: n,
                    stored,
                });
            }
        }
        losing.sort_by(|a, b| b.removed.cmp(&a.removed).then(a.name.cmp(&b.name)));
        Ok(losing)
    }
}

/// The memberships a staged list removes.
pub(super) fn staged_memberships(sweep: Sweep) -> impl Iterator<Item = HeldAction> {
    sweep
        .memberships
        .into_iter()
        .map(|membership: Membership| HeldAction::RemoveMembership { membership })
}
