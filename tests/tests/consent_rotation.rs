//! The consent connector end to end: admin consent through the simulator's
//! consent endpoint and our callback (with Entra's replication delay after
//! a grant), the daily certificate rotation on the Secrets Manager
//! emulator, the migration of a legacy connector, the change of a
//! connector's tenant, and a set of hostile callback requests that must all
//! be refused (more in `consent_hostile.rs`).

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::consent::{
    administrator, advance, api_call, audit_trail, callback_handler, consent_and_sign_in,
    fixture_file, new_consent_connector, replicating_grant, sign_in, start, state_of,
};
use common::world::{World, world};
use dirsync_entra_sim::{CONSENT_ROLES, ConsentDecision, Faults, TenantSpec};
use dirsync_shared::app::FailureKind;
use dirsync_shared::app::consent::{Outcome, callback};
use dirsync_shared::app::rotation::{AppIdentity, RotationEvent, Rotator};
use dirsync_shared::app::worker::{JobOutcome, process};
use dirsync_shared::auth::{AppCertificate, AssertionAlg, KeyBits, TokenProvider};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::*;
use dirsync_shared::queue::Job;
use dirsync_shared::secrets::{SecretStore, Stage};
use dirsync_shared::source::retry::RetryPolicy;
use dirsync_shared::store::{Scope, all_pages};
use serde_json::json;
use uuid::Uuid;

fn rotator(w: &World) -> Rotator {
    Rotator {
        app: AppIdentity {
            client_id: w.client_id,
            object_id: w.object_id,
            home_tenant: w.home.to_string(),
            certificate: w.cert_secret.clone(),
            authority_url: w.sim.authority_url(),
            graph_url: w.sim.graph_url(),
            assertion: AssertionAlg::Ps256,
        },
        secrets: w.secrets.clone(),
        tokens: Arc::new(TokenProvider::new(w.secrets.clone(), Arc::new(SystemClock))),
        clock: Arc::new(SystemClock),
        validity: chrono::Duration::days(4),
        key_bits: KeyBits::Rsa2048,
        policy: RetryPolicy::fast(),
    }
}

const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

async fn rotation_step(r: &Rotator, w: &World, step: &str, token: &str) {
    let text = fixture_file(&format!("rotation-{step}.json"))
        .replace("TOKEN", token)
        .replace("arn:aws:secretsmanager:eu-west-2:123456789012:secret:dirsync-prod/app-certificate-AbCdEf", w.cert_secret.as_str());
    let event: RotationEvent = serde_json::from_str(&text).unwrap();
    cert_rotation::handle(r, event)
        .await
        .unwrap_or_else(|e| panic!("{step}: {e}"));
}

async fn current_cert(w: &World) -> AppCertificate {
    AppCertificate::from_secret(&w.secrets.current(&w.cert_secret).await.unwrap()).unwrap()
}

async fn sync(w: &World, account: &str, id: &str) -> SyncRun {
    let job = Job {
        account: AccountId::new(account).unwrap(),
        connector: ConnectorId::new(id).unwrap(),
        trigger: Trigger::Manual { requested_by: None },
        full: false,
        continues: None,
        due: None,
    };
    match process(&w.app, &job, None).await.unwrap() {
        JobOutcome::Finished(r) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_then_rotations_then_syncs_with_the_new_certificate() {
    let w = world(200).await;
    w.sim.revoke_consent(w.tenant, w.client_id);
    w.account("acme", Region::Europe).await;
    let url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let u = url::Url::parse(&url).unwrap();
    assert!(
        u.path().ends_with("/contoso.com/v2.0/adminconsent"),
        "{url}"
    );
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], w.client_id.to_string());
    assert_eq!(q["scope"], w.sim.graph_scope(), "the simulator's Graph");
    assert_eq!(q["redirect_uri"], common::world::REDIRECT);
    assert!(q["state"].len() >= 40, "an unguessable state");
    let scope = Scope::new(
        AccountId::new("acme").unwrap(),
        ConnectorId::new("main").unwrap(),
    );
    assert!(
        !w.f.store
            .get_connector(&scope.account, &scope.connector)
            .await
            .unwrap()
            .unwrap()
            .is_due()
    );

    let query = administrator(&w, &url, ConsentDecision::Approve { tenant: w.tenant }).await;
    // The grant is confirmed: the Lambda function sends the browser to the
    // sign-in in that tenant, with the page's headers.
    let (status, html, headers) = callback_handler(&w, &query).await;
    assert_eq!(status, 302, "{html}");
    assert_eq!(headers["cache-control"], "no-store");
    let location = headers["location"].to_str().unwrap().to_owned();
    let sign_in_url = url::Url::parse(&location).unwrap();
    assert_eq!(
        sign_in_url.path(),
        format!("/{}/oauth2/v2.0/authorize", w.tenant)
    );
    let q: std::collections::HashMap<_, _> = sign_in_url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], w.client_id.to_string());
    assert_eq!(
        (q["response_type"].as_str(), q["response_mode"].as_str()),
        ("code", "query")
    );
    assert_eq!(q["redirect_uri"], common::world::REDIRECT);
    assert_eq!(
        (q["scope"].as_str(), q["prompt"].as_str()),
        ("openid", "select_account")
    );
    assert_eq!(q["state"], state_of(&url));
    let page = dirsync_shared::app::consent::CallbackPage {
        status,
        html,
        location: Some(location),
        outcome: Outcome::SignIn,
    };
    let query = sign_in(&w, &page, None).await;
    let (status, html, headers) = callback_handler(&w, &query).await;
    assert_eq!(status, 200, "{html}");
    assert!(headers.get("location").is_none());
    assert!(
        html.contains("Consent recorded") && html.contains(&w.tenant.to_string()),
        "{html}"
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let c =
        w.f.store
            .get_connector(&scope.account, &scope.connector)
            .await
            .unwrap()
            .unwrap();
    assert!(c.is_due());
    let SourceConfig::EntraConsent {
        consent:
            Consent::Granted {
                tenant_id,
                started_by,
                ..
            },
        ..
    } = &c.source
    else {
        panic!()
    };
    assert_eq!(*tenant_id, w.tenant);
    assert_eq!(
        started_by.as_deref(),
        Some("arn:aws:iam::123456789012:user/operator")
    );
    assert_eq!(sync(&w, "acme", "main").await.status, RunStatus::Succeeded);

    // Two daily rotations: the app ends with exactly the two newest keys.
    let first = current_cert(&w).await;
    let r = rotator(&w);
    for _ in 0..2 {
        let token = Uuid::new_v4().to_string();
        for step in STEPS {
            rotation_step(&r, &w, step, &token).await;
        }
        let keys = w.sim.app_key_credentials(w.object_id);
        assert_eq!(keys.len(), 2, "current and previous only");
    }
    let now = current_cert(&w).await;
    assert_ne!(now.stored.thumbprint_sha1, first.stored.thumbprint_sha1);
    assert!(
        !w.sim
            .app_key_credentials(w.object_id)
            .iter()
            .any(|k| k.der == first.der()),
        "the bootstrap key is gone"
    );

    // The running deployment picks the new certificate up with no restart:
    // once its token expires, the next token is signed with the new key (the
    // first one is no longer on the app, so anything else would fail).
    w.sim.set_faults(Faults {
        token_lifetime_secs: Some(1),
        ..Default::default()
    });
    sync(&w, "acme", "main").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let run = sync(&w, "acme", "main").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_page_is_that_of_the_connector_s_cloud_for_its_graph() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    // Microsoft's national cloud table: Entra's host and Graph's resource.
    let clouds = [
        (
            "global",
            "login.microsoftonline.com",
            "https://graph.microsoft.com/.default",
        ),
        (
            "us-gov",
            "login.microsoftonline.us",
            "https://graph.microsoft.us/.default",
        ),
        (
            "us-gov-dod",
            "login.microsoftonline.us",
            "https://dod-graph.microsoft.us/.default",
        ),
        (
            "china",
            "login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn/.default",
        ),
    ];
    for (cloud, host, scope) in clouds {
        let (s, b) = api_call(
            &w,
            "POST",
            "/accounts/acme/connectors",
            json!({"connector": {"id": cloud, "kind": "entra", "tenant": "contoso.com",
                "acknowledge_disabled": true, "cloud": cloud}}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let url = url::Url::parse(&start(&w, "acme", cloud, "consent").await).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(
            (
                url.scheme(),
                url.host_str(),
                url.path(),
                q["scope"].as_str()
            ),
            ("https", Some(host), "/contoso.com/v2.0/adminconsent", scope),
            "{cloud}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_event_for_another_secret_or_step_is_a_configuration_failure() {
    let w = world(5).await;
    let r = rotator(&w);
    let event = |secret: &str, step: &str| -> RotationEvent {
        serde_json::from_value(json!({
            "SecretId": secret, "ClientRequestToken": Uuid::new_v4().to_string(), "Step": step,
        }))
        .unwrap()
    };
    let before = w.secrets.version_stages(&w.cert_secret).await.unwrap();
    for (secret, step, says) in [
        (
            "dirsync-prod/connectors/acme/main",
            "createSecret",
            "rotates",
        ),
        (
            w.cert_secret.as_str(),
            "dropSecret",
            "unknown rotation step",
        ),
    ] {
        let failure = cert_rotation::handle(&r, event(secret, step))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Configuration, "{failure}");
        assert!(failure.message.contains(says), "{failure}");
    }
    assert_eq!(
        w.secrets.version_stages(&w.cert_secret).await.unwrap(),
        before,
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_interrupted_after_each_step_completes_on_the_next_attempt() {
    let w = world(20).await;
    let r = rotator(&w);
    for stop_after in 1..=STEPS.len() {
        let before = current_cert(&w).await;
        let token = Uuid::new_v4().to_string();
        for step in &STEPS[..stop_after] {
            rotation_step(&r, &w, step, &token).await;
        }
        if stop_after < STEPS.len() {
            // Interrupted: the current certificate still works.
            assert_eq!(
                current_cert(&w).await.stored.thumbprint_sha1,
                before.stored.thumbprint_sha1
            );
            r.tokens
                .token_with_certificate(
                    (
                        &w.sim.authority_url(),
                        &w.home.to_string(),
                        &w.sim.graph_scope(),
                    ),
                    &w.client_id,
                    &before,
                    AssertionAlg::Ps256,
                )
                .await
                .unwrap();
        }
        // Secrets Manager tries again with the same token, from the start.
        for step in STEPS {
            rotation_step(&r, &w, step, &token).await;
        }
        let pending = AppCertificate::from_secret(
            &w.secrets
                .get_version(&w.cert_secret, &token)
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        let now = current_cert(&w).await;
        assert_eq!(
            now.stored.thumbprint_sha1, pending.stored.thumbprint_sha1,
            "stopped after {stop_after}"
        );
        let previous = AppCertificate::from_secret(
            &w.secrets
                .get(&w.cert_secret, Stage::Previous)
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            previous.stored.thumbprint_sha1,
            before.stored.thumbprint_sha1
        );
        let keys = w.sim.app_key_credentials(w.object_id);
        assert_eq!(keys.len(), 2, "stopped after {stop_after}: {keys:?}");
        r.tokens
            .token_with_certificate(
                (
                    &w.sim.authority_url(),
                    &w.home.to_string(),
                    &w.sim.graph_scope(),
                ),
                &w.client_id,
                &now,
                AssertionAlg::Ps256,
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_connector_is_migrated_with_its_users_untouched() {
    let w = world(150).await;
    w.account("acme", Region::Europe).await;
    let legacy_client = Uuid::new_v4();
    w.sim.add_legacy_app(
        w.tenant,
        legacy_client,
        "legacy-secret-value",
        Utc::now() + chrono::Duration::days(30),
        &["Directory.Read.All"],
    );
    let (s, b) = api_call(
        &w,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "old", "kind": "entra-legacy", "tenant": "contoso.com", "client_id": legacy_client.to_string(),
            "acknowledge_disabled": true, "authority_url": w.sim.authority_url(), "graph_url": w.sim.graph_url()},
            "secret": "legacy-secret-value"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let secret: SecretRef = b["source"]["client_secret"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let first = sync(&w, "acme", "old").await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.message);
    let scope = Scope::new(
        AccountId::new("acme").unwrap(),
        ConnectorId::new("old").unwrap(),
    );
    let users_before = all_pages(|p| w.f.store.list_users(&scope, p))
        .await
        .unwrap();
    assert!(!users_before.is_empty());

    // Until migrated, only migration and secret renewal are accepted.
    let (s, b) = api_call(
        &w,
        "PATCH",
        "/accounts/acme/connectors/old",
        json!({"version": 1, "description": "x"}),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = api_call(
        &w,
        "PUT",
        "/accounts/acme/connectors/old/secret",
        json!({"value": "legacy-secret-value", "version": 1}),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    let url = start(&w, "acme", "old", "migrate").await;
    assert!(url.contains("/contoso.com/v2.0/adminconsent"), "{url}");
    let (page, _) = consent_and_sign_in(&w, &url, w.tenant).await;
    assert_eq!(page.outcome, Outcome::Migrated, "{}", page.html);
    assert!(
        page.html.contains(&legacy_client.to_string()) && page.html.contains("may be deleted"),
        "{}",
        page.html
    );
    assert!(page.html.contains("single sign-on"));

    let c =
        w.f.store
            .get_connector(&scope.account, &scope.connector)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(c.kind(), ConnectorKind::EntraConsent);
    let SourceConfig::EntraConsent {
        consent: Consent::Granted { migrated_from, .. },
        ..
    } = &c.source
    else {
        panic!()
    };
    assert_eq!(*migrated_from, Some(legacy_client));
    assert!(
        w.secrets
            .get(&secret, Stage::Current)
            .await
            .unwrap()
            .is_none(),
        "the legacy client secret is deleted"
    );

    // The same directory, now read with consent: nothing re-created or removed.
    let run = sync(&w, "acme", "old").await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
    assert_eq!(
        (run.counts.created, run.counts.removed),
        (0, 0),
        "{:?}",
        run.counts
    );
    // Directory content: the same users, none re-created, updated or removed.
    assert_eq!(run.counts.updated, 0, "{:?}", run.counts);
    let users_after = all_pages(|p| w.f.store.list_users(&scope, p))
        .await
        .unwrap();
    assert_eq!(users_after, users_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_callbacks_are_refused() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    w.account("other", Region::Europe).await;
    let scope = Scope::new(
        AccountId::new("acme").unwrap(),
        ConnectorId::new("main").unwrap(),
    );
    let url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let state = state_of(&url);
    let t = w.tenant;
    let refused = |p: &dirsync_shared::app::consent::CallbackPage, what: &str| {
        assert_eq!(
            (p.status, p.outcome),
            (400, Outcome::Refused),
            "{what}: {}",
            p.html
        );
    };

    // Forged, missing, duplicated, oversized, malformed.
    refused(
        &callback(
            &w.app,
            &w.app.graph,
            &format!("admin_consent=True&tenant={t}&state=forged"),
        )
        .await,
        "forged state",
    );
    refused(&callback(&w.app, &w.app.graph, "").await, "empty");
    refused(
        &callback(
            &w.app,
            &w.app.graph,
            &format!("admin_consent=True&tenant={t}"),
        )
        .await,
        "no state",
    );
    refused(
        &callback(
            &w.app,
            &w.app.graph,
            &format!("state={state}&state={state}&admin_consent=True&tenant={t}"),
        )
        .await,
        "duplicated",
    );
    refused(
        &callback(
            &w.app,
            &w.app.graph,
            &format!("state={state}&pad={}", "x".repeat(5000)),
        )
        .await,
        "oversized",
    );
    // Each of those left the state unused (the duplicated one never read it).
    let p = callback(
        &w.app,
        &w.app.graph,
        &format!("admin_consent=True&tenant=contoso.com&state={state}"),
    )
    .await;
    refused(&p, "non-GUID tenant");
    assert!(p.html.contains("tenant"));

    // A script in the error description is shown as text.
    let url = start(&w, "acme", "main", "consent").await;
    let p = callback(
        &w.app,
        &w.app.graph,
        &format!("error=access_denied&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&admin_consent=True&state={}", state_of(&url)),
    )
    .await;
    assert_eq!(p.outcome, Outcome::Declined);
    assert!(
        p.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !p.html.contains("<script>"),
        "{}",
        p.html
    );
    assert!(
        !w.f.store
            .get_connector(&scope.account, &scope.connector)
            .await
            .unwrap()
            .unwrap()
            .is_due(),
        "still pending"
    );

    // A cancelled consent through the simulator: declined, connector pending.
    let url = start(&w, "acme", "main", "consent").await;
    let query = administrator(&w, &url, ConsentDecision::Cancel).await;
    let p = callback(&w.app, &w.app.graph, &query).await;
    assert_eq!(p.outcome, Outcome::Declined, "{}", p.html);

    // A tenant other than the connector's (the app is consented there too).
    let fabrikam = w.sim.add_tenant(TenantSpec {
        display_name: "Fabrikam".into(),
        verified_domains: vec!["fabrikam.com".into()],
        ..Default::default()
    });
    w.sim
        .grant_admin_consent(fabrikam, w.client_id, &CONSENT_ROLES);
    let url = start(&w, "acme", "main", "consent").await;
    let p = callback(
        &w.app,
        &w.app.graph,
        &format!(
            "admin_consent=True&tenant={fabrikam}&state={}",
            state_of(&url)
        ),
    )
    .await;
    refused(&p, "tenant mismatch");
    assert!(p.html.contains("another tenant"));

    // Expired state.
    let url = start(&w, "acme", "main", "consent").await;
    w.f.clock.advance(chrono::Duration::minutes(16));
    refused(
        &callback(
            &w.app,
            &w.app.graph,
            &format!("admin_consent=True&tenant={t}&state={}", state_of(&url)),
        )
        .await,
        "expired",
    );
    // Back to real time: the simulator checks sign-in assertions against it.
    w.f.clock.set(Utc::now());

    // The genuine grant, then a replay of it.
    let url = start(&w, "acme", "main", "consent").await;
    let (page, query) = consent_and_sign_in(&w, &url, t).await;
    assert_eq!(page.outcome, Outcome::Granted, "{}", page.html);
    refused(&callback(&w.app, &w.app.graph, &query).await, "replayed");

    // Another account cannot connect the same tenant.
    let url = new_consent_connector(&w, "other", "main", &t.to_string()).await;
    let query = administrator(&w, &url, ConsentDecision::Approve { tenant: t }).await;
    let p = callback(&w.app, &w.app.graph, &query).await;
    refused(&p, "tenant of another account");
    assert!(p.html.contains("another account"));
}

fn acme_main() -> Scope {
    Scope::new(
        AccountId::new("acme").unwrap(),
        ConnectorId::new("main").unwrap(),
    )
}

async fn stored_state(
    w: &World,
    state: &str,
) -> Option<dirsync_shared::app::consent::ConsentState> {
    w.f.store
        .get_ephemeral("consent", state)
        .await
        .unwrap()
        .map(|v| serde_json::from_value(v).unwrap())
}

async fn is_due(w: &World, scope: &Scope) -> bool {
    w.f.store
        .get_connector(&scope.account, &scope.connector)
        .await
        .unwrap()
        .unwrap()
        .is_due()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_replicates_for_60_seconds_ends_with_an_active_connector() {
    let w = world(10).await;
    let (state, query) = replicating_grant(&w, 60).await;

    // Entra does not know the grant yet: the page says it is being
    // confirmed, reloads itself, and keeps its headers; nothing is spent or
    // claimed.
    let (status, html, headers) = callback_handler(&w, &query).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("being confirmed") && html.contains("becomes active"),
        "{html}"
    );
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="10">"#),
        "{html}"
    );
    assert!(!html.contains("never granted"), "{html}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let first = stored_state(&w, &state).await.expect("the state is kept");
    let granted_at = first.granted_at.expect("the grant's arrival is remembered");
    assert!(!is_due(&w, &acme_main()).await);
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);

    // The page reloads: 30 seconds on, still replicating, the same grant.
    advance(&w, 30);
    let page = callback(&w.app, &w.app.graph, &query).await;
    assert_eq!(page.outcome, Outcome::Pending, "{}", page.html);
    let again = stored_state(&w, &state).await.expect("still kept");
    assert_eq!(again.granted_at, Some(granted_at));

    // 61 seconds after the grant Entra knows it: the administrator signs
    // in, and the grant is recorded, the connector active, the state spent.
    advance(&w, 31);
    let page = callback(&w.app, &w.app.graph, &query).await;
    let query = sign_in(&w, &page, None).await;
    assert!(stored_state(&w, &state).await.unwrap().proof.is_some());
    // Signing in takes a moment (and keeps the audit records in order).
    advance(&w, 1);
    let page = callback(&w.app, &w.app.graph, &query).await;
    assert_eq!(page.outcome, Outcome::Granted, "{}", page.html);
    assert!(is_due(&w, &acme_main()).await);
    assert!(stored_state(&w, &state).await.is_none(), "spent");
    assert_eq!(
        w.f.store.tenant_holder(&w.tenant).await.unwrap(),
        Some(AccountId::new("acme").unwrap())
    );
    let outcomes: Vec<_> = audit_trail(&w, "acme")
        .await
        .into_iter()
        .filter(|r| r.action == AuditAction::Consent)
        .map(|r| r.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            AuditOutcome::Succeeded,
            AuditOutcome::Pending,
            AuditOutcome::Pending,
            AuditOutcome::Pending
        ]
    );
    assert_eq!(sync(&w, "acme", "main").await.status, RunStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_still_unknown_after_5_minutes_names_the_cause_and_spends_the_state() {
    let w = world(10).await;
    let (state, query) = replicating_grant(&w, 600).await;
    let page = callback(&w.app, &w.app.graph, &query).await;
    assert_eq!(page.outcome, Outcome::Pending, "{}", page.html);

    advance(&w, 5 * 60 + 1);
    let page = callback(&w.app, &w.app.graph, &query).await;
    assert_eq!(
        (page.status, page.outcome),
        (502, Outcome::Failed),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("could not be confirmed")
            && page.html.contains("5 minutes")
            && page.html.contains("AADSTS700016"),
        "{}",
        page.html
    );
    assert!(stored_state(&w, &state).await.is_none(), "spent");
    assert!(!is_due(&w, &acme_main()).await);
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);
    let outcomes: Vec<_> = audit_trail(&w, "acme")
        .await
        .into_iter()
        .filter(|r| r.action == AuditAction::Consent)
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, [AuditOutcome::Failed, AuditOutcome::Pending]);
    // The page is spent: a reload says so.
    let page = callback(&w.app, &w.app.graph, &query).await;
    assert_eq!(page.outcome, Outcome::Refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_tenant_forgets_cursors_releases_the_claim_and_reads_in_full() {
    let w = world(30).await;
    w.account("acme", Region::Europe).await;
    let scope = acme_main();
    let url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let (page, _) = consent_and_sign_in(&w, &url, w.tenant).await;
    assert_eq!(page.outcome, Outcome::Granted, "{}", page.html);
    assert_eq!(sync(&w, "acme", "main").await.status, RunStatus::Succeeded);
    assert!(
        w.f.store
            .get_cursor(&scope, "users")
            .await
            .unwrap()
            .is_some()
    );
    let path = "/accounts/acme/connectors/main/tenant";

    // Not while a sync holds the connector; not to something that is no tenant.
    let lease =
        w.f.store
            .acquire_lease(&scope, "a-running-sync", chrono::Duration::minutes(10))
            .await
            .unwrap();
    let (s, b) = api_call(&w, "POST", path, json!({"tenant": "fabrikam.com"})).await;
    assert_eq!(s, 409, "{b}");
    w.f.store.release_lease(&lease).await.unwrap();
    let (s, b) = api_call(&w, "POST", path, json!({"tenant": "fabrikam"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("GUID"), "{b}");
    assert!(
        w.f.store
            .get_cursor(&scope, "users")
            .await
            .unwrap()
            .is_some()
    );

    let (s, b) = api_call(&w, "POST", path, json!({"tenant": "Fabrikam.com"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["released_tenant"], w.tenant.to_string(), "{b}");
    assert_eq!(b["connector"]["source"]["tenant"], "fabrikam.com", "{b}");
    assert_eq!(
        b["connector"]["source"]["consent"]["state"], "pending",
        "{b}"
    );
    assert!(!is_due(&w, &scope).await);
    assert!(
        w.f.store
            .get_cursor(&scope, "users")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        w.f.store
            .get_cursor(&scope, "groups")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);

    // Consent in the new tenant; the first read there is a full one, and the
    // old tenant's users are not removed without a review.
    let fabrikam = w.sim.add_tenant(TenantSpec {
        display_name: "Fabrikam".into(),
        verified_domains: vec!["fabrikam.com".into()],
        ..Default::default()
    });
    w.sim
        .generate_directory(fabrikam, dirsync_entra_sim::GenSpec::sized(5, 2, 3));
    let url = start(&w, "acme", "main", "consent").await;
    assert!(url.contains("/fabrikam.com/v2.0/adminconsent"), "{url}");
    let (page, _) = consent_and_sign_in(&w, &url, fabrikam).await;
    assert_eq!(page.outcome, Outcome::Granted, "{}", page.html);
    assert_eq!(
        w.f.store.tenant_holder(&fabrikam).await.unwrap(),
        Some(AccountId::new("acme").unwrap())
    );
    let run = sync(&w, "acme", "main").await;
    assert_eq!(run.mode, SyncMode::Full, "{run:?}");
    assert_eq!(run.status, RunStatus::Staged, "{:?}", run.message);
}
