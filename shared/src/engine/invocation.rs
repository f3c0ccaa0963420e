//! One invocation of a run: resume or start it, read its streams page by
//! page, then pause, fail or finish it. Every step works over one
//! [`Invocation`], which holds what they share.

use tokio::sync::Mutex;

use crate::domain::{Connector, RunId, RunStatus, SyncMode, SyncRun};
use crate::source::{
    DirectorySource, Next, ReadFrom, RequestStats, SourceError, SourcePage, Stream,
};
use crate::store::{Scope, StoreError};

use super::apply::{Known, NotKept, PageContext};
use super::lease::LeaseKeeper;
use super::progress::{Checkpoints, RunProgress, StreamProgress};
use super::{EngineError, Progress, READ_AHEAD, RunOutcome, RunRequest, SyncEngine};

/// How one stream's reading ended in this invocation.
pub(super) enum StreamEnd {
    Done,
    /// Stopped at the invocation's deadline.
    Paused,
    /// The source asked for a wait longer than an invocation should spend.
    Waiting {
        why: String,
        after: std::time::Duration,
    },
    Failed(SourceError),
}

/// A run about to be read on: where each stream stands, and whether the
/// last invocation stopped cleanly (else its last page per stream may have
/// been written but not checkpointed, and is applied again).
pub(super) struct Resumed {
    pub progress: RunProgress,
    pub streams: Vec<(Stream, StreamProgress)>,
    pub clean: bool,
}

/// What the steps of one invocation share.
pub(super) struct Invocation<'a> {
    pub engine: &'a SyncEngine,
    pub connector: &'a Connector,
    pub source: &'a dyn DirectorySource,
    pub scope: &'a Scope,
    pub request: &'a RunRequest,
    pub lease: &'a LeaseKeeper,
    pub run_id: RunId,
    known: Known,
    progress: Mutex<RunProgress>,
    tally: Tally,
    /// Streams whose next page may be one applied before, in part, by an
    /// invocation that died: what that attempt recorded is cleared first.
    replaying: std::sync::Mutex<Vec<Stream>>,
}

/// The run's request counters: those of earlier invocations, and the
/// source's own count at this invocation's start (a source that counts
/// every request it sends is exact; one that does not is summed by page).
struct Tally {
    before: RequestStats,
    source_at_start: Option<RequestStats>,
}

impl Tally {
    fn record(&self, run: &mut SyncRun, source: &dyn DirectorySource) {
        let (Some(start), Some(now)) = (self.source_at_start, source.stats()) else {
            return;
        };
        run.requests = self.before.requests + now.requests.saturating_sub(start.requests);
        run.throttled = self.before.throttled + now.throttled.saturating_sub(start.throttled);
        run.retries = self.before.retries + now.retries.saturating_sub(start.retries);
    }
}

impl SyncEngine {
    /// The unfinished run of the connector continued, or a new one started,
    /// with where each stream stands.
    pub(super) async fn resume_or_start(
        &self,
        connector: &Connector,
        source: &dyn DirectorySource,
        scope: &Scope,
        request: &RunRequest,
    ) -> Result<Resumed, EngineError> {
        let now = self.store.now();
        // The run checkpoint is the connector's, whatever run it names.
        let cp = self.checkpoints(scope, &RunId::generate(now));
        // A full sync asked for by hand replaces an unfinished run: the
        // catch-up after an interruption.
        let existing = match cp.load_run().await? {
            Some(p) if request.full && request.trigger != crate::domain::Trigger::Continuation => {
                self.store.clear_progress(scope).await?;
                self.store.delete_run_chunks(scope, &p.run.id).await?;
                None
            }
            other => other,
        };
        match existing {
            Some(p) => self.resume(source, scope, request, p).await,
            None => self.start(connector, source, scope, request).await,
        }
    }

    async fn resume(
        &self,
        source: &dyn DirectorySource,
        scope: &Scope,
        request: &RunRequest,
        mut p: RunProgress,
    ) -> Result<Resumed, EngineError> {
        let cp = self.checkpoints(scope, &p.run.id);
        let mut streams = Vec::new();
        for s in source.streams() {
            let sp = match cp.load_stream(*s).await? {
                Some(sp) => sp,
                None => self.first_progress(scope, *s, request.full).await?,
            };
            streams.push((*s, sp));
        }
        p.run.status = RunStatus::Running;
        let clean = p.paused;
        if !clean {
            p.member_users_recorded = false;
        }
        // Written at once: should this invocation die mid-page, the next
        // must not take the pause for a clean one.
        p.paused = false;
        cp.save_run(&p).await?;
        Ok(Resumed {
            progress: p,
            streams,
            clean,
        })
    }

    async fn start(
        &self,
        connector: &Connector,
        source: &dyn DirectorySource,
        scope: &Scope,
        request: &RunRequest,
    ) -> Result<Resumed, EngineError> {
        let mut run = SyncRun::start(
            connector.account.clone(),
            connector.id.clone(),
            request.trigger.clone(),
            SyncMode::Delta,
            self.store.now(),
        );
        let mut streams = Vec::new();
        for s in source.streams() {
            streams.push((*s, self.first_progress(scope, *s, request.full).await?));
        }
        if streams.iter().any(|(_, p)| p.mode == SyncMode::Full) {
            run.mode = SyncMode::Full;
        }
        let began_empty = !self.store.has_directory(scope).await?;
        // Only full reads record what they see: a stream that starts from a
        // cursor (and may turn full later) leaves the run unable to vouch
        // for its first pages.
        let all_full = streams.iter().all(|(_, p)| p.mode == SyncMode::Full);
        let p = RunProgress {
            run,
            began_empty,
            member_users_recorded: began_empty && all_full,
            paused: false,
        };
        let cp = self.checkpoints(scope, &p.run.id);
        for (name, sp) in &streams {
            cp.save_stream(*name, sp).await?;
        }
        cp.save_run(&p).await?;
        self.store.put_run(&p.run).await?;
        Ok(Resumed {
            progress: p,
            streams,
            clean: true,
        })
    }
}

impl<'a> Invocation<'a> {
    pub async fn new(
        engine: &'a SyncEngine,
        connector: &'a Connector,
        source: &'a dyn DirectorySource,
        scope: &'a Scope,
        request: &'a RunRequest,
        lease: &'a LeaseKeeper,
        resumed: &Resumed,
    ) -> Result<Invocation<'a>, StoreError> {
        let progress = resumed.progress.clone();
        let known = Known {
            not_kept: NotKept::new(engine.store.not_kept_users(scope).await?),
            began_empty: progress.began_empty,
        };
        let r = &progress.run;
        let tally = Tally {
            before: RequestStats {
                requests: r.requests,
                throttled: r.throttled,
                retries: r.retries,
            },
            source_at_start: source.stats(),
        };
        Ok(Invocation {
            engine,
            connector,
            source,
            scope,
            request,
            lease,
            run_id: progress.run.id.clone(),
            known,
            progress: Mutex::new(progress),
            tally,
            replaying: std::sync::Mutex::new(if resumed.clean {
                Vec::new()
            } else {
                resumed.streams.iter().map(|(s, _)| *s).collect()
            }),
        })
    }

    fn checkpoints(&self) -> Checkpoints<'a> {
        self.engine.checkpoints(self.scope, &self.run_id)
    }

    /// Reads every stream side by side until each is done or stops.
    pub async fn read(
        &self,
        streams: Vec<(Stream, StreamProgress)>,
    ) -> Result<Vec<StreamEnd>, EngineError> {
        // Boxed with an explicit `Send` so that a run can be spawned (the
        // compiler cannot prove it through the closure's lifetimes).
        type StreamFuture<'f> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<StreamEnd, EngineError>> + Send + 'f>,
        >;
        let loops: Vec<StreamFuture<'_>> = streams
            .into_iter()
            .map(|(name, sp)| Box::pin(self.read_stream(name, sp)) as StreamFuture<'_>)
            .collect();
        // The first error (a lost lease, a store failure) stops the others.
        futures::future::try_join_all(loops).await
    }

    fn near_deadline(&self) -> bool {
        self.request.deadline.is_some_and(|deadline| {
            tokio::time::Instant::now() + self.engine.settings.deadline_margin >= deadline
        })
    }

    /// One read of the source. A read that would run past the deadline is
    /// cut off there and read again later — except a reader's first read
    /// (each invocation starts a reader, and so does the full read after a
    /// refused cursor): the invocation must apply a page to make progress
    /// (the margin leaves it room).
    async fn read_bounded(
        &self,
        stream: Stream,
        from: &ReadFrom,
        first: bool,
    ) -> Option<Result<SourcePage, SourceError>> {
        match self.request.deadline {
            Some(deadline) if !first => {
                let stop = deadline
                    .checked_sub(self.engine.settings.deadline_margin)
                    .unwrap_or(deadline);
                tokio::time::timeout_at(stop, self.source.read(stream, from))
                    .await
                    .ok()
            }
            _ => Some(self.source.read(stream, from).await),
        }
    }

    /// Reads one stream to its end, or until it stops.
    async fn read_stream(
        &self,
        stream: Stream,
        mut sp: StreamProgress,
    ) -> Result<StreamEnd, EngineError> {
        loop {
            let Some(from) = sp.from.clone() else {
                return Ok(StreamEnd::Done);
            };
            if self.near_deadline() {
                return Ok(StreamEnd::Paused);
            }
            if let Some(end) = self.read_pages(stream, &mut sp, from).await? {
                return Ok(end);
            }
            // The stream restarted in full after a refused cursor.
        }
    }

    /// Reads from `from` with the reader ahead of the applier: the reader
    /// follows the source's links on its own, up to READ_AHEAD pages queued
    /// (and one more in hand, waiting for room) ahead of the page being
    /// applied, so that the store's work and the source's latency overlap:
    /// a stream takes about the longer of the two, not their sum. Pages
    /// read but not applied when the invocation stops are simply read again
    /// by the continuation: only applied pages are checkpointed. `None`
    /// when the stream must start again from its (new) position.
    async fn read_pages(
        &self,
        stream: Stream,
        sp: &mut StreamProgress,
        from: ReadFrom,
    ) -> Result<Option<StreamEnd>, EngineError> {
        let (pages, mut received) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reader = async move {
            let (mut from, mut first) = (from, true);
            while let Some(read) = self.read_bounded(stream, &from, first).await {
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
                    Some(next) if !self.near_deadline() => from = next,
                    _ => return,
                }
            }
        };
        let applier = async {
            let mut first = true;
            while let Some(read) = received.recv().await {
                // The first page is applied whenever it comes (the
                // deadline was checked before it was asked for).
                if !first && self.near_deadline() {
                    return Ok(Some(StreamEnd::Paused));
                }
                first = false;
                match read {
                    Ok(page) => self.apply_page(stream, sp, page).await?,
                    Err(SourceError::ResyncRequired(why)) if sp.mode == SyncMode::Delta => {
                        self.resync(stream, sp, &why).await?;
                        return Ok(None);
                    }
                    Err(SourceError::Paused { why, after }) => {
                        return Ok(Some(StreamEnd::Waiting { why, after }));
                    }
                    Err(e) => return Ok(Some(StreamEnd::Failed(e))),
                }
            }
            // The reader stopped: at the end of the stream, or at the
            // deadline (the caller's loop tells which).
            Ok(None)
        };
        // The applier decides when the stream stops; the reader is dropped
        // then, with any read it has in flight.
        tokio::pin!(reader, applier);
        let mut reading = true;
        loop {
            tokio::select! {
                end = &mut applier => break end,
                () = &mut reader, if reading => reading = false,
            }
        }
    }

    /// The stored cursor is dead: the stream is read in full instead.
    async fn resync(
        &self,
        stream: Stream,
        sp: &mut StreamProgress,
        why: &str,
    ) -> Result<(), EngineError> {
        *sp = StreamProgress {
            mode: SyncMode::Full,
            from: Some(ReadFrom::Full),
            cursor: None,
            resynced: Some(format!(
                "the stored {stream} cursor could no longer be used ({why}); {stream} were read in full instead"
            )),
            ..sp.clone()
        };
        self.lease.check(self.engine.store.now())?;
        self.checkpoints().save_stream(stream, sp).await?;
        self.progress.lock().await.run.mode = SyncMode::Full;
        Ok(())
    }

    /// Applies one page and checkpoints it, if the lease is still the run's.
    async fn apply_page(
        &self,
        stream: Stream,
        sp: &mut StreamProgress,
        page: SourcePage,
    ) -> Result<(), EngineError> {
        let store = &self.engine.store;
        self.lease.check(store.now())?;
        let at = super::page_key(stream, sp.pages);
        let cp = self.checkpoints();
        if self.first_replay(stream) {
            cp.clear_page(&at).await?;
        }
        let ctx = PageContext {
            store,
            scope: self.scope,
            connector: self.connector,
            mode: sp.mode,
            dry_run: false,
            known: &self.known,
        };
        let outcome = ctx.apply(page.changes).await?;
        self.lease.check(store.now())?;
        // Checkpoint: the page's data first (keyed by the page, so a replay
        // replaces it), then position and counts in one item, so a crash in
        // between replays the page — harmless — rather than skipping it.
        super::record(&cp, &at, &outcome).await?;
        super::add_counts(&mut sp.counts, &outcome.counts);
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
        if let Some(hook) = &self.engine.settings.progress {
            (hook.0)(&Progress {
                stream: stream.as_str().to_owned(),
                pages: sp.pages,
                counts: sp.counts,
                requests: sp.stats.requests,
                throttled: sp.stats.throttled,
            });
        }
        let mut p = self.progress.lock().await;
        for w in outcome.warnings {
            p.run.warn(w);
        }
        self.tally.record(&mut p.run, self.source);
        cp.save_run(&p).await?;
        Ok(())
    }

    /// Whether this is the stream's first page since an unclean stop.
    fn first_replay(&self, stream: Stream) -> bool {
        let mut replaying = self
            .replaying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let was = replaying.contains(&stream);
        replaying.retain(|s| *s != stream);
        was
    }

    /// After the streams: fail, pause or finish the run.
    pub async fn conclude(self, ends: Vec<StreamEnd>) -> Result<RunOutcome, EngineError> {
        let engine = self.engine;
        let cp = self.checkpoints();
        let mut finals = Vec::new();
        for name in self.source.streams() {
            if let Some(sp) = cp.load_stream(*name).await? {
                finals.push((*name, sp));
            }
        }
        let mut progress = self.progress.into_inner();
        super::total(&mut progress.run, &finals);
        self.tally.record(&mut progress.run, self.source);
        self.lease.check(engine.store.now())?;
        if let Some(err) = ends.iter().find_map(|e| match e {
            StreamEnd::Failed(err) => Some(err.clone()),
            _ => None,
        }) {
            return engine
                .fail(self.scope, progress, err, self.lease.lease())
                .await;
        }
        let waiting = ends
            .iter()
            .filter_map(|e| match e {
                StreamEnd::Waiting { why, after } => Some((why.clone(), *after)),
                _ => None,
            })
            .max_by_key(|(_, after)| *after);
        if waiting.is_some() || ends.iter().any(|e| matches!(e, StreamEnd::Paused)) {
            let (why, after) = waiting.unwrap_or_else(|| {
                (
                    "continuing in a new invocation from the last checkpoint".into(),
                    std::time::Duration::ZERO,
                )
            });
            progress.run.message = Some(why);
            progress.paused = true;
            cp.save_run(&progress).await?;
            engine.store.put_run(&progress.run).await?;
            // The continuation takes the lease afresh (or a scheduled run
            // picks the checkpoint up if it comes first).
            engine.store.release_lease(self.lease.lease()).await?;
            return Ok(RunOutcome::Continue {
                run: progress.run,
                after,
            });
        }
        let gathered = engine.gather(self.scope, &progress).await?;
        let run = engine
            .finish(
                self.connector,
                self.scope,
                progress,
                finals,
                gathered,
                self.lease,
            )
            .await?;
        Ok(RunOutcome::Finished(run))
    }
}
