//! `lambda_start`: how long each Lambda binary takes from process start to
//! its first handled event (DESIGN.md §8: ≤ 100 ms locally).
//!
//! It plays the Lambda service (`dirsync-lambda-host`): it serves the
//! Lambda Runtime API on 127.0.0.1, starts the release binary with the environment Lambda gives a
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
use std::time::Duration;

use clap::Parser;
use dirsync_lambda_host::events::{self, HttpRequest, SqsRecord};
use dirsync_lambda_host::{ACCOUNT, Function, Outcome, Sandbox};
use dirsync_shared::store::DynamoTable;
use serde_json::{Value, json};
use uuid::Uuid;

const FUNCTIONS: [&str; 5] = [
    "sync-worker",
    "sync-window",
    "admin-api",
    "cert-rotation",
    "consent-callback",
];
const REGION: &str = "eu-west-2";
/// Who signs the admin API requests.
const OPERATOR: &str = "arn:aws:iam::123456789012:user/operator";
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

/// An HTTP API request, signed by IAM as the operator or not signed.
fn http_event(method: &str, path: &str, query: &str, iam: bool) -> Value {
    events::http_api(&HttpRequest {
        method,
        path,
        query,
        body: None,
        iam_caller: iam.then_some(OPERATOR),
    })
}

fn sqs_event(bodies: &[Value]) -> Value {
    let records: Vec<SqsRecord> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| SqsRecord {
            message_id: format!("bench-message-{i}"),
            receipt_handle: "AQEBbench".into(),
            body: body.to_string(),
            md5_of_body: "0b4e1c3f9a0d2e6a8f4b7c5d1e2f3a4b".into(),
            receive_count: 1,
            sent_ms: 1772438400000,
            first_receive_ms: 1772438400100,
        })
        .collect();
    events::sqs(
        &format!("arn:aws:sqs:{REGION}:{ACCOUNT}:dirsync-jobs"),
        &records,
    )
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
        ("DIRSYNC_WINDOW_SPAN_ENTRA_SECONDS", "10800".into()),
        ("DIRSYNC_WINDOW_SPAN_LDAP_SECONDS", "3600".into()),
        ("DIRSYNC_WINDOW_SPAN_GOOGLE_SECONDS", "3600".into()),
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

/// The function as Lambda would run it: its settings, and every AWS call
/// pointed at an emulator or, without services, at a closed local port:
/// never at AWS.
fn function(case: &Case, bin_dir: &Path, services: Option<&Services>) -> Function {
    let (dynamodb, other) = match services {
        Some(s) => (s.dynamodb.clone(), s.secrets.clone()),
        None => (
            "http://127.0.0.1:9".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
    };
    let mut env = vec![
        ("AWS_ENDPOINT_URL_DYNAMODB".to_owned(), dynamodb),
        ("AWS_ENDPOINT_URL_SQS".to_owned(), other.clone()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(), other.clone()),
        ("AWS_ENDPOINT_URL".to_owned(), other),
    ];
    env.extend(case.env.iter().cloned());
    Function {
        binary: bin_dir.join(case.function),
        name: format!("dirsync-bench-{}", case.function),
        memory_mb: case.memory_mb,
        timeout: case.timeout,
        region: REGION.to_owned(),
        env,
    }
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

fn short(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// One cold start: a new sandbox, one event, the process killed after.
async fn run_once(function: &Function, case: &Case, timeout: Duration) -> Result<Sample, String> {
    let mut sandbox = Sandbox::start(function).await.map_err(|e| e.to_string())?;
    let invocation = sandbox
        .invoke(case.event.to_string().as_bytes(), timeout)
        .await;
    let (started, polled) = (sandbox.started(), sandbox.first_poll());
    sandbox.stop().await;
    let invocation = invocation.map_err(|e| e.to_string())?;
    let polled =
        polled.ok_or("the invocation was answered without a /next (impossible)".to_owned())?;
    let (handled, kind, body) = match invocation.outcome {
        Outcome::Response(body) => (Handled::Response, None, body),
        Outcome::Error { error_type, body } => (Handled::Error, error_type, body),
    };
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
        next_ms: ms(polled - started),
        handled_ms: ms(invocation.answered_at - started),
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
    let timeout = Duration::from_secs(args.timeout_s);

    let all = cases(services.as_ref());
    let chosen: Vec<&Case> = all
        .iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|f| f == c.function))
        .collect();
    let mut measured = Vec::new();
    let mut failed = Vec::new();
    for case in &chosen {
        let mut function = function(case, &bin_dir, services.as_ref());
        function.env.extend(args.extra_env.iter().cloned());
        let binary = &function.binary;
        let size_mib = match std::fs::metadata(binary) {
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
        eprintln!(
            "{}: {} warm-up + {} runs ({})",
            case.function, args.warmup, args.runs, case.what
        );
        let mut samples = Vec::new();
        let mut error = None;
        for i in 0..args.warmup + args.runs {
            match run_once(&function, case, timeout).await {
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
