//! `dirsync demo`: the whole product on this machine, with no AWS,
//! Microsoft or Google account. The Entra simulator plays the customer's
//! tenant; the embedded store and local secrets and queue play AWS; the
//! same code the Lambda functions run does the work.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use dirsync_entra_sim::{
    ConsentDecision, EntraSim, GenSpec, MultiTenantApp, SimUser, TenantSpec, UserType,
};
use dirsync_shared::app::rotation::{AppIdentity, RotationEvent, Rotator, bootstrap};
use dirsync_shared::app::window::{WindowEvent, WindowSpans, fan_out};
use dirsync_shared::app::worker::{JobOutcome, process};
use dirsync_shared::app::{App, AppSettings, Caller, api, consent};
use dirsync_shared::auth::{AssertionAlg, KeyBits};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::{AccountId, ConnectorId, Region, RunStatus, SyncRun};
use dirsync_shared::queue::LocalQueue;
use dirsync_shared::secrets::LocalSecretStore;
use dirsync_shared::source::graph::EntraApp;
use dirsync_shared::source::retry::RetryPolicy;
use dirsync_shared::store::{EmbeddedTable, Scope, StateStore};
use serde_json::{Value, json};
use uuid::Uuid;

const REDIRECT: &str = "http://localhost:8080/consent/callback";
const CERT_SECRET: &str = "dirsync-demo/app-certificate";

fn step(n: u32, what: &str) {
    println!("\n[{n}] {what}");
}

fn summary(run: &SyncRun) -> String {
    format!(
        "{:?} {:?} run: {}; {} Graph requests",
        run.status, run.mode, run.counts, run.requests
    )
}

/// The query of the callback address the simulator redirects `url` to.
async fn redirected_query(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let redirect = http.get(url).send().await.map_err(|e| e.to_string())?;
    let location = redirect
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(url::Url::parse(&location)
        .map_err(|e| e.to_string())?
        .query()
        .unwrap_or_default()
        .to_owned())
}

async fn call(app: &App, method: &str, path: &str, body: Value) -> Result<Value, String> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .body(serde_json::to_vec(&body).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let resp = api::handle(app, req, Caller::operator("demo-operator")).await;
    let value: Value = serde_json::from_str(resp.body()).map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(value)
    } else {
        Err(format!("{method} {path}: {}", value["error"]))
    }
}

/// Runs every queued job, including continuations, to the end.
async fn drain(app: &App, queue: &LocalQueue) -> Result<Vec<SyncRun>, String> {
    let mut runs = Vec::new();
    loop {
        let jobs = queue.take_all();
        if jobs.is_empty() {
            return Ok(runs);
        }
        for (job, _delay) in jobs {
            if let JobOutcome::Finished(run) =
                process(app, &job, None).await.map_err(|e| e.to_string())?
            {
                runs.push(run);
            }
        }
    }
}

pub async fn run(users: u32, dir: &std::path::Path) -> Result<(), String> {
    let clock_start = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let db = dir.join("dirsync-demo.db");
    let _ = std::fs::remove_file(&db);

    step(
        1,
        &format!("Starting the Entra ID simulator with a tenant of {users} users"),
    );
    let sim = EntraSim::start().await.map_err(|e| e.to_string())?;
    let tenant = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
        ..Default::default()
    });
    let mut spec = GenSpec::sized(users, (users / 40).max(5), 42);
    spec.large_group_members = Some(users.min(2000));
    sim.generate_directory(tenant, spec);
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    println!("    tenant {tenant} at {}", sim.graph_url());

    step(
        2,
        "Bootstrapping the platform app's first certificate and registering the app",
    );
    let secrets = Arc::new(LocalSecretStore::with_dir(dir.join("secrets")));
    let cert_ref = CERT_SECRET.parse().map_err(|e| format!("{e}"))?;
    let first = bootstrap(
        secrets.as_ref(),
        &cert_ref,
        Utc::now(),
        chrono::Duration::days(30),
    )
    .await
    .map_err(|e| e.to_string())?;
    let (client_id, object_id) = (Uuid::new_v4(), Uuid::new_v4());
    sim.register_multitenant_app(MultiTenantApp {
        client_id,
        object_id,
        home_tenant: home,
        redirect_uris: vec![REDIRECT.into()],
        certificates: vec![first.der().to_vec()],
    });
    sim.grant_admin_consent(home, client_id, &["Application.ReadWrite.OwnedBy"]);
    println!(
        "    certificate {} stored in {}",
        first.stored.thumbprint_sha1.to_uppercase(),
        dir.join("secrets").display()
    );

    let store = StateStore::new(
        Arc::new(EmbeddedTable::open(&db).map_err(|e| e.to_string())?),
        Arc::new(SystemClock),
    );
    let queue = Arc::new(LocalQueue::default());
    let app = App::builder(store.clone(), queue.clone(), secrets.clone())
        .entra_app(Some(EntraApp {
            client_id,
            certificate: cert_ref.clone(),
            assertion: AssertionAlg::Ps256,
        }))
        .retry(RetryPolicy::fast())
        .settings(AppSettings {
            window_spans: WindowSpans::NONE,
            secret_prefix: "dirsync-demo".into(),
            consent_redirect_uri: Some(REDIRECT.into()),
            allow_custom_cloud: true,
            ..AppSettings::default()
        })
        .build();

    step(
        3,
        "Creating an account in Europe and a consent connector (admin API)",
    );
    call(
        &app,
        "POST",
        "/accounts",
        json!({"id": "acme", "name": "Acme Corp", "region": "eu"}),
    )
    .await?;
    call(
        &app,
        "POST",
        "/accounts/acme/connectors",
        json!({"connector": {"id": "entra", "kind": "entra", "tenant": "contoso.com", "acknowledge_disabled": true,
            "authority_url": sim.authority_url(), "graph_url": sim.graph_url()}}),
    )
    .await?;
    println!("    connector acme/entra is waiting for admin consent");

    step(
        4,
        "Admin consent: the administrator opens the consent URL and approves",
    );
    let started = call(
        &app,
        "POST",
        "/accounts/acme/connectors/entra/consent",
        json!({}),
    )
    .await?;
    let url = started["consent_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("    consent URL: {url}");
    sim.set_next_consent_decision(ConsentDecision::Approve { tenant });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let query = redirected_query(&http, &url).await?;
    let page = consent::callback(&app, &app.graph, &query).await;
    println!(
        "    callback: HTTP {} ({:?}); the grant was confirmed by signing in to the tenant",
        page.status, page.outcome
    );
    // Before the tenant is claimed, an administrator of it signs in: the
    // ID token says which tenant they belong to.
    let sign_in = page
        .location
        .ok_or_else(|| format!("consent failed: {}", page.html))?;
    let query = redirected_query(&http, &sign_in).await?;
    let page = consent::callback(&app, &app.graph, &query).await;
    println!(
        "    sign-in: HTTP {} ({:?}); an administrator of the tenant signed in",
        page.status, page.outcome
    );
    if page.status != 200 {
        return Err(format!("consent failed: {}", page.html));
    }

    step(
        5,
        "Rotating the certificate (Secrets Manager's four steps against the app)",
    );
    let rotator = Rotator {
        app: AppIdentity {
            client_id,
            object_id,
            home_tenant: home.to_string(),
            certificate: cert_ref.clone(),
            authority_url: sim.authority_url(),
            graph_url: sim.graph_url(),
            assertion: AssertionAlg::Ps256,
        },
        secrets: secrets.clone(),
        tokens: app.graph.tokens.clone(),
        clock: store.clock(),
        validity: chrono::Duration::days(4),
        key_bits: KeyBits::Rsa2048,
        policy: RetryPolicy::fast(),
    };
    let token = Uuid::new_v4().to_string();
    for s in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let event = RotationEvent {
            secret_id: CERT_SECRET.into(),
            token: token.clone(),
            step: s.into(),
        };
        rotator
            .step(&event)
            .await
            .map_err(|e| format!("{s}: {e}"))?;
        println!("    {s}: done");
    }
    println!(
        "    the app now holds {} keys (current and previous)",
        sim.app_key_credentials(object_id).len()
    );

    step(6, "The 08:00 sync window for Europe fires");
    let window = WindowEvent {
        region: Region::Europe,
        scheduled_time: Utc::now(),
    };
    let fan = fan_out(&app.store, app.queue.as_ref(), &window, &WindowSpans::NONE)
        .await
        .map_err(|e| e.to_string())?;
    println!("    {} job(s) enqueued", fan.enqueued);
    let runs = drain(&app, &queue).await?;
    for r in &runs {
        println!("    {}", summary(r));
    }
    let scope = Scope::new(
        AccountId::new("acme").map_err(|e| e.to_string())?,
        ConnectorId::new("entra").map_err(|e| e.to_string())?,
    );
    let snap = sim.snapshot(tenant);
    let sample = snap
        .users
        .iter()
        .find(|u| u.user_type == UserType::Member && u.mail.is_some())
        .ok_or("no user")?;
    let found = call(
        &app,
        "GET",
        &format!(
            "/accounts/acme/users?address={}",
            sample.mail.clone().unwrap_or_default()
        ),
        json!({}),
    )
    .await?;
    println!(
        "    look-up by address {} → {} ({}), enabled: {}",
        sample.mail.clone().unwrap_or_default(),
        found["user"]["display_name"].as_str().unwrap_or_default(),
        found["user"]["id"].as_str().unwrap_or_default(),
        found["user"]["enabled"]
    );

    step(
        7,
        "The tenant changes: a new hire, a leaver disabled, a user deleted, a group membership changed",
    );
    let members: Vec<&SimUser> = snap
        .users
        .iter()
        .filter(|u| u.user_type == UserType::Member && u.mail.is_some() && u.account_enabled)
        .collect();
    let (leaver, deleted) = (members[0].id, members[1].id);
    let new_id = Uuid::new_v4();
    sim.add_user(
        tenant,
        SimUser::new(new_id, "new.hire@contoso.com", "New Hire"),
    );
    sim.update_user(tenant, &leaver.to_string(), |u| u.account_enabled = false);
    sim.purge_user(tenant, &deleted.to_string());
    let group = snap.groups.first().ok_or("no group")?.id;
    sim.add_member(tenant, &group.to_string(), &new_id.to_string());
    println!(
        "    added {new_id}, disabled {leaver}, deleted {deleted}, {new_id} joined group {group}"
    );
    call(
        &app,
        "POST",
        "/accounts/acme/connectors/entra/sync",
        json!({}),
    )
    .await?;
    for r in drain(&app, &queue).await? {
        println!("    {}", summary(&r));
    }

    step(
        8,
        "The source suddenly returns almost nothing: the deletion guard stages instead of deleting",
    );
    let victims: Vec<Uuid> = sim
        .snapshot(tenant)
        .users
        .iter()
        .map(|u| u.id)
        .take((users / 2) as usize)
        .collect();
    for id in &victims {
        sim.purge_user(tenant, &id.to_string());
    }
    call(
        &app,
        "POST",
        "/accounts/acme/connectors/entra/sync",
        json!({"full": true}),
    )
    .await?;
    let staged = drain(&app, &queue).await?;
    let run = staged.last().ok_or("no run")?;
    println!("    {}", summary(run));
    if run.status == RunStatus::Staged {
        let detail = call(
            &app,
            "GET",
            &format!("/accounts/acme/connectors/entra/runs/{}", run.id),
            json!({}),
        )
        .await?;
        let actions = detail["staged_actions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!("    {}", run.message.clone().unwrap_or_default());
        for a in actions.iter().take(3) {
            let f = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            println!(
                "      {} {} {}: {}",
                f("action"),
                f("object_type"),
                f("label"),
                f("reason")
            );
        }
        let on = format!(
            "dirsync --store {} --secrets-dir {}",
            db.display(),
            dir.join("secrets").display()
        );
        println!(
            "      … {} actions in all; nothing was removed. Review them: {on} runs show {a} {c} {r}\n      \
             then {on} approve {a} {c} {r} (or reject)",
            actions.len(),
            a = scope.account,
            c = scope.connector,
            r = run.id
        );
    }
    let stored = dirsync_shared::store::all_pages(|p| app.store.list_users(&scope, p))
        .await
        .map_err(|e| e.to_string())?;
    println!("    users still stored: {}", stored.len());

    println!(
        "\nDemo finished in {:.1} s. The state is in {} (inspect it with sqlite3), the secrets in {}.",
        clock_start.elapsed().as_secs_f64(),
        db.display(),
        dir.join("secrets").display()
    );
    Ok(())
}
