//! Domino's deny-access group: who counts as disabled.
//!
//! Domino has no disabled flag; a server document lists "Deny Access"
//! groups, typically "Deny List only" groups, often nested (a
//! `Terminations 2025` group inside `Deny Access`). The connector names one
//! group, by its DN or by its name as the server document shows it; a name
//! is looked up by `cn` among the groups under the connector's bases and
//! must match exactly one. The group's members are expanded through every
//! nested group (each read once, so a cycle ends); every other member value
//! is a person denied. Resolved once per source (per invocation of a run).

use std::collections::HashSet;

use async_trait::async_trait;
use ldap3::{Scope, SearchEntry};

use super::conn::{Query, Session};
use super::map::{all, dn_key};
use super::{DOMINO_GROUPS, LdapSource, bases, dn};
use crate::domain::MemberKind;
use crate::source::SourceError;

/// The deny-access group as read: its DN, the people it denies (their DN
/// keys, [`dn_key`]) and how many groups nested in it were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Denied {
    pub group: String,
    pub people: HashSet<String>,
    pub nested: usize,
}

/// Whether the connector's value names the group by DN (`cn=Deny
/// Access,o=Acme`) rather than by name (`Deny Access`): the connector's
/// check lets no name hold `=`.
fn is_dn(given: &str) -> bool {
    given.contains('=') && dn::is_dn(given)
}

fn not_found(given: &str, bases: &[String]) -> SourceError {
    let under: Vec<String> = bases.iter().map(|b| bases::named(b)).collect();
    let how = if is_dn(given) {
        "no entry has that DN".to_owned()
    } else {
        format!("no group under {} has that name (cn)", under.join("; "))
    };
    SourceError::Config(format!(
        "deny group {given:?} not found: {how}; give the group's name as the Domino server document \
         shows it (e.g. Deny Access) or its DN, and check that the service account can read it"
    ))
}

/// The one group whose `cn` is `name` (Domino compares names without
/// regard to case), among `groups`.
pub fn by_name<'a>(
    name: &str,
    groups: &'a [SearchEntry],
    bases: &[String],
) -> Result<&'a SearchEntry, SourceError> {
    let wanted = name.trim().to_lowercase();
    let found: Vec<&SearchEntry> = groups
        .iter()
        .filter(|g| {
            all(g, "cn")
                .iter()
                .any(|cn| cn.trim().to_lowercase() == wanted)
        })
        .collect();
    match found[..] {
        [one] => Ok(one),
        [] => Err(not_found(name, bases)),
        ref several => {
            let dns: Vec<&str> = several.iter().map(|g| g.dn.as_str()).collect();
            Err(SourceError::Config(format!(
                "deny group {name:?} names {} groups: {}; give the DN of the one meant",
                several.len(),
                dns.join("; ")
            )))
        }
    }
}

/// Reads a group: whether the entry is a group, and its member values
/// (`None`: no such entry).
#[async_trait]
pub trait ReadGroup: Send {
    async fn read_group(&mut self, dn: &str) -> Result<Option<(bool, Vec<String>)>, SourceError>;
}

/// Expands the deny group `start` (as given: `given`) through its nested
/// groups; `groups` holds the DN key of every group under the bases.
pub async fn expand(
    given: &str,
    start: &str,
    groups: &HashSet<String>,
    bases: &[String],
    read: &mut (dyn ReadGroup + Send),
) -> Result<Denied, SourceError> {
    let mut denied = Denied {
        group: start.to_owned(),
        ..Denied::default()
    };
    let mut visited = HashSet::from([dn_key(start)]);
    let mut queue = vec![start.to_owned()];
    while let Some(group) = queue.pop() {
        let first = group == start;
        let (is_group, members) = match read.read_group(&group).await? {
            Some(found) => found,
            None if first => return Err(not_found(given, bases)),
            // Listed as a group a moment ago, gone now: nobody to deny.
            None => continue,
        };
        if first && !is_group {
            return Err(SourceError::Config(format!(
                "deny group {given:?} is {start}, which is not a group; give the deny-access group's DN or name"
            )));
        }
        if !first {
            denied.nested += 1;
        }
        for member in members {
            let key = dn_key(&member);
            if groups.contains(&key) {
                if visited.insert(key) {
                    queue.push(member);
                }
            } else {
                denied.people.insert(key);
            }
        }
    }
    Ok(denied)
}

/// Groups read on the source's session.
struct OnSession<'a>(&'a mut Session);

#[async_trait]
impl ReadGroup for OnSession<'_> {
    async fn read_group(&mut self, dn: &str) -> Result<Option<(bool, Vec<String>)>, SourceError> {
        let attrs = ["objectClass", "member"];
        let what = "deny-access group read";
        let Some(e) = LdapSource::entry(self.0, what, dn, &attrs).await? else {
            return Ok(None);
        };
        let is_group = LdapSource::kind_of(&e) == MemberKind::Group;
        Ok(Some((is_group, LdapSource::members(self.0, &e).await?)))
    }
}

impl LdapSource {
    /// Reads the deny-access group named `given` over `bases`.
    pub(super) async fn read_deny_group(
        session: &mut Session,
        bases: &[String],
        given: &str,
    ) -> Result<Denied, SourceError> {
        // Every group's DN and names: the members that are groups, and the
        // group a name means.
        let mut groups = Vec::new();
        for base in bases {
            let q = Query {
                what: "search for groups (deny-access group)",
                base,
                scope: Scope::Subtree,
                filter: DOMINO_GROUPS,
                attrs: &["cn"],
            };
            groups.extend(Self::search_all(session, &q).await?);
        }
        let start = if is_dn(given) {
            given.to_owned()
        } else {
            by_name(given, &groups, bases)?.dn.clone()
        };
        let keys: HashSet<String> = groups.iter().map(|g| dn_key(&g.dn)).collect();
        expand(given, &start, &keys, bases, &mut OnSession(session)).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A directory of groups: DN → (is a group, member values).
    struct Groups(HashMap<String, (bool, Vec<String>)>, usize);

    #[async_trait]
    impl ReadGroup for Groups {
        async fn read_group(
            &mut self,
            dn: &str,
        ) -> Result<Option<(bool, Vec<String>)>, SourceError> {
            self.1 += 1;
            Ok(self.0.get(&dn_key(dn)).cloned())
        }
    }

    fn directory(groups: &[(&str, &[&str])]) -> Groups {
        let mut map: HashMap<String, (bool, Vec<String>)> = groups
            .iter()
            .map(|(dn, members)| {
                let members = members.iter().map(|m| (*m).to_owned()).collect();
                (dn_key(dn), (true, members))
            })
            .collect();
        map.insert(dn_key("cn=Ada,o=X"), (false, Vec::new()));
        Groups(map, 0)
    }

    fn keys(g: &Groups) -> HashSet<String> {
        g.0.iter()
            .filter(|(_, (group, _))| *group)
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn bases() -> Vec<String> {
        vec!["o=X".to_owned()]
    }

    #[tokio::test]
    async fn nested_groups_are_expanded_and_a_cycle_ends() {
        let mut dir = directory(&[
            ("cn=Deny Access,o=X", &["cn=Ada,o=X", "CN=Terminations,O=X"]),
            ("cn=Terminations,o=X", &["cn=Ben,o=X", "cn=Inner,o=X"]),
            // Back to the top: a cycle.
            (
                "cn=Inner,o=X",
                &["cn=Deny Access,o=X", "cn=Cy,o=X", "cn=ada,o=x"],
            ),
        ]);
        let groups = keys(&dir);
        let d = expand(
            "Deny Access",
            "cn=Deny Access,o=X",
            &groups,
            &bases(),
            &mut dir,
        )
        .await
        .unwrap();
        let mut people: Vec<&str> = d.people.iter().map(String::as_str).collect();
        people.sort_unstable();
        assert_eq!(people, ["cn=ada,o=x", "cn=ben,o=x", "cn=cy,o=x"]);
        assert_eq!(d.nested, 2);
        assert_eq!(dir.1, 3, "each group read once");
    }

    #[tokio::test]
    async fn a_missing_group_or_a_person_is_a_clear_error() {
        let mut dir = directory(&[]);
        let groups = keys(&dir);
        let e = expand("cn=Gone,o=X", "cn=Gone,o=X", &groups, &bases(), &mut dir)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("deny group \"cn=Gone,o=X\" not found"),
            "{e}"
        );
        let e = expand("cn=Ada,o=X", "cn=Ada,o=X", &groups, &bases(), &mut dir)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a group"), "{e}");
    }

    fn group(dn: &str, cns: &[&str]) -> SearchEntry {
        SearchEntry {
            dn: dn.to_owned(),
            attrs: HashMap::from([(
                "cn".to_owned(),
                cns.iter().map(|c| (*c).to_owned()).collect(),
            )]),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn a_name_must_match_exactly_one_group() {
        let groups = [
            group("cn=Deny Access,o=X", &["Deny Access"]),
            group("cn=Sales,o=X", &["Sales"]),
            group("cn=Sales,o=Y", &["Sales", "Sales EU"]),
        ];
        let found = by_name("deny access", &groups, &bases()).unwrap();
        assert_eq!(found.dn, "cn=Deny Access,o=X");
        let e = by_name("Sales", &groups, &bases()).unwrap_err().to_string();
        assert!(
            e.contains("names 2 groups: cn=Sales,o=X; cn=Sales,o=Y"),
            "{e}"
        );
        let e = by_name("Nobody", &groups, &bases())
            .unwrap_err()
            .to_string();
        assert!(e.contains("deny group \"Nobody\" not found"), "{e}");
        assert!(e.contains("no group under o=X"), "{e}");
    }
}
