//! Directory generation: determinism, size, and (ignored, for release runs)
//! the time to generate and page through 100,000 users.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::Fixture;
use dirsync_entra_sim::{EntraSim, GenSpec, MemberKind, TenantSpec, UserType};

fn tenant(sim: &EntraSim, name: &str) -> uuid::Uuid {
    sim.add_tenant(TenantSpec {
        display_name: name.into(),
        verified_domains: vec!["contoso.example".into(), "contoso.test".into()],
        ..TenantSpec::default()
    })
}

#[test]
fn the_same_seed_gives_the_same_directory() {
    // Two simulators with the same tenant: the snapshots match exactly.
    let generated = |seed| {
        let sim = EntraSim::new();
        let t = tenant(&sim, "Contoso");
        sim.generate_directory(t, GenSpec::sized(1_000, 40, seed));
        sim.snapshot(t)
    };
    let (a, b, c) = (generated(11), generated(11), generated(12));
    assert_eq!(a.users.len(), 1_000);
    // Plain asserts: a failing comparison of thousands of objects is not
    // worth printing.
    assert!(a == b, "same seed, same directory");
    assert!(a != c, "another seed, another directory");
}

#[test]
fn a_10k_tenant_has_the_expected_population() {
    let sim = EntraSim::new();
    let t = tenant(&sim, "Contoso");
    let spec = GenSpec {
        large_group_members: Some(10_000),
        ..GenSpec::sized(10_000, 500, 21)
    };
    sim.generate_directory(t, spec);
    let snap = sim.snapshot(t);
    assert_eq!(snap.users.len(), 10_000);
    assert_eq!(snap.groups.len(), 501, "500 plus All Users");
    assert_eq!(snap.contacts.len(), 100);
    let upns: HashSet<_> = snap.users.iter().map(|u| &u.user_principal_name).collect();
    assert_eq!(upns.len(), 10_000, "UPNs are unique");
    let guests = snap
        .users
        .iter()
        .filter(|u| u.user_type == UserType::Guest)
        .count();
    assert!((100..=300).contains(&guests), "{guests} guests");
    let per_kind = |kind| {
        snap.memberships
            .iter()
            .filter(|m| m.member_kind == kind)
            .count()
    };
    let users = per_kind(MemberKind::User);
    assert!(
        (55_000..=62_000).contains(&users),
        "~5 per user plus the 10,000 of All Users, got {users}"
    );
    assert!(per_kind(MemberKind::Group) > 0, "some nesting");
    assert_eq!(per_kind(MemberKind::Contact), 100);
    assert!(
        snap.users.iter().any(|u| u
            .proxy_addresses
            .iter()
            .any(|p| p.ends_with("@contoso.test"))),
        "some aliases in the second domain"
    );
}

/// Run with `cargo test --release -p dirsync-entra-sim --test generation -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for release builds"]
async fn time_100k_generation_and_paging() {
    let fx = Fixture::new(&["User.Read.All", "Group.Read.All"]).await;
    let started = Instant::now();
    let spec = GenSpec {
        large_group_members: Some(100_000),
        ..GenSpec::sized(100_000, 5_000, 1)
    };
    fx.sim.generate_directory(fx.tenant, spec);
    let generated = started.elapsed();
    let snap = fx.sim.snapshot(fx.tenant);
    println!(
        "generated {} users, {} groups, {} memberships in {generated:?}",
        snap.users.len(),
        snap.groups.len(),
        snap.memberships.len()
    );

    let token = fx.token().await;
    for (what, first, prefer) in [
        (
            "GET /users $top=999",
            "users?$top=999&$select=id,userPrincipalName,mail,proxyAddresses,accountEnabled",
            None,
        ),
        (
            "users/delta maxpagesize=999",
            "users/delta?$select=id,userPrincipalName,mail,proxyAddresses,accountEnabled",
            Some("odata.maxpagesize=999"),
        ),
        (
            "groups/delta with members",
            "groups/delta?$select=displayName,members",
            Some("odata.maxpagesize=999"),
        ),
    ] {
        let headers: Vec<(&str, &str)> = prefer.map(|p| vec![("Prefer", p)]).unwrap_or_default();
        let started = Instant::now();
        let mut link = first.to_string();
        let (mut pages, mut items) = (0, 0);
        loop {
            let (status, _, page) = fx.get_with(&token, &link, &headers).await;
            assert_eq!(status, 200);
            pages += 1;
            items += page["value"].as_array().unwrap().len();
            match page["@odata.nextLink"].as_str() {
                Some(next) => link = next.to_string(),
                None => break,
            }
            assert!(pages < 10_000);
        }
        println!(
            "{what}: {items} items in {pages} pages in {:?}",
            started.elapsed()
        );
        if what.starts_with("GET /users") {
            assert_eq!(items, 100_000);
        }
    }
}
