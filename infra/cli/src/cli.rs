//! The command line: its model (clap) and which module runs each command.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::cmd::account::AccountCommand;
use crate::cmd::cert::CertCommand;
use crate::cmd::connector::{ConnectorCommand, PasswordCommand};
use crate::cmd::consent::ConsentCommand;
use crate::cmd::lookup::ListArgs;
use crate::cmd::runs::RunsCommand;
use crate::cmd::{self, Ctx};
use crate::exit::{Failure, Outcome};

#[derive(Parser)]
#[command(name = "dirsync", about = "Run and operate dirsync", version)]
pub struct Cli {
    /// Print data as JSON (the shapes docs/cli.md documents).
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
    /// Customer accounts, and who may act for them.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// An account's audit trail, newest first.
    Audit {
        account: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
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
        /// Show every action (users, groups, memberships) and its reason;
        /// write nothing.
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
    /// Move a legacy Entra connector (its own app registration and client
    /// secret) to admin consent for the platform app.
    Migrate { account: String, connector: String },
    /// The service-account password (or client secret) of a connector.
    Password {
        #[command(subcommand)]
        command: PasswordCommand,
    },
    /// A user: by any of their addresses in any connector of the account,
    /// or with --connector by id, address or name.
    User {
        account: String,
        user: String,
        #[arg(long)]
        connector: Option<String>,
    },
    /// A group of a connector, by id, address or name.
    Group {
        account: String,
        connector: String,
        group: String,
    },
    /// The groups a user (id, address or name) belongs to.
    Groups {
        account: String,
        connector: String,
        user: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// The members of a group (id, address or name).
    Members {
        account: String,
        connector: String,
        group: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// A connector's synced directory as JSON (users, groups, memberships).
    Export { account: String, connector: String },
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

impl Cli {
    pub async fn run(self) -> Outcome {
        match self.command {
            Command::Demo { users, dir } => {
                if !(10..=200_000).contains(&users) {
                    return Err(Failure::refused("--users must be between 10 and 200000"));
                }
                crate::demo::run(users, &dir)
                    .await
                    .map_err(Failure::internal)
            }
            Command::Cert { command } => cmd::cert::run(command, &self.secrets_dir).await,
            Command::Completions { shell } => {
                let mut command = Cli::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "dirsync", &mut script);
                crate::out::line(String::from_utf8_lossy(&script).trim_end());
                Ok(())
            }
            command => {
                let local = crate::local::open(&self.store, self.secrets_dir)
                    .await
                    .map_err(Failure::internal)?;
                let ctx = Ctx {
                    api: crate::client::Client(&local),
                    local: &local,
                    json: self.json,
                };
                let served = dispatch(&ctx, command).await;
                if let Some(port) = served? {
                    return crate::serve::run(local, port).await;
                }
                Ok(())
            }
        }
    }
}

/// Runs a command that works on the store; `serve` is handed back (it
/// takes the runtime over) as its port.
async fn dispatch(ctx: &Ctx<'_>, command: Command) -> Result<Option<u16>, Failure> {
    match command {
        Command::Account { command } => cmd::account::run(ctx, command).await?,
        Command::Audit { account, limit } => cmd::account::audit(ctx, &account, limit).await?,
        Command::Connector { command } => cmd::connector::run(ctx, command).await?,
        Command::Test { account, connector } => {
            cmd::connector::test(ctx, &account, &connector).await?
        }
        Command::Password { command } => cmd::connector::password(ctx, command).await?,
        Command::Sync {
            account,
            connector,
            full,
            dry_run,
        } => cmd::sync::run(ctx, &account, &connector, full, dry_run).await?,
        Command::Runs { command } => cmd::runs::run(ctx, command).await?,
        Command::Approve {
            account,
            connector,
            run,
        } => cmd::runs::review(ctx, &account, &connector, &run, true).await?,
        Command::Reject {
            account,
            connector,
            run,
        } => cmd::runs::review(ctx, &account, &connector, &run, false).await?,
        Command::Consent { command } => cmd::consent::run(ctx, command).await?,
        Command::Migrate { account, connector } => {
            cmd::consent::start(ctx, &account, &connector, true).await?
        }
        Command::User {
            account,
            user,
            connector,
        } => cmd::lookup::user(ctx, &account, connector.as_deref(), &user).await?,
        Command::Group {
            account,
            connector,
            group,
        } => cmd::lookup::group(ctx, &account, &connector, &group).await?,
        Command::Groups {
            account,
            connector,
            user,
            list,
        } => cmd::lookup::groups(ctx, &account, &connector, &user, &list).await?,
        Command::Members {
            account,
            connector,
            group,
            list,
        } => cmd::lookup::members(ctx, &account, &connector, &group, &list).await?,
        Command::Export { account, connector } => {
            cmd::lookup::export(ctx, &account, &connector).await?
        }
        Command::Serve { port } => return Ok(Some(port)),
        Command::Demo { .. } | Command::Cert { .. } | Command::Completions { .. } => {
            unreachable!("run without the store")
        }
    }
    Ok(None)
}
