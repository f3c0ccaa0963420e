//! A group's complete member list: its `member` values that name objects
//! the connector keeps, and in Active Directory the users whose primary
//! group it is.
//!
//! AD never lists a user in the `member` of their primary group (Domain
//! Users, or whichever group `primaryGroupID` names), so without the second
//! half Domain Users looks empty. `primaryGroupID` is the group's RID: the
//! user's own `objectSid` with its last part replaced by it is the group's
//! `objectSid` (a primary group is always in the user's domain).
//!
//! Only users and groups the connector's own filters select under its base
//! DN can be members: contacts, computers and objects outside the base or
//! the filters are never stored, and a membership naming one would point at
//! nothing.

use std::collections::{HashMap, HashSet};

use ldap3::SearchEntry;

use super::map::{binary, dn_key, first};
use crate::domain::SourceId;
use crate::source::Member;

/// The objects a group's members may be, found by one read of the scope.
#[derive(Default)]
pub struct Directory {
    /// DN key ([`dn_key`]) → the member it is.
    by_dn: HashMap<String, Member>,
    /// A group's `objectSid` → the users whose primary group it is.
    primary: HashMap<Vec<u8>, Vec<SourceId>>,
}

impl Directory {
    /// Notes an entry of the scope read as `member`.
    pub fn insert(&mut self, e: &SearchEntry, member: Member) {
        if let Some(group) = primary_group_sid(e) {
            self.primary
                .entry(group)
                .or_default()
                .push(member.id.clone());
        }
        self.by_dn.insert(dn_key(&e.dn), member);
    }

    /// The complete member list of `group`, whose `member` values are
    /// `dns`: those the scope holds, then its primary members.
    pub fn members(&self, group: &SearchEntry, dns: &[String]) -> Vec<Member> {
        let mut members: Vec<Member> = dns
            .iter()
            .filter_map(|dn| self.by_dn.get(&dn_key(dn)).cloned())
            .collect();
        let primary = binary(group, "objectSid").and_then(|sid| self.primary.get(sid));
        if let Some(users) = primary {
            // AD keeps a user out of their primary group's `member`; a
            // server that did not would list them twice.
            let listed: HashSet<SourceId> = members.iter().map(|m| m.id.clone()).collect();
            members.extend(
                users
                    .iter()
                    .filter(|id| !listed.contains(*id))
                    .map(|id| Member::new(id.clone(), crate::domain::MemberKind::User)),
            );
        }
        members
    }
}

/// The `objectSid` of the entry's primary group, from its own `objectSid`
/// and `primaryGroupID`; `None` for entries without them (groups, Domino).
pub fn primary_group_sid(e: &SearchEntry) -> Option<Vec<u8>> {
    let rid: u32 = first(e, "primaryGroupID")?.parse().ok()?;
    let mut sid = binary(e, "objectSid")?.to_vec();
    // Revision, sub-authority count, a 6-byte authority, then the
    // sub-authorities, 4 bytes each, little-endian; the RID is the last.
    let parts = usize::from(*sid.get(1)?);
    if parts == 0 || sid.len() != 8 + 4 * parts {
        return None;
    }
    let at = sid.len() - 4;
    sid[at..].copy_from_slice(&rid.to_le_bytes());
    Some(sid)
}

/// A filter term matching the object with this binary `objectSid`.
pub fn sid_filter(sid: &[u8]) -> String {
    let escaped: String = sid.iter().map(|b| format!("\\{b:02x}")).collect();
    format!("(objectSid={escaped})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, sid: &[u8], primary: Option<&str>) -> SearchEntry {
        let mut attrs = HashMap::new();
        if let Some(rid) = primary {
            attrs.insert("primaryGroupID".to_owned(), vec![rid.to_owned()]);
        }
        SearchEntry {
            dn: dn.into(),
            attrs,
            bin_attrs: HashMap::from([("objectSid".to_owned(), vec![sid.to_vec()])]),
        }
    }

    /// S-1-5-21-1-2-3-`rid`.
    fn sid(rid: u32) -> Vec<u8> {
        let mut s = vec![1, 5, 0, 0, 0, 0, 0, 5];
        for part in [21, 1, 2, 3, rid] {
            s.extend_from_slice(&u32::to_le_bytes(part));
        }
        s
    }

    fn user(id: &str) -> Member {
        Member::new(SourceId::new(id).unwrap(), crate::domain::MemberKind::User)
    }

    #[test]
    fn a_users_primary_group_is_their_sid_with_the_groups_rid() {
        let e = entry("CN=Ann", &sid(1105), Some("513"));
        assert_eq!(primary_group_sid(&e), Some(sid(513)));
        assert_eq!(primary_group_sid(&entry("CN=G", &sid(513), None)), None);
        assert_eq!(
            primary_group_sid(&entry("CN=X", &[1, 5, 0], Some("513"))),
            None
        );
    }

    #[test]
    fn primary_members_join_the_listed_ones_once() {
        let mut dir = Directory::default();
        dir.insert(&entry("CN=Ann", &sid(1105), Some("513")), user("ann"));
        dir.insert(&entry("CN=Bob", &sid(1106), Some("513")), user("bob"));
        dir.insert(&entry("CN=Cy", &sid(1107), Some("1200")), user("cy"));
        let domain_users = entry("CN=Domain Users", &sid(513), None);
        let listed = [
            "cn=bob".to_owned(),
            "CN=Cy".to_owned(),
            "CN=Gone".to_owned(),
        ];
        let ids: Vec<String> = dir
            .members(&domain_users, &listed)
            .into_iter()
            .map(|m| m.id.to_string())
            .collect();
        assert_eq!(ids, ["bob", "cy", "ann"], "a DN not in scope is no member");
    }

    #[test]
    fn member_values_match_entries_however_their_dns_are_written() {
        let mut dir = Directory::default();
        let rnd = "CN=R&D\\, Berlin,OU=Groups,DC=corp";
        dir.insert(&entry(rnd, &sid(1300), None), user("rnd"));
        dir.insert(
            &entry("cn=Ada Adams,ou=Sales,o=Dirsync", &sid(1301), None),
            user("ada"),
        );
        dir.insert(
            &entry("cn=\\C3\\89va,o=Dirsync", &sid(1302), None),
            user("eva"),
        );
        let group = entry("CN=G", &sid(1400), None);
        let listed = [
            "cn=r&d\\2c berlin,ou=groups,dc=corp".to_owned(),
            "CN=Ada Adams, OU=Sales, O=Dirsync".to_owned(),
            "CN=Éva,O=Dirsync".to_owned(),
            "cn=R&D,cn=Berlin,ou=Groups,dc=corp".to_owned(),
        ];
        let ids: Vec<String> = dir
            .members(&group, &listed)
            .into_iter()
            .map(|m| m.id.to_string())
            .collect();
        assert_eq!(ids, ["rnd", "ada", "eva"]);
    }

    #[test]
    fn sids_are_escaped_byte_by_byte_in_filters() {
        assert_eq!(sid_filter(&[1, 0xab]), "(objectSid=\\01\\ab)");
    }
}
