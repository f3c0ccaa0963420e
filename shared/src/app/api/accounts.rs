//! Accounts, who may act for them, their audit trail, and the account-wide
//! address look-up.

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::domain::{Account, AccountId, EmailAddress, Region};

use super::super::access::check_principal;
use super::super::{App, AppError, Caller};
use super::extract::{Ids, JsonBody, QueryParams, bad};
use super::guard::AuditNote;
use super::{Reply, ok};

/// Platform administrators see every account; anyone else the accounts
/// granted to them.
pub(super) async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    q: QueryParams,
) -> Reply {
    if app.is_platform_admin(&caller) {
        let page = app.store.list_accounts(q.page()?).await?;
        return ok(
            StatusCode::OK,
            json!({"accounts": page.items, "next": page.next}),
        );
    }
    let mut accounts = Vec::new();
    for principal in [caller.principal(), caller.arn()].into_iter().flatten() {
        for id in app.store.granted_accounts(principal).await? {
            if let Some(a) = app.store.get_account(&id).await?
                && !accounts.contains(&a)
            {
                accounts.push(a);
            }
        }
    }
    ok(StatusCode::OK, json!({"accounts": accounts, "next": null}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAccount {
    id: String,
    name: String,
    region: String,
    /// Principals granted on the new account at once (its administrators).
    #[serde(default)]
    administrators: Vec<String>,
}

pub(super) async fn create(
    State(app): State<App>,
    JsonBody(n): JsonBody<NewAccount>,
) -> axum::response::Response {
    let id = match AccountId::new(n.id).map_err(bad) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let note = AuditNote {
        account: Some(id.clone()),
        connector: None,
    };
    let mut response = create_account(&app, id, n.name, n.region, n.administrators)
        .await
        .into_response();
    response.extensions_mut().insert(note);
    response
}

async fn create_account(
    app: &App,
    id: AccountId,
    name: String,
    region: String,
    administrators: Vec<String>,
) -> Reply {
    let region: Region = region.parse().map_err(bad)?;
    let administrators = administrators
        .iter()
        .map(|p| check_principal(p))
        .collect::<Result<Vec<_>, _>>()?;
    let account = Account::new(id, name, region, app.store.now()).map_err(bad)?;
    app.store.create_account(&account).await?;
    for p in &administrators {
        app.store.put_grant(&account.id, p).await?;
    }
    ok(StatusCode::CREATED, json!(account))
}

pub(super) async fn get(State(app): State<App>, ids: Ids) -> Reply {
    ok(StatusCode::OK, json!(account(&app, &ids).await?))
}

/// The settings an account's administrators may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountChange {
    hold_on_connector_trouble: Option<bool>,
}

pub(super) async fn change(
    State(app): State<App>,
    ids: Ids,
    JsonBody(change): JsonBody<AccountChange>,
) -> Reply {
    let mut account = account(&app, &ids).await?;
    let Some(hold) = change.hold_on_connector_trouble else {
        return Err(AppError::BadRequest(
            "nothing to change: give hold_on_connector_trouble (true or false)".into(),
        ));
    };
    account.hold_on_connector_trouble = hold;
    app.store.update_account(&account).await?;
    ok(StatusCode::OK, json!(account))
}

/// The account the path names, or 404.
async fn account(app: &App, ids: &Ids) -> Result<Account, AppError> {
    let id = ids.account()?;
    app.store
        .get_account(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("account {id}")))
}

async fn existing(app: &App, ids: &Ids) -> Result<AccountId, AppError> {
    Ok(account(app, ids).await?.id)
}

pub(super) async fn grants(State(app): State<App>, ids: Ids) -> Reply {
    let id = existing(&app, &ids).await?;
    ok(
        StatusCode::OK,
        json!({"principals": app.store.list_grants(&id).await?}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantBody {
    principal: String,
}

pub(super) async fn grant(
    State(app): State<App>,
    ids: Ids,
    JsonBody(g): JsonBody<GrantBody>,
) -> Reply {
    let id = existing(&app, &ids).await?;
    let principal = check_principal(&g.principal)?;
    app.store.put_grant(&id, &principal).await?;
    ok(
        StatusCode::OK,
        json!({"account": id, "principal": principal, "granted": true}),
    )
}

pub(super) async fn revoke(State(app): State<App>, ids: Ids, q: QueryParams) -> Reply {
    let id = existing(&app, &ids).await?;
    let principal = check_principal(q.get("principal").ok_or_else(|| {
        AppError::BadRequest("give ?principal=<the IAM ARN whose access ends>".into())
    })?)?;
    if !app.store.delete_grant(&id, &principal).await? {
        return Err(AppError::NotFound(format!(
            "a grant of account {id} to {principal}"
        )));
    }
    ok(
        StatusCode::OK,
        json!({"account": id, "principal": principal, "granted": false}),
    )
}

pub(super) async fn audit(State(app): State<App>, ids: Ids, q: QueryParams) -> Reply {
    let id = existing(&app, &ids).await?;
    let page = app.store.list_audit(&id, q.page()?).await?;
    ok(
        StatusCode::OK,
        json!({"records": page.items, "next": page.next}),
    )
}

fn address_of(q: &QueryParams, example: &str) -> Result<EmailAddress, AppError> {
    q.get("address")
        .ok_or_else(|| AppError::BadRequest(format!("give ?address={example}")))?
        .parse()
        .map_err(bad)
}

pub(super) async fn find_group(State(app): State<App>, ids: Ids, q: QueryParams) -> Reply {
    let account = ids.account()?;
    let address = address_of(&q, "sales@example.com")?;
    let (connector, group) = app
        .store
        .find_group_by_address(&account, &address)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "a group with address {address} in account {account}"
            ))
        })?;
    ok(
        StatusCode::OK,
        json!({"connector": connector, "group": group}),
    )
}

pub(super) async fn find_user(State(app): State<App>, ids: Ids, q: QueryParams) -> Reply {
    let account = ids.account()?;
    let address = address_of(&q, "user@example.com")?;
    let (connector, user) = app
        .store
        .find_user_by_address(&account, &address)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "a user with address {address} in account {account}"
            ))
        })?;
    ok(
        StatusCode::OK,
        json!({"connector": connector, "user": user}),
    )
}
