//! The Entra ID source against the Graph simulator over loopback: consent
//! (certificate) and legacy (secret) sign-in, full and delta reads through
//! the engine, throttling and faults, and the errors people see.

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use common::mirror::{assert_same, expected, view};
use common::{Backend, Fixture, fixture_at};
use dirsync_entra_sim::{
    CONSENT_ROLES, EntraSim, Faults, GenSpec, MultiTenantApp, SimUser, TenantSpec, UserType,
};
use dirsync_shared::auth::{AppCertificate, AssertionAlg, AuthError, KeyBits, TokenProvider};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::*;
use dirsync_shared::engine::{EngineSettings, RunOutcome, RunRequest, SyncEngine};
use dirsync_shared::secrets::{LocalSecretStore, SecretStore, Stage};
use dirsync_shared::source::budget::{BudgetLimits, SharedBudget};
use dirsync_shared::source::graph::{EntraApp, GraphDeps, GraphSource};
use dirsync_shared::source::retry::RetryPolicy;
use dirsync_shared::source::{DirectorySource, Next, ReadFrom, Stream};
use dirsync_shared::store::{StateStore, Table, keys};
use serde_json::json;
use uuid::Uuid;

const CERT_SECRET: &str = "dirsync/app-certificate";

struct Entra {
    sim: EntraSim,
    tenant: Uuid,
    client_id: Uuid,
    object_id: Uuid,
    secrets: Arc<LocalSecretStore>,
    f: Fixture,
}

fn certificate() -> AppCertificate {
    AppCertificate::generate(
        "dirsync test app",
        Utc::now(),
        Duration::days(3),
        KeyBits::Rsa2048,
    )
    .unwrap()
}

async fn entra(backend: Backend, spec: GenSpec) -> Entra {
    let sim = EntraSim::start().await.unwrap();
    let tenant = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
        ..Default::default()
    });
    sim.generate_directory(tenant, spec);
    let cert = certificate();
    let (client_id, object_id) = (Uuid::new_v4(), Uuid::new_v4());
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    sim.register_multitenant_app(MultiTenantApp {
        client_id,
        object_id,
        home_tenant: home,
        redirect_uris: vec!["https://dirsync.example/consent/callback".into()],
        certificates: vec![cert.der().to_vec()],
    });
    sim.grant_admin_consent(tenant, client_id, &CONSENT_ROLES);
    let secrets = Arc::new(LocalSecretStore::in_memory());
    secrets.set(
        &CERT_SECRET.parse().unwrap(),
        Stage::Current,
        cert.to_secret(),
    );
    Entra {
        sim,
        tenant,
        client_id,
        object_id,
        secrets,
        f: fixture_at(backend, Utc::now()).await,
    }
}

impl Entra {
    fn deps(&self, alg: AssertionAlg) -> GraphDeps {
        GraphDeps::new(
            self.secrets.clone(),
            self.f.clock.clone(),
            RetryPolicy::fast(),
            Some(EntraApp {
                client_id: self.client_id,
                certificate: CERT_SECRET.parse().unwrap(),
                assertion: alg,
            }),
        )
    }

    fn consent_connector(&self, id: &str, extra: serde_json::Value) -> Connector {
        self.consent_connector_of(self.tenant, id, extra)
    }

    fn consent_connector_of(&self, tenant: Uuid, id: &str, extra: serde_json::Value) -> Connector {
        let mut spec = json!({
            "id": id, "kind": "entra", "tenant": tenant.to_string(), "acknowledge_disabled": true,
            "authority_url": self.sim.authority_url(), "graph_url": self.sim.graph_url(),
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let spec: ConnectorSpec = serde_json::from_value(spec).unwrap();
        let mut c = spec
            .validate(AccountId::new("acme").unwrap(), Utc::now())
            .unwrap();
        if let SourceConfig::EntraConsent { consent, .. } = &mut c.source {
            *consent = Consent::granted(tenant, Utc::now());
        }
        c
    }

    fn engine(&self) -> SyncEngine {
        SyncEngine::new(self.f.store.clone(), EngineSettings::default())
    }

    async fn sync(&self, c: &Connector, source: &dyn DirectorySource) -> SyncRun {
        match self
            .engine()
            .run(
                c,
                source,
                RunRequest::new(Trigger::Manual { requested_by: None }),
            )
            .await
            .unwrap()
        {
            RunOutcome::Finished(r) => r,
            other => panic!("expected a finished run, got {other:?}"),
        }
    }
}

// ---- tests --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_connector_full_then_delta_equals_the_tenant() {
    let mut spec = GenSpec::sized(2500, 40, 7);
    spec.large_group_members = Some(1800);
    let e = entra(Backend::Embedded, spec).await;
    let c = e.consent_connector("main", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();

    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.mode, SyncMode::Full);
    let want = expected(&e.sim, e.tenant);
    assert_same(&view(&e.f, &c).await, &want);
    let skipped: std::collections::HashSet<WarningKind> =
        r.warnings.iter().map(|w| w.kind).collect();
    assert!(
        skipped.contains(&WarningKind::Guest) && skipped.contains(&WarningKind::NoAddress),
        "{skipped:?}"
    );
    // No call per group: users and groups come from two delta streams.
    let stats = e.sim.stats();
    assert_eq!(stats.route("GET /v1.0/groups/{id}/members"), 0);
    assert!(
        r.requests <= 3 + 10,
        "2,500 users in pages of 999 plus the groups: {} requests",
        r.requests
    );

    // Mutations between runs: the delta round yields exactly those.
    let snap = e.sim.snapshot(e.tenant);
    let members: Vec<&SimUser> = snap
        .users
        .iter()
        .filter(|u| u.user_type == UserType::Member && u.mail.is_some())
        .collect();
    let (to_disable, to_soft_delete, to_purge, to_alias) =
        (members[0].id, members[1].id, members[2].id, members[3].id);
    let group = snap.groups[0].id;
    let new_id = Uuid::new_v4();
    let mut new_user = SimUser::new(new_id, "newhire@contoso.com", "New Hire");
    new_user.proxy_addresses = vec![
        "SMTP:newhire@contoso.com".into(),
        "smtp:nh@contoso.com".into(),
    ];
    e.sim.add_user(e.tenant, new_user);
    e.sim.update_user(e.tenant, &to_disable.to_string(), |u| {
        u.account_enabled = false
    });
    e.sim.update_user(e.tenant, &to_alias.to_string(), |u| {
        u.proxy_addresses
            .push("smtp:extra.alias@contoso.com".into())
    });
    e.sim.delete_user(e.tenant, &to_soft_delete.to_string());
    e.sim.purge_user(e.tenant, &to_purge.to_string());
    e.sim
        .add_member(e.tenant, &group.to_string(), &new_id.to_string());
    let removed_member = e
        .sim
        .snapshot(e.tenant)
        .memberships
        .iter()
        .find(|m| {
            m.group_id == group
                && m.member_id != new_id
                && m.member_kind == dirsync_entra_sim::MemberKind::User
        })
        .unwrap()
        .member_id;
    e.sim
        .remove_member(e.tenant, &group.to_string(), &removed_member.to_string());

    e.sim.reset_stats();
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.mode, SyncMode::Delta);
    let c2 = r.counts;
    assert_eq!(
        (c2.created, c2.updated, c2.disabled, c2.removed),
        (1, 1, 1, 2),
        "{c2:?}"
    );
    // One membership removed by hand; the deleted users' memberships are
    // reported as removed by Graph too.
    assert!(c2.members_added == 1 && c2.members_removed >= 1, "{c2:?}");
    assert!(
        r.requests <= 4,
        "a small delta round is a page per stream: {}",
        r.requests
    );
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));
    let found =
        e.f.store
            .find_user_by_address(&c.account, &"extra.alias@contoso.com".parse().unwrap())
            .await
            .unwrap();
    assert_eq!(found.unwrap().1.id.as_str(), to_alias.to_string());

    // Restoring the soft-deleted user brings it back.
    e.sim.restore_user(e.tenant, &to_soft_delete.to_string());
    let r = e.sync(&c, &source).await;
    assert_eq!(r.counts.created, 1);
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_dynamodb_local_with_rs256_assertions() {
    let e = entra(Backend::Dynamo, GenSpec::sized(600, 12, 3)).await;
    let c = e.consent_connector("main", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Rs256)).unwrap();
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));
    let before = e.f.writes.directory_writes();
    let r = match e
        .engine()
        .run(
            &c,
            &source,
            RunRequest {
                full: true,
                ..RunRequest::new(Trigger::Manual { requested_by: None })
            },
        )
        .await
        .unwrap()
    {
        RunOutcome::Finished(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!((r.counts.created, r.counts.updated), (0, 0));
    assert_eq!(
        e.f.writes.directory_writes(),
        before,
        "an unchanged full re-sync writes nothing: {:?}",
        e.f.writes.recent()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_delta_token_leads_to_a_full_resync() {
    let e = entra(Backend::Embedded, GenSpec::sized(300, 6, 5)).await;
    let c = e.consent_connector("main", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    e.sync(&c, &source).await;
    let gone = e
        .sim
        .snapshot(e.tenant)
        .users
        .iter()
        .find(|u| u.user_type == UserType::Member && u.mail.is_some())
        .unwrap()
        .id;
    e.sim.purge_user(e.tenant, &gone.to_string());
    e.sim.expire_delta_tokens(e.tenant);
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.mode, SyncMode::Full);
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .contains("read in full instead"),
        "{:?}",
        r.message
    );
    assert_eq!(r.counts.removed, 1);
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_429_5xx_and_dropped_connections_are_ridden_out() {
    let e = entra(Backend::Embedded, GenSpec::sized(1200, 10, 9)).await;
    e.sim.set_faults(Faults {
        throttle_next: 5,
        retry_after_secs: 1,
        throttle_every: Some(4),
        server_error_next: 0,
        drop_connection_next: 0,
        throttle_percentage_header: Some(90),
        ..Default::default()
    });
    let c = e.consent_connector("main", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let sent = e.sim.stats().throttled;
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert!(r.throttled >= 5, "throttled {}", r.throttled);
    // Every 429 is counted by the run, those met by pages asked for ahead
    // included (none is dropped: the last page asks for nothing more).
    assert_eq!(r.throttled, e.sim.stats().throttled - sent);
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));

    e.sim.set_faults(Faults {
        server_error_next: 3,
        drop_connection_next: 2,
        ..Default::default()
    });
    e.sim.add_user(
        e.tenant,
        SimUser::new(Uuid::new_v4(), "late@contoso.com", "Late"),
    );
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert!(r.retries >= 5, "retries {}", r.retries);
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));

    // A service that never recovers: a clear failure, nothing removed.
    e.sim.set_faults(Faults {
        server_error_next: 1000,
        ..Default::default()
    });
    let before = view(&e.f, &c).await;
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Failed);
    let m = r.message.unwrap();
    assert!(
        m.contains("still unavailable after 8 attempts") && m.contains("Nothing was removed"),
        "{m}"
    );
    assert_same(&view(&e.f, &c).await, &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_and_missing_consent_say_what_to_do() {
    let e = entra(Backend::Embedded, GenSpec::sized(20, 2, 1)).await;
    let c = e.consent_connector("main", json!({}));
    // The stored certificate is not the one registered on the app.
    let stranger = certificate();
    e.secrets.set(
        &CERT_SECRET.parse().unwrap(),
        Stage::Current,
        stranger.to_secret(),
    );
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let report = source.test_connection().await;
    assert!(!report.ok);
    assert_eq!(report.steps[0].name, "sign-in");
    assert!(
        report.steps[0].detail.contains("AADSTS700027"),
        "{}",
        report.steps[0].detail
    );
    assert!(
        report.steps[0].detail.contains("cert bootstrap"),
        "{}",
        report.steps[0].detail
    );
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.message.as_deref().unwrap().contains("AADSTS700027"),
        "{:?}",
        r.message
    );
    assert!(
        !r.message.as_deref().unwrap().contains("BEGIN"),
        "no key material in messages"
    );

    // Mid-rotation: current refused, previous registered → the previous works.
    let registered = e.sim.app_key_credentials(e.object_id);
    assert_eq!(registered.len(), 1);
    let e2 = entra(Backend::Embedded, GenSpec::sized(20, 2, 1)).await;
    let c2 = e2.consent_connector("main", json!({}));
    let good = e2
        .secrets
        .get(&CERT_SECRET.parse().unwrap(), Stage::Current)
        .await
        .unwrap()
        .unwrap();
    e2.secrets
        .set(&CERT_SECRET.parse().unwrap(), Stage::Previous, good);
    e2.secrets.set(
        &CERT_SECRET.parse().unwrap(),
        Stage::Current,
        certificate().to_secret(),
    );
    let source2 = GraphSource::for_connector(&c2, &e2.deps(AssertionAlg::Ps256)).unwrap();
    let report = source2.test_connection().await;
    assert!(
        report.ok,
        "the previous certificate is used during a rotation: {report:?}"
    );

    // Consent withdrawn.
    e2.sim.revoke_consent(e2.tenant, e2.client_id);
    let fresh = GraphSource::for_connector(&c2, &e2.deps(AssertionAlg::Ps256)).unwrap();
    let report = fresh.test_connection().await;
    assert!(!report.ok);
    assert!(
        report.steps[0].detail.to_lowercase().contains("consent"),
        "{}",
        report.steps[0].detail
    );
}

/// `preset`'s Graph behind the simulator's Entra: the token request is the
/// one a connector in that cloud sends, to an Entra that answers for it.
fn on_the_simulator(sim: &EntraSim, preset: &Cloud) -> Cloud {
    let cloud = Cloud::Custom {
        authority_url: sim.authority_url(),
        graph_url: preset.graph_url().to_owned(),
    };
    assert_eq!(cloud.graph_scope(), preset.graph_scope());
    cloud
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cloud_s_token_names_its_own_graph_and_another_cloud_s_is_refused() {
    let e = entra(Backend::Embedded, GenSpec::sized(2, 2, 1)).await;
    let deps = e.deps(AssertionAlg::Ps256);
    let tenant = e.tenant.to_string();
    let sign_in = |preset: &Cloud| {
        let cloud = on_the_simulator(&e.sim, preset);
        let source = GraphSource::for_tenant(&cloud, &tenant, &deps).unwrap();
        async move { source.sign_in().await }
    };

    // A connector set to China for a tenant whose Entra knows the global
    // Graph only: no token (not the global one just cached), and advice.
    e.sim.answer_for_graph(Cloud::Global.graph_url());
    sign_in(&Cloud::Global).await.unwrap();
    match sign_in(&Cloud::China).await {
        Err(AuthError::Refused {
            code: Some(500011),
            message,
        }) => {
            assert!(message.contains("connector's cloud"), "{message}");
            assert!(
                message.contains("https://microsoftgraph.chinacloudapi.cn"),
                "Entra's words name the resource: {message}"
            );
        }
        other => panic!("expected AADSTS500011, got {other:?}"),
    }

    for preset in [Cloud::UsGov, Cloud::UsGovDod, Cloud::China] {
        e.sim.answer_for_graph(preset.graph_url());
        sign_in(&preset)
            .await
            .unwrap_or_else(|err| panic!("{preset:?}: {err}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_walks_each_step_and_names_a_missing_permission() {
    let e = entra(Backend::Embedded, GenSpec::sized(30, 3, 2)).await;
    let c = e.consent_connector("main", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let report = source.test_connection().await;
    assert!(report.ok, "{report:?}");
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["sign-in", "organization", "users", "groups"]);
    assert!(report.steps[1].detail.contains(&e.tenant.to_string()));

    // Consent with users only: reading groups is denied, and the message
    // names the permission.
    e.sim.revoke_consent(e.tenant, e.client_id);
    e.sim
        .grant_admin_consent(e.tenant, e.client_id, &["User.Read.All"]);
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let report = source.test_connection().await;
    assert!(!report.ok);
    let last = report.steps.last().unwrap();
    assert_eq!(last.name, "groups");
    assert!(last.detail.contains("Group.Read.All"), "{}", last.detail);
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Failed);
    assert!(
        r.message.as_deref().unwrap().contains("Group.Read.All"),
        "{:?}",
        r.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_connector_with_a_secret_and_its_errors() {
    let e = entra(Backend::Embedded, GenSpec::sized(50, 3, 4)).await;
    let legacy_client = Uuid::new_v4();
    e.sim.add_legacy_app(
        e.tenant,
        legacy_client,
        "s3cr3t-value",
        Utc::now() + Duration::days(30),
        &["Directory.Read.All"],
    );
    e.secrets.set(
        &"dirsync/acme/legacy".parse().unwrap(),
        Stage::Current,
        dirsync_shared::secrets::SecretValue::new("s3cr3t-value"),
    );
    let spec: ConnectorSpec = serde_json::from_value(json!({
        "id": "legacy", "kind": "entra-legacy", "tenant": "contoso.onmicrosoft.com", "acknowledge_disabled": true,
        "client_id": legacy_client.to_string(), "client_secret_ref": "dirsync/acme/legacy",
        "authority_url": e.sim.authority_url(), "graph_url": e.sim.graph_url(),
    }))
    .unwrap();
    let c = spec
        .validate(AccountId::new("acme").unwrap(), Utc::now())
        .unwrap();
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));

    // A wrong secret, then an expired one: plain advice, never the value.
    e.secrets.set(
        &"dirsync/acme/legacy".parse().unwrap(),
        Stage::Current,
        dirsync_shared::secrets::SecretValue::new("Zq8-not-the-secret"),
    );
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let report = source.test_connection().await;
    assert!(
        report.steps[0].detail.contains("AADSTS7000215")
            && report.steps[0].detail.contains("new client secret"),
        "{report:?}"
    );
    assert!(
        !format!("{report:?}").contains("Zq8-not-the-secret"),
        "the secret value is never echoed"
    );
    let expired_client = Uuid::new_v4();
    e.sim.add_legacy_app(
        e.tenant,
        expired_client,
        "old-secret",
        Utc::now() - Duration::days(1),
        &["Directory.Read.All"],
    );
    e.secrets.set(
        &"dirsync/acme/legacy".parse().unwrap(),
        Stage::Current,
        dirsync_shared::secrets::SecretValue::new("old-secret"),
    );
    let mut expired = c.clone();
    if let SourceConfig::EntraLegacy { client_id, .. } = &mut expired.source {
        *client_id = expired_client;
    }
    let source = GraphSource::for_connector(&expired, &e.deps(AssertionAlg::Ps256)).unwrap();
    let report = source.test_connection().await;
    assert!(report.steps[0].detail.contains("expired"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_refreshed_and_a_401_gets_one_retry() {
    let e = entra(Backend::Embedded, GenSpec::sized(40, 2, 6)).await;
    let c = e.consent_connector("main", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    e.sync(&c, &source).await;
    assert_eq!(
        e.sim.stats().route("POST token"),
        1,
        "one token for the whole run"
    );
    e.sync(&c, &source).await;
    assert_eq!(e.sim.stats().route("POST token"), 1, "still cached");

    // Short-lived tokens (on the real clock) are refreshed before they run
    // out: Entra's lifetime is whatever expires_in says.
    e.sim.set_faults(Faults {
        token_lifetime_secs: Some(2),
        ..Default::default()
    });
    let real = GraphDeps {
        tokens: Arc::new(TokenProvider::new(
            e.secrets.clone(),
            Arc::new(dirsync_shared::clock::SystemClock),
        )),
        ..e.deps(AssertionAlg::Ps256)
    };
    let source = GraphSource::for_connector(&c, &real).unwrap();
    e.sync(&c, &source).await;
    let before = e.sim.stats().route("POST token");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(
        e.sim.stats().route("POST token"),
        before + 1,
        "refreshed once, ahead of use"
    );

    // A token that Graph already considers expired while we do not (our
    // clock stands still here): 401, one refresh, the request retried.
    e.sim.set_faults(Faults {
        token_lifetime_secs: Some(1),
        ..Default::default()
    });
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    e.sync(&c, &source).await;
    let before = e.sim.stats().route("POST token");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(
        e.sim.stats().route("POST token"),
        before + 1,
        "a fresh token after the 401"
    );
}

/// How many times the users delta has been asked for, waiting (up to 10 s)
/// for it to reach `at_least`: a page asked for ahead arrives on its own.
async fn users_pages_asked(sim: &EntraSim, at_least: u64) -> u64 {
    let asked = || sim.stats().route("GET /v1.0/users/delta");
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while asked() < at_least && std::time::Instant::now() < give_up {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    asked()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_page_is_asked_for_while_a_page_is_mapped() {
    // 2,100 users: three pages of 999.
    let e = entra(Backend::Embedded, GenSpec::sized(2100, 3, 8)).await;
    let c = e.consent_connector("main", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let before = e.sim.stats().route("GET /v1.0/users/delta");

    // Reading the first page asks for the second without being asked.
    let first = source.read(Stream::Users, &ReadFrom::Full).await.unwrap();
    let Next::Page(second) = first.next.clone() else {
        panic!("three pages expected")
    };
    assert_eq!(first.stats.requests, 1);
    assert_eq!(users_pages_asked(&e.sim, before + 2).await, before + 2);

    // Following the link takes that request's answer (counted with the page
    // it brought), and asks for the third.
    let page = source
        .read(Stream::Users, &ReadFrom::Continue(second.clone()))
        .await
        .unwrap();
    assert_eq!(
        page.stats.requests, 1,
        "the page asked ahead is counted once"
    );
    assert_eq!(users_pages_asked(&e.sim, before + 3).await, before + 3);

    // A read from anywhere else drops the page asked ahead and reads what
    // it was told to: the second page again, the same users.
    let again = source
        .read(Stream::Users, &ReadFrom::Continue(second))
        .await
        .unwrap();
    assert_eq!(again.changes.len(), page.changes.len());
    let third = match again.next {
        Next::Page(third) => third,
        Next::Done { .. } => panic!("a third page expected"),
    };
    // The last page has no next link, so nothing more is asked for.
    let last = source
        .read(Stream::Users, &ReadFrom::Continue(third))
        .await
        .unwrap();
    assert!(matches!(last.next, Next::Done { cursor: Some(_) }));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Pages: 1, 2 (ahead), 3 (ahead), 2 again, 3 (ahead, taken by the read).
    assert_eq!(e.sim.stats().route("GET /v1.0/users/delta"), before + 5);
    let users = first.changes.len() + page.changes.len() + last.changes.len();
    assert_eq!(users, 2100, "each user read once");
}

/// The pages a read of both streams needs at least: each followed bare,
/// nothing mapped or stored. With the resource units they cost.
async fn minimum_pages(e: &Entra, source: &GraphSource) -> (u64, u64) {
    let units = |e: &Entra| {
        e.sim
            .stats()
            .resource_units
            .get(&e.tenant)
            .copied()
            .unwrap_or(0)
    };
    let before = (e.sim.stats().graph_requests, units(e));
    for stream in ["users", "groups"] {
        let mut url = source.first_url(stream).unwrap();
        loop {
            let mut stats = dirsync_shared::source::RequestStats::default();
            let page = source.client().get_page(&url, &mut stats).await.unwrap();
            let links: dirsync_shared::source::graph::PageLinks =
                serde_json::from_str(&page).unwrap();
            match links.next {
                Some(next) => url = next,
                None => break,
            }
        }
    }
    (e.sim.stats().graph_requests - before.0, units(e) - before.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_documented_delta_costs_its_pages_and_no_object_is_read_again() {
    // Graph's delta leaves out properties never set: most generated users
    // have no givenName, department or job title, some no mail, groups no
    // mail or groupTypes. None of that may cost a request.
    let mut spec = GenSpec::sized(3000, 60, 11);
    spec.contacts = 20;
    let e = entra(Backend::Embedded, spec).await;
    let c = e.consent_connector("documented", json!({}));
    let source = GraphSource::for_connector(&c, &e.deps(AssertionAlg::Ps256)).unwrap();
    let (pages, page_units) = minimum_pages(&e, &source).await;
    assert!(pages >= 4, "users and groups, several pages: {pages}");

    let per_object = |stats: &dirsync_entra_sim::SimStats| {
        stats.route("POST /v1.0/$batch")
            + stats.route("GET /v1.0/users/{id}")
            + stats.route("GET /v1.0/groups/{id}")
    };
    for (round, full) in [("first full sync", false), ("unchanged full re-sync", true)] {
        e.sim.reset_stats();
        let mut request = RunRequest::new(Trigger::Manual { requested_by: None });
        request.full = full;
        let RunOutcome::Finished(r) = e.engine().run(&c, &source, request).await.unwrap() else {
            panic!("{round}: not finished")
        };
        assert_eq!(r.status, RunStatus::Succeeded, "{round}: {:?}", r.message);
        assert_eq!(r.mode, SyncMode::Full, "{round}");
        let stats = e.sim.stats();
        assert_eq!(per_object(&stats), 0, "{round}: {:?}", stats.per_route);
        assert_eq!(
            stats.graph_requests, pages,
            "{round}: requests are the pages"
        );
        assert_eq!(r.requests, pages, "{round}: the run counts what was sent");
        assert_eq!(
            stats.resource_units.get(&e.tenant).copied().unwrap_or(0),
            page_units,
            "{round}: resource units are the pages'"
        );
        if full {
            assert_eq!(
                (r.counts.created, r.counts.updated, r.counts.removed),
                (0, 0, 0),
                "{round}: nothing changed"
            );
        }
        assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));
    }

    // A delta round after changes the docs single out: a property set to
    // null comes as null, one set for the first time appears, one never set
    // stays out, and a contact joins a group.
    let snap = e.sim.snapshot(e.tenant);
    let kept: Vec<&SimUser> = snap
        .users
        .iter()
        .filter(|u| u.user_type == UserType::Member && u.mail.is_some())
        .collect();
    let no_mail = snap
        .users
        .iter()
        .find(|u| u.user_type == UserType::Member && u.mail.is_none())
        .expect("the generator makes users without mail");
    let (cleared, first_set, renamed) = (kept[0].id, kept[1].id, kept[2].id);
    e.sim.update_user(e.tenant, &cleared.to_string(), |u| {
        u.mail = None;
        u.proxy_addresses = vec!["SMTP:moved@contoso.com".into()];
    });
    e.sim.update_user(e.tenant, &first_set.to_string(), |u| {
        u.given_name = Some("Zoë".into());
        u.department = Some("Qualité".into());
    });
    e.sim.update_user(e.tenant, &renamed.to_string(), |u| {
        u.display_name = "Renamed".into();
        u.account_enabled = false;
    });
    e.sim.update_user(e.tenant, &no_mail.id.to_string(), |u| {
        u.proxy_addresses.push("smtp:second@contoso.com".into())
    });
    let group = snap.groups[0].id;
    let contact = snap.contacts.first().expect("contacts were generated").id;
    if !snap
        .memberships
        .iter()
        .any(|m| m.group_id == group && m.member_id == contact)
    {
        e.sim
            .add_member(e.tenant, &group.to_string(), &contact.to_string());
    }
    e.sim.reset_stats();
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
    assert_eq!(r.mode, SyncMode::Delta);
    let stats = e.sim.stats();
    assert_eq!(per_object(&stats), 0, "{:?}", stats.per_route);
    assert_eq!(r.requests, 2, "one page per stream");
    assert_same(&view(&e.f, &c).await, &expected(&e.sim, e.tenant));
    let stored = common::rows::stored(&e.f, &c).await.users;
    let user = |id: Uuid| {
        stored
            .iter()
            .find(|u| u.id.as_str() == id.to_string())
            .unwrap()
    };
    assert_eq!(user(first_set).given_name.as_deref(), Some("Zoë"));
    assert_eq!(user(first_set).attributes["department"], "Qualité");
    assert_eq!(user(renamed).display_name.as_deref(), Some("Renamed"));
    assert_eq!(user(cleared).primary_email.as_str(), "moved@contoso.com");
}

/// A store whose copy of the certificate is stale (another process
/// rotated) until it is told to forget it.
struct StaleCopy {
    inner: Arc<LocalSecretStore>,
    held: std::sync::Mutex<Option<dirsync_shared::secrets::SecretValue>>,
}

#[async_trait::async_trait]
impl SecretStore for StaleCopy {
    async fn get(
        &self,
        name: &SecretRef,
        stage: Stage,
    ) -> Result<Option<dirsync_shared::secrets::SecretValue>, dirsync_shared::secrets::SecretError>
    {
        let held = self.held.lock().unwrap().clone();
        match held {
            Some(held) if stage == Stage::Current => Ok(Some(held)),
            _ => self.inner.get(name, stage).await,
        }
    }
    fn forget(&self, _: &SecretRef) {
        *self.held.lock().unwrap() = None;
    }
    async fn put(
        &self,
        name: &SecretRef,
        value: dirsync_shared::secrets::SecretValue,
    ) -> Result<(), dirsync_shared::secrets::SecretError> {
        self.inner.put(name, value).await
    }
    async fn delete(&self, name: &SecretRef) -> Result<(), dirsync_shared::secrets::SecretError> {
        self.inner.delete(name).await
    }
    async fn get_version(
        &self,
        name: &SecretRef,
        version: &str,
    ) -> Result<Option<dirsync_shared::secrets::SecretValue>, dirsync_shared::secrets::SecretError>
    {
        self.inner.get_version(name, version).await
    }
    async fn version_stages(
        &self,
        name: &SecretRef,
    ) -> Result<Vec<(String, Vec<Stage>)>, dirsync_shared::secrets::SecretError> {
        self.inner.version_stages(name).await
    }
    async fn put_pending(
        &self,
        name: &SecretRef,
        version: &str,
        value: dirsync_shared::secrets::SecretValue,
    ) -> Result<(), dirsync_shared::secrets::SecretError> {
        self.inner.put_pending(name, version, value).await
    }
    async fn promote(
        &self,
        name: &SecretRef,
        version: &str,
    ) -> Result<(), dirsync_shared::secrets::SecretError> {
        self.inner.promote(name, version).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_refused_as_stale_is_read_again_before_giving_up() {
    let e = entra(Backend::Embedded, GenSpec::sized(20, 2, 1)).await;
    let c = e.consent_connector("main", json!({}));
    // The store answers with a key Entra no longer knows; the stored
    // current one (the registered key) is there once it looks again. No
    // previous version exists, so only a second read can sign in.
    let stale = Arc::new(StaleCopy {
        inner: e.secrets.clone(),
        held: std::sync::Mutex::new(Some(certificate().to_secret())),
    });
    let deps = GraphDeps::new(
        stale.clone(),
        e.f.clock.clone(),
        RetryPolicy::fast(),
        e.deps(AssertionAlg::Ps256).app,
    );
    let source = GraphSource::for_connector(&c, &deps).unwrap();
    let report = source.test_connection().await;
    assert!(
        report.ok,
        "signed in with the certificate read again: {report:?}"
    );
    assert!(
        stale.held.lock().unwrap().is_none(),
        "the stale copy was dropped"
    );
    let r = e.sync(&c, &source).await;
    assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.message);
}

/// Two workers (each its own token provider and tenant limiters, as two
/// Lambda invocations have) read twelve tenants at once as the one app,
/// whose budget across tenants the simulator enforces at 20 units per 2 s.
/// Together they stay within it: no 429 for the app, no second's counter
/// over its bound, and every request sent took its unit. The same load
/// unpaced is refused, so the budget is what kept it under.
async fn two_workers_share_a_small_budget(backend: Backend) {
    let e = entra(backend, GenSpec::sized(120, 3, 1)).await;
    let mut tenants = vec![e.tenant];
    for seed in 2..13 {
        let t = e.sim.add_tenant(TenantSpec {
            display_name: format!("Tenant {seed}"),
            verified_domains: vec![format!("t{seed}.example")],
            ..Default::default()
        });
        e.sim.generate_directory(t, GenSpec::sized(120, 3, seed));
        e.sim.grant_admin_consent(t, e.client_id, &CONSENT_ROLES);
        tenants.push(t);
    }
    let window = std::time::Duration::from_secs(2);
    e.sim.set_app_budget(20, window);
    e.sim.set_faults(Faults {
        enforce_resource_units: true,
        ..Default::default()
    });
    let limits = BudgetLimits {
        units: 20,
        window,
        // Well under the simulator's 20: a unit counted in one second may
        // reach it in the next on a busy machine.
        share: 0.6,
        tenant_share: 0.5,
        bulk_share: 1.0,
    };
    assert_eq!((limits.per_second(), limits.tenant_per_second()), (4, 2));
    // The workers' clock is real time: the budget's seconds are Graph's.
    let store = StateStore::new(e.f.writes.clone(), Arc::new(SystemClock));
    let connectors: Vec<Connector> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| e.consent_connector_of(*t, &format!("t{i}"), json!({})))
        .collect();
    let app = e.client_id.to_string();
    let paced = |_| {
        let budget = SharedBudget::new(store.clone(), app.clone(), limits);
        Arc::new(
            e.deps(AssertionAlg::Ps256)
                .with_budget(Some(Arc::new(budget))),
        )
    };
    let workers: Vec<Arc<GraphDeps>> = (0..2).map(paced).collect();
    let first = Utc::now().timestamp();
    let runs = read_all(&store, &connectors, &workers).await;
    let last = Utc::now().timestamp();
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:?}"
    );

    let stats = e.sim.stats();
    assert_eq!(stats.app_throttled, 0, "{stats:?}");
    assert!(stats.graph_requests >= 24, "{stats:?}");
    // The app's counters are per cloud: the simulator's Graph host.
    let host = url::Url::parse(&e.sim.graph_url()).unwrap();
    let counted = format!("{app}@{}", host.host_str().unwrap());
    let mut taken = 0;
    for slot in first - 1..=last + 1 {
        let counter =
            e.f.writes
                .get(&keys::budget(&counted, slot, None))
                .await
                .unwrap();
        let n = counter.and_then(|i| i.attrs["n"].as_u64()).unwrap_or(0);
        assert!(n <= limits.per_second(), "second {slot} spent {n}");
        taken += n;
    }
    assert_eq!(
        taken, stats.graph_requests,
        "every request took its unit, once"
    );

    // The same first pages asked for unpaced, twice, all at once (without
    // the store's writes between them, which on a busy machine would
    // spread them out): the app's budget refuses some.
    e.sim.reset_stats();
    let unpaced = e.deps(AssertionAlg::Ps256);
    let sources: Vec<GraphSource> = connectors
        .iter()
        .map(|c| GraphSource::for_connector(c, &unpaced).unwrap())
        .collect();
    let pages: Vec<(&GraphSource, String)> = sources
        .iter()
        .flat_map(|s| ["users", "groups"].map(|stream| (s, s.first_url(stream).unwrap())))
        .collect();
    for _ in 0..2 {
        futures::future::join_all(pages.iter().map(|(source, url)| async move {
            let mut stats = dirsync_shared::source::RequestStats::default();
            source.client().get_page(url, &mut stats).await.is_ok()
        }))
        .await;
    }
    assert!(
        e.sim.stats().app_throttled > 0,
        "the same reads unpaced pass the app's budget"
    );
}

/// Syncs every connector at once, the first half on the first worker's
/// sources and the rest on the second's.
async fn read_all(
    store: &StateStore,
    connectors: &[Connector],
    workers: &[Arc<GraphDeps>],
) -> Vec<SyncRun> {
    let engine = SyncEngine::new(store.clone(), EngineSettings::default());
    let half = connectors.len().div_ceil(workers.len());
    let runs = connectors.iter().enumerate().map(|(i, c)| {
        let (engine, deps) = (&engine, &workers[i / half]);
        async move {
            let source = GraphSource::for_connector(c, deps).unwrap();
            let mut request = RunRequest {
                full: true,
                ..RunRequest::new(Trigger::Manual { requested_by: None })
            };
            // A run that found no budget for long pauses; its worker
            // continues it later, as the queue would.
            loop {
                match engine.run(c, &source, request).await.unwrap() {
                    RunOutcome::Finished(r) => return r,
                    RunOutcome::Continue { after, .. } => tokio::time::sleep(after).await,
                    other => panic!("expected a finished run, got {other:?}"),
                }
                request = RunRequest::new(Trigger::Continuation);
            }
        }
    });
    futures::future::join_all(runs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_a_small_budget_never_exceed_it_together() {
    two_workers_share_a_small_budget(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_sharing_a_small_budget_on_dynamodb_local() {
    two_workers_share_a_small_budget(Backend::Dynamo).await;
}

/// A Graph host that answers for the budget cannot spend another cloud's:
/// where connectors may name their own hosts, a forged app-wide 429 or a
/// huge `x-ms-resource-unit` from one host fills only that host's seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_answer_spends_only_its_own_cloud_s_budget() {
    use dirsync_shared::source::budget::Grant;
    let f = common::fixture(Backend::Embedded).await;
    let store = StateStore::new(f.writes.clone(), Arc::new(SystemClock));
    let shared = Arc::new(SharedBudget::new(store, "app", BudgetLimits::default()));
    let graph = shared.for_tenant("graph.microsoft.com", "contoso");
    let forged = shared.for_tenant("graph.attacker.example", "contoso");
    forged
        .refused_for(std::time::Duration::from_secs(120))
        .await;
    forged.spent(u64::MAX).await;
    assert!(
        matches!(forged.take(1, 0).await, Grant::Wait(_)),
        "the forging host's own budget is spent"
    );
    assert_eq!(
        graph.take(1, 0).await,
        Grant::Granted,
        "Microsoft's Graph still has its budget"
    );
}
