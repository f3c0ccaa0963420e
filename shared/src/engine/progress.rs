//! What a run keeps between pages and invocations: each stream's position,
//! and for full reads the objects seen so far (as 64-bit fingerprints).

use std::collections::HashSet;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::{ActionCounts, Membership, RunId, SourceId, SyncMode, SyncRun};
use crate::source::{ReadFrom, Stream};
use crate::store::{Scope, StateStore, StoreError};

/// The checkpoint of one stream of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamProgress {
    pub mode: SyncMode,
    /// Where the next page is read from; `None` once the stream is done.
    pub from: Option<ReadFrom>,
    /// The cursor to keep for the next run, once the stream is done.
    pub cursor: Option<String>,
    pub pages: u64,
    /// Set when a stored delta cursor was refused and the stream restarted
    /// with a full read.
    pub resynced: Option<String>,
    /// What the stream's pages did so far, saved in the same item as the
    /// position so that a crash can never double a page's counts. (A page
    /// applied again after a crash finds its own earlier writes and counts
    /// them as unchanged: counts can fall short after a crash, never over.)
    #[serde(default)]
    pub counts: ActionCounts,
    #[serde(default)]
    pub stats: Stats,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    pub throttled: u64,
    pub retries: u64,
}

impl StreamProgress {
    /// A stream about to read its first page.
    pub fn starting(mode: SyncMode, from: ReadFrom) -> Self {
        Self {
            mode,
            from: Some(from),
            cursor: None,
            pages: 0,
            resynced: None,
            counts: ActionCounts::default(),
            stats: Stats::default(),
        }
    }
}

/// The checkpoint of the run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunProgress {
    pub run: SyncRun,
    /// The connector had no users or groups stored when the run began, so
    /// every membership stored is one this run wrote: they are written
    /// without first reading whether they exist (a first sync of a large
    /// tenant spent a fifth of its time on those reads, every one a miss).
    /// Kept here so that a continuation knows it too; absent in checkpoints
    /// of older builds, which read as before.
    #[serde(default)]
    pub began_empty: bool,
    /// Such a run records the users its memberships point at
    /// ([`MEMBER_USERS`]), so that its end can do without reading back what
    /// it wrote. False in checkpoints of builds that did not record them:
    /// their runs end with the full read-back.
    #[serde(default)]
    pub member_users_recorded: bool,
    /// The last invocation paused cleanly: every page it wrote, it also
    /// recorded. Any other resume (after a crash, a failure, a takeover)
    /// may follow a page written but not recorded, which the end of a first
    /// sync cannot vouch for: it then reads back.
    #[serde(default)]
    pub paused: bool,
}

pub const RUN: &str = "run";

/// Kinds of run data chunks.
pub const SEEN_USERS: &str = "seen-users";
pub const SEEN_GROUPS: &str = "seen-groups";
pub const SEEN_MEMBERS: &str = "seen-members";
pub const MEMBER_USERS: &str = "member-users";
pub const HELD: &str = "held";
pub const SKIPPED_USERS: &str = "skipped-users";
pub const ADDED_MEMBERS: &str = "added-members";
pub const PENDING_MEMBERS: &str = "pending-members";

/// A held-back membership as checkpointed: whole, or as its two ids in
/// runs begun before memberships carried a role and an address.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum PendingMember {
    Ids(SourceId, SourceId),
    Whole(Membership),
}

impl From<PendingMember> for Membership {
    fn from(p: PendingMember) -> Self {
        match p {
            PendingMember::Ids(group, member) => {
                Membership::new(group, member, crate::domain::MemberKind::User)
            }
            PendingMember::Whole(m) => m,
        }
    }
}
pub const HELD_MEMBERS: &str = "held-members";
pub const MEMBER_ADDS: &str = "member-adds";
pub const OBJECT_WRITES: &str = "object-writes";

/// Every kind a page records: a page applied again after a crash clears
/// them all first, so that nothing of the first attempt outlives it.
pub const PAGE_KINDS: [&str; 11] = [
    SEEN_USERS,
    SEEN_GROUPS,
    SEEN_MEMBERS,
    MEMBER_USERS,
    HELD,
    SKIPPED_USERS,
    ADDED_MEMBERS,
    PENDING_MEMBERS,
    HELD_MEMBERS,
    MEMBER_ADDS,
    OBJECT_WRITES,
];

/// Fingerprints per chunk: 30,000 × 8 bytes, base64, stays well under
/// DynamoDB's 400 KB item limit.
pub const FINGERPRINTS_PER_CHUNK: usize = 30_000;
/// Held actions and id lists per chunk.
pub const ENTRIES_PER_CHUNK: usize = 300;

/// FNV-1a, 64 bits: stable across builds and platforms (a continuation may
/// run on a newer build). A collision can only make an unseen object look
/// seen, i.e. skip a removal — never remove something that exists.
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

pub fn user_fp(id: &SourceId) -> u64 {
    fingerprint(&[id.as_str()])
}

pub fn membership_fp(group: &SourceId, member: &SourceId) -> u64 {
    fingerprint(&[group.as_str(), member.as_str()])
}

fn pack(fps: &[u64]) -> Value {
    let bytes: Vec<u8> = fps.iter().flat_map(|f| f.to_le_bytes()).collect();
    json!(base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes))
}

/// The page a chunk's part belongs to (parts are `<page>#<chunk>`).
fn page_of(part: &str) -> String {
    part.rsplit_once('#')
        .map_or(part, |(page, _)| page)
        .to_owned()
}

fn unpack(v: &Value, into: &mut impl Extend<u64>) {
    let Some(bytes) = v.as_str().and_then(|s| {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s)
            .ok()
    }) else {
        return;
    };
    into.extend(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())),
    );
}

/// The run's checkpoints and chunks, as one handle.
pub struct Checkpoints<'a> {
    pub store: &'a StateStore,
    pub scope: &'a Scope,
    pub run: RunId,
}

impl Checkpoints<'_> {
    pub async fn load_run(&self) -> Result<Option<RunProgress>, StoreError> {
        Ok(self
            .store
            .get_progress(self.scope, RUN)
            .await?
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    pub async fn save_run(&self, p: &RunProgress) -> Result<(), StoreError> {
        self.store.put_progress(self.scope, RUN, &json!(p)).await
    }

    pub async fn load_stream(&self, stream: Stream) -> Result<Option<StreamProgress>, StoreError> {
        Ok(self
            .store
            .get_progress(self.scope, &format!("stream#{stream}"))
            .await?
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    pub async fn save_stream(&self, stream: Stream, p: &StreamProgress) -> Result<(), StoreError> {
        self.store
            .put_progress(self.scope, &format!("stream#{stream}"), &json!(p))
            .await
    }

    /// Stores fingerprints of `kind` found at `at` (a stream's page).
    pub async fn put_fingerprints(
        &self,
        kind: &str,
        at: &str,
        fps: &[u64],
    ) -> Result<(), StoreError> {
        for (i, chunk) in fps.chunks(FINGERPRINTS_PER_CHUNK).enumerate() {
            let part = format!("{at}#{i:03}");
            self.store
                .put_run_chunk(self.scope, &self.run, kind, &part, &pack(chunk))
                .await?;
        }
        Ok(())
    }

    pub async fn fingerprints(&self, kind: &str) -> Result<HashSet<u64>, StoreError> {
        let mut set = HashSet::new();
        for v in self.store.run_chunks(self.scope, &self.run, kind).await? {
            unpack(&v, &mut set);
        }
        Ok(set)
    }

    /// Fingerprints of `kind` with the page each was found on, in page order.
    pub async fn fingerprints_by_page(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, Vec<u64>)>, StoreError> {
        let parts = self
            .store
            .run_chunk_parts(self.scope, &self.run, kind)
            .await?;
        Ok(parts
            .into_iter()
            .map(|(part, v)| {
                let mut fps = Vec::new();
                unpack(&v, &mut fps);
                (page_of(&part), fps)
            })
            .collect())
    }

    /// Entries of `kind` with the page each was found on, in page order.
    pub async fn entries_by_page<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut all = Vec::new();
        for (part, v) in self
            .store
            .run_chunk_parts(self.scope, &self.run, kind)
            .await?
        {
            let entries: Vec<T> = serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
                what: format!("run data {kind}"),
                problem: e.to_string(),
            })?;
            let page = page_of(&part);
            all.extend(entries.into_iter().map(|e| (page.clone(), e)));
        }
        Ok(all)
    }

    /// Stores entries of `kind` found at `at` (a stream's page).
    pub async fn put_entries<T: Serialize>(
        &self,
        kind: &str,
        at: &str,
        entries: &[T],
    ) -> Result<(), StoreError> {
        for (i, chunk) in entries.chunks(ENTRIES_PER_CHUNK).enumerate() {
            let part = format!("{at}#{i:04}");
            self.store
                .put_run_chunk(self.scope, &self.run, kind, &part, &json!(chunk))
                .await?;
        }
        Ok(())
    }

    /// Stores entries of `kind` at `at` in place of any stored there before
    /// (a write repeated after a crash may hold fewer chunks).
    pub async fn replace_entries<T: Serialize>(
        &self,
        kind: &str,
        at: &str,
        entries: &[T],
    ) -> Result<(), StoreError> {
        self.clear(kind, at).await?;
        self.put_entries(kind, at, entries).await
    }

    /// Drops everything a page recorded.
    pub async fn clear_page(&self, at: &str) -> Result<(), StoreError> {
        for kind in PAGE_KINDS {
            self.clear(kind, at).await?;
        }
        Ok(())
    }

    /// Drops what `kind` holds at `at`.
    pub async fn clear(&self, kind: &str, at: &str) -> Result<(), StoreError> {
        self.store
            .delete_run_chunk_parts(self.scope, &self.run, kind, &format!("{at}#"))
            .await
    }

    pub async fn entries<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut all = Vec::new();
        for v in self.store.run_chunks(self.scope, &self.run, kind).await? {
            let part: Vec<T> = serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
                what: format!("run data {kind}"),
                problem: e.to_string(),
            })?;
            all.extend(part);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_separate_parts() {
        // Pinned: a change here would break continuations across builds.
        assert_eq!(fingerprint(&["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        let mut set = HashSet::new();
        unpack(&pack(&[1, u64::MAX, 42]), &mut set);
        assert_eq!(set, HashSet::from([1, u64::MAX, 42]));
    }

    #[test]
    fn held_back_members_keep_their_role_and_read_old_checkpoints() {
        use crate::domain::{MemberKind, MemberRole};
        let id = |s: &str| SourceId::new(s).unwrap();
        let mut owner = Membership::new(id("g"), id("u"), MemberKind::User);
        owner.role = Some(MemberRole::Owner);
        owner.address = Some("u@example.com".parse().unwrap());
        let stored = json!([owner.clone(), ["g", "v"]]);
        let read: Vec<Membership> = serde_json::from_value::<Vec<PendingMember>>(stored)
            .unwrap()
            .into_iter()
            .map(Membership::from)
            .collect();
        assert_eq!(
            read,
            [owner, Membership::new(id("g"), id("v"), MemberKind::User)]
        );
    }
}
