//! The JWT bearer grant at `/token`: signatures, claims, delegation.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn key_file_has_googles_format() {
    let s = Setup::new().await;
    let k = &s.key;
    assert_eq!(k["type"], "service_account");
    assert_eq!(k["project_id"], "dirsync-test");
    assert_eq!(k["client_email"], SA_EMAIL);
    assert_eq!(k["token_uri"], s.sim.token_url());
    assert_eq!(k["private_key_id"].as_str().unwrap().len(), 40);
    let client_id = k["client_id"].as_str().unwrap();
    assert_eq!(client_id.len(), 21);
    assert!(client_id.chars().all(|c| c.is_ascii_digit()));
    let pem = k["private_key"].as_str().unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "PKCS#8: {pem}"
    );
    for field in [
        "auth_uri",
        "auth_provider_x509_cert_url",
        "client_x509_cert_url",
    ] {
        assert!(k[field].is_string(), "{field}");
    }
}

#[tokio::test]
async fn valid_assertion_gets_a_bearer_token() {
    let s = Setup::new().await;
    let (status, body) = s
        .token_request(&s.sign(&s.claims(ADMIN, &format!("{USER_RO} {GROUP_RO}"))))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    let (status, users) = s
        .get(
            "/admin/directory/v1/users?customer=my_customer",
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{users}");
    assert_eq!(users["kind"], "admin#directory#users");
    assert_eq!(s.sim.stats().tokens_issued, 1);
    assert_eq!(s.sim.stats().route("POST /token"), 1);
}

#[tokio::test]
async fn token_without_kid_is_accepted() {
    let s = Setup::new().await;
    let encoding =
        jsonwebtoken::EncodingKey::from_rsa_pem(s.key["private_key"].as_str().unwrap().as_bytes())
            .unwrap();
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &s.claims(ADMIN, USER_RO),
        &encoding,
    )
    .unwrap();
    assert_eq!(s.token_request(&jwt).await.0, 200);
}

fn assert_grant_error(status: u16, body: &Value, want_status: u16, error: &str, desc: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or("")
            .contains(desc),
        "{body}"
    );
}

#[tokio::test]
async fn signature_from_another_key_is_refused() {
    let s = Setup::new().await;
    // Same client email, but a key the simulator never issued for it.
    let other: Value =
        serde_json::from_str(&s.sim.add_service_account("other@x.iam.gserviceaccount.com"))
            .unwrap();
    let mut forged = other.clone();
    forged["private_key_id"] = s.key["private_key_id"].clone();
    let (status, body) = s
        .token_request(&sign_with(&forged, &s.claims(ADMIN, USER_RO)))
        .await;
    assert_grant_error(
        status,
        &body,
        400,
        "invalid_grant",
        "Invalid JWT Signature.",
    );

    // A tampered payload with the original signature.
    let good = s.sign(&s.claims(ADMIN, USER_RO));
    let parts: Vec<&str> = good.split('.').collect();
    let evil = s.sign(&s.claims("someone@example.test", USER_RO));
    let evil_payload = evil.split('.').nth(1).unwrap();
    let tampered = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
    let (status, body) = s.token_request(&tampered).await;
    assert_grant_error(
        status,
        &body,
        400,
        "invalid_grant",
        "Invalid JWT Signature.",
    );

    // A kid that is not the account's key.
    let mut wrong_kid = s.key.clone();
    wrong_kid["private_key_id"] = json!("0000000000000000000000000000000000000000");
    let (status, body) = s
        .token_request(&sign_with(&wrong_kid, &s.claims(ADMIN, USER_RO)))
        .await;
    assert_grant_error(
        status,
        &body,
        400,
        "invalid_grant",
        "Invalid JWT Signature.",
    );
    assert_eq!(s.sim.stats().tokens_issued, 0);
    assert_eq!(s.sim.stats().token_errors, 3);
}

#[tokio::test]
async fn claims_are_checked() {
    let s = Setup::new().await;
    let mut wrong_aud = s.claims(ADMIN, USER_RO);
    wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
    let (status, body) = s.token_request(&s.sign(&wrong_aud)).await;
    assert_grant_error(status, &body, 400, "invalid_grant", "audience");

    let mut expired = s.claims(ADMIN, USER_RO);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let (status, body) = s.token_request(&s.sign(&expired)).await;
    assert_grant_error(status, &body, 400, "invalid_grant", "short-lived");

    let mut too_long = s.claims(ADMIN, USER_RO);
    too_long["exp"] = json!(now() + 7200);
    let (status, body) = s.token_request(&s.sign(&too_long)).await;
    assert_grant_error(status, &body, 400, "invalid_grant", "short-lived");

    let mut unknown_iss = s.claims(ADMIN, USER_RO);
    unknown_iss["iss"] = json!("nobody@x.iam.gserviceaccount.com");
    let (status, body) = s.token_request(&s.sign(&unknown_iss)).await;
    assert_grant_error(status, &body, 400, "invalid_grant", "account not found");

    let (status, body) = s
        .token_request(&s.sign(&s.claims("ghost@example.test", USER_RO)))
        .await;
    assert_grant_error(
        status,
        &body,
        400,
        "invalid_grant",
        "Invalid email or User ID",
    );

    let (status, body) = s.token_request(&s.sign(&s.claims(ADMIN, ""))).await;
    assert_grant_error(status, &body, 400, "invalid_scope", "");

    let response = s
        .http
        .post(s.sim.token_url())
        .form(&[("grant_type", "client_credentials"), ("assertion", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn delegation_missing_partial_and_revoked() {
    let s = Setup::new().await;
    // A scope outside the grant: the whole request is refused.
    let (status, body) = s
        .token_request(&s.sign(&s.claims(
            ADMIN,
            &format!("{USER_RO} https://www.googleapis.com/auth/admin.directory.user"),
        )))
        .await;
    assert_grant_error(status, &body, 401, "unauthorized_client", "not authorized");

    // A second customer that never granted delegation.
    s.sim.add_customer("other.test", "boss@other.test");
    let (status, body) = s
        .token_request(&s.sign(&s.claims("boss@other.test", USER_RO)))
        .await;
    assert_grant_error(status, &body, 401, "unauthorized_client", "unauthorized");

    // Revoked: new tokens are refused; the old one stays valid until expiry.
    let old = s.admin_token().await;
    s.sim.revoke_delegation(&s.customer, &s.client_id());
    let (status, body) = s.token_request(&s.sign(&s.claims(ADMIN, USER_RO))).await;
    assert_grant_error(status, &body, 401, "unauthorized_client", "unauthorized");
    let (status, _) = s
        .get("/admin/directory/v1/users?customer=my_customer", Some(&old))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn non_admin_sub_gets_a_token_but_no_api() {
    let s = Setup::new().await;
    s.sim.add_user(
        &s.customer,
        dirsync_google_sim::SimUser {
            primary_email: "jo@example.test".into(),
            given_name: "Jo".into(),
            family_name: "User".into(),
            ..Default::default()
        },
    );
    let token = s.token_for("jo@example.test", USER_RO).await;
    let (status, body) = s
        .get(
            "/admin/directory/v1/users?customer=my_customer",
            Some(&token),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        "Not Authorized to access this resource/api"
    );
    assert_eq!(reason(&body), "forbidden");
}

#[tokio::test]
async fn missing_scope_and_bad_tokens() {
    let s = Setup::new().await;
    let users_only = s.token_for(ADMIN, USER_RO).await;
    let (status, body) = s
        .get(
            "/admin/directory/v1/groups?customer=my_customer",
            Some(&users_only),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(reason(&body), "insufficientPermissions");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        body["error"]["message"],
        "Request had insufficient authentication scopes."
    );

    let (status, body) = s
        .get("/admin/directory/v1/users?customer=my_customer", None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");

    let (status, body) = s
        .get(
            "/admin/directory/v1/users?customer=my_customer",
            Some("ya29.nope"),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(reason(&body), "authError");

    s.sim.expire_tokens();
    let (status, _) = s
        .get(
            "/admin/directory/v1/users?customer=my_customer",
            Some(&users_only),
        )
        .await;
    assert_eq!(status, 401);
}
