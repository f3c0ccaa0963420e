//! The review of staged runs: the list, approval (re-checked against the
//! store as it is now) and rejection. A staged run can be decided while it
//! still describes the directory: not after a later run of its connector,
//! and not after [`STAGED_DAYS`].

use chrono::Duration;

use crate::domain::{Review, RunId, RunStatus, SyncRun};
use crate::store::{Scope, StoreError};

use super::finish::STAGED;
use super::plan::{HeldAction, PlanEntry};
use super::{EngineError, SyncEngine};

/// How long a staged run waits for its review.
pub const STAGED_DAYS: i64 = 14;

/// What an approval found when it re-checked the list.
struct Rechecked {
    apply: Vec<HeldAction>,
    /// Objects changed since the run was staged, left alone.
    skipped: Vec<String>,
}

impl SyncEngine {
    /// The itemised list a staged run waits with.
    pub async fn staged_actions(
        &self,
        scope: &Scope,
        run: &RunId,
    ) -> Result<Vec<PlanEntry>, EngineError> {
        let held: Vec<HeldAction> = self.checkpoints(scope, run).entries(STAGED).await?;
        Ok(held.iter().map(HeldAction::entry).collect())
    }

    /// The run, if it can still be decided. One that has waited too long
    /// is marked expired (and its list dropped) on the way.
    async fn staged_run(&self, scope: &Scope, id: &RunId) -> Result<SyncRun, EngineError> {
        let mut run = self.store.get_run(scope, id).await?.ok_or_else(|| {
            EngineError::Review(format!("run {id} does not exist (runs are kept 90 days)"))
        })?;
        if run.status != RunStatus::Staged || run.review.is_some() {
            return Err(EngineError::Review(format!(
                "run {id} is not waiting for review: it is {}{}",
                run.status.code(),
                match run.status {
                    RunStatus::Superseded => {
                        "; a later run read the directory again, review the latest staged run instead"
                    }
                    RunStatus::Expired =>
                        "; run a sync again: if the removals are still due, it stages them anew",
                    _ => "",
                }
            )));
        }
        let staged_at = run.ended_at.unwrap_or(run.started_at);
        if self.store.now() > staged_at + Duration::days(STAGED_DAYS) {
            run.status = RunStatus::Expired;
            run.message = Some(format!(
                "Expired: staged on {} and not reviewed within {STAGED_DAYS} days; nothing was removed or \
                 disabled. Run a sync again: if the removals are still due, it stages them anew.",
                staged_at.format("%Y-%m-%d")
            ));
            if self.store.put_run_if_staged(&run).await? {
                self.store.delete_run_chunks(scope, id).await?;
            }
            return Err(EngineError::Review(format!(
                "run {id} expired: it was staged more than {STAGED_DAYS} days ago and can no longer be approved"
            )));
        }
        // A later run that has finished superseded this one already; one
        // under way reads the directory again, and describes it better.
        if let Some(later) = self.checkpoints(scope, id).load_run().await?
            && later.run.id != *id
        {
            return Err(EngineError::Review(format!(
                "run {id} can no longer be approved: run {} of the connector started after it and \
                 reads the directory again; review that run when it ends",
                later.run.id
            )));
        }
        Ok(run)
    }

    /// Applies the staged list of a run, as far as it still holds.
    pub async fn approve(
        &self,
        scope: &Scope,
        id: &RunId,
        by: Option<String>,
    ) -> Result<SyncRun, EngineError> {
        let holder = self.review_lease(scope, "approve").await?;
        let approved = self.approve_held(scope, id, by).await;
        self.release_holder(scope, &holder).await?;
        approved
    }

    /// Takes the connector's lease for a review: no run writes meanwhile,
    /// and of two decisions on one run, one waits for the other.
    async fn review_lease(&self, scope: &Scope, verb: &str) -> Result<String, EngineError> {
        let holder = format!("review-{}", uuid::Uuid::new_v4());
        match self
            .store
            .acquire_lease(scope, &holder, self.settings.lease_ttl)
            .await
        {
            Ok(_) => Ok(holder),
            Err(StoreError::LeaseHeld { .. }) => Err(EngineError::Review(format!(
                "a sync or a review of this connector is under way; {verb} again when it has finished"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The approval under the lease. The actions go first and the decision
    /// is recorded after them: should it stop half-way, the run is still
    /// staged, and approving again re-checks and applies the rest.
    async fn approve_held(
        &self,
        scope: &Scope,
        id: &RunId,
        by: Option<String>,
    ) -> Result<SyncRun, EngineError> {
        let mut run = self.staged_run(scope, id).await?;
        let held: Vec<HeldAction> = self.checkpoints(scope, id).entries(STAGED).await?;
        let before = run.counts;
        let checked = self.recheck(scope, &held).await?;
        self.apply_held(scope, &checked.apply, &mut run).await?;
        let skipped = checked.skipped.len();
        let c = &run.counts;
        run.message = Some(format!(
            "Approved: {} staged actions applied ({} removed, {} disabled, {} memberships removed){}.",
            checked.apply.len(),
            c.removed - before.removed,
            c.disabled - before.disabled,
            c.members_removed - before.members_removed,
            if skipped > 0 {
                format!(
                    "; {skipped} skipped because the object changed since the run was staged (listed in the review)"
                )
            } else {
                String::new()
            }
        ));
        run.review = Some(Review {
            approved: true,
            by,
            at: self.store.now(),
            applied: checked.apply.len() as u64,
            skipped: checked.skipped,
        });
        run.status = RunStatus::Approved;
        if !self.store.put_run_if_staged(&run).await? {
            return Err(EngineError::Review(format!(
                "run {id} has already been reviewed"
            )));
        }
        self.store.delete_run_chunks(scope, id).await?;
        Ok(run)
    }

    /// Every staged action against the store as it is now: an object
    /// changed since staging is left alone (and named), one already gone
    /// needs nothing, and a disable clears only the enabled flag of the
    /// user as now stored.
    async fn recheck(&self, scope: &Scope, held: &[HeldAction]) -> Result<Rechecked, StoreError> {
        let mut out = Rechecked {
            apply: Vec::with_capacity(held.len()),
            skipped: Vec::new(),
        };
        let mut memberships = Vec::new();
        for h in held {
            // What the staged object is now: gone needs nothing, changed is
            // left alone and named, unchanged is acted on.
            let mut current_user = None;
            let (now, what) = match h {
                HeldAction::RemoveUser { id, label, .. } => (
                    self.store
                        .get_user(scope, id)
                        .await?
                        .map(|u| u.content_hash()),
                    format!("user {label}"),
                ),
                HeldAction::DisableUser { user, .. } => {
                    current_user = self.store.get_user(scope, &user.id).await?;
                    (
                        current_user.as_ref().map(|u| u.content_hash()),
                        format!("user {}", user.primary_email),
                    )
                }
                HeldAction::RemoveGroup { id, label, .. } => (
                    self.store
                        .get_group(scope, id)
                        .await?
                        .map(|g| g.content_hash()),
                    format!("group {label}"),
                ),
                HeldAction::RemoveMembership { membership } => {
                    memberships.push(membership.clone());
                    continue;
                }
            };
            let Some(now) = now else { continue };
            if h.staged_hash().is_some_and(|staged| staged != now.as_str()) {
                out.skipped.push(format!("{what}: changed since"));
                continue;
            }
            match h {
                // A disable clears only the flag of the user as now stored.
                HeldAction::DisableUser {
                    reason,
                    stored_hash,
                    ..
                } => {
                    if let Some(mut current) = current_user {
                        current.enabled = false;
                        out.apply.push(HeldAction::DisableUser {
                            user: current,
                            reason: reason.clone(),
                            stored_hash: stored_hash.clone(),
                        });
                    }
                }
                other => out.apply.push(other.clone()),
            }
        }
        // Memberships still stored are removed; those gone need nothing.
        let stored = self.store.stored_memberships(scope, &memberships).await?;
        out.apply.extend(
            stored
                .into_iter()
                .map(|membership| HeldAction::RemoveMembership { membership }),
        );
        Ok(out)
    }

    /// Discards the staged list: nothing it named is removed or disabled.
    pub async fn reject(
        &self,
        scope: &Scope,
        id: &RunId,
        by: Option<String>,
    ) -> Result<SyncRun, EngineError> {
        let holder = self.review_lease(scope, "reject").await?;
        let rejected = self.reject_held(scope, id, by).await;
        self.release_holder(scope, &holder).await?;
        rejected
    }

    async fn reject_held(
        &self,
        scope: &Scope,
        id: &RunId,
        by: Option<String>,
    ) -> Result<SyncRun, EngineError> {
        let mut run = self.staged_run(scope, id).await?;
        run.review = Some(Review {
            approved: false,
            by,
            at: self.store.now(),
            applied: 0,
            skipped: Vec::new(),
        });
        run.status = RunStatus::Rejected;
        run.message = Some(
            "Rejected: nothing was removed or disabled. If the objects are still missing at the source, \
             the next sync stages them again."
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
