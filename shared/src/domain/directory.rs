//! The platform's model of directory objects, whatever the source.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{EmailAddress, SourceId};

/// A user as the platform keeps it. Passwords are never part of it (seed 002).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: SourceId,
    pub user_principal_name: Option<String>,
    pub primary_email: EmailAddress,
    /// Other addresses that deliver to this user; never contains the primary.
    pub aliases: BTreeSet<EmailAddress>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub enabled: bool,
    /// A small set of extra attributes (department, job title…), by name.
    pub attributes: BTreeMap<String, String>,
}

impl User {
    /// A user with just an id and a primary address, enabled.
    pub fn new(id: SourceId, primary_email: EmailAddress) -> Self {
        Self {
            id,
            user_principal_name: None,
            primary_email,
            aliases: BTreeSet::new(),
            display_name: None,
            given_name: None,
            surname: None,
            enabled: true,
            attributes: BTreeMap::new(),
        }
    }

    /// Adds aliases, dropping the primary address if a source lists it again.
    pub fn with_aliases(mut self, aliases: impl IntoIterator<Item = EmailAddress>) -> Self {
        self.aliases.extend(aliases);
        self.aliases.remove(&self.primary_email);
        self
    }

    /// Every address of the user, primary first.
    pub fn addresses(&self) -> impl Iterator<Item = &EmailAddress> {
        std::iter::once(&self.primary_email).chain(self.aliases.iter())
    }

    pub fn content_hash(&self) -> ContentHash {
        ContentHash::of(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Security,
    Distribution,
    /// A Microsoft 365 (unified) group.
    Microsoft365,
    /// Anything a source does not classify further.
    Other,
}

/// Active Directory's group scope: where a group may be used and what it
/// may contain (`groupType` bits 0x4, 0x2 and 0x8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupScope {
    /// Used in its own domain only; the built-in groups are domain local.
    DomainLocal,
    /// AD's default scope, and the only one a primary group may have
    /// besides universal.
    #[default]
    Global,
    Universal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: SourceId,
    /// The name people know the group by (AD: `cn`, Graph: displayName).
    pub name: String,
    pub mail: Option<EmailAddress>,
    /// Other addresses that deliver to the group (Google: `aliases` and
    /// `nonEditableAliases`); never contains `mail`. Left out when empty, as
    /// `scope`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub aliases: BTreeSet<EmailAddress>,
    /// Security or distribution (Active Directory's group type) and the
    /// other kinds other sources have.
    pub kind: GroupKind,
    /// Sources without scopes have none. Left out of the stored form (and
    /// so of the content hash) when absent, so that groups of those sources
    /// hash as before and an upgrade rewrites none of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<GroupScope>,
    /// The source's own names for the group, by name (AD: sAMAccountName,
    /// distinguishedName); left out when empty, as `scope`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl Group {
    /// A group with a name and a kind, without mail, scope or attributes.
    pub fn new(id: SourceId, name: impl Into<String>, kind: GroupKind) -> Self {
        Self {
            id,
            name: name.into(),
            mail: None,
            aliases: BTreeSet::new(),
            kind,
            scope: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Adds aliases, dropping `mail` if a source lists it again.
    pub fn with_aliases(mut self, aliases: impl IntoIterator<Item = EmailAddress>) -> Self {
        self.aliases.extend(aliases);
        if let Some(mail) = &self.mail {
            self.aliases.remove(mail);
        }
        self
    }

    /// Every address of the group, `mail` first.
    pub fn addresses(&self) -> impl Iterator<Item = &EmailAddress> {
        self.mail.iter().chain(self.aliases.iter())
    }

    pub fn content_hash(&self) -> ContentHash {
        ContentHash::of(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberKind {
    User,
    /// A nested group.
    Group,
    /// A mail contact (Entra `orgContact`), kept so membership stays faithful.
    Contact,
    /// Someone outside the directory the group delivers to (Google: a
    /// member from outside the customer): no object of the store, only an
    /// address, which the membership carries.
    External,
    /// Every user of the directory (Google's `CUSTOMER` member, whose id is
    /// the customer id).
    Everyone,
}

impl MemberKind {
    /// How a person would name it.
    pub fn label(self) -> &'static str {
        match self {
            MemberKind::User => "user",
            MemberKind::Group => "group",
            MemberKind::Contact => "contact",
            MemberKind::External => "external recipient",
            MemberKind::Everyone => "everyone in the directory",
        }
    }
}

/// What a member may do in a group (Google's member roles). Sources
/// without roles have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Owner,
    Manager,
    Member,
}

/// `member` belongs to `group`. Both ids are the source's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Membership {
    pub group: SourceId,
    pub member: SourceId,
    pub member_kind: MemberKind,
    /// Left out of the stored form when absent, so that memberships of
    /// sources without roles are stored as before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<MemberRole>,
    /// The address the group delivers to, for members that are no object
    /// of the store ([`MemberKind::External`]); the member's address as the
    /// source gave it otherwise, where it gives one (Google), so that a
    /// member from outside the directory can be told at the end of a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<EmailAddress>,
}

impl Membership {
    /// A membership without role or address.
    pub fn new(group: SourceId, member: SourceId, member_kind: MemberKind) -> Self {
        Self {
            group,
            member,
            member_kind,
            role: None,
            address: None,
        }
    }

    /// Whether the stored `self` already says what `listed` says: an
    /// external recipient stays one while the source lists it as a user.
    pub fn already_says(&self, listed: &Membership) -> bool {
        self == listed
            || (self.member_kind == MemberKind::External
                && listed.member_kind == MemberKind::User
                && self.role == listed.role
                && self.address == listed.address)
    }
}

/// SHA-256 of an object's canonical JSON form (struct fields in declaration
/// order, sets and maps sorted), hex-encoded. Equal hashes mean nothing to
/// write.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    fn of<T: Serialize>(value: &T) -> Self {
        // Serialising plain data structs to a Vec cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        let digest = Sha256::digest(&bytes);
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User::new(
            SourceId::new("u1").unwrap(),
            "Ann@Contoso.com".parse().unwrap(),
        )
    }

    #[test]
    fn aliases_never_repeat_the_primary() {
        let u = user().with_aliases([
            "ann@contoso.com".parse().unwrap(),
            "a@contoso.com".parse().unwrap(),
        ]);
        let all: Vec<&str> = u.addresses().map(EmailAddress::as_str).collect();
        assert_eq!(all, ["ann@contoso.com", "a@contoso.com"]);
    }

    #[test]
    fn groups_without_scope_or_attributes_hash_as_before_them() {
        let g = Group::new(SourceId::new("g1").unwrap(), "Sales", GroupKind::Security);
        let before = r#"{"id":"g1","name":"Sales","mail":null,"kind":"security"}"#;
        assert_eq!(serde_json::to_string(&g).unwrap(), before);
        assert_eq!(serde_json::from_str::<Group>(before).unwrap(), g);
        let scoped = Group {
            scope: Some(GroupScope::DomainLocal),
            ..g.clone()
        };
        assert_ne!(scoped.content_hash(), g.content_hash());
    }

    #[test]
    fn hash_changes_with_content_only() {
        let a = user();
        let mut b = user();
        assert_eq!(a.content_hash(), b.content_hash());
        b.enabled = false;
        assert_ne!(a.content_hash(), b.content_hash());
        assert_eq!(a.content_hash().as_str().len(), 64);
    }
}
