//! The sweep at the end of a run: what a full read did not see, the
//! membership removals the source asked for (held since their page), and
//! memberships that point at users the platform does not keep.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt, stream};

use crate::domain::{DeletionGuard, Group, MemberKind, Membership, SourceId};
use crate::store::{Scope, StoreError, all_pages, each_page};

use super::plan::{HeldAction, Weighed};
use super::progress::{membership_fp, user_fp};
use super::{Gathered, SyncEngine};

/// A store read run a few at a time. Boxed with an explicit `Send`: through
/// the closures that build them the compiler cannot prove it, and a run must
/// be spawnable.
type Read<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the sweep found besides held object actions.
#[derive(Default)]
pub(super) struct Sweep {
    /// Removals of memberships the platform's view shows: under the guard.
    pub memberships: Vec<Membership>,
    /// Memberships that point at users the platform does not keep (skipped
    /// by policy, never stored). They are outside the guard's count
    /// (counting them let a first sync with many out-of-scope group members
    /// stage), but a group's member list shows them, so a staged run keeps
    /// them too.
    pub stale_memberships: Vec<Membership>,
    /// Held-back memberships whose users turned out to be kept.
    pub late_members: Vec<Membership>,
    /// Memberships whose kind the run changes: a member the source listed
    /// as a user that is no user of the directory becomes an external
    /// recipient (it has an address), and one that became a user of the
    /// directory is one again. Not destructive: the group still delivers.
    pub retyped: Vec<Membership>,
    /// Why nothing was swept, when a full read came back empty.
    pub refused: Option<String>,
    /// Stored totals, where the run counted them (the guard's percentages).
    pub stored_users: Option<u64>,
    pub stored_groups: Option<u64>,
    pub stored_memberships: Option<u64>,
    /// Members stored per group, for the groups the full sweep listed.
    pub group_sizes: HashMap<SourceId, u64>,
}

/// What a sweep is asked to do.
#[derive(Clone, Copy)]
pub(super) struct SweepOf<'a> {
    pub users_full: bool,
    pub groups_full: bool,
    /// The run began on an empty store and recorded the users its
    /// memberships point at ([`RunProgress::member_users_recorded`](super::progress::RunProgress)).
    pub first_sync: bool,
    pub guard: &'a DeletionGuard,
}

/// Users as listed from the store: a fingerprint each, and the unseen.
#[derive(Default)]
struct ListedUsers {
    stored: u64,
    fps: HashSet<u64>,
    unseen: Vec<HeldAction>,
}

impl Sweep {
    /// The retyped memberships that count as changed. One made an external
    /// recipient was written as a user's by this very run (a stored one
    /// would have been removed as pointing at no user by the run before):
    /// the run added it, it did not change it.
    pub fn changed_kinds(&self) -> u64 {
        self.retyped
            .iter()
            .filter(|m| m.member_kind != MemberKind::External)
            .count() as u64
    }
}

/// One group's stored members as the sweep found them.
struct SweptGroup {
    group: SourceId,
    stored: u64,
    removals: Vec<Membership>,
    retyped: Vec<Membership>,
}

/// What the sweep knows to judge a stored membership by.
struct MemberCheck<'a> {
    /// The memberships the full read of groups listed.
    seen_members: &'a HashSet<u64>,
    /// The users stored.
    stored_users: &'a HashSet<u64>,
    /// The groups stored (every group the full read of groups listed).
    stored_groups: &'a HashSet<u64>,
    /// After a full read of users: those it read (kept or skipped). A
    /// member none of them is from outside the directory.
    read_users: Option<(&'a HashSet<u64>, HashSet<u64>)>,
}

enum Verdict {
    Keep,
    Remove,
    Retype(MemberKind),
}

impl MemberCheck<'_> {
    fn verdict(&self, m: &Membership) -> Verdict {
        if !self
            .seen_members
            .contains(&membership_fp(&m.group, &m.member))
        {
            return Verdict::Remove;
        }
        let fp = user_fp(&m.member);
        let stored = self.stored_users.contains(&fp);
        // Read as a user of the directory, kept or not.
        let read = self
            .read_users
            .as_ref()
            .map(|(seen, skipped)| seen.contains(&fp) || skipped.contains(&fp));
        let addressed = m.address.is_some();
        match m.member_kind {
            MemberKind::User if stored => Verdict::Keep,
            MemberKind::User if read == Some(false) && addressed => {
                Verdict::Retype(MemberKind::External)
            }
            MemberKind::User => Verdict::Remove,
            MemberKind::External if stored => Verdict::Retype(MemberKind::User),
            // A user of the directory the platform does not keep.
            MemberKind::External if read == Some(true) => Verdict::Remove,
            // A group from outside the directory (another customer's).
            MemberKind::Group if addressed && !self.stored_groups.contains(&fp) => {
                Verdict::Retype(MemberKind::External)
            }
            _ => Verdict::Keep,
        }
    }
}

/// Held removals of memberships that a later page did not add back.
fn still_removed(g: &mut Gathered) -> Vec<Membership> {
    let mut last_added: HashMap<u64, &str> = HashMap::new();
    for (page, fps) in &g.member_adds {
        for fp in fps {
            let at = last_added.entry(*fp).or_insert(page);
            if page.as_str() > *at {
                *at = page;
            }
        }
    }
    let held = std::mem::take(&mut g.held_members);
    let kept = held
        .into_iter()
        .filter(|(page, m)| {
            last_added
                .get(&membership_fp(&m.group, &m.member))
                .is_none_or(|added| *added <= page.as_str())
        })
        .map(|(_, m)| m)
        .collect();
    g.member_adds.clear();
    kept
}

impl SyncEngine {
    /// Works out removals a full read implies, the membership removals the
    /// source asked for, and memberships that point at users the platform
    /// does not keep.
    pub(super) async fn sweep(
        &self,
        scope: &Scope,
        of: SweepOf<'_>,
        g: &mut Gathered,
    ) -> Result<Sweep, StoreError> {
        let mut sweep = Sweep::default();
        let unwritten = if of.first_sync && of.users_full && of.groups_full {
            self.first_sync_users(scope, g).await?
        } else {
            None
        };
        let look_up = match unwritten {
            Some((users, groups)) => {
                sweep.stored_users = Some(users);
                sweep.stored_groups = Some(groups);
                // Only those the run wrote memberships for have any.
                std::mem::take(&mut g.skipped_users)
                    .into_iter()
                    .filter(|id| g.member_users.contains(&user_fp(id)))
                    .collect()
            }
            None => self.sweep_listed(scope, of, g, &mut sweep).await?,
        };
        // Their memberships, from the index, in one call (3,059 reads of
        // their own took 0.22 s of a 100,000-user first sync's end).
        let found = self.store.member_of_each(scope, &look_up).await?;
        sweep.memberships.extend(found);
        // Removals the source asked for, of memberships that are stored.
        let asked = still_removed(g);
        sweep
            .memberships
            .extend(self.store.stored_memberships(scope, &asked).await?);
        self.sweep_added(scope, g, &mut sweep).await?;
        self.split_stale(scope, &mut sweep).await?;
        Ok(sweep)
    }

    /// Memberships added by a delta read for users not kept go; those held
    /// back for users not kept are added for the users kept after all.
    async fn sweep_added(
        &self,
        scope: &Scope,
        g: &mut Gathered,
        sweep: &mut Sweep,
    ) -> Result<(), StoreError> {
        let added = std::mem::take(&mut g.added_user_members);
        let ids: Vec<&SourceId> = added.iter().map(|(_, m)| m).collect();
        let kept = self.store.stored_users(scope, &ids).await?;
        for (group, member) in added {
            if kept.get(&member).is_none() {
                sweep
                    .memberships
                    .push(Membership::new(group, member, MemberKind::User));
            }
        }
        let pending = std::mem::take(&mut g.pending_members);
        let ids: Vec<&SourceId> = pending.iter().map(|m| &m.member).collect();
        let kept = self.store.stored_users(scope, &ids).await?;
        sweep.late_members = pending
            .into_iter()
            .filter(|m| kept.get(&m.member).is_some())
            .collect();
        Ok(())
    }

    /// Parts the membership removals into those the platform's view shows
    /// (guarded) and those of users it does not keep (stale).
    async fn split_stale(&self, scope: &Scope, sweep: &mut Sweep) -> Result<(), StoreError> {
        sweep.memberships.sort();
        sweep.memberships.dedup();
        let mut ids: Vec<&SourceId> = sweep
            .memberships
            .iter()
            .filter(|m| m.member_kind == MemberKind::User)
            .map(|m| &m.member)
            .collect();
        ids.sort();
        ids.dedup();
        let stored = self.store.stored_users(scope, &ids).await?;
        let (stale, shown): (Vec<Membership>, Vec<Membership>) =
            std::mem::take(&mut sweep.memberships)
                .into_iter()
                .partition(|m| {
                    m.member_kind == MemberKind::User && stored.get(&m.member).is_none()
                });
        sweep.memberships = shown;
        sweep.stale_memberships = stale;
        Ok(())
    }

    /// How many members a group has stored, those a full read did not list
    /// or that point at users the platform does not keep, and those whose
    /// kind changes.
    async fn sweep_members(
        &self,
        scope: &Scope,
        group: &SourceId,
        check: &MemberCheck<'_>,
    ) -> Result<SweptGroup, StoreError> {
        let mut swept = SweptGroup {
            group: group.clone(),
            stored: 0,
            removals: Vec::new(),
            retyped: Vec::new(),
        };
        each_page(
            |page| self.store.group_members(scope, group, page),
            |members| {
                swept.stored += members.len() as u64;
                for m in members {
                    match check.verdict(&m) {
                        Verdict::Keep => {}
                        Verdict::Remove => swept.removals.push(m),
                        Verdict::Retype(kind) => swept.retyped.push(Membership {
                            member_kind: kind,
                            ..m
                        }),
                    }
                }
            },
        )
        .await?;
        Ok(swept)
    }

    /// A first sync read in full can end without reading back what it
    /// wrote: when every user its memberships point at was stored or
    /// skipped, and every user it saw was stored (none lost to an address
    /// conflict), nothing stored went unseen and the only memberships that
    /// point at users not stored are those of the users it skipped. Returns
    /// the users and groups stored then, or `None` when that cannot be
    /// shown.
    async fn first_sync_users(
        &self,
        scope: &Scope,
        g: &Gathered,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let skipped: HashSet<u64> = g.skipped_users.iter().map(user_fp).collect();
        // A user skipped after it was stored is held for removal: its
        // memberships are under the guard, which the full sweep weighs.
        if skipped.iter().any(|fp| g.seen_users.contains(fp))
            || !g
                .member_users
                .iter()
                .all(|fp| g.seen_users.contains(fp) || skipped.contains(fp))
        {
            return Ok(None);
        }
        // Everything stored was written by this run, so seen: equal counts
        // mean everything seen was stored. (Every group seen is stored: its
        // count is a check that nothing was written unseen.)
        let users = self.store.count_users(scope).await?;
        let groups = self.store.count_groups(scope).await?;
        Ok(
            (users == g.seen_users.len() as u64 && groups == g.seen_groups.len() as u64)
                .then_some((users, groups)),
        )
    }

    /// The sweep of any run but a first sync: full reads list what is
    /// stored, to hold the removal of what they did not see and to find
    /// memberships the read did not list or that point at users not stored.
    /// Otherwise only the guard's percentages need the stored totals, and
    /// only when the number held is one the total can decide: those are
    /// counted, not read out (listing 100,000 users took a delta round on
    /// DynamoDB Local three seconds, and counting them still takes one and
    /// a half). Returns the skipped users whose memberships must be looked
    /// up.
    async fn sweep_listed(
        &self,
        scope: &Scope,
        of: SweepOf<'_>,
        g: &mut Gathered,
        out: &mut Sweep,
    ) -> Result<Vec<SourceId>, StoreError> {
        let listing_users = of.users_full || of.groups_full;
        let held = |kind| g.held.iter().filter(|h| h.weighed_as() == kind).count() as u64;
        let count_users = of.guard.users.weighs_stored(held(Weighed::User));
        let count_groups = of.guard.groups.weighs_stored(held(Weighed::Group));
        let already: HashSet<SourceId> = g
            .held
            .iter()
            .filter_map(|h| match h {
                HeldAction::RemoveUser { id, .. } | HeldAction::RemoveGroup { id, .. } => {
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();

        let users = if listing_users {
            self.list_users(scope, of.users_full, g, &already).await?
        } else {
            ListedUsers {
                stored: if count_users {
                    self.store.count_users(scope).await?
                } else {
                    0
                },
                ..Default::default()
            }
        };
        if listing_users || count_users {
            out.stored_users = Some(users.stored);
        }
        if of.users_full && g.seen_users.is_empty() && users.stored > 0 {
            out.refused = Some(format!(
                "the source returned no users while {} are stored; nothing was removed. \
                 Check the connector's scope and permissions, then run a full sync",
                users.stored
            ));
        }
        g.held.extend(users.unseen);
        if of.groups_full {
            self.sweep_groups(scope, g, (&users.fps, of.users_full), &already, out)
                .await?;
        } else if count_groups {
            out.stored_groups = Some(self.store.count_groups(scope).await?);
        }
        // Users skipped in this run (guests, out of scope…) keep no
        // memberships. After a full read of groups in which every stored
        // group was seen, the members of all of them were just checked
        // against the stored users, so only skipped users still stored
        // (their removal is held) need looking up. A first sync skips a few
        // thousand users, none stored, and looking each up in the index
        // took two seconds. With a group removal held (it may be staged or
        // rejected), every skipped user is looked up, as before.
        let every_group_swept = of.groups_full
            && !g
                .held
                .iter()
                .any(|h| matches!(h, HeldAction::RemoveGroup { .. }));
        Ok(std::mem::take(&mut g.skipped_users)
            .into_iter()
            .filter(|id| !every_group_swept || users.fps.contains(&user_fp(id)))
            .collect())
    }

    /// Lists the stored users a page at a time, keeping only what the sweep
    /// needs (holding every stored user was a fifth of a 100,000-user
    /// sync's peak memory). With `sweeping`, the unseen are held for
    /// removal — unless the read came back empty, which removes nothing.
    async fn list_users(
        &self,
        scope: &Scope,
        sweeping: bool,
        g: &Gathered,
        already: &HashSet<SourceId>,
    ) -> Result<ListedUsers, StoreError> {
        let mut out = ListedUsers::default();
        let sweeping = sweeping && !g.seen_users.is_empty();
        each_page(
            |page| self.store.list_users(scope, page),
            |users| {
                for u in users {
                    out.stored += 1;
                    let fp = user_fp(&u.id);
                    out.fps.insert(fp);
                    if sweeping && !g.seen_users.contains(&fp) && !already.contains(&u.id) {
                        out.unseen.push(HeldAction::RemoveUser {
                            label: u.primary_email.to_string(),
                            reason: "no longer found in the directory".into(),
                            stored_hash: Some(u.content_hash().as_str().to_owned()),
                            id: u.id,
                        });
                    }
                }
            },
        )
        .await?;
        Ok(out)
    }

    /// A full read of groups: the unseen are held for removal (unless the
    /// read came back empty), and the members of those seen are checked
    /// against what the read listed and the users stored.
    async fn sweep_groups(
        &self,
        scope: &Scope,
        g: &mut Gathered,
        (user_fps, users_full): (&HashSet<u64>, bool),
        already: &HashSet<SourceId>,
        out: &mut Sweep,
    ) -> Result<(), StoreError> {
        let groups: Vec<Group> = all_pages(|page| self.store.list_groups(scope, page)).await?;
        out.stored_groups = Some(groups.len() as u64);
        if g.seen_groups.is_empty() && !groups.is_empty() {
            out.refused.get_or_insert(format!(
                "the source returned no groups while {} are stored; nothing was removed",
                groups.len()
            ));
            return Ok(());
        }
        let (seen, unseen): (Vec<&Group>, Vec<&Group>) = groups
            .iter()
            .partition(|gr| g.seen_groups.contains(&user_fp(&gr.id)));
        for gr in unseen.into_iter().filter(|gr| !already.contains(&gr.id)) {
            g.held.push(HeldAction::RemoveGroup {
                id: gr.id.clone(),
                label: gr.name.clone(),
                reason: "no longer found in the directory".into(),
                stored_hash: Some(gr.content_hash().as_str().to_owned()),
            });
        }
        // Each group's list is read a page at a time and only its removals
        // are kept.
        let stored_groups: HashSet<u64> = groups.iter().map(|gr| user_fp(&gr.id)).collect();
        let check = MemberCheck {
            seen_members: &g.seen_members,
            stored_users: user_fps,
            stored_groups: &stored_groups,
            read_users: users_full.then(|| {
                let skipped = g.skipped_users.iter().map(user_fp).collect();
                (&g.seen_users, skipped)
            }),
        };
        let reads: Vec<Read<'_, SweptGroup>> = seen
            .into_iter()
            .map(|gr| Box::pin(self.sweep_members(scope, &gr.id, &check)) as Read<'_, _>)
            .collect();
        let swept: Vec<SweptGroup> = stream::iter(reads)
            .buffer_unordered(8)
            .try_collect()
            .await?;
        let mut total = 0;
        for group in swept {
            total += group.stored;
            out.group_sizes.insert(group.group, group.stored);
            out.memberships.extend(group.removals);
            out.retyped.extend(group.retyped);
        }
        out.stored_memberships = Some(total);
        Ok(())
    }
}
