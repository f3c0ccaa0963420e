//! The end of a run: sweep what a full read did not see, weigh the held
//! removals and disables against the deletion guard, apply or stage them,
//! keep the cursors, record the run. Also the review of staged runs.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt, stream};

use crate::domain::{
    Connector, Cursor, Lease, MemberKind, Membership, RunId, RunStatus, SourceId, SyncMode, SyncRun,
};
use crate::source::Stream;
use crate::store::{Scope, StoreError, all_pages, each_page};

use super::plan::{HeldAction, PlanEntry};
use super::progress::{Checkpoints, RunProgress, StreamProgress, membership_fp, user_fp};
use super::{EngineError, Gathered, SyncEngine};

const STAGED: &str = "staged";

/// A store read run a few at a time. Boxed with an explicit `Send`: through
/// the closures that build them the compiler cannot prove it, and a run must
/// be spawnable.
type Read<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the sweep found besides held object actions.
struct Sweep {
    /// Removals of memberships the platform's view shows: under the guard.
    memberships: Vec<Membership>,
    /// Memberships that point at users the platform does not keep (skipped
    /// by policy, never stored). Removing them changes nothing anyone can
    /// look up, so they are outside the guard: counting them let a first
    /// sync with many out-of-scope group members stage.
    stale_memberships: Vec<Membership>,
    /// Held-back memberships whose users turned out to be kept.
    late_members: Vec<Membership>,
    /// Why nothing was swept, when a full read came back empty.
    refused: Option<String>,
    stored_objects: u64,
    stored_memberships: u64,
}

impl SyncEngine {
    async fn all_groups(&self, scope: &Scope) -> Result<Vec<crate::domain::Group>, StoreError> {
        all_pages(|page| self.store.list_groups(scope, page)).await
    }

    /// How many members a group has stored, and those a full read did not
    /// list or that point at users the platform does not keep.
    async fn sweep_members(
        &self,
        scope: &Scope,
        group: &SourceId,
        seen_members: &HashSet<u64>,
        user_fps: &HashSet<u64>,
    ) -> Result<(u64, Vec<Membership>), StoreError> {
        let mut stored = 0;
        let mut removals = Vec::new();
        each_page(
            |page| self.store.group_members(scope, group, page),
            |members| {
                stored += members.len() as u64;
                removals.extend(members.into_iter().filter(|m| {
                    let gone = !seen_members.contains(&membership_fp(&m.group, &m.member));
                    let dangling = m.member_kind == MemberKind::User
                        && !user_fps.contains(&user_fp(&m.member));
                    gone || dangling
                }));
            },
        )
        .await?;
        Ok((stored, removals))
    }

    /// A first sync read in full can end without reading back what it
    /// wrote: when every user its memberships point at was stored or
    /// skipped, and every user it saw was stored (none lost to an address
    /// conflict), nothing stored went unseen and the only memberships that
    /// point at users not stored are those of the users it skipped. Returns
    /// the users and groups stored then, or `None` when that cannot be
    /// shown. (Reading back 600,000 memberships and 100,000 users was 1.7 s
    /// of a 100,000-user first sync on the embedded store.)
    async fn first_sync_users(
        &self,
        scope: &Scope,
        g: &Gathered,
    ) -> Result<Option<u64>, StoreError> {
        let skipped: HashSet<u64> = g.skipped_users.iter().map(user_fp).collect();
        // A user skipped after it was stored is held for removal: its
        // memberships are under the guard, which the full sweep weighs.
        if skipped.iter().any(|fp| g.seen_users.contains(fp))
            || !g
                .member_users
                .iter()
                .all(|fp| g.seen_users.contains(fp) || skipped.contains(fp))
        {
            return Ok(None);
        }
        // Everything stored was written by this run, so seen: equal counts
        // mean everything seen was stored. (Every group seen is stored: its
        // count is a check that nothing was written unseen.)
        let users = self.store.count_users(scope).await?;
        let groups = self.store.count_groups(scope).await?;
        Ok(
            (users == g.seen_users.len() as u64 && groups == g.seen_groups.len() as u64)
                .then_some(users + groups),
        )
    }

    /// Works out removals a full read implies, and memberships that point at
    /// users the platform does not keep. `first_sync`: the run began on an
    /// empty store and recorded the users its memberships point at
    /// ([`RunProgress::member_users_recorded`]).
    async fn sweep(
        &self,
        scope: &Scope,
        users_full: bool,
        groups_full: bool,
        first_sync: bool,
        g: &mut Gathered,
    ) -> Result<Sweep, StoreError> {
        let mut sweep = Sweep {
            memberships: Vec::new(),
            stale_memberships: Vec::new(),
            late_members: Vec::new(),
            refused: None,
            stored_objects: 0,
            stored_memberships: 0,
        };
        let unwritten = if first_sync && users_full && groups_full {
            self.first_sync_users(scope, g).await?
        } else {
            None
        };
        let look_up = match unwritten {
            Some(stored_objects) => {
                sweep.stored_objects = stored_objects;
                // Only those the run wrote memberships for have any.
                std::mem::take(&mut g.skipped_users)
                    .into_iter()
                    .filter(|id| g.member_users.contains(&user_fp(id)))
                    .collect()
            }
            None => {
                self.sweep_listed(scope, users_full, groups_full, g, &mut sweep)
                    .await?
            }
        };
        // Their memberships, from the index, in one call (3,059 reads of
        // their own took 0.22 s of a 100,000-user first sync's end).
        let found = self.store.member_of_each(scope, &look_up).await?;
        sweep.memberships.extend(found);
        // Memberships added by a delta read for users not kept.
        let added = std::mem::take(&mut g.added_user_members);
        let ids: Vec<&SourceId> = added.iter().map(|(_, m)| m).collect();
        let kept = self.store.stored_users(scope, &ids).await?;
        for (group, member) in added {
            if kept.get(&member).is_none() {
                sweep.memberships.push(Membership {
                    group,
                    member,
                    member_kind: MemberKind::User,
                });
            }
        }
        // Memberships held back for users not kept: added now for those
        // that are kept after all.
        let pending = std::mem::take(&mut g.pending_members);
        let ids: Vec<&SourceId> = pending.iter().map(|(_, m)| m).collect();
        let kept = self.store.stored_users(scope, &ids).await?;
        sweep.late_members = pending
            .into_iter()
            .filter(|(_, m)| kept.get(m).is_some())
            .map(|(group, member)| Membership {
                group,
                member,
                member_kind: MemberKind::User,
            })
            .collect();
        sweep.memberships.sort();
        sweep.memberships.dedup();
        let mut ids: Vec<&SourceId> = sweep
            .memberships
            .iter()
            .filter(|m| m.member_kind == MemberKind::User)
            .map(|m| &m.member)
            .collect();
        ids.sort();
        ids.dedup();
        let stored = self.store.stored_users(scope, &ids).await?;
        let (stale, shown): (Vec<Membership>, Vec<Membership>) =
            std::mem::take(&mut sweep.memberships)
                .into_iter()
                .partition(|m| {
                    m.member_kind == MemberKind::User && stored.get(&m.member).is_none()
                });
        sweep.memberships = shown;
        sweep.stale_memberships = stale;
        Ok(sweep)
    }

    /// The sweep of any run but a first sync: full reads list what is
    /// stored, to hold the removal of what they did not see and to find
    /// memberships the read did not list or that point at users not stored.
    /// Returns the skipped users whose memberships must be looked up.
    async fn sweep_listed(
        &self,
        scope: &Scope,
        users_full: bool,
        groups_full: bool,
        g: &mut Gathered,
        out: &mut Sweep,
    ) -> Result<Vec<SourceId>, StoreError> {
        // Full reads list what is stored, to find what they did not see (and,
        // for members, users that are not stored). Otherwise only the guard's
        // percentage needs the stored totals, and only when the number held
        // is one the total can decide: those are counted, not read out
        // (listing 100,000 users took a delta round on DynamoDB Local three
        // seconds, and counting them still takes one and a half).
        let listing_users = users_full || groups_full;
        let totals = listing_users || self.settings.guard.weighs_stored(g.held.len() as u64);
        let already: HashSet<SourceId> = g
            .held
            .iter()
            .filter_map(|h| match h {
                HeldAction::RemoveUser { id, .. } | HeldAction::RemoveGroup { id, .. } => {
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();

        // Users are listed a page at a time and only what the sweep needs is
        // kept (a fingerprint each, and the unseen ones): holding every
        // stored user was a fifth of a 100,000-user sync's peak memory.
        let mut stored_users = 0u64;
        let mut user_fps: HashSet<u64> = HashSet::new();
        let mut unseen = Vec::new();
        // An empty full read removes nothing (see below), so it collects nothing.
        let sweeping_users = users_full && !g.seen_users.is_empty();
        if listing_users {
            each_page(
                |page| self.store.list_users(scope, page),
                |users| {
                    for u in users {
                        stored_users += 1;
                        let fp = user_fp(&u.id);
                        user_fps.insert(fp);
                        if sweeping_users && !g.seen_users.contains(&fp) && !already.contains(&u.id)
                        {
                            unseen.push(HeldAction::RemoveUser {
                                label: u.primary_email.to_string(),
                                reason: "no longer found in the directory".into(),
                                stored_hash: Some(u.content_hash().as_str().to_owned()),
                                id: u.id,
                            });
                        }
                    }
                },
            )
            .await?;
        } else if totals {
            stored_users = self.store.count_users(scope).await?;
        }
        let groups = if groups_full {
            self.all_groups(scope).await?
        } else {
            Vec::new()
        };
        let stored_groups = if groups_full {
            groups.len() as u64
        } else if totals {
            self.store.count_groups(scope).await?
        } else {
            0
        };
        out.stored_objects = stored_users + stored_groups;

        if users_full && g.seen_users.is_empty() && stored_users > 0 {
            out.refused = Some(format!(
                "the source returned no users while {stored_users} are stored; nothing was removed. \
                 Check the connector's scope and permissions, then run a full sync"
            ));
        }
        g.held.extend(unseen);
        if groups_full {
            if g.seen_groups.is_empty() && !groups.is_empty() {
                out.refused.get_or_insert(format!(
                    "the source returned no groups while {} are stored; nothing was removed",
                    groups.len()
                ));
            } else {
                for gr in groups.iter().filter(|gr| {
                    !g.seen_groups.contains(&user_fp(&gr.id)) && !already.contains(&gr.id)
                }) {
                    g.held.push(HeldAction::RemoveGroup {
                        id: gr.id.clone(),
                        label: gr.name.clone(),
                        reason: "no longer found in the directory".into(),
                    });
                }
                // Members of the groups seen: drop what the read did not list,
                // and users the platform does not keep. Each group's list is
                // read a page at a time and only its removals are kept.
                let seen: Vec<&SourceId> = groups
                    .iter()
                    .filter(|gr| g.seen_groups.contains(&user_fp(&gr.id)))
                    .map(|gr| &gr.id)
                    .collect();
                let (seen_members, user_fps) = (&g.seen_members, &user_fps);
                let reads: Vec<Read<'_, (u64, Vec<Membership>)>> = seen
                    .into_iter()
                    .map(|id| {
                        Box::pin(self.sweep_members(scope, id, seen_members, user_fps))
                            as Read<'_, _>
                    })
                    .collect();
                let swept: Vec<(u64, Vec<Membership>)> = stream::iter(reads)
                    .buffer_unordered(8)
                    .try_collect()
                    .await?;
                for (stored, removals) in swept {
                    out.stored_memberships += stored;
                    out.memberships.extend(removals);
                }
            }
        }
        // Users skipped in this run (guests, out of scope…) keep no
        // memberships. After a full read of groups in which every stored
        // group was seen, the members of all of them were just checked
        // against the stored users, so only skipped users still stored
        // (their removal is held) need looking up. A first sync skips a few
        // thousand users, none stored, and looking each up in the index
        // took two seconds. With a group removal held (it may be staged or
        // rejected), every skipped user is looked up, as before.
        let every_group_swept = groups_full
            && !g
                .held
                .iter()
                .any(|h| matches!(h, HeldAction::RemoveGroup { .. }));
        Ok(std::mem::take(&mut g.skipped_users)
            .into_iter()
            .filter(|id| !every_group_swept || user_fps.contains(&user_fp(id)))
            .collect())
    }

    async fn apply_held(
        &self,
        scope: &Scope,
        held: &[HeldAction],
        run: &mut SyncRun,
    ) -> Result<(), StoreError> {
        let mut remove_users = Vec::new();
        let mut disable = Vec::new();
        let mut remove_groups = Vec::new();
        let mut memberships = Vec::new();
        for h in held {
            match h {
                HeldAction::RemoveUser { id, .. } => remove_users.push(id.clone()),
                HeldAction::DisableUser { user, .. } => disable.push(user.clone()),
                HeldAction::RemoveGroup { id, .. } => remove_groups.push(id.clone()),
                HeldAction::RemoveMembership { membership } => memberships.push(membership.clone()),
            }
        }
        for chunk in remove_users.chunks(100) {
            run.counts.removed += self.store.remove_users(scope, chunk).await?;
        }
        for chunk in disable.chunks(100) {
            for outcome in self.store.upsert_users(scope, chunk).await? {
                if outcome == crate::store::Upserted::Updated {
                    run.counts.disabled += 1;
                }
            }
        }
        for chunk in remove_groups.chunks(100) {
            run.counts.removed += self.store.remove_groups(scope, chunk).await?;
        }
        for chunk in memberships.chunks(500) {
            run.counts.members_removed += self.store.remove_memberships(scope, chunk).await?;
        }
        Ok(())
    }

    fn guard_message(
        &self,
        objects: u64,
        stored: u64,
        memberships: u64,
        stored_memberships: u64,
    ) -> Option<String> {
        let guard = &self.settings.guard;
        if objects > guard.max_count {
            // Staged whatever is stored (which a delta round does not count).
            Some(format!(
                "{objects} removals or disables exceed the deletion guard's limit of {}",
                guard.max_count
            ))
        } else if guard.trips(objects, stored) {
            Some(format!(
                "{objects} removals or disables of {stored} stored users and groups exceed the deletion guard"
            ))
        } else if stored_memberships > 0 && guard.trips(memberships, stored_memberships) {
            Some(format!(
                "{memberships} membership removals of {stored_memberships} stored memberships exceed the deletion guard"
            ))
        } else {
            None
        }
    }

    pub(super) async fn finish(
        &self,
        scope: &Scope,
        progress: RunProgress,
        streams: Vec<(Stream, StreamProgress)>,
        mut g: Gathered,
        lease: &Lease,
    ) -> Result<SyncRun, EngineError> {
        // The run's writes are all in: bring the store's index up to date now,
        // in one sorted pass before the sweep removes anything (removals make
        // that pass dearer), rather than leave it to the next run's first
        // look-up (at 100,000 users it made the next delta round 3 s).
        self.store.settle_indexes().await?;
        let mut run = progress.run;
        let full = |stream: Stream| {
            streams
                .iter()
                .any(|(n, sp)| *n == stream && sp.mode == SyncMode::Full)
        };
        // Only a run that began empty records them (and keeps the record
        // only while it pauses cleanly).
        let first_sync = progress.member_users_recorded;
        let sweep = self
            .sweep(
                scope,
                full(Stream::Users),
                full(Stream::Groups),
                first_sync,
                &mut g,
            )
            .await?;
        let cp = Checkpoints {
            store: &self.store,
            scope,
            run: run.id.clone(),
        };
        let now = self.store.now();
        let mut notes: Vec<String> = streams
            .iter()
            .filter_map(|(_, sp)| sp.resynced.clone())
            .collect();

        if let Some(refused) = sweep.refused {
            // Keep no cursor: the next run reads in full again.
            run.finish(RunStatus::Failed, Some(refused), now);
            self.close(scope, &run, false, lease).await?;
            return Ok(run);
        }

        // Not destructive, so not subject to the guard.
        run.counts.members_added += self
            .store
            .add_memberships(scope, &sweep.late_members)
            .await?;
        for chunk in sweep.stale_memberships.chunks(500) {
            run.counts.members_removed += self.store.remove_memberships(scope, chunk).await?;
        }
        let objects = g.held.len() as u64;
        let memberships = sweep.memberships.len() as u64;
        if let Some(why) = self.guard_message(
            objects,
            sweep.stored_objects,
            memberships,
            sweep.stored_memberships,
        ) {
            let mut staged = g.held;
            staged.extend(
                sweep
                    .memberships
                    .into_iter()
                    .map(|membership| HeldAction::RemoveMembership { membership }),
            );
            // Crash-safe order: the staged list and the Staged record first;
            // only then the cursors move on (the working chunks go in close).
            cp.put_entries(STAGED, "final", &staged).await?;
            notes.push(format!(
                "Staged: {why}; nothing was removed or disabled. Review the {} listed actions and approve or reject run {}.",
                staged.len(),
                run.id
            ));
            run.finish(RunStatus::Staged, Some(notes.join(" ")), now);
            self.store.put_run(&run).await?;
            self.keep_cursors(scope, &streams).await?;
            self.close(scope, &run, true, lease).await?;
            return Ok(run);
        }

        self.apply_held(scope, &g.held, &mut run).await?;
        for chunk in sweep.memberships.chunks(500) {
            run.counts.members_removed += self.store.remove_memberships(scope, chunk).await?;
        }
        self.keep_cursors(scope, &streams).await?;
        let conflicts = run
            .warnings
            .iter()
            .any(|w| w.kind == crate::domain::WarningKind::AddressConflict);
        let c = &run.counts;
        notes.insert(
            0,
            format!(
                "{} created, {} updated, {} enabled, {} disabled, {} removed, {} unchanged, {} skipped; memberships +{} -{}.",
                c.created, c.updated, c.enabled, c.disabled, c.removed, c.unchanged, c.skipped, c.members_added, c.members_removed
            ),
        );
        let status = if conflicts {
            notes.push(
                "Some users were not written because another connector of the account owns one of their addresses; \
                 see the warnings and adjust the connectors' email domains."
                    .into(),
            );
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        };
        run.finish(status, Some(notes.join(" ")), now);
        self.close(scope, &run, false, lease).await?;
        Ok(run)
    }

    async fn keep_cursors(
        &self,
        scope: &Scope,
        streams: &[(Stream, StreamProgress)],
    ) -> Result<(), StoreError> {
        for (name, sp) in streams {
            if let Some(value) = &sp.cursor {
                let cursor = Cursor {
                    stream: name.as_str().to_owned(),
                    value: value.clone(),
                    updated_at: self.store.now(),
                };
                self.store.put_cursor(scope, &cursor).await?;
            }
        }
        Ok(())
    }

    /// Records the finished run, drops its checkpoints and working data
    /// (except a staged list), prunes old runs, gives the lease back.
    async fn close(
        &self,
        scope: &Scope,
        run: &SyncRun,
        staged: bool,
        lease: &Lease,
    ) -> Result<(), StoreError> {
        self.store.put_run(run).await?;
        self.supersede_older(scope, run).await?;
        self.store.clear_progress(scope).await?;
        // A staged run keeps its list for the review; the rest goes.
        let keep = if staged { Some(STAGED) } else { None };
        self.store
            .delete_run_chunks_except(scope, &run.id, keep)
            .await?;
        self.store
            .prune_runs(scope, self.settings.keep_runs)
            .await?;
        self.store.release_lease(lease).await.map(|_| ())
    }

    /// Staged runs older than `run` can no longer be approved: their lists
    /// describe a directory `run` has read again since (approving one
    /// would remove what the source has since shown to exist).
    async fn supersede_older(&self, scope: &Scope, run: &SyncRun) -> Result<(), StoreError> {
        let runs = self
            .store
            .list_runs(scope, crate::store::PageRequest::first(100))
            .await?
            .items;
        let older = runs.into_iter().filter(|r| {
            r.status == RunStatus::Staged
                && r.review.is_none()
                && r.id != run.id
                && r.started_at <= run.started_at
        });
        for mut old in older {
            old.status = RunStatus::Superseded;
            old.message = Some(format!(
                "Superseded by run {}, which read the directory again: this run's staged actions can no longer \
                 be approved; review the newer run instead.",
                run.id
            ));
            if self.store.put_run_if_staged(&old).await? {
                self.store.delete_run_chunks(scope, &old.id).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn finish_dry(
        &self,
        _connector: &Connector,
        scope: &Scope,
        mut run: SyncRun,
        mut g: Gathered,
    ) -> Result<(SyncRun, Vec<PlanEntry>, bool), EngineError> {
        let full = run.mode == SyncMode::Full;
        let sweep = self.sweep(scope, full, full, false, &mut g).await?;
        let mut plan = g.plan;
        for h in &g.held {
            match h {
                HeldAction::DisableUser { .. } => run.counts.disabled += 1,
                HeldAction::RemoveMembership { .. } => run.counts.members_removed += 1,
                _ => run.counts.removed += 1,
            }
            plan.push(h.entry());
        }
        run.counts.members_removed +=
            (sweep.memberships.len() + sweep.stale_memberships.len()) as u64;
        run.counts.members_added += sweep.late_members.len() as u64;
        let now = self.store.now();
        let message = match (
            &sweep.refused,
            self.guard_message(
                g.held.len() as u64,
                sweep.stored_objects,
                sweep.memberships.len() as u64,
                sweep.stored_memberships,
            ),
        ) {
            (Some(refused), _) => format!("Dry run: a real run would fail: {refused}."),
            (None, Some(why)) => format!(
                "Dry run: a real run would be staged for review ({why}). Nothing was written."
            ),
            (None, None) => "Dry run: nothing was written.".into(),
        };
        run.finish(RunStatus::Succeeded, Some(message), now);
        let truncated = plan.len() > self.settings.max_plan_entries;
        plan.truncate(self.settings.max_plan_entries);
        Ok((run, plan, truncated))
    }

    /// The itemised list a staged run waits with.
    pub async fn staged_actions(
        &self,
        scope: &Scope,
        run: &RunId,
    ) -> Result<Vec<PlanEntry>, EngineError> {
        let cp = Checkpoints {
            store: &self.store,
            scope,
            run: run.clone(),
        };
        let held: Vec<HeldAction> = cp.entries(STAGED).await?;
        Ok(held.iter().map(HeldAction::entry).collect())
    }

    async fn staged_run(&self, scope: &Scope, id: &RunId) -> Result<SyncRun, EngineError> {
        let run = self.store.get_run(scope, id).await?.ok_or_else(|| {
            EngineError::Review(format!("run {id} does not exist (runs are kept 90 days)"))
        })?;
        if run.status != RunStatus::Staged || run.review.is_some() {
            return Err(EngineError::Review(format!(
                "run {id} is not waiting for review (it is {:?}{})",
                run.status,
                if run.review.is_some() {
                    ", already reviewed"
                } else {
                    ""
                }
            )));
        }
        Ok(run)
    }

    /// Applies exactly the staged list of a run.
    pub async fn approve(
        &self,
        scope: &Scope,
        id: &RunId,
        by: Option<String>,
    ) -> Result<SyncRun, EngineError> {
        let mut run = self.staged_run(scope, id).await?;
        let holder = format!("review-{id}-{}", uuid::Uuid::new_v4());
        match self
            .store
            .acquire_lease(scope, &holder, self.settings.lease_ttl)
            .await
        {
            Ok(_) => {}
            Err(StoreError::LeaseHeld { .. }) => {
                return Err(EngineError::Review(
                    "a sync of this connector is running; approve again when it has finished"
                        .into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let cp = Checkpoints {
            store: &self.store,
            scope,
            run: id.clone(),
        };
        let held: Vec<HeldAction> = cp.entries(STAGED).await?;
        // Claim the review before acting: of two concurrent decisions, one wins.
        run.review = Some(crate::domain::Review {
            approved: true,
            by,
            at: self.store.now(),
            applied: 0,
        });
        run.status = RunStatus::Approved;
        if !self.store.put_run_if_staged(&run).await? {
            self.release_holder(scope, &holder).await?;
            return Err(EngineError::Review(format!(
                "run {id} has already been reviewed"
            )));
        }
        let before = run.counts;
        let (applied, skipped) = self.apply_reviewed(scope, &held, &mut run).await?;
        if let Some(r) = run.review.as_mut() {
            r.applied = applied;
        }
        run.message = Some(format!(
            "Approved: {applied} staged actions applied ({} removed, {} disabled){}.",
            run.counts.removed - before.removed,
            run.counts.disabled - before.disabled,
            if skipped > 0 {
                format!("; {skipped} skipped because the object changed since the run was staged")
            } else {
                String::new()
            }
        ));
        self.store.put_run(&run).await?;
        self.store.delete_run_chunks(scope, id).await?;
        self.release_holder(scope, &holder).await?;
        Ok(run)
    }

    /// Applies an approved list against the directory as it is now: a user
    /// changed since staging is left alone, and a disable only clears the
    /// enabled flag of the user as now stored. Returns (applied, skipped).
    async fn apply_reviewed(
        &self,
        scope: &Scope,
        held: &[HeldAction],
        run: &mut SyncRun,
    ) -> Result<(u64, u64), StoreError> {
        let mut now_held = Vec::with_capacity(held.len());
        let mut skipped = 0;
        for h in held {
            match h {
                HeldAction::RemoveUser {
                    id, stored_hash, ..
                } => match self.store.get_user(scope, id).await? {
                    Some(u)
                        if stored_hash
                            .as_deref()
                            .is_none_or(|s| s == u.content_hash().as_str()) =>
                    {
                        now_held.push(h.clone())
                    }
                    Some(_) => skipped += 1,
                    None => {}
                },
                HeldAction::DisableUser { user, reason } => {
                    match self.store.get_user(scope, &user.id).await? {
                        Some(mut current) => {
                            current.enabled = false;
                            now_held.push(HeldAction::DisableUser {
                                user: current,
                                reason: reason.clone(),
                            });
                        }
                        None => skipped += 1,
                    }
                }
                other => now_held.push(other.clone()),
            }
        }
        self.apply_held(scope, &now_held, run).await?;
        Ok((now_held.len() as u64, skipped))
    }

    /// Discards the staged list: nothing it named is removed or disabled.
    pub async fn reject(
        &self,
        scope: &Scope,
        id: &RunId,
        by: Option<String>,
    ) -> Result<SyncRun, EngineError> {
        let mut run = self.staged_run(scope, id).await?;
        run.review = Some(crate::domain::Review {
            approved: false,
            by,
            at: self.store.now(),
            applied: 0,
        });
        run.status = RunStatus::Rejected;
        run.message = Some(
            "Rejected: nothing was removed or disabled. If the objects are still missing at the source, \
             the next full sync stages them again."
                .into(),
        );
        if !self.store.put_run_if_staged(&run).await? {
            return Err(EngineError::Review(format!(
                "run {id} has already been reviewed"
            )));
        }
        self.store.delete_run_chunks(scope, id).await?;
        Ok(run)
    }

    async fn release_holder(&self, scope: &Scope, holder: &str) -> Result<(), StoreError> {
        let lease = crate::domain::Lease {
            account: scope.account.clone(),
            connector: scope.connector.clone(),
            holder: holder.to_owned(),
            expires_at: self.store.now(),
        };
        self.store.release_lease(&lease).await.map(|_| ())
    }
}
