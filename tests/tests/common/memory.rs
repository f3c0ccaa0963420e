//! An in-memory directory source for engine scenarios: pages of a fixed
//! size, a change log for delta reads, and switchable interruptions.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use dirsync_shared::domain::{Group, GroupKind, MemberKind, SourceId, User};
use dirsync_shared::source::{
    Change, ConnectionReport, DirectorySource, Member, Next, ReadFrom, Removal, RequestStats,
    SourceError, SourcePage, Stream,
};

#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    /// group id → member id → kind
    pub members: BTreeMap<String, BTreeMap<String, MemberKind>>,
}

#[derive(Debug, Clone)]
enum Logged {
    User(String),
    Group(String),
    Member { group: String, member: String },
}

/// What a read should do at a given page number (counted across reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Never answer (the caller drops the future: a crash).
    Hang,
    /// A transient error.
    Unavailable,
}

pub struct MemorySource {
    pub page_size: usize,
    state: Mutex<State>,
    pub pages_read: AtomicU64,
    fault_at: Mutex<Option<(u64, Fault)>>,
    /// Simulated time per page (tokio sleep), for deadline tests.
    pub page_delay: Mutex<std::time::Duration>,
    /// More time per page of the groups stream, so that the users stream is
    /// applied first.
    pub groups_delay: Mutex<std::time::Duration>,
    /// Delta cursors below this version are refused (expired).
    pub oldest_cursor: AtomicU64,
}

struct State {
    dir: Directory,
    log: Vec<Logged>,
}

pub fn sid(s: &str) -> SourceId {
    SourceId::new(s).unwrap()
}

pub fn user(i: usize, domain: &str) -> User {
    let mut u = User::new(
        sid(&format!("u{i:05}")),
        format!("user{i}@{domain}").parse().unwrap(),
    )
    .with_aliases([format!("alias{i}@{domain}").parse().unwrap()]);
    u.display_name = Some(format!("User {i}"));
    u
}

pub fn group(i: usize) -> Group {
    Group::new(
        sid(&format!("g{i:04}")),
        format!("Group {i}"),
        GroupKind::Security,
    )
}

impl Directory {
    /// `users` users, `groups` groups, user i in groups i % groups and
    /// (i+1) % groups, group 1 nested in group 0.
    pub fn generate(users: usize, groups: usize, domain: &str) -> Self {
        let mut d = Directory::default();
        for i in 0..users {
            let u = user(i, domain);
            d.users.insert(u.id.to_string(), u);
        }
        for g in 0..groups {
            let gr = group(g);
            d.groups.insert(gr.id.to_string(), gr);
        }
        if groups > 0 {
            for i in 0..users {
                for g in [i % groups, (i + 1) % groups] {
                    d.members
                        .entry(format!("g{g:04}"))
                        .or_default()
                        .insert(format!("u{i:05}"), MemberKind::User);
                }
            }
            if groups > 1 {
                d.members
                    .entry("g0000".into())
                    .or_default()
                    .insert("g0001".into(), MemberKind::Group);
            }
        }
        d
    }
}

impl MemorySource {
    pub fn new(dir: Directory, page_size: usize) -> Self {
        Self {
            page_size,
            state: Mutex::new(State {
                dir,
                log: Vec::new(),
            }),
            pages_read: AtomicU64::new(0),
            fault_at: Mutex::new(None),
            page_delay: Mutex::new(std::time::Duration::ZERO),
            groups_delay: Mutex::new(std::time::Duration::ZERO),
            oldest_cursor: AtomicU64::new(0),
        }
    }

    pub fn directory(&self) -> Directory {
        self.state.lock().unwrap().dir.clone()
    }

    /// The `n`th page read from now on (1-based) misbehaves.
    pub fn fault_at(&self, n: u64, fault: Fault) {
        *self.fault_at.lock().unwrap() = Some((self.pages_read.load(Ordering::SeqCst) + n, fault));
    }

    pub fn clear_fault(&self) {
        *self.fault_at.lock().unwrap() = None;
    }

    pub fn mutate(&self, f: impl FnOnce(&mut Directory, &mut dyn FnMut(Touched))) {
        let mut st = self.state.lock().unwrap();
        let State { dir, log } = &mut *st;
        let mut touch = |t: Touched| {
            log.push(match t {
                Touched::User(id) => Logged::User(id),
                Touched::Group(id) => Logged::Group(id),
                Touched::Member(group, member) => Logged::Member { group, member },
            })
        };
        f(dir, &mut touch);
    }

    pub fn expire_cursors(&self) {
        let v = self.state.lock().unwrap().log.len() as u64 + 1;
        self.oldest_cursor.store(v, Ordering::SeqCst);
    }

    fn full_changes(&self, stream: &str) -> Vec<Change> {
        let st = self.state.lock().unwrap();
        match stream {
            "users" => st.dir.users.values().cloned().map(Change::User).collect(),
            _ => {
                let mut out = Vec::new();
                for g in st.dir.groups.values() {
                    out.push(Change::Group(g.clone()));
                    let members: Vec<Member> = st
                        .dir
                        .members
                        .get(g.id.as_str())
                        .map(|m| {
                            m.iter()
                                .map(|(id, kind)| Member::new(sid(id), *kind))
                                .collect()
                        })
                        .unwrap_or_default();
                    if !members.is_empty() {
                        out.push(Change::AddMembers {
                            group: g.id.clone(),
                            members,
                        });
                    }
                }
                out
            }
        }
    }

    fn delta_changes(&self, stream: &str, since: usize) -> Vec<Change> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for entry in &st.log[since.min(st.log.len())..] {
            match (stream, entry) {
                ("users", Logged::User(id)) => out.push(match st.dir.users.get(id) {
                    Some(u) => Change::User(u.clone()),
                    None => Change::RemoveUser {
                        id: sid(id),
                        reason: Removal::Deleted,
                    },
                }),
                ("groups", Logged::Group(id)) => out.push(match st.dir.groups.get(id) {
                    Some(g) => Change::Group(g.clone()),
                    None => Change::RemoveGroup {
                        id: sid(id),
                        reason: Removal::Deleted,
                    },
                }),
                ("groups", Logged::Member { group, member }) => {
                    let kind = st
                        .dir
                        .members
                        .get(group)
                        .and_then(|m| m.get(member))
                        .copied();
                    out.push(match kind {
                        Some(kind) => Change::AddMembers {
                            group: sid(group),
                            members: vec![Member::new(sid(member), kind)],
                        },
                        None => Change::RemoveMembers {
                            group: sid(group),
                            members: vec![Member::new(sid(member), MemberKind::User)],
                        },
                    });
                }
                _ => {}
            }
        }
        out
    }
}

pub enum Touched {
    User(String),
    Group(String),
    Member(String, String),
}

/// Positions are `<kind>:<version>:<offset>` — kind `f` (full) or `d`
/// (delta since version).
#[async_trait]
impl DirectorySource for MemorySource {
    async fn read(&self, stream: Stream, from: &ReadFrom) -> Result<SourcePage, SourceError> {
        let stream = stream.as_str();
        let n = self.pages_read.fetch_add(1, Ordering::SeqCst) + 1;
        let fault = *self.fault_at.lock().unwrap();
        if let Some((at, f)) = fault
            && at == n
        {
            match f {
                Fault::Hang => std::future::pending::<()>().await,
                Fault::Unavailable => {
                    return Err(SourceError::Unavailable("the test source is down".into()));
                }
            }
        }
        let mut delay = *self.page_delay.lock().unwrap();
        if stream == "groups" {
            delay += *self.groups_delay.lock().unwrap();
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let version = self.state.lock().unwrap().log.len();
        let (kind, since, offset) = match from {
            ReadFrom::Full => ("f", version, 0),
            ReadFrom::Delta(c) => {
                let v: usize = c
                    .strip_prefix("v")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| SourceError::Protocol("bad cursor".into()))?;
                if (v as u64) < self.oldest_cursor.load(Ordering::SeqCst) {
                    return Err(SourceError::ResyncRequired("cursor expired".into()));
                }
                ("d", v, 0)
            }
            ReadFrom::Continue(p) => {
                let parts: Vec<&str> = p.split(':').collect();
                (
                    if parts[0] == "f" { "f" } else { "d" },
                    parts[1].parse().unwrap(),
                    parts[2].parse().unwrap(),
                )
            }
        };
        let all = if kind == "f" {
            self.full_changes(stream)
        } else {
            self.delta_changes(stream, since)
        };
        let end = (offset + self.page_size).min(all.len());
        let changes = all[offset.min(all.len())..end].to_vec();
        let next = if end < all.len() {
            Next::Page(format!("{kind}:{since}:{end}"))
        } else {
            // The cursor of a read is the log version when it started (a
            // full read) or the version now (a delta read).
            let at = if kind == "f" { since } else { version };
            Next::Done {
                cursor: Some(format!("v{at}")),
            }
        };
        Ok(SourcePage {
            changes,
            next,
            stats: RequestStats {
                requests: 1,
                ..Default::default()
            },
        })
    }

    async fn test_connection(&self) -> ConnectionReport {
        let mut r = ConnectionReport::new();
        r.passed("memory", "always reachable");
        r
    }
}
