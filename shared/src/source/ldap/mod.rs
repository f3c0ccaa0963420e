//! Active Directory and Domino over LDAP: the `DirectorySource` for
//! on-premises directories, with a read-only service account.
//!
//! Each stream (users, groups) is read in one paged search (pages of 1,000,
//! the paged-results control), so a stream is one `SourcePage`: an LDAP
//! paging cookie does not survive the connection, and reading a whole
//! directory takes seconds. Groups carry their complete member lists
//! (ranged retrieval past 1,500 values) as `ReplaceMembers`.
//!
//! Active Directory reads incrementally: the cursor holds the domain
//! controller's `invocationId` and `highestCommittedUSN`, read before each
//! read; later reads ask for `uSNChanged` above it. A different DC (or a
//! restore) changes the `invocationId` and forces a full read. A read-only
//! account cannot see tombstones, so deletions are found by full reads (the
//! 23:00 window reads LDAP connectors in full).

pub mod conn;
pub mod map;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use ldap3::adapters::{Adapter, PagedResults};
use ldap3::{Ldap, Scope, SearchEntry};

use crate::domain::{Connector, LdapSettings, MemberKind, SourceConfig, SourceId};
use crate::secrets::SecretStore;
use crate::source::{
    Change, ConnectionReport, DirectorySource, Member, Next, ReadFrom, RequestStats, SourceError,
    SourcePage, Stream,
};

use map::{Directory, all, dn_key, first, object_guid};

const PAGE: i32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavor {
    ActiveDirectory,
    Domino { deny_access_group: Option<String> },
}

pub struct LdapSource {
    settings: LdapSettings,
    flavor: Flavor,
    secrets: Arc<dyn SecretStore>,
}

const AD_USERS: &str = "(&(objectCategory=person)(objectClass=user))";
const AD_GROUPS: &str = "(objectClass=group)";
const DOMINO_USERS: &str = "(objectClass=dominoPerson)";
const DOMINO_GROUPS: &str = "(objectClass=dominoGroup)";

const USER_ATTRS: [&str; 13] = [
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
];
/// Active Directory hands out `member` in ranges of at most 1,500 (Windows)
/// and marks the last with `*`; asking for the first range explicitly makes
/// every DC answer in that form, so one code path reads all of them.
const AD_GROUP_ATTRS: [&str; 7] = [
    "objectGUID",
    "objectClass",
    "cn",
    "sAMAccountName",
    "mail",
    "groupType",
    "member;range=0-1499",
];
const DOMINO_GROUP_ATTRS: [&str; 4] = ["objectClass", "cn", "mail", "member"];

fn ldap_error(what: &str, e: ldap3::LdapError) -> SourceError {
    SourceError::Unavailable(format!("LDAP {what} failed: {e}"))
}

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
        })
    }

    fn ad(&self) -> bool {
        self.flavor == Flavor::ActiveDirectory
    }

    async fn session(&self) -> Result<Ldap, SourceError> {
        let password = self
            .secrets
            .current(&self.settings.password)
            .await
            .map_err(|e| SourceError::Config(e.to_string()))?;
        conn::connect(&self.settings, password.expose()).await
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

    /// Every entry of a subtree search, in pages of 1,000; referrals (which
    /// searches from a domain root return) are passed over.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        stats: &mut RequestStats,
    ) -> Result<Vec<SearchEntry>, SourceError> {
        let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> =
            vec![Box::new(PagedResults::new(PAGE))];
        let mut stream = ldap
            .streaming_search_with(adapters, base, scope, filter, attrs.to_vec())
            .await
            .map_err(|e| ldap_error("search", e))?;
        let mut entries = Vec::new();
        while let Some(entry) = stream.next().await.map_err(|e| ldap_error("search", e))? {
            if entry.is_ref() || entry.is_intermediate() {
                continue;
            }
            entries.push(SearchEntry::construct(entry));
        }
        let result = stream.finish().await;
        stats.requests += 1 + entries.len() as u64 / PAGE as u64;
        match result.rc {
            0 | 10 => Ok(entries),
            32 => Err(SourceError::Config(format!(
                "the base DN {base:?} does not exist in the directory: check the connector's base DN"
            ))),
            rc => Err(SourceError::Unavailable(format!(
                "LDAP search failed (result {rc}: {})",
                result.text
            ))),
        }
    }

    /// A group's `member` values, asking for further ranges when the server
    /// returns them in parts (Windows DCs send at most 1,500 at a time).
    async fn members(
        &self,
        ldap: &mut Ldap,
        entry: &SearchEntry,
        stats: &mut RequestStats,
    ) -> Result<Vec<String>, SourceError> {
        let mut members: Vec<String> = all(entry, "member")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut ranged = entry
            .attrs
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase().starts_with("member;range="))
            .map(|(k, v)| (k.clone(), v.clone()));
        while let Some((name, values)) = ranged.take() {
            members.extend(values);
            let range = name.split_once('=').map(|(_, r)| r).unwrap_or_default();
            let Some((_, end)) = range.split_once('-') else {
                break;
            };
            if end == "*" {
                break;
            }
            let next_start: u64 = end
                .parse::<u64>()
                .map_err(|_| SourceError::Protocol(format!("bad range {name}")))?
                + 1;
            let attr = format!("member;range={next_start}-*");
            let found = self
                .search(
                    ldap,
                    &entry.dn,
                    Scope::Base,
                    "(objectClass=*)",
                    &[attr.as_str()],
                    stats,
                )
                .await?;
            ranged = found.first().and_then(|e| {
                e.attrs
                    .iter()
                    .find(|(k, _)| k.to_ascii_lowercase().starts_with("member;range="))
                    .map(|(k, v)| (k.clone(), v.clone()))
            });
        }
        Ok(members)
    }

    fn id_of(&self, e: &SearchEntry) -> Option<SourceId> {
        if self.ad() {
            object_guid(e).and_then(|g| SourceId::new(g).ok())
        } else {
            SourceId::new(dn_key(&e.dn)).ok()
        }
    }

    fn kind_of(e: &SearchEntry) -> MemberKind {
        let classes: Vec<String> = all(e, "objectClass")
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if classes.iter().any(|c| c == "group" || c == "dominogroup") {
            MemberKind::Group
        } else if classes.iter().any(|c| c == "contact") {
            MemberKind::Contact
        } else {
            MemberKind::User
        }
    }

    /// DN → (id, kind) of every user, group and contact under the base.
    async fn directory(
        &self,
        ldap: &mut Ldap,
        stats: &mut RequestStats,
    ) -> Result<Directory, SourceError> {
        let filter = if self.ad() {
            "(|(objectClass=user)(objectClass=group)(objectClass=contact))"
        } else {
            "(|(objectClass=dominoPerson)(objectClass=dominoGroup))"
        };
        let entries = self
            .search(
                ldap,
                &self.settings.base_dn,
                Scope::Subtree,
                filter,
                &["objectGUID", "objectClass"],
                stats,
            )
            .await?;
        Ok(entries
            .iter()
            .filter_map(|e| Some((dn_key(&e.dn), (self.id_of(e)?, Self::kind_of(e)))))
            .collect())
    }

    /// The DC's identity and its highest change number: (invocationId, USN).
    async fn position(
        &self,
        ldap: &mut Ldap,
        stats: &mut RequestStats,
    ) -> Result<(String, u64), SourceError> {
        let root = self
            .search(
                ldap,
                "",
                Scope::Base,
                "(objectClass=*)",
                &["highestCommittedUSN", "dsServiceName"],
                stats,
            )
            .await?;
        let root = root
            .first()
            .ok_or_else(|| SourceError::Protocol("the server returned no rootDSE".into()))?;
        let usn: u64 = first(root, "highestCommittedUSN")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                SourceError::Protocol(
                    "the rootDSE has no highestCommittedUSN: is this an Active Directory DC?"
                        .into(),
                )
            })?;
        let service = first(root, "dsServiceName").unwrap_or_default().to_owned();
        let ntds = self
            .search(
                ldap,
                &service,
                Scope::Base,
                "(objectClass=*)",
                &["invocationId"],
                stats,
            )
            .await?;
        let invocation = ntds
            .first()
            .and_then(|e| {
                e.bin_attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("invocationId"))
                    .and_then(|(_, v)| v.first())
                    .and_then(|b| map::guid(b))
                    .or_else(|| first(e, "invocationId").and_then(|s| map::guid(s.as_bytes())))
            })
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
        ldap: &mut Ldap,
        cursor: &str,
        stats: &mut RequestStats,
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
        let (now_inv, now_usn) = self.position(ldap, stats).await?;
        if now_inv != inv {
            return Err(SourceError::ResyncRequired(
                "a different domain controller (or a restored one) answered; its change numbers are not comparable".into(),
            ));
        }
        Ok((usn, now_inv, now_usn))
    }

    async fn denied(
        &self,
        ldap: &mut Ldap,
        stats: &mut RequestStats,
    ) -> Result<HashSet<String>, SourceError> {
        let Flavor::Domino {
            deny_access_group: Some(group),
        } = &self.flavor
        else {
            return Ok(HashSet::new());
        };
        let found = self
            .search(
                ldap,
                group,
                Scope::Base,
                "(objectClass=*)",
                &["member"],
                stats,
            )
            .await?;
        Ok(found
            .first()
            .map(|e| all(e, "member").iter().map(|m| dn_key(m)).collect())
            .unwrap_or_default())
    }

    /// The search filter for users (or groups) and the cursor to keep: on
    /// AD a delta reads what changed since the cursor's USN, a full read
    /// notes the position first; Domino has no change numbers.
    async fn read_filter(
        &self,
        ldap: &mut Ldap,
        from: &ReadFrom,
        users: bool,
        stats: &mut RequestStats,
    ) -> Result<(String, Option<String>), SourceError> {
        Ok(match (from, self.ad()) {
            (ReadFrom::Delta(c), true) => {
                let (usn, inv, now) = self.since(ldap, c, stats).await?;
                (
                    format!("(&{}(uSNChanged>={}))", self.filter(users), usn + 1),
                    Some(Self::cursor(&inv, now)),
                )
            }
            (_, true) => {
                // The position first: changes made during the read are
                // read again next time (harmless) rather than missed.
                let (inv, usn) = self.position(ldap, stats).await?;
                (self.filter(users), Some(Self::cursor(&inv, usn)))
            }
            (_, false) => (self.filter(users), None),
        })
    }

    async fn read_users(&self, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let mut stats = RequestStats::default();
        let mut ldap = self.session().await?;
        let (filter, cursor) = self.read_filter(&mut ldap, from, true, &mut stats).await?;
        let denied = self.denied(&mut ldap, &mut stats).await?;
        let entries = self
            .search(
                &mut ldap,
                &self.settings.base_dn,
                Scope::Subtree,
                &filter,
                &USER_ATTRS,
                &mut stats,
            )
            .await?;
        let changes = entries
            .iter()
            .filter_map(|e| {
                let id = self.id_of(e)?;
                Some(if self.ad() {
                    map::ad_user(id, e)
                } else {
                    map::domino_user(id, e, denied.contains(&dn_key(&e.dn)))
                })
            })
            .collect();
        let _ = ldap.unbind().await;
        Ok(SourcePage {
            changes,
            next: Next::Done { cursor },
            stats,
        })
    }

    async fn read_groups(&self, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let mut stats = RequestStats::default();
        let mut ldap = self.session().await?;
        let (filter, cursor) = self.read_filter(&mut ldap, from, false, &mut stats).await?;
        let entries = self
            .search(
                &mut ldap,
                &self.settings.base_dn,
                Scope::Subtree,
                &filter,
                if self.ad() {
                    &AD_GROUP_ATTRS[..]
                } else {
                    &DOMINO_GROUP_ATTRS[..]
                },
                &mut stats,
            )
            .await?;
        let dir = if entries.is_empty() {
            Directory::new()
        } else {
            self.directory(&mut ldap, &mut stats).await?
        };
        let mut changes = Vec::with_capacity(entries.len() * 2);
        for e in &entries {
            let Some(id) = self.id_of(e) else { continue };
            changes.push(Change::Group(map::group(id.clone(), e, self.ad())));
            let members: Vec<Member> = self
                .members(&mut ldap, e, &mut stats)
                .await?
                .iter()
                .filter_map(|dn| dir.get(&dn_key(dn)))
                .map(|(id, kind)| Member {
                    id: id.clone(),
                    kind: *kind,
                })
                .collect();
            changes.push(Change::ReplaceMembers { group: id, members });
        }
        let _ = ldap.unbind().await;
        Ok(SourcePage {
            changes,
            next: Next::Done { cursor },
            stats,
        })
    }
}

#[async_trait]
impl DirectorySource for LdapSource {
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        // A stream is one page: a continuation (never handed out) reads afresh.
        let from = match from {
            ReadFrom::Continue(_) => &ReadFrom::Full,
            other => other,
        };
        match stream {
            Stream::Users => self.read_users(from).await,
            Stream::Groups => self.read_groups(from).await,
        }
    }

    async fn test_connection(&self) -> ConnectionReport {
        let mut report = ConnectionReport::new();
        let mut stats = RequestStats::default();
        let mut ldap = match self.session().await {
            Ok(l) => {
                report.passed(
                    "bind",
                    format!(
                        "signed in to {} as {}",
                        self.settings.url, self.settings.bind_dn
                    ),
                );
                l
            }
            Err(e) => {
                report.failed("bind", e.to_string());
                return report;
            }
        };
        match self
            .search(
                &mut ldap,
                &self.settings.base_dn,
                Scope::Base,
                "(objectClass=*)",
                &["objectClass"],
                &mut stats,
            )
            .await
        {
            Ok(found) if !found.is_empty() => {
                report.passed("base DN", format!("{} exists", self.settings.base_dn))
            }
            Ok(_) => {
                report.failed(
                    "base DN",
                    format!(
                        "{} was not found; check the connector's base DN",
                        self.settings.base_dn
                    ),
                );
                return report;
            }
            Err(e) => {
                report.failed("base DN", e.to_string());
                return report;
            }
        }
        if self.ad() {
            match self.position(&mut ldap, &mut stats).await {
                Ok((inv, usn)) => {
                    report.passed("domain controller", format!("invocation {inv}, USN {usn}"))
                }
                Err(e) => {
                    report.failed("domain controller", e.to_string());
                    return report;
                }
            }
        }
        match self
            .search(
                &mut ldap,
                &self.settings.base_dn,
                Scope::Subtree,
                &self.filter(true),
                &["cn"],
                &mut stats,
            )
            .await
        {
            Ok(found) => report.passed(
                "users",
                format!("{} users visible to the service account", found.len()),
            ),
            Err(e) => report.failed("users", e.to_string()),
        }
        let _ = ldap.unbind().await;
        report
    }
}
