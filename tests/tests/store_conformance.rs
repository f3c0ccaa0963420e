//! One conformance suite for the state store, run on both backends: the
//! embedded SQLite store and DynamoDB Local. Every behaviour the engine and
//! the functions rely on is here, and both backends must agree on it.

mod common;

use std::collections::BTreeSet;

use chrono::Duration;
use common::{Fixture, start_time};
use dirsync_shared::domain::*;
use dirsync_shared::store::table::{
    Index, Item, ItemPage, Key, Query, TableError, WriteOp, WriteResult,
};
use dirsync_shared::store::{
    AddressOwner, MembershipWrites, OwnerKind, PageRequest, Scope, StoreError, Table, Upserted,
    all_pages, keys,
};
use serde_json::json;

on_both_stores!(
    accounts_are_created_once_and_listed,
    connector_crud_with_optimistic_versions,
    connectors_are_listed_by_region_page_by_page,
    unchanged_users_are_not_rewritten,
    users_are_found_by_any_address_in_any_case,
    an_address_belongs_to_one_connector_only,
    an_address_two_objects_list_has_one_owner_by_rule,
    racing_connectors_never_share_an_address,
    memberships_both_ways_and_cleanup_on_removal,
    large_partitions_page_without_gaps_or_repeats,
    leases_refuse_a_second_holder_until_expiry,
    racing_runs_get_exactly_one_lease,
    runs_are_listed_newest_first_and_expire,
    ttl_items_expire_and_are_taken_once,
    cursors_are_kept_per_stream_and_cleared,
    deleting_a_connector_frees_its_addresses,
    bad_page_tokens_are_refused,
    tenant_claims_are_released_by_their_holder_only,
    rekeying_moves_every_object_in_place_even_when_stopped,
    rekeying_never_merges_two_objects_into_one,
    a_counter_never_passes_its_bound_under_racing_adders,
);

// ---- helpers ---------------------------------------------------------------

fn acct(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

fn conn(id: &str) -> ConnectorId {
    ConnectorId::new(id).unwrap()
}

fn sid(id: &str) -> SourceId {
    SourceId::new(id).unwrap()
}

fn addr(a: &str) -> EmailAddress {
    a.parse().unwrap()
}

fn scope(a: &str, c: &str) -> Scope {
    Scope::new(acct(a), conn(c))
}

fn user(id: &str, primary: &str, aliases: &[&str]) -> User {
    User::new(sid(id), addr(primary)).with_aliases(aliases.iter().map(|a| addr(a)))
}

fn group(id: &str) -> Group {
    Group::new(sid(id), format!("Group {id}"), GroupKind::Security)
}

fn member(g: &str, m: &str, kind: MemberKind) -> Membership {
    Membership::new(sid(g), sid(m), kind)
}

async fn account(f: &Fixture, id: &str, region: Region) {
    let a = Account::new(acct(id), format!("Account {id}"), region, f.clock.now_()).unwrap();
    f.store.create_account(&a).await.unwrap();
}

trait Now {
    fn now_(&self) -> chrono::DateTime<chrono::Utc>;
}
impl Now for dirsync_shared::clock::ManualClock {
    fn now_(&self) -> chrono::DateTime<chrono::Utc> {
        dirsync_shared::clock::Clock::now(self)
    }
}

fn legacy_spec(id: &str) -> ConnectorSpec {
    serde_json::from_value(json!({
        "id": id, "kind": "entra-legacy", "tenant": "contoso.onmicrosoft.com",
        "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
        "client_secret_ref": format!("dirsync/{id}/secret"),
    }))
    .unwrap()
}

async fn connector(f: &Fixture, account: &str, id: &str) -> Connector {
    let c = legacy_spec(id)
        .validate(acct(account), f.clock.now_())
        .unwrap();
    f.store.create_connector(&c).await.unwrap()
}

async fn all_users(f: &Fixture, s: &Scope, limit: usize) -> Vec<User> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = f
            .store
            .list_users(s, PageRequest::after(token, limit))
            .await
            .unwrap();
        assert!(page.items.len() <= limit, "a page holds at most its limit");
        out.extend(page.items);
        match page.next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

// ---- the suite -------------------------------------------------------------

async fn accounts_are_created_once_and_listed(f: Fixture) {
    account(&f, "acme", Region::Europe).await;
    account(&f, "globex", Region::Australia).await;
    let again = Account::new(acct("acme"), "Other", Region::NorthAmerica, start_time()).unwrap();
    assert!(matches!(
        f.store.create_account(&again).await,
        Err(StoreError::AlreadyExists {
            what: "account",
            ..
        })
    ));
    let got = f.store.get_account(&acct("acme")).await.unwrap().unwrap();
    assert_eq!(got.region, Region::Europe, "the first write stays");
    let first = f.store.list_accounts(PageRequest::first(1)).await.unwrap();
    assert_eq!(first.items.len(), 1);
    let second = f
        .store
        .list_accounts(PageRequest::after(first.next, 1))
        .await
        .unwrap();
    let ids: BTreeSet<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|a| a.id.to_string())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["acme".to_owned(), "globex".to_owned()])
    );
    assert!(
        f.store
            .get_account(&acct("nobody"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn connector_crud_with_optimistic_versions(f: Fixture) {
    let orphan = legacy_spec("x")
        .validate(acct("ghost"), start_time())
        .unwrap();
    assert!(matches!(
        f.store.create_connector(&orphan).await,
        Err(StoreError::NotFound {
            what: "account",
            ..
        })
    ));

    account(&f, "acme", Region::Europe).await;
    let c = connector(&f, "acme", "legacy").await;
    assert_eq!(c.version, 1);
    assert!(matches!(
        f.store.create_connector(&c).await,
        Err(StoreError::AlreadyExists {
            what: "connector",
            ..
        })
    ));
    assert_eq!(
        f.store
            .get_connector(&acct("acme"), &conn("legacy"))
            .await
            .unwrap(),
        Some(c.clone())
    );

    let mut edit = c.clone();
    edit.options.acknowledge_disabled = true;
    let v2 = f.store.update_connector(&edit).await.unwrap();
    assert_eq!(v2.version, 2);

    // A second editor still holding version 1 is refused, not merged.
    let mut stale = c.clone();
    stale.description = "stale edit".into();
    match f.store.update_connector(&stale).await {
        Err(StoreError::VersionConflict {
            expected: 1,
            current: 2,
            ..
        }) => {}
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let stored = f
        .store
        .get_connector(&acct("acme"), &conn("legacy"))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.options.acknowledge_disabled);
    assert_eq!(stored.description, "");

    connector(&f, "acme", "second").await;
    let listed = f.store.list_connectors(&acct("acme")).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["legacy", "second"]
    );

    assert!(
        f.store
            .delete_connector(&acct("acme"), &conn("legacy"))
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .delete_connector(&acct("acme"), &conn("legacy"))
            .await
            .unwrap()
    );
    assert!(
        f.store
            .get_connector(&acct("acme"), &conn("legacy"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        f.store.update_connector(&v2).await,
        Err(StoreError::NotFound {
            what: "connector",
            ..
        })
    ));
}

async fn connectors_are_listed_by_region_page_by_page(f: Fixture) {
    account(&f, "eu1", Region::Europe).await;
    account(&f, "eu2", Region::Europe).await;
    account(&f, "au1", Region::Australia).await;
    connector(&f, "eu1", "a").await;
    connector(&f, "eu1", "b").await;
    connector(&f, "eu2", "a").await;
    connector(&f, "au1", "a").await;

    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = f
            .store
            .list_connectors_in_region(Region::Europe, PageRequest::after(token, 1))
            .await
            .unwrap();
        assert!(page.items.len() <= 1);
        seen.extend(
            page.items
                .into_iter()
                .map(|c| format!("{}/{}", c.account, c.id)),
        );
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["eu1/a", "eu1/b", "eu2/a"]);
    let au = f
        .store
        .list_connectors_in_region(Region::Australia, PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(au.items.len(), 1);
}

async fn unchanged_users_are_not_rewritten(f: Fixture) {
    let s = scope("acme", "main");
    let users = vec![
        user("u1", "ann@contoso.com", &["a@contoso.com"]),
        user("u2", "bob@contoso.com", &[]),
        user("u3", "cy@contoso.com", &[]),
    ];
    let out = f.store.upsert_users(&s, &users).await.unwrap();
    assert_eq!(out, vec![Upserted::Created; 3]);
    let out = f.store.upsert_users(&s, &users).await.unwrap();
    assert_eq!(
        out,
        vec![Upserted::Unchanged; 3],
        "same content writes nothing"
    );

    let mut changed = users.clone();
    changed[1].enabled = false;
    changed[1]
        .attributes
        .insert("department".into(), "Sales".into());
    let out = f.store.upsert_users(&s, &changed).await.unwrap();
    assert_eq!(
        out,
        vec![Upserted::Unchanged, Upserted::Updated, Upserted::Unchanged]
    );
    let bob = f.store.get_user(&s, &sid("u2")).await.unwrap().unwrap();
    assert_eq!(bob, changed[1]);
    assert!(
        f.store
            .get_user(&s, &sid("nobody"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn users_are_found_by_any_address_in_any_case(f: Fixture) {
    let s = scope("acme", "main");
    let ann = user(
        "u1",
        "ann@contoso.com",
        &["ann.smith@contoso.com", "ann@fabrikam.com"],
    );
    f.store
        .upsert_users(&s, std::slice::from_ref(&ann))
        .await
        .unwrap();

    for a in [
        "ann@contoso.com",
        "ANN.Smith@Contoso.com",
        "ann@FABRIKAM.com",
    ] {
        let (c, u) = f
            .store
            .find_user_by_address(&acct("acme"), &addr(a))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.as_str(), u.id.as_str()), ("main", "u1"), "{a}");
    }
    assert!(
        f.store
            .find_user_by_address(&acct("other"), &addr("ann@contoso.com"))
            .await
            .unwrap()
            .is_none()
    );

    // Dropping an alias frees it; adding one claims it.
    let moved = user(
        "u1",
        "ann@contoso.com",
        &["ann@fabrikam.com", "as@contoso.com"],
    );
    assert_eq!(
        f.store.upsert_users(&s, &[moved]).await.unwrap(),
        vec![Upserted::Updated]
    );
    assert!(
        f.store
            .find_user_by_address(&acct("acme"), &addr("ann.smith@contoso.com"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.store
            .find_user_by_address(&acct("acme"), &addr("as@contoso.com"))
            .await
            .unwrap()
            .is_some()
    );

    // Removing the user frees every address.
    assert_eq!(
        f.store
            .remove_users(&s, &[sid("u1"), sid("never")])
            .await
            .unwrap()
            .objects,
        1
    );
    for a in ["ann@contoso.com", "ann@fabrikam.com", "as@contoso.com"] {
        assert!(
            f.store
                .address_owner(&acct("acme"), &addr(a))
                .await
                .unwrap()
                .is_none(),
            "{a}"
        );
    }
}

async fn an_address_belongs_to_one_connector_only(f: Fixture) {
    let a = scope("acme", "entra");
    let b = scope("acme", "ldap");
    f.store
        .upsert_users(&a, &[user("u1", "ann@contoso.com", &["sales@contoso.com"])])
        .await
        .unwrap();

    // Connector b claims one of those addresses: a conflict, nothing written,
    // and none of b's user's other addresses claimed either.
    let rival = user("x9", "ann.b@contoso.com", &["sales@contoso.com"]);
    let out = f
        .store
        .upsert_users(&b, &[rival, user("x1", "zed@contoso.com", &[])])
        .await
        .unwrap();
    assert_eq!(
        out[0],
        Upserted::Conflict {
            address: addr("sales@contoso.com"),
            owner: AddressOwner {
                connector: conn("entra"),
                user: sid("u1"),
                kind: OwnerKind::User,
            },
        }
    );
    assert_eq!(
        out[1],
        Upserted::Created,
        "other users of the batch are written"
    );
    assert!(f.store.get_user(&b, &sid("x9")).await.unwrap().is_none());
    assert!(
        f.store
            .address_owner(&acct("acme"), &addr("ann.b@contoso.com"))
            .await
            .unwrap()
            .is_none()
    );
    let (owner, _) = f
        .store
        .find_user_by_address(&acct("acme"), &addr("sales@contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.as_str(), "entra", "the first owner keeps it");

    // The same address in another account is that account's business.
    let other = scope("globex", "entra");
    let out = f
        .store
        .upsert_users(&other, &[user("g1", "sales@contoso.com", &[])])
        .await
        .unwrap();
    assert_eq!(out, vec![Upserted::Created]);
    let mut accounts = f
        .store
        .accounts_with_address(&addr("Sales@contoso.com"))
        .await
        .unwrap();
    accounts.sort();
    assert_eq!(accounts, vec![acct("acme"), acct("globex")]);

    // Within one connector an address may move from one user to another.
    let out = f
        .store
        .upsert_users(&a, &[user("u2", "sales@contoso.com", &[])])
        .await
        .unwrap();
    assert_eq!(out, vec![Upserted::Created]);
    let owner = f
        .store
        .address_owner(&acct("acme"), &addr("sales@contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.user, sid("u2"));
}

async fn an_address_two_objects_list_has_one_owner_by_rule(f: Fixture) {
    let s = scope("acme", "entra");
    let account = acct("acme");
    let owner_of = |a: &'static str| {
        let store = f.store.clone();
        let account = account.clone();
        async move {
            let o = store.address_owner(&account, &addr(a)).await.unwrap();
            o.map(|o| (o.kind, o.user.to_string()))
        }
    };
    let user_at = |a: &'static str| {
        let store = f.store.clone();
        let account = account.clone();
        async move {
            let found = store
                .find_user_by_address(&account, &addr(a))
                .await
                .unwrap();
            found.map(|(_, u)| u.id.to_string())
        }
    };

    // In one batch: a primary address before an alias, whatever the order;
    // between two aliases the lower id. Both users are written whole.
    let written = f
        .store
        .apply_users(
            &s,
            &[
                user(
                    "u1",
                    "ann@contoso.com",
                    &["shared@contoso.com", "team@contoso.com"],
                ),
                user("u2", "shared@contoso.com", &[]),
                user("u3", "bob@contoso.com", &["team@contoso.com"]),
            ],
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(written.outcomes, vec![Upserted::Created; 3]);
    assert_eq!(
        owner_of("shared@contoso.com").await,
        Some((OwnerKind::User, "u2".into()))
    );
    assert_eq!(
        owner_of("team@contoso.com").await,
        Some((OwnerKind::User, "u1".into()))
    );
    let mut said: Vec<String> = written.shared.iter().map(|w| w.describe()).collect();
    said.sort();
    assert_eq!(
        said,
        [
            "shared@contoso.com is the primary address of user u2 and the alias of user u1; it belongs to user u2 \
             (a primary address goes before an alias), and look-ups find u2",
            "team@contoso.com is the alias of user u1 and the alias of user u3; it belongs to user u1 (the object \
             that held it first keeps it), and look-ups find u1",
        ]
    );
    assert!(
        f.store
            .get_user(&s, &sid("u1"))
            .await
            .unwrap()
            .unwrap()
            .aliases
            .contains(&addr("shared@contoso.com")),
        "the stored user is as the directory has it"
    );

    // Later: a newcomer listing it as an alias does not take it from the
    // user that held it first; a look-up answers the same every time.
    f.store
        .upsert_users(&s, &[user("u0", "zed@contoso.com", &["team@contoso.com"])])
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(user_at("team@contoso.com").await.as_deref(), Some("u1"));
    }

    // The owner lets it go: it passes to the best contender that still
    // lists it (u0 and u3 list it as an alias: the lower id), then on.
    f.store
        .upsert_users(
            &s,
            &[user("u1", "ann@contoso.com", &["shared@contoso.com"])],
        )
        .await
        .unwrap();
    assert_eq!(user_at("team@contoso.com").await.as_deref(), Some("u0"));
    f.store.remove_users(&s, &[sid("u0")]).await.unwrap();
    assert_eq!(user_at("team@contoso.com").await.as_deref(), Some("u3"));
    // A contender that stopped listing it is passed over.
    f.store
        .upsert_users(&s, &[user("u2", "shared@contoso.com", &["x@contoso.com"])])
        .await
        .unwrap();
    f.store
        .upsert_users(&s, &[user("u1", "ann@contoso.com", &[])])
        .await
        .unwrap();
    f.store.remove_users(&s, &[sid("u2")]).await.unwrap();
    assert_eq!(
        owner_of("shared@contoso.com").await,
        None,
        "no one lists it any more"
    );
    f.store.remove_users(&s, &[sid("u3")]).await.unwrap();
    assert_eq!(owner_of("team@contoso.com").await, None);

    // Groups hold addresses too: found by each, and a group's own address
    // goes before a user's alias.
    f.store
        .upsert_users(&s, &[user("u5", "eve@contoso.com", &["sales@contoso.com"])])
        .await
        .unwrap();
    let mut sales = group("sales").with_aliases([addr("vertrieb@contoso.com")]);
    sales.mail = Some(addr("sales@contoso.com"));
    let written = f.store.upsert_groups(&s, &[sales]).await.unwrap();
    assert_eq!(written.outcomes, vec![Upserted::Created]);
    assert_eq!(written.shared.len(), 1, "{:?}", written.shared);
    for a in ["sales@contoso.com", "Vertrieb@contoso.com"] {
        let (_, g) = f
            .store
            .find_group_by_address(&account, &addr(a))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{a}"));
        assert_eq!(g.id.as_str(), "sales");
    }
    assert_eq!(
        user_at("sales@contoso.com").await,
        None,
        "a group's address finds no user"
    );
    f.store.remove_groups(&s, &[sid("sales")]).await.unwrap();
    assert_eq!(user_at("sales@contoso.com").await.as_deref(), Some("u5"));
    assert_eq!(owner_of("vertrieb@contoso.com").await, None);
}

async fn racing_connectors_never_share_an_address(f: Fixture) {
    // Eight connectors claim the same address at once: exactly one wins and
    // every other one sees a conflict naming the winner.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = f.store.clone();
            tokio::spawn(async move {
                let s = scope("acme", &format!("c{i}"));
                let out = store
                    .upsert_users(&s, &[user(&format!("u{i}"), "shared@contoso.com", &[])])
                    .await
                    .unwrap();
                (format!("c{i}"), out.into_iter().next().unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (c, Upserted::Created) => winners.push(c),
            (c, Upserted::Conflict { owner, .. }) => losers.push((c, owner)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one connector owns the address");
    let owner = f
        .store
        .address_owner(&acct("acme"), &addr("shared@contoso.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.connector.as_str(), winners[0]);
    for (c, o) in losers {
        assert_eq!(o.connector.as_str(), winners[0], "{c} names the winner");
        assert!(
            f.store
                .get_user(&scope("acme", &c), &sid(&format!("u{}", &c[1..])))
                .await
                .unwrap()
                .is_none()
        );
    }
}

async fn memberships_both_ways_and_cleanup_on_removal(f: Fixture) {
    let s = scope("acme", "main");
    f.store
        .upsert_users(
            &s,
            &[
                user("u1", "ann@contoso.com", &[]),
                user("u2", "bob@contoso.com", &[]),
            ],
        )
        .await
        .unwrap();
    let out = f
        .store
        .upsert_groups(&s, &[group("sales"), group("all")])
        .await
        .unwrap();
    assert_eq!(out.outcomes, vec![Upserted::Created, Upserted::Created]);
    assert_eq!(
        f.store
            .upsert_groups(&s, &[group("sales")])
            .await
            .unwrap()
            .outcomes,
        vec![Upserted::Unchanged]
    );
    let mut renamed = group("sales");
    renamed.name = "Sales EMEA".into();
    assert_eq!(
        f.store
            .upsert_groups(&s, &[renamed])
            .await
            .unwrap()
            .outcomes,
        vec![Upserted::Updated]
    );

    let ms = vec![
        member("sales", "u1", MemberKind::User),
        member("sales", "u2", MemberKind::User),
        member("all", "u1", MemberKind::User),
        member("all", "sales", MemberKind::Group),
        member("all", "contact-1", MemberKind::Contact),
    ];
    assert_eq!(f.store.add_memberships(&s, &ms).await.unwrap().added, 5);
    assert_eq!(
        f.store.add_memberships(&s, &ms).await.unwrap(),
        MembershipWrites::default(),
        "replaying adds nothing"
    );
    // A new role rewrites the row and is counted as a change, not an add.
    let owner = Membership {
        role: Some(MemberRole::Owner),
        ..ms[0].clone()
    };
    let w = f
        .store
        .add_memberships(&s, std::slice::from_ref(&owner))
        .await
        .unwrap();
    assert_eq!((w.added, w.updated), (0, 1));
    let stored = all_pages(|p| f.store.group_members(&s, &owner.group, p))
        .await
        .unwrap();
    assert!(stored.contains(&owner), "{stored:?}");

    let members = f
        .store
        .group_members(&s, &sid("all"), PageRequest::first(100))
        .await
        .unwrap();
    let ids: Vec<_> = members.items.iter().map(|m| m.member.as_str()).collect();
    assert_eq!(ids, ["contact-1", "sales", "u1"]);
    assert_eq!(members.items[1].member_kind, MemberKind::Group);
    let groups_of = |id: &'static str| {
        let store = f.store.clone();
        let s = s.clone();
        async move {
            let page = store
                .member_of(&s, &sid(id), PageRequest::first(100))
                .await
                .unwrap();
            page.items
                .into_iter()
                .map(|m| m.group.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(groups_of("u1").await, ["all", "sales"]);
    assert_eq!(groups_of("sales").await, ["all"], "nested group membership");
    // Many members' groups in one call: the same memberships.
    let mut each = f
        .store
        .member_of_each(&s, &[sid("u1"), sid("nobody"), sid("sales")])
        .await
        .unwrap();
    each.sort();
    let mut want = vec![
        member("all", "u1", MemberKind::User),
        owner.clone(),
        member("all", "sales", MemberKind::Group),
    ];
    want.sort();
    assert_eq!(each, want);

    assert_eq!(
        f.store
            .remove_memberships(&s, &[member("sales", "u2", MemberKind::User)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        f.store
            .remove_memberships(&s, &[member("sales", "u2", MemberKind::User)])
            .await
            .unwrap(),
        0
    );
    assert!(groups_of("u2").await.is_empty());

    // Removing a user removes its memberships; removing a group removes its
    // member list and its own membership in other groups.
    // Each counts the rows it removed: users or groups, and memberships.
    let removed = f.store.remove_users(&s, &[sid("u1")]).await.unwrap();
    assert_eq!((removed.objects, removed.memberships), (1, 2));
    assert!(groups_of("u1").await.is_empty());
    let removed = f.store.remove_groups(&s, &[sid("sales")]).await.unwrap();
    assert_eq!((removed.objects, removed.memberships), (1, 1));
    assert!(
        f.store
            .get_group(&s, &sid("sales"))
            .await
            .unwrap()
            .is_none()
    );
    let left = f
        .store
        .group_members(&s, &sid("all"), PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(
        left.items
            .iter()
            .map(|m| m.member.as_str())
            .collect::<Vec<_>>(),
        ["contact-1"]
    );
    let sales = f
        .store
        .group_members(&s, &sid("sales"), PageRequest::first(100))
        .await
        .unwrap();
    assert!(sales.items.is_empty());
}

async fn large_partitions_page_without_gaps_or_repeats(f: Fixture) {
    let s = scope("acme", "big");
    let users: Vec<User> = (0..2500)
        .map(|i| {
            user(
                &format!("user-{i:05}"),
                &format!("user{i}@contoso.com"),
                &[],
            )
        })
        .collect();
    for chunk in users.chunks(500) {
        let out = f.store.upsert_users(&s, chunk).await.unwrap();
        assert!(out.iter().all(|o| *o == Upserted::Created));
    }
    let listed = all_users(&f, &s, 97).await;
    assert_eq!(listed.len(), 2500);
    let ids: BTreeSet<_> = listed.iter().map(|u| u.id.to_string()).collect();
    assert_eq!(ids.len(), 2500, "no user listed twice");

    let ms: Vec<Membership> = (0..1200)
        .map(|i| member("everyone", &format!("user-{i:05}"), MemberKind::User))
        .collect();
    assert_eq!(f.store.add_memberships(&s, &ms).await.unwrap().added, 1200);
    let mut members = Vec::new();
    let mut token = None;
    loop {
        let page = f
            .store
            .group_members(&s, &sid("everyone"), PageRequest::after(token, 250))
            .await
            .unwrap();
        members.extend(page.items.into_iter().map(|m| m.member.to_string()));
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let expected: Vec<String> = (0..1200).map(|i| format!("user-{i:05}")).collect();
    assert_eq!(members, expected, "members come in key order, each once");

    // Counts agree with the listings, across the user shards, over several
    // requests (a limit of 7 a request), by prefix and in the index.
    assert_eq!(f.store.count_users(&s).await.unwrap(), 2500);
    assert_eq!(f.store.count_groups(&s).await.unwrap(), 0);
    f.store
        .upsert_groups(&s, &[group("everyone")])
        .await
        .unwrap();
    assert_eq!(f.store.count_groups(&s).await.unwrap(), 1);
    let everyone = keys::members_partition(&s, &sid("everyone"));
    let table = &f.writes;
    let count = |q: Query| async move { table.count(&q).await.unwrap() };
    assert_eq!(
        count(Query::partition(Index::Primary, &everyone).limit(7)).await,
        1200
    );
    assert_eq!(
        count(
            Query::partition(Index::Primary, &everyone)
                .prefix("user-0000")
                .limit(7)
        )
        .await,
        10
    );
    let of_one = keys::member_of_partition(&s, &sid("user-00001"));
    assert_eq!(count(Query::partition(Index::Gsi1, &of_one)).await, 1);
    f.store
        .remove_memberships(&s, &[member("everyone", "user-00001", MemberKind::User)])
        .await
        .unwrap();
    assert_eq!(count(Query::partition(Index::Gsi1, &of_one)).await, 0);

    // Several queries in one call, each paged through to its end, in the
    // order asked.
    let of_two = keys::member_of_partition(&s, &sid("user-00002"));
    let each = table
        .query_each(&[
            Query::partition(Index::Primary, &everyone).limit(7),
            Query::partition(Index::Gsi1, &of_one),
            Query::partition(Index::Gsi1, &of_two),
        ])
        .await
        .unwrap();
    let sks = |items: &[dirsync_shared::store::table::Item]| -> Vec<String> {
        items.iter().map(|i| i.key.sk.clone()).collect()
    };
    let mut rest = expected.clone();
    rest.retain(|m| m != "user-00001");
    assert_eq!(sks(&each[0]), rest, "every member, each once, in order");
    assert!(each[1].is_empty());
    assert_eq!(sks(&each[2]), ["user-00002"]);
}

async fn leases_refuse_a_second_holder_until_expiry(f: Fixture) {
    let s = scope("acme", "main");
    let ttl = Duration::minutes(15);
    let lease = f.store.acquire_lease(&s, "run-1", ttl).await.unwrap();
    assert_eq!(lease.expires_at, start_time() + ttl);

    match f.store.acquire_lease(&s, "run-2", ttl).await {
        Err(StoreError::LeaseHeld { holder, until, .. }) => {
            assert_eq!(holder, "run-1");
            assert_eq!(until, lease.expires_at);
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    // A replayed invocation of the same run takes it again.
    f.store.acquire_lease(&s, "run-1", ttl).await.unwrap();

    f.clock.advance(Duration::minutes(10));
    let renewed = f.store.renew_lease(&lease, ttl).await.unwrap();
    assert_eq!(renewed.expires_at, start_time() + Duration::minutes(25));
    f.clock.advance(Duration::minutes(10));
    assert!(
        f.store.acquire_lease(&s, "run-2", ttl).await.is_err(),
        "renewal counts"
    );

    // A dead run's lease expires and is taken over; the dead run cannot renew.
    f.clock.advance(Duration::minutes(6));
    let taken = f.store.acquire_lease(&s, "run-2", ttl).await.unwrap();
    assert!(matches!(
        f.store.renew_lease(&lease, ttl).await,
        Err(StoreError::LeaseHeld { .. })
    ));
    assert!(
        !f.store.release_lease(&lease).await.unwrap(),
        "not the holder any more"
    );
    assert!(f.store.release_lease(&taken).await.unwrap());
    f.store.acquire_lease(&s, "run-3", ttl).await.unwrap();
    // Leases are per connector.
    f.store
        .acquire_lease(&scope("acme", "other"), "run-9", ttl)
        .await
        .unwrap();
}

async fn racing_runs_get_exactly_one_lease(f: Fixture) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = f.store.clone();
            tokio::spawn(async move {
                store
                    .acquire_lease(
                        &scope("acme", "main"),
                        &format!("run-{i}"),
                        Duration::minutes(5),
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::LeaseHeld { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
}

async fn runs_are_listed_newest_first_and_expire(f: Fixture) {
    let s = scope("acme", "main");
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut run = SyncRun::start(
            acct("acme"),
            conn("main"),
            Trigger::Schedule {
                window: f.clock.now_(),
            },
            SyncMode::Full,
            f.clock.now_(),
        );
        f.store.put_run(&run).await.unwrap();
        run.counts.created = i;
        run.warn(ObjectWarning {
            kind: WarningKind::NoAddress,
            object: format!("u{i}"),
            detail: "no mail".into(),
        });
        run.finish(RunStatus::Succeeded, Some("done".into()), f.clock.now_());
        f.store.put_run(&run).await.unwrap();
        ids.push(run.id.clone());
        f.clock.advance(Duration::hours(5));
    }
    let first = f.store.list_runs(&s, PageRequest::first(2)).await.unwrap();
    assert_eq!(
        first.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()]
    );
    let second = f
        .store
        .list_runs(&s, PageRequest::after(first.next, 2))
        .await
        .unwrap();
    assert_eq!(second.items[0].id, ids[2]);
    let run = f.store.get_run(&s, &ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.counts.created, run.warnings.len()),
        (RunStatus::Succeeded, 1, 1)
    );

    // Runs are kept for the retention period, then gone.
    f.clock
        .advance(Duration::days(dirsync_shared::store::RUN_RETENTION_DAYS));
    assert!(f.store.get_run(&s, &ids[0]).await.unwrap().is_none());
    let left = f.store.list_runs(&s, PageRequest::first(10)).await.unwrap();
    assert!(left.items.len() < 5 && !left.items.iter().any(|r| r.id == ids[0]));
}

async fn ttl_items_expire_and_are_taken_once(f: Fixture) {
    let expires = start_time() + Duration::minutes(10);
    let v = json!({"account": "acme", "connector": "main"});
    assert!(
        f.store
            .put_ephemeral("consent", "state-1", &v, expires, true)
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .put_ephemeral("consent", "state-1", &json!(1), expires, true)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.get_ephemeral("consent", "state-1").await.unwrap(),
        Some(v.clone())
    );

    // A stored value can be replaced (a consent state remembering its
    // grant time)…
    let v = json!({"account": "acme", "connector": "main", "granted_at": "t"});
    assert!(
        f.store
            .replace_ephemeral("consent", "state-1", &v, expires)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.get_ephemeral("consent", "state-1").await.unwrap(),
        Some(v.clone())
    );

    // Single use: of two takers one gets it.
    assert_eq!(
        f.store.take_ephemeral("consent", "state-1").await.unwrap(),
        Some(v.clone())
    );
    assert_eq!(
        f.store.take_ephemeral("consent", "state-1").await.unwrap(),
        None
    );
    // …but one taken is never brought back.
    assert!(
        !f.store
            .replace_ephemeral("consent", "state-1", &v, expires)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.get_ephemeral("consent", "state-1").await.unwrap(),
        None
    );

    // Expired items read as absent even before the backend purges them, and
    // a once-only marker can be set again after expiry.
    assert!(
        f.store
            .put_ephemeral("window", "eu-0800", &json!(true), expires, true)
            .await
            .unwrap()
    );
    assert!(
        f.store
            .put_ephemeral("consent", "state-2", &v, expires, true)
            .await
            .unwrap()
    );
    f.clock.advance(Duration::minutes(10));
    assert_eq!(
        f.store.get_ephemeral("window", "eu-0800").await.unwrap(),
        None
    );
    assert_eq!(
        f.store.take_ephemeral("consent", "state-2").await.unwrap(),
        None
    );
    let later = expires + Duration::minutes(10);
    assert!(
        f.store
            .put_ephemeral("window", "eu-0800", &json!(2), later, true)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.get_ephemeral("window", "eu-0800").await.unwrap(),
        Some(json!(2))
    );
}

async fn cursors_are_kept_per_stream_and_cleared(f: Fixture) {
    let s = scope("acme", "main");
    let users = Cursor {
        stream: "users".into(),
        value: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc".into(),
        updated_at: start_time(),
    };
    let groups = Cursor {
        stream: "groups".into(),
        value: "g-token".into(),
        updated_at: start_time(),
    };
    f.store.put_cursor(&s, &users).await.unwrap();
    f.store.put_cursor(&s, &groups).await.unwrap();
    assert_eq!(
        f.store.get_cursor(&s, "users").await.unwrap(),
        Some(users.clone())
    );
    assert!(
        f.store
            .get_cursor(&scope("acme", "other"), "users")
            .await
            .unwrap()
            .is_none()
    );
    let lease = f
        .store
        .acquire_lease(&s, "run-1", Duration::minutes(5))
        .await
        .unwrap();
    f.store.clear_cursors(&s).await.unwrap();
    assert!(f.store.get_cursor(&s, "users").await.unwrap().is_none());
    assert!(f.store.get_cursor(&s, "groups").await.unwrap().is_none());
    assert!(
        f.store.release_lease(&lease).await.unwrap(),
        "clearing cursors leaves the lease"
    );
}

async fn deleting_a_connector_frees_its_addresses(f: Fixture) {
    account(&f, "acme", Region::Europe).await;
    connector(&f, "acme", "old").await;
    let s = scope("acme", "old");
    let users: Vec<User> = (0..60)
        .map(|i| {
            user(
                &format!("u{i}"),
                &format!("p{i}@contoso.com"),
                &[&format!("alias{i}@contoso.com")],
            )
        })
        .collect();
    f.store.upsert_users(&s, &users).await.unwrap();
    f.store.upsert_groups(&s, &[group("g")]).await.unwrap();
    f.store
        .add_memberships(&s, &[member("g", "u1", MemberKind::User)])
        .await
        .unwrap();
    f.store
        .put_cursor(
            &s,
            &Cursor {
                stream: "users".into(),
                value: "x".into(),
                updated_at: start_time(),
            },
        )
        .await
        .unwrap();
    let run = SyncRun::start(
        acct("acme"),
        conn("old"),
        Trigger::Continuation,
        SyncMode::Delta,
        start_time(),
    );
    f.store.put_run(&run).await.unwrap();

    assert!(
        f.store
            .delete_connector(&acct("acme"), &conn("old"))
            .await
            .unwrap()
    );
    assert!(all_users(&f, &s, 100).await.is_empty());
    assert!(f.store.get_group(&s, &sid("g")).await.unwrap().is_none());
    assert!(f.store.get_cursor(&s, "users").await.unwrap().is_none());
    assert!(
        f.store
            .list_runs(&s, PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        f.store
            .member_of(&s, &sid("u1"), PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let out = f
        .store
        .upsert_users(
            &scope("acme", "new"),
            &[user("n1", "alias7@contoso.com", &[])],
        )
        .await
        .unwrap();
    assert_eq!(out, vec![Upserted::Created], "the address is free again");
}

async fn bad_page_tokens_are_refused(f: Fixture) {
    let s = scope("acme", "main");
    for token in ["garbage", "eyJzaGFyZCI6OTl9"] {
        let r = f
            .store
            .list_users(&s, PageRequest::after(Some(token.into()), 10))
            .await;
        assert!(matches!(r, Err(StoreError::BadPageToken)), "{token}: {r:?}");
    }
    let r = f
        .store
        .list_groups(&s, PageRequest::after(Some("garbage".into()), 10))
        .await;
    assert!(matches!(r, Err(StoreError::BadPageToken)));
}

async fn tenant_claims_are_released_by_their_holder_only(f: Fixture) {
    let tenant = uuid::Uuid::new_v4();
    assert_eq!(f.store.tenant_holder(&tenant).await.unwrap(), None);
    assert_eq!(
        f.store.claim_tenant(&tenant, &acct("acme")).await.unwrap(),
        None
    );
    assert_eq!(
        f.store.claim_tenant(&tenant, &acct("other")).await.unwrap(),
        Some(acct("acme"))
    );
    // Another account cannot release it; its holder can, once.
    assert!(
        !f.store
            .release_tenant(&tenant, &acct("other"))
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.tenant_holder(&tenant).await.unwrap(),
        Some(acct("acme"))
    );
    assert!(
        f.store
            .release_tenant(&tenant, &acct("acme"))
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .release_tenant(&tenant, &acct("acme"))
            .await
            .unwrap()
    );
    assert_eq!(f.store.tenant_holder(&tenant).await.unwrap(), None);
    // Released, it can be claimed again.
    assert_eq!(
        f.store.claim_tenant(&tenant, &acct("other")).await.unwrap(),
        None
    );
}

// ---- re-keying ---------------------------------------------------------------

/// Old (DN) ids and the new ones they take; `cn=cy` keeps its id.
const RENAMES: [(&str, &str); 5] = [
    ("cn=ann,o=acme", "A1"),
    ("cn=bob,o=acme", "B2"),
    ("cn=guest,o=acme", "U9"),
    ("cn=sales", "G1"),
    ("cn=all", "G2"),
];

/// One directory written under either set of ids: aliases two users
/// share (one owns, one contends), a group address, nested groups, a
/// contact member, a user not kept.
async fn rekey_directory(f: &Fixture, s: &Scope, id: impl Fn(&str) -> String) {
    let users = [
        user(
            &id("cn=ann,o=acme"),
            "ann@contoso.com",
            &["team@contoso.com"],
        ),
        user(
            &id("cn=bob,o=acme"),
            "bob@contoso.com",
            &["team@contoso.com"],
        ),
        user(&id("cn=cy,o=acme"), "cy@contoso.com", &[]),
    ];
    for u in &users {
        f.store
            .upsert_users(s, std::slice::from_ref(u))
            .await
            .unwrap();
    }
    let mut sales = Group::new(sid(&id("cn=sales")), "Sales", GroupKind::Security);
    let all = Group::new(sid(&id("cn=all")), "All", GroupKind::Security);
    sales.mail = Some(addr("sales@contoso.com"));
    sales.aliases.insert(addr("sales-team@contoso.com"));
    f.store.upsert_groups(s, &[sales, all]).await.unwrap();
    let m = |g: &str, u: &str, k| member(&id(g), &id(u), k);
    let ms = [
        m("cn=sales", "cn=ann,o=acme", MemberKind::User),
        m("cn=sales", "cn=bob,o=acme", MemberKind::User),
        m("cn=all", "cn=sales", MemberKind::Group),
        m("cn=all", "cn=cy,o=acme", MemberKind::User),
        m("cn=all", "contact-1", MemberKind::Contact),
    ];
    f.store.add_memberships(s, &ms).await.unwrap();
    f.store
        .mark_not_kept(s, &[sid(&id("cn=guest,o=acme"))])
        .await
        .unwrap();
}

/// What the platform can see of a connector's directory, as text.
async fn directory_view(f: &Fixture, s: &Scope) -> String {
    f.store.settle_indexes().await.unwrap();
    let mut out = Vec::new();
    let mut users = all_pages(|p| f.store.list_users(s, p)).await.unwrap();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    let mut groups = all_pages(|p| f.store.list_groups(s, p)).await.unwrap();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    for u in &users {
        out.push(format!("user {}", serde_json::to_string(u).unwrap()));
        let of = all_pages(|p| f.store.member_of(s, &u.id, p)).await.unwrap();
        out.push(format!(
            "  member of {}",
            serde_json::to_string(&of).unwrap()
        ));
        for a in u.addresses() {
            let owner = f.store.address_owner(&s.account, a).await.unwrap();
            out.push(format!("  {a} held by {owner:?}"));
        }
    }
    for g in &groups {
        out.push(format!("group {}", serde_json::to_string(g).unwrap()));
        let members = all_pages(|p| f.store.group_members(s, &g.id, p))
            .await
            .unwrap();
        out.push(format!(
            "  members {}",
            serde_json::to_string(&members).unwrap()
        ));
        let of = all_pages(|p| f.store.member_of(s, &g.id, p)).await.unwrap();
        out.push(format!(
            "  member of {}",
            serde_json::to_string(&of).unwrap()
        ));
        for a in g.addresses() {
            let owner = f.store.address_owner(&s.account, a).await.unwrap();
            out.push(format!("  {a} held by {owner:?}"));
        }
    }
    let mut marked: Vec<_> = f
        .store
        .not_kept_users(s)
        .await
        .unwrap()
        .into_iter()
        .collect();
    marked.sort();
    out.push(format!("not kept {marked:?}"));
    out.join("\n")
}

/// A table that refuses every write after the first `left`: an
/// invocation that stops mid-way.
struct StopsWriting {
    inner: std::sync::Arc<dyn Table>,
    left: std::sync::atomic::AtomicI64,
}

#[async_trait::async_trait]
impl Table for StopsWriting {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.inner.get_many(keys).await
    }
    async fn write_many(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, TableError> {
        if self.left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 0 {
            return Err(TableError::Backend("stopped".into()));
        }
        self.inner.write_many(ops).await
    }
    async fn query(&self, query: &Query) -> Result<ItemPage, TableError> {
        self.inner.query(query).await
    }
    async fn count(&self, query: &Query) -> Result<u64, TableError> {
        self.inner.count(query).await
    }
    async fn settle(&self) -> Result<(), TableError> {
        self.inner.settle().await
    }
}

async fn rekeying_moves_every_object_in_place_even_when_stopped(f: Fixture) {
    let renames: std::collections::HashMap<SourceId, SourceId> =
        RENAMES.iter().map(|(o, n)| (sid(o), sid(n))).collect();
    let new_id = |old: &str| {
        RENAMES
            .iter()
            .find(|(o, _)| *o == old)
            .map_or(old, |(_, n)| n)
            .to_owned()
    };
    // The same directory written under the new ids from the start: what
    // re-keying must end at.
    account(&f, "fresh", Region::Europe).await;
    let fresh = scope("fresh", "main");
    rekey_directory(&f, &fresh, new_id).await;
    let want = directory_view(&f, &fresh).await;
    assert!(want.contains("team@contoso.com held by Some(AddressOwner { connector: ConnectorId(\"main\"), user: SourceId(\"A1\")"), "{want}");

    // Stopped after each number of writes in turn, then run again whole.
    for stop in 0..12 {
        let name = format!("old{stop}");
        account(&f, &name, Region::Europe).await;
        let s = scope(&name, "main");
        rekey_directory(&f, &s, str::to_owned).await;
        let stopping = dirsync_shared::store::StateStore::new(
            std::sync::Arc::new(StopsWriting {
                inner: f.writes.clone(),
                left: stop.into(),
            }),
            f.clock.clone(),
        );
        let first = stopping.rekey(&s, &renames).await;
        let done = f.store.rekey(&s, &renames).await.unwrap();
        assert_eq!(
            directory_view(&f, &s).await,
            want,
            "stopped after {stop} writes"
        );
        if first.is_ok() {
            assert_eq!(done, Default::default(), "a second pass moves nothing");
        }
        if stop == 0 {
            assert_eq!(
                (done.users, done.groups, done.memberships, done.not_kept),
                (2, 2, 5, 1)
            );
        }
    }
    // Old ids are gone for good: nothing is left under them.
    let s = scope("old0", "main");
    for (old, _) in RENAMES {
        assert_eq!(f.store.get_user(&s, &sid(old)).await.unwrap(), None);
        assert_eq!(f.store.get_group(&s, &sid(old)).await.unwrap(), None);
    }
}

async fn rekeying_never_merges_two_objects_into_one(f: Fixture) {
    let s = scope("acme", "main");
    let users = [
        user("cn=ann,o=acme", "ann@contoso.com", &[]),
        user("cn=ann,o=acmeeu", "ann@contoso.eu", &[]),
        user("cn=bob,o=acme", "bob@contoso.com", &[]),
    ];
    f.store.upsert_users(&s, &users).await.unwrap();
    // One document served twice (two DNs, one UNID), and one as it should.
    let ids: std::collections::HashMap<SourceId, SourceId> = [
        ("cn=ann,o=acme", "A1"),
        ("cn=ann,o=acmeeu", "A1"),
        ("cn=bob,o=acme", "B2"),
    ]
    .iter()
    .map(|(o, n)| (sid(o), sid(n)))
    .collect();
    let done = f.store.rekey(&s, &ids).await.unwrap();
    assert_eq!(done.users, 1);
    let mut kept: Vec<String> = all_pages(|p| f.store.list_users(&s, p))
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id.to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, ["B2", "cn=ann,o=acme", "cn=ann,o=acmeeu"]);
    let owner = f
        .store
        .address_owner(&s.account, &addr("ann@contoso.eu"))
        .await
        .unwrap();
    assert_eq!(owner.unwrap().user, sid("cn=ann,o=acmeeu"));
}

/// The shared Graph budget's counters: many adders at once, each adding
/// only while the total stays within the bound, end exactly at the bound
/// with every refusal accounted for; unbounded adds always land.
async fn a_counter_never_passes_its_bound_under_racing_adders(f: Fixture) {
    let key = keys::budget("app", 1_700_000_000, None);
    let ttl = start_time().timestamp() + 120;
    let store = f.store.clone();
    let adders = (0..40).map(|_| {
        let store = store.clone();
        let key = key.clone();
        tokio::spawn(async move { store.add_to_counter(&key, 3, Some(100), ttl).await.unwrap() })
    });
    let mut granted = 0;
    for adder in adders {
        if let Some(total) = adder.await.unwrap() {
            assert!(total <= 100, "a total of {total} passed the bound");
            granted += 1;
        }
    }
    assert_eq!(
        granted, 33,
        "33 adds of 3 fit under 100, no more and no fewer"
    );
    assert_eq!(
        store.add_to_counter(&key, 1, Some(100), ttl).await.unwrap(),
        Some(100),
        "the room left is still usable"
    );
    assert_eq!(
        store.add_to_counter(&key, 1, Some(100), ttl).await.unwrap(),
        None
    );
    assert_eq!(
        store.add_to_counter(&key, 5, None, ttl).await.unwrap(),
        Some(105)
    );
    let item = f.writes.get(&key).await.unwrap().unwrap();
    assert_eq!(item.ttl, Some(ttl), "the counter expires on its own");
    assert_eq!(
        store
            .add_to_counter(&keys::budget("app", 1, Some("t")), 500, Some(10), ttl)
            .await
            .unwrap(),
        None,
        "an add larger than its bound is refused"
    );
}
