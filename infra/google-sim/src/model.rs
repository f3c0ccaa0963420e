//! The public data model: users, groups, memberships and snapshots.

/// A Workspace user as the simulator stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimUser {
    /// Google's numeric user id (21 digits). Left empty, `add_user` assigns one.
    pub id: String,
    pub primary_email: String,
    pub aliases: Vec<String>,
    pub given_name: String,
    pub family_name: String,
    pub suspended: bool,
    pub archived: bool,
    pub is_admin: bool,
    /// `/` for the root organizational unit.
    pub org_unit_path: String,
    pub department: Option<String>,
    pub title: Option<String>,
}

/// A Workspace group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimGroup {
    /// Google's group id (15 characters starting `0`). Left empty, `add_group`
    /// assigns one.
    pub id: String,
    pub email: String,
    pub name: String,
    pub aliases: Vec<String>,
    /// Aliases outside the primary domain and its subdomains (Google's
    /// `nonEditableAliases`, e.g. on `test-google-a.com`); they deliver too.
    pub non_editable_aliases: Vec<String>,
}

/// What a member of a group is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberType {
    User,
    Group,
    /// Every user of the customer (the member id is the customer id).
    Customer,
    /// Someone outside the customer. Google lists them as `USER`, with an
    /// id when the address is a Google account and without one otherwise.
    External,
}

impl MemberType {
    /// Google's spelling: `USER`, `GROUP`, `CUSTOMER`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberType::User => "USER",
            MemberType::Group => "GROUP",
            MemberType::Customer => "CUSTOMER",
            MemberType::External => "USER",
        }
    }
}

/// A member's role in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberRole {
    Owner,
    Manager,
    Member,
}

impl MemberRole {
    /// Google's spelling: `OWNER`, `MANAGER`, `MEMBER`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "OWNER",
            MemberRole::Manager => "MANAGER",
            MemberRole::Member => "MEMBER",
        }
    }
}

/// One membership edge in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotMember {
    pub group_id: String,
    pub member_id: String,
    pub member_type: MemberType,
    pub role: MemberRole,
    /// An external member's address (its `member_id` is its Google id, or
    /// the address itself when it is no Google account).
    pub email: Option<String>,
}

/// A customer's directory, ordered by id: what a full sync should end up with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub customer_id: String,
    /// Live users (deleted ones are not included).
    pub users: Vec<SimUser>,
    pub groups: Vec<SimGroup>,
    pub members: Vec<SnapshotMember>,
}
