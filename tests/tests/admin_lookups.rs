//! The admin API's directory look-ups, in process over the embedded store:
//! a user or group named by id, address or name; a group's members and a
//! user's groups a page at a time or through nested groups (cycles
//! included); 404s and 409s that say what to give. Also what a dry run
//! plans for memberships and a run's summary of its staged actions.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::memory::{Directory, MemorySource, Touched, group, sid, user};
use common::{Backend, Fixture, fixture};
use dirsync_shared::app::{App, Caller, api};
use dirsync_shared::domain::*;
use dirsync_shared::engine::{Action, EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::queue::LocalQueue;
use dirsync_shared::secrets::LocalSecretStore;
use dirsync_shared::store::Scope;
use serde_json::{Value, json};

const MAIN: &str = "/accounts/acme/connectors/main";

/// The App of a local run, over the fixture's store.
fn app(f: &Fixture) -> App {
    App::builder(
        f.store.clone(),
        Arc::new(LocalQueue::default()),
        Arc::new(LocalSecretStore::in_memory()),
    )
    .build()
}

/// `GET path` as the machine's operator.
async fn get(app: &App, path: &str) -> (u16, Value) {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    let resp = api::handle(app, req, Caller::operator("test")).await;
    let body = serde_json::from_str(resp.body()).unwrap_or(Value::Null);
    (resp.status().as_u16(), body)
}

async fn ok(app: &App, path: &str) -> Value {
    let (s, b) = get(app, path).await;
    assert_eq!(s, 200, "{path}: {b}");
    b
}

/// The error message of a refusal with `status`.
async fn refused(app: &App, path: &str, status: u16) -> String {
    let (s, b) = get(app, path).await;
    assert_eq!(s, status, "{path}: {b}");
    b["error"].as_str().unwrap().to_owned()
}

/// Account acme with connectors `main` and `other`.
async fn acme(f: &Fixture) -> (Connector, Connector) {
    let now = dirsync_shared::clock::Clock::now(&*f.clock);
    let a = Account::new(AccountId::new("acme").unwrap(), "Acme", Region::Europe, now).unwrap();
    f.store.create_account(&a).await.unwrap();
    let connector = |id: &str| {
        let spec: ConnectorSpec = serde_json::from_value(json!({
            "id": id, "kind": "entra-legacy", "tenant": "contoso.onmicrosoft.com",
            "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e", "client_secret_ref": "s",
            "acknowledge_disabled": true,
        }))
        .unwrap();
        spec.validate(a.id.clone(), now).unwrap()
    };
    (
        f.store.create_connector(&connector("main")).await.unwrap(),
        f.store.create_connector(&connector("other")).await.unwrap(),
    )
}

fn scope(c: &Connector) -> Scope {
    Scope::new(c.account.clone(), c.id.clone())
}

fn named_group(id: &str, name: &str, mail: Option<&str>) -> Group {
    Group {
        mail: mail.map(|m| m.parse().unwrap()),
        ..Group::new(sid(id), name, GroupKind::Security)
    }
}

fn member(group: &str, member: &str, kind: MemberKind) -> Membership {
    Membership::new(sid(group), sid(member), kind)
}

/// Main's directory: 2,600 users in "All Staff"; Team A in Team B in
/// Team C, and C in A; user 1 in A, user 2 in A and B, an external
/// recipient in A; two groups called Sales. Other holds one user and one
/// group of its own.
async fn directory(f: &Fixture) -> (Connector, Connector) {
    let (main, other) = acme(f).await;
    let s = scope(&main);
    let mut users: Vec<User> = (0..2600).map(|i| user(i, "contoso.com")).collect();
    users[3].display_name = Some("Ann Lee".into());
    users[3].user_principal_name = Some("ann.lee@corp.contoso.com".into());
    users[4].display_name = None;
    f.store.upsert_users(&s, &users).await.unwrap();
    let all = Group::new(sid("all"), "All Staff", GroupKind::Distribution);
    let all = Group {
        mail: Some("all-staff@contoso.com".parse().unwrap()),
        ..all
    }
    .with_aliases(["everyone@contoso.com".parse().unwrap()]);
    let groups = [
        all,
        named_group("ga", "Team A", Some("team-a@contoso.com")),
        named_group("gb", "Team B", None),
        named_group("gc", "Team C", None),
        named_group("s1", "Sales", None),
        named_group("s2", "sales", None),
    ];
    f.store.upsert_groups(&s, &groups).await.unwrap();
    let mut memberships: Vec<Membership> = users
        .iter()
        .map(|u| member("all", u.id.as_str(), MemberKind::User))
        .collect();
    let external = Membership {
        address: Some("partner@fabrikam.com".parse().unwrap()),
        ..member("ga", "ext1", MemberKind::External)
    };
    memberships.extend([
        member("ga", "u00001", MemberKind::User),
        member("ga", "u00002", MemberKind::User),
        member("gb", "u00002", MemberKind::User),
        member("gb", "ga", MemberKind::Group),
        member("gc", "gb", MemberKind::Group),
        member("ga", "gc", MemberKind::Group),
        external,
    ]);
    f.store.put_memberships(&s, &memberships).await.unwrap();
    let o = scope(&other);
    let mut x = User::new(sid("x1"), "x1@fabrikam.com".parse().unwrap());
    x.display_name = Some("Xavier".into());
    f.store.upsert_users(&o, &[x]).await.unwrap();
    let foreign = named_group("fx", "Fabrikam", Some("sales@fabrikam.com"));
    f.store.upsert_groups(&o, &[foreign]).await.unwrap();
    f.store.settle_indexes().await.unwrap();
    (main, other)
}

/// Every member id of a direct listing, following `next` to the end;
/// also how many pages it took.
async fn all_members(app: &App, path: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut next) = (Vec::new(), 0, None::<String>);
    loop {
        let token = next
            .map(|t| {
                format!(
                    "&next={}",
                    url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
                )
            })
            .unwrap_or_default();
        let b = ok(app, &format!("{path}{token}")).await;
        pages += 1;
        for m in b["members"].as_array().unwrap() {
            assert_eq!((m["depth"].as_u64(), &m["via"]), (Some(1), &Value::Null));
            ids.push(m["id"].as_str().unwrap().to_owned());
        }
        match b["next"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_is_listed_whole_page_by_page_by_id_name_or_address() {
    let f = fixture(Backend::Embedded).await;
    directory(&f).await;
    let app = app(&f);
    let want: BTreeSet<String> = (0..2600).map(|i| format!("u{i:05}")).collect();
    for (reference, limit, pages) in [
        ("all", "?limit=1000", 3),
        ("All%20Staff", "?", 26),
        ("all%20STAFF", "?limit=500", 6),
        ("all-staff@contoso.com", "?limit=1000", 3),
        ("Everyone@Contoso.com", "?limit=1000", 3),
    ] {
        let path = format!("{MAIN}/groups/{reference}/members{limit}");
        let (ids, read) = all_members(&app, &path).await;
        assert_eq!(ids.len(), 2600, "{reference}: each member once");
        assert_eq!(
            ids.into_iter().collect::<BTreeSet<_>>(),
            want,
            "{reference}"
        );
        // DynamoDB may end a listing with an empty page.
        assert!(
            read == pages || read == pages + 1,
            "{reference}: {read} pages"
        );
    }
    let b = ok(&app, &format!("{MAIN}/groups/All%20Staff/members?limit=2")).await;
    assert_eq!(
        b["group"],
        json!({"id": "all", "name": "All Staff", "mail": "all-staff@contoso.com"})
    );
    assert_eq!(
        b["members"][0],
        json!({"id": "u00000", "kind": "user", "name": "User 0",
            "address": "user0@contoso.com", "depth": 1, "via": null})
    );
    // The whole listing in one answer, names included.
    let b = ok(&app, &format!("{MAIN}/groups/all/members?transitive=true")).await;
    assert_eq!(b["members"].as_array().unwrap().len(), 2600);
    assert_eq!(b["next"], Value::Null);
    assert_eq!(
        row(&b["members"], "u00004")["name"],
        "user4@contoso.com",
        "no display name: the address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_groups_are_found_by_id_address_or_name() {
    let f = fixture(Backend::Embedded).await;
    directory(&f).await;
    let app = app(&f);
    for reference in [
        "u00003",
        "user3@contoso.com",
        "ALIAS3@contoso.com",
        "ann%20lee",
        "Ann.Lee@Corp.Contoso.com",
    ] {
        let b = ok(&app, &format!("{MAIN}/users/{reference}")).await;
        assert_eq!(b["user"]["id"], "u00003", "{reference}: {b}");
        assert_eq!(b["user"]["primary_email"], "user3@contoso.com");
        assert_eq!(b["user"]["aliases"], json!(["alias3@contoso.com"]));
        assert_eq!(b["user"]["enabled"], true);
    }
    for reference in ["ga", "team%20a", "TEAM-A@contoso.com"] {
        let b = ok(&app, &format!("{MAIN}/groups/{reference}")).await;
        assert_eq!(
            b,
            json!({"group": {"id": "ga", "name": "Team A", "mail": "team-a@contoso.com",
                "kind": "security"}}),
            "{reference}"
        );
    }
    // A user's address names no group, and a group's no user.
    refused(&app, &format!("{MAIN}/groups/user3@contoso.com"), 404).await;
    refused(&app, &format!("{MAIN}/users/team-a@contoso.com"), 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_names_nothing_is_404_and_a_shared_name_409() {
    let f = fixture(Backend::Embedded).await;
    directory(&f).await;
    let app = app(&f);
    let e = refused(&app, &format!("{MAIN}/groups/No%20Such%20Group"), 404).await;
    assert_eq!(
        e,
        "no group \"No Such Group\" in connector main: give its id, one of its addresses or its name"
    );
    for path in [
        format!("{MAIN}/users/nobody"),
        format!("{MAIN}/users/nobody/groups"),
        format!("{MAIN}/users/nobody/groups?transitive=true"),
        format!("{MAIN}/users/nobody@contoso.com"),
        // Another connector's user and group, by address.
        format!("{MAIN}/users/x1@fabrikam.com"),
        format!("{MAIN}/users/x1"),
        format!("{MAIN}/groups/sales@fabrikam.com"),
        format!("{MAIN}/groups/Fabrikam/members"),
        format!("{MAIN}/groups/nothing/members?transitive=true"),
    ] {
        let e = refused(&app, &path, 404).await;
        assert!(
            e.contains("in connector main: give its id, one of its addresses or its name"),
            "{path}: {e}"
        );
    }
    // The other connector finds its own.
    let b = ok(
        &app,
        "/accounts/acme/connectors/other/users/x1@fabrikam.com",
    )
    .await;
    assert_eq!(b["user"]["id"], "x1");
    let e = refused(&app, "/accounts/acme/connectors/nope/groups/all", 404).await;
    assert!(e.contains("connector acme/nope"), "{e}");

    let (s, b) = get(&app, &format!("{MAIN}/groups/SALES/members")).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["ids"], json!(["s1", "s2"]));
    let e = b["error"].as_str().unwrap();
    assert!(e.contains("s1, s2") && e.contains("give the id"), "{e}");
    let e = refused(
        &app,
        &format!("{MAIN}/groups/all/members?transitive=yes"),
        400,
    )
    .await;
    assert!(e.contains("transitive must be true or false"), "{e}");
}

/// (id, depth, via) of each row of a listing, sorted.
fn reached(rows: &Value) -> Vec<(String, u64, Option<String>)> {
    let mut out: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["depth"].as_u64().unwrap(),
                r["via"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    out
}

/// The row of a listing with this id.
fn row<'a>(rows: &'a Value, id: &str) -> &'a Value {
    let found = rows.as_array().unwrap().iter().find(|r| r["id"] == id);
    found.unwrap_or_else(|| panic!("no {id} in {rows}"))
}

fn at(id: &str, depth: u64, via: Option<&str>) -> (String, u64, Option<String>) {
    (id.to_owned(), depth, via.map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_groups_are_followed_once_each_at_their_smallest_depth() {
    let f = fixture(Backend::Embedded).await;
    directory(&f).await;
    let app = app(&f);
    // User 1 is in A, A in B, B in C, C in A again.
    let b = ok(
        &app,
        &format!("{MAIN}/users/user1@contoso.com/groups?transitive=true"),
    )
    .await;
    assert_eq!(
        b["user"],
        json!({"id": "u00001", "primary_email": "user1@contoso.com", "display_name": "User 1"})
    );
    assert_eq!(
        reached(&b["groups"]),
        [
            at("all", 1, None),
            at("ga", 1, None),
            at("gb", 2, Some("ga")),
            at("gc", 3, Some("gb")),
        ]
    );
    assert_eq!(b["next"], Value::Null);
    assert_eq!(
        row(&b["groups"], "gc"),
        &json!({"id": "gc", "name": "Team C", "mail": null, "kind": "security",
            "depth": 3, "via": "gb"})
    );
    // User 2 is in A and B directly: C is reached through B, once.
    let b = ok(&app, &format!("{MAIN}/users/u00002/groups?transitive=true")).await;
    assert_eq!(
        reached(&b["groups"]),
        [
            at("all", 1, None),
            at("ga", 1, None),
            at("gb", 1, None),
            at("gc", 2, Some("gb")),
        ]
    );
    // Without transitive: the direct ones only, paged.
    let b = ok(
        &app,
        &format!("{MAIN}/users/u00001/groups?transitive=false"),
    )
    .await;
    assert_eq!(
        reached(&b["groups"]),
        [at("all", 1, None), at("ga", 1, None)]
    );

    // Team C's members: B, what B holds, what A holds; never C itself.
    let b = ok(
        &app,
        &format!("{MAIN}/groups/Team%20C/members?transitive=true"),
    )
    .await;
    assert_eq!(
        b["group"],
        json!({"id": "gc", "name": "Team C", "mail": null})
    );
    assert_eq!(
        reached(&b["members"]),
        [
            at("ext1", 3, Some("ga")),
            at("ga", 2, Some("gb")),
            at("gb", 1, None),
            at("u00001", 3, Some("ga")),
            at("u00002", 2, Some("gb")),
        ]
    );
    assert_eq!(
        row(&b["members"], "ga"),
        &json!({"id": "ga", "kind": "group", "name": "Team A",
            "address": "team-a@contoso.com", "depth": 2, "via": "gb"})
    );
    assert_eq!(
        row(&b["members"], "ext1"),
        &json!({"id": "ext1", "kind": "external", "name": null,
            "address": "partner@fabrikam.com", "depth": 3, "via": "ga"})
    );
    // Team A's direct members include C, which holds A: listed once.
    let b = ok(&app, &format!("{MAIN}/groups/ga/members")).await;
    assert_eq!(
        reached(&b["members"]),
        [
            at("ext1", 1, None),
            at("gc", 1, None),
            at("u00001", 1, None),
            at("u00002", 1, None),
        ]
    );
    assert_eq!(b["next"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_and_counts_only_the_memberships_it_would_add() {
    let f = fixture(Backend::Embedded).await;
    let (main, _) = acme(&f).await;
    // User i is in groups i % 3 and (i + 1) % 3.
    let src = MemorySource::new(Directory::generate(12, 3, "contoso.com"), 5);
    let engine = SyncEngine::new(f.store.clone(), EngineSettings::default());
    let manual = RunRequest::new(Trigger::Manual {
        requested_by: Some("test".into()),
    });
    engine.run(&main, &src, manual.clone()).await.unwrap();
    src.mutate(|d, touch| {
        d.users.insert("u00050".into(), user(50, "contoso.com"));
        touch(Touched::User("u00050".into()));
        // Two new memberships, and one stored already that a delta read
        // lists again.
        for (g, m) in [
            ("g0000", "u00050"),
            ("g0000", "u00004"),
            ("g0001", "u00004"),
        ] {
            d.members
                .entry(g.into())
                .or_default()
                .insert(m.into(), MemberKind::User);
            touch(Touched::Member(g.into(), m.into()));
        }
        d.groups.insert("g0003".into(), group(3));
        touch(Touched::Group("g0003".into()));
    });
    for full in [false, true] {
        let request = RunRequest {
            dry_run: true,
            full,
            ..manual.clone()
        };
        let RunOutcome::DryRun { run, plan, .. } = engine.run(&main, &src, request).await.unwrap()
        else {
            panic!("a dry run")
        };
        let memberships: Vec<_> = plan
            .iter()
            .filter(|p| p.object_type == "membership")
            .collect();
        assert!(memberships.iter().all(|p| p.action == Action::Create));
        let added: BTreeSet<(&str, &str)> = memberships
            .iter()
            .map(|p| (p.id.as_str(), p.label.as_str()))
            .collect();
        assert_eq!(
            added,
            BTreeSet::from([
                ("u00004", "user u00004 in group g0000"),
                ("u00050", "user u00050 in group g0000"),
            ]),
            "full: {full}"
        );
        assert_eq!(memberships.len(), 2, "full: {full}");
        assert_eq!(run.counts.members_added, 2, "full: {full}");
        let group_plan = plan.iter().find(|p| p.object_type == "group").unwrap();
        assert_eq!(
            (group_plan.action, group_plan.id.as_str()),
            (Action::Create, "g0003")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_says_how_many_of_each_action_it_staged() {
    let f = fixture(Backend::Embedded).await;
    let (mut main, _) = acme(&f).await;
    main.options.deletion_guard.users.max_count = 2;
    let main = f.store.update_connector(&main).await.unwrap();
    let src = MemorySource::new(Directory::generate(20, 2, "contoso.com"), 10);
    let app = app(&f);
    let manual = RunRequest::new(Trigger::Manual {
        requested_by: Some("test".into()),
    });
    let RunOutcome::Finished(first) = app.engine.run(&main, &src, manual.clone()).await.unwrap()
    else {
        panic!("a finished run")
    };
    let b = ok(&app, &format!("{MAIN}/runs/{}", first.id.as_str())).await;
    assert_eq!(
        (&b["summary"], &b["staged_actions"]),
        (&json!([]), &json!([]))
    );

    src.mutate(|d, touch| {
        for i in 0..3 {
            let id = format!("u{i:05}");
            d.users.remove(&id);
            touch(Touched::User(id));
        }
    });
    let RunOutcome::Finished(staged) = app.engine.run(&main, &src, manual).await.unwrap() else {
        panic!("a finished run")
    };
    assert_eq!(staged.status, RunStatus::Staged, "{:?}", staged.message);
    let b = ok(&app, &format!("{MAIN}/runs/{}", staged.id.as_str())).await;
    assert_eq!(
        b["summary"],
        json!([{"object_type": "user", "action": "remove", "count": 3}]),
        "{b}"
    );
    assert_eq!(b["staged_actions"].as_array().unwrap().len(), 3);
}
