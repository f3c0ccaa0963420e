//! What handlers take from a request, each refusal an [`AppError`] that
//! says what to send instead.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::domain::{AccountId, ConnectorId, RunId};
use crate::store::{PageRequest, Scope};

use super::super::{App, AppError};

/// Request bodies are at most this long.
pub const MAX_BODY: usize = 256 * 1024;

/// A JSON body (`{}` when there is none). A body sent as anything but
/// `application/json` is refused rather than guessed at.
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<App> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &App) -> Result<Self, AppError> {
        let declared = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| is_json(v.to_str().unwrap_or_default()));
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            AppError::BadRequest(format!(
                "the request body could not be read ({e}); bodies are JSON of at most 256 KiB"
            ))
        })?;
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        if declared == Some(false) {
            return Err(AppError::BadRequest(
                "send the body as JSON, with Content-Type: application/json".into(),
            ));
        }
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| not_expected(&e))
    }
}

/// A body serde could not read, said without the values it holds: a
/// mistyped secret (`{"value": 1234}`, a bare string) must not come back
/// in the answer, the audit trail or the logs.
pub(super) fn not_expected(e: &serde_json::Error) -> AppError {
    let message = e.to_string();
    let what = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(what, _)| what);
    let safe = ["missing field", "unknown field", "duplicate field"];
    let said = if e.is_data() && !safe.iter().any(|s| what.starts_with(s)) {
        match what.split_once(", expected ") {
            Some((_, expected)) => {
                format!("a value has the wrong type or form (expected {expected})")
            }
            None => "a value has the wrong type or form".to_owned(),
        }
    } else if e.is_data() {
        what.to_owned()
    } else {
        format!("{:?} JSON", e.classify()).to_lowercase()
    };
    AppError::BadRequest(format!(
        "the request body is not the expected JSON: {said}, at line {} column {}",
        e.line(),
        e.column()
    ))
}

/// `application/json`, with any parameters (`; charset=utf-8`).
pub fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The path's ids, decoded and validated.
pub(super) struct Ids(HashMap<String, String>);

impl FromRequestParts<App> for Ids {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &App) -> Result<Self, AppError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(format!("the path cannot be read: {e}")))?;
        Ok(Ids(raw
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()))
    }
}

impl Ids {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }

    pub fn account(&self) -> Result<AccountId, AppError> {
        AccountId::new(self.get("a")).map_err(bad)
    }

    pub fn scope(&self) -> Result<Scope, AppError> {
        Ok(Scope::new(
            self.account()?,
            ConnectorId::new(self.get("c")).map_err(bad)?,
        ))
    }

    pub fn run(&self) -> Result<RunId, AppError> {
        self.get("run").parse().map_err(bad)
    }

    /// The user or group the path names, as sent: an id, an address or a
    /// name (see [`super::lookup`]).
    pub fn reference(&self) -> &str {
        self.get("id")
    }
}

/// The query string's parameters (form-encoded, as query strings are).
pub(super) struct QueryParams(pub HashMap<String, String>);

impl FromRequestParts<App> for QueryParams {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &App) -> Result<Self, AppError> {
        let mut params = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        {
            if params.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(AppError::BadRequest(format!(
                    "the query parameter {k:?} is given more than once"
                )));
            }
        }
        Ok(QueryParams(params))
    }
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A `true`/`false` parameter; false when absent.
    pub fn flag(&self, name: &str) -> Result<bool, AppError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(AppError::BadRequest(format!(
                "{name} must be true or false"
            ))),
        }
    }

    /// `?limit=&next=` of a listing.
    pub fn page(&self) -> Result<PageRequest, AppError> {
        let limit = match self.get("limit") {
            Some(l) => l.parse().map_err(|_| {
                AppError::BadRequest("limit must be a number from 1 to 1000".into())
            })?,
            None => 100,
        };
        Ok(PageRequest::after(
            self.get("next").map(str::to_owned),
            limit,
        ))
    }
}

pub(super) fn bad(e: crate::domain::ValidationError) -> AppError {
    AppError::BadRequest(e.to_string())
}
