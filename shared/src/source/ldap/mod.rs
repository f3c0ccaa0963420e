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

pub mod conn;
pub mod dn;
pub mod map;
pub mod members;
pub mod paged;
pub mod range;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ldap3::{Scope, SearchEntry};

use crate::domain::{Connector, LdapSettings, MemberKind, SourceConfig, SourceId};
use crate::secrets::SecretStore;
use crate::source::{
    Change, ConnectionReport, DirectorySource, Member, Next, ReadFrom, RequestStats, SourceError,
    SourcePage, Stream,
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
}

const AD_USERS: &str = "(&(objectCategory=person)(objectClass=user))";
const AD_GROUPS: &str = "(objectClass=group)";
const DOMINO_USERS: &str = "(objectClass=dominoPerson)";
const DOMINO_GROUPS: &str = "(objectClass=dominoGroup)";
const ANY: &str = "(objectClass=*)";

/// Also Domino's: `cn` and `FullName` (the name field, whose other values
/// may be Internet addresses).
const USER_ATTRS: [&str; 14] = [
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
const DOMINO_GROUP_ATTRS: [&str; 5] = ["objectClass", "cn", "mail", "groupType", "member"];

impl LdapSource {
    pub fn for_connector(
        connector: &Connector,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<Self, SourceError> {
        let (settings, flavor) = match &connector.source {
            SourceConfig::ActiveDirectory { ldap } => (ldap.clone(), Flavor::ActiveDirectory),
            SourceConfig::Domino {
                ldap,
                deny_access_group,
            } => (
                ldap.clone(),
                Flavor::Domino {
                    deny_access_group: deny_access_group.clone(),
                },
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
        } else {
            // The DN as first stored (lower-cased as written), not its
            // comparison key: ids already stored must not change.
            SourceId::new(e.dn.to_ascii_lowercase()).ok()
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
        let q = Query {
            what: "search for group members' DNs",
            base: &self.settings.base_dn,
            scope: Scope::Subtree,
            filter: &filter,
            attrs: &["objectGUID", "objectClass", "objectSid", "primaryGroupID"],
        };
        let entries = Self::search_all(&mut session, &q).await?;
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

    async fn denied(&self, session: &mut Session) -> Result<HashSet<String>, SourceError> {
        let Flavor::Domino {
            deny_access_group: Some(group),
        } = &self.flavor
        else {
            return Ok(HashSet::new());
        };
        let found = Self::entry(session, "deny-access group read", group, &["member"]).await?;
        Ok(found
            .map(|e| all(&e, "member").iter().map(|m| dn_key(m)).collect())
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
        let q = Query {
            what: "search for changed users' primary groups",
            base: &self.settings.base_dn,
            scope: Scope::Subtree,
            filter: &filter,
            attrs: &["objectSid", "primaryGroupID"],
        };
        let mut groups: Vec<Vec<u8>> = Self::search_all(session, &q)
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
        let context = match stream {
            Stream::Users => Context::Users {
                denied: self.denied(&mut session).await?,
            },
            Stream::Groups => Context::Groups { directory: None },
        };
        Ok(OpenSearch {
            session,
            position: Position::starting(from),
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
        let what = format!("{stream} search (page {})", open.position.pages + 1);
        let attrs = match (stream, self.ad()) {
            (Stream::Users, _) => &USER_ATTRS[..],
            (Stream::Groups, true) => &AD_GROUP_ATTRS[..],
            (Stream::Groups, false) => &DOMINO_GROUP_ATTRS[..],
        };
        let q = Query {
            what: &what,
            base: &self.settings.base_dn,
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
            None => false,
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
                    // Not held here: start again, and re-read up to the
                    // checkpoint and one page more (see `paged`).
                    None => (
                        self.begin(stream, &position.from).await?,
                        position.pages + 1,
                    ),
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
        let base = &self.settings.base_dn;
        match Self::entry(session, "base DN read", base, &["objectClass"]).await {
            Ok(Some(_)) => report.passed("base DN", format!("{base} exists")),
            Ok(None) => {
                let detail = format!("{base} was not found; check the connector's base DN");
                report.failed("base DN", detail);
                return None;
            }
            Err(e) => {
                report.failed("base DN", e.to_string());
                return None;
            }
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
        let filter = self.filter(true);
        let q = Query {
            what: "users search",
            base,
            scope: Scope::Subtree,
            filter: &filter,
            attrs: &["cn"],
        };
        match Self::search_all(session, &q).await {
            Ok(found) => report.passed(
                "users",
                format!("{} users visible to the service account", found.len()),
            ),
            Err(e) => report.failed("users", e.to_string()),
        }
        Some(())
    }
}
