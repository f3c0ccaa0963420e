//! `dirsync runs …`, `dirsync approve` and `dirsync reject`: a connector's
//! runs, and the review of a staged one.

use clap::Subcommand;
use dirsync_shared::domain::{RunStatus, SyncRun};

use super::Ctx;
use crate::client::RunView;
use crate::exit::{Failure, Outcome};
use crate::out::{code, show, table};

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

/// How many warnings or staged actions the text lists (`--json` has all).
const SHOWN: usize = 10;

/// A run: what it was and did, its message, its first warnings.
pub fn run_text(r: &SyncRun) -> String {
    let mut text = format!(
        "{} {} {}: {}",
        r.id,
        r.status.code(),
        code(&r.mode),
        r.counts
    );
    if let Some(m) = &r.message {
        text.push('\n');
        text.push_str(m);
    }
    for w in r.warnings.iter().take(SHOWN) {
        text.push_str(&format!(
            "\n  warning {}: {} {}",
            code(&w.kind),
            w.object,
            w.detail
        ));
    }
    text.push_str(&more(r.warnings_total as usize, SHOWN, "warnings"));
    text
}

/// "… N more" when a list of `total` shows only `shown`.
fn more(total: usize, shown: usize, what: &str) -> String {
    if total > shown {
        format!(
            "\n  … {} more {what} (--json lists them all)",
            total - shown
        )
    } else {
        String::new()
    }
}

/// A time to the second, as people read it.
fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
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
                        code(&r.mode),
                        when(&r.started_at),
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
            show(ctx.json, &view, |v| staged_text(v, &account, &connector));
        }
    }
    Ok(())
}

/// A run with, when staged, its actions counted per object type, the
/// first of them, and how to review it.
fn staged_text(v: &RunView, account: &str, connector: &str) -> String {
    let mut out = run_text(&v.run);
    if !v.summary.is_empty() {
        let rows = v
            .summary
            .iter()
            .map(|t| [t.action.clone(), t.object_type.clone(), t.count.to_string()]);
        out.push_str("\n\n");
        out.push_str(&table(["ACTION", "OBJECT", "COUNT"], rows));
    }
    for a in v.staged_actions.iter().take(SHOWN) {
        out.push_str(&format!(
            "\n  {} {} {}: {}",
            code(&a.action),
            a.object_type,
            a.label,
            a.reason
        ));
    }
    out.push_str(&more(v.staged_actions.len(), SHOWN, "actions"));
    if v.run.status == RunStatus::Staged {
        let id = &v.run.id;
        out.push_str(&format!(
            "\n\nReview it: dirsync approve {account} {connector} {id}  (or dirsync reject …)"
        ));
    }
    out
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
