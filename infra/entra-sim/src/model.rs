//! The directory objects and registrations a test sets up, and the snapshot it
//! compares a sync against. These are plain data: the simulator's behaviour
//! lives in the other modules.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// `user.userType` in Graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserType {
    Member,
    Guest,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Member => "Member",
            UserType::Guest => "Guest",
        }
    }
}

/// An Entra user with the properties dirsync reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimUser {
    pub id: Uuid,
    pub user_principal_name: String,
    /// `None` is Graph's `null`: a user without a mailbox.
    pub mail: Option<String>,
    pub mail_nickname: Option<String>,
    /// `SMTP:` marks the primary address, `smtp:` the aliases.
    pub proxy_addresses: Vec<String>,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub account_enabled: bool,
    pub user_type: UserType,
    pub department: Option<String>,
    pub job_title: Option<String>,
    /// `None` is Graph's `null`: a cloud-only user.
    pub on_premises_sync_enabled: Option<bool>,
}

impl SimUser {
    /// An enabled member whose primary address is its UPN.
    pub fn new(id: Uuid, user_principal_name: &str, display_name: &str) -> Self {
        let nickname = user_principal_name
            .split('@')
            .next()
            .unwrap_or(user_principal_name);
        SimUser {
            id,
            user_principal_name: user_principal_name.to_string(),
            mail: Some(user_principal_name.to_string()),
            mail_nickname: Some(nickname.to_string()),
            proxy_addresses: vec![format!("SMTP:{user_principal_name}")],
            display_name: display_name.to_string(),
            given_name: None,
            surname: None,
            account_enabled: true,
            user_type: UserType::Member,
            department: None,
            job_title: None,
            on_premises_sync_enabled: None,
        }
    }
}

/// An Entra group: security, Microsoft 365 (`groupTypes: ["Unified"]`) or
/// distribution list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimGroup {
    pub id: Uuid,
    pub display_name: String,
    pub description: Option<String>,
    pub mail: Option<String>,
    pub mail_enabled: bool,
    pub mail_nickname: String,
    pub security_enabled: bool,
    pub group_types: Vec<String>,
    pub proxy_addresses: Vec<String>,
}

impl SimGroup {
    /// A security group: no mail, `securityEnabled`.
    pub fn security(id: Uuid, display_name: &str) -> Self {
        SimGroup {
            id,
            display_name: display_name.to_string(),
            description: None,
            mail: None,
            mail_enabled: false,
            mail_nickname: nickname_of(display_name),
            security_enabled: true,
            group_types: Vec::new(),
            proxy_addresses: Vec::new(),
        }
    }

    /// A Microsoft 365 group with a mailbox.
    pub fn unified(id: Uuid, display_name: &str, mail: &str) -> Self {
        SimGroup {
            id,
            display_name: display_name.to_string(),
            description: None,
            mail: Some(mail.to_string()),
            mail_enabled: true,
            mail_nickname: mail.split('@').next().unwrap_or(mail).to_string(),
            security_enabled: false,
            group_types: vec!["Unified".to_string()],
            proxy_addresses: vec![format!("SMTP:{mail}")],
        }
    }

    /// A distribution list: mail-enabled, not a security group.
    pub fn distribution(id: Uuid, display_name: &str, mail: &str) -> Self {
        SimGroup {
            group_types: Vec::new(),
            ..SimGroup::unified(id, display_name, mail)
        }
    }

    /// Microsoft 365 groups go to the recycle bin when deleted; the others are
    /// removed for good. Delta reports the two differently.
    pub fn is_unified(&self) -> bool {
        self.group_types.iter().any(|t| t == "Unified")
    }
}

fn nickname_of(display_name: &str) -> String {
    display_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// An organizational contact (`#microsoft.graph.orgContact`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimContact {
    pub id: Uuid,
    pub display_name: String,
    pub mail: Option<String>,
    pub mail_nickname: Option<String>,
    pub proxy_addresses: Vec<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub company_name: Option<String>,
}

impl SimContact {
    pub fn new(id: Uuid, display_name: &str, mail: &str) -> Self {
        SimContact {
            id,
            display_name: display_name.to_string(),
            mail: Some(mail.to_string()),
            mail_nickname: mail.split('@').next().map(str::to_string),
            proxy_addresses: vec![format!("SMTP:{mail}")],
            given_name: None,
            surname: None,
            company_name: None,
        }
    }
}

/// What kind of directory object a group member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberKind {
    User,
    Group,
    Contact,
}

impl MemberKind {
    /// The `@odata.type` Graph puts on the member.
    pub fn odata_type(self) -> &'static str {
        match self {
            MemberKind::User => "#microsoft.graph.user",
            MemberKind::Group => "#microsoft.graph.group",
            MemberKind::Contact => "#microsoft.graph.orgContact",
        }
    }
}

/// One direct membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Membership {
    pub group_id: Uuid,
    pub member_id: Uuid,
    pub member_kind: MemberKind,
}

impl Membership {
    pub fn member_odata_type(&self) -> &'static str {
        self.member_kind.odata_type()
    }
}

/// The ground truth of one tenant, sorted by id: what a complete sync must
/// have reproduced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectorySnapshot {
    /// Active users (soft-deleted ones are in `soft_deleted_user_ids`).
    pub users: Vec<SimUser>,
    /// Active groups.
    pub groups: Vec<SimGroup>,
    pub contacts: Vec<SimContact>,
    /// Direct memberships, sorted by group then member.
    pub memberships: Vec<Membership>,
    /// Users in the recycle bin: not listed by Graph, restorable.
    pub soft_deleted_user_ids: Vec<Uuid>,
}

/// A tenant to create.
#[derive(Clone, Debug, Default)]
pub struct TenantSpec {
    /// `None`: a random id.
    pub id: Option<Uuid>,
    pub display_name: String,
    /// The first is the default domain. An initial `*.onmicrosoft.com`
    /// domain is added when none is listed, as every real tenant has one.
    pub verified_domains: Vec<String>,
    /// Lower bound on the user count used to pick the tenant's resource-unit
    /// tier (S < 50, M 50–500, L > 500), for tests that want a large tier
    /// without generating users.
    pub users: Option<u32>,
}

/// The consent connector's multi-tenant app registration.
#[derive(Clone, Debug)]
pub struct MultiTenantApp {
    pub client_id: Uuid,
    pub object_id: Uuid,
    pub home_tenant: Uuid,
    pub redirect_uris: Vec<String>,
    /// DER certificates registered as key credentials.
    pub certificates: Vec<Vec<u8>>,
}

/// One certificate key credential of an app registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCredentialInfo {
    pub key_id: Uuid,
    pub thumbprint_sha1: Vec<u8>,
    pub thumbprint_sha256: Vec<u8>,
    /// The certificate's notBefore.
    pub start: DateTime<Utc>,
    /// The certificate's notAfter.
    pub end: DateTime<Utc>,
    pub der: Vec<u8>,
}

/// What the simulated administrator does on the next admin-consent visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentDecision {
    /// Signs in as an admin of `tenant` and accepts. When the consent URL names
    /// a specific tenant, that tenant is the one granted.
    Approve { tenant: Uuid },
    /// Presses Cancel.
    Cancel,
}
