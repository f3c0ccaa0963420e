//! Where a connector's searches run: its base DNs, as the server can
//! search them.
//!
//! Active Directory searches one base DN. Domino's documented way to see
//! the whole directory (people under several organizations, groups at the
//! root) is a blank base DN, and a connector may name several bases
//! instead (`o=Acme; o=AcmeEU`). Every search (users, groups, the members'
//! directory, the deny-access group, the connection test) runs over every
//! base in turn.
//!
//! A blank base is searched from the root when the server's rootDSE names
//! the root as its naming context (Domino publishes the empty string) or
//! names none; a server that cannot search from the root (OpenLDAP answers
//! noSuchObject) names its naming contexts instead, and those are searched.
//!
//! A base that lies under another is dropped: the outer base's subtree
//! search reads its entries already, and with no two bases overlapping an
//! entry is found exactly once.

use ldap3::SearchEntry;

use super::dn;
use super::map::all;

/// The bases to search for `configured` (see [`crate::domain::LdapSettings::bases`]),
/// given the rootDSE's `namingContexts` when `configured` is the root alone.
pub fn resolve(configured: Vec<String>, root_dse: Option<&SearchEntry>) -> Vec<String> {
    if configured.iter().all(|b| b.trim().is_empty()) {
        let contexts: Vec<String> = root_dse
            .map(|e| all(e, "namingContexts"))
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.trim().to_owned())
            .collect();
        if contexts.is_empty() || contexts.iter().any(String::is_empty) {
            return vec![String::new()];
        }
        return outermost(contexts);
    }
    outermost(configured)
}

/// Whether `configured` is the blank base (the whole directory), for which
/// the rootDSE is read.
pub fn is_root(configured: &[String]) -> bool {
    configured.iter().all(|b| b.trim().is_empty())
}

/// `bases` without those that lie under another (or repeat one), in their
/// order.
pub fn outermost(bases: Vec<String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let covered = bases.iter().enumerate().any(|(j, other)| {
            j != i && dn::within(base, other) && (!dn::within(other, base) || j < i)
        });
        if !covered {
            kept.push(base.clone());
        }
    }
    kept
}

/// The base `configured` lies under among `bases`, if it was dropped for
/// it.
pub fn covering<'a>(configured: &str, bases: &'a [String]) -> Option<&'a String> {
    bases
        .iter()
        .find(|b| b.as_str() != configured && dn::within(configured, b))
}

/// A base as people read it in messages.
pub fn named(base: &str) -> String {
    if base.is_empty() {
        "the root (blank base DN)".to_owned()
    } else {
        base.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn root(contexts: &[&str]) -> SearchEntry {
        SearchEntry {
            dn: String::new(),
            attrs: HashMap::from([(
                "namingContexts".to_owned(),
                contexts.iter().map(|c| (*c).to_owned()).collect(),
            )]),
            bin_attrs: HashMap::new(),
        }
    }

    fn v(bases: &[&str]) -> Vec<String> {
        bases.iter().map(|b| (*b).to_owned()).collect()
    }

    #[test]
    fn a_blank_base_is_the_root_where_the_server_searches_from_it() {
        // Domino names the root (the empty string) as its naming context.
        assert_eq!(resolve(v(&[""]), Some(&root(&[""]))), [""]);
        assert_eq!(resolve(v(&[""]), Some(&root(&[]))), [""]);
        assert_eq!(resolve(v(&[""]), None), [""]);
        // OpenLDAP names its databases' suffixes, and refuses the root.
        assert_eq!(
            resolve(
                v(&[""]),
                Some(&root(&["o=Dirsync", "ou=Sub,o=Dirsync", "o=Other"]))
            ),
            ["o=Dirsync", "o=Other"]
        );
    }

    #[test]
    fn a_base_under_another_is_read_with_it_once() {
        let bases = v(&["ou=Sales,o=Acme", "o=Acme", "o=AcmeEU", "O=ACME"]);
        let kept = resolve(bases, None);
        assert_eq!(kept, ["o=Acme", "o=AcmeEU"]);
        assert_eq!(covering("ou=Sales,o=Acme", &kept).unwrap(), "o=Acme");
        assert_eq!(covering("O=ACME", &kept).unwrap(), "o=Acme");
        assert_eq!(covering("o=AcmeEU", &kept), None);
        assert_eq!(
            resolve(v(&["ou=Sales,o=Dirsync", "ou=Engineering,o=Dirsync"]), None),
            ["ou=Sales,o=Dirsync", "ou=Engineering,o=Dirsync"]
        );
    }
}
