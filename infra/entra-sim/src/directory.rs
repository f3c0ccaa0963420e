//! One tenant's directory: users, groups, contacts and memberships in ordered
//! maps (so pages are range scans), plus the change log delta queries read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::delta::DeltaCache;
use crate::model::{DirectorySnapshot, MemberKind, Membership, SimContact, SimGroup, SimUser};
use crate::props::{changed_group_props, changed_user_props, set_group_props, set_user_props};

/// A tenant: its identity, its domains and its directory.
pub(crate) struct Tenant {
    pub id: Uuid,
    pub display_name: String,
    /// Verified domains; the first is the default.
    pub domains: Vec<String>,
    /// The `*.onmicrosoft.com` domain every tenant has.
    pub initial_domain: String,
    /// Lower bound on the user count for the resource-unit tier.
    pub size_hint: Option<u32>,
    pub dir: Directory,
}

impl Tenant {
    /// The user count that decides the resource-unit tier.
    pub fn size_for_tier(&self) -> u64 {
        (self.dir.users.len() as u64).max(u64::from(self.size_hint.unwrap_or(0)))
    }

    pub fn has_domain(&self, name: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(name))
    }
}

/// A group and its direct members.
pub(crate) struct GroupEntry {
    pub group: SimGroup,
    pub members: BTreeMap<Uuid, MemberKind>,
}

/// A user in the recycle bin, with the groups it is to rejoin on restore.
pub(crate) struct DeletedUser {
    pub user: SimUser,
    pub groups: Vec<Uuid>,
}

/// What happened to an object, as recorded for delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjChange {
    Created,
    /// These properties changed.
    Props(u64),
    /// Soft-deleted or purged; the object's current state tells which.
    Removed,
    Restored,
}

/// One entry of the change log. Its sequence number is its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    User {
        id: Uuid,
        what: ObjChange,
    },
    Group {
        id: Uuid,
        what: ObjChange,
    },
    /// A member was added to or removed from a group; the current membership
    /// tells which.
    Member {
        group: Uuid,
        member: Uuid,
        kind: MemberKind,
    },
}

/// Why a mutation could not be applied.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("no active user {0}")]
    NoUser(Uuid),
    #[error("no soft-deleted user {0}")]
    NoDeletedUser(Uuid),
    #[error("no group {0}")]
    NoGroup(Uuid),
    #[error("no user, group or contact {0} to make a member")]
    NoMember(Uuid),
    #[error("{member} is not a member of group {group}")]
    NotAMember { group: Uuid, member: Uuid },
    #[error("an object with id {0} already exists")]
    Duplicate(Uuid),
    #[error("a group cannot be a member of itself ({0})")]
    SelfMember(Uuid),
}

/// A group's transitive members, with the directory version they were
/// computed at.
pub(crate) type TransitiveCache = HashMap<Uuid, (u64, Arc<Vec<(Uuid, MemberKind)>>)>;

/// Users, groups, contacts, memberships and their change log.
#[derive(Default)]
pub(crate) struct Directory {
    pub users: BTreeMap<Uuid, SimUser>,
    pub deleted_users: BTreeMap<Uuid, DeletedUser>,
    pub groups: BTreeMap<Uuid, GroupEntry>,
    /// Soft-deleted Microsoft 365 groups.
    pub deleted_groups: BTreeMap<Uuid, SimGroup>,
    pub contacts: BTreeMap<Uuid, SimContact>,
    pub log: Vec<Change>,
    /// Per object, the properties that held a value and were set to null
    /// since: delta writes them as null, where a property never set is left
    /// out.
    pub cleared: HashMap<Uuid, u64>,
    /// Tokens carry the epoch they were issued in; bumping it expires them.
    pub epoch: u32,
    /// Bumped by every mutation, to invalidate caches.
    pub version: u64,
    pub delta_cache: Mutex<DeltaCache>,
    pub transitive_cache: Mutex<TransitiveCache>,
}

impl Directory {
    /// The sequence number of the latest change (0: none yet).
    pub fn seq(&self) -> u64 {
        self.log.len() as u64
    }

    fn record(&mut self, change: Change) {
        self.log.push(change);
        self.version += 1;
    }

    fn note_cleared(&mut self, id: Uuid, props: u64) {
        if props != 0 {
            *self.cleared.entry(id).or_default() |= props;
        }
    }

    /// The properties delta writes for an object holding `set`: those with
    /// a value, and those set to null since they had one.
    pub fn delta_props(&self, id: Uuid, set: u64) -> u64 {
        set | self.cleared.get(&id).copied().unwrap_or(0)
    }

    fn id_taken(&self, id: Uuid) -> bool {
        self.users.contains_key(&id)
            || self.deleted_users.contains_key(&id)
            || self.groups.contains_key(&id)
            || self.deleted_groups.contains_key(&id)
            || self.contacts.contains_key(&id)
    }

    /// The kind of an active object that can be a member.
    pub fn member_kind(&self, id: Uuid) -> Option<MemberKind> {
        if self.users.contains_key(&id) {
            Some(MemberKind::User)
        } else if self.groups.contains_key(&id) {
            Some(MemberKind::Group)
        } else if self.contacts.contains_key(&id) {
            Some(MemberKind::Contact)
        } else {
            None
        }
    }

    pub fn add_user(&mut self, user: SimUser) -> Result<(), DirectoryError> {
        if self.id_taken(user.id) {
            return Err(DirectoryError::Duplicate(user.id));
        }
        let id = user.id;
        self.users.insert(id, user);
        self.record(Change::User {
            id,
            what: ObjChange::Created,
        });
        Ok(())
    }

    pub fn update_user(
        &mut self,
        id: Uuid,
        f: impl FnOnce(&mut SimUser),
    ) -> Result<(), DirectoryError> {
        let user = self.users.get_mut(&id).ok_or(DirectoryError::NoUser(id))?;
        let before = user.clone();
        f(user);
        // The id is the key; an edit must not move the object.
        user.id = id;
        let changed = changed_user_props(&before, user);
        let cleared = set_user_props(&before) & !set_user_props(user);
        self.note_cleared(id, cleared);
        if changed != 0 {
            self.record(Change::User {
                id,
                what: ObjChange::Props(changed),
            });
        }
        Ok(())
    }

    /// Moves a user to the recycle bin. Entra removes it from its groups; a
    /// restore puts it back.
    pub fn delete_user(&mut self, id: Uuid) -> Result<(), DirectoryError> {
        let user = self.users.remove(&id).ok_or(DirectoryError::NoUser(id))?;
        let groups = self.remove_from_all_groups(id, MemberKind::User);
        self.deleted_users.insert(id, DeletedUser { user, groups });
        self.record(Change::User {
            id,
            what: ObjChange::Removed,
        });
        Ok(())
    }

    pub fn restore_user(&mut self, id: Uuid) -> Result<(), DirectoryError> {
        let deleted = self
            .deleted_users
            .remove(&id)
            .ok_or(DirectoryError::NoDeletedUser(id))?;
        self.users.insert(id, deleted.user);
        self.record(Change::User {
            id,
            what: ObjChange::Restored,
        });
        for group in deleted.groups {
            if let Some(entry) = self.groups.get_mut(&group) {
                entry.members.insert(id, MemberKind::User);
                self.record(Change::Member {
                    group,
                    member: id,
                    kind: MemberKind::User,
                });
            }
        }
        Ok(())
    }

    /// Deletes a user for good, from the recycle bin or directly.
    pub fn purge_user(&mut self, id: Uuid) -> Result<(), DirectoryError> {
        if self.deleted_users.remove(&id).is_none() {
            if self.users.remove(&id).is_none() {
                return Err(DirectoryError::NoUser(id));
            }
            self.remove_from_all_groups(id, MemberKind::User);
        }
        self.record(Change::User {
            id,
            what: ObjChange::Removed,
        });
        Ok(())
    }

    fn remove_from_all_groups(&mut self, member: Uuid, kind: MemberKind) -> Vec<Uuid> {
        let mut left = Vec::new();
        for (group, entry) in self.groups.iter_mut() {
            if entry.members.remove(&member).is_some() {
                left.push(*group);
            }
        }
        for group in &left {
            self.record(Change::Member {
                group: *group,
                member,
                kind,
            });
        }
        left
    }

    pub fn add_group(&mut self, group: SimGroup) -> Result<(), DirectoryError> {
        if self.id_taken(group.id) {
            return Err(DirectoryError::Duplicate(group.id));
        }
        let id = group.id;
        self.groups.insert(
            id,
            GroupEntry {
                group,
                members: BTreeMap::new(),
            },
        );
        self.record(Change::Group {
            id,
            what: ObjChange::Created,
        });
        Ok(())
    }

    pub fn update_group(
        &mut self,
        id: Uuid,
        f: impl FnOnce(&mut SimGroup),
    ) -> Result<(), DirectoryError> {
        let entry = self
            .groups
            .get_mut(&id)
            .ok_or(DirectoryError::NoGroup(id))?;
        let before = entry.group.clone();
        f(&mut entry.group);
        entry.group.id = id;
        let changed = changed_group_props(&before, &entry.group);
        let cleared = set_group_props(&before) & !set_group_props(&entry.group);
        self.note_cleared(id, cleared);
        if changed != 0 {
            self.record(Change::Group {
                id,
                what: ObjChange::Props(changed),
            });
        }
        Ok(())
    }

    /// Deletes a group: Microsoft 365 groups go to the recycle bin (delta
    /// says "changed"), others are gone for good ("deleted").
    pub fn delete_group(&mut self, id: Uuid) -> Result<(), DirectoryError> {
        let entry = self.groups.remove(&id).ok_or(DirectoryError::NoGroup(id))?;
        self.remove_from_all_groups(id, MemberKind::Group);
        if entry.group.is_unified() {
            self.deleted_groups.insert(id, entry.group);
        }
        self.record(Change::Group {
            id,
            what: ObjChange::Removed,
        });
        Ok(())
    }

    pub fn add_member(&mut self, group: Uuid, member: Uuid) -> Result<(), DirectoryError> {
        if group == member {
            return Err(DirectoryError::SelfMember(group));
        }
        let kind = self
            .member_kind(member)
            .ok_or(DirectoryError::NoMember(member))?;
        let entry = self
            .groups
            .get_mut(&group)
            .ok_or(DirectoryError::NoGroup(group))?;
        if entry.members.insert(member, kind).is_none() {
            self.record(Change::Member {
                group,
                member,
                kind,
            });
        }
        Ok(())
    }

    pub fn remove_member(&mut self, group: Uuid, member: Uuid) -> Result<(), DirectoryError> {
        let entry = self
            .groups
            .get_mut(&group)
            .ok_or(DirectoryError::NoGroup(group))?;
        let kind = entry
            .members
            .remove(&member)
            .ok_or(DirectoryError::NotAMember { group, member })?;
        self.record(Change::Member {
            group,
            member,
            kind,
        });
        Ok(())
    }

    pub fn add_contact(&mut self, contact: SimContact) -> Result<(), DirectoryError> {
        if self.id_taken(contact.id) {
            return Err(DirectoryError::Duplicate(contact.id));
        }
        self.contacts.insert(contact.id, contact);
        self.version += 1;
        Ok(())
    }

    /// Makes every token issued so far unusable (410 Gone).
    pub fn expire_tokens(&mut self) {
        self.epoch += 1;
        self.version += 1;
    }

    /// Members of a group and of the groups nested in it, each once, sorted
    /// by id; nested groups are included themselves. Cached per directory
    /// version, since paging asks for it once per page.
    pub fn transitive_members(&self, group: Uuid) -> Arc<Vec<(Uuid, MemberKind)>> {
        let mut cache = self
            .transitive_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((version, members)) = cache.get(&group)
            && *version == self.version
        {
            return Arc::clone(members);
        }
        let mut found: BTreeMap<Uuid, MemberKind> = BTreeMap::new();
        let mut stack = vec![group];
        let mut visited = std::collections::HashSet::from([group]);
        while let Some(current) = stack.pop() {
            let Some(entry) = self.groups.get(&current) else {
                continue;
            };
            for (&member, &kind) in &entry.members {
                found.insert(member, kind);
                if kind == MemberKind::Group && visited.insert(member) {
                    stack.push(member);
                }
            }
        }
        // A cycle can bring the group back as its own member; Graph lists it
        // only as the subject.
        found.remove(&group);
        let members = Arc::new(found.into_iter().collect::<Vec<_>>());
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(group, (self.version, Arc::clone(&members)));
        members
    }

    pub fn snapshot(&self) -> DirectorySnapshot {
        DirectorySnapshot {
            users: self.users.values().cloned().collect(),
            groups: self.groups.values().map(|e| e.group.clone()).collect(),
            contacts: self.contacts.values().cloned().collect(),
            memberships: self
                .groups
                .iter()
                .flat_map(|(&group_id, entry)| {
                    entry
                        .members
                        .iter()
                        .map(move |(&member_id, &member_kind)| Membership {
                            group_id,
                            member_id,
                            member_kind,
                        })
                })
                .collect(),
            soft_deleted_user_ids: self.deleted_users.keys().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn directory() -> Directory {
        let mut dir = Directory::default();
        dir.add_user(SimUser::new(id(1), "a@x.test", "A")).unwrap();
        dir.add_user(SimUser::new(id(2), "b@x.test", "B")).unwrap();
        dir.add_group(SimGroup::security(id(10), "G")).unwrap();
        dir.add_member(id(10), id(1)).unwrap();
        dir.add_member(id(10), id(2)).unwrap();
        dir
    }

    #[test]
    fn soft_delete_leaves_groups_and_restore_rejoins() {
        let mut dir = directory();
        dir.delete_user(id(1)).unwrap();
        assert!(!dir.groups[&id(10)].members.contains_key(&id(1)));
        assert!(dir.deleted_users.contains_key(&id(1)));
        dir.restore_user(id(1)).unwrap();
        assert_eq!(
            dir.groups[&id(10)].members.get(&id(1)),
            Some(&MemberKind::User)
        );
        assert!(dir.deleted_users.is_empty());
    }

    #[test]
    fn unchanged_update_logs_nothing() {
        let mut dir = directory();
        let before = dir.seq();
        dir.update_user(id(1), |_| {}).unwrap();
        assert_eq!(dir.seq(), before);
        dir.update_user(id(1), |u| u.job_title = Some("Chef".into()))
            .unwrap();
        assert_eq!(dir.seq(), before + 1);
    }

    #[test]
    fn errors_name_the_problem() {
        let mut dir = directory();
        assert_eq!(
            dir.add_user(SimUser::new(id(10), "c@x.test", "C")),
            Err(DirectoryError::Duplicate(id(10)))
        );
        assert_eq!(
            dir.remove_member(id(10), id(99)),
            Err(DirectoryError::NotAMember {
                group: id(10),
                member: id(99)
            })
        );
        assert_eq!(
            dir.restore_user(id(2)),
            Err(DirectoryError::NoDeletedUser(id(2)))
        );
    }

    #[test]
    fn transitive_members_follow_nesting_once() {
        let mut dir = directory();
        dir.add_group(SimGroup::security(id(11), "Outer")).unwrap();
        dir.add_user(SimUser::new(id(3), "c@x.test", "C")).unwrap();
        dir.add_member(id(11), id(10)).unwrap();
        dir.add_member(id(11), id(3)).unwrap();
        dir.add_member(id(11), id(1)).unwrap();
        // A cycle must not loop.
        dir.add_member(id(10), id(11)).unwrap();
        let members: Vec<Uuid> = dir.transitive_members(id(11)).iter().map(|m| m.0).collect();
        assert_eq!(members, vec![id(1), id(2), id(3), id(10)]);
    }
}
