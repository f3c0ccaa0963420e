//! Applying one source page to the store: writes what changed, holds back
//! removals and disables, and notes what a full read has seen.

use std::collections::{HashMap, HashSet};

use crate::domain::{
    ActionCounts, Connector, Membership, ObjectWarning, SourceId, SyncMode, User, WarningKind,
};
use crate::source::{Change, Member, Removal};
use crate::store::{Scope, StateStore, StoreError, Upserted};

use super::plan::{Action, HeldAction, PlanEntry};
use super::policy;
use super::progress::{membership_fp, user_fp};

/// What one page did, merged into the run by the caller.
#[derive(Debug, Default)]
pub struct PageOutcome {
    pub counts: ActionCounts,
    pub warnings: Vec<ObjectWarning>,
    pub held: Vec<HeldAction>,
    pub seen_users: Vec<u64>,
    pub seen_groups: Vec<u64>,
    pub seen_members: Vec<u64>,
    /// On a first sync, the users its memberships point at: the end of the
    /// run needs no read-back when all of them were stored or skipped.
    pub member_users: Vec<u64>,
    pub skipped_users: Vec<SourceId>,
    pub added_user_members: Vec<(SourceId, SourceId)>,
    /// Membership removals the source asked for: held like every
    /// destructive change, and weighed with the sweep's at the end.
    pub held_members: Vec<Membership>,
    /// A delta read's added memberships, so that the end of the run can
    /// tell a removal held on an earlier page from one undone on a later
    /// one (a full read has them as `seen_members`).
    pub member_adds: Vec<u64>,
    /// A delta read's users and groups, so that the end of the run can tell
    /// a removal or disable held on an earlier page from one a later page
    /// undid (a full read has them as `seen_users` and `seen_groups`).
    pub object_writes: Vec<u64>,
    /// Memberships of users not kept, held until the end of the run (the
    /// user may have become one that is kept in this very run).
    pub pending_members: Vec<Membership>,
    /// Dry runs only: every object's action and reason.
    pub plan: Vec<PlanEntry>,
}

/// What the store held when the run began, as far as its pages need to know.
pub struct Known {
    /// Users not kept: their memberships are held back rather than written
    /// and removed again.
    pub not_kept: NotKept,
    /// See [`RunProgress::began_empty`](super::progress::RunProgress).
    pub began_empty: bool,
}

/// The users not kept, as the store had them when the run began and as the
/// users stream finds more: shared with the groups stream as it goes, so
/// that a first sync writes fewer memberships only to remove them at its
/// end (the streams run side by side, so about half of them).
pub struct NotKept(std::sync::RwLock<HashSet<SourceId>>);

impl NotKept {
    pub fn new(ids: HashSet<SourceId>) -> Self {
        Self(std::sync::RwLock::new(ids))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashSet<SourceId>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn contains(&self, id: &SourceId) -> bool {
        self.read().contains(id)
    }

    /// Records what a page of users said: these are not kept, those are
    /// kept again.
    fn update(&self, not_kept: &[SourceId], kept: &[SourceId]) {
        if not_kept.is_empty() && kept.is_empty() {
            return;
        }
        let mut ids = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in kept {
            ids.remove(id);
        }
        ids.extend(not_kept.iter().cloned());
    }
}

pub struct PageContext<'a> {
    pub store: &'a StateStore,
    pub scope: &'a Scope,
    pub connector: &'a Connector,
    pub mode: SyncMode,
    pub dry_run: bool,
    pub known: &'a Known,
}

fn removal_reason(reason: &Removal) -> String {
    match reason {
        Removal::Deleted => "deleted at the source".into(),
        Removal::SoftDeleted => "deleted at the source (still restorable there)".into(),
        Removal::Skipped { detail, .. } => detail.clone(),
    }
}

fn memberships(group: &SourceId, members: &[Member]) -> Vec<Membership> {
    members.iter().map(|m| m.of(group)).collect()
}

/// A page's membership changes in the order the source gave them: the
/// last word on a membership counts.
#[derive(Default)]
struct MemberChanges {
    said: Vec<(Membership, bool)>,
}

impl MemberChanges {
    fn say(&mut self, memberships: impl IntoIterator<Item = Membership>, added: bool) {
        self.said
            .extend(memberships.into_iter().map(|m| (m, added)));
    }

    /// The memberships added and those removed.
    fn last_words(self) -> (Vec<Membership>, Vec<Membership>) {
        let mut last: HashMap<(SourceId, SourceId), usize> = HashMap::new();
        for (i, (m, _)) in self.said.iter().enumerate() {
            last.insert((m.group.clone(), m.member.clone()), i);
        }
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for (i, (m, add)) in self.said.into_iter().enumerate() {
            if last.get(&(m.group.clone(), m.member.clone())) != Some(&i) {
                continue;
            }
            if add { added.push(m) } else { removed.push(m) }
        }
        (added, removed)
    }
}

impl PageContext<'_> {
    pub async fn apply(&self, changes: Vec<Change>) -> Result<PageOutcome, StoreError> {
        let mut out = PageOutcome::default();
        let full = self.mode == SyncMode::Full;
        let mut users: HashMap<SourceId, User> = HashMap::new();
        let mut user_order = Vec::new();
        let mut removed_users = Vec::new();
        let mut groups = Vec::new();
        let mut removed_groups = Vec::new();
        let mut members = MemberChanges::default();

        for change in self.complete_users(changes).await? {
            match policy::apply(&self.connector.options, change) {
                Change::User(u) => {
                    // A page may repeat an object; the last word counts.
                    if users.insert(u.id.clone(), u.clone()).is_none() {
                        user_order.push(u.id);
                    }
                }
                Change::PartialUser(_) => unreachable!("completed before the policy"),
                Change::RemoveUser { id, reason } => removed_users.push((id, reason)),
                Change::Group(g) => groups.push(g),
                Change::RemoveGroup { id, reason } => removed_groups.push((id, reason)),
                Change::Note(w) => out.warnings.push(w),
                Change::AddMembers { group, members: m } => {
                    members.say(memberships(&group, &m), true)
                }
                Change::RemoveMembers { group, members: m } => {
                    members.say(memberships(&group, &m), false)
                }
                Change::ReplaceMembers { group, members: m } => {
                    // A full read's sweep removes what the complete lists
                    // did not name; otherwise the stored members the list
                    // no longer names are held for removal here.
                    if !full {
                        let listed: HashSet<&SourceId> = m.iter().map(|m| &m.id).collect();
                        let stored = crate::store::all_pages(|p| {
                            self.store.group_members(self.scope, &group, p)
                        })
                        .await?;
                        members.say(
                            stored.into_iter().filter(|s| !listed.contains(&s.member)),
                            false,
                        );
                    }
                    members.say(memberships(&group, &m), true);
                }
            }
        }
        let (added, removed_members) = members.last_words();
        let users: Vec<User> = user_order
            .into_iter()
            .filter_map(|id| users.remove(&id))
            .collect();

        // Keep the not-kept register in step with what the source now says.
        let kept_again: Vec<SourceId> = users
            .iter()
            .filter(|u| self.known.not_kept.contains(&u.id))
            .map(|u| u.id.clone())
            .collect();
        let newly_not_kept: Vec<SourceId> = removed_users
            .iter()
            .filter(|(id, r)| {
                matches!(r, Removal::Skipped { .. }) && !self.known.not_kept.contains(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !self.dry_run {
            self.store.unmark_not_kept(self.scope, &kept_again).await?;
            self.store
                .mark_not_kept(self.scope, &newly_not_kept)
                .await?;
        }
        // Once stored (a crash here leaves the store's register ahead of
        // this run's view, which the next invocation reads afresh).
        self.known.not_kept.update(&newly_not_kept, &kept_again);
        let (held_back, added): (Vec<Membership>, Vec<Membership>) = {
            let not_kept = self.known.not_kept.read();
            added.into_iter().partition(|m| {
                m.member_kind == crate::domain::MemberKind::User && not_kept.contains(&m.member)
            })
        };
        let held_back_fps = held_back.iter().map(|m| membership_fp(&m.group, &m.member));
        if full {
            out.seen_members.extend(held_back_fps);
        } else {
            // Listed, so an earlier page's removal of them is undone.
            out.member_adds.extend(held_back_fps);
        }
        out.pending_members.extend(held_back);

        if !full {
            out.object_writes
                .extend(users.iter().map(|u| user_fp(&u.id)));
            out.object_writes
                .extend(groups.iter().map(|g| user_fp(&g.id)));
        }
        self.apply_users(users, &mut out, full).await?;
        self.apply_user_removals(removed_users, &mut out, full)
            .await?;
        self.apply_groups(groups, removed_groups, &mut out, full)
            .await?;

        if full {
            out.seen_members
                .extend(added.iter().map(|m| membership_fp(&m.group, &m.member)));
            if self.known.began_empty {
                out.member_users.extend(
                    added
                        .iter()
                        .filter(|m| m.member_kind == crate::domain::MemberKind::User)
                        .map(|m| user_fp(&m.member)),
                );
                // A user is in several of a page's groups: one entry each.
                out.member_users.sort_unstable();
                out.member_users.dedup();
            }
        } else {
            out.added_user_members.extend(
                added
                    .iter()
                    .filter(|m| m.member_kind == crate::domain::MemberKind::User)
                    .map(|m| (m.group.clone(), m.member.clone())),
            );
            out.member_adds
                .extend(added.iter().map(|m| membership_fp(&m.group, &m.member)));
        }
        out.held_members = removed_members;
        if self.dry_run {
            let new = self.not_stored(&added).await?;
            out.counts.members_added += new.len() as u64;
            out.plan.extend(
                new.iter()
                    .map(|m| PlanEntry::membership(Action::Create, m, "new member at the source")),
            );
        } else if self.known.began_empty {
            out.counts.members_added += self.store.put_memberships(self.scope, &added).await?;
        } else {
            let written = self.store.add_memberships(self.scope, &added).await?;
            out.counts.members_added += written.added;
            out.counts.members_updated += written.updated;
        }
        Ok(out)
    }

    /// Those of `memberships` the store does not hold yet: what a dry run
    /// says a real run would add.
    async fn not_stored(&self, memberships: &[Membership]) -> Result<Vec<Membership>, StoreError> {
        let stored = self
            .store
            .stored_memberships(self.scope, memberships)
            .await?;
        let stored: HashSet<(&SourceId, &SourceId)> =
            stored.iter().map(|m| (&m.group, &m.member)).collect();
        Ok(memberships
            .iter()
            .filter(|m| !stored.contains(&(&m.group, &m.member)))
            .cloned()
            .collect())
    }

    /// Completes the page's partial users: over nothing on a full read,
    /// where a property not sent is unset, and over the stored user on a
    /// delta read, where it is unchanged. A user not stored (new, or not
    /// kept) is completed over nothing: a delta read in Graph's default mode
    /// sends every property that has a value.
    async fn complete_users(&self, changes: Vec<Change>) -> Result<Vec<Change>, StoreError> {
        let partial = |c: &Change| matches!(c, Change::PartialUser(_));
        if !changes.iter().any(partial) {
            return Ok(changes);
        }
        let stored = if self.mode == SyncMode::Full {
            crate::store::StoredUsers::default()
        } else {
            let ids: Vec<&SourceId> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::PartialUser(p) => Some(&p.id),
                    _ => None,
                })
                .collect();
            self.store.stored_users(self.scope, &ids).await?
        };
        Ok(changes
            .into_iter()
            .map(|c| match c {
                Change::PartialUser(patch) => {
                    let base = stored.get(&patch.id).cloned();
                    patch.onto(base.as_ref())
                }
                other => other,
            })
            .collect())
    }

    async fn apply_users(
        &self,
        users: Vec<User>,
        out: &mut PageOutcome,
        full: bool,
    ) -> Result<(), StoreError> {
        if full {
            out.seen_users.extend(users.iter().map(|u| user_fp(&u.id)));
        }
        let ids: Vec<&SourceId> = users.iter().map(|u| &u.id).collect();
        let stored = self.store.stored_users(self.scope, &ids).await?;
        let mut write = Vec::with_capacity(users.len());
        for user in users {
            if stored.is_unchanged(&user) {
                out.counts.unchanged += 1;
                continue;
            }
            match stored.get(&user.id) {
                // Disabling is held until the run knows how many it disables.
                Some(old) if old.enabled && !user.enabled => {
                    out.held.push(HeldAction::DisableUser {
                        stored_hash: Some(old.content_hash().as_str().to_owned()),
                        user,
                        reason: "disabled at the source".into(),
                    })
                }
                _ => write.push(user),
            }
        }
        if self.dry_run {
            for user in &write {
                let (action, reason) = match stored.get(&user.id) {
                    None => (Action::Create, "new at the source"),
                    Some(old) if !old.enabled && user.enabled => {
                        (Action::Enable, "enabled at the source")
                    }
                    Some(_) => (Action::Update, "changed at the source"),
                };
                out.count(action);
                out.plan.push(PlanEntry::new(
                    action,
                    "user",
                    &user.id,
                    user.primary_email.as_str(),
                    reason,
                ));
            }
            return Ok(());
        }
        let written = self.store.apply_users(self.scope, &write, &stored).await?;
        out.shared_addresses(written.shared);
        for (user, outcome) in write.iter().zip(written.outcomes) {
            match outcome {
                Upserted::Created => out.counts.created += 1,
                Upserted::Updated
                    if stored.get(&user.id).is_some_and(|o| !o.enabled) && user.enabled =>
                {
                    out.counts.enabled += 1
                }
                Upserted::Updated => out.counts.updated += 1,
                Upserted::Unchanged => out.counts.unchanged += 1,
                Upserted::Conflict { address, owner } => {
                    out.counts.skipped += 1;
                    out.warnings.push(ObjectWarning {
                        kind: WarningKind::AddressConflict,
                        object: user.primary_email.to_string(),
                        detail: format!(
                            "{address} already belongs to connector {} (user {}); the user was not {}",
                            owner.connector,
                            owner.user,
                            if stored.get(&user.id).is_some() { "updated" } else { "created" }
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    async fn apply_user_removals(
        &self,
        removed: Vec<(SourceId, Removal)>,
        out: &mut PageOutcome,
        full: bool,
    ) -> Result<(), StoreError> {
        let ids: Vec<&SourceId> = removed.iter().map(|(id, _)| id).collect();
        let stored = self.store.stored_users(self.scope, &ids).await?;
        for (id, reason) in removed {
            let text = removal_reason(&reason);
            if let Removal::Skipped { kind, detail } = &reason {
                out.counts.skipped += 1;
                out.warnings.push(ObjectWarning {
                    kind: *kind,
                    object: id.to_string(),
                    detail: detail.clone(),
                });
                out.skipped_users.push(id.clone());
                if self.dry_run {
                    out.plan.push(PlanEntry::new(
                        Action::Skip,
                        "user",
                        &id,
                        id.as_str(),
                        detail,
                    ));
                }
            }
            if let Some(old) = stored.get(&id) {
                // Held, and marked seen so the full sweep does not list it twice.
                if full {
                    out.seen_users.push(user_fp(&id));
                }
                out.held.push(HeldAction::RemoveUser {
                    label: old.primary_email.to_string(),
                    stored_hash: Some(old.content_hash().as_str().to_owned()),
                    id,
                    reason: text,
                });
            }
        }
        Ok(())
    }

    async fn apply_groups(
        &self,
        groups: Vec<crate::domain::Group>,
        removed: Vec<(SourceId, Removal)>,
        out: &mut PageOutcome,
        full: bool,
    ) -> Result<(), StoreError> {
        if full {
            out.seen_groups
                .extend(groups.iter().map(|g| user_fp(&g.id)));
        }
        if self.dry_run {
            for g in &groups {
                let action = match self.store.get_group(self.scope, &g.id).await? {
                    None => Action::Create,
                    Some(old) if old == *g => continue,
                    Some(_) => Action::Update,
                };
                out.count(action);
                out.plan.push(PlanEntry::new(
                    action,
                    "group",
                    &g.id,
                    &g.name,
                    "at the source",
                ));
            }
        } else {
            let written = self.store.upsert_groups(self.scope, &groups).await?;
            for outcome in written.outcomes {
                match outcome {
                    Upserted::Created => out.counts.created += 1,
                    Upserted::Updated => out.counts.updated += 1,
                    _ => out.counts.unchanged += 1,
                }
            }
            out.shared_addresses(written.shared);
            for (group, address, owner) in written.foreign {
                out.warnings.push(ObjectWarning {
                    kind: WarningKind::AddressConflict,
                    object: group.to_string(),
                    detail: format!(
                        "{address} already belongs to connector {} ({} {}); the group was written without it",
                        owner.connector,
                        owner.kind.label(),
                        owner.user
                    ),
                });
            }
        }
        for (id, reason) in removed {
            if let Some(old) = self.store.get_group(self.scope, &id).await? {
                out.held.push(HeldAction::RemoveGroup {
                    stored_hash: Some(old.content_hash().as_str().to_owned()),
                    label: old.name,
                    id,
                    reason: removal_reason(&reason),
                });
            }
        }
        Ok(())
    }
}

impl PageOutcome {
    fn shared_addresses(&mut self, shared: Vec<crate::store::SharedAddress>) {
        self.warnings
            .extend(shared.into_iter().map(|s| ObjectWarning {
                kind: WarningKind::AddressShared,
                object: s.address.to_string(),
                detail: s.describe(),
            }));
    }

    fn count(&mut self, action: Action) {
        match action {
            Action::Create => self.counts.created += 1,
            Action::Update => self.counts.updated += 1,
            Action::Enable => self.counts.enabled += 1,
            Action::Disable => self.counts.disabled += 1,
            Action::Remove => self.counts.removed += 1,
            Action::Skip => self.counts.skipped += 1,
        }
    }
}
