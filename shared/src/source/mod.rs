//! The `DirectorySource` port: what every directory adapter (Graph, LDAP,
//! Google) gives the sync engine, page by page.
//!
//! A source has one or more *streams* (Graph: users, groups). Each stream is
//! read from a [`ReadFrom`] position and answers one [`SourcePage`] at a
//! time: the changes on that page, already mapped to the platform model, and
//! where the next page starts. The engine applies a page, then checkpoints
//! the position, so a run stopped anywhere resumes without redoing pages.

pub mod budget;
pub mod google;
pub mod graph;
pub mod http;
pub mod ldap;
pub mod retry;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{
    EmailAddress, Group, MemberKind, MemberRole, Membership, SourceId, User, WarningKind,
};

/// Where to read a stream from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "position", rename_all = "snake_case")]
pub enum ReadFrom {
    /// Enumerate everything from the start. Ends with a cursor for later
    /// delta reads where the source supports them.
    Full,
    /// Changes since a cursor returned at the end of an earlier read.
    Delta(String),
    /// The next page of a read in progress (a page position as returned).
    Continue(String),
}

/// One of a source's streams: every source reads users and groups (with
/// their memberships) as two streams the engine runs side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Users,
    Groups,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Users, Stream::Groups];

    /// The name in checkpoints, cursors and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Users => "users",
            Stream::Groups => "groups",
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine should do with one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    User(User),
    /// A user some of whose properties the source did not send: on a full
    /// read they are unset, on a delta read unchanged, so the engine lays
    /// the patch over the stored user (Graph's delta leaves out a property
    /// never set, and with `return=minimal` one unchanged).
    PartialUser(UserPatch),
    Group(Group),
    /// The object is gone from the source, or is no longer one the platform
    /// keeps (guest, no address…): remove the stored copy if there is one.
    RemoveUser {
        id: SourceId,
        reason: Removal,
    },
    RemoveGroup {
        id: SourceId,
        reason: Removal,
    },
    AddMembers {
        group: SourceId,
        members: Vec<Member>,
    },
    RemoveMembers {
        group: SourceId,
        members: Vec<Member>,
    },
    /// The group's complete member list (sources that cannot say what
    /// changed, like LDAP): stored members not listed are removed.
    ReplaceMembers {
        group: SourceId,
        members: Vec<Member>,
    },
    /// Something taken with a caveat (a user with two primary addresses):
    /// reported in the run, changes nothing.
    Note(crate::domain::ObjectWarning),
}

/// A note for a user whose `proxyAddresses` name more than one primary
/// (`SMTP:`) address: the first is the primary, the others are kept as
/// aliases, and the run says so.
pub fn extra_primaries<'a>(
    id: &SourceId,
    proxies: impl IntoIterator<Item = &'a str>,
) -> Option<Change> {
    let primaries: Vec<&str> = proxies
        .into_iter()
        .filter_map(|p| p.strip_prefix("SMTP:"))
        .collect();
    (primaries.len() > 1).then(|| {
        Change::Note(crate::domain::ObjectWarning {
            kind: WarningKind::ExtraPrimary,
            object: id.to_string(),
            detail: format!(
                "proxyAddresses name {} primary (SMTP:) addresses: {} is kept as the primary, {} as aliases; \
                 leave one SMTP: address in the directory",
                primaries.len(),
                primaries[0],
                primaries[1..].join(", ")
            ),
        })
    })
}

/// A user's fields as a source sent them; `None`: not sent.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPatch {
    pub id: SourceId,
    /// Primary address and aliases; `Some(None)`: sent, and there is none.
    pub addresses: Option<Option<(EmailAddress, BTreeSet<EmailAddress>)>>,
    pub user_principal_name: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    pub given_name: Option<Option<String>>,
    pub surname: Option<Option<String>>,
    pub enabled: Option<bool>,
    /// The attributes sent, by name; `None`: sent unset.
    pub attributes: BTreeMap<String, Option<String>>,
}

impl UserPatch {
    /// A patch that sends nothing yet.
    pub fn new(id: SourceId) -> Self {
        Self {
            id,
            addresses: None,
            user_principal_name: None,
            display_name: None,
            given_name: None,
            surname: None,
            enabled: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Whether every field is sent (attributes: those in `attributes`).
    pub fn is_complete(&self, attributes: &[&str]) -> bool {
        self.addresses.is_some()
            && self.user_principal_name.is_some()
            && self.display_name.is_some()
            && self.given_name.is_some()
            && self.surname.is_some()
            && self.enabled.is_some()
            && attributes.iter().all(|a| self.attributes.contains_key(*a))
    }

    /// The user with the sent fields laid over `base`, or, without one,
    /// over nothing (every field not sent unset, an account enabled). A
    /// user left without an address is not kept.
    pub fn onto(self, base: Option<&User>) -> Change {
        let addresses = match self.addresses {
            Some(sent) => sent,
            None => base.map(|b| (b.primary_email.clone(), b.aliases.clone())),
        };
        let Some((primary, aliases)) = addresses else {
            return no_address(self.id);
        };
        let pick = |sent: Option<Option<String>>, kept: Option<&Option<String>>| match sent {
            Some(v) => v,
            None => kept.cloned().flatten(),
        };
        let mut user = User::new(self.id, primary).with_aliases(aliases);
        user.user_principal_name = pick(
            self.user_principal_name,
            base.map(|b| &b.user_principal_name),
        );
        user.display_name = pick(self.display_name, base.map(|b| &b.display_name));
        user.given_name = pick(self.given_name, base.map(|b| &b.given_name));
        user.surname = pick(self.surname, base.map(|b| &b.surname));
        user.enabled = self.enabled.or(base.map(|b| b.enabled)).unwrap_or(true);
        user.attributes = base.map(|b| b.attributes.clone()).unwrap_or_default();
        for (name, value) in self.attributes {
            match value {
                Some(v) => user.attributes.insert(name, v),
                None => user.attributes.remove(&name),
            };
        }
        Change::User(user)
    }
}

/// A user the source has no address for: not kept, with the reason.
pub fn no_address(id: SourceId) -> Change {
    Change::RemoveUser {
        id,
        reason: Removal::Skipped {
            kind: WarningKind::NoAddress,
            detail:
                "no mail and no SMTP proxy address; give the user a mailbox or an email address"
                    .into(),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    pub id: SourceId,
    pub kind: MemberKind,
    pub role: Option<MemberRole>,
    /// See [`Membership::address`](crate::domain::Membership::address).
    pub address: Option<EmailAddress>,
}

impl Member {
    /// A member without role or address (what LDAP and Graph give).
    pub fn new(id: SourceId, kind: MemberKind) -> Self {
        Self {
            id,
            kind,
            role: None,
            address: None,
        }
    }

    /// The membership of this member in `group`.
    pub fn of(&self, group: &SourceId) -> Membership {
        Membership {
            group: group.clone(),
            member: self.id.clone(),
            member_kind: self.kind,
            role: self.role,
            address: self.address.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Deleted at the source for good.
    Deleted,
    /// Deleted but restorable at the source (Entra's recycle bin).
    SoftDeleted,
    /// Present at the source but not kept here, and why.
    Skipped { kind: WarningKind, detail: String },
}

/// Where a stream continues after a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// More pages: read `ReadFrom::Continue(position)`.
    Page(String),
    /// The stream is complete; store the cursor (if any) for the next delta.
    Done { cursor: Option<String> },
}

/// Requests a page took, for the run record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    pub requests: u64,
    pub throttled: u64,
    pub retries: u64,
}

impl RequestStats {
    pub fn add(&mut self, other: RequestStats) {
        self.requests += other.requests;
        self.throttled += other.throttled;
        self.retries += other.retries;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourcePage {
    pub changes: Vec<Change>,
    pub next: Next,
    pub stats: RequestStats,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The stored cursor is no longer valid (expired delta token, changed
    /// domain controller…): the engine starts a full read instead.
    #[error(
        "the source can no longer continue from the stored position ({0}); a full sync is needed"
    )]
    ResyncRequired(String),
    /// Credentials or consent problems; the message says what to do.
    #[error("{0}")]
    Auth(String),
    /// A permission is missing; the message names it.
    #[error("{0}")]
    Permission(String),
    /// The source stayed unavailable or throttled through every retry.
    #[error("{0}")]
    Unavailable(String),
    /// The source answered something we cannot read.
    #[error("{0}")]
    Protocol(String),
    /// The connector's settings are wrong for this source.
    #[error("{0}")]
    Config(String),
    /// The source asks for a longer wait than one invocation should spend
    /// (a quota counted per minute that stays exhausted): the run pauses at
    /// its last checkpoint and continues in a later invocation.
    #[error("{why}")]
    Paused {
        why: String,
        /// When the source expects to answer again.
        after: std::time::Duration,
    },
}

impl SourceError {
    /// Whether trying the same read later may succeed without anyone acting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Unavailable(_) | SourceError::Paused { .. }
        )
    }
}

/// The outcome of "Test connection": each step, and for the first that
/// failed, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub ok: bool,
    pub steps: Vec<ConnectionStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStep {
    pub name: String,
    pub ok: bool,
    /// What was found, or what went wrong and what to do about it.
    pub detail: String,
}

impl ConnectionReport {
    pub fn new() -> Self {
        Self {
            ok: true,
            steps: Vec::new(),
        }
    }

    pub fn passed(&mut self, name: &str, detail: impl Into<String>) {
        self.steps.push(ConnectionStep {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        });
    }

    pub fn failed(&mut self, name: &str, detail: impl Into<String>) {
        self.ok = false;
        self.steps.push(ConnectionStep {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        });
    }
}

impl Default for ConnectionReport {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
pub trait DirectorySource: Send + Sync {
    /// The streams, read concurrently by the engine.
    fn streams(&self) -> &'static [Stream] {
        &Stream::ALL
    }

    /// Reads one page of a stream.
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError>;

    /// Every request this source has sent since it was built, pages read
    /// and failed alike (a page's own [`SourcePage::stats`] cannot count a
    /// read that failed or a page read ahead and never applied). The
    /// engine records the difference over an invocation; a source that
    /// does not count (`None`) is summed from its pages.
    fn stats(&self) -> Option<RequestStats> {
        None
    }

    /// Checks credentials and reachability without syncing anything.
    async fn test_connection(&self) -> ConnectionReport;

    /// The ids this source gave objects until now and the ones it gives
    /// them from now on, when they differ (a Domino connector keyed by DN,
    /// now by `dominoUNID`): read whole from the directory, matched on what
    /// the old id was made of. Once it has answered, the source reads with
    /// the new ids; the engine re-keys the store with the answer before
    /// its run starts (see [`crate::store::StateStore::rekey`]). `None`:
    /// the stored ids are the source's.
    async fn identity_changes(&self) -> Result<Option<IdChanges>, SourceError> {
        Ok(None)
    }

    /// Reads with the new ids from now on, without asking which changed:
    /// the store was re-keyed already (by another invocation).
    fn use_new_ids(&self) {}
}

/// Old id → new id, for [`DirectorySource::identity_changes`].
pub type IdChanges = std::collections::HashMap<SourceId, SourceId>;
