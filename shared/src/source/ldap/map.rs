//! LDAP entries to platform objects: Active Directory and Domino.

use std::collections::{BTreeMap, HashMap};

use ldap3::SearchEntry;

use crate::domain::{EmailAddress, Group, GroupKind, SourceId, User, WarningKind};
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

/// The entry's objectGUID, wherever the decoder put it (bytes that happen to
/// be valid UTF-8 land among the text attributes).
pub fn object_guid(e: &SearchEntry) -> Option<String> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("objectGUID"))
        .and_then(|(_, v)| v.first())
        .and_then(|b| guid(b))
        .or_else(|| first(e, "objectGUID").and_then(|s| guid(s.as_bytes())))
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
    let mut aliases: Vec<EmailAddress> = proxies
        .iter()
        .filter_map(|p| p.strip_prefix("smtp:"))
        .filter_map(|a| a.parse().ok())
        .collect();
    aliases.extend(mail);
    (primary, aliases)
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

/// A Domino person: Internet address in `mail`, short name in `uid`. Domino
/// has no disabled flag; members of the deny-access group count as disabled.
pub fn domino_user(id: SourceId, e: &SearchEntry, denied: bool) -> Change {
    let Some(primary) = first(e, "mail").and_then(|m| m.parse::<EmailAddress>().ok()) else {
        return skip(
            id,
            WarningKind::NoAddress,
            "no Internet address (mail); give the person one in the Domino Directory",
        );
    };
    let aliases: Vec<EmailAddress> = all(e, "mail")
        .iter()
        .skip(1)
        .filter_map(|m| m.parse().ok())
        .collect();
    let mut user = User::new(id, primary).with_aliases(aliases);
    user.display_name = first(e, "cn").map(str::to_owned);
    user.given_name = first(e, "givenName").map(str::to_owned);
    user.surname = first(e, "sn").map(str::to_owned);
    user.user_principal_name = first(e, "uid").map(str::to_owned);
    user.enabled = !denied;
    Change::User(user)
}

pub fn group(id: SourceId, e: &SearchEntry, ad: bool) -> Group {
    // AD groupType: 0x80000000 marks a security group.
    let security = first(e, "groupType")
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|t| t & 0x8000_0000 != 0 || t < 0);
    let mail = first(e, "mail").and_then(|m| m.parse().ok());
    Group {
        name: first(e, if ad { "sAMAccountName" } else { "cn" })
            .or_else(|| first(e, "cn"))
            .unwrap_or(id.as_str())
            .to_owned(),
        kind: match (ad, security, mail.is_some()) {
            (true, true, _) => GroupKind::Security,
            (_, _, true) => GroupKind::Distribution,
            _ => GroupKind::Other,
        },
        mail,
        id,
    }
}

/// Lower-cased DN, for matching `member` values against entries.
pub fn dn_key(dn: &str) -> String {
    dn.to_ascii_lowercase()
}

/// Which object kind a DN is, from what the reads found.
pub type Directory = HashMap<String, (SourceId, crate::domain::MemberKind)>;

#[cfg(test)]
mod tests {
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
}
