//! Listings over HTTP: paging, user fields, groups and members, deleted
//! users, faults and deterministic generation.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use dirsync_google_sim::{Faults, GoogleSim, MemberType, SimGroup, SimUser};
use serde_json::Value;

const USERS: &str = "/admin/directory/v1/users";
const GROUPS: &str = "/admin/directory/v1/groups";

#[tokio::test]
async fn users_page_at_500_over_1200() {
    let s = Setup::new().await;
    // The super admin plus 1,199 generated users.
    s.sim.generate(&s.customer, 1_199, 0, 7);
    let token = s.admin_token().await;
    let (users, pages) = s
        .all_pages(
            &format!("{USERS}?customer=my_customer&maxResults=500"),
            "users",
            &token,
        )
        .await;
    assert_eq!(pages, 3);
    assert_eq!(users.len(), 1_200);
    let ids: HashSet<_> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1_200, "every user exactly once");
    assert_eq!(s.sim.stats().route("GET /admin/directory/v1/users"), 3);

    // Default page size is 100; above 500 is refused.
    let (_, body) = s
        .get(&format!("{USERS}?customer=my_customer"), Some(&token))
        .await;
    assert_eq!(body["users"].as_array().unwrap().len(), 100);
    let (status, body) = s
        .get(
            &format!("{USERS}?customer=my_customer&maxResults=501"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(reason(&body), "invalid");
    // customer or domain is required; the domain works too.
    let (status, _) = s.get(USERS, Some(&token)).await;
    assert_eq!(status, 400);
    let (status, _) = s
        .get(&format!("{USERS}?domain={DOMAIN}"), Some(&token))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .get(&format!("{USERS}?customer=C0zzzzzzz"), Some(&token))
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn user_fields_follow_google() {
    let s = Setup::new().await;
    let base = SimUser {
        given_name: "Sam".into(),
        family_name: "Smith".into(),
        org_unit_path: "/Staff".into(),
        department: Some("Sales".into()),
        title: Some("Rep".into()),
        ..Default::default()
    };
    s.sim.add_user(
        &s.customer,
        SimUser {
            id: "100000000000000000001".into(),
            primary_email: "sam@example.test".into(),
            aliases: vec!["samuel@example.test".into()],
            suspended: true,
            ..base.clone()
        },
    );
    s.sim.add_user(
        &s.customer,
        SimUser {
            id: "100000000000000000002".into(),
            primary_email: "arch@example.test".into(),
            archived: true,
            ..base
        },
    );
    let token = s.admin_token().await;
    let find = |body: &Value, id: &str| -> Value {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["id"] == id)
            .cloned()
            .unwrap()
    };
    let (_, basic) = s
        .get(&format!("{USERS}?customer=my_customer"), Some(&token))
        .await;
    let sam = find(&basic, "100000000000000000001");
    assert_eq!(sam["kind"], "admin#directory#user");
    assert_eq!(sam["primaryEmail"], "sam@example.test");
    assert_eq!(sam["name"]["fullName"], "Sam Smith");
    assert_eq!(sam["suspended"], true);
    assert_eq!(sam["archived"], false);
    assert_eq!(sam["isAdmin"], false);
    assert_eq!(sam["aliases"][0], "samuel@example.test");
    assert_eq!(sam["orgUnitPath"], "/Staff");
    assert_eq!(sam["emails"][0]["primary"], true);
    assert!(sam.get("organizations").is_none(), "basic projection");
    let arch = find(&basic, "100000000000000000002");
    assert_eq!(arch["archived"], true);
    assert_eq!(arch["suspended"], false);
    assert!(arch.get("aliases").is_none(), "no aliases, no field");

    let (_, full) = s
        .get(
            &format!("{USERS}?customer=my_customer&projection=full"),
            Some(&token),
        )
        .await;
    let sam = find(&full, "100000000000000000001");
    assert_eq!(sam["organizations"][0]["department"], "Sales");
    assert_eq!(sam["organizations"][0]["title"], "Rep");

    // Updates show; deleted users leave the listing and show with showDeleted.
    s.sim
        .update_user(&s.customer, "100000000000000000002", |u| u.archived = false);
    s.sim.delete_user(&s.customer, "100000000000000000001");
    let (_, after) = s
        .get(&format!("{USERS}?customer=my_customer"), Some(&token))
        .await;
    assert_eq!(find(&after, "100000000000000000002")["archived"], false);
    assert_eq!(after["users"].as_array().unwrap().len(), 2);
    let (_, deleted) = s
        .get(
            &format!("{USERS}?customer=my_customer&showDeleted=true"),
            Some(&token),
        )
        .await;
    let gone = find(&deleted, "100000000000000000001");
    assert!(gone["deletionTime"].is_string(), "{gone}");
    assert_eq!(deleted["users"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn groups_and_members_page_at_200() {
    let s = Setup::new().await;
    s.sim.generate(&s.customer, 450, 250, 3);
    let token = s.admin_token().await;
    let (groups, pages) = s
        .all_pages(
            &format!("{GROUPS}?customer=my_customer&maxResults=200"),
            "groups",
            &token,
        )
        .await;
    assert_eq!((groups.len(), pages), (250, 2));
    let snapshot = s.sim.snapshot(&s.customer);
    let all_staff = groups
        .iter()
        .find(|g| g["email"] == format!("all-staff@{DOMAIN}"))
        .unwrap();
    assert_eq!(all_staff["kind"], "admin#directory#group");
    assert_eq!(all_staff["directMembersCount"], "450");
    assert!(groups.iter().any(|g| g["aliases"].is_array()));

    // The large group: 450 members over 3 pages, by id or by email.
    for key in [
        all_staff["id"].as_str().unwrap().to_string(),
        format!("all-staff@{DOMAIN}"),
    ] {
        let (members, pages) = s
            .all_pages(
                &format!("{GROUPS}/{key}/members?maxResults=200"),
                "members",
                &token,
            )
            .await;
        assert_eq!((members.len(), pages), (450, 3));
        assert!(members.iter().all(|m| m["type"] == "USER"));
        assert!(members.iter().any(|m| m["role"] == "OWNER"));
        assert!(members.iter().any(|m| m["status"] == "SUSPENDED"));
    }

    // Nested groups and the customer member come as GROUP and CUSTOMER.
    let nested = snapshot
        .members
        .iter()
        .find(|m| m.member_type == MemberType::Group)
        .expect("a nested group");
    let (_, body) = s
        .get(
            &format!("{GROUPS}/{}/members", nested.group_id),
            Some(&token),
        )
        .await;
    let m = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == nested.member_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(m["type"], "GROUP");
    assert!(m["email"].as_str().unwrap().ends_with(DOMAIN));
    assert!(
        snapshot
            .members
            .iter()
            .any(|m| m.member_type == MemberType::Customer && m.member_id == s.customer)
    );

    let (status, body) = s
        .get(&format!("{GROUPS}/nope@{DOMAIN}/members"), Some(&token))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(reason(&body), "notFound");
    let (status, _) = s
        .get(
            &format!("{GROUPS}?customer=my_customer&maxResults=201"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn members_change_with_the_directory() {
    let s = Setup::new().await;
    s.sim.add_group(
        &s.customer,
        SimGroup {
            id: "0abc".into(),
            email: "g@example.test".into(),
            name: "G".into(),
            aliases: vec![],
            non_editable_aliases: vec![],
        },
    );
    let admin_id = s.sim.snapshot(&s.customer).users[0].id.clone();
    s.sim.add_member(&s.customer, "0abc", &admin_id);
    s.sim.add_member(&s.customer, "0abc", &s.customer);
    let token = s.admin_token().await;
    let (_, body) = s.get(&format!("{GROUPS}/0abc/members"), Some(&token)).await;
    assert_eq!(body["members"].as_array().unwrap().len(), 2);
    s.sim.remove_member(&s.customer, "0abc", &admin_id);
    let (_, body) = s.get(&format!("{GROUPS}/0abc/members"), Some(&token)).await;
    assert_eq!(body["members"][0]["type"], "CUSTOMER");
    assert_eq!(body["members"][0]["id"], s.customer.as_str());
    assert_eq!(body["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn faults_have_googles_statuses_and_reasons() {
    let s = Setup::new().await;
    let token = s.admin_token().await;
    let url = format!("{USERS}?customer=my_customer");
    s.sim.set_faults(Faults {
        server_error_next: 1,
        rate_limit_next: 1,
        quota_next: 1,
        too_many_next: 1,
        ..Faults::default()
    });
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (status, body) = s.get(&url, Some(&token)).await;
        seen.push((status, reason(&body).to_string()));
    }
    assert_eq!(
        seen,
        vec![
            (503, "backendError".to_string()),
            (403, "userRateLimitExceeded".to_string()),
            (403, "quotaExceeded".to_string()),
            (429, "rateLimitExceeded".to_string()),
            (200, String::new()),
        ]
    );
    let stats = s.sim.stats();
    assert_eq!(stats.faults_injected, 4);
    assert_eq!(stats.faults_by_reason["quotaExceeded"], 1);

    // 503 comes before authentication; quota faults only after it.
    s.sim.set_faults(Faults {
        server_error_next: 1,
        rate_limit_next: 1,
        ..Faults::default()
    });
    assert_eq!(s.get(&url, None).await.0, 503);
    assert_eq!(s.get(&url, None).await.0, 401);
    assert_eq!(s.get(&url, Some(&token)).await.0, 403);
    assert_eq!(s.get(&url, Some(&token)).await.0, 200);

    // The token endpoint is never faulted.
    s.sim.set_faults(Faults {
        server_error_next: 1,
        too_many_next: 1,
        page_latency: Duration::from_millis(150),
        ..Faults::default()
    });
    s.admin_token().await;
    assert_eq!(s.get(&url, Some(&token)).await.0, 503);
    assert_eq!(s.get(&url, Some(&token)).await.0, 429);
    let started = Instant::now();
    assert_eq!(s.get(&url, Some(&token)).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn generate_is_deterministic() {
    async fn build(seed: u64) -> dirsync_google_sim::Snapshot {
        let sim = GoogleSim::start().await.unwrap();
        let c = sim.add_customer("det.test", "admin@det.test");
        sim.generate(&c, 300, 30, seed);
        sim.snapshot(&c)
    }
    let a = build(11).await;
    let b = build(11).await;
    assert_eq!(a, b);
    assert_ne!(a.users, build(12).await.users);
    assert_eq!(a.users.len(), 301);
    assert_eq!(a.groups.len(), 30);
    assert!(a.users.iter().any(|u| u.suspended));
    assert!(a.users.iter().any(|u| u.archived));
    assert!(a.users.iter().any(|u| !u.aliases.is_empty()));
    assert!(a.members.iter().any(|m| m.member_type == MemberType::Group));
    assert!(a.customer_id.starts_with("C0") && a.customer_id.len() == 9);
    assert!(a.users.iter().all(|u| u.id.len() == 21));
}
