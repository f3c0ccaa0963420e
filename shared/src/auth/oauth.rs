//! Token requests through the `oauth2` crate, over the workspace's one
//! reqwest client: [`SignInHttp`] is `oauth2`'s HTTP client, with the
//! sign-in's timeout and its few quick retries of a failing service, and
//! the answers are typed (`TokenAnswer`, Entra's [`TokenErrorBody`],
//! Google's [`BasicErrorResponse`]).
//!
//! `oauth2` 5 has no JWT-bearer grant (RFC 7523, Google's service-account
//! sign-in): [`jwt_bearer`] builds that one request as `oauth2` builds its
//! own and reads its answer into the same types.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AsyncHttpClient, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse,
    RefreshToken, RequestTokenError, Scope, StandardRevocableToken, TokenResponse,
};
use serde::{Deserialize, Serialize};

use super::aadsts::TokenErrorBody;
use super::token::without_url;

/// A sign-in that takes longer than this has failed.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts of a token request that meets a 5xx or no answer at all.
const ATTEMPTS: u32 = 3;

/// The longest a token is taken to live, whatever the answer says: an
/// `expires_in` past it is a mistake (or an attack on the date sums).
const LONGEST_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// The lifetime of a token whose answer does not say (both services give
/// an hour, or more).
const UNSAID_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// A successful token answer, read as leniently as the services send
/// them: `expires_in` as a number or a string of digits (Entra's v1
/// endpoint and some proxies send strings), `token_type` Bearer when left
/// out, and the code redemption's `id_token`.
#[derive(Clone, Deserialize, Serialize)]
pub struct TokenAnswer {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    token_type: BasicTokenType,
    #[serde(
        default,
        deserialize_with = "number_or_digits",
        skip_serializing_if = "Option::is_none"
    )]
    expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Never the tokens themselves.
impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("expires_in", &self.expires_in)
            .field("id_token", &self.id_token.is_some())
            .finish_non_exhaustive()
    }
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

fn number_or_digits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::Num(n)) => Ok(Some(n)),
        Some(N::Str(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom("expires_in is neither a number nor a string of digits")
        }),
    }
}

impl TokenResponse for TokenAnswer {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        None
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

/// `oauth2`'s client for one token endpoint (the only endpoint dirsync
/// uses), answering with Entra's errors.
pub type EntraClient = oauth2::Client<
    TokenErrorBody,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Why a token request got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(pub String);

/// What a token request ended with, for the caller to put in its words.
pub type Refusal<E> = RequestTokenError<NoAnswer, E>;

/// `oauth2`'s HTTP client over reqwest: the request as `oauth2` built it,
/// within [`SIGN_IN_TIMEOUT`] a try, sent again (after 200 ms, then 400 ms) when
/// the service fails with a 5xx or does not answer. Redirects are not
/// followed: a token request carries the client's secret or assertion,
/// which goes to the token endpoint it was given for and nowhere else.
pub struct SignInHttp {
    http: reqwest::Client,
}

impl SignInHttp {
    pub fn new() -> Self {
        Self {
            // Fails only where TLS cannot start at all, as reqwest's own
            // `Client::new` does; a fallback would follow redirects.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the TLS backend starts"),
        }
    }
}

impl Default for SignInHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl<'c> AsyncHttpClient<'c> for SignInHttp {
    type Error = NoAnswer;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, NoAnswer>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let mut request = reqwest::Request::try_from(request)
                .map_err(|e| NoAnswer(format!("the token request cannot be sent ({e})")))?;
            *request.timeout_mut() = Some(SIGN_IN_TIMEOUT);
            let mut attempt = 0;
            let response = loop {
                attempt += 1;
                let again = request.try_clone().filter(|_| attempt < ATTEMPTS);
                match self.http.execute(request).await {
                    Ok(r) if r.status().is_server_error() && again.is_some() => {}
                    Ok(r) => break r,
                    Err(e) if again.is_none() => return Err(NoAnswer(without_url(&e))),
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                request = again.expect("checked above");
            };
            let status = response.status();
            let mut answer = http::Response::builder().status(status);
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| NoAnswer(without_url(&e)))?;
            // Only a JSON body is an error the service explains; a redirect,
            // an empty 429 or a gateway's page is no answer from it.
            if status != http::StatusCode::OK
                && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
                    .is_err()
            {
                return Err(NoAnswer(format!(
                    "HTTP {} without an error of its own",
                    status.as_u16()
                )));
            }
            answer
                .body(body.to_vec())
                .map_err(|e| NoAnswer(format!("the token answer cannot be read ({e})")))
        })
    }
}

/// When a token answered at `now` expires, and when to fetch the next:
/// five minutes before, or a tenth of the lifetime for short-lived tokens.
/// The lifetime is bounded (a second to a day), so no answer can make the
/// sums overflow.
pub fn lifetime(answer: &impl TokenResponse, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let said = answer
        .expires_in()
        .map(|d| chrono::Duration::seconds(d.as_secs().min(86_400) as i64));
    let lifetime = said
        .unwrap_or(UNSAID_LIFETIME)
        .clamp(chrono::Duration::seconds(1), LONGEST_LIFETIME);
    let margin = chrono::Duration::minutes(5).min(lifetime / 10);
    (now + lifetime, now + lifetime - margin)
}

/// Google's service-account sign-in: the JWT-bearer grant (RFC 7523) with
/// `assertion`, sent and read as `oauth2` sends and reads its own grants.
pub async fn jwt_bearer(
    http: &SignInHttp,
    token_uri: &str,
    assertion: &str,
) -> Result<TokenAnswer, Refusal<BasicErrorResponse>> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
        .append_pair("assertion", assertion)
        .finish();
    let request = http::Request::post(token_uri)
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body.into_bytes())
        .map_err(|e| {
            RequestTokenError::Other(format!("the token request cannot be built ({e})"))
        })?;
    let answer = http.call(request).await?;
    read_answer(&answer)
}

/// A token endpoint's answer as `oauth2` reads one: 200 with JSON is the
/// token, anything else the service's error.
fn read_answer<T, E>(answer: &HttpResponse) -> Result<T, Refusal<E>>
where
    T: serde::de::DeserializeOwned,
    E: oauth2::ErrorResponse + 'static,
{
    let body = answer.body().as_slice();
    let json = answer
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.to_ascii_lowercase().starts_with("application/json"));
    if !json {
        return Err(RequestTokenError::Other(
            "its Content-Type is not application/json".into(),
        ));
    }
    if body.is_empty() {
        return Err(RequestTokenError::Other("it is empty".into()));
    }
    let parse = |e| RequestTokenError::Parse(e, body.to_vec());
    let mut json = serde_json::Deserializer::from_slice(body);
    if answer.status() != http::StatusCode::OK {
        return Err(match serde_path_to_error::deserialize::<_, E>(&mut json) {
            Ok(error) => RequestTokenError::ServerResponse(error),
            Err(e) => parse(e),
        });
    }
    serde_path_to_error::deserialize(&mut json).map_err(parse)
}

/// In words, a token request that ended without a token or a refusal the
/// caller can explain: no answer, or one that is neither.
pub fn unexpected<E: oauth2::ErrorResponse + 'static>(service: &str, e: &Refusal<E>) -> String {
    match e {
        RequestTokenError::Request(NoAnswer(why)) => {
            format!("{service} could not be reached ({why})")
        }
        RequestTokenError::Parse(e, _) => format!(
            "{service} answered something that is neither a token nor an error ({}: {})",
            e.path(),
            e.inner()
        ),
        RequestTokenError::Other(why) => format!("{service} answered unexpectedly ({why})"),
        RequestTokenError::ServerResponse(error) => format!("{service} refused ({error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> TokenAnswer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn answers_are_read_as_the_services_send_them() {
        let digits = answer(r#"{"access_token":"the-token","expires_in":" 3599"}"#);
        assert_eq!(digits.expires_in(), Some(Duration::from_secs(3599)));
        assert_eq!(digits.token_type(), &BasicTokenType::Bearer);
        assert!(!format!("{digits:?}").contains("the-token"));
        let bad = r#"{"access_token":"t","expires_in":"soon"}"#;
        assert!(serde_json::from_str::<TokenAnswer>(bad).is_err());
    }

    #[test]
    fn no_expires_in_can_overflow_the_dates() {
        let now = Utc::now();
        let huge = answer(&format!(
            r#"{{"access_token":"t","token_type":"Bearer","expires_in":{}}}"#,
            u64::MAX
        ));
        let (expires, refresh) = lifetime(&huge, now);
        assert_eq!(expires - now, chrono::Duration::hours(24));
        assert!(refresh < expires);
        let missing = answer(r#"{"access_token":"t","token_type":"Bearer"}"#);
        assert_eq!(lifetime(&missing, now).0 - now, chrono::Duration::hours(1));
        let zero = answer(r#"{"access_token":"t","token_type":"Bearer","expires_in":0}"#);
        let (expires, refresh) = lifetime(&zero, now);
        assert_eq!(expires - now, chrono::Duration::seconds(1));
        assert!(refresh <= expires);
    }
}
