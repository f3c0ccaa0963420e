//! Re-keying a connector's directory: each object whose source id changed
//! (see [`DirectorySource::identity_changes`](crate::source::DirectorySource::identity_changes))
//! moves to its new id with its memberships, its addresses and its
//! not-kept mark, its content unchanged: for the platform, nothing is
//! removed or created.
//!
//! It can stop anywhere and run again: each item is written under its new
//! key before the old one is deleted, and an item already at its new id
//! maps to itself (old and new ids never coincide), so a second pass
//! finishes what a first left and changes nothing else.

use std::collections::HashMap;

use serde_json::json;

use crate::domain::{ContentHash, EmailAddress, Group, Membership, SourceId, User};

use super::directory::HASH;
use super::keys::{self, Scope};
use super::state::{StateStore, StoreError, all_pages, from_item, to_attrs};
use super::table::{Index, Item, Key, Query, WriteOp};

/// What a re-keying moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rekeyed {
    pub users: u64,
    pub groups: u64,
    pub memberships: u64,
    /// Address index items whose owner or contender was renamed.
    pub addresses: u64,
    pub not_kept: u64,
}

/// Old id → new id; ids it does not name stay.
struct Renames(HashMap<SourceId, SourceId>);

impl Renames {
    /// Only new ids that one old id takes: two objects given one new id
    /// (a directory serving one document twice) would become one, and
    /// the other be lost; both keep their old ids.
    fn one_to_one(ids: &HashMap<SourceId, SourceId>) -> Self {
        let mut takers: HashMap<&SourceId, u32> = HashMap::new();
        for new in ids.values() {
            *takers.entry(new).or_default() += 1;
        }
        Renames(
            ids.iter()
                .filter(|(old, new)| takers[new] == 1 && !ids.contains_key(*new) && old != new)
                .map(|(o, n)| (o.clone(), n.clone()))
                .collect(),
        )
    }

    fn of(&self, id: &SourceId) -> SourceId {
        self.0.get(id).unwrap_or(id).clone()
    }

    /// The new id, when `id` has one.
    fn moved(&self, id: &SourceId) -> Option<SourceId> {
        self.0.get(id).filter(|new| *new != id).cloned()
    }
}

impl StateStore {
    /// Moves the connector's objects from their old ids to their new ones
    /// (`ids`: old → new). Run it under the connector's lease, with no run
    /// in progress: a run's checkpoints name objects by their old ids.
    pub async fn rekey(
        &self,
        scope: &Scope,
        ids: &HashMap<SourceId, SourceId>,
    ) -> Result<Rekeyed, StoreError> {
        let renames = Renames::one_to_one(ids);
        let mut done = Rekeyed::default();
        if renames.0.is_empty() {
            return Ok(done);
        }
        self.rekey_groups(scope, &renames, &mut done).await?;
        self.rekey_users(scope, &renames, &mut done).await?;
        done.not_kept = self.rekey_not_kept(scope, &renames).await?;
        Ok(done)
    }

    /// Every group's members first (under new ids on both sides), then
    /// the groups themselves.
    async fn rekey_groups(
        &self,
        scope: &Scope,
        renames: &Renames,
        done: &mut Rekeyed,
    ) -> Result<(), StoreError> {
        let groups = all_pages(|p| self.list_groups(scope, p)).await?;
        for group in &groups {
            done.memberships += self.rekey_members(scope, &group.id, renames).await?;
        }
        let moving = groups
            .into_iter()
            .filter_map(|g| {
                let new = renames.moved(&g.id)?;
                Some(Moving::of_group(scope, g, new))
            })
            .collect();
        let (groups, addresses) = self.move_objects(scope, moving, &renames.0).await?;
        done.groups += groups;
        done.addresses += addresses;
        Ok(())
    }

    async fn rekey_users(
        &self,
        scope: &Scope,
        renames: &Renames,
        done: &mut Rekeyed,
    ) -> Result<(), StoreError> {
        let users = all_pages(|p| self.list_users(scope, p)).await?;
        let moving: Vec<Moving> = users
            .into_iter()
            .filter_map(|u| {
                let new = renames.moved(&u.id)?;
                Some(Moving::of_user(scope, u, new))
            })
            .collect();
        for chunk in moving.chunks(500) {
            let (users, addresses) = self.move_objects(scope, chunk.to_vec(), &renames.0).await?;
            done.users += users;
            done.addresses += addresses;
        }
        Ok(())
    }

    /// Returns how many marks moved.
    async fn rekey_not_kept(&self, scope: &Scope, renames: &Renames) -> Result<u64, StoreError> {
        let marked = self.not_kept_users(scope).await?;
        let (old, new): (Vec<SourceId>, Vec<SourceId>) = marked
            .iter()
            .filter_map(|id| Some((id.clone(), renames.moved(id)?)))
            .unzip();
        self.mark_not_kept(scope, &new).await?;
        self.unmark_not_kept(scope, &old).await?;
        Ok(new.len() as u64)
    }

    /// The members of `group` under the group's new id and their own;
    /// returns how many memberships moved.
    async fn rekey_members(
        &self,
        scope: &Scope,
        group: &SourceId,
        renames: &Renames,
    ) -> Result<u64, StoreError> {
        let query =
            Query::partition(Index::Primary, keys::members_partition(scope, group)).limit(1000);
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        for item in self.query_all(query).await? {
            let key = item.key.clone();
            let m: Membership = from_item("membership", item)?;
            let moved = Membership {
                group: renames.of(&m.group),
                member: renames.of(&m.member),
                ..m.clone()
            };
            if moved.group != m.group || moved.member != m.member {
                puts.push(WriteOp::put(Self::membership_item(scope, &moved)));
                deletes.push(WriteOp::delete(key));
            }
        }
        let moved = puts.len() as u64;
        self.table.write_many(puts).await?;
        self.table.write_many(deletes).await?;
        Ok(moved)
    }

    /// Writes each object under its new key, hands its addresses over,
    /// then deletes it under the old key; returns how many objects and how
    /// many address items moved.
    async fn move_objects(
        &self,
        scope: &Scope,
        objects: Vec<Moving>,
        ids: &HashMap<SourceId, SourceId>,
    ) -> Result<(u64, u64), StoreError> {
        let moved = objects.len() as u64;
        let (mut puts, mut deletes, mut addresses) = (Vec::new(), Vec::new(), Vec::new());
        for o in objects {
            puts.push(WriteOp::put(o.item));
            deletes.push(WriteOp::delete(o.old));
            addresses.extend(o.addresses);
        }
        self.table.write_many(puts).await?;
        // Two objects may list one address: its item is read once.
        addresses.sort();
        addresses.dedup();
        let addresses: Vec<&EmailAddress> = addresses.iter().collect();
        let handed = self.rekey_addresses(scope, &addresses, ids).await?;
        self.table.write_many(deletes).await?;
        Ok((moved, handed))
    }
}

/// A user or group on its way to its new id.
#[derive(Clone)]
struct Moving {
    old: Key,
    item: Item,
    addresses: Vec<EmailAddress>,
}

impl Moving {
    fn of_user(scope: &Scope, user: User, new: SourceId) -> Self {
        let old = keys::user(scope, &user.id);
        let moved = User { id: new, ..user };
        let key = keys::user(scope, &moved.id);
        Self::to(old, key, &moved, moved.content_hash(), moved.addresses())
    }

    fn of_group(scope: &Scope, group: Group, new: SourceId) -> Self {
        let old = keys::group(scope, &group.id);
        let moved = Group { id: new, ..group };
        let key = keys::group(scope, &moved.id);
        Self::to(old, key, &moved, moved.content_hash(), moved.addresses())
    }

    /// `moved` stored under `key` as the store writes it, with its hash.
    fn to<'a>(
        old: Key,
        key: Key,
        moved: &impl serde::Serialize,
        hash: ContentHash,
        addresses: impl Iterator<Item = &'a EmailAddress>,
    ) -> Self {
        let mut attrs = to_attrs(moved);
        attrs.insert(HASH.into(), json!(hash));
        Self {
            old,
            item: Item::new(key, attrs),
            addresses: addresses.cloned().collect(),
        }
    }
}
