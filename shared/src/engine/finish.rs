//! The end of a run: weigh what the sweep and the pages held against the
//! deletion guard (and the account's hold), apply or stage it, keep the
//! cursors, record the run.

use crate::domain::{
    Connector, ConnectorState, Cursor, Membership, RunStatus, SyncMode, SyncRun, WarningKind,
};
use crate::source::Stream;
use crate::store::{PageRequest, Scope, StoreError};

use super::guard::{Weighing, staged_memberships};
use super::lease::LeaseKeeper;
use super::plan::{HeldAction, PlanEntry};
use super::progress::{RunProgress, StreamProgress};
use super::sweep::{Sweep, SweepOf};
use super::{EngineError, Gathered, SyncEngine};

pub(super) const STAGED: &str = "staged";

/// The run as the end of it sees it.
struct Ending<'a> {
    scope: &'a Scope,
    lease: &'a LeaseKeeper,
    streams: Vec<(Stream, StreamProgress)>,
}

impl SyncEngine {
    pub(super) async fn apply_held(
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
        // Memberships first: those the run removes are counted as such, not
        // as going with a user or group removed after them.
        self.remove_memberships(scope, &memberships, run).await?;
        for chunk in remove_users.chunks(100) {
            let removed = self.store.remove_users(scope, chunk).await?;
            run.counts.removed += removed.objects;
            run.counts.members_removed += removed.memberships;
        }
        for chunk in disable.chunks(100) {
            for outcome in self.store.upsert_users(scope, chunk).await? {
                if outcome == crate::store::Upserted::Updated {
                    run.counts.disabled += 1;
                }
            }
        }
        for chunk in remove_groups.chunks(100) {
            let removed = self.store.remove_groups(scope, chunk).await?;
            run.counts.removed += removed.objects;
            run.counts.members_removed += removed.memberships;
        }
        Ok(())
    }

    async fn remove_memberships(
        &self,
        scope: &Scope,
        memberships: &[Membership],
        run: &mut SyncRun,
    ) -> Result<(), StoreError> {
        for chunk in memberships.chunks(500) {
            run.counts.members_removed += self.store.remove_memberships(scope, chunk).await?;
        }
        Ok(())
    }

    /// Why the account holds destructive changes now, if it does: another
    /// of its connectors is paused, or its last run failed.
    async fn account_hold(&self, connector: &Connector) -> Result<Option<String>, StoreError> {
        let Some(account) = self.store.get_account(&connector.account).await? else {
            return Ok(None);
        };
        if !account.hold_on_connector_trouble {
            return Ok(None);
        }
        let mut why = Vec::new();
        for other in self.store.list_connectors(&connector.account).await? {
            if other.id == connector.id {
                continue;
            }
            if other.state == ConnectorState::Paused {
                why.push(format!("connector {} is paused", other.id));
                continue;
            }
            let scope = Scope::new(other.account.clone(), other.id.clone());
            let runs = self.store.list_runs(&scope, PageRequest::first(5)).await?;
            let last = runs.items.iter().find(|r| r.status.is_finished());
            if last.is_some_and(|r| r.status == RunStatus::Failed) {
                why.push(format!("the last run of connector {} failed", other.id));
            }
        }
        Ok((!why.is_empty()).then(|| {
            format!(
                "the account holds removals while {} (the account setting hold_on_connector_trouble)",
                why.join(" and ")
            )
        }))
    }

    /// Why the run must be staged, if it must.
    async fn staging_reason(
        &self,
        connector: &Connector,
        scope: &Scope,
        held: &[HeldAction],
        sweep: &mut Sweep,
    ) -> Result<Option<String>, StoreError> {
        if held.is_empty() && sweep.memberships.is_empty() {
            return Ok(None);
        }
        let guard = &connector.options.deletion_guard;
        // A delta round knows no membership total; it is counted where the
        // percentage can decide (as the sweep does for users and groups).
        let memberships = held
            .iter()
            .filter(|h| h.weighed_as() == super::plan::Weighed::Membership)
            .count()
            + sweep.memberships.len();
        let memberships = memberships as u64;
        if sweep.stored_memberships.is_none() && guard.memberships.weighs_stored(memberships) {
            // The percentage trips only below this many stored.
            let bound = memberships
                .saturating_mul(100)
                .checked_div(guard.memberships.max_percent)
                .unwrap_or(u64::MAX);
            let counted = self
                .store
                .count_memberships_up_to(scope, bound.saturating_add(1))
                .await?;
            sweep.stored_memberships = Some(counted);
        }
        let sweep = &*sweep;
        let weighing = Weighing {
            held,
            sweep,
            groups_losing: self.groups_losing(scope, guard, held, sweep).await?,
        };
        let mut why: Vec<String> = weighing.verdict(guard).into_iter().collect();
        why.extend(self.account_hold(connector).await?);
        Ok((!why.is_empty()).then(|| why.join("; ")))
    }

    pub(super) async fn finish(
        &self,
        connector: &Connector,
        scope: &Scope,
        progress: RunProgress,
        streams: Vec<(Stream, StreamProgress)>,
        mut g: Gathered,
        lease: &LeaseKeeper,
    ) -> Result<SyncRun, EngineError> {
        // The run's writes are all in: bring the store's index up to date now,
        // in one sorted pass before the sweep removes anything (removals make
        // that pass dearer), rather than leave it to the next run's first
        // look-up (at 100,000 users it made the next delta round 3 s).
        self.store.settle_indexes().await?;
        let end = Ending {
            scope,
            lease,
            streams,
        };
        let mut run = progress.run;
        let full = |stream: Stream| {
            end.streams
                .iter()
                .any(|(n, sp)| *n == stream && sp.mode == SyncMode::Full)
        };
        let of = SweepOf {
            users_full: full(Stream::Users),
            groups_full: full(Stream::Groups),
            // Only a run that began empty records them (and keeps the
            // record only while it pauses cleanly).
            first_sync: progress.member_users_recorded,
            guard: &connector.options.deletion_guard,
        };
        let mut sweep = self.sweep(scope, of, &mut g).await?;
        lease.check(self.store.now())?;
        if let Some(refused) = sweep.refused {
            // Keep no cursor: the next run reads in full again.
            run.finish(RunStatus::Failed, Some(refused), self.store.now());
            self.close(scope, &run, false, lease).await?;
            return Ok(run);
        }
        // Not destructive, so not subject to the guard.
        let late = self
            .store
            .add_memberships(scope, &sweep.late_members)
            .await?;
        run.counts.members_added += late.added;
        run.counts.members_updated += late.updated;
        self.store.put_memberships(scope, &sweep.retyped).await?;
        run.counts.members_updated += sweep.changed_kinds();
        match self
            .staging_reason(connector, scope, &g.held, &mut sweep)
            .await?
        {
            Some(why) => self.stage(&end, run, g.held, sweep, &why).await,
            None => self.apply(&end, run, g.held, sweep).await,
        }
    }

    /// Stages the run: nothing destructive is written, the list waits.
    async fn stage(
        &self,
        end: &Ending<'_>,
        mut run: SyncRun,
        mut staged: Vec<HeldAction>,
        sweep: Sweep,
        why: &str,
    ) -> Result<SyncRun, EngineError> {
        // Memberships of users not kept wait too: a group's member list
        // shows them.
        staged.extend(staged_memberships(sweep));
        let cp = self.checkpoints(end.scope, &run.id);
        end.lease.check(self.store.now())?;
        // The staged list and the Staged record first. The cursors stay
        // where they were: the next run reads the same changes again and
        // weighs what is still due, so superseding this run loses nothing
        // (a delta would not report these removals a second time).
        cp.replace_entries(STAGED, "final", &staged).await?;
        let mut notes = resync_notes(&end.streams);
        notes.push(format!(
            "Staged: {why}; nothing was removed or disabled. Review the {} listed actions ({}) and approve \
             or reject run {} within {} days.",
            staged.len(),
            tally(&staged),
            run.id,
            super::review::STAGED_DAYS
        ));
        run.finish(RunStatus::Staged, Some(notes.join(" ")), self.store.now());
        self.store.put_run(&run).await?;
        self.close(end.scope, &run, true, end.lease).await?;
        Ok(run)
    }

    /// Applies what the run held, and records it.
    async fn apply(
        &self,
        end: &Ending<'_>,
        mut run: SyncRun,
        held: Vec<HeldAction>,
        sweep: Sweep,
    ) -> Result<SyncRun, EngineError> {
        let check = || end.lease.check(self.store.now());
        check()?;
        self.remove_memberships(end.scope, &sweep.memberships, &mut run)
            .await?;
        check()?;
        self.remove_memberships(end.scope, &sweep.stale_memberships, &mut run)
            .await?;
        check()?;
        self.apply_held(end.scope, &held, &mut run).await?;
        check()?;
        self.keep_cursors(end.scope, &end.streams).await?;
        let conflicts = run
            .warnings
            .iter()
            .any(|w| w.kind == WarningKind::AddressConflict);
        let mut notes = vec![format!("{}.", run.counts)];
        notes.extend(resync_notes(&end.streams));
        let status = if conflicts {
            notes.push(
                "Some users were not written (and some groups were written without an address) because another \
                 connector of the account owns one of their addresses; see the warnings and adjust the connectors' \
                 email domains."
                    .into(),
            );
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        };
        run.finish(status, Some(notes.join(" ")), self.store.now());
        self.close(end.scope, &run, false, end.lease).await?;
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
        lease: &LeaseKeeper,
    ) -> Result<(), EngineError> {
        lease.check(self.store.now())?;
        self.store.put_run(run).await?;
        // A run that read the directory describes it better than an older
        // staged list; one refused for an empty read does not.
        if run.status != RunStatus::Failed {
            self.supersede_older(scope, run).await?;
        }
        self.store.clear_progress(scope).await?;
        // A staged run keeps its list for the review; the rest goes.
        let keep = if staged { Some(STAGED) } else { None };
        self.store
            .delete_run_chunks_except(scope, &run.id, keep)
            .await?;
        self.store
            .prune_runs(scope, self.settings.keep_runs)
            .await?;
        self.store.release_lease(lease.lease()).await?;
        Ok(())
    }

    /// Staged runs older than `run` can no longer be approved: their lists
    /// describe a directory `run` has read again since (approving one
    /// would remove what the source has since shown to exist).
    async fn supersede_older(&self, scope: &Scope, run: &SyncRun) -> Result<(), StoreError> {
        let why = format!(
            "Superseded by run {}, which read the directory again: this run's staged actions can no longer \
             be approved; review the newer run instead.",
            run.id
        );
        self.supersede_staged(scope, Some(run), &why).await
    }

    /// Marks the staged runs waiting for review (those started before
    /// `run`, if given) superseded, saying `why`, and drops their lists.
    pub(super) async fn supersede_staged(
        &self,
        scope: &Scope,
        run: Option<&SyncRun>,
        why: &str,
    ) -> Result<(), StoreError> {
        let runs = self
            .store
            .list_runs(scope, crate::store::PageRequest::first(100))
            .await?
            .items;
        let older = runs.into_iter().filter(|r| {
            r.status == RunStatus::Staged
                && r.review.is_none()
                && run.is_none_or(|run| r.id != run.id && r.started_at <= run.started_at)
        });
        for mut old in older {
            old.status = RunStatus::Superseded;
            old.message = Some(why.to_owned());
            if self.store.put_run_if_staged(&old).await? {
                self.store.delete_run_chunks(scope, &old.id).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn finish_dry(
        &self,
        connector: &Connector,
        scope: &Scope,
        mut run: SyncRun,
        modes: &[(Stream, SyncMode)],
        mut g: Gathered,
    ) -> Result<(SyncRun, Vec<PlanEntry>, bool), EngineError> {
        let full = |stream| modes.contains(&(stream, SyncMode::Full));
        let of = SweepOf {
            users_full: full(Stream::Users),
            groups_full: full(Stream::Groups),
            first_sync: false,
            guard: &connector.options.deletion_guard,
        };
        let mut sweep = self.sweep(scope, of, &mut g).await?;
        let mut plan = g.plan;
        for h in &g.held {
            match h {
                HeldAction::DisableUser { .. } => run.counts.disabled += 1,
                HeldAction::RemoveMembership { .. } => run.counts.members_removed += 1,
                _ => run.counts.removed += 1,
            }
            plan.push(h.entry());
        }
        for m in &sweep.memberships {
            plan.push(
                HeldAction::RemoveMembership {
                    membership: m.clone(),
                }
                .entry(),
            );
        }
        run.counts.members_removed +=
            (sweep.memberships.len() + sweep.stale_memberships.len()) as u64;
        run.counts.members_added += sweep.late_members.len() as u64;
        run.counts.members_updated += sweep.changed_kinds();
        let message = if let Some(refused) = &sweep.refused {
            format!("Dry run: a real run would fail: {refused}.")
        } else {
            match self
                .staging_reason(connector, scope, &g.held, &mut sweep)
                .await?
            {
                Some(why) => format!(
                    "Dry run: a real run would be staged for review ({why}). Nothing was written."
                ),
                None => "Dry run: nothing was written.".into(),
            }
        };
        run.finish(RunStatus::Succeeded, Some(message), self.store.now());
        let truncated = plan.len() > self.settings.max_plan_entries;
        plan.truncate(self.settings.max_plan_entries);
        Ok((run, plan, truncated))
    }
}

/// What the streams said about refused cursors.
fn resync_notes(streams: &[(Stream, StreamProgress)]) -> Vec<String> {
    streams
        .iter()
        .filter_map(|(_, sp)| sp.resynced.clone())
        .collect()
}

/// A staged list's actions counted by kind, e.g. "700 user removals".
pub(super) fn tally(actions: &[HeldAction]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for h in actions {
        let what = match h {
            HeldAction::RemoveUser { .. } => "user removals",
            HeldAction::DisableUser { .. } => "user disables",
            HeldAction::RemoveGroup { .. } => "group removals",
            HeldAction::RemoveMembership { .. } => "membership removals",
        };
        match counts.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => counts.push((what, 1)),
        }
    }
    counts
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}
