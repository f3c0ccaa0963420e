//! The directory: customers with their users, groups, memberships and
//! domain-wide delegation grants, and the service accounts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::ids;
use crate::model::{MemberRole, MemberType, SimGroup, SimUser, Snapshot, SnapshotMember};

/// The OAuth scope prefix Google's scopes share.
pub(crate) const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// A scope in full URL form: `admin.directory.user.readonly` becomes
/// `https://www.googleapis.com/auth/admin.directory.user.readonly`.
pub(crate) fn full_scope(scope: &str) -> String {
    if scope.starts_with("https://") {
        scope.to_string()
    } else {
        format!("{SCOPE_PREFIX}{scope}")
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub kind: MemberType,
    pub role: MemberRole,
    /// An external member: its address, and whether Google lists an id
    /// for it (the address is a Google account).
    pub external: Option<(String, bool)>,
}

#[derive(Debug)]
pub(crate) struct Customer {
    pub id: String,
    pub primary_domain: String,
    pub users: BTreeMap<String, SimUser>,
    /// Deleted users with their deletion time (listed with `showDeleted=true`).
    pub deleted: BTreeMap<String, (SimUser, DateTime<Utc>)>,
    pub groups: BTreeMap<String, SimGroup>,
    /// Group id → member id → member.
    pub members: BTreeMap<String, BTreeMap<String, Member>>,
    /// Client id → scopes (full URLs) granted by domain-wide delegation.
    pub delegations: HashMap<String, BTreeSet<String>>,
    /// Counter behind assigned ids.
    pub next_id: u64,
}

impl Customer {
    /// A user by id, primary email or alias (emails case-insensitively).
    pub fn find_user(&self, key: &str) -> Option<&SimUser> {
        if let Some(u) = self.users.get(key) {
            return Some(u);
        }
        self.users.values().find(|u| {
            u.primary_email.eq_ignore_ascii_case(key)
                || u.aliases.iter().any(|a| a.eq_ignore_ascii_case(key))
        })
    }

    /// A group by id, email or alias.
    pub fn find_group(&self, key: &str) -> Option<&SimGroup> {
        if let Some(g) = self.groups.get(key) {
            return Some(g);
        }
        self.groups.values().find(|g| {
            g.email.eq_ignore_ascii_case(key)
                || g.aliases
                    .iter()
                    .chain(&g.non_editable_aliases)
                    .any(|a| a.eq_ignore_ascii_case(key))
        })
    }

    pub fn member_type_of(&self, member_id: &str) -> Option<MemberType> {
        if self.users.contains_key(member_id) {
            Some(MemberType::User)
        } else if self.groups.contains_key(member_id) {
            Some(MemberType::Group)
        } else if member_id == self.id {
            Some(MemberType::Customer)
        } else {
            None
        }
    }

    fn fresh_user_id(&mut self) -> String {
        loop {
            self.next_id += 1;
            let id = ids::user_id(&self.id, self.next_id);
            if !self.users.contains_key(&id) && !self.deleted.contains_key(&id) {
                return id;
            }
        }
    }

    fn fresh_group_id(&mut self) -> String {
        loop {
            self.next_id += 1;
            let id = ids::group_id(&self.id, self.next_id);
            if !self.groups.contains_key(&id) {
                return id;
            }
        }
    }

    pub fn add_user(&mut self, mut user: SimUser) -> String {
        if user.id.is_empty() {
            user.id = self.fresh_user_id();
        }
        if user.org_unit_path.is_empty() {
            user.org_unit_path = "/".to_string();
        }
        let id = user.id.clone();
        self.deleted.remove(&id);
        self.users.insert(id.clone(), user);
        id
    }

    pub fn add_group(&mut self, mut group: SimGroup) -> String {
        if group.id.is_empty() {
            group.id = self.fresh_group_id();
        }
        let id = group.id.clone();
        self.members.entry(id.clone()).or_default();
        self.groups.insert(id.clone(), group);
        id
    }

    /// Adds a member (user, group or this customer) to a group; false when
    /// either is unknown.
    pub fn add_member(&mut self, group_id: &str, member_id: &str, role: MemberRole) -> bool {
        if !self.groups.contains_key(group_id) {
            return false;
        }
        // A member already there (an external one too) changes role.
        if let Some(m) = self
            .members
            .get_mut(group_id)
            .and_then(|m| m.get_mut(member_id))
        {
            m.role = role;
            return true;
        }
        let Some(kind) = self.member_type_of(member_id) else {
            return false;
        };
        self.members
            .entry(group_id.to_string())
            .or_default()
            .insert(
                member_id.to_string(),
                Member {
                    kind,
                    role,
                    external: None,
                },
            );
        true
    }

    /// Adds someone from outside the customer to a group; returns the
    /// member's key: a fresh Google id when the address is a Google
    /// account, the address otherwise. `None` when the group is unknown.
    pub fn add_external_member(
        &mut self,
        group_id: &str,
        email: &str,
        google_account: bool,
        role: MemberRole,
    ) -> Option<String> {
        if !self.groups.contains_key(group_id) {
            return None;
        }
        let email = email.to_ascii_lowercase();
        // The account's id is Google's, whatever customer lists it.
        let key = if google_account {
            ids::user_id(&email, 0)
        } else {
            email.clone()
        };
        self.members
            .entry(group_id.to_string())
            .or_default()
            .insert(
                key.clone(),
                Member {
                    kind: MemberType::External,
                    role,
                    external: Some((email, google_account)),
                },
            );
        Some(key)
    }

    pub fn remove_member(&mut self, group_id: &str, member_id: &str) {
        if let Some(m) = self.members.get_mut(group_id) {
            m.remove(member_id);
        }
    }

    /// Deletes a user: it leaves every group, and is kept for `showDeleted`.
    pub fn delete_user(&mut self, id: &str, now: DateTime<Utc>) {
        if let Some(user) = self.users.remove(id) {
            for members in self.members.values_mut() {
                members.remove(id);
            }
            self.deleted.insert(id.to_string(), (user, now));
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let members = self
            .members
            .iter()
            .flat_map(|(group_id, members)| {
                members.iter().map(move |(member_id, m)| SnapshotMember {
                    group_id: group_id.clone(),
                    member_id: member_id.clone(),
                    member_type: m.kind,
                    role: m.role,
                    email: m.external.as_ref().map(|(e, _)| e.clone()),
                })
            })
            .collect();
        Snapshot {
            customer_id: self.id.clone(),
            users: self.users.values().cloned().collect(),
            groups: self.groups.values().cloned().collect(),
            members,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ServiceAccount {
    pub client_id: String,
    pub private_key_id: String,
    /// SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
}

#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub customers: BTreeMap<String, Customer>,
    /// By client email.
    pub service_accounts: HashMap<String, ServiceAccount>,
}

impl Directory {
    pub fn add_customer(&mut self, primary_domain: &str, admin_email: &str) -> String {
        let mut salt = 0u64;
        let id = loop {
            let id = ids::customer_id(primary_domain, salt);
            if !self.customers.contains_key(&id) {
                break id;
            }
            salt += 1;
        };
        let mut customer = Customer {
            id: id.clone(),
            primary_domain: primary_domain.to_ascii_lowercase(),
            users: BTreeMap::new(),
            deleted: BTreeMap::new(),
            groups: BTreeMap::new(),
            members: BTreeMap::new(),
            delegations: HashMap::new(),
            next_id: 0,
        };
        let local = admin_email.split('@').next().unwrap_or("admin");
        customer.add_user(SimUser {
            primary_email: admin_email.to_ascii_lowercase(),
            given_name: capitalize(local),
            family_name: "Admin".to_string(),
            is_admin: true,
            org_unit_path: "/".to_string(),
            ..SimUser::default()
        });
        self.customers.insert(id.clone(), customer);
        id
    }

    pub fn customer_mut(&mut self, id: &str) -> &mut Customer {
        self.customers
            .get_mut(id)
            .unwrap_or_else(|| panic!("google-sim: unknown customer {id}"))
    }

    /// The customer holding a user (by primary email or alias), and the user.
    pub fn find_user_anywhere(&self, email: &str) -> Option<(&Customer, &SimUser)> {
        self.customers
            .values()
            .find_map(|c| c.find_user(email).map(|u| (c, u)))
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
