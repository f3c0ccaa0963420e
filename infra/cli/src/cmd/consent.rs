//! `dirsync consent …` and `dirsync migrate`: admin consent for the
//! platform app, and moving a legacy connector onto it.

use clap::Subcommand;
use dirsync_shared::domain::{Consent, SourceConfig};
use serde::Serialize;

use super::Ctx;
use crate::exit::{Failure, Outcome};
use crate::out::show;

#[derive(Subcommand)]
pub enum ConsentCommand {
    /// Print the URL to send a Global Administrator to.
    Start { account: String, connector: String },
    /// Whether consent was granted, for which tenant, when and by whom.
    Status { account: String, connector: String },
    /// Name another tenant (a domain or its id) before consent is granted.
    Tenant {
        account: String,
        connector: String,
        tenant: String,
    },
}

/// Where a connector stands with consent.
#[derive(Serialize)]
struct Status {
    /// `granted`, `pending`, `legacy` (an app registration of its own:
    /// migrate it) or `none` (not an Entra connector).
    state: &'static str,
    tenant: Option<String>,
    granted_at: Option<String>,
    started_by: Option<String>,
    migrated_from: Option<String>,
}

fn status_of(source: &SourceConfig) -> Status {
    let none = |state| Status {
        state,
        tenant: None,
        granted_at: None,
        started_by: None,
        migrated_from: None,
    };
    match source {
        SourceConfig::EntraConsent {
            consent:
                Consent::Granted {
                    tenant_id,
                    granted_at,
                    started_by,
                    migrated_from,
                    ..
                },
            ..
        } => Status {
            state: "granted",
            tenant: Some(tenant_id.to_string()),
            granted_at: Some(granted_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            started_by: started_by.clone(),
            migrated_from: migrated_from.map(|m| m.to_string()),
        },
        SourceConfig::EntraConsent { tenant, .. } => Status {
            tenant: tenant.clone(),
            ..none("pending")
        },
        SourceConfig::EntraLegacy { tenant_domain, .. } => Status {
            tenant: Some(tenant_domain.to_string()),
            ..none("legacy")
        },
        _ => none("none"),
    }
}

fn status_text(s: &Status, account: &str, connector: &str) -> String {
    let tenant = s.tenant.as_deref().unwrap_or("-");
    match s.state {
        "granted" => format!(
            "consent granted for tenant {tenant} on {}{}{}",
            s.granted_at.as_deref().unwrap_or("-"),
            s.started_by
                .as_ref()
                .map_or(String::new(), |b| format!(", started by {b}")),
            s.migrated_from.as_ref().map_or(String::new(), |m| format!(
                "; migrated from app registration {m}"
            ))
        ),
        "pending" => format!(
            "waiting for consent (tenant {tenant}): dirsync consent start {account} {connector}"
        ),
        "legacy" => format!(
            "legacy app registration (tenant {tenant}): move it to consent with dirsync migrate {account} {connector}"
        ),
        _ => "not an Entra connector: it has no consent".into(),
    }
}

pub async fn run(ctx: &Ctx<'_>, command: ConsentCommand) -> Outcome {
    match command {
        ConsentCommand::Start { account, connector } => {
            start(ctx, &account, &connector, false).await
        }
        ConsentCommand::Tenant {
            account,
            connector,
            tenant,
        } => {
            let changed = ctx.api.change_tenant(&account, &connector, &tenant).await?;
            show(ctx.json, &changed, |_| {
                format!("{account}/{connector} now waits for consent from tenant {tenant}")
            });
            Ok(())
        }
        ConsentCommand::Status { account, connector } => {
            let c = ctx.api.connector(&account, &connector).await?;
            let status = status_of(&c.source);
            show(ctx.json, &status, |s| status_text(s, &account, &connector));
            if status.state == "none" {
                return Err(Failure::refused(format!(
                    "{account}/{connector} is a {} connector, which has no consent",
                    c.kind().code()
                )));
            }
            Ok(())
        }
    }
}

/// Starts consent (`migrate`: of a legacy connector) and prints where to
/// send the administrator.
pub async fn start(ctx: &Ctx<'_>, account: &str, connector: &str, migrate: bool) -> Outcome {
    let started = ctx.api.consent(account, connector, migrate).await?;
    show(ctx.json, &started, |s| {
        let then = if migrate {
            "Once they consent, the connector reads with the platform app and no longer needs its \
             client secret; until then it keeps syncing as it does now."
        } else {
            "Once they consent, the connector syncs in its next window."
        };
        format!(
            "Send a Global Administrator of the tenant to:\n{}\n(valid until {})\n{then}\n\
             Check with: dirsync consent status {account} {connector}",
            s.consent_url, s.expires_at
        )
    });
    Ok(())
}
