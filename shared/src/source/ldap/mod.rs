//! Active Directory and Domino over LDAP: the `DirectorySource` for
//! on-premises directories, with a read-only service account.
//!
//! Each stream (users, groups) is read in pages (the paged-results
//! control, 1,000 entries a page), each page one `SourcePage`, so a run
//! checkpoints as it goes and stops at its invocation's deadline (see
//! [`paged`] for how a stream continues). Every exchange with the server
//! has a time limit ([`conn::Session`]). Groups carry their complete member
//! lists (ranged retrieval past 1,500 values, [`range`]) as
//! `ReplaceMembers`, one per group, within the page that holds the group:
//! its `member` values and, in AD, the users whose primary group it is,
//! limited to the users and groups the connector keeps ([`members`]). AD
//! contacts are not kept (the store has no contact objects), so they are
//! never listed as members either.
//!
//! Active Directory reads incrementally: the cursor holds the domain
//! controller's `invocationId` and `highestCommittedUSN`, read before each
//! read; later reads ask for `uSNChanged` above it (groups: also the
//! primary groups of the users changed since). A different DC (or a
//! restore) changes the `invocationId` and forces a full read. A read-only
//! account cannot see tombstones, so deletions are found by full reads (the
//! 23:00 window reads LDAP connectors in full).
//!
//! Every search runs over each of the connector's bases in turn ([`bases`]:
//! Domino's blank base DN is the whole directory); Domino's deny-access
//! group is resolved once per source and expanded through nesting
//! ([`deny`]).

pub mod bases;
pub mod conn;
pub mod deny;
pub use crate::domain::ldap_dn as dn;
pub mod map;
pub mod members;
pub mod paged;
pub mod range;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ldap3::{Scope, SearchEntry};

use crate::domain::{
    Connector, DominoIdentity, LdapSettings, MemberKind, ObjectWarning, SourceConfig, SourceId,
    WarningKind,
};
use crate::secrets::SecretStore;
use crate::source::{
    Change, ConnectionReport, DirectorySource, IdChanges, Member, Next, ReadFrom, RequestStats,
    SourceError, SourcePage, Stream,
};

use conn::{Limits, Query, Session};
use map::{all, dn_key, first, object_guid};
use members::Directory;
use paged::{Context, OpenSearch, Position};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    ActiveDirectory,
    Domino { deny_access_group: Option<String> },
}

pub struct LdapSource {
    settings: LdapSettings,
    flavor: Flavor,
    secrets: Arc<dyn SecretStore>,
    limits: Limits,
    /// Each stream's search between its pages (see [`paged`]).
    open: std::sync::Mutex<HashMap<Stream, OpenSearch>>,
    /// Every request sent, for [`DirectorySource::stats`].
    requests: Arc<AtomicU64>,
    /// The bases every search runs over, found once ([`bases`]).
    bases: tokio::sync::OnceCell<Vec<String>>,
    /// Domino: the deny-access group, read once ([`deny`]).
    denied: tokio::sync::OnceCell<deny::Denied>,
    /// Domino: objects identified by `dominoUNID` rather than by DN (see
    /// [`DominoIdentity`]); set once the stored ids are re-keyed.
    by_unid: std::sync::atomic::AtomicBool,
}

const AD_USERS: &str = "(&(objectCategory=person)(objectClass=user))";
const AD_GROUPS: &str = "(objectClass=group)";
const DOMINO_USERS: &str = "(objectClass=dominoPerson)";
const DOMINO_GROUPS: &str = "(objectClass=dominoGroup)";
const ANY: &str = "(objectClass=*)";

/// Also Domino's: `cn` and `FullName` (the name field, whose other values
/// may be Internet addresses), and `dominoUNID`, which is operational
/// there (sent only when asked for by name).
const USER_ATTRS: [&str; 15] = [
    "objectGUID",
    "objectClass",
    "mail",
    "proxyAddresses",
    "userPrincipalName",
    "displayName",
    "givenName",
    "sn",
    "userAccountControl",
    "department",
    "title",
    "uid",
    "cn",
    "FullName",
    map::UNID,
];
/// Active Directory hands out `member` in ranges of at most 1,500 (Windows)
/// and marks the last with `*`; asking for the first range explicitly makes
/// every DC answer in that form, so one code path reads all of them.
const AD_GROUP_ATTRS: [&str; 8] = [
    "objectGUID",
    "objectClass",
    "objectSid",
    "cn",
    "sAMAccountName",
    "mail",
    "groupType",
    "member;range=0-1499",
];
/// `groupType`: the group document's GroupType field (mail only, access
/// control only…).
const DOMINO_GROUP_ATTRS: [&str; 6] = [
    "objectClass",
    "cn",
    "mail",
    "groupType",
    "member",
    map::UNID,
];

impl LdapSource {
    pub fn for_connector(
        connector: &Connector,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<Self, SourceError> {
        let (settings, flavor, by_unid) = match &connector.source {
            SourceConfig::ActiveDirectory { ldap } => {
                (ldap.clone(), Flavor::ActiveDirectory, false)
            }
            SourceConfig::Domino {
                ldap,
                deny_access_group,
                identity,
            } => (
                ldap.clone(),
                Flavor::Domino {
                    deny_access_group: deny_access_group.clone(),
                },
                *identity == DominoIdentity::Unid,
            ),
            other => {
                return Err(SourceError::Config(format!(
                    "a {} connector is not read over LDAP",
                    other.kind()
                )));
            }
        };
        Ok(Self {
            settings,
            flavor,
            secrets,
            limits: Limits::default(),
            open: Default::default(),
            requests: Default::default(),
            bases: Default::default(),
            denied: Default::default(),
            by_unid: by_unid.into(),
        })
    }

    /// Other time and page limits than the defaults (tests use short ones).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn ad(&self) -> bool {
        self.flavor == Flavor::ActiveDirectory
    }

    async fn session(&self) -> Result<Session, SourceError> {
        let password = self
            .secrets
            .current(&self.settings.password)
            .await
            .map_err(|e| SourceError::Config(e.to_string()))?;
        Session::open(
            &self.settings,
            password.expose(),
            self.limits,
            self.requests.clone(),
        )
        .await
    }

    /// The bases every search runs over: as configured, a blank one
    /// resolved with the server's rootDSE (see [`bases`]).
    async fn bases(&self, session: &mut Session) -> Result<&[String], SourceError> {
        let resolved = self
            .bases
            .get_or_try_init(|| async {
                let configured = self.settings.bases();
                let root = if bases::is_root(&configured) {
                    Self::entry(session, "rootDSE read", "", &["namingContexts"]).await?
                } else {
                    None
                };
                Ok::<_, SourceError>(bases::resolve(configured, root.as_ref()))
            })
            .await?;
        Ok(resolved)
    }

    /// Every entry `filter` selects under every base (bases never
    /// overlap, so each entry once).
    async fn search_bases(
        session: &mut Session,
        bases: &[String],
        what: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, SourceError> {
        let mut entries = Vec::new();
        for base in bases {
            let what = format!("{what} under {}", bases::named(base));
            let q = Query {
                what: &what,
                base,
                scope: Scope::Subtree,
                filter,
                attrs,
            };
            entries.extend(Self::search_all(session, &q).await?);
        }
        Ok(entries)
    }

    fn filter(&self, users: bool) -> String {
        let (default, custom) = match (self.ad(), users) {
            (true, true) => (AD_USERS, &self.settings.user_filter),
            (true, false) => (AD_GROUPS, &self.settings.group_filter),
            (false, true) => (DOMINO_USERS, &self.settings.user_filter),
            (false, false) => (DOMINO_GROUPS, &self.settings.group_filter),
        };
        match custom {
            Some(c) => format!("(&{default}{c})"),
            None => default.to_owned(),
        }
    }

    /// One entry read by its DN (the rootDSE at ""), if it is there.
    async fn entry(
        session: &mut Session,
        what: &str,
        dn: &str,
        attrs: &[&str],
    ) -> Result<Option<SearchEntry>, SourceError> {
        let q = Query {
            what,
            base: dn,
            scope: Scope::Base,
            filter: ANY,
            attrs,
        };
        Ok(session.search(&q, None).await?.entries.into_iter().next())
    }

    /// Every entry of a subtree search, page after page (for lookups that
    /// must be whole before they are used).
    async fn search_all(
        session: &mut Session,
        q: &Query<'_>,
    ) -> Result<Vec<SearchEntry>, SourceError> {
        let mut entries = Vec::new();
        let mut cookie = Vec::new();
        loop {
            let found = session.search(q, Some(&cookie)).await?;
            entries.extend(found.entries);
            match found.cookie {
                Some(next) => cookie = next,
                None => return Ok(entries),
            }
        }
    }

    /// A group's `member` values, asking for further ranges while the
    /// server hands them out in parts (Windows DCs send at most 1,500).
    async fn members(
        session: &mut Session,
        entry: &SearchEntry,
    ) -> Result<Vec<String>, SourceError> {
        let mut members: Vec<String> = all(entry, range::MEMBER)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let Some((name, values)) = range::ranged(entry) else {
            return Ok(members);
        };
        let (mut asked, mut name, mut values) = (0, name.to_owned(), values.to_vec());
        loop {
            let next = range::next_start(&entry.dn, asked, &name, values.len())?;
            members.append(&mut values);
            let Some(start) = next else {
                return Ok(members);
            };
            let attr = range::ask_from(start);
            let what = format!("ranged retrieval of the members of {}", entry.dn);
            let found = Self::entry(session, &what, &entry.dn, &[attr.as_str()]).await?;
            let (n, v) = found
                .as_ref()
                .and_then(range::ranged)
                .ok_or_else(|| range::missing(&entry.dn, start))?;
            (asked, name, values) = (start, n.to_owned(), v.to_vec());
        }
    }

    fn id_of(&self, e: &SearchEntry) -> Option<SourceId> {
        if self.ad() {
            object_guid(e).and_then(|g| SourceId::new(g).ok())
        } else if self.by_unid.load(Ordering::Relaxed) {
            map::domino_unid(e).or_else(|| map::dn_id(e))
        } else {
            map::dn_id(e)
        }
    }

    /// Domino: a note for an entry kept by its DN for want of a
    /// `dominoUNID`, which its next rename will replace.
    fn note_unstable(&self, e: &SearchEntry, out: &mut Vec<Change>) {
        if !self.ad() && self.by_unid.load(Ordering::Relaxed) && map::domino_unid(e).is_none() {
            out.push(Change::Note(ObjectWarning {
                kind: WarningKind::NoStableId,
                object: e.dn.clone(),
                detail: "the server sent no dominoUNID for it: it is kept by its DN, so a rename or move \
                         will show as a removal and a creation"
                    .into(),
            }));
        }
    }

    fn kind_of(e: &SearchEntry) -> MemberKind {
        let group = all(e, "objectClass")
            .iter()
            .any(|c| c.eq_ignore_ascii_case("group") || c.eq_ignore_ascii_case("dominoGroup"));
        if group {
            MemberKind::Group
        } else {
            MemberKind::User
        }
    }

    /// Every user and group the connector's filters select (see
    /// [`members`]), on a session of its own: a second paged search on the
    /// groups' session would end the groups' own paging on some servers
    /// (OpenLDAP keeps one paged search per connection). Returns the
    /// requests it sent.
    async fn directory(&self) -> Result<(Directory, u64), SourceError> {
        let filter = format!("(|{}{})", self.filter(true), self.filter(false));
        let mut session = self.session().await?;
        let bases = self.bases(&mut session).await?;
        let attrs = [
            "objectGUID",
            "objectClass",
            "objectSid",
            "primaryGroupID",
            map::UNID,
        ];
        let what = "search for group members' DNs";
        let entries = Self::search_bases(&mut session, bases, what, &filter, &attrs).await?;
        let sent = session.sent + 1;
        session.close().await;
        let mut dir = Directory::default();
        for e in &entries {
            if let Some(id) = self.id_of(e) {
                let kind = Self::kind_of(e);
                dir.insert(e, Member::new(id, kind));
            }
        }
        Ok((dir, sent))
    }

    /// The DC's identity and its highest change number: (invocationId, USN).
    async fn position(&self, session: &mut Session) -> Result<(String, u64), SourceError> {
        let attrs = ["highestCommittedUSN", "dsServiceName"];
        let root = Self::entry(session, "rootDSE read", "", &attrs)
            .await?
            .ok_or_else(|| SourceError::Protocol("the server returned no rootDSE".into()))?;
        let usn: u64 = first(&root, "highestCommittedUSN")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                SourceError::Protocol(
                    "the rootDSE has no highestCommittedUSN: is this an Active Directory DC?"
                        .into(),
                )
            })?;
        let service = first(&root, "dsServiceName").unwrap_or_default().to_owned();
        let ntds = Self::entry(
            session,
            "domain controller read",
            &service,
            &["invocationId"],
        )
        .await?;
        let invocation = ntds
            .as_ref()
            .and_then(|e| map::binary(e, "invocationId"))
            .and_then(map::guid)
            .ok_or_else(|| {
                SourceError::Protocol(
                    "the domain controller's invocationId could not be read".into(),
                )
            })?;
        Ok((invocation, usn))
    }

    fn cursor(invocation: &str, usn: u64) -> String {
        format!("ad1:{invocation}:{usn}")
    }

    /// The USN to read changes above, or a resync when the DC changed.
    async fn since(
        &self,
        session: &mut Session,
        cursor: &str,
    ) -> Result<(u64, String, u64), SourceError> {
        let mut parts = cursor.splitn(3, ':');
        let (Some("ad1"), Some(inv), Some(usn)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SourceError::ResyncRequired(
                "the stored cursor is not an Active Directory position".into(),
            ));
        };
        let usn: u64 = usn
            .parse()
            .map_err(|_| SourceError::ResyncRequired("unreadable USN".into()))?;
        let (now_inv, now_usn) = self.position(session).await?;
        if now_inv != inv {
            return Err(SourceError::ResyncRequired(
                "a different domain controller (or a restored one) answered; its change numbers are not comparable".into(),
            ));
        }
        Ok((usn, now_inv, now_usn))
    }

    /// Domino: the deny-access group as read (once per source); `None`
    /// when the connector names none.
    async fn deny_group(
        &self,
        session: &mut Session,
    ) -> Result<Option<&deny::Denied>, SourceError> {
        let Flavor::Domino {
            deny_access_group: Some(given),
        } = &self.flavor
        else {
            return Ok(None);
        };
        let bases = self.bases(session).await?.to_vec();
        let denied = self
            .denied
            .get_or_try_init(|| Self::read_deny_group(session, &bases, given))
            .await?;
        Ok(Some(denied))
    }

    /// The people the deny-access group denies (their DN keys).
    async fn denied(&self, session: &mut Session) -> Result<HashSet<String>, SourceError> {
        Ok(self
            .deny_group(session)
            .await?
            .map(|d| d.people.clone())
            .unwrap_or_default())
    }

    /// `changed` (a filter term for groups changed since the cursor), or
    /// the primary group of a user it matches: a new user joins Domain Users
    /// without Domain Users changing. (A user whose `primaryGroupID` changes
    /// is moved by the DC into the old group's `member` and out of the new
    /// one's, so both groups change anyway.)
    async fn or_primary_groups(
        &self,
        session: &mut Session,
        changed: &str,
    ) -> Result<String, SourceError> {
        let filter = format!("(&{}{changed})", self.filter(true));
        let bases = self.bases(session).await?;
        let what = "search for changed users' primary groups";
        let attrs = ["objectSid", "primaryGroupID"];
        let mut groups: Vec<Vec<u8>> = Self::search_bases(session, bases, what, &filter, &attrs)
            .await?
            .iter()
            .filter_map(members::primary_group_sid)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let terms: String = groups.iter().map(|g| members::sid_filter(g)).collect();
        Ok(if terms.is_empty() {
            changed.to_owned()
        } else {
            format!("(|{changed}{terms})")
        })
    }

    /// The search filter for users (or groups) and the cursor to keep: on
    /// AD a delta reads what changed since the cursor's USN, a full read
    /// notes the position first; Domino has no change numbers.
    async fn read_filter(
        &self,
        session: &mut Session,
        from: &ReadFrom,
        users: bool,
    ) -> Result<(String, Option<String>), SourceError> {
        Ok(match (from, self.ad()) {
            (ReadFrom::Delta(c), true) => {
                let (usn, inv, now) = self.since(session, c).await?;
                let mut changed = format!("(uSNChanged>={})", usn + 1);
                if !users {
                    changed = self.or_primary_groups(session, &changed).await?;
                }
                (
                    format!("(&{}{changed})", self.filter(users)),
                    Some(Self::cursor(&inv, now)),
                )
            }
            (_, true) => {
                // The position first: changes made during the read are
                // read again next time (harmless) rather than missed.
                let (inv, usn) = self.position(session).await?;
                (self.filter(users), Some(Self::cursor(&inv, usn)))
            }
            (_, false) => (self.filter(users), None),
        })
    }

    /// Opens a stream's search as `from` says, before its first page.
    async fn begin(&self, stream: Stream, from: &ReadFrom) -> Result<OpenSearch, SourceError> {
        let mut session = self.session().await?;
        let users = stream == Stream::Users;
        let (filter, cursor) = self.read_filter(&mut session, from, users).await?;
        let bases = self.bases(&mut session).await?.to_vec();
        let context = match stream {
            Stream::Users => Context::Users {
                denied: self.denied(&mut session).await?,
            },
            Stream::Groups => Context::Groups { directory: None },
        };
        let position = Position {
            base: bases.first().cloned(),
            ..Position::starting(from)
        };
        Ok(OpenSearch {
            session,
            position,
            bases,
            at: 0,
            filter,
            cookie: Vec::new(),
            cursor,
            context,
            sent_elsewhere: 0,
            reported: 0,
        })
    }

    /// Reads the open search's next page into `changes`; says whether more
    /// pages follow.
    async fn page(
        &self,
        stream: Stream,
        open: &mut OpenSearch,
        changes: &mut Vec<Change>,
    ) -> Result<bool, SourceError> {
        let what = format!(
            "{stream} search under {} (page {})",
            bases::named(open.base()),
            open.position.pages + 1
        );
        let attrs = match (stream, self.ad()) {
            (Stream::Users, _) => &USER_ATTRS[..],
            (Stream::Groups, true) => &AD_GROUP_ATTRS[..],
            (Stream::Groups, false) => &DOMINO_GROUP_ATTRS[..],
        };
        let base = open.base().to_owned();
        let q = Query {
            what: &what,
            base: &base,
            scope: Scope::Subtree,
            filter: &open.filter,
            attrs,
        };
        let found = open.session.search(&q, Some(&open.cookie)).await?;
        match stream {
            Stream::Users => self.user_changes(open, &found.entries, changes),
            Stream::Groups => self.group_changes(open, &found.entries, changes).await?,
        }
        open.position.pages += 1;
        Ok(match found.cookie {
            Some(cookie) => {
                open.cookie = cookie;
                true
            }
            // This base is read whole: the next one, if any.
            None => open.next_base(),
        })
    }

    fn user_changes(&self, open: &OpenSearch, entries: &[SearchEntry], out: &mut Vec<Change>) {
        let no_one = HashSet::new();
        let denied = match &open.context {
            Context::Users { denied } => denied,
            Context::Groups { .. } => &no_one,
        };
        for e in entries {
            let Some(id) = self.id_of(e) else { continue };
            self.note_unstable(e, out);
            if self.ad() {
                let proxies = map::all(e, "proxyAddresses");
                let note = crate::source::extra_primaries(&id, proxies);
                out.push(map::ad_user(id, e));
                out.extend(note);
            } else {
                out.push(map::domino_user(id, e, denied.contains(&dn_key(&e.dn))));
            }
        }
    }

    /// Each group and its complete member list, read before the next group.
    async fn group_changes(
        &self,
        open: &mut OpenSearch,
        entries: &[SearchEntry],
        out: &mut Vec<Change>,
    ) -> Result<(), SourceError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Context::Groups { directory: None } = open.context {
            let (dir, sent) = self.directory().await?;
            open.sent_elsewhere += sent;
            open.context = Context::Groups {
                directory: Some(dir),
            };
        }
        let Context::Groups {
            directory: Some(dir),
        } = &open.context
        else {
            unreachable!("the directory was read above");
        };
        for e in entries {
            let Some(id) = self.id_of(e) else { continue };
            self.note_unstable(e, out);
            let group = if self.ad() {
                map::ad_group(id.clone(), e)
            } else {
                map::domino_group(id.clone(), e)
            };
            out.push(Change::Group(group));
            let listed = Self::members(&mut open.session, e).await?;
            let members = dir.members(e, &listed);
            out.push(Change::ReplaceMembers { group: id, members });
        }
        Ok(())
    }

    /// Domino: each user's and group's id by DN and its `dominoUNID`, for
    /// a connector keyed by DN until now.
    async fn unids_by_dn(&self) -> Result<IdChanges, SourceError> {
        let filter = format!("(|{}{})", self.filter(true), self.filter(false));
        let mut session = self.session().await?;
        let bases = self.bases(&mut session).await?;
        let what = "search for the documents' dominoUNIDs";
        let attrs = ["objectClass", map::UNID];
        let entries = Self::search_bases(&mut session, bases, what, &filter, &attrs).await?;
        session.close().await;
        Ok(entries
            .iter()
            .filter_map(|e| Some((map::dn_id(e)?, map::domino_unid(e)?)))
            .collect())
    }

    /// The held search a continuation asks for, if this source holds it.
    fn take_open(&self, stream: Stream, position: &Position) -> Option<OpenSearch> {
        let mut open = self.open.lock().expect("the open searches");
        // Whatever else is held for the stream is stale: dropped here.
        open.remove(&stream)
            .filter(|held| held.position == *position)
    }

    /// Reads `pages` pages of the open search as one `SourcePage`; holds
    /// the search for the continuation, or closes it at the end.
    async fn read_pages(
        &self,
        stream: Stream,
        mut open: OpenSearch,
        pages: u64,
    ) -> Result<SourcePage, SourceError> {
        let mut changes = Vec::new();
        for _ in 0..pages {
            if !self.page(stream, &mut open, &mut changes).await? {
                let stats = RequestStats {
                    requests: open.unreported(),
                    ..Default::default()
                };
                let cursor = open.cursor.take();
                open.session.close().await;
                let next = Next::Done { cursor };
                return Ok(SourcePage {
                    changes,
                    next,
                    stats,
                });
            }
        }
        let stats = RequestStats {
            requests: open.unreported(),
            ..Default::default()
        };
        let next = Next::Page(open.position.text());
        self.open
            .lock()
            .expect("the open searches")
            .insert(stream, open);
        Ok(SourcePage {
            changes,
            next,
            stats,
        })
    }
}

#[async_trait]
impl DirectorySource for LdapSource {
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let (open, pages) = match from {
            ReadFrom::Continue(text) => {
                let position = Position::parse(text);
                match self.take_open(stream, &position) {
                    Some(open) => (open, 1),
                    // Not held here: start again, and re-read the base up
                    // to the checkpoint and one page more (see `paged`).
                    None => {
                        let mut open = self.begin(stream, &position.from).await?;
                        let pages = open.resume_at(&position);
                        (open, pages)
                    }
                }
            }
            from => (self.begin(stream, from).await?, 1),
        };
        self.read_pages(stream, open, pages).await
    }

    fn stats(&self) -> Option<RequestStats> {
        Some(RequestStats {
            requests: self.requests.load(Ordering::Relaxed),
            ..Default::default()
        })
    }

    fn use_new_ids(&self) {
        if !self.ad() {
            self.by_unid.store(true, Ordering::Relaxed);
        }
    }

    async fn identity_changes(&self) -> Result<Option<IdChanges>, SourceError> {
        if self.ad() || self.by_unid.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let changes = self.unids_by_dn().await?;
        self.by_unid.store(true, Ordering::Relaxed);
        Ok(Some(changes))
    }

    async fn test_connection(&self) -> ConnectionReport {
        let mut report = ConnectionReport::new();
        let mut session = match self.session().await {
            Ok(s) => {
                report.passed(
                    "bind",
                    format!(
                        "signed in to {} as {}",
                        self.settings.url, self.settings.bind_dn
                    ),
                );
                s
            }
            Err(e) => {
                report.failed("bind", e.to_string());
                return report;
            }
        };
        if self.test_steps(&mut session, &mut report).await.is_some() {
            session.close().await;
        }
        report
    }
}

impl LdapSource {
    /// The connection test's steps after the bind; `None` once one failed.
    async fn test_steps(&self, session: &mut Session, report: &mut ConnectionReport) -> Option<()> {
        let bases = match self.bases(session).await {
            Ok(bases) => bases.to_vec(),
            Err(e) => {
                report.failed("base DN", e.to_string());
                return None;
            }
        };
        self.report_dropped_bases(&bases, report);
        let mut people = Vec::new();
        let mut all_found = true;
        for base in &bases {
            match self.test_base(session, base).await {
                Ok((found, detail)) => {
                    report.passed("base DN", detail);
                    people.extend(found);
                }
                Err(detail) => {
                    report.failed("base DN", detail);
                    all_found = false;
                }
            }
        }
        if !all_found {
            return None;
        }
        if self.ad() {
            match self.position(session).await {
                Ok((inv, usn)) => {
                    report.passed("domain controller", format!("invocation {inv}, USN {usn}"))
                }
                Err(e) => {
                    report.failed("domain controller", e.to_string());
                    return None;
                }
            }
        }
        report.passed(
            "users",
            format!("{} users visible to the service account", people.len()),
        );
        self.test_deny_group(session, &people, report).await
    }

    /// Bases given that lie under another are read with it: said so.
    fn report_dropped_bases(&self, bases: &[String], report: &mut ConnectionReport) {
        let configured = self.settings.bases();
        if bases::is_root(&configured) && bases.iter().any(|b| !b.is_empty()) {
            report.passed(
                "base DN",
                format!(
                    "blank: the whole directory; this server cannot search from the root, so its naming contexts are searched: {}",
                    bases.join("; ")
                ),
            );
        }
        for given in &configured {
            if let Some(outer) = bases::covering(given, bases) {
                report.passed(
                    "base DN",
                    format!("{given} lies under {outer}: its entries are read once, with it"),
                );
            }
        }
    }

    /// One base: that it exists, and the people and groups under it.
    /// Returns the people's DN keys and the step's detail.
    async fn test_base(
        &self,
        session: &mut Session,
        base: &str,
    ) -> Result<(Vec<String>, String), String> {
        if !base.is_empty() {
            match Self::entry(session, "base DN read", base, &["objectClass"]).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(format!(
                        "{base} was not found; check the connector's base DN"
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let one = [base.to_owned()];
        let (users, groups) = (self.filter(true), self.filter(false));
        let attrs = ["cn", map::UNID];
        let people = Self::search_bases(session, &one, "users search", &users, &attrs)
            .await
            .map_err(|e| e.to_string())?;
        let groups = Self::search_bases(session, &one, "groups search", &groups, &attrs)
            .await
            .map_err(|e| e.to_string())?;
        let (people_n, groups_n) = (people.len(), groups.len());
        let mut detail = if base.is_empty() {
            format!("the whole directory (blank base DN): {people_n} people and {groups_n} groups")
        } else {
            format!("{base} exists: {people_n} people and {groups_n} groups under it")
        };
        if !self.ad() {
            let without = people
                .iter()
                .chain(&groups)
                .filter(|e| map::domino_unid(e).is_none())
                .count();
            if without > 0 {
                detail += &format!(
                    "; {without} without a dominoUNID, kept by their DN (a rename replaces them)"
                );
            }
        }
        Ok((people.iter().map(|e| dn_key(&e.dn)).collect(), detail))
    }

    /// Domino: the deny-access group is there, and whom it denies.
    async fn test_deny_group(
        &self,
        session: &mut Session,
        people: &[String],
        report: &mut ConnectionReport,
    ) -> Option<()> {
        let denied = match self.deny_group(session).await {
            Ok(Some(d)) => d,
            Ok(None) => return Some(()),
            Err(e) => {
                report.failed("deny group", e.to_string());
                return None;
            }
        };
        let visible = people.iter().filter(|p| denied.people.contains(*p)).count();
        let nested = match denied.nested {
            0 => String::new(),
            1 => ", through 1 nested group".to_owned(),
            n => format!(", through {n} nested groups"),
        };
        report.passed(
            "deny group",
            format!(
                "{} denies {visible} of the people above (disabled at each sync){nested}",
                denied.group
            ),
        );
        Some(())
    }
}
