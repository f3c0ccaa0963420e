//! `dirsync connector …`, `dirsync test` and `dirsync password set`: a
//! connector's settings, its deletion guard and its secret.

use std::path::PathBuf;

use clap::Subcommand;
use dirsync_shared::domain::GUARD_SETTINGS;
use dirsync_shared::source::ConnectionReport;
use serde_json::{Map, Value, json};

use super::{Ctx, read_input};
use crate::exit::{Failure, Outcome};
use crate::out::{code, show, table};

#[derive(Subcommand)]
pub enum ConnectorCommand {
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
    /// The deletion guard's limits; `--set NAME=VALUE` changes them.
    Guard {
        account: String,
        connector: String,
        /// e.g. max_user_removals=50 or max_user_removals_percent=10; repeatable.
        #[arg(long, value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    Remove {
        account: String,
        connector: String,
    },
}

#[derive(Subcommand)]
pub enum PasswordCommand {
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

pub async fn run(ctx: &Ctx<'_>, command: ConnectorCommand) -> Outcome {
    let json = ctx.json;
    match command {
        ConnectorCommand::Add {
            account,
            spec,
            secret_file,
        } => {
            let spec: Value = serde_json::from_str(&read_input(&spec)?)
                .map_err(|e| Failure::refused(format!("the spec is not JSON: {e}")))?;
            let secret = secret_file.map(|f| read_input(&f)).transpose()?;
            let c = ctx.api.create_connector(&account, spec, secret).await?;
            show(json, &c, |c| {
                format!(
                    "connector {}/{} ({}) created",
                    c.account,
                    c.id,
                    c.kind().code()
                )
            });
        }
        ConnectorCommand::List { account } => {
            let all = ctx.api.connectors(&account).await?;
            show(json, &all, |all| {
                let rows = all.connectors.iter().map(|c| {
                    [
                        c.id.to_string(),
                        c.kind().code().to_owned(),
                        code(&c.state),
                        code(&c.options.email_domains),
                    ]
                });
                table(["CONNECTOR", "KIND", "STATE", "DOMAINS"], rows)
            });
        }
        ConnectorCommand::Show { account, connector } => {
            let c = ctx.api.connector(&account, &connector).await?;
            show(json, &c, |c| {
                serde_json::to_string_pretty(c).unwrap_or_default()
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
            let mut patch = Map::new();
            let settings = [
                ("enabled", enabled.map(|v| json!(v))),
                (
                    "acknowledge_disabled",
                    acknowledge_disabled.map(|v| json!(v)),
                ),
                ("email_domains", email_domains.map(|v| json!(v))),
                ("description", description.map(|v| json!(v))),
            ];
            for (name, value) in settings {
                if let Some(v) = value {
                    patch.insert(name.into(), v);
                }
            }
            let c = ctx
                .api
                .change_connector(&account, &connector, patch)
                .await?;
            show(json, &c, |c| {
                format!("connector {} updated (version {})", c.id, c.version)
            });
        }
        ConnectorCommand::Guard {
            account,
            connector,
            set,
        } => guard(ctx, &account, &connector, &set).await?,
        ConnectorCommand::Remove { account, connector } => {
            let v = ctx.api.delete_connector(&account, &connector).await?;
            show(json, &v, |_| {
                format!("connector {connector} removed with its synced directory")
            });
        }
    }
    Ok(())
}

/// Shows the deletion guard's limits, after changing those `set` names.
async fn guard(ctx: &Ctx<'_>, account: &str, connector: &str, set: &[String]) -> Outcome {
    let mut patch = Map::new();
    for s in set {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| Failure::refused(format!("--set {s}: give NAME=VALUE")))?;
        if !GUARD_SETTINGS.iter().any(|(n, _)| *n == name) {
            let names: Vec<&str> = GUARD_SETTINGS.iter().map(|(n, _)| *n).collect();
            return Err(Failure::refused(format!(
                "--set {name}: not a guard limit; use one of {}",
                names.join(", ")
            )));
        }
        let value: u64 = value.parse().map_err(|_| {
            Failure::refused(format!("--set {name}: {value:?} is not a whole number"))
        })?;
        patch.insert(name.into(), json!(value));
    }
    let c = if patch.is_empty() {
        ctx.api.connector(account, connector).await?
    } else {
        ctx.api.change_connector(account, connector, patch).await?
    };
    let guard = &c.options.deletion_guard;
    let limits: Map<String, Value> = GUARD_SETTINGS
        .iter()
        .map(|(name, _)| ((*name).to_owned(), json!(guard.get(name))))
        .collect();
    show(ctx.json, &limits, |_| {
        let rows = GUARD_SETTINGS.iter().map(|(name, what)| {
            let v = guard.get(name).map_or("-".into(), |v| v.to_string());
            [(*name).to_owned(), v, (*what).to_owned()]
        });
        table(["LIMIT", "VALUE", "STAGES A RUN WHEN MORE ARE"], rows)
    });
    Ok(())
}

/// Each step of a connection test, the failed ones with their reason.
pub fn report_text(r: &ConnectionReport) -> String {
    r.steps
        .iter()
        .map(|s| {
            format!(
                "{} {}: {}",
                if s.ok { "ok  " } else { "FAIL" },
                s.name,
                s.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn test(ctx: &Ctx<'_>, account: &str, connector: &str) -> Outcome {
    let report = ctx.api.test(account, connector).await?;
    show(ctx.json, &report, report_text);
    if report.ok {
        Ok(())
    } else {
        Err(Failure::failed("the connection test failed (see above)"))
    }
}

pub async fn password(ctx: &Ctx<'_>, command: PasswordCommand) -> Outcome {
    let PasswordCommand::Set {
        account,
        connector,
        from_file,
        force,
    } = command;
    let value = match from_file {
        Some(f) => read_input(&f)?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::refused(e.to_string()))?;
            line
        }
    };
    let value = value.trim_end_matches(['\r', '\n']).to_owned();
    let set = ctx
        .api
        .set_secret(&account, &connector, value, force)
        .await?;
    show(ctx.json, &set, |s| {
        format!("stored; connection test:\n{}", report_text(&s.test))
    });
    if set.test.ok {
        Ok(())
    } else {
        let why = set
            .test
            .steps
            .iter()
            .find(|s| !s.ok)
            .map_or("", |s| s.detail.as_str());
        Err(Failure::failed(format!(
            "the secret was stored but the connection test failed: {why}"
        )))
    }
}
