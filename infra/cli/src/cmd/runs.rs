//! `dirsync runs …`, `dirsync approve` and `dirsync reject`: a connector's
//! runs, and the review of a staged one.

use clap::Subcommand;
use dirsync_shared::domain::{RunStatus, SyncRun};

use super::Ctx;
use crate::exit::{Failure, Outcome};
use crate::out::{show, table};

#[derive(Subcommand)]
pub enum RunsCommand {
    List {
        account: String,
        connector: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A run; a staged one with its actions, counted per object type.
    Show {
        account: String,
        connector: String,
        run: String,
    },
}

/// A run in two lines: what it was and did, then its message.
pub fn run_text(r: &SyncRun) -> String {
    let c = &r.counts;
    let mut text = format!(
        "{} {} {}: {} created, {} updated, {} enabled, {} disabled, {} removed, {} unchanged, {} skipped; \
         memberships +{} -{}",
        r.id,
        r.status.code(),
        crate::out::code(&r.mode),
        c.created,
        c.updated,
        c.enabled,
        c.disabled,
        c.removed,
        c.unchanged,
        c.skipped,
        c.members_added,
        c.members_removed,
    );
    if let Some(m) = &r.message {
        text.push('\n');
        text.push_str(m);
    }
    for w in &r.warnings {
        text.push_str(&format!(
            "\n  warning {}: {} {}",
            crate::out::code(&w.kind),
            w.object,
            w.detail
        ));
    }
    text
}

pub async fn run(ctx: &Ctx<'_>, command: RunsCommand) -> Outcome {
    match command {
        RunsCommand::List {
            account,
            connector,
            limit,
        } => {
            let runs = ctx.api.runs(&account, &connector, limit).await?;
            show(ctx.json, &runs, |runs| {
                let rows = runs.runs.iter().map(|r| {
                    [
                        r.id.to_string(),
                        r.status.code().to_owned(),
                        crate::out::code(&r.mode),
                        r.started_at.to_rfc3339(),
                        r.counts.created.to_string(),
                        r.counts.removed.to_string(),
                    ]
                });
                table(
                    ["RUN", "STATUS", "MODE", "STARTED", "CREATED", "REMOVED"],
                    rows,
                )
            });
        }
        RunsCommand::Show {
            account,
            connector,
            run,
        } => {
            let view = ctx.api.run(&account, &connector, &run).await?;
            show(ctx.json, &view, |v| {
                let mut out = run_text(&v.run);
                if !v.summary.is_empty() {
                    let rows = v
                        .summary
                        .iter()
                        .map(|t| [t.action.clone(), t.object_type.clone(), t.count.to_string()]);
                    out.push_str("\n\n");
                    out.push_str(&table(["ACTION", "OBJECT", "COUNT"], rows));
                }
                for a in &v.staged_actions {
                    out.push_str(&format!(
                        "\n  {} {} {}: {}",
                        crate::out::code(&a.action),
                        a.object_type,
                        a.label,
                        a.reason
                    ));
                }
                if v.run.status == RunStatus::Staged {
                    out.push_str(&format!(
                        "\n\nReview it: dirsync approve {account} {connector} {run}  (or dirsync reject …)"
                    ));
                }
                out
            });
        }
    }
    Ok(())
}

/// Approves or rejects a staged run.
pub async fn review(
    ctx: &Ctx<'_>,
    account: &str,
    connector: &str,
    run: &str,
    approve: bool,
) -> Outcome {
    let r = ctx.api.review(account, connector, run, approve).await?;
    show(ctx.json, &r, run_text);
    if r.status == RunStatus::Failed {
        return Err(Failure::failed("the approval failed (see its message)"));
    }
    Ok(())
}
