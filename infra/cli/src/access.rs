//! `dirsync account grant|revoke|grants` and `dirsync audit`: who may act
//! for an account, and what was done to it.

use clap::Subcommand;
use serde_json::json;

use crate::local::Local;
use crate::{Failure, print, s, table};

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Let an IAM principal (role, role session or user ARN) act for the account.
    Grant { account: String, principal: String },
    /// End a principal's access to the account.
    Revoke { account: String, principal: String },
    /// The principals granted on the account.
    Grants { account: String },
}

pub async fn grants(l: &Local, json_mode: bool, command: GrantCommand) -> Result<(), Failure> {
    let path = |a: &str| format!("/accounts/{a}/grants");
    let v = match &command {
        GrantCommand::Grant { account, principal } => {
            l.call(
                "POST",
                &path(account),
                Some(json!({"principal": principal})),
            )
            .await?
        }
        GrantCommand::Revoke { account, principal } => {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("principal", principal)
                .finish();
            l.call("DELETE", &format!("{}?{q}", path(account)), None)
                .await?
        }
        GrantCommand::Grants { account } => l.call("GET", &path(account), None).await?,
    };
    print(json_mode, &v, |v| match command {
        GrantCommand::Grants { .. } => v["principals"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => format!(
            "{} {} for account {}",
            s(v, "principal"),
            if v["granted"] == true {
                "may act"
            } else {
                "may no longer act"
            },
            s(v, "account")
        ),
    });
    Ok(())
}

/// The account's audit trail, newest first.
pub async fn audit(l: &Local, json_mode: bool, account: &str, limit: u32) -> Result<(), Failure> {
    let v = l
        .call(
            "GET",
            &format!("/accounts/{account}/audit?limit={limit}"),
            None,
        )
        .await?;
    print(json_mode, &v, |v| {
        let mut rows = vec![
            ["TIME", "CALLER", "ACTION", "CONNECTOR", "OUTCOME", "DETAIL"]
                .map(String::from)
                .to_vec(),
        ];
        for r in v["records"].as_array().into_iter().flatten() {
            rows.push(
                ["at", "caller", "action", "connector", "outcome", "detail"]
                    .map(|k| s(r, k))
                    .to_vec(),
            );
        }
        table(&rows)
    });
    Ok(())
}
