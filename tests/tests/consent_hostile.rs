//! Consent is bound to the tenant the connector named, and a tenant no
//! account holds is claimed only after an administrator of it signed in:
//! callbacks that try to connect another tenant, take a consented tenant
//! another account could claim, move a granted connector, or replay a state
//! or a sign-in are refused with a message that names the true cause, and
//! leave the store as it was but for the audit trail (and the state they
//! spent).

mod common;

use common::consent::{
    administrator, advance, api_call, assert_unchanged, audit_trail, code_of, consent_and_sign_in,
    new_consent_connector, sign_in, start, state_of, stored,
};
use common::world::{World, world};
use dirsync_entra_sim::{CONSENT_ROLES, ConsentDecision, TenantSpec};
use dirsync_shared::app::consent::{CallbackPage, Outcome, callback};
use dirsync_shared::app::worker::{JobOutcome, process};
use dirsync_shared::domain::*;
use dirsync_shared::queue::Job;
use dirsync_shared::store::Scope;
use serde_json::json;
use uuid::Uuid;

/// A second company's tenant, with the platform app consented there when
/// `consented`.
fn fabrikam(w: &World, consented: bool) -> Uuid {
    let id = w.sim.add_tenant(TenantSpec {
        display_name: "Fabrikam".into(),
        verified_domains: vec!["fabrikam.com".into()],
        ..Default::default()
    });
    if consented {
        w.sim.grant_admin_consent(id, w.client_id, &CONSENT_ROLES);
    }
    id
}

/// A callback claiming that `tenant` granted the consent `url` started.
async fn forged(w: &World, url: &str, tenant: Uuid) -> CallbackPage {
    let query = format!("admin_consent=True&tenant={tenant}&state={}", state_of(url));
    callback(&w.app, &w.app.graph, &query).await
}

fn assert_refused(p: &CallbackPage, because: &str) {
    assert_eq!((p.status, p.outcome), (400, Outcome::Refused), "{}", p.html);
    assert!(p.html.contains(because), "{because:?} not in {}", p.html);
    assert!(!p.html.contains("never granted"), "{}", p.html);
}

/// The connector's one record of `action` (the test's clock stands still,
/// so records of one account are told apart by connector and action).
async fn audited(w: &World, account: &str, connector: &str, action: AuditAction) -> AuditRecord {
    let mut records: Vec<_> = audit_trail(w, account)
        .await
        .into_iter()
        .filter(|r| {
            r.action == action && r.connector.as_ref().map(|c| c.as_str()) == Some(connector)
        })
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    records.remove(0)
}

async fn granted_tenant(w: &World, account: &str, id: &str) -> Option<Uuid> {
    let c =
        w.f.store
            .get_connector(
                &AccountId::new(account).unwrap(),
                &ConnectorId::new(id).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
    match c.source {
        SourceConfig::EntraConsent {
            consent: Consent::Granted { tenant_id, .. },
            ..
        } => Some(tenant_id),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_for_a_named_tenant_from_another_tenant_is_refused() {
    let w = world(10).await;
    w.account("other", Region::Europe).await;
    let own = fabrikam(&w, true);
    // B names its own tenant, by domain and by id; the callback carries
    // Contoso's, consented and held by no account.
    for (id, named) in [
        ("by-domain", "fabrikam.com".to_owned()),
        ("by-id", own.to_string()),
    ] {
        let url = new_consent_connector(&w, "other", id, &named).await;
        assert!(
            url.contains(&format!("/{named}/v2.0/adminconsent")),
            "{url}"
        );
        let before = stored(&w, &state_of(&url)).await;
        let p = forged(&w, &url, w.tenant).await;
        assert_refused(&p, "another tenant");
        assert!(
            p.html.contains(&w.tenant.to_string()) && p.html.contains(&named),
            "{}",
            p.html
        );
        assert_unchanged(&w, &before, &state_of(&url)).await;
        assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);
        let record = audited(&w, "other", id, AuditAction::Consent).await;
        assert_eq!(record.outcome, AuditOutcome::Refused);
        assert!(record.detail.contains("another tenant"), "{record:?}");
        assert_eq!(record.caller, common::world::OPERATOR);
    }
}

/// A consent's records of `action`, newest first.
async fn audited_all(
    w: &World,
    account: &str,
    connector: &str,
    action: AuditAction,
) -> Vec<AuditRecord> {
    audit_trail(w, account)
        .await
        .into_iter()
        .filter(|r| {
            r.action == action && r.connector.as_ref().map(|c| c.as_str()) == Some(connector)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_cannot_take_a_consented_unclaimed_tenant() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    w.account("other", Region::Europe).await;
    // B's own tenant has not consented: signing in there fails, which is
    // not taken for a grant still replicating.
    let own = fabrikam(&w, false);
    let url = new_consent_connector(&w, "other", "main", "fabrikam.com").await;
    let before = stored(&w, &state_of(&url)).await;
    let p = forged(&w, &url, w.tenant).await;
    assert_refused(&p, "another tenant");
    assert_unchanged(&w, &before, &state_of(&url)).await;
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);

    // B names Contoso's tenant itself (consented earlier, held by no
    // account): every check of the grant passes, so B is led to sign in
    // there, and B's administrator — a user of B's own tenant — is refused.
    let url = new_consent_connector(&w, "other", "taker", "contoso.com").await;
    let state = state_of(&url);
    let before = stored(&w, &state).await;
    let page = forged(&w, &url, w.tenant).await;
    let location = page.location.clone().unwrap_or_default();
    assert!(
        location.contains(&format!("/{}/oauth2/v2.0/authorize?", w.tenant))
            && location.contains("prompt=select_account")
            && location.contains(&format!("state={state}")),
        "{location}"
    );
    let returned = sign_in(&w, &page, Some(own)).await;
    // Signing in takes a moment (and keeps the audit records in order).
    advance(&w, 1);
    let p = callback(&w.app, &w.app.graph, &returned).await;
    assert_refused(&p, "belongs to another tenant");
    assert!(p.html.contains(&own.to_string()), "{}", p.html);
    assert_unchanged(&w, &before, &state).await;
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);
    assert_eq!(granted_tenant(&w, "other", "taker").await, None);
    let records = audited_all(&w, "other", "taker", AuditAction::Consent).await;
    let outcomes: Vec<_> = records.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [AuditOutcome::Refused, AuditOutcome::Pending]);
    assert!(
        records[0].detail.contains("belongs to another tenant"),
        "{records:?}"
    );
    // The state is spent: the same sign-in again is turned away.
    assert_refused(
        &callback(&w.app, &w.app.graph, &returned).await,
        "already used",
    );

    // Nor can B have any user of Contoso (not an administrator) sign in
    // for it: once the app is consented, every member could.
    let url = new_consent_connector(&w, "other", "member", "contoso.com").await;
    let state = state_of(&url);
    let before = stored(&w, &state).await;
    let page = forged(&w, &url, w.tenant).await;
    w.sim
        .set_next_sign_in_roles(&[dirsync_entra_sim::USER_ROLE]);
    let returned = sign_in(&w, &page, Some(w.tenant)).await;
    advance(&w, 1);
    let p = callback(&w.app, &w.app.graph, &returned).await;
    assert_refused(
        &p,
        "not a Global Administrator or Privileged Role Administrator",
    );
    assert_unchanged(&w, &before, &state).await;
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);
    assert_eq!(granted_tenant(&w, "other", "member").await, None);

    // Contoso's own connector is not locked out: its consent is recorded.
    let url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let (p, _) = consent_and_sign_in(&w, &url, w.tenant).await;
    assert_eq!(p.outcome, Outcome::Granted, "{}", p.html);
    assert_eq!(
        w.f.store.tenant_holder(&w.tenant).await.unwrap(),
        Some(AccountId::new("acme").unwrap())
    );
    assert_eq!(granted_tenant(&w, "other", "main").await, None);
    assert_eq!(granted_tenant(&w, "other", "taker").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_code_replayed_or_unasked_for_is_refused() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    let url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let (p, redeemed) = consent_and_sign_in(&w, &url, w.tenant).await;
    assert_eq!(p.outcome, Outcome::Granted, "{}", p.html);
    let code = code_of(&redeemed);
    // Give the tenant up again, so that a new consent needs the proof.
    let (s, b) = api_call(
        &w,
        "POST",
        "/accounts/acme/connectors/main/tenant",
        json!({"tenant": "fabrikam.com"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api_call(
        &w,
        "POST",
        "/accounts/acme/connectors/main/tenant",
        json!({"tenant": "contoso.com"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // A code already redeemed, with a state that awaits a sign-in: Entra
    // refuses it, and nothing is claimed.
    let url = start(&w, "acme", "main", "consent").await;
    let state = state_of(&url);
    let page = forged(&w, &url, w.tenant).await;
    assert_eq!(page.outcome, Outcome::SignIn, "{}", page.html);
    let before = stored(&w, &state).await;
    let replay = format!("code={code}&state={state}");
    let p = callback(&w.app, &w.app.graph, &replay).await;
    assert_refused(&p, "already used or has expired");
    assert!(!p.html.contains(&code), "the code is not echoed");
    assert_unchanged(&w, &before, &state).await;
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);
    // The replay does not spend a state it cannot decide: the genuine
    // sign-in still completes.
    let returned = sign_in(&w, &page, None).await;
    let p = callback(&w.app, &w.app.graph, &returned).await;
    assert_eq!(p.outcome, Outcome::Granted, "{}", p.html);

    // A code for a state that awaits no sign-in: refused, and spent.
    let (s, b) = api_call(
        &w,
        "POST",
        "/accounts/acme/connectors/main/tenant",
        json!({"tenant": "fabrikam.com"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let url = start(&w, "acme", "main", "consent").await;
    let state = state_of(&url);
    let before = stored(&w, &state).await;
    let p = callback(&w.app, &w.app.graph, &format!("code=abc&state={state}")).await;
    assert_refused(&p, "awaits one");
    assert_unchanged(&w, &before, &state).await;
    assert!(
        w.f.store
            .get_ephemeral("consent", &state)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_consented_in_another_tenant_is_refused() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    let other = fabrikam(&w, true);
    let legacy_client = Uuid::new_v4();
    w.sim.add_legacy_app(
        w.tenant,
        legacy_client,
        "legacy-secret-value",
        chrono::Utc::now() + chrono::Duration::days(30),
        &["Directory.Read.All"],
    );
    let (s, b) = api_call(
        &w,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "old", "kind": "entra-legacy", "tenant": "contoso.com",
            "client_id": legacy_client.to_string(), "authority_url": w.sim.authority_url(),
            "graph_url": w.sim.graph_url()}, "secret": "legacy-secret-value"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let url = start(&w, "acme", "old", "migrate").await;
    let before = stored(&w, &state_of(&url)).await;
    let p = forged(&w, &url, other).await;
    assert_refused(&p, "legacy connector");
    assert!(p.html.contains("contoso.com"), "{}", p.html);
    assert_unchanged(&w, &before, &state_of(&url)).await;
    assert_eq!(w.f.store.tenant_holder(&other).await.unwrap(), None);
    let record = audited(&w, "acme", "old", AuditAction::Migration).await;
    assert_eq!(record.outcome, AuditOutcome::Refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_consent_from_another_tenant_does_not_move_a_granted_connector() {
    let w = world(20).await;
    w.account("acme", Region::Europe).await;
    let other = fabrikam(&w, true);
    let url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let (p, _) = consent_and_sign_in(&w, &url, w.tenant).await;
    assert_eq!(p.outcome, Outcome::Granted, "{}", p.html);
    let job = Job {
        account: AccountId::new("acme").unwrap(),
        connector: ConnectorId::new("main").unwrap(),
        trigger: Trigger::Manual { requested_by: None },
        full: false,
        continues: None,
        due: None,
    };
    assert!(matches!(
        process(&w.app, &job, None).await.unwrap(),
        JobOutcome::Finished(_)
    ));
    let scope = Scope::new(job.account.clone(), job.connector.clone());
    assert!(
        w.f.store
            .get_cursor(&scope, "users")
            .await
            .unwrap()
            .is_some()
    );

    // Another tenant's grant (the app is consented there too): refused, the
    // connector keeps its tenant, cursors and claim.
    let url = start(&w, "acme", "main", "consent").await;
    let before = stored(&w, &state_of(&url)).await;
    let p = forged(&w, &url, other).await;
    assert_refused(&p, "does not move");
    assert_unchanged(&w, &before, &state_of(&url)).await;
    assert_eq!(w.f.store.tenant_holder(&other).await.unwrap(), None);

    // A re-consent from its own tenant is fine, with no sign-in: the
    // account proved it belongs there when it claimed the tenant.
    let url = start(&w, "acme", "main", "consent").await;
    let query = administrator(&w, &url, ConsentDecision::Approve { tenant: w.tenant }).await;
    let p = callback(&w.app, &w.app.graph, &query).await;
    assert_eq!(
        (p.outcome, p.location),
        (Outcome::Granted, None),
        "{}",
        p.html
    );
    assert_eq!(granted_tenant(&w, "acme", "main").await, Some(w.tenant));
    assert!(
        w.f.store
            .get_cursor(&scope, "users")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_is_committed_once_and_never_replayed() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    let url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let query = administrator(&w, &url, ConsentDecision::Approve { tenant: w.tenant }).await;
    let page = callback(&w.app, &w.app.graph, &query).await;
    let query = sign_in(&w, &page, None).await;
    // Two arrivals of the sign-in at once (a double click): one commits.
    let (a, b) = tokio::join!(
        callback(&w.app, &w.app.graph, &query),
        callback(&w.app, &w.app.graph, &query)
    );
    let mut outcomes = [a.outcome, b.outcome];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [Outcome::Granted, Outcome::Refused],
        "{}\n{}",
        a.html,
        b.html
    );

    let before = stored(&w, &state_of(&url)).await;
    let p = callback(&w.app, &w.app.graph, &query).await;
    assert_refused(&p, "already used");
    assert_unchanged(&w, &before, &state_of(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_connector_without_a_tenant_is_refused() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    let before = stored(&w, "none").await;
    for connector in [
        json!({"id": "main", "kind": "entra", "authority_url": w.sim.authority_url(), "graph_url": w.sim.graph_url()}),
        json!({"id": "main", "kind": "entra", "tenant": "contoso", "authority_url": w.sim.authority_url(),
            "graph_url": w.sim.graph_url()}),
    ] {
        let (s, b) = api_call(
            &w,
            "POST",
            "/accounts/acme/connectors",
            json!({"connector": connector}),
        )
        .await;
        assert_eq!(s, 400, "{b}");
        let error = b["error"].as_str().unwrap();
        assert!(
            error.contains("tenant") && error.contains("domain") && error.contains("GUID"),
            "{error}"
        );
    }
    assert_unchanged(&w, &before, "none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_from_another_consents_sign_in_proves_nothing() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    w.account("other", Region::Europe).await;
    // B waits for a sign-in in Contoso (consented before, held by none).
    let b_url = new_consent_connector(&w, "other", "taker", "contoso.com").await;
    let b_state = state_of(&b_url);
    let b_page = forged(&w, &b_url, w.tenant).await;
    assert_eq!(b_page.outcome, Outcome::SignIn, "{}", b_page.html);
    // Contoso's administrator signs in for Contoso's own consent, and B
    // gets hold of that code (a log, a shared machine) before it is used.
    let a_url = new_consent_connector(&w, "acme", "main", "contoso.com").await;
    let query = administrator(&w, &a_url, ConsentDecision::Approve { tenant: w.tenant }).await;
    let a_page = callback(&w.app, &w.app.graph, &query).await;
    let a_return = sign_in(&w, &a_page, None).await;
    let code = code_of(&a_return);
    let before = stored(&w, &b_state).await;
    advance(&w, 1);
    let p = callback(
        &w.app,
        &w.app.graph,
        &format!("code={code}&state={b_state}"),
    )
    .await;
    assert_refused(&p, "another sign-in");
    assert_unchanged(&w, &before, &b_state).await;
    assert_eq!(w.f.store.tenant_holder(&w.tenant).await.unwrap(), None);
    assert_eq!(granted_tenant(&w, "other", "taker").await, None);
}
