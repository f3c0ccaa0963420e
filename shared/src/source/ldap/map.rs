//! LDAP entries to platform objects: Active Directory and Domino.

use std::collections::{BTreeMap, BTreeSet};

use ldap3::SearchEntry;

use crate::domain::{EmailAddress, Group, GroupKind, GroupScope, SourceId, User, WarningKind};
use crate::source::{Change, Removal};

/// An attribute's first value.
pub fn first<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a str> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

pub fn all<'a>(e: &'a SearchEntry, name: &str) -> Vec<&'a str> {
    e.attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().map(String::as_str))
        .collect()
}

/// An AD `objectGUID` (16 bytes, the first three fields little-endian) as
/// the usual GUID text.
pub fn guid(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 16 {
        return None;
    }
    let b = bytes;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// A binary attribute's first value, wherever the decoder put it (bytes
/// that happen to be valid UTF-8 land among the text attributes).
pub fn binary<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a [u8]> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(Vec::as_slice)
        .or_else(|| first(e, name).map(str::as_bytes))
}

/// The entry's objectGUID as text.
pub fn object_guid(e: &SearchEntry) -> Option<String> {
    binary(e, "objectGUID").and_then(guid)
}

/// RFC 4515 escaping of a value inside a search filter.
pub fn escape_filter(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// Addresses from `proxyAddresses` (`SMTP:` primary, `smtp:` aliases) and
/// `mail`: the primary is the `SMTP:` one, else `mail`.
fn addresses(e: &SearchEntry) -> (Option<EmailAddress>, Vec<EmailAddress>) {
    let proxies = all(e, "proxyAddresses");
    let smtp = proxies
        .iter()
        .find_map(|p| p.strip_prefix("SMTP:"))
        .and_then(|a| a.parse().ok());
    let mail: Option<EmailAddress> = first(e, "mail").and_then(|m| m.parse().ok());
    let primary = smtp.clone().or(mail.clone());
    // A second `SMTP:` address is an alias too (the run notes it).
    let mut aliases: Vec<EmailAddress> = proxies
        .iter()
        .filter_map(|p| p.strip_prefix("smtp:").or_else(|| p.strip_prefix("SMTP:")))
        .filter_map(|a| a.parse().ok())
        .collect();
    aliases.extend(mail);
    (primary, aliases)
}

/// Domino's document id, which renames and moves keep.
pub const UNID: &str = "dominoUNID";

/// The entry's `dominoUNID` as an id: 32 hex digits, upper-cased as
/// Domino shows them; `None` when it has none that looks like one.
pub fn domino_unid(e: &SearchEntry) -> Option<SourceId> {
    let unid = first(e, UNID)?.trim();
    if unid.len() != 32 || !unid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    SourceId::new(unid.to_ascii_uppercase()).ok()
}

/// A Domino entry's id by DN (connectors keyed by DN, and entries without
/// a `dominoUNID`): the DN lower-cased as written, not its comparison
/// key, so that ids stored as such do not change.
pub fn dn_id(e: &SearchEntry) -> Option<SourceId> {
    SourceId::new(e.dn.to_ascii_lowercase()).ok()
}

fn skip(id: SourceId, kind: WarningKind, detail: &str) -> Change {
    Change::RemoveUser {
        id,
        reason: Removal::Skipped {
            kind,
            detail: detail.to_owned(),
        },
    }
}

/// An AD user entry.
pub fn ad_user(id: SourceId, e: &SearchEntry) -> Change {
    let (primary, aliases) = addresses(e);
    let Some(primary) = primary else {
        return skip(
            id,
            WarningKind::NoAddress,
            "no mail and no SMTP proxy address; give the user an email address",
        );
    };
    let uac: u32 = first(e, "userAccountControl")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut user = User::new(id, primary).with_aliases(aliases);
    user.user_principal_name = first(e, "userPrincipalName").map(str::to_owned);
    user.display_name = first(e, "displayName").map(str::to_owned);
    user.given_name = first(e, "givenName").map(str::to_owned);
    user.surname = first(e, "sn").map(str::to_owned);
    // ACCOUNTDISABLE is bit 0x2 of userAccountControl.
    user.enabled = uac & 0x2 == 0;
    user.attributes = [("department", "department"), ("title", "jobTitle")]
        .iter()
        .filter_map(|(ldap, ours)| first(e, ldap).map(|v| ((*ours).to_owned(), v.to_owned())))
        .collect::<BTreeMap<_, _>>();
    Change::User(user)
}

/// A Domino value that is an Internet address: it parses as an
/// [`EmailAddress`] and its local part has neither `%` (the
/// `name%domain@host` form Domino's LDAP service makes up for a document
/// without an Internet address, which no mail system delivers to) nor `/`
/// (a hierarchical Notes name such as `Jane Doe/Sales/Acme@AcmeMail`).
fn internet_address(value: &str) -> Option<EmailAddress> {
    let (local, _) = value.rsplit_once('@')?;
    if local.contains(['%', '/']) {
        return None;
    }
    value.parse().ok()
}

/// Whether `value` is the address Domino's LDAP service makes up when a
/// document has none: `hierarchical name%Notes domain@host`.
fn synthesized(value: &str) -> bool {
    value
        .rsplit_once('@')
        .is_some_and(|(local, _)| local.contains('%'))
}

/// A Domino document's Internet addresses. Domino has no
/// `proxyAddresses`: the primary is the first `mail` value (the Internet
/// address field); the aliases are the other `mail` values and the values
/// of the name field (`cn`, and `FullName` where the server sends it) that
/// are Internet addresses. Common names and hierarchical names are not.
struct DominoAddresses<'a> {
    /// The first `mail` value as Domino sent it.
    mail: Option<&'a str>,
    primary: Option<EmailAddress>,
    /// Lower-cased (as every [`EmailAddress`]), without the primary.
    aliases: BTreeSet<EmailAddress>,
}

impl<'a> DominoAddresses<'a> {
    fn of(e: &'a SearchEntry) -> Self {
        let mail = first(e, "mail");
        let primary = mail.and_then(internet_address);
        let mut aliases: BTreeSet<EmailAddress> = all(e, "mail")
            .into_iter()
            .skip(1)
            .chain(all(e, "cn"))
            .chain(all(e, "FullName"))
            .filter_map(internet_address)
            .collect();
        if let Some(p) = &primary {
            aliases.remove(p);
        }
        Self {
            mail,
            primary,
            aliases,
        }
    }

    /// Why a person without a primary address is not kept.
    fn missing(&self) -> String {
        let why = match self.mail {
            None => "no Internet address (mail)".to_owned(),
            Some(m) if synthesized(m) => format!(
                "no Internet address: {m} is the address Domino makes up for a person whose \
                 Internet address field is empty, and mail to it is not delivered"
            ),
            Some(m) => format!("mail {m:?} is not an Internet address"),
        };
        let names = if self.aliases.is_empty() {
            String::new()
        } else {
            let list: Vec<&str> = self.aliases.iter().map(EmailAddress::as_str).collect();
            format!(
                " (the addresses in the person's name field, {}, are not taken for it)",
                list.join(", ")
            )
        };
        format!("{why}{names}; set the person's Internet address in the Domino Directory")
    }
}

/// The first `cn` value that is not an address: what people call the
/// person or group (Domino lists the other names and addresses after it).
fn domino_name(e: &SearchEntry) -> Option<&str> {
    let names = all(e, "cn");
    names
        .iter()
        .find(|n| !n.is_empty() && !n.contains('@'))
        .or_else(|| names.iter().find(|n| !n.is_empty()))
        .copied()
}

/// A Domino person: addresses as [`DominoAddresses`] reads them, short
/// name in `uid`. A person without an Internet address (synthesized
/// `name%domain@host` ones included) is skipped with the reason. Domino
/// has no disabled flag; members of the deny-access group count as
/// disabled.
pub fn domino_user(id: SourceId, e: &SearchEntry, denied: bool) -> Change {
    let addresses = DominoAddresses::of(e);
    let Some(primary) = addresses.primary.clone() else {
        return skip(id, WarningKind::NoAddress, &addresses.missing());
    };
    let mut user = User::new(id, primary).with_aliases(addresses.aliases);
    user.display_name = domino_name(e).map(str::to_owned);
    user.given_name = first(e, "givenName").map(str::to_owned);
    user.surname = first(e, "sn").map(str::to_owned);
    user.user_principal_name = first(e, "uid").map(str::to_owned);
    user.enabled = !denied;
    user.attributes
        .insert("distinguishedName".to_owned(), e.dn.clone());
    Change::User(user)
}

/// `groupType` bits: the scope (0x2 global, 0x4 domain local, 0x8
/// universal; built-in groups are 0x1 | 0x4) and 0x80000000 for security.
const GLOBAL: i64 = 0x2;
const DOMAIN_LOCAL: i64 = 0x4;
const UNIVERSAL: i64 = 0x8;
const SECURITY: i64 = 0x8000_0000;

/// An AD group: named by `cn` as people see it (`sAMAccountName` is the
/// pre-Windows 2000 name, often an ASCII-folded one), its scope and type
/// from `groupType`, its other names kept as attributes.
pub fn ad_group(id: SourceId, e: &SearchEntry) -> Group {
    // AD hands the signed 32-bit value out as such: security groups are
    // negative. Widened to i64, the security bit is then set with the rest.
    let group_type = first(e, "groupType").and_then(|v| v.parse::<i64>().ok());
    let kind = match group_type {
        Some(t) if t & SECURITY != 0 => GroupKind::Security,
        Some(_) => GroupKind::Distribution,
        None => GroupKind::Other,
    };
    let name = first(e, "cn")
        .or_else(|| first(e, "sAMAccountName"))
        .unwrap_or(id.as_str())
        .to_owned();
    let mut group = Group::new(id, name, kind);
    group.mail = first(e, "mail").and_then(|m| m.parse().ok());
    group.scope = group_type.and_then(scope);
    group.attributes = first(e, "sAMAccountName")
        .map(|sam| ("sAMAccountName".to_owned(), sam.to_owned()))
        .into_iter()
        .chain([("distinguishedName".to_owned(), e.dn.clone())])
        .collect();
    group
}

fn scope(group_type: i64) -> Option<GroupScope> {
    [
        (DOMAIN_LOCAL, GroupScope::DomainLocal),
        (GLOBAL, GroupScope::Global),
        (UNIVERSAL, GroupScope::Universal),
    ]
    .into_iter()
    .find(|(bit, _)| group_type & bit != 0)
    .map(|(_, scope)| scope)
}

/// The Group type field of a Domino group document (`GroupType`, a number
/// over LDAP), which says what the group may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DominoGroupType {
    /// Mail and access control alike; Domino's default type.
    MultiPurpose,
    MailOnly,
    AccessControl,
    /// For the server document's "Not access server" list.
    DenyList,
    /// Servers, for connection documents.
    Servers,
}

impl DominoGroupType {
    fn parse(value: &str) -> Option<Self> {
        Some(match value.trim() {
            "0" => Self::MultiPurpose,
            "1" => Self::MailOnly,
            "2" => Self::AccessControl,
            "3" => Self::DenyList,
            "4" => Self::Servers,
            _ => return None,
        })
    }

    /// The type as the group's `groupType` attribute keeps it.
    fn name(self) -> &'static str {
        match self {
            Self::MultiPurpose => "multi-purpose",
            Self::MailOnly => "mail-only",
            Self::AccessControl => "access-control",
            Self::DenyList => "deny-list",
            Self::Servers => "servers",
        }
    }

    /// A mail-only group is a distribution list, one that may only grant or
    /// deny access a security group. A multi-purpose group is a
    /// distribution list when it has an address (most mailing lists are
    /// multi-purpose, Domino's default), else it can only serve access.
    fn kind(self, addressed: bool) -> GroupKind {
        match self {
            Self::MailOnly => GroupKind::Distribution,
            Self::MultiPurpose if addressed => GroupKind::Distribution,
            Self::MultiPurpose | Self::AccessControl | Self::DenyList | Self::Servers => {
                GroupKind::Security
            }
        }
    }
}

/// A Domino group: named by its first `cn`, its addresses read as a
/// person's ([`DominoAddresses`]: a synthesized `%` address is none), its
/// kind from its group type ([`DominoGroupType`]); without a type one with
/// an address delivers mail (a distribution list). The Domino type (or the
/// value as sent, when it is none of Domino's) and the DN are kept as the
/// attributes `groupType` and `distinguishedName`.
pub fn domino_group(id: SourceId, e: &SearchEntry) -> Group {
    let addresses = DominoAddresses::of(e);
    let name = domino_name(e).unwrap_or(id.as_str()).to_owned();
    // A GroupType field holding two values (some provisioning tools add
    // one to Domino's default) counts by its first.
    let sent = first(e, "groupType");
    let group_type = sent.and_then(DominoGroupType::parse);
    let mut group = Group {
        mail: addresses.primary,
        ..Group::new(id, name, GroupKind::Other)
    }
    .with_aliases(addresses.aliases);
    let addressed = group.addresses().next().is_some();
    group.kind = match (group_type, addressed) {
        (Some(t), _) => t.kind(addressed),
        (None, true) => GroupKind::Distribution,
        (None, false) => GroupKind::Other,
    };
    let type_name = group_type.map(DominoGroupType::name).or(sent);
    group.attributes = type_name
        .map(|t| ("groupType".to_owned(), t.to_owned()))
        .into_iter()
        .chain([("distinguishedName".to_owned(), e.dn.clone())])
        .collect();
    group
}

/// A DN's comparison key (see [`super::dn`]): one for every way of
/// writing the DN, for matching `member` values against entries. A plain
/// DN's key is the DN in lower case.
pub fn dn_key(dn: &str) -> String {
    super::dn::key(dn)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn guids_use_the_windows_byte_order() {
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid(&bytes).unwrap(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert!(guid(&[1, 2, 3]).is_none());
    }

    #[test]
    fn filters_are_escaped() {
        assert_eq!(escape_filter("CN=a*b (x)\\y"), "CN=a\\2ab \\28x\\29\\5cy");
    }

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "CN=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn ad_groups_are_named_by_cn_with_their_scope_and_type() {
        let e = SearchEntry {
            dn: "CN=R&D\\, Berlin,OU=Groups,DC=corp".into(),
            ..entry(&[
                ("cn", &["R&D, Berlin"]),
                ("sAMAccountName", &["rnd-berlin"]),
                ("groupType", &["-2147483644"]),
            ])
        };
        let g = ad_group(SourceId::new("g").unwrap(), &e);
        assert_eq!(g.name, "R&D, Berlin");
        assert_eq!(
            (g.kind, g.scope),
            (GroupKind::Security, Some(GroupScope::DomainLocal))
        );
        assert_eq!(g.attributes["sAMAccountName"], "rnd-berlin");
        assert_eq!(g.attributes["distinguishedName"], e.dn);
        let cases = [
            ("2", GroupKind::Distribution, GroupScope::Global),
            ("8", GroupKind::Distribution, GroupScope::Universal),
            ("-2147483640", GroupKind::Security, GroupScope::Universal),
            // Built-in groups (Administrators): 0x1 | 0x4 | security.
            ("-2147483643", GroupKind::Security, GroupScope::DomainLocal),
        ];
        for (t, kind, scope) in cases {
            let g = ad_group(SourceId::new("g").unwrap(), &entry(&[("groupType", &[t])]));
            assert_eq!((g.kind, g.scope), (kind, Some(scope)), "groupType {t}");
        }
    }

    #[test]
    fn ad_users_map_addresses_and_the_disabled_bit() {
        let e = entry(&[
            (
                "proxyAddresses",
                &["SMTP:Ann@corp.example", "smtp:a@corp.example", "X500:/o=x"],
            ),
            ("mail", &["ann@corp.example"]),
            ("userAccountControl", &["514"]),
        ]);
        let Change::User(u) = ad_user(SourceId::new("g").unwrap(), &e) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "ann@corp.example");
        assert_eq!(u.aliases.len(), 1);
        assert!(!u.enabled);
        let none = entry(&[("userAccountControl", &["512"])]);
        assert!(matches!(
            ad_user(SourceId::new("g").unwrap(), &none),
            Change::RemoveUser { .. }
        ));
    }

    fn person(attrs: &[(&str, &[&str])]) -> Change {
        domino_user(SourceId::new("p").unwrap(), &entry(attrs), false)
    }

    fn skipped_because(change: Change) -> String {
        match change {
            Change::RemoveUser {
                reason:
                    Removal::Skipped {
                        kind: WarningKind::NoAddress,
                        detail,
                    },
                ..
            } => detail,
            other => panic!("not skipped for want of an address: {other:?}"),
        }
    }

    fn addresses(u: &User) -> Vec<&str> {
        u.aliases.iter().map(EmailAddress::as_str).collect()
    }

    #[test]
    fn domino_aliases_are_the_address_shaped_names_lower_cased_once_each() {
        let Change::User(u) = person(&[
            ("mail", &["Jane.Doe@Acme.example"]),
            (
                "cn",
                &[
                    "Jane Doe",
                    "Jane Doe/Sales/Acme",
                    "JDoe@Acme.example",
                    "jdoe@acme.example",
                    "JANE.DOE@ACME.EXAMPLE",
                    "Jane Doe/Sales/Acme@AcmeMail",
                ],
            ),
            (
                "FullName",
                &["CN=Jane Doe/OU=Sales/O=Acme", "j.doe@acme.example"],
            ),
        ]) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "jane.doe@acme.example");
        assert_eq!(addresses(&u), ["j.doe@acme.example", "jdoe@acme.example"]);
        assert_eq!(u.display_name.as_deref(), Some("Jane Doe"));
    }

    #[test]
    fn further_domino_mail_values_are_aliases() {
        let Change::User(u) = person(&[
            (
                "mail",
                &[
                    "ann@acme.example",
                    "Ann.Lee@acme.example",
                    "ann@acme.example",
                ],
            ),
            ("cn", &["ann@acme.example", "Ann Lee"]),
        ]) else {
            panic!()
        };
        assert_eq!(u.primary_email.as_str(), "ann@acme.example");
        assert_eq!(addresses(&u), ["ann.lee@acme.example"]);
        assert_eq!(
            u.display_name.as_deref(),
            Some("Ann Lee"),
            "not the address"
        );
    }

    #[test]
    fn a_synthesized_domino_address_is_no_primary_and_the_skip_says_why() {
        let detail = skipped_because(person(&[
            ("mail", &["Jane_Doe/Sales/Acme%Acme@mail.acme.example"]),
            (
                "cn",
                &["Jane Doe", "Jane Doe/Sales/Acme", "jdoe@acme.example"],
            ),
        ]));
        assert!(
            detail.contains("Jane_Doe/Sales/Acme%Acme@mail.acme.example")
                && detail.contains("Internet address field is empty")
                && detail.contains("jdoe@acme.example"),
            "{detail}"
        );
        // Flat names are synthesized the same way.
        let detail = skipped_because(person(&[("mail", &["Ops%Acme@acme.example"])]));
        assert!(detail.contains("makes up"), "{detail}");
        // Nor are `%` addresses aliases.
        let Change::User(u) = person(&[
            ("mail", &["ann@acme.example", "Ann%Acme@acme.example"]),
            ("cn", &["Ann%Acme@acme.example"]),
        ]) else {
            panic!()
        };
        assert!(u.aliases.is_empty(), "{:?}", u.aliases);
    }

    #[test]
    fn domino_people_without_an_internet_address_are_skipped() {
        let detail = skipped_because(person(&[("cn", &["Bob Roe", "Bob Roe/Sales/Acme"])]));
        assert!(detail.starts_with("no Internet address (mail)"), "{detail}");
        let detail = skipped_because(person(&[("mail", &["Bob Roe"])]));
        assert!(detail.contains("not an Internet address"), "{detail}");
    }

    fn group(attrs: &[(&str, &[&str])]) -> Group {
        let e = SearchEntry {
            dn: "cn=All Staff".into(),
            ..entry(attrs)
        };
        domino_group(SourceId::new("g").unwrap(), &e)
    }

    #[test]
    fn domino_group_types_choose_the_kind_and_are_kept() {
        let mail: (&str, &[&str]) = ("mail", &["staff@acme.example"]);
        let cases = [
            ("0", true, GroupKind::Distribution, "multi-purpose"),
            ("0", false, GroupKind::Security, "multi-purpose"),
            ("1", true, GroupKind::Distribution, "mail-only"),
            ("1", false, GroupKind::Distribution, "mail-only"),
            ("2", true, GroupKind::Security, "access-control"),
            ("3", false, GroupKind::Security, "deny-list"),
            ("4", false, GroupKind::Security, "servers"),
        ];
        for (t, addressed, kind, name) in cases {
            let t = [t];
            let mut attrs = vec![("cn", &["All Staff"][..]), ("groupType", &t[..])];
            if addressed {
                attrs.push(mail);
            }
            let g = group(&attrs);
            assert_eq!(g.kind, kind, "GroupType {}, addressed {addressed}", t[0]);
            assert_eq!(g.attributes["groupType"], name);
            assert_eq!(g.attributes["distinguishedName"], "cn=All Staff");
            assert_eq!(g.mail.is_some(), addressed);
        }
    }

    #[test]
    fn domino_groups_without_a_known_type_deliver_mail_if_they_have_an_address() {
        let g = group(&[("cn", &["All Staff"]), ("mail", &["staff@acme.example"])]);
        assert_eq!(g.kind, GroupKind::Distribution);
        assert!(!g.attributes.contains_key("groupType"));
        let g = group(&[("cn", &["All Staff"])]);
        assert_eq!(g.kind, GroupKind::Other);
        let g = group(&[("cn", &["All Staff"]), ("GroupType", &["9"])]);
        assert_eq!(
            (g.kind, g.attributes["groupType"].as_str()),
            (GroupKind::Other, "9")
        );
        // Two values: the first counts.
        let g = group(&[("cn", &["All Staff"]), ("GroupType", &["2", "0"])]);
        assert_eq!(g.kind, GroupKind::Security);
    }

    #[test]
    fn domino_group_addresses_are_read_as_people_s() {
        let g = group(&[
            (
                "cn",
                &["Staff@Acme.example", "All Staff", "all@acme.example"],
            ),
            ("mail", &["STAFF@acme.example"]),
            ("groupType", &["1"]),
        ]);
        assert_eq!(g.name, "All Staff");
        assert_eq!(
            g.mail.as_ref().map(EmailAddress::as_str),
            Some("staff@acme.example")
        );
        let aliases: Vec<&str> = g.aliases.iter().map(EmailAddress::as_str).collect();
        assert_eq!(aliases, ["all@acme.example"]);
        // A synthesized address is none: the group serves access only.
        let g = group(&[
            ("cn", &["All Staff"]),
            ("mail", &["All_Staff%Acme@acme.example"]),
            ("groupType", &["0"]),
        ]);
        assert_eq!((g.mail.clone(), g.kind), (None, GroupKind::Security));
    }
}
