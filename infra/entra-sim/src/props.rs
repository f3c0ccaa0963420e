//! Graph properties: which exist on which type, `$select` parsing, and the
//! JSON views that write an object with exactly the selected properties.
//!
//! Properties are bits of a `u64` so a selection is cheap to store in a page
//! token and to test per object.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::error::GraphError;
use crate::model::{MemberKind, SimContact, SimGroup, SimUser};

/// Every property the simulator knows, on any type. Some are never set by the
/// simulator and always serialize as `null` (or `[]`): they exist so a client
/// selecting a real Graph property is not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prop {
    Id,
    UserPrincipalName,
    DisplayName,
    GivenName,
    Surname,
    Mail,
    MailNickname,
    ProxyAddresses,
    AccountEnabled,
    UserType,
    Department,
    JobTitle,
    OnPremisesSyncEnabled,
    BusinessPhones,
    MobilePhone,
    OfficeLocation,
    PreferredLanguage,
    CompanyName,
    EmployeeId,
    OnPremisesImmutableId,
    Description,
    MailEnabled,
    SecurityEnabled,
    GroupTypes,
    Visibility,
}

/// Name and property, in the order objects are written.
const PROPS: [(Prop, &str); 25] = [
    (Prop::Id, "id"),
    (Prop::UserPrincipalName, "userPrincipalName"),
    (Prop::DisplayName, "displayName"),
    (Prop::GivenName, "givenName"),
    (Prop::Surname, "surname"),
    (Prop::Mail, "mail"),
    (Prop::MailNickname, "mailNickname"),
    (Prop::ProxyAddresses, "proxyAddresses"),
    (Prop::AccountEnabled, "accountEnabled"),
    (Prop::UserType, "userType"),
    (Prop::Department, "department"),
    (Prop::JobTitle, "jobTitle"),
    (Prop::OnPremisesSyncEnabled, "onPremisesSyncEnabled"),
    (Prop::BusinessPhones, "businessPhones"),
    (Prop::MobilePhone, "mobilePhone"),
    (Prop::OfficeLocation, "officeLocation"),
    (Prop::PreferredLanguage, "preferredLanguage"),
    (Prop::CompanyName, "companyName"),
    (Prop::EmployeeId, "employeeId"),
    (Prop::OnPremisesImmutableId, "onPremisesImmutableId"),
    (Prop::Description, "description"),
    (Prop::MailEnabled, "mailEnabled"),
    (Prop::SecurityEnabled, "securityEnabled"),
    (Prop::GroupTypes, "groupTypes"),
    (Prop::Visibility, "visibility"),
];

pub(crate) const fn bit(prop: Prop) -> u64 {
    1 << (prop as u8)
}

const fn mask_of(props: &[Prop]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < props.len() {
        mask |= bit(props[i]);
        i += 1;
    }
    mask
}

/// Properties that exist on `microsoft.graph.user`.
pub(crate) const USER_PROPS: u64 = mask_of(&[
    Prop::Id,
    Prop::UserPrincipalName,
    Prop::DisplayName,
    Prop::GivenName,
    Prop::Surname,
    Prop::Mail,
    Prop::MailNickname,
    Prop::ProxyAddresses,
    Prop::AccountEnabled,
    Prop::UserType,
    Prop::Department,
    Prop::JobTitle,
    Prop::OnPremisesSyncEnabled,
    Prop::BusinessPhones,
    Prop::MobilePhone,
    Prop::OfficeLocation,
    Prop::PreferredLanguage,
    Prop::CompanyName,
    Prop::EmployeeId,
    Prop::OnPremisesImmutableId,
]);

/// What Graph v1.0 returns for a user when nothing is selected: note that
/// `accountEnabled` and `proxyAddresses` are not among them.
pub(crate) const USER_DEFAULT: u64 = mask_of(&[
    Prop::Id,
    Prop::BusinessPhones,
    Prop::DisplayName,
    Prop::GivenName,
    Prop::JobTitle,
    Prop::Mail,
    Prop::MobilePhone,
    Prop::OfficeLocation,
    Prop::PreferredLanguage,
    Prop::Surname,
    Prop::UserPrincipalName,
]);

/// Properties that exist on `microsoft.graph.group`; all are returned by
/// default.
pub(crate) const GROUP_PROPS: u64 = mask_of(&[
    Prop::Id,
    Prop::DisplayName,
    Prop::Description,
    Prop::Mail,
    Prop::MailEnabled,
    Prop::MailNickname,
    Prop::SecurityEnabled,
    Prop::GroupTypes,
    Prop::ProxyAddresses,
    Prop::OnPremisesSyncEnabled,
    Prop::Visibility,
]);

/// Properties that exist on `microsoft.graph.orgContact`; all are returned by
/// default.
pub(crate) const CONTACT_PROPS: u64 = mask_of(&[
    Prop::Id,
    Prop::DisplayName,
    Prop::GivenName,
    Prop::Surname,
    Prop::Mail,
    Prop::MailNickname,
    Prop::ProxyAddresses,
    Prop::CompanyName,
    Prop::Department,
    Prop::JobTitle,
    Prop::OnPremisesSyncEnabled,
]);

/// The objects a `$select` applies to, which decides the allowed names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Users,
    Groups,
    /// `members` / `transitiveMembers`: users, groups and contacts.
    DirectoryObjects,
}

impl Target {
    fn allowed(self) -> u64 {
        match self {
            Target::Users => USER_PROPS,
            Target::Groups => GROUP_PROPS,
            Target::DirectoryObjects => USER_PROPS | GROUP_PROPS | CONTACT_PROPS,
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Target::Users => "microsoft.graph.user",
            Target::Groups => "microsoft.graph.group",
            Target::DirectoryObjects => "microsoft.graph.directoryObject",
        }
    }
}

/// A parsed `$select`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Select {
    /// Selected properties; meaningful only when `explicit`.
    pub mask: u64,
    /// Whether `$select` was given; without it each type's defaults apply.
    pub explicit: bool,
    /// `members` was selected (group delta only).
    pub members: bool,
}

impl Select {
    pub const NONE: Select = Select {
        mask: 0,
        explicit: false,
        members: false,
    };

    /// Parses a `$select` value. `members` is accepted only where Graph
    /// accepts the navigation property (groups delta).
    pub fn parse(
        raw: Option<&str>,
        target: Target,
        allow_members: bool,
    ) -> Result<Select, GraphError> {
        let Some(raw) = raw else {
            return Ok(Select::NONE);
        };
        let mut select = Select {
            mask: bit(Prop::Id),
            explicit: true,
            members: false,
        };
        for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if allow_members && name.eq_ignore_ascii_case("members") {
                select.members = true;
                continue;
            }
            let found = PROPS.iter().find(|(prop, known)| {
                known.eq_ignore_ascii_case(name) && target.allowed() & bit(*prop) != 0
            });
            match found {
                Some((prop, _)) => select.mask |= bit(*prop),
                None => {
                    return Err(GraphError::bad_request(format!(
                        "Could not find a property named '{name}' on type '{}'.",
                        target.type_name()
                    )));
                }
            }
        }
        Ok(select)
    }

    /// The properties written for an object of type `kind`.
    pub fn mask_for(self, kind: MemberKind) -> u64 {
        let (all, default) = match kind {
            MemberKind::User => (USER_PROPS, USER_DEFAULT),
            MemberKind::Group => (GROUP_PROPS, GROUP_PROPS),
            MemberKind::Contact => (CONTACT_PROPS, CONTACT_PROPS),
        };
        if self.explicit {
            self.mask & all
        } else {
            default
        }
    }

    /// Whether a change to `changed` properties is tracked by a delta query
    /// with this selection. Without `$select` every property is tracked.
    pub fn tracks(self, changed: u64) -> bool {
        !self.explicit || self.mask & changed != 0
    }

    /// Whether group delta carries `members@delta`: by default, or when
    /// `members` is selected.
    pub fn includes_members(self) -> bool {
        !self.explicit || self.members
    }

    /// The names for `@odata.context`, e.g. `users(id,displayName)`.
    pub fn context_suffix(self) -> String {
        if !self.explicit {
            return String::new();
        }
        let mut names: Vec<&str> = PROPS
            .iter()
            .filter(|(prop, _)| self.mask & bit(*prop) != 0)
            .map(|(_, name)| *name)
            .collect();
        if self.members {
            names.push("members");
        }
        format!("({})", names.join(","))
    }
}

/// Which properties differ between two versions of a user.
pub(crate) fn changed_user_props(old: &SimUser, new: &SimUser) -> u64 {
    let mut mask = 0;
    let mut diff = |prop: Prop, differs: bool| {
        if differs {
            mask |= bit(prop);
        }
    };
    diff(
        Prop::UserPrincipalName,
        old.user_principal_name != new.user_principal_name,
    );
    diff(Prop::DisplayName, old.display_name != new.display_name);
    diff(Prop::GivenName, old.given_name != new.given_name);
    diff(Prop::Surname, old.surname != new.surname);
    diff(Prop::Mail, old.mail != new.mail);
    diff(Prop::MailNickname, old.mail_nickname != new.mail_nickname);
    diff(
        Prop::ProxyAddresses,
        old.proxy_addresses != new.proxy_addresses,
    );
    diff(
        Prop::AccountEnabled,
        old.account_enabled != new.account_enabled,
    );
    diff(Prop::UserType, old.user_type != new.user_type);
    diff(Prop::Department, old.department != new.department);
    diff(Prop::JobTitle, old.job_title != new.job_title);
    diff(
        Prop::OnPremisesSyncEnabled,
        old.on_premises_sync_enabled != new.on_premises_sync_enabled,
    );
    mask
}

/// Which properties differ between two versions of a group.
pub(crate) fn changed_group_props(old: &SimGroup, new: &SimGroup) -> u64 {
    let mut mask = 0;
    let mut diff = |prop: Prop, differs: bool| {
        if differs {
            mask |= bit(prop);
        }
    };
    diff(Prop::DisplayName, old.display_name != new.display_name);
    diff(Prop::Description, old.description != new.description);
    diff(Prop::Mail, old.mail != new.mail);
    diff(Prop::MailEnabled, old.mail_enabled != new.mail_enabled);
    diff(Prop::MailNickname, old.mail_nickname != new.mail_nickname);
    diff(
        Prop::SecurityEnabled,
        old.security_enabled != new.security_enabled,
    );
    diff(Prop::GroupTypes, old.group_types != new.group_types);
    diff(
        Prop::ProxyAddresses,
        old.proxy_addresses != new.proxy_addresses,
    );
    mask
}

/// The properties a user holds a value for. Delta writes only these (and
/// those set to null since): Graph's delta docs say a property never set "will
/// not be included in the response at all".
pub(crate) fn set_user_props(u: &SimUser) -> u64 {
    let mut mask = mask_of(&[
        Prop::Id,
        Prop::UserPrincipalName,
        Prop::DisplayName,
        Prop::AccountEnabled,
        Prop::UserType,
    ]);
    let mut holds = |prop: Prop, set: bool| {
        if set {
            mask |= bit(prop);
        }
    };
    holds(Prop::GivenName, u.given_name.is_some());
    holds(Prop::Surname, u.surname.is_some());
    holds(Prop::Mail, u.mail.is_some());
    holds(Prop::MailNickname, u.mail_nickname.is_some());
    holds(Prop::ProxyAddresses, !u.proxy_addresses.is_empty());
    holds(Prop::Department, u.department.is_some());
    holds(Prop::JobTitle, u.job_title.is_some());
    holds(
        Prop::OnPremisesSyncEnabled,
        u.on_premises_sync_enabled.is_some(),
    );
    mask
}

/// The properties a group holds a value for (see [`set_user_props`]).
pub(crate) fn set_group_props(g: &SimGroup) -> u64 {
    let mut mask = mask_of(&[
        Prop::Id,
        Prop::DisplayName,
        Prop::MailEnabled,
        Prop::MailNickname,
        Prop::SecurityEnabled,
    ]);
    let mut holds = |prop: Prop, set: bool| {
        if set {
            mask |= bit(prop);
        }
    };
    holds(Prop::Description, g.description.is_some());
    holds(Prop::Mail, g.mail.is_some());
    holds(Prop::GroupTypes, !g.group_types.is_empty());
    holds(Prop::ProxyAddresses, !g.proxy_addresses.is_empty());
    holds(Prop::Visibility, g.is_unified());
    mask
}

/// Writes `id` as Graph does: a lowercase hyphenated GUID.
struct IdStr(uuid::Uuid);

impl Serialize for IdStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = uuid::Uuid::encode_buffer();
        serializer.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
    }
}

const NO_STRINGS: [&str; 0] = [];

/// A user with the properties in `mask`.
pub(crate) struct UserView<'a> {
    pub user: &'a SimUser,
    pub mask: u64,
    /// Write `@odata.type` (in directoryObject collections).
    pub typed: bool,
}

impl Serialize for UserView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let u = self.user;
        let mut map = serializer.serialize_map(None)?;
        if self.typed {
            map.serialize_entry("@odata.type", MemberKind::User.odata_type())?;
        }
        for (prop, name) in PROPS {
            if self.mask & bit(prop) == 0 {
                continue;
            }
            match prop {
                Prop::Id => map.serialize_entry(name, &IdStr(u.id))?,
                Prop::UserPrincipalName => map.serialize_entry(name, &u.user_principal_name)?,
                Prop::DisplayName => map.serialize_entry(name, &u.display_name)?,
                Prop::GivenName => map.serialize_entry(name, &u.given_name)?,
                Prop::Surname => map.serialize_entry(name, &u.surname)?,
                Prop::Mail => map.serialize_entry(name, &u.mail)?,
                Prop::MailNickname => map.serialize_entry(name, &u.mail_nickname)?,
                Prop::ProxyAddresses => map.serialize_entry(name, &u.proxy_addresses)?,
                Prop::AccountEnabled => map.serialize_entry(name, &u.account_enabled)?,
                Prop::UserType => map.serialize_entry(name, u.user_type.as_str())?,
                Prop::Department => map.serialize_entry(name, &u.department)?,
                Prop::JobTitle => map.serialize_entry(name, &u.job_title)?,
                Prop::OnPremisesSyncEnabled => {
                    map.serialize_entry(name, &u.on_premises_sync_enabled)?
                }
                Prop::BusinessPhones => map.serialize_entry(name, &NO_STRINGS)?,
                _ => map.serialize_entry(name, &())?,
            }
        }
        map.end()
    }
}

/// One entry of `members@delta`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemberRef {
    pub id: uuid::Uuid,
    pub kind: MemberKind,
    pub removed: bool,
}

impl Serialize for MemberRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("@odata.type", self.kind.odata_type())?;
        map.serialize_entry("id", &IdStr(self.id))?;
        if self.removed {
            map.serialize_entry("@removed", &Removed("deleted"))?;
        }
        map.end()
    }
}

/// `{"reason": ...}` of an `@removed` annotation.
pub(crate) struct Removed(pub &'static str);

impl Serialize for Removed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("reason", self.0)?;
        map.end()
    }
}

/// A removed object in a delta page: `{"id", "@removed": {"reason"}}`.
pub(crate) struct RemovedView {
    pub id: uuid::Uuid,
    pub reason: &'static str,
}

impl Serialize for RemovedView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("id", &IdStr(self.id))?;
        map.serialize_entry("@removed", &Removed(self.reason))?;
        map.end()
    }
}

/// A group with the properties in `mask`, and optionally a slice of
/// `members@delta`.
pub(crate) struct GroupView<'a> {
    pub group: &'a SimGroup,
    pub mask: u64,
    pub typed: bool,
    pub members_delta: Option<&'a [MemberRef]>,
}

impl Serialize for GroupView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let g = self.group;
        let mut map = serializer.serialize_map(None)?;
        if self.typed {
            map.serialize_entry("@odata.type", MemberKind::Group.odata_type())?;
        }
        for (prop, name) in PROPS {
            if self.mask & bit(prop) == 0 {
                continue;
            }
            match prop {
                Prop::Id => map.serialize_entry(name, &IdStr(g.id))?,
                Prop::DisplayName => map.serialize_entry(name, &g.display_name)?,
                Prop::Description => map.serialize_entry(name, &g.description)?,
                Prop::Mail => map.serialize_entry(name, &g.mail)?,
                Prop::MailEnabled => map.serialize_entry(name, &g.mail_enabled)?,
                Prop::MailNickname => map.serialize_entry(name, &g.mail_nickname)?,
                Prop::SecurityEnabled => map.serialize_entry(name, &g.security_enabled)?,
                Prop::GroupTypes => map.serialize_entry(name, &g.group_types)?,
                Prop::ProxyAddresses => map.serialize_entry(name, &g.proxy_addresses)?,
                Prop::Visibility if g.is_unified() => map.serialize_entry(name, "Private")?,
                _ => map.serialize_entry(name, &())?,
            }
        }
        if let Some(members) = self.members_delta {
            map.serialize_entry("members@delta", members)?;
        }
        map.end()
    }
}

/// A contact with the properties in `mask`.
pub(crate) struct ContactView<'a> {
    pub contact: &'a SimContact,
    pub mask: u64,
    pub typed: bool,
}

impl Serialize for ContactView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = self.contact;
        let mut map = serializer.serialize_map(None)?;
        if self.typed {
            map.serialize_entry("@odata.type", MemberKind::Contact.odata_type())?;
        }
        for (prop, name) in PROPS {
            if self.mask & bit(prop) == 0 {
                continue;
            }
            match prop {
                Prop::Id => map.serialize_entry(name, &IdStr(c.id))?,
                Prop::DisplayName => map.serialize_entry(name, &c.display_name)?,
                Prop::GivenName => map.serialize_entry(name, &c.given_name)?,
                Prop::Surname => map.serialize_entry(name, &c.surname)?,
                Prop::Mail => map.serialize_entry(name, &c.mail)?,
                Prop::MailNickname => map.serialize_entry(name, &c.mail_nickname)?,
                Prop::ProxyAddresses => map.serialize_entry(name, &c.proxy_addresses)?,
                Prop::CompanyName => map.serialize_entry(name, &c.company_name)?,
                _ => map.serialize_entry(name, &())?,
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_is_case_insensitive_and_always_has_id() {
        let select = Select::parse(Some("DisplayName, mail"), Target::Users, false).unwrap();
        assert!(select.explicit);
        assert_eq!(
            select.mask,
            bit(Prop::Id) | bit(Prop::DisplayName) | bit(Prop::Mail)
        );
    }

    #[test]
    fn unknown_or_foreign_properties_are_refused() {
        assert!(Select::parse(Some("displayName,shoeSize"), Target::Users, false).is_err());
        assert!(
            Select::parse(Some("securityEnabled"), Target::Users, false).is_err(),
            "a group property is not a user property"
        );
        assert!(Select::parse(Some("members"), Target::Groups, false).is_err());
        assert!(
            Select::parse(Some("displayName,members"), Target::Groups, true)
                .unwrap()
                .members
        );
    }

    #[test]
    fn account_enabled_only_when_selected() {
        let user = SimUser::new(uuid::Uuid::nil(), "a@contoso.com", "A");
        let default = serde_json::to_value(UserView {
            user: &user,
            mask: Select::NONE.mask_for(MemberKind::User),
            typed: false,
        })
        .unwrap();
        assert!(default.get("accountEnabled").is_none());
        assert!(default.get("proxyAddresses").is_none());
        assert_eq!(default["userPrincipalName"], "a@contoso.com");
        let select = Select::parse(Some("accountEnabled"), Target::Users, false).unwrap();
        let chosen = serde_json::to_value(UserView {
            user: &user,
            mask: select.mask_for(MemberKind::User),
            typed: false,
        })
        .unwrap();
        assert_eq!(chosen["accountEnabled"], true);
        assert!(chosen.get("userPrincipalName").is_none());
        assert_eq!(
            chosen.as_object().unwrap().len(),
            2,
            "id and accountEnabled"
        );
    }

    #[test]
    fn changed_props_track_differences() {
        let old = SimUser::new(uuid::Uuid::nil(), "a@contoso.com", "A");
        let mut new = old.clone();
        new.account_enabled = false;
        new.job_title = Some("Chef".into());
        assert_eq!(
            changed_user_props(&old, &new),
            bit(Prop::AccountEnabled) | bit(Prop::JobTitle)
        );
    }
}
