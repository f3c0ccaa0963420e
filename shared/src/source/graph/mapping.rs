//! Graph JSON objects to platform changes.
//!
//! Users: primary address from `mail`, else the `SMTP:` proxy address;
//! aliases from the other proxy addresses (`smtp:`, and the `SMTP:` one when
//! `mail` differs); disabled from `accountEnabled: false`. Guests and users
//! without any address are not kept, and say why.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::domain::{EmailAddress, Group, GroupKind, MemberKind, SourceId, WarningKind};
use crate::source::{Change, Member, Removal, UserPatch};

pub const USER_SELECT: &str = "id,userPrincipalName,mail,proxyAddresses,displayName,givenName,surname,\
accountEnabled,userType,department,jobTitle,onPremisesSyncEnabled";

pub const GROUP_PROPS: &str = "id,displayName,mail,mailEnabled,securityEnabled,groupTypes";

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

/// A user object to a change. A property left out is one never set on a
/// full read, and unchanged on a delta read (Graph's delta docs): a user
/// missing any mapped property is a [`Change::PartialUser`] the engine
/// completes, never one read again.
pub fn user_change(id: SourceId, o: &Map<String, Value>) -> Change {
    if str_of(o, "userType").is_some_and(|t| t.eq_ignore_ascii_case("Guest")) {
        return Change::RemoveUser {
            id,
            reason: Removal::Skipped {
                kind: WarningKind::Guest,
                detail: "guest account (userType Guest)".into(),
            },
        };
    }
    let patch = patch_of(id, o);
    if patch.is_complete(&ATTRIBUTES) {
        patch.onto(None)
    } else {
        Change::PartialUser(patch)
    }
}

/// The fields a user object sends.
fn patch_of(id: SourceId, o: &Map<String, Value>) -> UserPatch {
    let sent = |k: &str| o.contains_key(k).then(|| str_of(o, k).map(str::to_owned));
    let mut patch = UserPatch::new(id);
    patch.addresses = addresses_of(o);
    patch.user_principal_name = sent("userPrincipalName");
    patch.display_name = sent("displayName");
    patch.given_name = sent("givenName");
    patch.surname = sent("surname");
    patch.enabled = o
        .contains_key("accountEnabled")
        .then(|| o["accountEnabled"].as_bool().unwrap_or(true));
    patch.attributes = ATTRIBUTES
        .iter()
        .filter(|k| o.contains_key(**k))
        .map(|k| {
            let v = match &o[*k] {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            ((*k).to_owned(), v)
        })
        .collect();
    patch
}

/// Primary address from `mail`, else the `SMTP:` proxy address; aliases
/// from the other proxy addresses (and the `SMTP:` one when `mail`
/// differs). `None` when neither property is sent. When only one is, the
/// other is taken as never set: dirsync reads delta in Graph's default
/// mode, where an unchanged property comes with its value, so one left out
/// beside a sent one has no value.
fn addresses_of(o: &Map<String, Value>) -> Option<Option<(EmailAddress, BTreeSet<EmailAddress>)>> {
    if !o.contains_key("mail") && !o.contains_key("proxyAddresses") {
        return None;
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
    let Some(primary) = mail.or_else(|| smtp_primary.clone()) else {
        return Some(None);
    };
    // Every SMTP address but the primary is an alias, a second `SMTP:`
    // one too (the run notes it: see `extra_primaries`).
    let aliases = proxies
        .iter()
        .filter_map(|p| p.strip_prefix("smtp:").or_else(|| p.strip_prefix("SMTP:")))
        .filter_map(|a| a.parse::<EmailAddress>().ok())
        .filter(|a| *a != primary)
        .collect();
    Some(Some((primary, aliases)))
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
        aliases: Default::default(),
        id,
        kind,
        scope: None,
        attributes: Default::default(),
    }
}

/// `members@delta` (or a members page's `value`) split into added and
/// removed members. Members of kinds the platform does not model (devices,
/// service principals, and organizational contacts, which the store keeps
/// no object for) are left out, so that no membership points at an object
/// the store lacks. A contact's removal still passes: it clears a
/// membership stored before contacts were left out.
pub fn members_of(entries: &[Value]) -> (Vec<Member>, Vec<Member>) {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for e in entries {
        let Some(o) = e.as_object() else { continue };
        let removal = o.contains_key("@removed");
        let kind = match str_of(o, "@odata.type") {
            Some("#microsoft.graph.user") => MemberKind::User,
            Some("#microsoft.graph.group") => MemberKind::Group,
            Some("#microsoft.graph.orgContact") if removal => MemberKind::Contact,
            _ => continue,
        };
        let Some(id) = id_of(o) else { continue };
        let m = Member::new(id, kind);
        if removal {
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

    /// What a full read makes of a user object.
    fn read_fully(o: &Map<String, Value>) -> Change {
        match user_change(id(), o) {
            Change::PartialUser(patch) => patch.onto(None),
            other => other,
        }
    }

    #[test]
    fn primary_from_mail_else_smtp_and_aliases_from_smtp() {
        let o = obj(
            json!({"mail": null, "proxyAddresses": ["SMTP:Ann@Contoso.com", "smtp:a@contoso.com", "SIP:ann@contoso.com", "X500:/o=x"],
            "accountEnabled": false, "userType": "Member", "department": "Sales", "onPremisesSyncEnabled": true}),
        );
        let Change::User(u) = read_fully(&o) else {
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
        let Change::User(u) = read_fully(&o) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "ann.smith@contoso.com");
        assert!(
            u.aliases.contains(&"ann@contoso.com".parse().unwrap()),
            "the SMTP: address stays reachable"
        );
    }

    #[test]
    fn a_second_primary_proxy_address_is_kept_as_an_alias_and_noted() {
        let proxies = [
            "SMTP:ann@contoso.com",
            "SMTP:ann@fabrikam.com",
            "smtp:a@contoso.com",
        ];
        let o = obj(json!({"mail": null, "proxyAddresses": proxies,
            "accountEnabled": true, "userType": "Member"}));
        let Change::User(u) = read_fully(&o) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "ann@contoso.com");
        let aliases: Vec<&str> = u.aliases.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            aliases,
            ["a@contoso.com", "ann@fabrikam.com"],
            "nothing dropped"
        );
        let Some(Change::Note(w)) = crate::source::extra_primaries(&id(), proxies) else {
            panic!("a note")
        };
        assert_eq!(w.kind, crate::domain::WarningKind::ExtraPrimary);
        assert!(
            w.detail.contains("ann@fabrikam.com as aliases"),
            "{}",
            w.detail
        );
        assert!(crate::source::extra_primaries(&id(), ["SMTP:a@b.com", "smtp:c@b.com"]).is_none());
    }

    #[test]
    fn guests_and_addressless_users_are_skipped_with_a_reason() {
        let guest = obj(
            json!({"mail": "g@other.com", "proxyAddresses": [], "accountEnabled": true, "userType": "Guest"}),
        );
        assert!(matches!(
            read_fully(&guest),
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
            read_fully(&none),
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
            json!({"@odata.type": "#microsoft.graph.orgContact", "id": "c2", "@removed": {"reason": "deleted"}}),
        ]);
        assert_eq!(
            added.iter().map(|m| m.kind).collect::<Vec<_>>(),
            [MemberKind::User, MemberKind::Group],
            "a contact is no member: the store keeps no object for it"
        );
        assert_eq!(
            removed.iter().map(|m| m.kind).collect::<Vec<_>>(),
            [MemberKind::User, MemberKind::Contact],
            "a contact's removal clears a membership stored earlier"
        );
    }

    #[test]
    fn a_property_left_out_is_unset_on_a_full_read() {
        // Graph's delta leaves out properties never set: no mail, no names.
        let o = obj(json!({"id": "u1", "userPrincipalName": "ann@contoso.com",
            "proxyAddresses": ["SMTP:ann@contoso.com"], "accountEnabled": true, "userType": "Member"}));
        let Change::PartialUser(_) = user_change(id(), &o) else {
            panic!("a user missing properties is partial, not read again")
        };
        let Change::User(u) = read_fully(&o) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "ann@contoso.com");
        assert_eq!(u.display_name, None);
        assert!(u.attributes.is_empty());
    }

    #[test]
    fn a_property_left_out_is_unchanged_over_the_stored_user() {
        let full = obj(
            json!({"mail": "ann@contoso.com", "proxyAddresses": ["SMTP:ann@contoso.com", "smtp:a@contoso.com"],
            "userPrincipalName": "ann@contoso.com", "displayName": "Ann", "givenName": "Ann", "surname": "Smith",
            "accountEnabled": true, "userType": "Member", "department": "Sales", "jobTitle": "Chef",
            "onPremisesSyncEnabled": null}),
        );
        let Change::User(stored) = user_change(id(), &full) else {
            panic!("every mapped property sent: a complete user")
        };
        // return=minimal: only what changed comes.
        let minimal = obj(json!({"id": "u1", "displayName": "Ann S.", "department": null}));
        let Change::PartialUser(patch) = user_change(id(), &minimal) else {
            panic!()
        };
        let Change::User(u) = patch.onto(Some(&stored)) else {
            panic!()
        };
        assert_eq!(u.display_name.as_deref(), Some("Ann S."));
        assert_eq!(u.surname.as_deref(), Some("Smith"));
        assert_eq!(u.primary_email, stored.primary_email);
        assert_eq!(u.aliases, stored.aliases);
        assert!(!u.attributes.contains_key("department"), "set to null");
        assert_eq!(u.attributes["jobTitle"], "Chef");
    }
}
