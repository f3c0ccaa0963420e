//! `dirsync`: the operator CLI and local runtime. It runs the same code as
//! the Lambda functions — the admin API's handlers, the worker, the engine —
//! over the embedded store (or DynamoDB) and local secret files.
//!
//! Exit codes: 0 done; 1 the operation ran and reports a failure (a failed
//! run, a failed connection test); 2 refused input (bad arguments, a 4xx);
//! 3 a run staged for review; 4 an internal error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dirsync_shared::app::rotation::bootstrap;
use dirsync_shared::domain::{AccountId, ConnectorId, RunStatus, SecretRef, Trigger};
use dirsync_shared::engine::{RunOutcome, RunRequest};
use dirsync_shared::secrets::{LocalSecretStore, SecretStore, SecretsManagerStore};
use dirsync_shared::store::{Scope, all_pages};
use serde_json::{Value, json};

mod access;
mod demo;
mod local;
mod serve;

#[derive(Parser)]
#[command(name = "dirsync", about = "Run and operate dirsync", version)]
struct Cli {
    /// Print data as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// The state store: a SQLite file, or dynamodb://TABLE.
    #[arg(
        long,
        global = true,
        default_value = "dirsync.db",
        env = "DIRSYNC_STORE"
    )]
    store: String,
    /// Where local secrets live (one file per secret name).
    #[arg(
        long,
        global = true,
        default_value = "dirsync-secrets",
        env = "DIRSYNC_SECRETS_DIR"
    )]
    secrets_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole product on this machine: a simulated Entra ID tenant,
    /// admin consent, certificate rotation, a sync window, a delta sync and
    /// the deletion guard, on an embedded store. No cloud account needed.
    Demo {
        /// Users in the simulated tenant.
        #[arg(long, default_value_t = 3000)]
        users: u32,
        /// Where the demo keeps its store and secrets.
        #[arg(long, default_value = "dirsync-demo")]
        dir: PathBuf,
    },
    /// Customer accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Connectors of an account.
    Connector {
        #[command(subcommand)]
        command: ConnectorCommand,
    },
    /// Test a connector's connection.
    Test { account: String, connector: String },
    /// Sync a connector now.
    Sync {
        account: String,
        connector: String,
        /// Read everything, even where a delta cursor is stored.
        #[arg(long)]
        full: bool,
        /// Show every object's action and reason; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// A connector's runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Apply a staged run's list.
    Approve {
        account: String,
        connector: String,
        run: String,
    },
    /// Discard a staged run's list.
    Reject {
        account: String,
        connector: String,
        run: String,
    },
    /// Admin consent for a consent connector.
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// The service-account password (or client secret) of a connector.
    Password {
        #[command(subcommand)]
        command: PasswordCommand,
    },
    /// A user by any of their addresses.
    User { account: String, address: String },
    /// The groups a user belongs to.
    Groups {
        account: String,
        connector: String,
        user: String,
    },
    /// The members of a group.
    Members {
        account: String,
        connector: String,
        group: String,
    },
    /// A connector's synced directory as JSON (users, groups, memberships).
    Export { account: String, connector: String },
    /// An account's audit trail, newest first.
    Audit {
        account: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Serve the admin API and the consent callback on localhost.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// The platform app's certificate.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    Add {
        id: String,
        #[arg(long)]
        name: String,
        /// eu, na, za or au.
        #[arg(long)]
        region: String,
    },
    List,
    Show {
        id: String,
    },
    #[command(flatten)]
    Access(access::GrantCommand),
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Add a connector from a JSON spec (a file, or - for standard input).
    Add {
        account: String,
        #[arg(long)]
        spec: PathBuf,
        /// A file holding the password / client secret / JSON key to store.
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    List {
        account: String,
    },
    Show {
        account: String,
        connector: String,
    },
    Update {
        account: String,
        connector: String,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long)]
        acknowledge_disabled: Option<bool>,
        /// Comma-separated domains, no spaces ("" for all).
        #[arg(long)]
        email_domains: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Remove {
        account: String,
        connector: String,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    List {
        account: String,
        connector: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    Show {
        account: String,
        connector: String,
        run: String,
    },
}

#[derive(Subcommand)]
enum ConsentCommand {
    /// Print the URL to send a Global Administrator to.
    Start { account: String, connector: String },
}

#[derive(Subcommand)]
enum PasswordCommand {
    /// Test a new value (read from standard input, or --from-file) and
    /// store it if the test passes; the working value stays otherwise.
    Set {
        account: String,
        connector: String,
        #[arg(long)]
        from_file: Option<PathBuf>,
        /// Store it even if the connection test fails (when the current
        /// value no longer works either).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create the first certificate: stored as the secret's current version,
    /// its public part written to a file to upload to the app registration.
    Bootstrap {
        /// The secret holding the app certificate (the stack's
        /// AppCertificateSecretArn output, or its name).
        #[arg(long)]
        secret: String,
        /// Keep the secret in --secrets-dir instead of AWS Secrets Manager.
        #[arg(long)]
        local: bool,
        /// Where to write the certificate to upload (PEM, no private key).
        #[arg(long, default_value = "dirsync-app-certificate.pem")]
        out: PathBuf,
        /// Validity in days; the daily rotation takes over long before.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Replace a certificate the secret already holds.
        #[arg(long)]
        force: bool,
    },
    /// Rotate now: the four steps the rotation function runs daily. The app
    /// comes from DIRSYNC_APP_CLIENT_ID, DIRSYNC_APP_OBJECT_ID,
    /// DIRSYNC_APP_TENANT and DIRSYNC_APP_CERT_SECRET.
    Rotate {
        /// Use the secret in --secrets-dir instead of AWS Secrets Manager.
        #[arg(long)]
        local: bool,
    },
}

/// A failure with its exit code.
struct Failure(u8, String);

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(4, s)
    }
}

impl From<(u16, String)> for Failure {
    fn from((status, message): (u16, String)) -> Self {
        Failure(if (400..500).contains(&status) { 2 } else { 4 }, message)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("dirsync: {message}");
            ExitCode::from(code)
        }
    }
}

fn print(json_mode: bool, value: &Value, human: impl FnOnce(&Value) -> String) {
    if json_mode {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", human(value));
    }
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map(Vec::len).unwrap_or(0))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_line(r: &Value) -> String {
    let c = &r["counts"];
    format!(
        "{} {} {} ({}): {} created, {} updated, {} disabled, {} removed, {} unchanged, {} skipped\n{}",
        s(r, "id"),
        s(r, "status"),
        s(r, "mode"),
        s(&r["trigger"], "trigger"),
        c["created"],
        c["updated"],
        c["disabled"],
        c["removed"],
        c["unchanged"],
        c["skipped"],
        s(r, "message")
    )
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let json_mode = cli.json;
    if let Command::Demo { users, dir } = &cli.command {
        if !(10..=200_000).contains(users) {
            return Err(Failure(2, "--users must be between 10 and 200000".into()));
        }
        return demo::run(*users, dir).await.map_err(Failure::from);
    }
    if let Command::Cert {
        command:
            CertCommand::Bootstrap {
                secret,
                local,
                out,
                days,
                force,
            },
    } = &cli.command
    {
        return cert_bootstrap(secret, *local, &cli.secrets_dir, out, *days, *force).await;
    }
    if let Command::Cert {
        command: CertCommand::Rotate { local },
    } = &cli.command
    {
        return cert_rotate(*local, &cli.secrets_dir).await;
    }
    let l = local::open(&cli.store, cli.secrets_dir.clone()).await?;
    match cli.command {
        Command::Account {
            command: AccountCommand::Add { id, name, region },
        } => {
            let v = l
                .call(
                    "POST",
                    "/accounts",
                    Some(json!({"id": id, "name": name, "region": region})),
                )
                .await?;
            print(json_mode, &v, |v| {
                format!(
                    "account {} ({}) created in {}",
                    s(v, "id"),
                    s(v, "name"),
                    s(v, "region")
                )
            });
        }
        Command::Account {
            command: AccountCommand::List,
        } => {
            let v = l.call("GET", "/accounts?limit=1000", None).await?;
            print(json_mode, &v, |v| {
                let mut rows = vec![vec!["ACCOUNT".into(), "NAME".into(), "REGION".into()]];
                for a in v["accounts"].as_array().into_iter().flatten() {
                    rows.push(vec![s(a, "id"), s(a, "name"), s(a, "region")]);
                }
                table(&rows)
            });
        }
        Command::Account {
            command: AccountCommand::Show { id },
        } => {
            let v = l.call("GET", &format!("/accounts/{id}"), None).await?;
            print(json_mode, &v, |v| {
                format!(
                    "{} ({}), region {}, since {}",
                    s(v, "id"),
                    s(v, "name"),
                    s(v, "region"),
                    s(v, "created_at")
                )
            });
        }
        Command::Account {
            command: AccountCommand::Access(command),
        } => access::grants(&l, json_mode, command).await?,
        Command::Audit { account, limit } => access::audit(&l, json_mode, &account, limit).await?,
        Command::Connector { command } => connector(&l, json_mode, command).await?,
        Command::Test { account, connector } => {
            let v = l
                .call(
                    "POST",
                    &format!("/accounts/{account}/connectors/{connector}/test"),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                v["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|st| {
                        format!(
                            "{} {}: {}",
                            if st["ok"] == true { "ok  " } else { "FAIL" },
                            s(st, "name"),
                            s(st, "detail")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            if v["ok"] != true {
                return Err(Failure(1, "the connection test failed (see above)".into()));
            }
        }
        Command::Sync {
            account,
            connector,
            full,
            dry_run,
        } => sync(&l, json_mode, &account, &connector, full, dry_run).await?,
        Command::Runs {
            command:
                RunsCommand::List {
                    account,
                    connector,
                    limit,
                },
        } => {
            let v = l
                .call(
                    "GET",
                    &format!("/accounts/{account}/connectors/{connector}/runs?limit={limit}"),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                let mut rows = vec![vec![
                    "RUN".into(),
                    "STATUS".into(),
                    "MODE".into(),
                    "STARTED".into(),
                    "CREATED".into(),
                    "REMOVED".into(),
                ]];
                for r in v["runs"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        s(r, "id"),
                        s(r, "status"),
                        s(r, "mode"),
                        s(r, "started_at"),
                        r["counts"]["created"].to_string(),
                        r["counts"]["removed"].to_string(),
                    ]);
                }
                table(&rows)
            });
        }
        Command::Runs {
            command:
                RunsCommand::Show {
                    account,
                    connector,
                    run,
                },
        } => {
            let v = l
                .call(
                    "GET",
                    &format!("/accounts/{account}/connectors/{connector}/runs/{run}"),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                let mut out = run_line(&v["run"]);
                for a in v["staged_actions"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "\n  {} {} {}: {}",
                        s(a, "action"),
                        s(a, "object_type"),
                        s(a, "label"),
                        s(a, "reason")
                    ));
                }
                out
            });
        }
        Command::Approve {
            account,
            connector,
            run,
        } => review(&l, json_mode, &account, &connector, &run, "approve").await?,
        Command::Reject {
            account,
            connector,
            run,
        } => review(&l, json_mode, &account, &connector, &run, "reject").await?,
        Command::Consent {
            command: ConsentCommand::Start { account, connector },
        } => {
            let v = l
                .call(
                    "POST",
                    &format!("/accounts/{account}/connectors/{connector}/consent"),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                format!(
                    "Send a Global Administrator of the tenant to:\n{}\n(valid until {})",
                    s(v, "consent_url"),
                    s(v, "expires_at")
                )
            });
        }
        Command::Password {
            command:
                PasswordCommand::Set {
                    account,
                    connector,
                    from_file,
                    force,
                },
        } => {
            let value = match from_file {
                Some(f) => std::fs::read_to_string(&f)
                    .map_err(|e| Failure(2, format!("cannot read {}: {e}", f.display())))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| Failure(2, e.to_string()))?;
                    line
                }
            };
            let value = value.trim_end_matches(['\r', '\n']).to_owned();
            // The secret is given for the connector as read now.
            let path = format!("/accounts/{account}/connectors/{connector}");
            let c = l.call("GET", &path, None).await?;
            let v = l
                .call(
                    "PUT",
                    &format!("{path}/secret"),
                    Some(json!({"value": value, "version": c["version"], "force": force})),
                )
                .await?;
            print(json_mode, &v, |v| {
                format!(
                    "stored; connection test {}",
                    if v["test"]["ok"] == true {
                        "passed"
                    } else {
                        "FAILED"
                    }
                )
            });
            if v["test"]["ok"] != true {
                return Err(Failure(
                    1,
                    "the secret was stored but the connection test failed".into(),
                ));
            }
        }
        Command::User { account, address } => {
            let v = l
                .call(
                    "GET",
                    &format!(
                        "/accounts/{account}/users?address={}",
                        url::form_urlencoded::byte_serialize(address.as_bytes())
                            .collect::<String>()
                    ),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                let u = &v["user"];
                format!(
                    "{} <{}> in connector {}; enabled: {}; aliases: {}",
                    s(u, "display_name"),
                    s(u, "primary_email"),
                    s(v, "connector"),
                    u["enabled"],
                    u["aliases"]
                )
            });
        }
        Command::Groups {
            account,
            connector,
            user,
        } => {
            let v = l
                .call(
                    "GET",
                    &format!(
                        "/accounts/{account}/connectors/{connector}/users/{user}/groups?limit=1000"
                    ),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                v["memberships"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| s(m, "group"))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Members {
            account,
            connector,
            group,
        } => {
            let v = l.call("GET", &format!("/accounts/{account}/connectors/{connector}/groups/{group}/members?limit=1000"), None).await?;
            print(json_mode, &v, |v| {
                v["memberships"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| format!("{} ({})", s(m, "member"), s(m, "member_kind")))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Export { account, connector } => {
            let scope = Scope::new(
                AccountId::new(account).map_err(|e| Failure(2, e.to_string()))?,
                ConnectorId::new(connector).map_err(|e| Failure(2, e.to_string()))?,
            );
            let store = &l.app.store;
            let users = all_pages(|p| store.list_users(&scope, p))
                .await
                .map_err(|e| e.to_string())?;
            let groups = all_pages(|p| store.list_groups(&scope, p))
                .await
                .map_err(|e| e.to_string())?;
            let mut memberships = Vec::new();
            for g in &groups {
                memberships.extend(
                    all_pages(|p| store.group_members(&scope, &g.id, p))
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"users": users, "groups": groups, "memberships": memberships})
                )
                .unwrap_or_default()
            );
        }
        Command::Serve { port } => serve::run(l, port).await?,
        Command::Demo { .. } | Command::Cert { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// Approves or rejects a staged run (`decision` is the API's verb).
async fn review(
    l: &local::Local,
    json_mode: bool,
    account: &str,
    connector: &str,
    run: &str,
    decision: &str,
) -> Result<(), Failure> {
    let v = l
        .call(
            "POST",
            &format!("/accounts/{account}/connectors/{connector}/runs/{run}/{decision}"),
            None,
        )
        .await?;
    print(json_mode, &v, |v| s(v, "message"));
    Ok(())
}

async fn connector(
    l: &local::Local,
    json_mode: bool,
    command: ConnectorCommand,
) -> Result<(), Failure> {
    match command {
        ConnectorCommand::Add {
            account,
            spec,
            secret_file,
        } => {
            let text = if spec.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| Failure(2, e.to_string()))?
            } else {
                std::fs::read_to_string(&spec)
                    .map_err(|e| Failure(2, format!("cannot read {}: {e}", spec.display())))?
            };
            let spec: Value = serde_json::from_str(&text)
                .map_err(|e| Failure(2, format!("the spec is not JSON: {e}")))?;
            let secret = secret_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .map_err(|e| Failure(2, format!("cannot read {}: {e}", f.display())))
                })
                .transpose()?;
            let v = l
                .call(
                    "POST",
                    &format!("/accounts/{account}/connectors"),
                    Some(json!({"connector": spec, "secret": secret})),
                )
                .await?;
            print(json_mode, &v, |v| {
                format!(
                    "connector {}/{} ({}) created",
                    s(v, "account"),
                    s(v, "id"),
                    s(&v["source"], "kind")
                )
            });
        }
        ConnectorCommand::List { account } => {
            let v = l
                .call("GET", &format!("/accounts/{account}/connectors"), None)
                .await?;
            print(json_mode, &v, |v| {
                let mut rows = vec![vec![
                    "CONNECTOR".into(),
                    "KIND".into(),
                    "STATE".into(),
                    "DOMAINS".into(),
                ]];
                for c in v["connectors"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        s(c, "id"),
                        s(&c["source"], "kind"),
                        s(c, "state"),
                        s(&c["options"], "email_domains"),
                    ]);
                }
                table(&rows)
            });
        }
        ConnectorCommand::Show { account, connector } => {
            let v = l
                .call(
                    "GET",
                    &format!("/accounts/{account}/connectors/{connector}"),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                serde_json::to_string_pretty(v).unwrap_or_default()
            });
        }
        ConnectorCommand::Update {
            account,
            connector,
            enabled,
            acknowledge_disabled,
            email_domains,
            description,
        } => {
            let path = format!("/accounts/{account}/connectors/{connector}");
            let current = l.call("GET", &path, None).await?;
            let mut patch = json!({"version": current["version"]});
            if let Some(e) = enabled {
                patch["enabled"] = json!(e);
            }
            if let Some(a) = acknowledge_disabled {
                patch["acknowledge_disabled"] = json!(a);
            }
            if let Some(d) = email_domains {
                patch["email_domains"] = json!(d);
            }
            if let Some(d) = description {
                patch["description"] = json!(d);
            }
            let v = l.call("PATCH", &path, Some(patch)).await?;
            print(json_mode, &v, |v| {
                format!(
                    "connector {} updated (version {})",
                    s(v, "id"),
                    v["version"]
                )
            });
        }
        ConnectorCommand::Remove { account, connector } => {
            let v = l
                .call(
                    "DELETE",
                    &format!("/accounts/{account}/connectors/{connector}"),
                    None,
                )
                .await?;
            print(json_mode, &v, |v| {
                format!(
                    "connector {} removed with its synced directory",
                    s(v, "deleted")
                )
            });
        }
    }
    Ok(())
}

async fn sync(
    l: &local::Local,
    json_mode: bool,
    account: &str,
    connector: &str,
    full: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    if dry_run {
        let c = l
            .app
            .store
            .get_connector(
                &AccountId::new(account).map_err(|e| Failure(2, e.to_string()))?,
                &ConnectorId::new(connector).map_err(|e| Failure(2, e.to_string()))?,
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| Failure(2, format!("connector {account}/{connector} does not exist")))?;
        let source = l
            .app
            .sources
            .source_for(&c)
            .map_err(|e| Failure(1, e.to_string()))?;
        let request = RunRequest {
            full,
            dry_run: true,
            ..RunRequest::new(Trigger::Manual { requested_by: None })
        };
        let RunOutcome::DryRun {
            run,
            plan,
            truncated,
        } = l
            .app
            .engine
            .run(&c, source.as_ref(), request)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err(Failure(4, "the engine did not return a plan".into()));
        };
        let v = json!({"run": run, "plan": plan, "truncated": truncated});
        print(json_mode, &v, |v| {
            let mut out: Vec<String> = v["plan"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{:<8} {:<10} {}: {}",
                        s(p, "action"),
                        s(p, "object_type"),
                        s(p, "label"),
                        s(p, "reason")
                    )
                })
                .collect();
            out.push(run_line(&v["run"]));
            out.join("\n")
        });
        return Ok(());
    }
    l.call(
        "POST",
        &format!("/accounts/{account}/connectors/{connector}/sync"),
        Some(json!({"full": full})),
    )
    .await?;
    eprintln!("syncing {account}/{connector}…");
    let runs = l.run_queued().await.map_err(|e| Failure(1, e))?;
    let Some(run) = runs.last() else {
        return Err(Failure(4, "no run was recorded".into()));
    };
    let v = json!(run);
    print(json_mode, &v, run_line);
    match run.status {
        RunStatus::Failed => Err(Failure(1, "the run failed (see its message)".into())),
        RunStatus::Staged => Err(Failure(
            3,
            format!(
                "the run is staged for review: dirsync runs show {account} {connector} {}",
                run.id
            ),
        )),
        _ => Ok(()),
    }
}

async fn cert_bootstrap(
    secret: &str,
    local: bool,
    dir: &std::path::Path,
    out: &std::path::Path,
    days: i64,
    force: bool,
) -> Result<(), Failure> {
    let name: SecretRef = secret
        .parse()
        .map_err(|e| Failure(2, format!("--secret: {e}")))?;
    if !(1..=365).contains(&days) {
        return Err(Failure(2, "--days must be between 1 and 365".into()));
    }
    let store: Box<dyn SecretStore> = if local {
        Box::new(LocalSecretStore::with_dir(dir))
    } else {
        Box::new(SecretsManagerStore::from_env().await)
    };
    if !force && store.current(&name).await.is_ok() {
        return Err(Failure(
            2,
            format!(
                "{} already holds a certificate; the daily rotation renews it. Use --force to replace it \
                 (then upload the new certificate to the app registration)",
                name.as_str()
            ),
        ));
    }
    let cert = bootstrap(
        store.as_ref(),
        &name,
        chrono::Utc::now(),
        chrono::Duration::days(days),
    )
    .await
    .map_err(|e| e.to_string())?;
    std::fs::write(out, &cert.stored.certificate_pem)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "Stored a new RSA key and certificate in {} (current version).",
        name.as_str()
    );
    println!(
        "Thumbprint (SHA-1): {}",
        cert.stored.thumbprint_sha1.to_uppercase()
    );
    println!("Valid until: {}", cert.stored.not_after);
    println!(
        "Next: upload {} to the app registration (Azure portal → App registrations → the platform app → \
         Certificates & secrets → Certificates → Upload certificate). From then on the rotation function \
         renews it every day.",
        out.display()
    );
    Ok(())
}

async fn cert_rotate(local: bool, dir: &std::path::Path) -> Result<(), Failure> {
    let rotator = if local {
        dirsync_shared::app::config::rotator_with(std::sync::Arc::new(LocalSecretStore::with_dir(
            dir,
        )))
    } else {
        dirsync_shared::app::config::rotator_from_env().await
    }
    .map_err(|e| Failure(2, e.to_string()))?;
    let token = uuid::Uuid::new_v4().to_string();
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let event = dirsync_shared::app::rotation::RotationEvent {
            secret_id: rotator.app.certificate.as_str().to_owned(),
            token: token.clone(),
            step: step.into(),
        };
        rotator.step(&event).await.map_err(|e| {
            Failure(
                1,
                format!("{step}: {e}; the current certificate stays in use"),
            )
        })?;
        eprintln!("{step}: done");
    }
    println!(
        "rotated: version {token} is current; the app keeps the current and previous certificates"
    );
    Ok(())
}
