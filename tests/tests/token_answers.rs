//! Token answers as a token endpoint may really send them, through the
//! `oauth2` path: each AADSTS refusal the advice knows, answers that are
//! not tokens, an `expires_in` too large for a date or missing, and what
//! each kind of client authentication puts in the form. A canned endpoint
//! on loopback answers whatever the test says.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dirsync_shared::auth::aadsts::{Signer, advice};
use dirsync_shared::auth::oauth::{self, SignInHttp};
use dirsync_shared::auth::{
    AppCertificate, AssertionAlg, AuthError, Credential, KeyBits, TokenProvider,
};
use dirsync_shared::clock::ManualClock;
use dirsync_shared::secrets::{LocalSecretStore, SecretValue, Stage};
use oauth2::RequestTokenError;
use oauth2::basic::BasicErrorResponseType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// A token endpoint that answers every request with `answer` and keeps
/// the forms it was sent.
struct Canned {
    url: String,
    answer: Arc<Mutex<(u16, &'static str, String)>>,
    /// Sent as `Location` when set.
    location: Arc<Mutex<Option<String>>>,
    forms: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((200, "application/json", String::new())));
        let location: Arc<Mutex<Option<String>>> = Arc::default();
        let forms = Arc::new(Mutex::new(Vec::new()));
        let (a, f, l) = (answer.clone(), forms.clone(), location.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let (a, f, l) = (a.clone(), f.clone(), l.clone());
                tokio::spawn(async move {
                    let form = read_request(&mut stream).await;
                    f.lock().unwrap().push(form);
                    let (status, kind, body) = a.lock().unwrap().clone();
                    let location = l.lock().unwrap().clone();
                    let location = location
                        .map(|to| format!("Location: {to}\r\n"))
                        .unwrap_or_default();
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self {
            url,
            answer,
            location,
            forms,
        }
    }

    fn answers(&self, status: u16, kind: &'static str, body: impl Into<String>) {
        *self.answer.lock().unwrap() = (status, kind, body.into());
    }

    fn last_form(&self) -> String {
        self.forms
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// The body of one HTTP/1.1 request (its headers read past).
async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if seen.len() >= end + 4 + length {
                return text[end + 4..].to_owned();
            }
        }
    }
    String::new()
}

const NOW: &str = "2026-03-02T08:00:00Z";
const SECRET: &str = "dirsync/legacy/secret";
const CERT: &str = "dirsync/app-certificate";

struct Endpoint {
    canned: Canned,
    tokens: TokenProvider,
    secret: Credential,
    certificate: Credential,
    now: DateTime<Utc>,
}

async fn endpoint() -> Endpoint {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let secrets = Arc::new(LocalSecretStore::in_memory());
    secrets.set(
        &SECRET.parse().unwrap(),
        Stage::Current,
        SecretValue::new("s3cret-value"),
    );
    let cert =
        AppCertificate::generate("dirsync", now, chrono::Duration::days(3), KeyBits::Rsa2048)
            .unwrap();
    secrets.set(&CERT.parse().unwrap(), Stage::Current, cert.to_secret());
    let client_id = Uuid::from_u128(7);
    Endpoint {
        canned: Canned::start().await,
        tokens: TokenProvider::new(secrets, Arc::new(ManualClock::new(now))),
        secret: Credential::ClientSecret {
            client_id,
            secret: SECRET.parse().unwrap(),
        },
        certificate: Credential::Certificate {
            client_id,
            secret: CERT.parse().unwrap(),
            alg: AssertionAlg::Ps256,
        },
        now,
    }
}

impl Endpoint {
    async fn token(
        &self,
        credential: &Credential,
    ) -> Result<dirsync_shared::auth::AccessToken, AuthError> {
        self.tokens.forget(
            &self.canned.url,
            "contoso.com",
            "https://graph.microsoft.com/.default",
            credential,
        );
        self.tokens
            .token(
                &self.canned.url,
                "contoso.com",
                "https://graph.microsoft.com/.default",
                credential,
            )
            .await
    }
}

fn refusal(code: u64) -> String {
    serde_json::json!({
        "error": "invalid_client",
        "error_description": format!("AADSTS{code}: what Entra says.\r\nTrace ID: 1\r\nCorrelation ID: 2"),
        "error_codes": [code],
    })
    .to_string()
}

#[tokio::test]
async fn each_aadsts_refusal_gets_its_advice_through_oauth2() {
    let e = endpoint().await;
    let cases = [
        (700016, Signer::ConsentApp),
        (700016, Signer::LegacyApp),
        (7000215, Signer::LegacyApp),
        (7000222, Signer::LegacyApp),
        (700027, Signer::ConsentApp),
        (65001, Signer::ConsentApp),
        (90002, Signer::LegacyApp),
        (7000112, Signer::ConsentApp),
        (70011, Signer::LegacyApp),
    ];
    for (code, signer) in cases {
        e.canned
            .answers(400, "application/json; charset=utf-8", refusal(code));
        let credential = match signer {
            Signer::ConsentApp => &e.certificate,
            Signer::LegacyApp => &e.secret,
        };
        let Err(AuthError::Refused { code: got, message }) = e.token(credential).await else {
            panic!("AADSTS{code} is a refusal");
        };
        assert_eq!(got, Some(code));
        let expected = advice(Some(code), signer, "contoso.com");
        let said = format!("(Entra said: AADSTS{code}: what Entra says.)");
        assert!(
            message.starts_with(&expected) && message.ends_with(&said),
            "AADSTS{code}: {message}"
        );
    }
    // A code only in the description still finds its advice.
    e.canned.answers(
        401,
        "application/json",
        r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
    );
    let Err(AuthError::Refused { code, .. }) = e.token(&e.secret).await else {
        panic!("a refusal")
    };
    assert_eq!(code, Some(7000215));
}

#[tokio::test]
async fn answers_that_are_not_tokens_say_so_and_leak_nothing() {
    let e = endpoint().await;
    let leaky = r#"{"access_token":"leaky-token-123","token_type":"Bearer","expires_in":"soon"}"#;
    for (kind, body, says) in [
        ("text/html", "<html>proxy</html>", "Content-Type"),
        (
            "application/json",
            "{\"access_token\": \"half",
            "neither a token nor an error",
        ),
        (
            "application/json",
            r#"{"token_type":"Bearer","expires_in":3600}"#,
            "access_token",
        ),
        ("application/json", leaky, "expires_in"),
    ] {
        e.canned.answers(200, kind, body);
        let Err(err) = e.token(&e.secret).await else {
            panic!("{body} is no token")
        };
        let text = err.to_string();
        assert!(matches!(err, AuthError::Protocol(_)), "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
        for secret in ["s3cret-value", "leaky-token-123"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    // Strings of digits are a lifetime (Entra's v1 endpoint sends them).
    e.canned.answers(
        200,
        "application/json",
        r#"{"access_token":"t","expires_in":"3599"}"#,
    );
    let t = e.token(&e.secret).await.unwrap();
    assert_eq!(t.expires_at - e.now, chrono::Duration::seconds(3599));
}

/// A gateway's page, an empty 429 or a redirect is no answer from Entra:
/// said with its status, tried three times when it is a 5xx; Entra's own
/// refusal is final at once.
#[tokio::test]
async fn answers_without_an_error_of_their_own_keep_their_status() {
    let e = endpoint().await;
    for (status, tries) in [(502, 3), (429, 1), (400, 1)] {
        let before = e.canned.forms.lock().unwrap().len();
        e.canned
            .answers(status, "text/html", "<html>gateway</html>");
        let Err(AuthError::Unreachable { detail, .. }) = e.token(&e.secret).await else {
            panic!("HTTP {status} with a page is no answer")
        };
        assert!(detail.contains(&format!("HTTP {status}")), "{detail}");
        assert_eq!(
            e.canned.forms.lock().unwrap().len() - before,
            tries,
            "HTTP {status}"
        );
    }
    let before = e.canned.forms.lock().unwrap().len();
    e.canned.answers(400, "application/json", refusal(7000215));
    assert!(matches!(
        e.token(&e.secret).await,
        Err(AuthError::Refused { .. })
    ));
    assert_eq!(e.canned.forms.lock().unwrap().len() - before, 1);
}

/// The consent's proof of who signed in: the code redeemed once, with the
/// exact redirect URI, `openid` as the one scope and the app's assertion.
#[tokio::test]
async fn a_code_is_redeemed_for_its_id_token() {
    let e = endpoint().await;
    e.canned.answers(
        200,
        "application/json",
        r#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"id_token":"the.id.token"}"#,
    );
    let redirect = "https://dirsync.example/consent/callback";
    let redeem = || {
        e.tokens.redeem_code(
            (&e.canned.url, "contoso.com"),
            &e.certificate,
            "the-code",
            redirect,
        )
    };
    let id = redeem().await.unwrap();
    assert_eq!(id, "the.id.token");
    let form = e.canned.last_form();
    for part in [
        "grant_type=authorization_code",
        "code=the-code",
        "redirect_uri=https%3A%2F%2Fdirsync.example%2Fconsent%2Fcallback",
        "scope=openid",
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
    ] {
        assert!(form.contains(part), "{part} in {form}");
    }
    assert_eq!(form.matches("scope=").count(), 1, "{form}");
    assert!(!form.contains("client_secret"), "{form}");
    e.canned.answers(
        200,
        "application/json",
        r#"{"access_token":"a","token_type":"Bearer"}"#,
    );
    let without = redeem().await;
    assert!(
        matches!(without, Err(AuthError::Protocol(_))),
        "{without:?}"
    );
}

#[tokio::test]
async fn no_expires_in_overflows_a_date() {
    let e = endpoint().await;
    let huge = format!(
        r#"{{"access_token":"t","token_type":"Bearer","expires_in":{}}}"#,
        u64::MAX
    );
    e.canned.answers(200, "application/json", huge);
    let t = e.token(&e.secret).await.unwrap();
    assert_eq!(t.expires_at - e.now, chrono::Duration::hours(24));
    assert!(t.refresh_at < t.expires_at);
    e.canned.answers(
        200,
        "application/json",
        r#"{"access_token":"t","token_type":"Bearer"}"#,
    );
    let t = e.token(&e.secret).await.unwrap();
    assert_eq!(t.expires_at - e.now, chrono::Duration::hours(1));
    e.canned.answers(
        200,
        "application/json",
        r#"{"access_token":"t","token_type":"bearer","expires_in":4000,"ext_expires_in":4000}"#,
    );
    let t = e.token(&e.certificate).await.unwrap();
    assert_eq!(t.expires_at - e.now, chrono::Duration::seconds(4000));
    assert_eq!(t.refresh_at - e.now, chrono::Duration::seconds(3700));
}

#[tokio::test]
async fn each_client_authentication_sends_what_entra_expects() {
    let e = endpoint().await;
    e.canned.answers(
        200,
        "application/json",
        r#"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#,
    );
    e.token(&e.secret).await.unwrap();
    let form = e.canned.last_form();
    for part in [
        "grant_type=client_credentials",
        "client_id=00000000-0000-0000-0000-000000000007",
        "client_secret=s3cret-value",
        "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
    ] {
        assert!(form.contains(part), "{part} in {form}");
    }
    e.token(&e.certificate).await.unwrap();
    let form = e.canned.last_form();
    assert!(!form.contains("client_secret"), "{form}");
    for part in [
        "grant_type=client_credentials",
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        "client_assertion=ey",
    ] {
        assert!(form.contains(part), "{part} in {form}");
    }
}

#[tokio::test]
async fn google_s_jwt_bearer_answers_are_typed_too() {
    let canned = Canned::start().await;
    let http = SignInHttp::new();
    let huge = format!(
        r#"{{"access_token":"g","token_type":"Bearer","expires_in":{}}}"#,
        u64::MAX
    );
    canned.answers(200, "application/json", huge);
    let answer = oauth::jwt_bearer(&http, &canned.url, "signed.jwt")
        .await
        .unwrap();
    let now = Utc::now();
    assert_eq!(
        oauth::lifetime(&answer, now).0 - now,
        chrono::Duration::hours(24)
    );
    let form = canned.last_form();
    assert_eq!(
        form,
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=signed.jwt"
    );
    canned.answers(
        400,
        "application/json",
        r#"{"error":"invalid_grant","error_description":"Invalid email or User ID"}"#,
    );
    match oauth::jwt_bearer(&http, &canned.url, "signed.jwt").await {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(e.error(), &BasicErrorResponseType::InvalidGrant);
        }
        other => panic!("a typed refusal: {other:?}"),
    }
    canned.answers(200, "application/json", r#"{"token_type":"Bearer"}"#);
    let Err(e) = oauth::jwt_bearer(&http, &canned.url, "signed.jwt").await else {
        panic!("no token")
    };
    assert!(
        oauth::unexpected("Google's sign-in service", &e).contains("access_token"),
        "{e:?}"
    );
}

/// A token endpoint that redirects does not get the secret taken
/// elsewhere: a 307 keeps the method and body, so following it would post
/// the client secret to whatever host the answer names.
#[tokio::test]
async fn a_redirect_from_the_token_endpoint_is_not_followed() {
    let e = endpoint().await;
    let elsewhere = Canned::start().await;
    elsewhere.answers(
        200,
        "application/json",
        r#"{"access_token":"t","token_type":"Bearer"}"#,
    );
    e.canned.answers(307, "text/plain", "");
    *e.canned.location.lock().unwrap() = Some(format!("{}/steal", elsewhere.url));
    assert!(
        e.token(&e.secret).await.is_err(),
        "no token from a redirect"
    );
    let google = oauth::jwt_bearer(&SignInHttp::new(), &e.canned.url, "signed.jwt").await;
    assert!(
        matches!(google, Err(RequestTokenError::Request(_))),
        "no token from a redirect"
    );
    assert!(
        elsewhere.forms.lock().unwrap().is_empty(),
        "the secret or the assertion went to the redirect's target"
    );
}
