//! The Google Workspace source against the Directory API simulator.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use common::{Backend, Fixture, fixture_at};
use dirsync_google_sim::{Faults, GoogleSim, MemberRole as SimRole, MemberType, SimGroup};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::*;
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use dirsync_shared::source::DirectorySource;
use dirsync_shared::source::google::GoogleSource;
use dirsync_shared::source::retry::RetryPolicy;
use dirsync_shared::store::{Scope, all_pages};
use serde_json::{Value, json};

const KEY_REF: &str = "dirsync/test/google-key";
const USER_SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";
const GROUP_SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.group.readonly";

/// Users (id → primary, aliases, enabled) and memberships (group, member).
type View = (
    BTreeMap<String, (String, BTreeSet<String>, bool)>,
    BTreeSet<(String, String)>,
);

struct Google {
    sim: GoogleSim,
    customer: String,
    client_id: String,
    secrets: Arc<LocalSecretStore>,
    f: Fixture,
}

async fn google(users: u32, groups: u32) -> Google {
    let sim = GoogleSim::start().await.unwrap();
    let customer = sim.add_customer("example.com", "admin@example.com");
    let key = sim.add_service_account("dirsync@dirsync-test.iam.gserviceaccount.com");
    let client_id = serde_json::from_str::<Value>(&key).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.grant_delegation(&customer, &client_id, &[USER_SCOPE, GROUP_SCOPE]);
    sim.generate(&customer, users, groups, 5);
    let secrets = Arc::new(LocalSecretStore::in_memory());
    secrets.set(
        &KEY_REF.parse().unwrap(),
        Stage::Current,
        SecretValue::new(key),
    );
    Google {
        sim,
        customer,
        client_id,
        secrets,
        f: fixture_at(Backend::Embedded, Utc::now()).await,
    }
}

impl Google {
    fn connector(&self, extra: Value) -> Connector {
        let mut spec = json!({
            "id": "google", "kind": "google", "admin_email": "admin@example.com",
            "service_account_key_ref": KEY_REF, "api_url": self.sim.api_url(), "acknowledge_disabled": true,
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value::<ConnectorSpec>(spec)
            .unwrap()
            .validate(AccountId::new("acme").unwrap(), Utc::now())
            .unwrap()
    }

    fn source(&self, c: &Connector) -> GoogleSource {
        GoogleSource::for_connector(
            c,
            self.secrets.clone(),
            Arc::new(SystemClock),
            RetryPolicy::fast(),
        )
        .unwrap()
    }

    async fn sync(&self, c: &Connector) -> SyncRun {
        let engine = SyncEngine::new(self.f.store.clone(), EngineSettings::default());
        match engine
            .run(
                c,
                &self.source(c),
                RunRequest::new(Trigger::Manual { requested_by: None }),
            )
            .await
            .unwrap()
        {
            RunOutcome::Finished(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// (users: id → (primary, aliases, enabled), memberships)
    async fn stored(&self, c: &Connector) -> View {
        let s = Scope::new(c.account.clone(), c.id.clone());
        let users = all_pages(|p| self.f.store.list_users(&s, p)).await.unwrap();
        let groups = all_pages(|p| self.f.store.list_groups(&s, p))
            .await
            .unwrap();
        let mut members = BTreeSet::new();
        for g in &groups {
            for m in all_pages(|p| self.f.store.group_members(&s, &g.id, p))
                .await
                .unwrap()
            {
                members.insert((m.group.to_string(), m.member.to_string()));
            }
        }
        let users = users
            .into_iter()
            .map(|u| {
                (
                    u.id.to_string(),
                    (
                        u.primary_email.to_string(),
                        u.aliases.iter().map(|a| a.to_string()).collect(),
                        u.enabled,
                    ),
                )
            })
            .collect();
        (users, members)
    }

    fn expected(&self, acknowledge: bool) -> View {
        let snap = self.sim.snapshot(&self.customer);
        let users = snap
            .users
            .iter()
            .map(|u| {
                let aliases = u.aliases.iter().map(|a| a.to_lowercase()).collect();
                let enabled = !acknowledge || !(u.suspended || u.archived);
                (
                    u.id.clone(),
                    (u.primary_email.to_lowercase(), aliases, enabled),
                )
            })
            .collect();
        // Every member: users, groups, the customer (everyone) and people
        // from outside it.
        let members = snap
            .members
            .iter()
            .map(|m| (m.group_id.clone(), m.member_id.clone()))
            .collect();
        (users, members)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_then_a_change_between_runs() {
    let g = google(1200, 25).await;
    let c = g.connector(json!({}));
    let r = g.sync(&c).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(g.stored(&c).await, g.expected(true));
    assert!(
        g.stored(&c)
            .await
            .0
            .values()
            .any(|(_, _, enabled)| !enabled),
        "suspended or archived users are disabled"
    );

    // Between runs: a user suspended, an alias added, a member removed, a user deleted.
    let snap = g.sim.snapshot(&g.customer);
    let active: Vec<_> = snap
        .users
        .iter()
        .filter(|u| !u.suspended && !u.archived)
        .collect();
    let (s1, s2, gone) = (
        active[0].id.clone(),
        active[1].id.clone(),
        active[2].id.clone(),
    );
    g.sim.update_user(&g.customer, &s1, |u| u.suspended = true);
    g.sim.update_user(&g.customer, &s2, |u| {
        u.aliases.push("late.alias@example.com".into())
    });
    let m = snap
        .members
        .iter()
        .find(|m| m.member_type == MemberType::User)
        .unwrap()
        .clone();
    g.sim.remove_member(&g.customer, &m.group_id, &m.member_id);
    g.sim.delete_user(&g.customer, &gone);
    let (_, members_before) = g.stored(&c).await;
    let r = g.sync(&c).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(
        (r.counts.disabled, r.counts.removed),
        (1, 1),
        "{:?}",
        r.counts
    );
    let (_, members_after) = g.stored(&c).await;
    assert_eq!(g.stored(&c).await, g.expected(true));
    // The membership counts are the rows that changed.
    let removed = members_before.difference(&members_after).count() as u64;
    let added = members_after.difference(&members_before).count() as u64;
    assert!(removed >= 1, "the member removed, and the deleted user's");
    assert_eq!(
        (r.counts.members_added, r.counts.members_removed),
        (added, removed),
        "{:?}",
        r.counts
    );
    // An unchanged directory read again changes and counts nothing.
    let again = g.sync(&c).await;
    let c2 = again.counts;
    assert_eq!(
        (
            c2.created,
            c2.updated,
            c2.removed,
            c2.members_added,
            c2.members_removed,
            c2.members_updated
        ),
        (0, 0, 0, 0, 0, 0),
        "{c2:?}"
    );
}

/// Every stored membership of a group: member → (kind, role, address).
async fn members_of(
    g: &Google,
    c: &Connector,
    group: &str,
) -> BTreeMap<String, (MemberKind, Option<MemberRole>, Option<String>)> {
    let s = Scope::new(c.account.clone(), c.id.clone());
    let group = SourceId::new(group).unwrap();
    all_pages(|p| g.f.store.group_members(&s, &group, p))
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            let address = m.address.map(|a| a.to_string());
            (m.member.to_string(), (m.member_kind, m.role, address))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_keep_every_address_role_and_kind_of_member() {
    let g = google(40, 8).await;
    let snap = g.sim.snapshot(&g.customer);
    let (owner, manager) = (snap.users[1].id.clone(), snap.users[2].id.clone());
    let nested = snap.groups[1].id.clone();
    g.sim.add_group(
        &g.customer,
        SimGroup {
            id: "0sales".into(),
            email: "Sales@example.com".into(),
            name: "Sales, EMEA".into(),
            aliases: vec!["vertrieb@example.com".into()],
            non_editable_aliases: vec!["sales@example.com.test-google-a.com".into()],
        },
    );
    g.sim
        .set_member(&g.customer, "0sales", &owner, SimRole::Owner);
    g.sim
        .set_member(&g.customer, "0sales", &manager, SimRole::Manager);
    g.sim.add_member(&g.customer, "0sales", &nested);
    g.sim.add_member(&g.customer, "0sales", &g.customer);
    let partner = g
        .sim
        .add_external_member(&g.customer, "0sales", "Partner@gmail.com", true)
        .unwrap();
    g.sim
        .add_external_member(&g.customer, "0sales", "orders@supplier.example", false)
        .unwrap();

    let c = g.connector(json!({}));
    let first = g.sync(&c).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.message);
    assert_eq!(g.stored(&c).await, g.expected(true));

    let s = Scope::new(c.account.clone(), c.id.clone());
    let sales =
        g.f.store
            .get_group(&s, &SourceId::new("0sales").unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(sales.name, "Sales, EMEA");
    assert_eq!(sales.mail.as_ref().unwrap().as_str(), "sales@example.com");
    let aliases: Vec<&str> = sales.aliases.iter().map(EmailAddress::as_str).collect();
    assert_eq!(
        aliases,
        [
            "sales@example.com.test-google-a.com",
            "vertrieb@example.com"
        ],
        "editable and non-editable aliases"
    );

    let member = |kind, role, address: Option<&str>| (kind, Some(role), address.map(String::from));
    let expected = BTreeMap::from([
        (
            owner.clone(),
            member(
                MemberKind::User,
                MemberRole::Owner,
                Some(&snap.users[1].primary_email),
            ),
        ),
        (
            manager.clone(),
            member(
                MemberKind::User,
                MemberRole::Manager,
                Some(&snap.users[2].primary_email),
            ),
        ),
        (
            nested.clone(),
            member(
                MemberKind::Group,
                MemberRole::Member,
                Some(&snap.groups[1].email),
            ),
        ),
        (
            g.customer.clone(),
            member(MemberKind::Everyone, MemberRole::Member, None),
        ),
        // A Google account from outside: listed as a user, found to be
        // no user of the directory at the end of the first run.
        (
            partner.clone(),
            member(
                MemberKind::External,
                MemberRole::Member,
                Some("partner@gmail.com"),
            ),
        ),
        // No Google account: no id, so the address is its id.
        (
            "orders@supplier.example".into(),
            member(
                MemberKind::External,
                MemberRole::Member,
                Some("orders@supplier.example"),
            ),
        ),
    ]);
    assert_eq!(members_of(&g, &c, "0sales").await, expected);
    // The run's counts are the rows written: the Google account's row is
    // written as a user's membership, then made an external recipient's,
    // and counted once.
    let with_ids = g
        .sim
        .snapshot(&g.customer)
        .members
        .iter()
        .filter(|m| {
            m.member_type == MemberType::External && m.member_id != m.email.clone().unwrap()
        })
        .count();
    assert!(with_ids >= 2, "the generated directory has some too");
    let (_, rows) = g.stored(&c).await;
    assert_eq!(
        (first.counts.members_added, first.counts.members_updated),
        (rows.len() as u64, 0),
        "each row counted once, as added: {:?}",
        first.counts
    );

    // An external member's new role is one changed row, and it stays an
    // external recipient.
    g.sim
        .set_member(&g.customer, "0sales", &partner, SimRole::Manager);
    let role = g.sync(&c).await;
    assert_eq!(
        (
            role.counts.members_added,
            role.counts.members_removed,
            role.counts.members_updated
        ),
        (0, 0, 1),
        "{:?}",
        role.counts
    );
    let now = members_of(&g, &c, "0sales").await;
    assert_eq!(now[&partner].0, MemberKind::External);
    assert_eq!(now[&partner].1, Some(MemberRole::Manager));
    g.sim
        .set_member(&g.customer, "0sales", &partner, SimRole::Member);
    assert_eq!(g.sync(&c).await.counts.members_updated, 1);

    // Read again unchanged: nothing written, nothing counted.
    let again = g.sync(&c).await;
    assert_eq!(
        (
            again.counts.members_added,
            again.counts.members_removed,
            again.counts.members_updated
        ),
        (0, 0, 0),
        "{:?}",
        again.counts
    );
    assert_eq!(members_of(&g, &c, "0sales").await, expected);

    // A new role is a change of one membership, not an addition.
    g.sim
        .set_member(&g.customer, "0sales", &manager, SimRole::Owner);
    g.sim.remove_member(&g.customer, "0sales", &partner);
    let changed = g.sync(&c).await;
    assert_eq!(
        changed.status,
        RunStatus::Succeeded,
        "{:?}",
        changed.message
    );
    assert_eq!(
        (
            changed.counts.members_added,
            changed.counts.members_removed,
            changed.counts.members_updated
        ),
        (0, 1, 1),
        "{:?}",
        changed.counts
    );
    let now = members_of(&g, &c, "0sales").await;
    assert_eq!(now[&manager].1, Some(MemberRole::Owner));
    assert!(
        !now.contains_key(&partner),
        "the external member who left is gone"
    );
    assert_eq!(now.len(), expected.len() - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_users_with_acknowledge_disabled_off_stay_enabled() {
    let g = google(200, 5).await;
    let c = g.connector(json!({"acknowledge_disabled": false}));
    g.sync(&c).await;
    let (users, _) = g.stored(&c).await;
    assert!(users.values().all(|(_, _, enabled)| *enabled));
    assert_eq!(g.stored(&c).await, g.expected(false));
}

/// Every page a full read of `g`'s directory fetches, counted by running
/// one clean sync first.
async fn pages_of_a_full_read(g: &Google, c: &Connector) -> u32 {
    let api = || -> u64 {
        let stats = g.sim.stats();
        stats
            .per_route
            .iter()
            .filter(|(route, _)| route.starts_with("GET /admin"))
            .map(|(_, n)| n)
            .sum()
    };
    let before = api();
    let r = g.sync(c).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    (api() - before) as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_cut_off_or_not_json_is_read_again_at_every_position() {
    let g = google(700, 6).await;
    let c = g.connector(json!({}));
    let pages = pages_of_a_full_read(&g, &c).await;
    assert!(
        pages >= 8,
        "users, groups and each group's members: {pages}"
    );
    assert_eq!(g.stored(&c).await, g.expected(true));
    // A 200 cut mid-body, then a 200 that is not JSON, at each page of a
    // full read: the page is read again, never taken for the last one, and
    // the run ends equal to the source with nothing removed.
    for position in 0..pages {
        for (cut, garbled) in [(1, 0), (0, 1), (2, 2)] {
            g.sim.set_faults(Faults {
                spoil_after: position,
                cut_body_next: cut,
                not_json_next: garbled,
                ..Default::default()
            });
            let r = g.sync(&c).await;
            let at = format!("position {position}, cut {cut}, not JSON {garbled}");
            assert_eq!(r.status, RunStatus::Succeeded, "{at}: {:?}", r.message);
            assert_eq!(r.counts.removed, 0, "{at}: {:?}", r.counts);
            assert!(
                r.retries >= u64::from(cut + garbled),
                "{at}: {} retries",
                r.retries
            );
            assert_eq!(g.stored(&c).await, g.expected(true), "{at}");
        }
    }
    let faults = g.sim.stats().faults_by_reason;
    for reason in ["cutBody", "notJson"] {
        let n = faults.get(reason).copied().unwrap_or(0);
        assert!(n >= 3 * u64::from(pages), "{reason}: {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_storm_is_ridden_out() {
    let g = google(700, 8).await;
    g.sim.set_faults(Faults {
        rate_limit_next: 3,
        quota_next: 2,
        too_many_next: 2,
        server_error_next: 1,
        ..Default::default()
    });
    let c = g.connector(json!({}));
    let r = g.sync(&c).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert!(r.throttled >= 7, "throttled {}", r.throttled);
    assert_eq!(g.stored(&c).await, g.expected(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_admin_and_scope_problems_say_what_to_do() {
    let g = google(20, 2).await;
    let c = g.connector(json!({}));
    assert!(g.source(&c).test_connection().await.ok);

    g.sim.revoke_delegation(&g.customer, &g.client_id);
    let report = g.source(&c).test_connection().await;
    assert!(!report.ok);
    assert!(
        report.steps[0].detail.contains("Domain-wide delegation")
            || report.steps[0].detail.contains("domain-wide delegation"),
        "{report:?}"
    );
    assert!(
        report.steps[0].detail.contains(&g.client_id),
        "names the client ID: {report:?}"
    );

    // Only the user scope delegated: the message lists the scopes to grant.
    g.sim
        .grant_delegation(&g.customer, &g.client_id, &[USER_SCOPE]);
    let report = g.source(&c).test_connection().await;
    assert!(!report.ok);
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.detail.contains("admin.directory.group.readonly")),
        "{report:?}"
    );
    let r = g.sync(&c).await;
    assert_eq!(r.status, RunStatus::Failed);

    // A wrong administrator.
    g.sim
        .grant_delegation(&g.customer, &g.client_id, &[USER_SCOPE, GROUP_SCOPE]);
    let wrong = g.connector(json!({"admin_email": "nobody@example.com"}));
    let report = g.source(&wrong).test_connection().await;
    assert!(!report.ok);
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.detail.contains("nobody@example.com")),
        "{report:?}"
    );
}
