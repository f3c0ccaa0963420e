//! The Domino-shaped directory the test command serves from OpenLDAP
//! (infra/services/slapd.sh, seeded by ldap/domino-root-seed.py) is what its
//! manifest says: the whole directory from a blank base DN when paging,
//! dominoUNID when asked for by name, and a 1,000-entry cap on unpaged
//! searches. Other tests may apply the manifest's documented renames and
//! moves before these run, so people and groups are matched by dominoUNID.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, Scope, SearchEntry, SearchResult};
use serde_json::Value;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `infra/test`, which installs and starts OpenLDAP"
        )
    })
}

fn manifest() -> Value {
    let path = env("DIRSYNC_TEST_DOMINO_ROOT_MANIFEST");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

async fn reader() -> ldap3::Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(&env("DIRSYNC_TEST_DOMINO_ROOT_URL"))
        .await
        .unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(
        &env("DIRSYNC_TEST_DOMINO_ROOT_BIND_DN"),
        &env("DIRSYNC_TEST_DOMINO_ROOT_PASSWORD"),
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap
}

/// A paged search (500 per page) from the blank base DN.
async fn paged(ldap: &mut ldap3::Ldap, filter: &str, attrs: Vec<&str>) -> Vec<SearchEntry> {
    let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(500)),
    ];
    let base = env("DIRSYNC_TEST_DOMINO_ROOT_BASE_DN");
    let mut stream = ldap
        .streaming_search_with(adapters, &base, Scope::Subtree, filter, attrs)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(entry) = stream.next().await.unwrap() {
        out.push(SearchEntry::construct(entry));
    }
    stream.finish().await.success().unwrap();
    out
}

/// The values of an attribute, whatever the letter case of its name.
fn values<'a>(e: &'a SearchEntry, attr: &str) -> &'a [String] {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

fn one(e: &SearchEntry, attr: &str) -> String {
    match values(e, attr) {
        [v] => v.clone(),
        other => panic!("{}: expected one {attr}, got {other:?}", e.dn),
    }
}

fn org_of(dn: &str) -> String {
    dn.rsplit(',')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

#[tokio::test]
async fn blank_base_paged_search_returns_everyone_and_every_group() {
    let m = manifest();
    let mut ldap = reader().await;

    let people = paged(
        &mut ldap,
        "(objectClass=dominoPerson)",
        vec!["cn", "mail", "dominoUNID"],
    )
    .await;
    let expected: BTreeMap<String, &Value> = m["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["dominoUNID"].as_str().unwrap().to_string(), p))
        .collect();
    assert_eq!(people.len() as u64, m["counts"]["people"].as_u64().unwrap());
    let seen: BTreeMap<String, &SearchEntry> =
        people.iter().map(|e| (one(e, "dominoUNID"), e)).collect();
    assert_eq!(
        seen.keys().collect::<BTreeSet<_>>(),
        expected.keys().collect::<BTreeSet<_>>(),
        "the people's dominoUNIDs"
    );

    // People in both organisations; the documented changes may have moved one.
    let moved: HashMap<&str, &str> = m["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["dn"].as_str().unwrap(), c["new_dn"].as_str().unwrap()))
        .collect();
    let mut per_org: BTreeMap<String, u64> = BTreeMap::new();
    for (unid, e) in &seen {
        let dn = expected[unid]["dn"].as_str().unwrap();
        assert!(
            e.dn == dn || moved.get(dn) == Some(&e.dn.as_str()),
            "{unid}: {} is neither {dn} nor its documented new DN",
            e.dn
        );
        *per_org.entry(org_of(dn)).or_default() += 1;
    }
    let want: BTreeMap<String, u64> =
        serde_json::from_value(m["counts"]["people_per_org"].clone()).unwrap();
    assert_eq!(per_org, want);

    // Addresses as seeded: mail, and the extra cn values.
    let without_mail = people
        .iter()
        .filter(|e| values(e, "mail").is_empty())
        .count();
    assert_eq!(
        without_mail as u64,
        m["counts"]["people_without_mail"].as_u64().unwrap()
    );
    let percent = people
        .iter()
        .filter(|e| values(e, "mail").iter().any(|v| v.contains('%')))
        .count();
    assert_eq!(
        percent as u64,
        m["counts"]["people_with_percent_mail"].as_u64().unwrap()
    );
    let with_aliases = people
        .iter()
        .filter(|e| values(e, "cn").iter().any(|v| v.contains('@')))
        .count();
    assert_eq!(
        with_aliases as u64,
        m["counts"]["people_with_aliases"].as_u64().unwrap()
    );

    // Groups at the root, their types and how many members each lists.
    let groups = paged(
        &mut ldap,
        "(objectClass=dominoGroup)",
        vec!["cn", "member", "GroupType", "dominoUNID"],
    )
    .await;
    assert_eq!(groups.len() as u64, m["counts"]["groups"].as_u64().unwrap());
    let groups: BTreeMap<String, &SearchEntry> =
        groups.iter().map(|g| (one(g, "dominoUNID"), g)).collect();
    let mut by_dn: HashMap<String, &SearchEntry> = HashMap::new();
    for g in m["groups"].as_array().unwrap() {
        let unid = g["dominoUNID"].as_str().unwrap();
        let e = groups
            .get(unid)
            .unwrap_or_else(|| panic!("group {} is missing", g["dn"]));
        assert_eq!(e.dn.matches(',').count(), 0, "{}: not at the root", e.dn);
        let gtype = values(e, "GroupType").first().cloned();
        assert_eq!(
            gtype,
            g["GroupType"].as_u64().map(|t| t.to_string()),
            "{}",
            e.dn
        );
        assert_eq!(
            values(e, "member").len(),
            g["member"].as_array().unwrap().len(),
            "{}",
            e.dn
        );
        by_dn.insert(g["dn"].as_str().unwrap().to_lowercase(), e);
    }
    assert!(values(by_dn["cn=all staff"], "member").len() > 1000);

    // The member values written in the other escape form come back as written.
    for x in m["escaped_memberships"].as_array().unwrap() {
        let g = by_dn[&x["group"].as_str().unwrap().to_lowercase()];
        let written = x["member_as_written"].as_str().unwrap();
        assert!(
            values(g, "member").iter().any(|v| v == written),
            "{}: {written}",
            g.dn
        );
        let entry = x["entry_dn"].as_str().unwrap();
        assert_ne!(written, entry);
        assert!(people.iter().any(|p| p.dn == entry), "{entry}");
    }

    // The deny list, expanded through nesting (cycle-safe), matches.
    let current: HashMap<String, String> = seen
        .iter()
        .map(|(unid, e)| {
            (
                expected[unid]["dn"].as_str().unwrap().to_lowercase(),
                e.dn.to_lowercase(),
            )
        })
        .collect();
    let mut denied = BTreeSet::new();
    let (mut todo, mut visited) = (vec!["cn=deny access".to_string()], BTreeSet::new());
    while let Some(dn) = todo.pop() {
        if !visited.insert(dn.clone()) {
            continue;
        }
        for v in values(by_dn[&dn], "member") {
            let v = v.to_lowercase();
            if by_dn.contains_key(&v) {
                todo.push(v);
            } else {
                denied.insert(v);
            }
        }
    }
    let want: BTreeSet<String> = m["deny_members_expanded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| current[&d.as_str().unwrap().to_lowercase()].clone())
        .collect();
    assert_eq!(denied, want);
}

#[tokio::test]
async fn domino_unid_is_returned_when_asked_for_by_name() {
    let m = manifest();
    let person = &m["people"][0];
    let unid = person["dominoUNID"].as_str().unwrap();
    let mut ldap = reader().await;
    let filter = format!("(dominoUNID={unid})");
    let base = env("DIRSYNC_TEST_DOMINO_ROOT_BASE_DN");

    let (named, _) = ldap
        .search(&base, Scope::Subtree, &filter, vec!["dominoUNID"])
        .await
        .unwrap()
        .success()
        .unwrap();
    let named: Vec<_> = named.into_iter().map(SearchEntry::construct).collect();
    assert_eq!(named.len(), 1);
    assert_eq!(one(&named[0], "dominoUNID"), unid);

    // Domino serves it as an operational attribute; slapd cannot, and the
    // manifest says which one this directory is.
    let (all, _) = ldap
        .search(&base, Scope::Subtree, &filter, vec!["*"])
        .await
        .unwrap()
        .success()
        .unwrap();
    let all = SearchEntry::construct(all.into_iter().next().unwrap());
    let operational = m["unid_operational"].as_bool().unwrap();
    assert_eq!(values(&all, "dominoUNID").is_empty(), operational);
}

#[tokio::test]
async fn an_unpaged_search_stops_at_the_size_limit() {
    let m = manifest();
    let limit = m["size_limit"].as_u64().unwrap() as usize;
    let mut ldap = reader().await;
    let SearchResult(entries, result) = ldap
        .search(
            &env("DIRSYNC_TEST_DOMINO_ROOT_BASE_DN"),
            Scope::Subtree,
            "(objectClass=*)",
            vec!["1.1"],
        )
        .await
        .unwrap();
    assert_eq!(result.rc, 4, "sizeLimitExceeded: {result:?}");
    assert_eq!(entries.len(), limit);

    // The same search paged sees every entry.
    let all = paged(&mut ldap, "(objectClass=*)", vec!["1.1"]).await;
    assert_eq!(
        all.len() as u64,
        m["counts"]["entries_blank_base"].as_u64().unwrap()
    );
}
