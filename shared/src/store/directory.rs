//! Users, groups, memberships and the address index of each connector.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{
    AccountId, ConnectorId, EmailAddress, Group, MemberKind, Membership, SourceId, User,
};

use super::addresses::{AddressOwner, Claim, Claimed, OwnerKind, SharedAddress};
use super::keys::{self, Scope, USER_SHARDS};
use super::state::{Page, PageRequest, StateStore, StoreError, from_item, to_attrs};
use super::table::{Index, Item, Key, PageToken, Query, WriteOp, decode_token, encode_token};

/// What an upsert did with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    /// Same content hash as stored: nothing was written.
    Unchanged,
    /// One of the user's addresses belongs to another connector of the
    /// account; the user was not written (its stored version, if any, stays).
    Conflict {
        address: EmailAddress,
        owner: AddressOwner,
    },
}

/// What writing users did: each user's outcome, in input order, and the
/// addresses found listed by two objects of the connector.
#[derive(Debug, Default)]
pub struct UserWrites {
    pub outcomes: Vec<Upserted>,
    pub shared: Vec<SharedAddress>,
}

/// What writing groups did: each group's outcome, the addresses another
/// connector holds (group, address, owner) and those two objects of the
/// connector list.
#[derive(Debug, Default)]
pub struct GroupWrites {
    pub outcomes: Vec<Upserted>,
    pub foreign: Vec<(SourceId, EmailAddress, AddressOwner)>,
    pub shared: Vec<SharedAddress>,
}

/// What writing memberships did: new ones, and stored ones whose role,
/// address or kind changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipWrites {
    pub added: u64,
    pub updated: u64,
}

/// What a removal removed: the objects, and the memberships that went
/// with them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovedRows {
    pub objects: u64,
    pub memberships: u64,
}

pub(super) const HASH: &str = "content_hash";

/// Stored users with their content hashes, by id.
#[derive(Debug, Default)]
pub struct StoredUsers(pub HashMap<SourceId, (String, User)>);

impl StoredUsers {
    pub fn get(&self, id: &SourceId) -> Option<&User> {
        self.0.get(id).map(|(_, u)| u)
    }

    /// Whether writing `user` would change anything.
    pub fn is_unchanged(&self, user: &User) -> bool {
        self.0
            .get(&user.id)
            .is_some_and(|(h, _)| h == user.content_hash().as_str())
    }
}

/// Position in a listing of sharded users.
#[derive(Serialize, Deserialize)]
struct ShardPosition {
    shard: u32,
    inner: Option<PageToken>,
}

impl StateStore {
    /// The stored version (and content hash) of each of these users that
    /// exists, by id. What [`StateStore::apply_users`] compares against.
    pub async fn stored_users(
        &self,
        scope: &Scope,
        ids: &[&SourceId],
    ) -> Result<StoredUsers, StoreError> {
        let keys: Vec<Key> = ids.iter().map(|id| keys::user(scope, id)).collect();
        let mut stored = HashMap::with_capacity(keys.len());
        for item in self.table.get_many(&keys).await? {
            let hash = item.str(HASH).unwrap_or_default().to_owned();
            let user: User = from_item("user", item)?;
            stored.insert(user.id.clone(), (hash, user));
        }
        Ok(StoredUsers(stored))
    }

    /// Writes users that changed and claims their addresses; `users` must
    /// have distinct ids. Outcomes are in input order.
    pub async fn upsert_users(
        &self,
        scope: &Scope,
        users: &[User],
    ) -> Result<Vec<Upserted>, StoreError> {
        let ids: Vec<&SourceId> = users.iter().map(|u| &u.id).collect();
        let stored = self.stored_users(scope, &ids).await?;
        Ok(self.apply_users(scope, users, &stored).await?.outcomes)
    }

    /// [`StateStore::upsert_users`] against versions read beforehand with
    /// [`StateStore::stored_users`] (by the caller, who may have decided
    /// something in between).
    pub async fn apply_users(
        &self,
        scope: &Scope,
        users: &[User],
        stored: &StoredUsers,
    ) -> Result<UserWrites, StoreError> {
        let stored = &stored.0;
        let mut outcomes: Vec<Option<Upserted>> = vec![None; users.len()];
        // What each changed user asks for: the addresses it did not list
        // before, and those whose place (primary or alias) changed.
        let mut fresh = Vec::new();
        let mut claims = Vec::new();
        let mut claim_of = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let old = stored.get(&user.id);
            if old.is_some_and(|(h, _)| h == user.content_hash().as_str()) {
                outcomes[i] = Some(Upserted::Unchanged);
                continue;
            }
            fresh.push(i);
            for a in user.addresses() {
                let was = old.and_then(|(_, o)| {
                    o.addresses().any(|x| x == a).then(|| o.primary_email == *a)
                });
                if was != Some(user.primary_email == *a) {
                    claims.push(Claim::of_user(user, a));
                    claim_of.push(i);
                }
            }
        }

        // Addresses held by another connector are conflicts, decided before
        // anything is claimed.
        let mut decided = self.decide_claims(scope, &claims).await?;
        for (k, outcome) in decided.outcomes.iter().enumerate() {
            if let Claimed::Foreign(owner) = outcome {
                outcomes[claim_of[k]].get_or_insert(Upserted::Conflict {
                    address: claims[k].address.clone(),
                    owner: owner.clone(),
                });
            }
        }
        let refused = |k: usize| outcomes[claim_of[k]].is_some();
        decided
            .writes
            .retain(|(_, asking, _)| !asking.iter().all(|k| refused(*k)));
        decided.shared.retain(|s| {
            !claims.iter().enumerate().any(|(k, c)| {
                refused(k)
                    && (c.object == s.owner.1 || c.object == s.other.1)
                    && c.address == s.address
            })
        });
        let (ops, written): (Vec<WriteOp>, Vec<_>) = decided
            .writes
            .into_iter()
            .map(|(op, asking, before)| (op, (asking, before)))
            .unzip();
        let results = self.table.write_many(ops).await?;

        // A claim lost to a concurrent writer: to another connector, the
        // user becomes a conflict and gives back what it claimed meanwhile.
        let mut lost: HashMap<usize, EmailAddress> = HashMap::new();
        for ((asking, _), result) in written.iter().zip(&results) {
            if result.is_err() {
                for k in asking {
                    lost.entry(claim_of[*k])
                        .or_insert_with(|| claims[*k].address.clone());
                }
            }
        }
        let mut rollback = Vec::new();
        for ((asking, before), result) in written.into_iter().zip(&results) {
            let k = asking[0];
            if result.is_ok() && asking.iter().any(|k| lost.contains_key(&claim_of[*k])) {
                let c = &claims[k];
                rollback.push(Self::undo_claim(scope, &c.address, &c.object, before));
            }
        }
        for (i, address) in &lost {
            let owner = self
                .address_owners(&scope.account, &[address])
                .await?
                .remove(address)
                .unwrap_or(AddressOwner {
                    connector: scope.connector.clone(),
                    user: users[*i].id.clone(),
                    kind: OwnerKind::User,
                });
            outcomes[*i] = Some(Upserted::Conflict {
                address: address.clone(),
                owner,
            });
        }
        self.table.write_many(rollback).await?;

        // Write the users, then release the addresses they no longer have.
        let mut writes = Vec::new();
        let mut releases = Vec::new();
        for i in fresh {
            if outcomes[i].is_some() {
                continue;
            }
            let user = &users[i];
            let mut attrs = to_attrs(user);
            attrs.insert(HASH.into(), json!(user.content_hash()));
            writes.push(WriteOp::put(Item::new(keys::user(scope, &user.id), attrs)));
            outcomes[i] = Some(match stored.get(&user.id) {
                Some((_, old)) => {
                    let now: HashSet<&EmailAddress> = user.addresses().collect();
                    let gone: Vec<EmailAddress> = old
                        .addresses()
                        .filter(|a| !now.contains(a))
                        .cloned()
                        .collect();
                    releases.push((user.id.clone(), gone));
                    Upserted::Updated
                }
                None => Upserted::Created,
            });
        }
        self.table.write_many(writes).await?;
        for (id, gone) in &releases {
            let gone: Vec<&EmailAddress> = gone.iter().collect();
            self.release_addresses(scope, id, &gone).await?;
        }
        let written: HashSet<&SourceId> = users
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Some(Upserted::Created | Upserted::Updated)))
            .map(|(u, _)| &u.id)
            .collect();
        decided
            .shared
            .retain(|s| written.contains(&s.owner.1) || written.contains(&s.other.1));
        Ok(UserWrites {
            outcomes: outcomes
                .into_iter()
                .map(|o| o.unwrap_or(Upserted::Unchanged))
                .collect(),
            shared: decided.shared,
        })
    }

    /// Removes users with their addresses and memberships; returns how many
    /// of each existed.
    pub async fn remove_users(
        &self,
        scope: &Scope,
        ids: &[SourceId],
    ) -> Result<RemovedRows, StoreError> {
        let keys: Vec<Key> = ids.iter().map(|id| keys::user(scope, id)).collect();
        let existing = self.table.get_many(&keys).await?;
        let mut ops = Vec::new();
        let mut memberships = Vec::new();
        for item in &existing {
            let user: User = from_item("user", item.clone())?;
            let addresses: Vec<&EmailAddress> = user.addresses().collect();
            self.release_addresses(scope, &user.id, &addresses).await?;
            memberships.extend(self.memberships_of_member(scope, &user.id).await?);
        }
        let memberships = self.existing(memberships).await?;
        let removed = RemovedRows {
            objects: existing.len() as u64,
            memberships: memberships.len() as u64,
        };
        ops.extend(memberships.into_iter().map(WriteOp::delete));
        // Addresses and memberships go first, the users last: if this stops
        // half-way, the users (and so a retry) still know what to release.
        self.table.write_many(ops).await?;
        self.table
            .write_many(
                existing
                    .iter()
                    .map(|i| WriteOp::delete(i.key.clone()))
                    .collect(),
            )
            .await?;
        Ok(removed)
    }

    /// The keys of every membership in which `member` is the member, as the
    /// index has them (it may lag: see [`Self::existing`]).
    async fn memberships_of_member(
        &self,
        scope: &Scope,
        member: &SourceId,
    ) -> Result<Vec<Key>, StoreError> {
        let query =
            Query::partition(Index::Gsi1, keys::member_of_partition(scope, member)).limit(1000);
        Ok(self
            .query_all(query)
            .await?
            .into_iter()
            .map(|i| i.key)
            .collect())
    }

    /// Those of `keys` whose items exist now: an index can still list an
    /// item just removed, and a removal counts only what it removed.
    async fn existing(&self, keys: Vec<Key>) -> Result<Vec<Key>, StoreError> {
        if keys.is_empty() {
            return Ok(keys);
        }
        Ok(self
            .table
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|i| i.key)
            .collect())
    }

    /// How many users the connector has stored, without reading them out:
    /// the shards are counted at once.
    pub async fn count_users(&self, scope: &Scope) -> Result<u64, StoreError> {
        let counts = (0..USER_SHARDS).map(|shard| {
            let query =
                Query::partition(Index::Primary, keys::user_partition(scope, shard)).limit(10_000);
            async move { self.table.count(&query).await }
        });
        Ok(futures::future::try_join_all(counts).await?.iter().sum())
    }

    pub async fn count_groups(&self, scope: &Scope) -> Result<u64, StoreError> {
        let query = Query::partition(Index::Primary, keys::group_partition(scope)).limit(10_000);
        Ok(self.table.count(&query).await?)
    }

    /// See [`Table::settle`](super::table::Table::settle).
    pub async fn settle_indexes(&self) -> Result<(), StoreError> {
        Ok(self.table.settle().await?)
    }

    /// Whether any user or group of the connector is stored.
    pub async fn has_directory(&self, scope: &Scope) -> Result<bool, StoreError> {
        let one = PageRequest::first(1);
        Ok(
            !self.list_groups(scope, one.clone()).await?.items.is_empty()
                || !self.list_users(scope, one).await?.items.is_empty(),
        )
    }

    pub async fn get_user(&self, scope: &Scope, id: &SourceId) -> Result<Option<User>, StoreError> {
        self.table
            .get(&keys::user(scope, id))
            .await?
            .map(|i| from_item("user", i))
            .transpose()
    }

    /// Every user of the connector, page by page, across its shards.
    pub async fn list_users(
        &self,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<User>, StoreError> {
        let mut position = match &page.token {
            Some(t) => decode_token::<ShardPosition>(t).ok_or(StoreError::BadPageToken)?,
            None => ShardPosition {
                shard: 0,
                inner: None,
            },
        };
        if position.shard >= USER_SHARDS {
            return Err(StoreError::BadPageToken);
        }
        let mut users = Vec::new();
        loop {
            let query =
                Query::partition(Index::Primary, keys::user_partition(scope, position.shard))
                    .limit(page.limit - users.len())
                    .start(position.inner.take());
            let found = self.table.query(&query).await?;
            for item in found.items {
                users.push(from_item("user", item)?);
            }
            match found.next {
                Some(next) => position.inner = Some(next),
                None if position.shard + 1 < USER_SHARDS => position.shard += 1,
                None => {
                    return Ok(Page {
                        items: users,
                        next: None,
                    });
                }
            }
            if users.len() >= page.limit {
                return Ok(Page {
                    items: users,
                    next: Some(encode_token(&position)),
                });
            }
        }
    }

    /// The user holding an address (primary or alias, any case) in an account.
    pub async fn find_user_by_address(
        &self,
        account: &AccountId,
        address: &EmailAddress,
    ) -> Result<Option<(ConnectorId, User)>, StoreError> {
        let Some(owner) = self.address_owner(account, address).await? else {
            return Ok(None);
        };
        if owner.kind != OwnerKind::User {
            return Ok(None);
        }
        let scope = Scope::new(account.clone(), owner.connector.clone());
        Ok(self
            .get_user(&scope, &owner.user)
            .await?
            .map(|u| (owner.connector, u)))
    }

    pub async fn address_owner(
        &self,
        account: &AccountId,
        address: &EmailAddress,
    ) -> Result<Option<AddressOwner>, StoreError> {
        Ok(self
            .address_owners(account, &[address])
            .await?
            .remove(address))
    }

    /// The accounts in which an address is held (normally one), for routing.
    pub async fn accounts_with_address(
        &self,
        address: &EmailAddress,
    ) -> Result<Vec<AccountId>, StoreError> {
        let query = Query::partition(Index::Gsi1, keys::address_partition(address)).limit(100);
        self.query_all(query)
            .await?
            .into_iter()
            .map(|i| {
                i.str("account")
                    .and_then(|a| AccountId::new(a).ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        what: format!("address {}", i.key.pk),
                        problem: "no account".into(),
                    })
            })
            .collect()
    }

    /// The group holding an address (its mail or an alias) in an account.
    pub async fn find_group_by_address(
        &self,
        account: &AccountId,
        address: &EmailAddress,
    ) -> Result<Option<(ConnectorId, Group)>, StoreError> {
        let Some(owner) = self.address_owner(account, address).await? else {
            return Ok(None);
        };
        if owner.kind != OwnerKind::Group {
            return Ok(None);
        }
        let scope = Scope::new(account.clone(), owner.connector.clone());
        Ok(self
            .get_group(&scope, &owner.user)
            .await?
            .map(|g| (owner.connector, g)))
    }

    // ---- groups ---------------------------------------------------------

    /// Writes groups that changed and claims their addresses. A group is
    /// written even when another connector holds one of its addresses (its
    /// members matter more than one address): that address is reported and
    /// not claimed.
    pub async fn upsert_groups(
        &self,
        scope: &Scope,
        groups: &[Group],
    ) -> Result<GroupWrites, StoreError> {
        let keys: Vec<Key> = groups.iter().map(|g| keys::group(scope, &g.id)).collect();
        let stored: HashMap<Key, (String, Group)> = self
            .table
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|i| {
                let hash = i.str(HASH).unwrap_or_default().to_owned();
                Ok((i.key.clone(), (hash, from_item("group", i)?)))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut out = GroupWrites::default();
        let mut writes = Vec::new();
        let mut claims = Vec::new();
        let mut releases = Vec::new();
        for (group, key) in groups.iter().zip(keys) {
            let hash = group.content_hash();
            let old = stored.get(&key);
            let outcome = match old {
                Some((h, _)) if h == hash.as_str() => Upserted::Unchanged,
                Some(_) => Upserted::Updated,
                None => Upserted::Created,
            };
            if outcome != Upserted::Unchanged {
                let mut attrs = to_attrs(group);
                attrs.insert(HASH.into(), json!(hash));
                writes.push(WriteOp::put(Item::new(key, attrs)));
                let old = old.map(|(_, g)| g);
                for a in group.addresses() {
                    let was = old.and_then(|o| {
                        o.addresses()
                            .any(|x| x == a)
                            .then(|| o.mail.as_ref() == Some(a))
                    });
                    if was != Some(group.mail.as_ref() == Some(a)) {
                        claims.push(Claim::of_group(group, a));
                    }
                }
                if let Some(o) = old {
                    let gone: Vec<EmailAddress> = o
                        .addresses()
                        .filter(|a| !group.addresses().any(|n| n == *a))
                        .cloned()
                        .collect();
                    releases.push((group.id.clone(), gone));
                }
            }
            out.outcomes.push(outcome);
        }
        self.table.write_many(writes).await?;
        let decided = self.decide_claims(scope, &claims).await?;
        for (c, outcome) in claims.iter().zip(&decided.outcomes) {
            if let Claimed::Foreign(owner) = outcome {
                out.foreign
                    .push((c.object.clone(), c.address.clone(), owner.clone()));
            }
        }
        let ops = decided.writes.into_iter().map(|(op, _, _)| op).collect();
        // A claim lost to a concurrent writer leaves the address with it.
        let _ = self.table.write_many(ops).await?;
        for (id, gone) in &releases {
            let gone: Vec<&EmailAddress> = gone.iter().collect();
            self.release_addresses(scope, id, &gone).await?;
        }
        out.shared = decided.shared;
        Ok(out)
    }

    /// Removes groups with their member lists and their own memberships in
    /// other groups; returns how many of each existed.
    pub async fn remove_groups(
        &self,
        scope: &Scope,
        ids: &[SourceId],
    ) -> Result<RemovedRows, StoreError> {
        let keys: Vec<Key> = ids.iter().map(|id| keys::group(scope, id)).collect();
        let existing = self.table.get_many(&keys).await?;
        let mut memberships = Vec::new();
        for id in ids {
            let members = Self::members_query(scope, id).limit(1000);
            memberships.extend(self.query_all(members).await?.into_iter().map(|i| i.key));
            memberships.extend(
                self.existing(self.memberships_of_member(scope, id).await?)
                    .await?,
            );
        }
        memberships.sort();
        memberships.dedup();
        let removed = RemovedRows {
            objects: existing.len() as u64,
            memberships: memberships.len() as u64,
        };
        for item in &existing {
            let group: Group = from_item("group", item.clone())?;
            let addresses: Vec<&EmailAddress> = group.addresses().collect();
            self.release_addresses(scope, &group.id, &addresses).await?;
        }
        let mut ops: Vec<WriteOp> = memberships.into_iter().map(WriteOp::delete).collect();
        ops.extend(existing.iter().map(|i| WriteOp::delete(i.key.clone())));
        self.table.write_many(ops).await?;
        Ok(removed)
    }

    pub async fn get_group(
        &self,
        scope: &Scope,
        id: &SourceId,
    ) -> Result<Option<Group>, StoreError> {
        self.table
            .get(&keys::group(scope, id))
            .await?
            .map(|i| from_item("group", i))
            .transpose()
    }

    /// The stored groups among `ids`, by id, in one batched read.
    pub async fn get_groups(
        &self,
        scope: &Scope,
        ids: &[&SourceId],
    ) -> Result<HashMap<SourceId, Group>, StoreError> {
        let keys: Vec<Key> = ids.iter().map(|id| keys::group(scope, id)).collect();
        self.table
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|i| from_item::<Group>("group", i).map(|g| (g.id.clone(), g)))
            .collect()
    }

    pub async fn list_groups(
        &self,
        scope: &Scope,
        page: PageRequest,
    ) -> Result<Page<Group>, StoreError> {
        let query = Query::partition(Index::Primary, keys::group_partition(scope))
            .limit(page.limit)
            .start(Self::decode_token(&page.token)?);
        self.query_page("group", query).await
    }

    // ---- memberships ----------------------------------------------------

    pub(super) fn membership_item(scope: &Scope, m: &Membership) -> Item {
        Item::new(keys::membership(scope, &m.group, &m.member), to_attrs(m))
            .with_gsi1(keys::membership_gsi(scope, &m.group, &m.member))
    }

    /// Writes memberships not yet stored as they are; returns how many were
    /// new and how many changed.
    pub async fn add_memberships(
        &self,
        scope: &Scope,
        memberships: &[Membership],
    ) -> Result<MembershipWrites, StoreError> {
        let keys: Vec<Key> = memberships
            .iter()
            .map(|m| keys::membership(scope, &m.group, &m.member))
            .collect();
        let stored: HashMap<Key, Membership> = self
            .table
            .get_many(&keys)
            .await?
            .into_iter()
            .map(|i| Ok((i.key.clone(), from_item("membership", i)?)))
            .collect::<Result<_, StoreError>>()?;
        let mut updated = HashSet::new();
        let write: Vec<Membership> = memberships
            .iter()
            .zip(&keys)
            .filter_map(|(m, k)| match stored.get(k) {
                Some(s) if s.already_says(m) => None,
                Some(s) => {
                    updated.insert(k);
                    // An external recipient stays one (the sweep decides
                    // kinds) while its role or address changes.
                    let kind = if s.member_kind == MemberKind::External
                        && m.member_kind == MemberKind::User
                    {
                        MemberKind::External
                    } else {
                        m.member_kind
                    };
                    Some(Membership {
                        member_kind: kind,
                        ..m.clone()
                    })
                }
                None => Some(m.clone()),
            })
            .collect();
        let written = self.put_memberships(scope, &write).await?;
        let updated = updated.len() as u64;
        Ok(MembershipWrites {
            added: written - updated,
            updated,
        })
    }

    /// Writes memberships without reading whether they are stored (the
    /// caller knows they are not); returns how many distinct ones it wrote.
    pub async fn put_memberships(
        &self,
        scope: &Scope,
        memberships: &[Membership],
    ) -> Result<u64, StoreError> {
        let mut seen = HashSet::new();
        let writes: Vec<WriteOp> = memberships
            .iter()
            .filter(|m| seen.insert((&m.group, &m.member)))
            .map(|m| WriteOp::put(Self::membership_item(scope, m)))
            .collect();
        let written = writes.len() as u64;
        self.table.write_many(writes).await?;
        Ok(written)
    }

    /// Removes memberships; returns how many were stored.
    pub async fn remove_memberships(
        &self,
        scope: &Scope,
        memberships: &[Membership],
    ) -> Result<u64, StoreError> {
        let keys: Vec<Key> = memberships
            .iter()
            .map(|m| keys::membership(scope, &m.group, &m.member))
            .collect();
        let existing = self.table.get_many(&keys).await?;
        let removed = existing.len() as u64;
        self.table
            .write_many(
                existing
                    .into_iter()
                    .map(|i| WriteOp::delete(i.key))
                    .collect(),
            )
            .await?;
        Ok(removed)
    }

    /// Those of `memberships` that are stored.
    pub async fn stored_memberships(
        &self,
        scope: &Scope,
        memberships: &[Membership],
    ) -> Result<Vec<Membership>, StoreError> {
        let keys: Vec<Key> = memberships
            .iter()
            .map(|m| keys::membership(scope, &m.group, &m.member))
            .collect();
        let found: HashSet<Key> = self.existing(keys).await?.into_iter().collect();
        Ok(memberships
            .iter()
            .filter(|m| found.contains(&keys::membership(scope, &m.group, &m.member)))
            .cloned()
            .collect())
    }

    /// How many direct members a group has stored, without reading them.
    pub async fn count_group_members(
        &self,
        scope: &Scope,
        group: &SourceId,
    ) -> Result<u64, StoreError> {
        let query = Self::members_query(scope, group).limit(10_000);
        Ok(self.table.count(&query).await?)
    }

    /// How many memberships the connector has stored, counted group by
    /// group (a few at a time) until `enough` are found: a percentage needs
    /// only to know whether the total is below a bound, and counting every
    /// membership on each delta round read the whole directory.
    pub async fn count_memberships_up_to(
        &self,
        scope: &Scope,
        enough: u64,
    ) -> Result<u64, StoreError> {
        let groups = super::all_pages(|p| self.list_groups(scope, p)).await?;
        let mut total = 0;
        for chunk in groups.chunks(8) {
            let counts = futures::future::try_join_all(
                chunk.iter().map(|g| self.count_group_members(scope, &g.id)),
            )
            .await?;
            total += counts.iter().sum::<u64>();
            if total >= enough {
                break;
            }
        }
        Ok(total)
    }

    /// A group's direct members.
    pub async fn group_members(
        &self,
        scope: &Scope,
        group: &SourceId,
        page: PageRequest,
    ) -> Result<Page<Membership>, StoreError> {
        let query = Self::members_query(scope, group)
            .limit(page.limit)
            .start(Self::decode_token(&page.token)?);
        self.query_page("membership", query).await
    }

    fn members_query(scope: &Scope, group: &SourceId) -> Query {
        Query::partition(Index::Primary, keys::members_partition(scope, group))
    }

    /// The direct members of each of `groups`, all in one call.
    pub async fn members_each(
        &self,
        scope: &Scope,
        groups: &[SourceId],
    ) -> Result<Vec<Membership>, StoreError> {
        let queries = groups.iter().map(|g| Self::members_query(scope, g));
        self.memberships_each(queries).await
    }

    /// The groups a user (or group, or contact) is a direct member of.
    pub async fn member_of(
        &self,
        scope: &Scope,
        member: &SourceId,
        page: PageRequest,
    ) -> Result<Page<Membership>, StoreError> {
        let query = Self::member_of_query(scope, member)
            .limit(page.limit)
            .start(Self::decode_token(&page.token)?);
        self.query_page("membership", query).await
    }

    fn member_of_query(scope: &Scope, member: &SourceId) -> Query {
        Query::partition(Index::Gsi1, keys::member_of_partition(scope, member))
    }

    /// The groups each of `members` is a direct member of, all in one call
    /// (see [`Table::query_each`](super::table::Table::query_each)).
    pub async fn member_of_each(
        &self,
        scope: &Scope,
        members: &[SourceId],
    ) -> Result<Vec<Membership>, StoreError> {
        let queries = members.iter().map(|m| Self::member_of_query(scope, m));
        self.memberships_each(queries).await
    }

    /// Every membership each query lists (see
    /// [`Table::query_each`](super::table::Table::query_each)).
    async fn memberships_each(
        &self,
        queries: impl Iterator<Item = Query>,
    ) -> Result<Vec<Membership>, StoreError> {
        let queries: Vec<Query> = queries.map(|q| q.limit(PageRequest::MAX_LIMIT)).collect();
        let found = self.table.query_each(&queries).await?;
        self.live_items("membership", found.into_iter().flatten())
    }

    /// The users marked as not kept (see [`StateStore::mark_not_kept`]).
    pub async fn not_kept_users(&self, scope: &Scope) -> Result<HashSet<SourceId>, StoreError> {
        let query = Query::partition(Index::Primary, keys::not_kept_partition(scope)).limit(1000);
        Ok(self
            .query_all(query)
            .await?
            .into_iter()
            .filter_map(|i| SourceId::new(i.key.sk).ok())
            .collect())
    }

    /// Remembers users the source has but the platform does not keep, so
    /// that later runs do not write their memberships.
    pub async fn mark_not_kept(&self, scope: &Scope, ids: &[SourceId]) -> Result<(), StoreError> {
        let pk = keys::not_kept_partition(scope);
        let ops = ids
            .iter()
            .map(|id| {
                WriteOp::put(Item::new(
                    Key::new(pk.clone(), id.as_str()),
                    Default::default(),
                ))
            })
            .collect();
        self.table.write_many(ops).await?;
        Ok(())
    }

    pub async fn unmark_not_kept(&self, scope: &Scope, ids: &[SourceId]) -> Result<(), StoreError> {
        let pk = keys::not_kept_partition(scope);
        let ops = ids
            .iter()
            .map(|id| WriteOp::delete(Key::new(pk.clone(), id.as_str())))
            .collect();
        self.table.write_many(ops).await?;
        Ok(())
    }

    /// Removes everything synced for a connector.
    pub(super) async fn purge_directory(&self, scope: &Scope) -> Result<(), StoreError> {
        let marked: Vec<SourceId> = self.not_kept_users(scope).await?.into_iter().collect();
        self.unmark_not_kept(scope, &marked).await?;
        loop {
            let page = self.list_users(scope, PageRequest::first(500)).await?;
            if page.items.is_empty() {
                break;
            }
            let ids: Vec<SourceId> = page.items.into_iter().map(|u| u.id).collect();
            self.remove_users(scope, &ids).await?;
        }
        loop {
            let page = self.list_groups(scope, PageRequest::first(500)).await?;
            if page.items.is_empty() {
                break;
            }
            let ids: Vec<SourceId> = page.items.into_iter().map(|g| g.id).collect();
            self.remove_groups(scope, &ids).await?;
        }
        Ok(())
    }
}
