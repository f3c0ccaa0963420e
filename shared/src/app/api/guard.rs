//! What runs around every route: the path must mean one thing, the caller
//! must be allowed, and a mutating call is audited however it ends.

use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::domain::{AccountId, AuditAction, AuditOutcome, AuditRecord, ConnectorId};

use super::super::{App, AppError, Caller};
use super::ErrorMessage;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any signed caller (what it sees is its own).
    Signed,
    /// Platform administrators only.
    Platform,
    /// Callers allowed for the account in the path (`{a}`).
    Account,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Rule {
    pub access: Access,
    pub action: Option<AuditAction>,
}

/// A handler's note for the audit record of its call, for what the path
/// does not say (the account or connector a creation names).
#[derive(Debug, Clone, Default)]
pub(super) struct AuditNote {
    pub account: Option<AccountId>,
    pub connector: Option<ConnectorId>,
}

/// Refuses paths a gateway and this router could read differently: empty,
/// `.` and `..` segments, encoded separators (`%2F`, `%5C`), NUL and
/// control characters, bad percent-encoding, a trailing `/`.
pub(super) async fn unambiguous_path(req: Request, next: Next) -> Response {
    match check_path(req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(why) => AppError::BadRequest(format!(
            "the path {:?} is ambiguous: {why}; send each id as one segment, percent-encoded",
            req.uri().path()
        ))
        .into_response(),
    }
}

/// Why `path` is ambiguous, if it is.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("it does not start with /");
    };
    if rest.is_empty() {
        return Ok(());
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err("it has an empty segment (// or a trailing /)");
        }
        if !well_encoded(segment) {
            return Err("a segment has a malformed percent-escape");
        }
        let lower = segment.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            return Err("a segment holds an encoded separator or NUL");
        }
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| "a segment is not UTF-8 once decoded")?;
        if decoded == "." || decoded == ".." {
            return Err("it has a . or .. segment");
        }
        if decoded.chars().any(char::is_control) || decoded.contains('\\') {
            return Err("a segment holds a control character or a backslash");
        }
    }
    Ok(())
}

fn well_encoded(segment: &str) -> bool {
    let b = segment.as_bytes();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    (0..b.len())
        .filter(|&i| b[i] == b'%')
        .all(|i| hex(i + 1) && hex(i + 2))
}

/// The path parameter `name`, decoded.
fn param(params: &RawPathParams, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(super) async fn guarded(
    State((app, rule)): State<(App, Rule)>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous);
    req.extensions_mut().insert(caller.clone());
    let account = match param(&params, "a").map(AccountId::new).transpose() {
        Ok(a) => a,
        Err(e) => return AppError::BadRequest(e.to_string()).into_response(),
    };
    let connector = param(&params, "c").and_then(|c| ConnectorId::new(c).ok());
    if let Err(refusal) = allowed(&app, rule.access, &caller, account.as_ref()).await {
        let response = refusal.into_response();
        if let Some(action) = rule.action {
            let outcome = outcome_of(&response);
            refused(&app, &caller, (action, account, connector), outcome).await;
        }
        return response;
    }
    let response = next.run(req).await;
    if let Some(action) = rule.action {
        let note = response
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        if let Some(account) = note.account.or(account) {
            let r = record(
                action,
                &caller,
                (account, note.connector.or(connector)),
                outcome_of(&response),
            );
            app.audit(r).await;
        }
    }
    response
}

async fn allowed(
    app: &App,
    access: Access,
    caller: &Caller,
    account: Option<&AccountId>,
) -> Result<(), AppError> {
    match (access, account) {
        (Access::Platform, _) => app.authorize_platform(caller),
        (Access::Account, Some(account)) => app.authorize(caller, account).await,
        (Access::Signed, _) | (Access::Account, None) if caller.principal().is_some() => Ok(()),
        _ => Err(AppError::Forbidden(
            "the request is not signed; sign it with SigV4 for execute-api".into(),
        )),
    }
}

/// Records a refused call where the account's administrators will look:
/// an attempt from outside is theirs to know of. At most one record per
/// caller, account and action an hour, so that nobody can bury an
/// account's trail in their own refusals.
async fn refused(
    app: &App,
    caller: &Caller,
    (action, account, connector): (AuditAction, Option<AccountId>, Option<ConnectorId>),
    outcome: (AuditOutcome, String),
) {
    tracing::warn!(%caller, ?action, account = account.as_ref().map(|a| a.as_str()), detail = %outcome.1, "admin API call refused");
    let Some(account) = account else { return };
    let what = format!("{caller}#{action:?}");
    let until = app.store.now() + chrono::Duration::hours(1);
    let first = app
        .store
        .first_refusal(&account, &what, until)
        .await
        .unwrap_or(false);
    let exists = matches!(app.store.get_account(&account).await, Ok(Some(_)));
    if first && exists {
        let r = record(action, caller, (account, connector), outcome);
        app.audit(r).await;
    }
}

/// How a call ended, for its audit record.
fn outcome_of(response: &Response) -> (AuditOutcome, String) {
    let status = response.status();
    let outcome = if status.is_success() {
        AuditOutcome::Succeeded
    } else if status.is_client_error() {
        AuditOutcome::Refused
    } else {
        AuditOutcome::Failed
    };
    let detail = match response.extensions().get::<ErrorMessage>() {
        Some(m) => format!("{} {}", status.as_u16(), m.0),
        None => status.as_u16().to_string(),
    };
    (outcome, detail)
}

fn record(
    action: AuditAction,
    caller: &Caller,
    (account, connector): (AccountId, Option<ConnectorId>),
    (outcome, detail): (AuditOutcome, String),
) -> AuditRecord {
    AuditRecord::new(action, account, caller.to_string())
        .connector(connector)
        .outcome(outcome, detail)
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn ambiguous_paths_are_told_apart() {
        for ok in [
            "/",
            "/accounts",
            "/accounts/acme/connectors/ad",
            "/accounts/acme/users",
            "/accounts/acme/connectors/ad/users/a%40b/groups",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/accounts//connectors",
            "/accounts/acme/",
            "/accounts/acme%2Fx/connectors",
            "/accounts/acme%2fx",
            "/accounts/%2e%2e/connectors",
            "/accounts/../x",
            "/accounts/a%00",
            "/accounts/a%5Cb",
            "/accounts/a%zz",
            "/accounts/a%4",
            "/accounts/%ff",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
