//! The five function binaries end to end, each run as Lambda runs it (a
//! local Runtime API, Lambda's environment plus template.yaml's settings)
//! against DynamoDB Local, moto (SQS, Secrets Manager) and the Entra
//! simulator. The test talks to them only through events, environment
//! variables and the services: an administrator creates an account and a
//! consent connector through `admin-api`, consents through the simulator
//! and `consent-callback`, the schedule fires `sync-window`, a poller plays
//! the SQS event-source mapping for `sync-worker` (partial batch failures,
//! redelivery, the dead-letter queue), Secrets Manager drives
//! `cert-rotation` through its four steps twice, and the worker, still
//! warm, syncs again with the new key once the old one is gone.
//!
//! Run `cargo build --workspace --bins` first (infra/test does).

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use common::consent::{administrator, redirected_query};
use common::lambda::{
    ADMIN_API, CERT_ROTATION, CONSENT_CALLBACK, Deployed, EventSource, INVOCATION_WAIT, JobQueues,
    SYNC_WINDOW, SYNC_WORKER, call, dead_letters, http, job_queues, start, template_variables,
};
use common::mirror::{assert_same, expected, view};
use common::world::{OPERATOR, REDIRECT, World, world};
use dirsync_entra_sim::{ConsentDecision, SimUser};
use dirsync_lambda_host::events::HttpRequest;
use dirsync_lambda_host::{HostError, Outcome, Sandbox};
use dirsync_shared::auth::AppCertificate;
use dirsync_shared::domain::*;
use dirsync_shared::secrets::SecretStore;
use dirsync_shared::store::{PageRequest, Scope};
use serde_json::{Value, json};
use uuid::Uuid;

/// template.yaml's `maxReceiveCount` on the job queue.
const MAX_RECEIVE_COUNT: u32 = 3;

/// An IAM principal no administrator granted anything.
const STRANGER: &str = "arn:aws:iam::123456789012:user/stranger";

const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

/// The services and the settings every function gets.
struct Deployment {
    w: World,
    queues: JobQueues,
    /// What `!Ref AppCertificateSecret` gives the functions: the ARN.
    cert_arn: String,
    settings: Vec<(String, String)>,
}

impl Deployment {
    async fn new(users: u32) -> Deployment {
        let w = world(users).await;
        // The consent is given through the callback, not by the set-up.
        w.sim.revoke_consent(w.tenant, w.client_id);
        let queues = job_queues(&w.sqs, MAX_RECEIVE_COUNT).await;
        let cert_arn = w
            .secrets
            .client()
            .describe_secret()
            .secret_id(w.cert_secret.as_str())
            .send()
            .await
            .expect("describe the certificate secret")
            .arn
            .expect("a secret has an ARN");
        let mut d = Deployment {
            w,
            queues,
            cert_arn,
            settings: Vec::new(),
        };
        d.settings = d.template_settings();
        d
    }

    /// template.yaml's `Globals` variables, and the AWS endpoints of the
    /// emulators (the code has no branch for them).
    fn template_settings(&self) -> Vec<(String, String)> {
        let w = &self.w;
        let table = w.f.table.clone().expect("the world is on DynamoDB Local");
        [
            ("DIRSYNC_TABLE", table),
            ("DIRSYNC_QUEUE_URL", self.queues.url.clone()),
            ("DIRSYNC_APP_CLIENT_ID", w.client_id.to_string()),
            ("DIRSYNC_APP_OBJECT_ID", w.object_id.to_string()),
            ("DIRSYNC_APP_CERT_SECRET", self.cert_arn.clone()),
            ("DIRSYNC_APP_TENANT", w.home.to_string()),
            ("DIRSYNC_AUTHORITY_URL", w.sim.authority_url()),
            ("DIRSYNC_GRAPH_URL", w.sim.graph_url()),
            (
                "DIRSYNC_SECRET_PREFIX",
                w.app.settings.secret_prefix.clone(),
            ),
            // The parameter's minimum: jobs are visible at once.
            ("DIRSYNC_WINDOW_SPAN_ENTRA_SECONDS", "0".into()),
            ("DIRSYNC_WINDOW_SPAN_LDAP_SECONDS", "0".into()),
            ("DIRSYNC_WINDOW_SPAN_GOOGLE_SECONDS", "0".into()),
            ("DIRSYNC_GRAPH_APP_BUDGET", "150000".into()),
            ("DIRSYNC_CONSENT_REDIRECT_URI", REDIRECT.into()),
            // Not in the template: the simulator's loopback hosts are no
            // cloud preset.
            ("DIRSYNC_ALLOW_CUSTOM_CLOUD", "true".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", common::dynamodb_endpoint()),
            ("AWS_ENDPOINT_URL_SQS", common::emulator_endpoint()),
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                common::emulator_endpoint(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The settings of one function: the global ones, and the admin API's
    /// platform administrators.
    fn settings(&self, f: Deployed) -> Vec<(String, String)> {
        let mut settings = self.settings.clone();
        if f.binary == ADMIN_API.binary {
            settings.push(("DIRSYNC_PLATFORM_ADMINS".into(), OPERATOR.into()));
        }
        settings
    }

    async fn start(&self, f: Deployed) -> Sandbox {
        start(f, &self.settings(f)).await
    }

    fn scope(&self) -> Scope {
        Scope::new(
            AccountId::new("acme").unwrap(),
            ConnectorId::new("main").unwrap(),
        )
    }

    async fn connector(&self) -> Connector {
        let s = self.scope();
        self.w
            .f
            .store
            .get_connector(&s.account, &s.connector)
            .await
            .unwrap()
            .expect("acme/main exists")
    }

    fn event_source(&self) -> EventSource<'_> {
        // Ten where template.yaml says one: with one message a batch, no
        // batch could show the worker failing one message and not another.
        EventSource {
            sqs: &self.w.sqs,
            queues: &self.queues,
            batch_size: 10,
        }
    }

    async fn assert_mirrors_the_tenant(&self) {
        let c = self.connector().await;
        assert_same(
            &view(&self.w.f, &c).await,
            &expected(&self.w.sim, self.w.tenant),
        );
    }

    async fn runs(&self) -> Vec<SyncRun> {
        self.w
            .f
            .store
            .list_runs(&self.scope(), PageRequest::first(10))
            .await
            .unwrap()
            .items
    }

    /// The certificate secret's versions and their stages, in moto.
    async fn stages(&self) -> BTreeMap<String, Vec<String>> {
        self.w
            .secrets
            .client()
            .describe_secret()
            .secret_id(&self.cert_arn)
            .send()
            .await
            .expect("describe the certificate secret")
            .version_ids_to_stages
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    fn app_keys(&self) -> Vec<dirsync_entra_sim::KeyCredentialInfo> {
        self.w.sim.app_key_credentials(self.w.object_id)
    }
}

fn admin_request<'a>(method: &'a str, path: &'a str, body: Value) -> HttpRequest<'a> {
    HttpRequest {
        method,
        path,
        body: Some(body.to_string()),
        iam_caller: Some(OPERATOR),
        ..Default::default()
    }
}

/// b. The operator creates the account and the connector and starts its
/// consent; returns the consent URL.
async fn create_account_and_connector(d: &Deployment, admin: &mut Sandbox) -> String {
    let account = json!({"id": "acme", "name": "Acme Corp", "region": "eu"});
    http(admin, &admin_request("POST", "/accounts", account), 201).await;
    let connector = json!({"connector": {"id": "main", "kind": "entra", "tenant": "contoso.com",
        "acknowledge_disabled": true,
        "authority_url": d.w.sim.authority_url(), "graph_url": d.w.sim.graph_url()}});
    let path = "/accounts/acme/connectors";
    http(admin, &admin_request("POST", path, connector), 201).await;
    let path = "/accounts/acme/connectors/main/consent";
    let started = http(admin, &admin_request("POST", path, json!({})), 200).await;
    let body = started.json().unwrap();
    body["consent_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no consent_url in {body}"))
        .to_owned()
}

/// b. A principal IAM signed for but no administrator granted anything
/// may neither read the account nor create one.
async fn strangers_are_refused(d: &Deployment, admin: &mut Sandbox) {
    let read = HttpRequest {
        method: "GET",
        path: "/accounts/acme/connectors",
        iam_caller: Some(STRANGER),
        ..Default::default()
    };
    let refused = http(admin, &read, 403).await;
    assert!(!refused.body.contains("contoso"), "{}", refused.body);
    let create = HttpRequest {
        method: "POST",
        path: "/accounts",
        body: Some(json!({"id": "evil", "name": "Evil", "region": "eu"}).to_string()),
        iam_caller: Some(STRANGER),
        ..Default::default()
    };
    http(admin, &create, 403).await;
    let evil = AccountId::new("evil").unwrap();
    assert!(d.w.f.store.get_account(&evil).await.unwrap().is_none());
}

fn callback_request(query: &str) -> HttpRequest<'_> {
    HttpRequest {
        method: "GET",
        path: "/consent/callback",
        query,
        ..Default::default()
    }
}

/// c. The administrator approves at the simulator, the callback confirms
/// the grant and sends them to sign in, they sign in, and the callback
/// records the grant.
async fn consent(d: &Deployment, url: &str) {
    let w = &d.w;
    let mut callback = d.start(CONSENT_CALLBACK).await;
    let query = administrator(w, url, ConsentDecision::Approve { tenant: w.tenant }).await;
    let page = http(&mut callback, &callback_request(&query), 302).await;
    let sign_in = &page.headers["location"];
    let authorize = format!(
        "{}/{}/oauth2/v2.0/authorize?",
        w.sim.authority_url(),
        w.tenant
    );
    assert!(sign_in.starts_with(&authorize), "{sign_in}");
    let query = redirected_query(sign_in).await;
    let page = http(&mut callback, &callback_request(&query), 200).await;
    assert!(page.body.contains("Consent recorded"), "{}", page.body);
    assert_eq!(page.headers["cache-control"], "no-store");

    let c = d.connector().await;
    assert!(c.is_due(), "{c:?}");
    let SourceConfig::EntraConsent {
        consent: Consent::Granted { tenant_id, .. },
        ..
    } = &c.source
    else {
        panic!("not granted: {c:?}")
    };
    assert_eq!(*tenant_id, w.tenant);
}

/// d. The Europe schedule fires: one job, for the one due connector.
async fn window(d: &Deployment) {
    let mut window = d.start(SYNC_WINDOW).await;
    let scheduled = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let event = json!({"region": "eu", "scheduled_time": scheduled});
    let report = call(&mut window, &event).await;
    assert_eq!(
        report,
        json!({"enqueued": 1, "already": 0, "not_due": 0}),
        "{}",
        window.output_tail()
    );

    // A schedule that lost its Input: an error the alarm and the reader
    // can tell from a transient one.
    let invocation = window
        .invoke(br#"{"detail": "{}"}"#, INVOCATION_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The runtime's header says only "unhandled"; Lambda reports the
    // body's errorType.
    let Outcome::Error { body, .. } = invocation.outcome else {
        panic!("the default payload was accepted")
    };
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errorType"], "Dirsync.Configuration");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("Input"),
        "{body}"
    );
}

/// e. The job and a message that is no job share a batch: the worker
/// fails only the second, which comes back until SQS moves it to the
/// dead-letter queue; the job runs once and the store mirrors the tenant.
async fn jobs_and_a_poison_message(d: &Deployment, worker: &mut Sandbox) {
    let poison = "this is no sync job";
    let sent =
        d.w.sqs
            .send_message()
            .queue_url(&d.queues.url)
            .message_body(poison)
            .send()
            .await
            .unwrap();
    let poison_id = sent.message_id.unwrap();

    let deliveries = d.event_source().drain(worker).await;
    let first = &deliveries[0];
    assert_eq!(
        first.records.len(),
        2,
        "job and poison in one batch: {deliveries:#?}"
    );
    assert_eq!(
        first.failed,
        std::slice::from_ref(&poison_id),
        "{deliveries:#?}"
    );
    let records = || deliveries.iter().flat_map(|d| &d.records);
    let poison_receives: Vec<u32> = records()
        .filter(|r| r.message_id == poison_id)
        .map(|r| r.receive_count)
        .collect();
    assert_eq!(poison_receives, [1, 2, 3], "{deliveries:#?}");
    assert_eq!(records().filter(|r| r.message_id != poison_id).count(), 1);

    let dead = dead_letters(&d.w.sqs, &d.queues).await;
    let bodies: Vec<_> = dead.iter().map(|m| m.body.as_deref()).collect();
    assert_eq!(bodies, [Some(poison)]);

    let runs = d.runs().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].status,
        RunStatus::Succeeded,
        "{:?}",
        runs[0].message
    );
    d.assert_mirrors_the_tenant().await;
}

/// f. One rotation as Secrets Manager runs it: the four steps with one
/// client request token, the version stages checked after each.
async fn rotate(d: &Deployment, rotation: &mut Sandbox) {
    let token = Uuid::new_v4().to_string();
    let before = d.stages().await;
    let (current, _) = before
        .iter()
        .find(|(_, s)| s.iter().any(|s| s == "AWSCURRENT"))
        .unwrap_or_else(|| panic!("no AWSCURRENT version: {before:?}"));
    let keys = d.app_keys().len();
    for step in STEPS {
        let event = json!({"SecretId": d.cert_arn, "ClientRequestToken": token, "Step": step});
        let answer = call(rotation, &event).await;
        assert_eq!(answer, Value::Null, "{step}");
        let finished = step == "finishSecret";
        let stages = d.stages().await;
        let stage = |s: &str| Some(vec![s.to_owned()]);
        let (new, old) = if finished {
            (stage("AWSCURRENT"), stage("AWSPREVIOUS"))
        } else {
            (stage("AWSPENDING"), stage("AWSCURRENT"))
        };
        assert_eq!(stages.get(&token).cloned(), new, "after {step}: {stages:?}");
        assert_eq!(
            stages.get(current).cloned(),
            old,
            "after {step}: {stages:?}"
        );
        let want_keys = match step {
            "createSecret" => keys,
            "finishSecret" => 2,
            _ => keys + 1,
        };
        assert_eq!(d.app_keys().len(), want_keys, "after {step}");
    }
}

/// f. With the bootstrap key gone from the app and every token issued so
/// far expired, the same worker process syncs again: it must sign a new
/// assertion, and with the certificate now current.
async fn warm_worker_syncs_with_the_new_key(
    d: &Deployment,
    admin: &mut Sandbox,
    worker: &mut Sandbox,
) {
    let w = &d.w;
    w.sim.expire_access_tokens();
    let hire = Uuid::new_v4();
    w.sim.add_user(
        w.tenant,
        SimUser::new(hire, "new.hire@contoso.com", "New Hire"),
    );
    w.sim.reset_stats();
    let sync = admin_request("POST", "/accounts/acme/connectors/main/sync", json!({}));
    http(admin, &sync, 202).await;

    let deliveries = d.event_source().drain(worker).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert!(deliveries[0].failed.is_empty(), "{}", worker.output_tail());
    let runs = d.runs().await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs[0].status,
        RunStatus::Succeeded,
        "{:?}\n{}",
        runs[0].message,
        worker.output_tail()
    );
    d.assert_mirrors_the_tenant().await;

    let current =
        AppCertificate::from_secret(&w.secrets.current(&w.cert_secret).await.unwrap()).unwrap();
    let current = d
        .app_keys()
        .into_iter()
        .find(|k| k.der == current.der())
        .expect("the current certificate is on the app");
    // The sync succeeds on the previous certificate too (the token
    // provider falls back to it when the current one is refused): only the
    // key that signed shows which one the worker read.
    let signed = w.sim.stats().certificate_sign_ins;
    assert!(
        signed.get(&current.key_id).is_some_and(|n| *n > 0) && signed.len() == 1,
        "the warm worker must sign in with the current certificate (key {}) alone; sign-ins per \
         key: {signed:?}. Another key means it used a certificate read before the rotation",
        current.key_id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_connect_sync_rotate_and_a_warm_worker_signs_with_the_new_key() {
    let began = Instant::now();
    let d = Deployment::new(60).await;
    let given: Vec<String> = d.settings(ADMIN_API).into_iter().map(|(k, _)| k).collect();
    for name in template_variables() {
        assert!(
            given.contains(&name),
            "template.yaml gives the functions {name}: give it in binaries.rs too"
        );
    }
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    assert!(template.contains(&format!("maxReceiveCount: {MAX_RECEIVE_COUNT}")));

    let mut admin = d.start(ADMIN_API).await;
    let url = create_account_and_connector(&d, &mut admin).await;
    strangers_are_refused(&d, &mut admin).await;
    consent(&d, &url).await;
    window(&d).await;
    let mut worker = d.start(SYNC_WORKER).await;
    jobs_and_a_poison_message(&d, &mut worker).await;

    let bootstrap = d.app_keys();
    assert_eq!(bootstrap.len(), 1, "{bootstrap:?}");
    let mut rotation = d.start(CERT_ROTATION).await;
    // The second rotation removes the bootstrap key from the app.
    rotate(&d, &mut rotation).await;
    rotate(&d, &mut rotation).await;
    assert!(
        d.app_keys().iter().all(|k| k.key_id != bootstrap[0].key_id),
        "the bootstrap key is gone"
    );
    warm_worker_syncs_with_the_new_key(&d, &mut admin, &mut worker).await;
    eprintln!(
        "the binaries end to end took {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

/// A wrong setting stops each function at its start, reported to the
/// Runtime API as a configuration failure that names the setting (Lambda
/// would otherwise see only the process exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_setting_is_reported_at_start_as_a_configuration_failure() {
    let settings: Vec<(String, String)> = [
        ("DIRSYNC_TABLE", "dirsync-test"),
        ("DIRSYNC_QUEUE_URL", "http://127.0.0.1:9/000000000000/jobs"),
        ("DIRSYNC_APP_CLIENT_ID", "the platform app"),
        ("DIRSYNC_APP_CERT_SECRET", "dirsync-test/app-certificate"),
        (
            "DIRSYNC_APP_OBJECT_ID",
            "6f1c9b54-4b8e-4e4b-9f57-1f1e4d1c2a3b",
        ),
        ("DIRSYNC_APP_TENANT", "contoso.onmicrosoft.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for f in [
        SYNC_WINDOW,
        SYNC_WORKER,
        ADMIN_API,
        CONSENT_CALLBACK,
        CERT_ROTATION,
    ] {
        let mut sandbox = start(f, &settings).await;
        match sandbox.invoke(b"{}", INVOCATION_WAIT).await {
            Err(HostError::Init {
                error_type, body, ..
            }) => {
                assert_eq!(error_type, "Dirsync.Configuration", "{}", f.binary);
                let body: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(body["errorType"], "Dirsync.Configuration", "{}", f.binary);
                let message = body["errorMessage"].as_str().unwrap();
                assert!(
                    message.contains("DIRSYNC_APP_CLIENT_ID must be the app's client ID"),
                    "{}: {message}",
                    f.binary
                );
            }
            other => panic!("{}: expected a failed start, got {other:?}", f.binary),
        }
    }
}
