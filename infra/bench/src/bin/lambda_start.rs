//! `lambda_start`: how long each Lambda binary takes from process start to
//! its first handled event (DESIGN.md §8: ≤ 100 ms locally).
//!
//! It plays the Lambda service: it serves the Lambda Runtime API on
//! 127.0.0.1, starts the release binary with the environment Lambda gives a
//! `provided.al2023` function (plus the function's own settings from
//! `template.yaml`), hands it one event on its first
//! `GET /2018-06-01/runtime/invocation/next`, and stops the clock when the
//! binary posts that invocation's `/response` or `/error` (a handled error
//! counts as handled; each function's expected outcome is checked on every
//! run). The process is then killed, as Lambda does with a sandbox, and the
//! next run starts a new one.
//!
//! ```text
//! cargo build --release -p sync-worker -p sync-window -p admin-api \
//!     -p cert-rotation -p consent-callback
//! cargo run --release -p dirsync-bench --bin lambda_start            # no services
//! cargo run --release -p dirsync-bench --bin lambda_start -- --services
//! ```
//!
//! Without `--services` every event is one the function answers without
//! calling AWS (an empty SQS batch, a refused request); the AWS endpoints
//! point at a closed local port so a stray call fails instead of leaving the
//! machine. With `--services` the events make one real call each to the
//! emulators named by `DIRSYNC_TEST_DYNAMODB_ENDPOINT` (DynamoDB Local) and
//! `DIRSYNC_TEST_SECRETS_ENDPOINT` (moto), as `infra/services/*.sh start`
//! print them, so the first SDK request's set-up is in the figure too.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use dirsync_shared::store::DynamoTable;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

const FUNCTIONS: [&str; 5] = [
    "sync-worker",
    "sync-window",
    "admin-api",
    "cert-rotation",
    "consent-callback",
];
const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-2";
/// DESIGN.md §8.
const TARGET_MS: f64 = 100.0;

#[derive(Parser)]
#[command(about = "Time each Lambda binary from process start to its first handled event")]
struct Args {
    /// Where the release binaries are (default: $CARGO_TARGET_DIR/release,
    /// else the workspace's target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Measured runs per function.
    #[arg(long, short = 'n', default_value_t = 20)]
    runs: usize,
    /// Unmeasured runs per function first (outcome still checked).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Only these functions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Use events that call DynamoDB Local and moto (endpoints from
    /// DIRSYNC_TEST_DYNAMODB_ENDPOINT and DIRSYNC_TEST_SECRETS_ENDPOINT).
    #[arg(long)]
    services: bool,
    /// Extra environment for every function, `KEY=VALUE` (repeatable), after
    /// the Lambda and function settings, e.g. `RUST_LOG=warn`.
    #[arg(long = "env", value_parser = key_value)]
    extra_env: Vec<(String, String)>,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout_s: u64,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: use KEY=VALUE"))
}

// ---- the Lambda Runtime API ------------------------------------------------

/// What the binary did, as the Runtime API saw it.
enum Report {
    Next(Instant),
    Response(Instant, Bytes),
    Error(Instant, Option<String>, Bytes),
    InitError(Option<String>, Bytes),
    Unexpected(String),
}

/// The one invocation on offer.
struct Slot {
    request_id: String,
    function_arn: String,
    timeout: Duration,
    event: Bytes,
    served: bool,
    reports: mpsc::UnboundedSender<Report>,
}

#[derive(Default)]
struct RuntimeApi {
    slot: Mutex<Option<Slot>>,
}

impl RuntimeApi {
    fn report(&self, report: Report) {
        if let Some(slot) = self.slot.lock().unwrap().as_ref() {
            let _ = slot.reports.send(report);
        }
    }
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `GET /next`: the event, once; later calls wait (Lambda would freeze or
/// end the sandbox here; the run kills it).
async fn next(State(api): State<Arc<RuntimeApi>>) -> Response {
    let at = Instant::now();
    let offer = {
        let mut slot = api.slot.lock().unwrap();
        match slot.as_mut() {
            Some(s) if !s.served => {
                s.served = true;
                let _ = s.reports.send(Report::Next(at));
                Some((
                    s.request_id.clone(),
                    s.function_arn.clone(),
                    s.timeout,
                    s.event.clone(),
                ))
            }
            _ => None,
        }
    };
    let Some((id, arn, timeout, event)) = offer else {
        return std::future::pending().await;
    };
    let deadline_ms = (SystemTime::now() + timeout)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let trace = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        &Uuid::new_v4().simple().to_string()[..24],
        &Uuid::new_v4().simple().to_string()[..16],
    );
    (
        [
            ("content-type", "application/json".to_owned()),
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            ("lambda-runtime-invoked-function-arn", arn),
            ("lambda-runtime-trace-id", trace),
        ],
        event,
    )
        .into_response()
}

fn same_invocation(api: &RuntimeApi, id: &str) -> bool {
    api.slot
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|s| s.request_id == id)
}

async fn response(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&api, &id, "a response", |at| Report::Response(at, body))
}

/// Takes a response or an error for invocation `id`, if it is the one on
/// offer, and reports it with the time it came in.
fn answer(
    api: &RuntimeApi,
    id: &str,
    what: &str,
    report: impl FnOnce(Instant) -> Report,
) -> StatusCode {
    let at = Instant::now();
    if !same_invocation(api, id) {
        api.report(Report::Unexpected(format!(
            "{what} for unknown request {id}"
        )));
        return StatusCode::BAD_REQUEST;
    }
    api.report(report(at));
    StatusCode::ACCEPTED
}

async fn invocation_error(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    answer(&api, &id, "an error", |at| {
        Report::Error(at, error_type(&headers), body)
    })
}

async fn init_error(
    State(api): State<Arc<RuntimeApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    api.report(Report::InitError(error_type(&headers), body));
    StatusCode::ACCEPTED
}

async fn other(State(api): State<Arc<RuntimeApi>>, uri: Uri) -> StatusCode {
    api.report(Report::Unexpected(format!("a request to {uri}")));
    StatusCode::NOT_FOUND
}

/// Serves the Runtime API on a free loopback port; returns `host:port`.
async fn serve_runtime_api(api: Arc<RuntimeApi>) -> Result<String, String> {
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .fallback(other)
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding the Runtime API: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr.to_string())
}

// ---- the functions and their events -----------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Handled {
    Response,
    Error,
}

/// One function's measurement set-up.
struct Case {
    function: &'static str,
    memory_mb: u32,
    timeout: Duration,
    /// Settings beyond the ones every function gets.
    env: Vec<(String, String)>,
    event: Value,
    what: String,
    expect: Handled,
    /// A piece of the posted body that shows the expected path ran.
    expect_in_body: String,
}

/// Where the emulators are and what was set up on them.
struct Services {
    dynamodb: String,
    secrets: String,
    table: String,
    cert_secret: String,
    cert_version: String,
}

/// An API Gateway HTTP API (payload 2.0) request, as the functions' routes
/// receive them.
fn http_event(method: &str, path: &str, query: &str, iam: bool) -> Value {
    let mut context = json!({
        "accountId": ACCOUNT,
        "apiId": "bench1",
        "domainName": "bench1.execute-api.eu-west-2.amazonaws.com",
        "domainPrefix": "bench1",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.1",
            "userAgent": "dirsync-bench"
        },
        "requestId": "bench-req",
        "routeKey": "$default",
        "stage": "$default",
        "time": "02/Mar/2026:08:00:00 +0000",
        "timeEpoch": 1772438400000u64
    });
    if iam {
        context["authorizer"] = json!({"iam": {
            "accessKey": "AKIAEXAMPLE",
            "accountId": ACCOUNT,
            "callerId": "AIDAEXAMPLE",
            "principalOrgId": null,
            "userArn": format!("arn:aws:iam::{ACCOUNT}:user/operator"),
            "userId": "AIDAEXAMPLE"
        }});
    }
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "bench1.execute-api.eu-west-2.amazonaws.com", "user-agent": "dirsync-bench"},
        "requestContext": context,
        "body": null,
        "isBase64Encoded": false
    })
}

fn sqs_event(bodies: &[Value]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("bench-message-{i}"),
                "receiptHandle": "AQEBbench",
                "body": body.to_string(),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1772438400000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1772438400100"
                },
                "messageAttributes": {},
                "md5OfBody": "0b4e1c3f9a0d2e6a8f4b7c5d1e2f3a4b",
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:{ACCOUNT}:dirsync-jobs"),
                "awsRegion": REGION
            })
        })
        .collect();
    json!({ "Records": records })
}

fn cases(services: Option<&Services>) -> Vec<Case> {
    // template.yaml's global settings: every function gets all of them.
    let app_env: Vec<(String, String)> = [
        (
            "DIRSYNC_TABLE",
            services.map_or("dirsync-state-bench".to_owned(), |s| s.table.clone()),
        ),
        (
            "DIRSYNC_QUEUE_URL",
            format!(
                "{}/{ACCOUNT}/dirsync-jobs-bench",
                services.map_or("http://127.0.0.1:9", |s| s.secrets.as_str())
            ),
        ),
        (
            "DIRSYNC_APP_CLIENT_ID",
            "6c1a3f0e-2b4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
        ),
        (
            "DIRSYNC_APP_OBJECT_ID",
            "7d2b4a1f-3c5e-4f60-9bac-1d2e3f4a5b6c".into(),
        ),
        (
            "DIRSYNC_APP_CERT_SECRET",
            services.map_or("dirsync-bench/app-certificate".to_owned(), |s| {
                s.cert_secret.clone()
            }),
        ),
        ("DIRSYNC_APP_TENANT", "contoso.onmicrosoft.com".into()),
        ("DIRSYNC_SECRET_PREFIX", "dirsync-bench".into()),
        ("DIRSYNC_WINDOW_SPREAD_SECONDS", "900".into()),
        (
            "DIRSYNC_CONSENT_REDIRECT_URI",
            "https://bench2.execute-api.eu-west-2.amazonaws.com/consent/callback".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let case = |function, memory_mb, timeout_s, event, what: &str, expect, body: &str| Case {
        function,
        memory_mb,
        timeout: Duration::from_secs(timeout_s),
        env: app_env.clone(),
        event,
        what: what.to_owned(),
        expect,
        expect_in_body: body.to_owned(),
    };
    let job = json!({
        "account": "acme",
        "connector": "bench-gone",
        "trigger": {"trigger": "manual", "requested_by": null},
        "full": false,
        "continues": null
    });
    match services {
        None => vec![
            case(
                "sync-worker",
                1024,
                900,
                sqs_event(&[]),
                "SQS event with no records → response `{\"batchItemFailures\":[]}` (no AWS call)",
                Handled::Response,
                "\"batchItemFailures\":[]",
            ),
            case(
                "sync-window",
                512,
                120,
                json!({
                    "version": "0",
                    "id": "d3a4b6b2-6f1f-4e8e-9a53-1e2f5c1a9b10",
                    "detail-type": "Scheduled Event",
                    "source": "aws.scheduler",
                    "account": ACCOUNT,
                    "time": "2026-03-02T08:00:00Z",
                    "region": REGION,
                    "resources": [format!("arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/dirsync-eu")],
                    "detail": "{}"
                }),
                "the scheduler's default payload → refused early, posted to `/error` (no AWS call)",
                Handled::Error,
                "default payload",
            ),
            case(
                "admin-api",
                512,
                30,
                http_event("GET", "/status", "", true),
                "HTTP API `GET /status` (no such route) → response, status 404 (no AWS call)",
                Handled::Response,
                "\"statusCode\":404",
            ),
            case(
                "cert-rotation",
                512,
                30,
                json!({
                    "SecretId": "dirsync-bench/some-other-secret",
                    "ClientRequestToken": Uuid::new_v4().to_string(),
                    "Step": "createSecret"
                }),
                "rotation `createSecret` for another secret → refused early, posted to `/error` (no AWS call)",
                Handled::Error,
                "rotates",
            ),
            case(
                "consent-callback",
                512,
                30,
                http_event("GET", "/consent/callback", "", false),
                "HTTP API `GET /consent/callback` without `state` → response, status 400 page (no AWS call)",
                Handled::Response,
                "carries no state",
            ),
        ],
        Some(s) => vec![
            case(
                "sync-worker",
                1024,
                900,
                sqs_event(&[job]),
                "SQS event with one job for a connector that does not exist → one DynamoDB GetItem, \
                 job skipped, response `{\"batchItemFailures\":[]}`",
                Handled::Response,
                "\"batchItemFailures\":[]",
            ),
            case(
                "sync-window",
                512,
                120,
                json!({"region": "eu", "scheduled_time": "2026-03-02T08:00:00Z"}),
                "window event for region eu (no connectors) → one DynamoDB Query, response \
                 `{\"enqueued\":0,…}`",
                Handled::Response,
                "\"enqueued\":0",
            ),
            case(
                "admin-api",
                512,
                30,
                http_event("GET", "/accounts", "", true),
                "HTTP API `GET /accounts` → one DynamoDB Query, response status 200",
                Handled::Response,
                "\"statusCode\":200",
            ),
            case(
                "cert-rotation",
                512,
                30,
                json!({
                    "SecretId": s.cert_secret,
                    "ClientRequestToken": s.cert_version,
                    "Step": "finishSecret"
                }),
                "rotation `finishSecret` for the version already AWSCURRENT → one Secrets \
                     Manager DescribeSecret, response `null`",
                Handled::Response,
                "null",
            ),
            case(
                "consent-callback",
                512,
                30,
                http_event("GET", "/consent/callback", "state=bench-unknown", false),
                "HTTP API `GET /consent/callback?state=…` (unknown state) → one DynamoDB DeleteItem, \
                 response status 400 page",
                Handled::Response,
                "expired",
            ),
        ],
    }
}

/// The environment of a `provided.al2023` function, plus the function's.
fn environment(
    case: &Case,
    runtime_api: &str,
    services: Option<&Services>,
) -> Vec<(String, String)> {
    let f = case.function;
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("dirsync-bench-{f}")),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            case.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/dirsync-bench-{f}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/03/02/[$LATEST]bench".to_owned(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIABENCHEXAMPLE".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret-key".to_owned()),
        ("AWS_SESSION_TOKEN", "bench-session-token".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Every AWS call goes to an emulator or, without services, to a closed
    // local port: never to AWS.
    let (dynamodb, other) = match services {
        Some(s) => (s.dynamodb.clone(), s.secrets.clone()),
        None => (
            "http://127.0.0.1:9".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
    };
    env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), dynamodb));
    env.push(("AWS_ENDPOINT_URL_SQS".into(), other.clone()));
    env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), other.clone()));
    env.push(("AWS_ENDPOINT_URL".into(), other));
    env.extend(case.env.iter().cloned());
    env
}

// ---- emulators -----------------------------------------------------------------

fn emulator_credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "dirsync-bench")
}

async fn prepare_services() -> Result<Services, String> {
    let endpoint = |name: &str, script: &str| {
        std::env::var(name).map_err(|_| {
            format!(
                "--services needs {name}: run `infra/services/{script} start` and export what it prints"
            )
        })
    };
    let dynamodb = endpoint("DIRSYNC_TEST_DYNAMODB_ENDPOINT", "dynamodb-local.sh")?;
    let secrets = endpoint("DIRSYNC_TEST_SECRETS_ENDPOINT", "moto.sh")?;

    let ddb = dynamodb_client(&dynamodb);
    let table = format!("dirsync-bench-start-{}", Uuid::new_v4().simple());
    DynamoTable::new(ddb, table.clone())
        .create_table()
        .await
        .map_err(|e| format!("creating table {table} on {dynamodb}: {e}"))?;

    let sm = secrets_client(&secrets);
    let cert_secret = format!("dirsync-bench/app-certificate-{}", Uuid::new_v4().simple());
    sm.create_secret()
        .name(&cert_secret)
        .secret_string("{}")
        .client_request_token(Uuid::new_v4().to_string())
        .send()
        .await
        .map_err(|e| format!("creating secret {cert_secret} on {secrets}: {e:?}"))?;
    let described = sm
        .describe_secret()
        .secret_id(&cert_secret)
        .send()
        .await
        .map_err(|e| format!("describing secret {cert_secret}: {e:?}"))?;
    let cert_version = described
        .version_ids_to_stages()
        .into_iter()
        .flatten()
        .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
        .map(|(id, _)| id.clone())
        .ok_or_else(|| format!("secret {cert_secret} has no AWSCURRENT version"))?;
    Ok(Services {
        dynamodb,
        secrets,
        table,
        cert_secret,
        cert_version,
    })
}

fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new(REGION))
            .credentials_provider(emulator_credentials())
            .endpoint_url(endpoint)
            .build(),
    )
}

fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new(REGION))
            .credentials_provider(emulator_credentials())
            .endpoint_url(endpoint)
            .build(),
    )
}

/// Best effort: the emulators are in memory anyway.
async fn clean_up(s: &Services) {
    let ddb = dynamodb_client(&s.dynamodb);
    let _ = ddb.delete_table().table_name(&s.table).send().await;
    let _ = secrets_client(&s.secrets)
        .delete_secret()
        .secret_id(&s.cert_secret)
        .force_delete_without_recovery(true)
        .send()
        .await;
}

// ---- one run -------------------------------------------------------------------

struct Sample {
    /// Spawn → first `GET /next` (runtime init: `main` up to the poll).
    next_ms: f64,
    /// Spawn → the invocation's response or error received in full.
    handled_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(1500);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].trim().to_owned()
}

fn short(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

async fn run_once(
    api: &RuntimeApi,
    binary: &Path,
    env: &[(String, String)],
    case: &Case,
    log: &Path,
    timeout: Duration,
) -> Result<Sample, String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    *api.slot.lock().unwrap() = Some(Slot {
        request_id: Uuid::new_v4().to_string(),
        function_arn: format!(
            "arn:aws:lambda:{REGION}:{ACCOUNT}:function:dirsync-bench-{}",
            case.function
        ),
        timeout: case.timeout,
        event: Bytes::from(case.event.to_string()),
        served: false,
        reports: tx,
    });
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut next_at = None;
    let outcome = loop {
        tokio::select! {
            report = rx.recv() => match report {
                Some(Report::Next(at)) => next_at = Some(at),
                Some(Report::Response(at, body)) => break Ok((at, Handled::Response, None, body)),
                Some(Report::Error(at, kind, body)) => break Ok((at, Handled::Error, kind, body)),
                Some(Report::InitError(kind, body)) => break Err(format!(
                    "the runtime reported an init error ({}): {}",
                    kind.unwrap_or_default(),
                    short(&body)
                )),
                Some(Report::Unexpected(what)) => break Err(format!("unexpected: {what}")),
                None => break Err("the Runtime API stopped".into()),
            },
            status = child.wait() => break Err(format!(
                "the process exited ({}) before the event was handled{}; its output ends:\n{}",
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                if next_at.is_some() { "" } else { " (it never asked for an event)" },
                tail(log),
            )),
            _ = &mut deadline => break Err(format!(
                "no response within {timeout:?}{}; its output ends:\n{}",
                if next_at.is_some() { "" } else { " (it never asked for an event)" },
                tail(log),
            )),
        }
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    *api.slot.lock().unwrap() = None;

    let (at, handled, kind, body) = outcome?;
    let next_at =
        next_at.ok_or("the invocation was answered without a /next (impossible)".to_owned())?;
    if handled != case.expect || !String::from_utf8_lossy(&body).contains(&case.expect_in_body) {
        return Err(format!(
            "expected {} containing {:?}, got {}{}: {}",
            match case.expect {
                Handled::Response => "a response",
                Handled::Error => "an error",
            },
            case.expect_in_body,
            match handled {
                Handled::Response => "a response".to_owned(),
                Handled::Error => "an error".to_owned(),
            },
            kind.map(|k| format!(" ({k})")).unwrap_or_default(),
            short(&body),
        ));
    }
    Ok(Sample {
        next_ms: ms(next_at - started),
        handled_ms: ms(at - started),
    })
}

// ---- figures -------------------------------------------------------------------

struct Figures {
    median: f64,
    p90: f64,
    max: f64,
}

fn figures(mut values: Vec<f64>) -> Figures {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    // Nearest rank.
    let p90 = values[(n * 9).div_ceil(10).max(1) - 1];
    Figures {
        median,
        p90,
        max: values[n - 1],
    }
}

struct Measured {
    function: &'static str,
    size_mib: f64,
    handled: Figures,
    init: Figures,
}

fn default_bin_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("release"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("lambda_start: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Ok(false): some function could not be measured.
async fn run(args: Args) -> Result<bool, String> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    for f in &args.only {
        if !FUNCTIONS.contains(&f.as_str()) {
            return Err(format!(
                "unknown function {f:?}; the functions are {}",
                FUNCTIONS.join(", ")
            ));
        }
    }
    let bin_dir = args.bin_dir.clone().unwrap_or_else(default_bin_dir);
    let services = if args.services {
        Some(prepare_services().await?)
    } else {
        None
    };
    let api = Arc::new(RuntimeApi::default());
    let runtime_api = serve_runtime_api(api.clone()).await?;
    let log_dir = std::env::temp_dir().join(format!("dirsync-lambda-start-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    let timeout = Duration::from_secs(args.timeout_s);

    let all = cases(services.as_ref());
    let chosen: Vec<&Case> = all
        .iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|f| f == c.function))
        .collect();
    let mut measured = Vec::new();
    let mut failed = Vec::new();
    for case in &chosen {
        let binary = bin_dir.join(case.function);
        let size_mib = match std::fs::metadata(&binary) {
            Ok(m) => m.len() as f64 / (1024.0 * 1024.0),
            Err(e) => {
                failed.push((
                    case.function,
                    format!(
                        "{}: {e} (build it: cargo build --release -p {})",
                        binary.display(),
                        case.function
                    ),
                ));
                continue;
            }
        };
        let mut env = environment(case, &runtime_api, services.as_ref());
        env.extend(args.extra_env.iter().cloned());
        let log = log_dir.join(format!("{}.log", case.function));
        eprintln!(
            "{}: {} warm-up + {} runs ({})",
            case.function, args.warmup, args.runs, case.what
        );
        let mut samples = Vec::new();
        let mut error = None;
        for i in 0..args.warmup + args.runs {
            match run_once(&api, &binary, &env, case, &log, timeout).await {
                Ok(s) if i >= args.warmup => samples.push(s),
                Ok(_) => {}
                Err(e) => {
                    error = Some(format!("run {}: {e}", i + 1));
                    break;
                }
            }
        }
        if let Some(e) = error {
            eprintln!("{}: FAILED {e}", case.function);
            failed.push((case.function, e));
            continue;
        }
        measured.push(Measured {
            function: case.function,
            size_mib,
            handled: figures(samples.iter().map(|s| s.handled_ms).collect()),
            init: figures(samples.iter().map(|s| s.next_ms).collect()),
        });
    }
    if let Some(s) = &services {
        clean_up(s).await;
    }
    let _ = std::fs::remove_dir_all(&log_dir);

    let mode = if args.services {
        "with DynamoDB Local and moto"
    } else {
        "no AWS services"
    };
    println!(
        "## Lambda start: process spawn → first event handled ({} runs per function after {} \
         warm-up, {mode})\n",
        args.runs, args.warmup
    );
    println!("| function | median ms | p90 ms | max ms | binary MiB |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for m in &measured {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            m.function, m.handled.median, m.handled.p90, m.handled.max, m.size_mib
        );
    }
    println!("\n### Runtime init: process spawn → first `GET /runtime/invocation/next`\n");
    println!("| function | median ms | p90 ms | max ms |");
    println!("| --- | ---: | ---: | ---: |");
    for m in &measured {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            m.function, m.init.median, m.init.p90, m.init.max
        );
    }
    println!("\n### Events\n");
    for case in &chosen {
        println!("- {}: {}", case.function, case.what);
    }
    let over: Vec<String> = measured
        .iter()
        .filter(|m| m.handled.median > TARGET_MS)
        .map(|m| format!("{} ({:.1} ms)", m.function, m.handled.median))
        .collect();
    println!(
        "\nTarget (DESIGN.md §8): median ≤ {TARGET_MS:.0} ms: {}",
        if over.is_empty() {
            "met by every function measured".to_owned()
        } else {
            format!("missed by {}", over.join(", "))
        }
    );
    for (f, e) in &failed {
        println!("\n**{f} not measured**: {e}");
    }
    Ok(failed.is_empty())
}
