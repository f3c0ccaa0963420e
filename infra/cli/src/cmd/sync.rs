//! `dirsync sync`: a run now, here, or its plan without writing anything.

use dirsync_shared::domain::{RunStatus, Trigger};
use dirsync_shared::engine::{RunOutcome, RunRequest};
use serde_json::json;

use super::Ctx;
use super::runs::run_text;
use crate::exit::{Exit, Failure, Outcome};
use crate::out::{code, show, table};

pub async fn run(
    ctx: &Ctx<'_>,
    account: &str,
    connector: &str,
    full: bool,
    dry_run: bool,
) -> Outcome {
    if dry_run {
        return plan(ctx, account, connector, full).await;
    }
    ctx.api.sync_now(account, connector, full).await?;
    eprintln!("syncing {account}/{connector}…");
    let runs = ctx.local.run_queued().await.map_err(Failure::failed)?;
    let run = runs
        .last()
        .ok_or_else(|| Failure::internal("no run was recorded"))?;
    show(ctx.json, run, run_text);
    match run.status {
        RunStatus::Failed => Err(Failure::failed("the run failed (see its message)")),
        RunStatus::Staged => Err(Failure::new(
            Exit::Staged,
            format!(
                "the run is staged for review: dirsync runs show {account} {connector} {}",
                run.id
            ),
        )),
        _ => Ok(()),
    }
}

/// Every action a run would take, users, groups and memberships alike.
async fn plan(ctx: &Ctx<'_>, account: &str, connector: &str, full: bool) -> Outcome {
    let c = ctx.api.connector(account, connector).await?;
    let app = &ctx.local.app;
    let source = app
        .sources
        .source_for(&c)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let request = RunRequest {
        full,
        dry_run: true,
        ..RunRequest::new(Trigger::Manual { requested_by: None })
    };
    let outcome = app
        .engine
        .run(&c, source.as_ref(), request)
        .await
        .map_err(Failure::internal)?;
    let RunOutcome::DryRun {
        run,
        plan,
        truncated,
    } = outcome
    else {
        return Err(Failure::internal("the engine did not return a plan"));
    };
    let v = json!({"run": run, "plan": plan, "truncated": truncated});
    show(ctx.json, &v, |_| {
        let rows = plan.iter().map(|p| {
            [
                code(&p.action),
                p.object_type.clone(),
                p.label.clone(),
                p.reason.clone(),
            ]
        });
        let mut out = table(["ACTION", "OBJECT", "LABEL", "REASON"], rows);
        if truncated {
            out.push_str("\n… the plan goes on (only its first entries are listed)");
        }
        out.push('\n');
        out.push_str(&run_text(&run));
        out
    });
    Ok(())
}
