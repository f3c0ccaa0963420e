//! A connector's runs and their review.

use axum::Extension;
use axum::extract::State;
use http::StatusCode;
use serde_json::json;

use crate::domain::RunStatus;
use crate::engine::summarize;

use super::super::{App, AppError, Caller};
use super::extract::{Ids, QueryParams};
use super::{Reply, ok};

/// Newest first.
pub(super) async fn list(State(app): State<App>, ids: Ids, q: QueryParams) -> Reply {
    let page = app.store.list_runs(&ids.scope()?, q.page()?).await?;
    ok(
        StatusCode::OK,
        json!({"runs": page.items, "next": page.next}),
    )
}

/// A run, with its itemised staged actions when it waits for review.
pub(super) async fn get(State(app): State<App>, ids: Ids) -> Reply {
    let (scope, id) = (ids.scope()?, ids.run()?);
    let r = app
        .store
        .get_run(&scope, &id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("run {id}")))?;
    let staged = if r.status == RunStatus::Staged {
        app.engine.staged_actions(&scope, &id).await?
    } else {
        Vec::new()
    };
    ok(
        StatusCode::OK,
        json!({"run": r, "summary": summarize(&staged), "staged_actions": staged}),
    )
}

pub(super) async fn approve(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ids: Ids,
) -> Reply {
    review(&app, &caller, &ids, true).await
}

pub(super) async fn reject(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    ids: Ids,
) -> Reply {
    review(&app, &caller, &ids, false).await
}

async fn review(app: &App, caller: &Caller, ids: &Ids, approve: bool) -> Reply {
    let (scope, id, by) = (ids.scope()?, ids.run()?, Some(caller.to_string()));
    let r = if approve {
        app.engine.approve(&scope, &id, by).await?
    } else {
        app.engine.reject(&scope, &id, by).await?
    };
    ok(StatusCode::OK, json!(r))
}
