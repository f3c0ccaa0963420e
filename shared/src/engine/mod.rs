//! The source-agnostic sync engine.
//!
//! One run of one connector: take the lease, read every stream page by page
//! (concurrently), apply each page and checkpoint it, then — once every
//! stream is complete — sweep what a full read did not see, hold removals
//! and disables against the deletion guard, apply or stage them, keep the
//! new cursors and record the run. A run stopped anywhere (crash, Lambda
//! time running out) continues from its last checkpoint; a replayed page
//! changes nothing; a failed or empty read never removes anything.

mod apply;
mod finish;
mod guard;
mod invocation;
mod lease;
pub mod plan;
pub mod policy;
pub mod progress;
mod rekey;
mod review;
mod sweep;

use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, HashSet};

use crate::domain::{
    Connector, Lease, Membership, RunId, RunStatus, SourceId, SyncMode, SyncRun, Trigger,
};
use crate::source::{DirectorySource, Next, ReadFrom, SourceError, Stream};
use crate::store::{Scope, StateStore, StoreError};

use apply::{Known, NotKept, PageContext, PageOutcome};
use invocation::Invocation;
use lease::LeaseKeeper;
pub use plan::{Action, ActionCount, HeldAction, PlanEntry, summarize};
use progress::{Checkpoints, RunProgress, StreamProgress};
pub use review::STAGED_DAYS;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long a run may go without checkpointing before another run may
    /// take its connector over.
    pub lease_ttl: Duration,
    /// How often a run renews its lease while it holds it.
    pub heartbeat: std::time::Duration,
    /// Run records kept per connector.
    pub keep_runs: usize,
    /// A dry run lists at most this many objects (counts cover all).
    pub max_plan_entries: usize,
    /// Stop starting pages this long before the deadline.
    pub deadline_margin: std::time::Duration,
    /// Told after every page (the CLI's progress line).
    pub progress: Option<ProgressHook>,
}

/// Where a stream of a run stands after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub stream: String,
    pub pages: u64,
    pub counts: crate::domain::ActionCounts,
    pub requests: u64,
    pub throttled: u64,
}

/// A callback for [`Progress`]; cheap to clone.
#[derive(Clone)]
pub struct ProgressHook(pub std::sync::Arc<dyn Fn(&Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::minutes(10),
            heartbeat: std::time::Duration::from_secs(60),
            keep_runs: 50,
            max_plan_entries: 10_000,
            deadline_margin: std::time::Duration::from_secs(30),
            progress: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub trigger: Trigger,
    /// Read everything even where a delta cursor is stored (the catch-up
    /// after an interruption, seed 001).
    pub full: bool,
    /// Work out every action without writing anything.
    pub dry_run: bool,
    /// Checkpoint and stop before this instant (a Lambda's remaining time).
    pub deadline: Option<tokio::time::Instant>,
}

impl RunRequest {
    pub fn new(trigger: Trigger) -> Self {
        Self {
            trigger,
            full: false,
            dry_run: false,
            deadline: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Succeeded, staged, partial or failed: see the run's status.
    Finished(SyncRun),
    /// Checkpointed before the deadline (or while the source asks to wait):
    /// run again with `Trigger::Continuation`, `after` from now, to go on.
    Continue {
        run: SyncRun,
        after: std::time::Duration,
    },
    /// Another run holds the connector; nothing was touched.
    AlreadyRunning {
        holder: String,
        until: DateTime<Utc>,
    },
    DryRun {
        run: SyncRun,
        plan: Vec<PlanEntry>,
        truncated: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Review(String),
    /// Another invocation took the connector over: stop, touch nothing.
    #[error("the run's lease is held by {holder} until {until}")]
    LeaseLost {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// What the streams of a run gathered for the end of the run.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    pub seen_users: HashSet<u64>,
    pub seen_groups: HashSet<u64>,
    pub seen_members: HashSet<u64>,
    pub member_users: HashSet<u64>,
    pub skipped_users: Vec<SourceId>,
    pub added_user_members: Vec<(SourceId, SourceId)>,
    pub pending_members: Vec<Membership>,
    pub held: Vec<HeldAction>,
    /// Membership removals the source asked for, with the page each was
    /// asked on.
    pub held_members: Vec<(String, Membership)>,
    /// Memberships added, by page: a removal asked for on an earlier page
    /// is undone by them.
    pub member_adds: Vec<(String, Vec<u64>)>,
    pub plan: Vec<PlanEntry>,
}

/// How many pages a stream keeps queued ahead of the page it applies (its
/// reader may hold one more, waiting for room). Three keep
/// the source busy through an uneven page (one listing a large group's
/// members takes longer to store than the latency of the next read) at a
/// few megabytes of memory; more only read further past a pause.
pub(crate) const READ_AHEAD: usize = 3;

#[derive(Clone)]
pub struct SyncEngine {
    store: StateStore,
    settings: EngineSettings,
}

impl SyncEngine {
    pub fn new(store: StateStore, settings: EngineSettings) -> Self {
        Self { store, settings }
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Records a run that could not start (no source could be built, or the
    /// job kept failing), so that the failure shows where people look.
    pub async fn record_failure(
        &self,
        connector: &Connector,
        trigger: Trigger,
        message: &str,
    ) -> Result<SyncRun, EngineError> {
        let now = self.store.now();
        let mut run = SyncRun::start(
            connector.account.clone(),
            connector.id.clone(),
            trigger,
            SyncMode::Delta,
            now,
        );
        run.finish(RunStatus::Failed, Some(message.to_owned()), now);
        self.store.put_run(&run).await?;
        Ok(run)
    }

    /// Runs (or continues) one sync of `connector` reading `source`.
    pub async fn run(
        &self,
        connector: &Connector,
        source: &dyn DirectorySource,
        request: RunRequest,
    ) -> Result<RunOutcome, EngineError> {
        let scope = Scope::new(connector.account.clone(), connector.id.clone());
        if request.dry_run {
            return self.dry_run(connector, source, &scope, request).await;
        }
        // Each invocation holds the lease under its own name: a second
        // invocation never passes for the first, even when it continues the
        // same run. The lease first: what the connector's progress says is
        // only trustworthy once no one else can change it.
        let holder = format!("{}", uuid::Uuid::new_v4());
        let lease = match self
            .store
            .acquire_lease(&scope, &holder, self.settings.lease_ttl)
            .await
        {
            Ok(lease) => LeaseKeeper::new(lease),
            Err(e) => return held_or(e),
        };
        let work = async {
            let rekeyed = self.rekey(connector, source, &scope).await?;
            let mut resumed = self
                .resume_or_start(connector, source, &scope, &request)
                .await?;
            if let Some(note) = rekeyed {
                resumed.progress.run.warn(note);
            }
            let invocation =
                Invocation::new(self, connector, source, &scope, &request, &lease, &resumed)
                    .await?;
            let ends = invocation.read(resumed.streams).await?;
            invocation.conclude(ends).await
        };
        let heartbeat = lease.heartbeat(
            &self.store,
            self.settings.lease_ttl,
            self.settings.heartbeat,
        );
        let outcome = tokio::select! {
            outcome = work => outcome,
            never = heartbeat => match never {},
        };
        match outcome {
            // Taken over: the other invocation owns the checkpoints and the
            // run record now; leave them alone.
            Err(EngineError::LeaseLost { holder, until }) => {
                tracing::warn!(connector = %scope.connector, %holder, "the run lost its lease and stopped");
                Ok(RunOutcome::AlreadyRunning { holder, until })
            }
            other => other,
        }
    }

    /// The checkpoints and chunks of run `run`: the one way to reach them.
    fn checkpoints<'a>(&'a self, scope: &'a Scope, run: &RunId) -> Checkpoints<'a> {
        Checkpoints {
            store: &self.store,
            scope,
            run: run.clone(),
        }
    }

    async fn first_progress(
        &self,
        scope: &Scope,
        stream: Stream,
        full: bool,
    ) -> Result<StreamProgress, StoreError> {
        let cursor = if full {
            None
        } else {
            self.store.get_cursor(scope, stream.as_str()).await?
        };
        Ok(match cursor {
            Some(c) => StreamProgress::starting(SyncMode::Delta, ReadFrom::Delta(c.value)),
            None => StreamProgress::starting(SyncMode::Full, ReadFrom::Full),
        })
    }

    /// Loads what the streams recorded in chunks (this invocation's and
    /// earlier ones').
    async fn gather(&self, scope: &Scope, p: &RunProgress) -> Result<Gathered, StoreError> {
        let cp = self.checkpoints(scope, &p.run.id);
        let held_members: Vec<(String, Membership)> =
            cp.entries_by_page(progress::HELD_MEMBERS).await?;
        // Only a held removal needs to know what was added after it.
        let mut member_adds = Vec::new();
        if !held_members.is_empty() {
            member_adds = cp.fingerprints_by_page(progress::SEEN_MEMBERS).await?;
            member_adds.extend(cp.fingerprints_by_page(progress::MEMBER_ADDS).await?);
        }
        Ok(Gathered {
            seen_users: cp.fingerprints(progress::SEEN_USERS).await?,
            seen_groups: cp.fingerprints(progress::SEEN_GROUPS).await?,
            seen_members: cp.fingerprints(progress::SEEN_MEMBERS).await?,
            member_users: cp.fingerprints(progress::MEMBER_USERS).await?,
            skipped_users: cp.entries(progress::SKIPPED_USERS).await?,
            added_user_members: cp.entries(progress::ADDED_MEMBERS).await?,
            pending_members: cp
                .entries::<progress::PendingMember>(progress::PENDING_MEMBERS)
                .await?
                .into_iter()
                .map(Membership::from)
                .collect(),
            held: self.held_last_words(&cp).await?,
            held_members,
            member_adds,
            plan: Vec::new(),
        })
    }

    /// The held user and group actions that are the last word on their
    /// object: an action a later page undid (the object listed again, or
    /// another action held for it) is dropped.
    async fn held_last_words(&self, cp: &Checkpoints<'_>) -> Result<Vec<HeldAction>, StoreError> {
        let held: Vec<(String, HeldAction)> = cp.entries_by_page(progress::HELD).await?;
        if held.is_empty() {
            return Ok(Vec::new());
        }
        // The last page on which each object was listed.
        let mut latest: HashMap<u64, String> = HashMap::new();
        for kind in [
            progress::SEEN_USERS,
            progress::SEEN_GROUPS,
            progress::OBJECT_WRITES,
        ] {
            for (page, fps) in cp.fingerprints_by_page(kind).await? {
                for fp in fps {
                    let at = latest.entry(fp).or_insert_with(|| page.clone());
                    if page > *at {
                        at.clone_from(&page);
                    }
                }
            }
        }
        // Of several actions held for one object, the last counts.
        let mut final_action: HashMap<u64, usize> = HashMap::new();
        for (i, (_, h)) in held.iter().enumerate() {
            final_action.insert(progress::user_fp(h.object()), i);
        }
        Ok(held
            .into_iter()
            .enumerate()
            .filter(|(i, (page, h))| {
                let fp = progress::user_fp(h.object());
                final_action.get(&fp) == Some(i)
                    && latest
                        .get(&fp)
                        .is_none_or(|at| at.as_str() <= page.as_str())
            })
            .map(|(_, (_, h))| h)
            .collect())
    }

    async fn fail(
        &self,
        scope: &Scope,
        mut p: RunProgress,
        err: SourceError,
        lease: &Lease,
    ) -> Result<RunOutcome, EngineError> {
        let now = self.store.now();
        let keep = err.is_transient();
        let tail = if keep {
            "Nothing was removed; the next sync continues from the last checkpoint."
        } else {
            "Nothing was removed. Fix the cause, then use Test connection and Sync now."
        };
        p.run
            .finish(RunStatus::Failed, Some(format!("{err} {tail}")), now);
        if keep {
            self.checkpoints(scope, &p.run.id).save_run(&p).await?;
        } else {
            self.store.clear_progress(scope).await?;
            self.store.delete_run_chunks(scope, &p.run.id).await?;
        }
        self.store.put_run(&p.run).await?;
        self.store.release_lease(lease).await?;
        Ok(RunOutcome::Finished(p.run))
    }

    async fn dry_run(
        &self,
        connector: &Connector,
        source: &dyn DirectorySource,
        scope: &Scope,
        request: RunRequest,
    ) -> Result<RunOutcome, EngineError> {
        let now = self.store.now();
        let mut run = SyncRun::start(
            connector.account.clone(),
            connector.id.clone(),
            request.trigger.clone(),
            SyncMode::Delta,
            now,
        );
        let mut g = Gathered::default();
        let mut modes = Vec::new();
        let known = Known {
            not_kept: NotKept::new(self.store.not_kept_users(scope).await?),
            began_empty: false,
        };
        for stream in source.streams() {
            let stream = *stream;
            let mut sp = self.first_progress(scope, stream, request.full).await?;
            let mut page_no = 0;
            while let Some(from) = sp.from.clone() {
                let page = match source.read(stream, &from).await {
                    Ok(p) => p,
                    Err(SourceError::ResyncRequired(_)) if sp.mode == SyncMode::Delta => {
                        sp = self.first_progress(scope, stream, true).await?;
                        continue;
                    }
                    Err(e) => {
                        run.finish(
                            RunStatus::Failed,
                            Some(format!("{e} (dry run: nothing was written)")),
                            self.store.now(),
                        );
                        return Ok(RunOutcome::DryRun {
                            run,
                            plan: g.plan,
                            truncated: false,
                        });
                    }
                };
                let ctx = PageContext {
                    store: &self.store,
                    scope,
                    connector,
                    mode: sp.mode,
                    dry_run: true,
                    known: &known,
                };
                let out = ctx.apply(page.changes).await?;
                merge(&mut run, &out, page.stats);
                g.absorb(&page_key(stream, page_no), out);
                page_no += 1;
                sp.from = match page.next {
                    Next::Page(p) => Some(ReadFrom::Continue(p)),
                    Next::Done { .. } => None,
                };
            }
            modes.push((stream, sp.mode));
        }
        if modes.iter().any(|(_, m)| *m == SyncMode::Full) {
            run.mode = SyncMode::Full;
        }
        let (run, plan, truncated) = self.finish_dry(connector, scope, run, &modes, g).await?;
        Ok(RunOutcome::DryRun {
            run,
            plan,
            truncated,
        })
    }
}

fn held_or(e: StoreError) -> Result<RunOutcome, EngineError> {
    match e {
        StoreError::LeaseHeld { holder, until, .. } => {
            Ok(RunOutcome::AlreadyRunning { holder, until })
        }
        other => Err(other.into()),
    }
}

/// Adds a page's counts and warnings to the run.
fn merge(run: &mut SyncRun, out: &PageOutcome, stats: crate::source::RequestStats) {
    add_counts(&mut run.counts, &out.counts);
    run.requests += stats.requests;
    run.throttled += stats.throttled;
    run.retries += stats.retries;
    for w in &out.warnings {
        run.warn(w.clone());
    }
}

/// Where a stream's page keeps its chunks: ordered as the pages were read.
fn page_key(stream: Stream, page: u64) -> String {
    format!("{stream}#{page:08}")
}

/// Writes a page's chunks under `at` (the stream and page).
async fn record(cp: &Checkpoints<'_>, at: &str, out: &PageOutcome) -> Result<(), StoreError> {
    for (kind, fps) in [
        (progress::SEEN_USERS, &out.seen_users),
        (progress::SEEN_GROUPS, &out.seen_groups),
        (progress::SEEN_MEMBERS, &out.seen_members),
        (progress::MEMBER_USERS, &out.member_users),
    ] {
        if !fps.is_empty() {
            cp.put_fingerprints(kind, at, fps).await?;
        }
    }
    if !out.held.is_empty() {
        cp.put_entries(progress::HELD, at, &out.held).await?;
    }
    if !out.skipped_users.is_empty() {
        cp.put_entries(progress::SKIPPED_USERS, at, &out.skipped_users)
            .await?;
    }
    if !out.added_user_members.is_empty() {
        cp.put_entries(progress::ADDED_MEMBERS, at, &out.added_user_members)
            .await?;
    }
    if !out.held_members.is_empty() {
        cp.put_entries(progress::HELD_MEMBERS, at, &out.held_members)
            .await?;
    }
    if !out.member_adds.is_empty() {
        cp.put_fingerprints(progress::MEMBER_ADDS, at, &out.member_adds)
            .await?;
    }
    if !out.object_writes.is_empty() {
        cp.put_fingerprints(progress::OBJECT_WRITES, at, &out.object_writes)
            .await?;
    }
    if !out.pending_members.is_empty() {
        cp.put_entries(progress::PENDING_MEMBERS, at, &out.pending_members)
            .await?;
    }
    Ok(())
}

fn add_counts(c: &mut crate::domain::ActionCounts, o: &crate::domain::ActionCounts) {
    c.created += o.created;
    c.updated += o.updated;
    c.disabled += o.disabled;
    c.enabled += o.enabled;
    c.removed += o.removed;
    c.unchanged += o.unchanged;
    c.skipped += o.skipped;
    c.members_added += o.members_added;
    c.members_removed += o.members_removed;
    c.members_updated += o.members_updated;
}

/// The run's counts: the sum of its streams'.
fn total(run: &mut SyncRun, streams: &[(Stream, StreamProgress)]) {
    run.counts = Default::default();
    run.requests = 0;
    run.throttled = 0;
    run.retries = 0;
    for (_, sp) in streams {
        add_counts(&mut run.counts, &sp.counts);
        run.requests += sp.stats.requests;
        run.throttled += sp.stats.throttled;
        run.retries += sp.stats.retries;
    }
}

impl Gathered {
    /// A dry run's page, read at `at`.
    fn absorb(&mut self, at: &str, out: PageOutcome) {
        self.held_members
            .extend(out.held_members.into_iter().map(|m| (at.to_owned(), m)));
        let adds = out
            .seen_members
            .iter()
            .chain(&out.member_adds)
            .copied()
            .collect();
        self.member_adds.push((at.to_owned(), adds));
        self.seen_users.extend(out.seen_users);
        self.seen_groups.extend(out.seen_groups);
        self.seen_members.extend(out.seen_members);
        self.member_users.extend(out.member_users);
        self.skipped_users.extend(out.skipped_users);
        self.added_user_members.extend(out.added_user_members);
        self.pending_members.extend(out.pending_members);
        self.held.extend(out.held);
        self.plan.extend(out.plan);
    }
}
