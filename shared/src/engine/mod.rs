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
pub mod plan;
pub mod policy;
pub mod progress;

use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;
use tokio::sync::Mutex;

use crate::domain::{Connector, Lease, RunStatus, SourceId, SyncMode, SyncRun, Trigger};
use crate::source::{DirectorySource, Next, ReadFrom, SourceError, SourcePage, Stream};
use crate::store::{Scope, StateStore, StoreError};

use apply::{Known, NotKept, PageContext, PageOutcome};
pub use plan::{Action, DeletionGuard, HeldAction, PlanEntry};
use progress::{Checkpoints, RunProgress, StreamProgress};

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long a run may go without checkpointing before another run may
    /// take its connector over.
    pub lease_ttl: Duration,
    pub guard: DeletionGuard,
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
            guard: DeletionGuard::default(),
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
    pub pending_members: Vec<(SourceId, SourceId)>,
    pub held: Vec<HeldAction>,
    pub plan: Vec<PlanEntry>,
}

type StreamFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<StreamEnd, EngineError>> + Send + 'a>,
>;

/// How many pages a stream keeps queued ahead of the page it applies (its
/// reader may hold one more, waiting for room). Three keep
/// the source busy through an uneven page (one listing a large group's
/// members takes longer to store than the latency of the next read) at a
/// few megabytes of memory; more only read further past a pause.
const READ_AHEAD: usize = 3;

enum StreamEnd {
    Done,
    Paused,
    /// The source asked for a wait longer than an invocation should spend.
    Waiting {
        why: String,
        after: std::time::Duration,
    },
    Failed(SourceError),
    /// Another invocation took the connector over: stop, touch nothing.
    LeaseLost {
        holder: String,
        until: DateTime<Utc>,
    },
}

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
        let now = self.store.now();
        // Each invocation holds the lease under its own name: a second
        // invocation never passes for the first, even when it continues the
        // same run.
        let holder = format!("{}", uuid::Uuid::new_v4());
        // The lease first: what the connector's progress says is only
        // trustworthy once no one else can change it.
        if let Err(e) = self
            .store
            .acquire_lease(&scope, &holder, self.settings.lease_ttl)
            .await
        {
            return held_or(e);
        }
        let existing = Checkpoints {
            store: &self.store,
            scope: &scope,
            run: crate::domain::RunId::generate(now),
        }
        .load_run()
        .await?;

        // A full sync asked for by hand replaces an unfinished run: the
        // catch-up after an interruption.
        let existing = match existing {
            Some(p) if request.full && request.trigger != Trigger::Continuation => {
                self.store.clear_progress(&scope).await?;
                self.store.delete_run_chunks(&scope, &p.run.id).await?;
                None
            }
            other => other,
        };

        // Resume the connector's unfinished run, or start a new one.
        let (progress, streams) = match existing {
            Some(p) => {
                let cp = self.checkpoints(&scope, &p.run);
                let mut streams = Vec::new();
                for s in source.streams() {
                    let sp = match cp.load_stream(*s).await? {
                        Some(sp) => sp,
                        None => self.first_progress(&scope, *s, request.full).await?,
                    };
                    streams.push((*s, sp));
                }
                let mut p = p;
                p.run.status = RunStatus::Running;
                if !p.paused {
                    p.member_users_recorded = false;
                }
                // Written at once: should this invocation die mid-page, the
                // next must not take the pause for a clean one.
                p.paused = false;
                cp.save_run(&p).await?;
                (p, streams)
            }
            None => {
                let mut run = SyncRun::start(
                    connector.account.clone(),
                    connector.id.clone(),
                    request.trigger.clone(),
                    SyncMode::Delta,
                    now,
                );
                let mut streams = Vec::new();
                for s in source.streams() {
                    streams.push((*s, self.first_progress(&scope, *s, request.full).await?));
                }
                if streams.iter().any(|(_, p)| p.mode == SyncMode::Full) {
                    run.mode = SyncMode::Full;
                }
                let began_empty = !self.store.has_directory(&scope).await?;
                // Only full reads record what they see: a stream that starts
                // from a cursor (and may turn full later) leaves the run
                // unable to vouch for its first pages.
                let all_full = streams.iter().all(|(_, p)| p.mode == SyncMode::Full);
                let p = RunProgress {
                    run,
                    began_empty,
                    member_users_recorded: began_empty && all_full,
                    paused: false,
                };
                let cp = self.checkpoints(&scope, &p.run);
                for (name, sp) in &streams {
                    cp.save_stream(*name, sp).await?;
                }
                cp.save_run(&p).await?;
                self.store.put_run(&p.run).await?;
                (p, streams)
            }
        };
        let lease = Lease {
            account: scope.account.clone(),
            connector: scope.connector.clone(),
            holder,
            expires_at: now + self.settings.lease_ttl,
        };
        let run_id = progress.run.id.clone();
        let names: Vec<Stream> = streams.iter().map(|(n, _)| *n).collect();
        let known = Known {
            not_kept: NotKept::new(self.store.not_kept_users(&scope).await?),
            began_empty: progress.began_empty,
        };
        let shared = Mutex::new(progress);
        // Boxed with an explicit `Send` so that a run can be spawned (the
        // compiler cannot prove it through the closure's lifetimes).
        let loops: Vec<StreamFuture<'_>> = streams
            .into_iter()
            .map(|(name, sp)| {
                Box::pin(self.stream_loop(
                    connector, source, &scope, &run_id, name, sp, &request, &shared, &lease, &known,
                )) as StreamFuture<'_>
            })
            .collect();
        let ends = futures::future::join_all(loops).await;
        let mut progress = shared.into_inner();
        let mut ends_iter = Vec::new();
        for e in ends {
            ends_iter.push(e?);
        }
        let cp = self.checkpoints(&scope, &progress.run);
        let mut finals = Vec::new();
        for name in names {
            if let Some(sp) = cp.load_stream(name).await? {
                finals.push((name, sp));
            }
        }
        total(&mut progress.run, &finals);
        // Taken over: the other invocation owns the checkpoints and the run
        // record now; leave them alone.
        if let Some((holder, until)) = ends_iter.iter().find_map(|e| match e {
            StreamEnd::LeaseLost { holder, until } => Some((holder.clone(), *until)),
            _ => None,
        }) {
            tracing::warn!(connector = %scope.connector, %holder, "the run lost its lease and stopped");
            return Ok(RunOutcome::AlreadyRunning { holder, until });
        }
        if let Some(err) = ends_iter.iter().find_map(|e| match e {
            StreamEnd::Failed(err) => Some(err.clone()),
            _ => None,
        }) {
            return self.fail(&scope, progress, err, &lease).await;
        }
        let waiting = ends_iter.iter().filter_map(|e| match e {
            StreamEnd::Waiting { why, after } => Some((why.clone(), *after)),
            _ => None,
        });
        let waiting = waiting.max_by_key(|(_, after)| *after);
        if waiting.is_some() || ends_iter.iter().any(|e| matches!(e, StreamEnd::Paused)) {
            let (why, after) = waiting.unwrap_or_else(|| {
                (
                    "continuing in a new invocation from the last checkpoint".into(),
                    std::time::Duration::ZERO,
                )
            });
            progress.run.message = Some(why);
            progress.paused = true;
            let cp = self.checkpoints(&scope, &progress.run);
            cp.save_run(&progress).await?;
            self.store.put_run(&progress.run).await?;
            // The continuation takes the lease afresh (or a scheduled run
            // picks the checkpoint up if it comes first).
            self.store.release_lease(&lease).await?;
            return Ok(RunOutcome::Continue {
                run: progress.run,
                after,
            });
        }
        let gathered = self.gather(&scope, &progress).await?;
        let run = self
            .finish(&scope, progress, finals, gathered, &lease)
            .await?;
        Ok(RunOutcome::Finished(run))
    }

    fn checkpoints<'a>(&'a self, scope: &'a Scope, run: &SyncRun) -> Checkpoints<'a> {
        Checkpoints {
            store: &self.store,
            scope,
            run: run.id.clone(),
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

    #[allow(clippy::too_many_arguments)]
    async fn stream_loop(
        &self,
        connector: &Connector,
        source: &dyn DirectorySource,
        scope: &Scope,
        run_id: &crate::domain::RunId,
        stream: Stream,
        mut sp: StreamProgress,
        request: &RunRequest,
        shared: &Mutex<RunProgress>,
        lease: &Lease,
        known: &Known,
    ) -> Result<StreamEnd, EngineError> {
        let cp = Checkpoints {
            store: &self.store,
            scope,
            run: run_id.clone(),
        };
        let near_deadline = || {
            request.deadline.is_some_and(|deadline| {
                tokio::time::Instant::now() + self.settings.deadline_margin >= deadline
            })
        };
        // A read ahead held up (by throttling, say) must not keep the
        // invocation past its deadline: it is cut off there and read again
        // later. A reader's first read is not (each invocation starts a
        // reader, and so does the full read after a refused cursor): the
        // invocation must apply a page to make progress (the margin leaves
        // it room).
        let by_deadline = async |from: &ReadFrom, first: bool| match request.deadline {
            Some(deadline) if !first => {
                let stop = deadline
                    .checked_sub(self.settings.deadline_margin)
                    .unwrap_or(deadline);
                tokio::time::timeout_at(stop, source.read(stream, from))
                    .await
                    .ok()
            }
            _ => Some(source.read(stream, from).await),
        };
        loop {
            let Some(from) = sp.from.clone() else {
                return Ok(StreamEnd::Done);
            };
            if near_deadline() {
                return Ok(StreamEnd::Paused);
            }
            // The reader follows the source's links on its own, up to
            // READ_AHEAD pages queued (and one more in hand, waiting for
            // room) ahead of the page being applied, so that
            // the store's work and the source's latency overlap: a stream
            // takes about the longer of the two, not their sum. Pages read
            // but not applied when the invocation stops are simply read
            // again by the continuation: only applied pages are checkpointed.
            let (pages, mut received) = tokio::sync::mpsc::channel(READ_AHEAD);
            let reader = async move {
                let (mut from, mut first) = (from, true);
                while let Some(read) = by_deadline(&from, first).await {
                    first = false;
                    let next = match &read {
                        Ok(SourcePage {
                            next: Next::Page(position),
                            ..
                        }) => Some(ReadFrom::Continue(position.clone())),
                        _ => None,
                    };
                    if pages.send(read).await.is_err() {
                        return;
                    }
                    match next {
                        Some(next) if !near_deadline() => from = next,
                        _ => return,
                    }
                }
            };
            let applier = async {
                let mut first = true;
                while let Some(read) = received.recv().await {
                    // The first page is applied whenever it comes (the
                    // deadline was checked before it was asked for).
                    if !first && near_deadline() {
                        return Ok(Some(StreamEnd::Paused));
                    }
                    first = false;
                    match read {
                        Ok(page) => {
                            let renewed = self
                                .apply_page(
                                    connector, scope, &cp, stream, &mut sp, page, shared, lease,
                                    known,
                                )
                                .await?;
                            match renewed {
                                Ok(_) => {}
                                // Someone took the connector over: stop
                                // without touching more.
                                Err(StoreError::LeaseHeld { holder, until, .. }) => {
                                    return Ok(Some(StreamEnd::LeaseLost { holder, until }));
                                }
                                Err(e) => return Err(EngineError::from(e)),
                            }
                        }
                        Err(SourceError::ResyncRequired(why)) if sp.mode == SyncMode::Delta => {
                            // The stored cursor is dead: read this stream in full.
                            sp = StreamProgress {
                                mode: SyncMode::Full,
                                from: Some(ReadFrom::Full),
                                cursor: None,
                                resynced: Some(format!(
                                    "the stored {stream} cursor could no longer be used ({why}); {stream} were read in full instead"
                                )),
                                ..sp.clone()
                            };
                            cp.save_stream(stream, &sp).await?;
                            shared.lock().await.run.mode = SyncMode::Full;
                            return Ok(None);
                        }
                        Err(SourceError::Paused { why, after }) => {
                            return Ok(Some(StreamEnd::Waiting { why, after }));
                        }
                        Err(e) => return Ok(Some(StreamEnd::Failed(e))),
                    }
                }
                // The reader stopped: at the end of the stream, or at the
                // deadline (the loop above tells which).
                Ok(None)
            };
            // The applier decides when the stream stops; the reader is
            // dropped then, with any read it has in flight.
            tokio::pin!(reader, applier);
            let mut reading = true;
            let end = loop {
                tokio::select! {
                    end = &mut applier => break end,
                    () = &mut reader, if reading => reading = false,
                }
            };
            if let Some(end) = end? {
                return Ok(end);
            }
        }
    }

    /// Applies one page and checkpoints it; then renews the lease and says
    /// how that went.
    #[allow(clippy::too_many_arguments)]
    async fn apply_page(
        &self,
        connector: &Connector,
        scope: &Scope,
        cp: &Checkpoints<'_>,
        stream: Stream,
        sp: &mut StreamProgress,
        page: SourcePage,
        shared: &Mutex<RunProgress>,
        lease: &Lease,
        known: &Known,
    ) -> Result<Result<Lease, StoreError>, EngineError> {
        let ctx = PageContext {
            store: &self.store,
            scope,
            connector,
            mode: sp.mode,
            dry_run: false,
            known,
        };
        let outcome = ctx.apply(page.changes).await?;
        // Checkpoint: the page's data first (keyed by the page, so a replay
        // replaces it), then position and counts in one item, so a crash in
        // between replays the page — harmless — rather than skipping it.
        record(cp, &format!("{stream}#{:08}", sp.pages), &outcome).await?;
        add_counts(&mut sp.counts, &outcome.counts);
        sp.stats.requests += page.stats.requests;
        sp.stats.throttled += page.stats.throttled;
        sp.stats.retries += page.stats.retries;
        sp.pages += 1;
        match page.next {
            Next::Page(position) => sp.from = Some(ReadFrom::Continue(position)),
            Next::Done { cursor } => {
                sp.from = None;
                sp.cursor = cursor;
            }
        }
        cp.save_stream(stream, sp).await?;
        if let Some(hook) = &self.settings.progress {
            (hook.0)(&Progress {
                stream: stream.as_str().to_owned(),
                pages: sp.pages,
                counts: sp.counts,
                requests: sp.stats.requests,
                throttled: sp.stats.throttled,
            });
        }
        let mut p = shared.lock().await;
        for w in outcome.warnings {
            p.run.warn(w);
        }
        cp.save_run(&p).await?;
        drop(p);
        Ok(self.store.renew_lease(lease, self.settings.lease_ttl).await)
    }

    /// Loads what the streams recorded in chunks (this invocation's and
    /// earlier ones').
    async fn gather(&self, scope: &Scope, p: &RunProgress) -> Result<Gathered, StoreError> {
        let cp = self.checkpoints(scope, &p.run);
        Ok(Gathered {
            seen_users: cp.fingerprints(progress::SEEN_USERS).await?,
            seen_groups: cp.fingerprints(progress::SEEN_GROUPS).await?,
            seen_members: cp.fingerprints(progress::SEEN_MEMBERS).await?,
            member_users: cp.fingerprints(progress::MEMBER_USERS).await?,
            skipped_users: cp.entries(progress::SKIPPED_USERS).await?,
            added_user_members: cp.entries(progress::ADDED_MEMBERS).await?,
            pending_members: cp.entries(progress::PENDING_MEMBERS).await?,
            held: cp.entries(progress::HELD).await?,
            plan: Vec::new(),
        })
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
            self.checkpoints(scope, &p.run).save_run(&p).await?;
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
                g.absorb(out);
                sp.from = match page.next {
                    Next::Page(p) => Some(ReadFrom::Continue(p)),
                    Next::Done { .. } => None,
                };
            }
            modes.push(sp.mode);
        }
        if modes.contains(&SyncMode::Full) {
            run.mode = SyncMode::Full;
        }
        let (run, plan, truncated) = self.finish_dry(connector, scope, run, g).await?;
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
    fn absorb(&mut self, out: PageOutcome) {
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
