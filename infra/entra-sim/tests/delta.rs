//! users/delta and groups/delta: rounds, removals, members@delta, large
//! groups split over pages, replays and expired tokens.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Fixture;
use dirsync_entra_sim::{GenSpec, MEMBER_REFS_PER_PAGE, SimGroup, SimUser};
use serde_json::Value;
use uuid::Uuid;

const READ: [&str; 2] = ["User.Read.All", "Group.Read.All"];

/// One delta round: the items of every page and the final deltaLink.
struct Round {
    items: Vec<Value>,
    pages: usize,
    delta_link: String,
}

async fn round(fx: &Fixture, token: &str, first: &str, page_size: Option<u32>) -> Round {
    let prefer = page_size.map(|n| format!("odata.maxpagesize={n}"));
    let headers: Vec<(&str, &str)> = prefer
        .as_deref()
        .map(|p| vec![("Prefer", p)])
        .unwrap_or_default();
    let mut items = Vec::new();
    let mut link = first.to_string();
    for pages in 1..=500 {
        let (status, response_headers, page) = fx.get_with(token, &link, &headers).await;
        assert_eq!(status, 200, "{page}");
        if let Some(prefer) = &prefer {
            assert_eq!(
                response_headers["preference-applied"].to_str().unwrap(),
                prefer
            );
        }
        items.extend(page["value"].as_array().unwrap().iter().cloned());
        if let Some(next) = page["@odata.nextLink"].as_str() {
            assert!(next.contains("$skiptoken="), "{next}");
            link = next.to_string();
            continue;
        }
        let delta_link = page["@odata.deltaLink"]
            .as_str()
            .expect("the last page has a deltaLink")
            .to_string();
        assert!(delta_link.contains("$deltatoken="), "{delta_link}");
        return Round {
            items,
            pages,
            delta_link,
        };
    }
    panic!("delta round does not end");
}

fn by_id(items: &[Value]) -> BTreeMap<String, Value> {
    items
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

/// Merges `members@delta` per group over a round: group → member → removed?
fn member_changes(items: &[Value]) -> BTreeMap<String, BTreeMap<String, bool>> {
    let mut merged: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for item in items {
        let group = item["id"].as_str().unwrap().to_string();
        let entry = merged.entry(group).or_default();
        for member in item["members@delta"].as_array().into_iter().flatten() {
            assert!(member["@odata.type"].is_string(), "{member}");
            let removed = member.get("@removed").is_some();
            entry.insert(member["id"].as_str().unwrap().to_string(), removed);
        }
    }
    merged
}

fn s(id: &Uuid) -> String {
    id.to_string()
}

#[tokio::test]
async fn the_next_round_reports_exactly_the_changes() {
    let fx = Fixture::new(&READ).await;
    let t = fx.tenant;
    let u: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    for (i, id) in u.iter().enumerate().take(5) {
        fx.sim.add_user(
            t,
            SimUser::new(*id, &format!("u{i}@contoso.example"), &format!("User {i}")),
        );
    }
    let (g1, g2) = (Uuid::new_v4(), Uuid::new_v4());
    fx.sim.add_group(t, SimGroup::security(g1, "One"));
    fx.sim.add_group(t, SimGroup::security(g2, "Two"));
    for (group, member) in [(g1, u[0]), (g1, u[1]), (g2, u[2]), (g2, u[3])] {
        fx.sim.add_member(t, &s(&group), &s(&member));
    }
    let token = fx.token().await;

    let users = round(
        &fx,
        &token,
        "users/delta?$select=displayName,mail,accountEnabled",
        Some(2),
    )
    .await;
    assert_eq!(users.pages, 3, "5 users by 2");
    assert_eq!(
        by_id(&users.items).keys().cloned().collect::<BTreeSet<_>>(),
        u[..5].iter().map(s).collect::<BTreeSet<_>>()
    );
    assert!(
        users
            .items
            .iter()
            .all(|i| i.get("accountEnabled").is_some())
    );
    let groups = round(
        &fx,
        &token,
        "groups/delta?$select=displayName,members",
        None,
    )
    .await;
    let initial = member_changes(&groups.items);
    assert_eq!(
        initial[&s(&g1)].keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([s(&u[0]), s(&u[1])])
    );
    assert!(initial[&s(&g2)].values().all(|removed| !removed));

    // The changes.
    fx.sim
        .add_user(t, SimUser::new(u[5], "u5@contoso.example", "User 5"));
    fx.sim
        .update_user(t, &s(&u[1]), |x| x.display_name = "Renamed".into());
    // jobTitle is not tracked by this $select: u2 must not appear.
    fx.sim
        .update_user(t, &s(&u[2]), |x| x.job_title = Some("Chef".into()));
    fx.sim.delete_user(t, &s(&u[3]));
    fx.sim.purge_user(t, &s(&u[4]));
    fx.sim.add_member(t, &s(&g1), &s(&u[5]));
    fx.sim.remove_member(t, &s(&g1), &s(&u[1]));

    let next = round(&fx, &token, &users.delta_link, None).await;
    let changed = by_id(&next.items);
    assert_eq!(
        changed.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([s(&u[1]), s(&u[3]), s(&u[4]), s(&u[5])]),
        "{:#?}",
        next.items
    );
    assert_eq!(changed[&s(&u[1])]["displayName"], "Renamed");
    assert_eq!(changed[&s(&u[5])]["mail"], "u5@contoso.example");
    assert_eq!(
        changed[&s(&u[3])]["@removed"]["reason"],
        "changed",
        "soft delete"
    );
    assert_eq!(changed[&s(&u[4])]["@removed"]["reason"], "deleted", "purge");
    assert_eq!(
        changed[&s(&u[3])].as_object().unwrap().len(),
        2,
        "id and @removed only"
    );

    let group_round = round(&fx, &token, &groups.delta_link, None).await;
    let members = member_changes(&group_round.items);
    assert_eq!(
        members[&s(&g1)],
        BTreeMap::from([(s(&u[1]), true), (s(&u[5]), false)])
    );
    assert_eq!(
        members[&s(&g2)],
        BTreeMap::from([(s(&u[3]), true)]),
        "a soft-deleted user leaves its groups"
    );
    let g1_item = group_round
        .items
        .iter()
        .find(|i| i["id"] == s(&g1))
        .unwrap();
    assert_eq!(
        g1_item["displayName"], "One",
        "unchanged properties come too"
    );
    let removed = g1_item["members@delta"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == s(&u[1]))
        .unwrap();
    assert_eq!(removed["@odata.type"], "#microsoft.graph.user");
    assert_eq!(removed["@removed"]["reason"], "deleted");

    // Nothing happened since: empty rounds, with a fresh deltaLink each.
    let quiet = round(&fx, &token, &next.delta_link, None).await;
    assert!(quiet.items.is_empty());
    let quiet_groups = round(&fx, &token, &group_round.delta_link, None).await;
    assert!(quiet_groups.items.is_empty());

    // A restore brings the user and its membership back.
    fx.sim.restore_user(t, &s(&u[3]));
    let restored = round(&fx, &token, &quiet.delta_link, None).await;
    assert_eq!(restored.items.len(), 1);
    assert_eq!(restored.items[0]["id"], s(&u[3]));
    assert!(restored.items[0].get("@removed").is_none());
    let regrouped = round(&fx, &token, &quiet_groups.delta_link, None).await;
    assert_eq!(
        member_changes(&regrouped.items)[&s(&g2)],
        BTreeMap::from([(s(&u[3]), false)])
    );
}

#[tokio::test]
async fn deleted_groups_carry_the_reason_of_their_kind() {
    let fx = Fixture::new(&READ).await;
    let (m365, security) = (Uuid::new_v4(), Uuid::new_v4());
    fx.sim.add_group(
        fx.tenant,
        SimGroup::unified(m365, "Team", "team@contoso.example"),
    );
    fx.sim
        .add_group(fx.tenant, SimGroup::security(security, "Sec"));
    let token = fx.token().await;
    let first = round(&fx, &token, "groups/delta", None).await;
    assert_eq!(first.items.len(), 2);
    fx.sim.delete_group(fx.tenant, &s(&m365));
    fx.sim.delete_group(fx.tenant, &s(&security));
    let next = by_id(&round(&fx, &token, &first.delta_link, None).await.items);
    assert_eq!(next[&s(&m365)]["@removed"]["reason"], "changed");
    assert_eq!(next[&s(&security)]["@removed"]["reason"], "deleted");
}

#[tokio::test]
async fn a_large_group_is_split_across_pages_and_merges_whole() {
    let fx = Fixture::new(&READ).await;
    let spec = GenSpec {
        large_group_members: Some(12_000),
        nested_groups: false,
        contacts: 0,
        ..GenSpec::sized(12_000, 0, 9)
    };
    fx.sim.generate_directory(fx.tenant, spec);
    let snapshot = fx.sim.snapshot(fx.tenant);
    assert_eq!(snapshot.groups.len(), 1);
    let group = s(&snapshot.groups[0].id);
    let token = fx.token().await;

    let all = round(&fx, &token, "groups/delta", None).await;
    let appearances: Vec<usize> = all
        .items
        .iter()
        .map(|i| {
            assert_eq!(i["id"], group);
            assert_eq!(
                i["displayName"], "All Users",
                "every appearance has the properties"
            );
            i["members@delta"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(
        appearances,
        vec![
            MEMBER_REFS_PER_PAGE,
            MEMBER_REFS_PER_PAGE,
            12_000 - 2 * MEMBER_REFS_PER_PAGE
        ]
    );
    assert_eq!(all.pages, 3);
    let merged = member_changes(&all.items);
    let expected: BTreeMap<String, bool> = snapshot
        .memberships
        .iter()
        .map(|m| (s(&m.member_id), false))
        .collect();
    assert_eq!(merged[&group], expected);
}

#[tokio::test]
async fn a_replayed_next_link_returns_the_same_page() {
    let fx = Fixture::new(&READ).await;
    fx.sim
        .generate_directory(fx.tenant, GenSpec::sized(50, 5, 4));
    let token = fx.token().await;
    let headers = [("Prefer", "odata.maxpagesize=10")];
    let (_, _, first) = fx.get_with(&token, "users/delta", &headers).await;
    let next = first["@odata.nextLink"].as_str().unwrap().to_string();
    let (_, _, once) = fx.get_with(&token, &next, &headers).await;
    let (_, _, again) = fx.get_with(&token, &next, &headers).await;
    assert_eq!(once["value"], again["value"]);
    assert_eq!(once["value"].as_array().unwrap().len(), 10);
    assert_ne!(once["value"], first["value"]);
}

#[tokio::test]
async fn expired_tokens_are_gone_and_garbage_is_a_bad_request() {
    let fx = Fixture::new(&READ).await;
    fx.sim
        .generate_directory(fx.tenant, GenSpec::sized(30, 3, 5));
    let token = fx.token().await;
    let headers = [("Prefer", "odata.maxpagesize=10")];
    let (_, _, first) = fx
        .get_with(&token, "users/delta?$select=displayName", &headers)
        .await;
    let next = first["@odata.nextLink"].as_str().unwrap().to_string();
    let whole = round(&fx, &token, "groups/delta", None).await;

    fx.sim.expire_delta_tokens(fx.tenant);
    for link in [&next, &whole.delta_link] {
        let (status, headers, body) = fx.get(&token, link).await;
        assert_eq!(status, 410, "{body}");
        assert_eq!(body["error"]["code"], "syncStateNotFound");
        let location = headers["location"].to_str().unwrap();
        assert!(
            location.ends_with("/delta") || location.contains("/delta?$select="),
            "{location}"
        );
    }
    let (_, headers, _) = fx.get(&token, &next).await;
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .ends_with("users/delta?$select=id,displayName"),
        "the restart keeps the selection"
    );

    let (status, _, body) = fx.get(&token, "users/delta?$deltatoken=garbage").await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = fx.get(&token, "users/delta?$top=10").await;
    assert_eq!(status, 400, "$top is not supported on delta");
    // A token from groups/delta is not a users token.
    let fresh = round(&fx, &token, "groups/delta", None).await;
    let (status, _, _) = fx
        .get(
            &token,
            &fresh.delta_link.replace("groups/delta", "users/delta"),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn deltatoken_latest_syncs_from_now() {
    let fx = Fixture::new(&READ).await;
    fx.sim
        .generate_directory(fx.tenant, GenSpec::sized(20, 2, 6));
    let token = fx.token().await;
    let now = round(&fx, &token, "users/delta?$deltatoken=latest", None).await;
    assert!(now.items.is_empty());
    let id = Uuid::new_v4();
    fx.sim
        .add_user(fx.tenant, SimUser::new(id, "late@contoso.example", "Late"));
    let later = round(&fx, &token, &now.delta_link, None).await;
    assert_eq!(later.items.len(), 1);
    assert_eq!(later.items[0]["id"], s(&id));
}

#[tokio::test]
async fn never_set_properties_are_left_out_and_minimal_sends_only_changes() {
    let fx = Fixture::new(&READ).await;
    let t = fx.tenant;
    let s = |id: &Uuid| id.to_string();
    let (plain, mailless) = (Uuid::new_v4(), Uuid::new_v4());
    fx.sim
        .add_user(t, SimUser::new(plain, "plain@contoso.com", "Plain"));
    let mut user = SimUser::new(mailless, "nomail@contoso.com", "No Mail");
    user.mail = None;
    user.proxy_addresses.clear();
    fx.sim.add_user(t, user);
    let token = fx.token().await;
    let select = "users/delta?$select=displayName,mail,proxyAddresses,givenName,department";

    // The docs: "if the property has never been set before it will not be
    // included in the response at all".
    let first = round(&fx, &token, select, None).await;
    let items = by_id(&first.items);
    assert!(items[&s(&plain)].get("givenName").is_none());
    assert_eq!(items[&s(&plain)]["mail"], "plain@contoso.com");
    assert!(items[&s(&mailless)].get("mail").is_none());
    assert!(items[&s(&mailless)].get("proxyAddresses").is_none());

    fx.sim.update_user(t, &s(&plain), |u| {
        u.mail = None;
        u.department = Some("Sales".into());
    });
    fx.sim.update_user(t, &s(&mailless), |u| {
        u.display_name = "Still No Mail".into()
    });

    // Default mode: unchanged properties with their values, one set to null
    // as null, one never set still left out.
    let later = round(&fx, &token, &first.delta_link, None).await;
    let items = by_id(&later.items);
    let p = &items[&s(&plain)];
    assert!(p["mail"].is_null() && p.get("mail").is_some(), "{p}");
    assert_eq!(p["displayName"], "Plain");
    assert_eq!(p["department"], "Sales");
    assert!(p.get("givenName").is_none(), "{p}");
    assert!(items[&s(&mailless)].get("mail").is_none());

    // return=minimal: only what changed in the round.
    fx.sim
        .update_user(t, &s(&plain), |u| u.display_name = "Renamed".into());
    let (status, headers, page) = fx
        .get_with(&token, &later.delta_link, &[("Prefer", "return=minimal")])
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(headers["preference-applied"], "return=minimal");
    let items = by_id(page["value"].as_array().unwrap());
    let p = items[&s(&plain)].as_object().unwrap();
    assert_eq!(
        p.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["id", "displayName"])
    );
}
