//! Graph JSON objects to platform changes.
//!
//! Users: primary address from `mail`, else the `SMTP:` proxy address;
//! aliases from the other proxy addresses (`smtp:`, and the `SMTP:` one when
//! `mail` differs); disabled from `accountEnabled: false`. Guests and users
//! without any address are not kept, and say why.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::domain::{EmailAddress, Group, GroupKind, MemberKind, SourceId, User, WarningKind};
use crate::source::{Change, Member, Removal};

pub const USER_SELECT: &str = "id,userPrincipalName,mail,proxyAddresses,displayName,givenName,surname,\
accountEnabled,userType,department,jobTitle,onPremisesSyncEnabled";

/// Properties a user object must carry to be mapped; a delta round may send
/// only what changed (Graph: "at least the updated properties").
pub const USER_REQUIRED: [&str; 4] = ["mail", "proxyAddresses", "accountEnabled", "userType"];

pub const GROUP_PROPS: &str = "id,displayName,mail,mailEnabled,securityEnabled,groupTypes";
pub const GROUP_REQUIRED: [&str; 5] = [
    "displayName",
    "mail",
    "mailEnabled",
    "securityEnabled",
    "groupTypes",
];

/// Attributes kept besides the core fields, by Graph property name.
const ATTRIBUTES: [&str; 3] = ["department", "jobTitle", "onPremisesSyncEnabled"];

fn str_of<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub fn id_of(o: &Map<String, Value>) -> Option<SourceId> {
    str_of(o, "id").and_then(|s| SourceId::new(s).ok())
}

/// `Some(reason)` for an `@removed` object.
pub fn removal_of(o: &Map<String, Value>) -> Option<Removal> {
    let removed = o.get("@removed")?;
    Some(match removed.get("reason").and_then(Value::as_str) {
        Some("changed") => Removal::SoftDeleted,
        _ => Removal::Deleted,
    })
}

pub fn has_all(o: &Map<String, Value>, keys: &[&str]) -> bool {
    keys.iter().all(|k| o.contains_key(*k))
}

/// A complete user object to a change.
pub fn user_change(id: SourceId, o: &Map<String, Value>) -> Change {
    let skip = |kind, detail: String| Change::RemoveUser {
        id: id.clone(),
        reason: Removal::Skipped { kind, detail },
    };
    if str_of(o, "userType").is_some_and(|t| t.eq_ignore_ascii_case("Guest")) {
        return skip(WarningKind::Guest, "guest account (userType Guest)".into());
    }
    let proxies: Vec<&str> = o
        .get("proxyAddresses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let smtp_primary = proxies
        .iter()
        .find_map(|p| p.strip_prefix("SMTP:"))
        .and_then(|a| a.parse::<EmailAddress>().ok());
    let mail = str_of(o, "mail").and_then(|m| m.parse::<EmailAddress>().ok());
    let Some(primary) = mail.clone().or_else(|| smtp_primary.clone()) else {
        return skip(
            WarningKind::NoAddress,
            "no mail and no SMTP proxy address; give the user a mailbox or an email address".into(),
        );
    };
    let aliases = proxies
        .iter()
        .filter_map(|p| p.strip_prefix("smtp:"))
        .filter_map(|a| a.parse::<EmailAddress>().ok())
        .chain(smtp_primary);
    let mut user = User::new(id, primary).with_aliases(aliases);
    user.user_principal_name = str_of(o, "userPrincipalName").map(str::to_owned);
    user.display_name = str_of(o, "displayName").map(str::to_owned);
    user.given_name = str_of(o, "givenName").map(str::to_owned);
    user.surname = str_of(o, "surname").map(str::to_owned);
    user.enabled = o
        .get("accountEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    user.attributes = ATTRIBUTES
        .iter()
        .filter_map(|k| {
            let v = match o.get(*k)? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some(((*k).to_owned(), v))
        })
        .collect::<BTreeMap<_, _>>();
    Change::User(user)
}

pub fn group_of(id: SourceId, o: &Map<String, Value>) -> Group {
    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
    let unified = o
        .get("groupTypes")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|v| v.as_str() == Some("Unified")));
    let kind = match (unified, flag("mailEnabled"), flag("securityEnabled")) {
        (true, _, _) => GroupKind::Microsoft365,
        (false, _, true) => GroupKind::Security,
        (false, true, false) => GroupKind::Distribution,
        (false, false, false) => GroupKind::Other,
    };
    Group {
        name: str_of(o, "displayName").unwrap_or(id.as_str()).to_owned(),
        mail: str_of(o, "mail").and_then(|m| m.parse().ok()),
        id,
        kind,
        scope: None,
        attributes: Default::default(),
    }
}

/// `members@delta` (or a members page's `value`) split into added and
/// removed members. Members of kinds the platform does not model (devices,
/// service principals) are left out.
pub fn members_of(entries: &[Value]) -> (Vec<Member>, Vec<Member>) {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for e in entries {
        let Some(o) = e.as_object() else { continue };
        let kind = match str_of(o, "@odata.type") {
            Some("#microsoft.graph.user") => MemberKind::User,
            Some("#microsoft.graph.group") => MemberKind::Group,
            Some("#microsoft.graph.orgContact") => MemberKind::Contact,
            _ => continue,
        };
        let Some(id) = id_of(o) else { continue };
        let m = Member { id, kind };
        if o.contains_key("@removed") {
            removed.push(m);
        } else {
            added.push(m);
        }
    }
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn id() -> SourceId {
        SourceId::new("u1").unwrap()
    }

    #[test]
    fn primary_from_mail_else_smtp_and_aliases_from_smtp() {
        let o = obj(
            json!({"mail": null, "proxyAddresses": ["SMTP:Ann@Contoso.com", "smtp:a@contoso.com", "SIP:ann@contoso.com", "X500:/o=x"],
            "accountEnabled": false, "userType": "Member", "department": "Sales", "onPremisesSyncEnabled": true}),
        );
        let Change::User(u) = user_change(id(), &o) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "ann@contoso.com");
        assert_eq!(
            u.aliases.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            ["a@contoso.com"]
        );
        assert!(!u.enabled);
        assert_eq!(u.attributes["department"], "Sales");
        assert_eq!(u.attributes["onPremisesSyncEnabled"], "true");

        let o = obj(
            json!({"mail": "ann.smith@contoso.com", "proxyAddresses": ["SMTP:ann@contoso.com"], "accountEnabled": true, "userType": "Member"}),
        );
        let Change::User(u) = user_change(id(), &o) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "ann.smith@contoso.com");
        assert!(
            u.aliases.contains(&"ann@contoso.com".parse().unwrap()),
            "the SMTP: address stays reachable"
        );
    }

    #[test]
    fn guests_and_addressless_users_are_skipped_with_a_reason() {
        let guest = obj(
            json!({"mail": "g@other.com", "proxyAddresses": [], "accountEnabled": true, "userType": "Guest"}),
        );
        assert!(matches!(
            user_change(id(), &guest),
            Change::RemoveUser {
                reason: Removal::Skipped {
                    kind: WarningKind::Guest,
                    ..
                },
                ..
            }
        ));
        let none = obj(
            json!({"mail": null, "proxyAddresses": [], "accountEnabled": true, "userType": "Member"}),
        );
        assert!(matches!(
            user_change(id(), &none),
            Change::RemoveUser {
                reason: Removal::Skipped {
                    kind: WarningKind::NoAddress,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn group_kinds_and_member_types() {
        let g = group_of(
            id(),
            &obj(
                json!({"displayName": "All", "groupTypes": ["Unified"], "mailEnabled": true, "securityEnabled": false, "mail": "all@contoso.com"}),
            ),
        );
        assert_eq!(g.kind, GroupKind::Microsoft365);
        let g = group_of(
            id(),
            &obj(
                json!({"displayName": "DL", "groupTypes": [], "mailEnabled": true, "securityEnabled": false}),
            ),
        );
        assert_eq!(g.kind, GroupKind::Distribution);
        let (added, removed) = members_of(&[
            json!({"@odata.type": "#microsoft.graph.user", "id": "u1"}),
            json!({"@odata.type": "#microsoft.graph.group", "id": "g2"}),
            json!({"@odata.type": "#microsoft.graph.orgContact", "id": "c1"}),
            json!({"@odata.type": "#microsoft.graph.device", "id": "d1"}),
            json!({"@odata.type": "#microsoft.graph.user", "id": "u9", "@removed": {"reason": "deleted"}}),
        ]);
        assert_eq!(
            added.iter().map(|m| m.kind).collect::<Vec<_>>(),
            [MemberKind::User, MemberKind::Group, MemberKind::Contact]
        );
        assert_eq!(removed.len(), 1);
    }
}
