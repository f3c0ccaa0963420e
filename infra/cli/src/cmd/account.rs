//! `dirsync account …` and `dirsync audit`: customer accounts, who may act
//! for them, and what was done to them.

use clap::Subcommand;

use super::Ctx;
use crate::exit::Outcome;
use crate::out::{cell, code, show, table};

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account.
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
    /// Change the account-wide hold: while one connector is paused or its
    /// last run failed, removals of every connector are staged.
    Update {
        id: String,
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        hold_on_connector_trouble: bool,
    },
    /// Let an IAM principal (role, role session or user ARN) act for the account.
    Grant {
        account: String,
        principal: String,
    },
    /// End a principal's access to the account.
    Revoke {
        account: String,
        principal: String,
    },
    /// The principals granted on the account.
    Grants {
        account: String,
    },
}

pub async fn run(ctx: &Ctx<'_>, command: AccountCommand) -> Outcome {
    let json = ctx.json;
    match command {
        AccountCommand::Add { id, name, region } => {
            let a = ctx.api.create_account(&id, &name, &region).await?;
            show(json, &a, |a| {
                format!(
                    "account {} ({}) created in {}",
                    a.id,
                    a.name,
                    a.region.code()
                )
            });
        }
        AccountCommand::List => {
            let all = ctx.api.accounts().await?;
            show(json, &all, |all| {
                let rows = all
                    .accounts
                    .iter()
                    .map(|a| [a.id.to_string(), a.name.clone(), a.region.code().to_owned()]);
                table(["ACCOUNT", "NAME", "REGION"], rows)
            });
        }
        AccountCommand::Show { id } => {
            let a = ctx.api.account(&id).await?;
            show(json, &a, |a| {
                format!(
                    "{} ({}), region {}, since {}",
                    a.id,
                    a.name,
                    a.region.code(),
                    a.created_at
                )
            });
        }
        AccountCommand::Update {
            id,
            hold_on_connector_trouble,
        } => {
            let a = ctx
                .api
                .change_account(&id, hold_on_connector_trouble)
                .await?;
            show(json, &a, |a| {
                format!(
                    "account {}: hold on connector trouble {}",
                    a.id, a.hold_on_connector_trouble
                )
            });
        }
        AccountCommand::Grant { account, principal } => {
            let g = ctx.api.grant(&account, &principal).await?;
            show(json, &g, |g| {
                format!("{} may act for account {}", g.principal, g.account)
            });
        }
        AccountCommand::Revoke { account, principal } => {
            let g = ctx.api.revoke(&account, &principal).await?;
            show(json, &g, |g| {
                format!(
                    "{} may no longer act for account {}",
                    g.principal, g.account
                )
            });
        }
        AccountCommand::Grants { account } => {
            let g = ctx.api.grants(&account).await?;
            show(json, &g, |g| g.principals.join("\n"));
        }
    }
    Ok(())
}

/// The account's audit trail, newest first.
pub async fn audit(ctx: &Ctx<'_>, account: &str, limit: u32) -> Outcome {
    let trail = ctx.api.audit(account, limit).await?;
    show(ctx.json, &trail, |t| {
        let rows = t.records.iter().map(|r| {
            [
                r.at.to_rfc3339(),
                r.caller.clone(),
                code(&r.action),
                cell(&r.connector),
                code(&r.outcome),
                r.detail.clone(),
            ]
        });
        table(
            ["TIME", "CALLER", "ACTION", "CONNECTOR", "OUTCOME", "DETAIL"],
            rows,
        )
    });
    Ok(())
}
