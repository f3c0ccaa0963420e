//! The token endpoint: certificate assertions verified for real, secrets,
//! and the AADSTS codes of each refusal.

mod common;

use chrono::{Duration, Utc};
use common::{Cert, Fixture, aadsts, assertion_claims, now};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use uuid::Uuid;

const READ: [&str; 2] = ["User.Read.All", "Group.Read.All"];

#[tokio::test]
async fn ps256_assertion_with_x5t_s256_gets_a_working_token() {
    let fx = Fixture::new(&READ).await;
    let url = fx.token_url(fx.tenant);
    let assertion = fx.cert.sign_ps256(&assertion_claims(fx.client_id, &url));
    let (status, body) = fx.post_assertion(&url, &assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!(
        (3600..=5400).contains(&expires_in),
        "random 60–90 min, got {expires_in}"
    );
    assert_eq!(body["ext_expires_in"].as_i64(), Some(expires_in));

    // The token carries the tenant, the app and the consented roles.
    let token = body["access_token"].as_str().unwrap();
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap();
    assert_eq!(claims["tid"], fx.tenant.to_string());
    assert_eq!(claims["appid"], fx.client_id.to_string());
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    let mut roles: Vec<&str> = claims["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, vec!["Group.Read.All", "User.Read.All"]);

    let (status, _, users) = fx.get(token, "users").await;
    assert_eq!(status, 200);
    assert!(users["value"].is_array());

    // The sign-in is counted under the certificate's key id.
    let keys = fx.sim.app_key_credentials(fx.object_id);
    assert_eq!(
        fx.sim.stats().certificate_sign_ins_with(keys[0].key_id),
        1,
        "{:?}",
        fx.sim.stats().certificate_sign_ins
    );
}

#[tokio::test]
async fn rs256_assertion_with_x5t_is_accepted_and_domain_names_the_tenant() {
    let fx = Fixture::new(&READ).await;
    let url = fx.sim.token_url("contoso.example");
    let assertion = fx.cert.sign_rs256(&assertion_claims(fx.client_id, &url));
    let (status, body) = fx.post_assertion(&url, &assertion).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_certificate_not_on_the_app_is_700027() {
    let fx = Fixture::new(&READ).await;
    let url = fx.token_url(fx.tenant);
    let stranger = Cert::rsa();
    let assertion = stranger.sign_ps256(&assertion_claims(fx.client_id, &url));
    let (status, body) = fx.post_assertion(&url, &assertion).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(aadsts(&body), 700027);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("The key was not found")
    );
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(body[field].is_string(), "{field} present");
    }
}

#[tokio::test]
async fn a_forged_signature_with_the_right_thumbprint_is_700027() {
    let fx = Fixture::new(&READ).await;
    let url = fx.token_url(fx.tenant);
    // Names the registered certificate but is signed by another key.
    let other = Cert::rsa();
    let mut header = Header::new(Algorithm::PS256);
    header.x5t_s256 = Some(fx.cert.x5t_s256());
    let key = EncodingKey::from_rsa_pem(other.key_pem.as_bytes()).unwrap();
    let forged =
        jsonwebtoken::encode(&header, &assertion_claims(fx.client_id, &url), &key).unwrap();
    let (status, body) = fx.post_assertion(&url, &forged).await;
    assert_eq!(status, 401);
    assert_eq!(aadsts(&body), 700027);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature value did not match")
    );
}

#[tokio::test]
async fn claims_are_checked_with_their_documented_codes() {
    let fx = Fixture::new(&READ).await;
    let url = fx.token_url(fx.tenant);

    let mut wrong_aud = assertion_claims(
        fx.client_id,
        "https://login.example/other/oauth2/v2.0/token",
    );
    wrong_aud["aud"] = "https://login.example/other/oauth2/v2.0/token".into();
    let (status, body) = fx
        .post_assertion(&url, &fx.cert.sign_ps256(&wrong_aud))
        .await;
    assert_eq!((status, aadsts(&body)), (401, 700023), "wrong aud: {body}");

    let mut expired = assertion_claims(fx.client_id, &url);
    expired["nbf"] = (now() - 3600).into();
    expired["iat"] = (now() - 3600).into();
    expired["exp"] = (now() - 3000).into();
    let (status, body) = fx.post_assertion(&url, &fx.cert.sign_ps256(&expired)).await;
    assert_eq!((status, aadsts(&body)), (401, 700024), "expired: {body}");

    let mut too_long = assertion_claims(fx.client_id, &url);
    too_long["exp"] = (now() + 7200).into();
    let (status, body) = fx
        .post_assertion(&url, &fx.cert.sign_ps256(&too_long))
        .await;
    assert_eq!(
        (status, aadsts(&body)),
        (401, 700024),
        "two-hour assertion: {body}"
    );

    let mut future = assertion_claims(fx.client_id, &url);
    future["nbf"] = (now() + 3600).into();
    future["exp"] = (now() + 3900).into();
    let (status, body) = fx.post_assertion(&url, &fx.cert.sign_ps256(&future)).await;
    assert_eq!(
        (status, aadsts(&body)),
        (401, 700024),
        "not yet valid: {body}"
    );

    let mut wrong_iss = assertion_claims(fx.client_id, &url);
    wrong_iss["iss"] = Uuid::new_v4().to_string().into();
    let (status, body) = fx
        .post_assertion(&url, &fx.cert.sign_ps256(&wrong_iss))
        .await;
    assert_eq!(
        (status, aadsts(&body)),
        (401, 700021),
        "iss is not the client: {body}"
    );

    let mut no_jti = assertion_claims(fx.client_id, &url);
    no_jti.as_object_mut().unwrap().remove("jti");
    let (status, body) = fx.post_assertion(&url, &fx.cert.sign_ps256(&no_jti)).await;
    assert_eq!((status, aadsts(&body)), (400, 50027), "no jti: {body}");
}

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    let fx = Fixture::new(&READ).await;
    let url = fx.token_url(fx.tenant);
    let assertion = fx.cert.sign_ps256(&assertion_claims(fx.client_id, &url));
    let (first, _) = fx.post_assertion(&url, &assertion).await;
    assert_eq!(first, 200);
    let (status, body) = fx.post_assertion(&url, &assertion).await;
    assert_eq!(status, 401);
    assert_eq!(aadsts(&body), 50013);
}

#[tokio::test]
async fn ecdsa_and_expired_certificates_are_refused() {
    let fx = Fixture::new(&READ).await;
    let url = fx.token_url(fx.tenant);

    let ec = Cert::ec();
    let mut header = Header::new(Algorithm::ES256);
    header.x5t_s256 = Some(ec.x5t_s256());
    let key = EncodingKey::from_ec_pem(ec.key_pem.as_bytes()).unwrap();
    let es256 = jsonwebtoken::encode(&header, &assertion_claims(fx.client_id, &url), &key).unwrap();
    let (status, body) = fx.post_assertion(&url, &es256).await;
    assert_eq!((status, aadsts(&body)), (401, 5002738), "ES256: {body}");

    // An app whose only certificate has expired.
    let old = Cert::expired_rsa();
    let client_id = Uuid::new_v4();
    fx.sim
        .register_multitenant_app(dirsync_entra_sim::MultiTenantApp {
            client_id,
            object_id: Uuid::new_v4(),
            home_tenant: fx.home,
            redirect_uris: vec![],
            certificates: vec![old.der.clone()],
        });
    fx.sim.grant_admin_consent(fx.tenant, client_id, &READ);
    let assertion = old.sign_ps256(&assertion_claims(client_id, &url));
    let (status, body) = fx
        .post_form(
            &url,
            &[
                ("client_id", client_id.to_string().as_str()),
                ("scope", &fx.sim.graph_scope()),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", common::JWT_BEARER),
                ("client_assertion", assertion.as_str()),
            ],
        )
        .await;
    assert_eq!(
        (status, aadsts(&body)),
        (401, 700027),
        "expired certificate: {body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn legacy_secrets_right_wrong_and_expired() {
    let fx = Fixture::new(&READ).await;
    let legacy = Uuid::new_v4();
    fx.sim.add_legacy_app(
        fx.tenant,
        legacy,
        "s3cret~value",
        Utc::now() + Duration::days(30),
        &["User.Read.All", "Directory.Read.All"],
    );
    let url = fx.sim.token_url("contoso.test");
    let form = |secret: &'static str| {
        vec![
            ("client_id", legacy.to_string()),
            ("client_secret", secret.to_string()),
            ("scope", fx.sim.graph_scope()),
            ("grant_type", "client_credentials".to_string()),
        ]
    };
    let post = |form: Vec<(&'static str, String)>| {
        let fx = &fx;
        let url = url.clone();
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            fx.post_form(&url, &pairs).await
        }
    };
    let (status, body) = post(form("s3cret~value")).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (status, _, groups) = fx.get(token, "groups").await;
    assert_eq!(status, 200, "Directory.Read.All reads groups: {groups}");

    let (status, body) = post(form("wrong")).await;
    assert_eq!((status, aadsts(&body)), (401, 7000215));
    assert_eq!(body["error"], "invalid_client");

    let expired = Uuid::new_v4();
    fx.sim.add_legacy_app(
        fx.tenant,
        expired,
        "old-secret",
        Utc::now() - Duration::days(1),
        &["User.Read.All"],
    );
    let (status, body) = fx
        .post_form(
            &url,
            &[
                ("client_id", expired.to_string().as_str()),
                ("client_secret", "old-secret"),
                ("scope", &fx.sim.graph_scope()),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    assert_eq!((status, aadsts(&body)), (401, 7000222));
}

#[tokio::test]
async fn tenant_app_scope_and_consent_refusals() {
    let fx = Fixture::new(&[]).await;
    let url = fx.token_url(fx.tenant);
    // Consent was never given in Contoso: the app is not in that directory.
    let assertion = fx.cert.sign_ps256(&assertion_claims(fx.client_id, &url));
    let (status, body) = fx.post_assertion(&url, &assertion).await;
    assert_eq!((status, aadsts(&body)), (400, 700016), "{body}");
    assert_eq!(body["error"], "unauthorized_client");

    // After consent it works; after revocation it fails again.
    fx.sim.grant_admin_consent(fx.tenant, fx.client_id, &READ);
    let _ = fx.token().await;
    fx.sim.revoke_consent(fx.tenant, fx.client_id);
    let assertion = fx.cert.sign_ps256(&assertion_claims(fx.client_id, &url));
    let (_, body) = fx.post_assertion(&url, &assertion).await;
    assert_eq!(aadsts(&body), 700016);

    let unknown = fx.sim.token_url(&Uuid::new_v4().to_string());
    let assertion = fx
        .cert
        .sign_ps256(&assertion_claims(fx.client_id, &unknown));
    let (status, body) = fx.post_assertion(&unknown, &assertion).await;
    assert_eq!((status, aadsts(&body)), (400, 90002));

    let common_url = fx.sim.token_url("organizations");
    let assertion = fx
        .cert
        .sign_ps256(&assertion_claims(fx.client_id, &common_url));
    let (status, body) = fx.post_assertion(&common_url, &assertion).await;
    assert_eq!((status, aadsts(&body)), (400, 50059));

    let (status, body) = fx
        .post_form(
            &url,
            &[
                ("client_id", fx.client_id.to_string().as_str()),
                ("scope", "https://graph.microsoft.com/User.Read.All"),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", common::JWT_BEARER),
                ("client_assertion", "x.y.z"),
            ],
        )
        .await;
    assert_eq!((status, aadsts(&body)), (400, 70011));
    assert_eq!(body["error"], "invalid_scope");

    fx.sim.grant_admin_consent(fx.tenant, fx.client_id, &READ);
    fx.sim.disable_app(fx.client_id);
    let assertion = fx.cert.sign_ps256(&assertion_claims(fx.client_id, &url));
    let (status, body) = fx.post_assertion(&url, &assertion).await;
    assert_eq!((status, aadsts(&body)), (400, 7000112));
}

/// A client-credentials request for `scope` with a fresh assertion.
async fn ask_for(fx: &Fixture, scope: &str) -> (u16, serde_json::Value) {
    let url = fx.token_url(fx.tenant);
    let assertion = fx.cert.sign_ps256(&assertion_claims(fx.client_id, &url));
    fx.post_form(
        &url,
        &[
            ("client_id", fx.client_id.to_string().as_str()),
            ("scope", scope),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", common::JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ],
    )
    .await
}

#[tokio::test]
async fn a_token_names_this_cloud_s_graph_and_another_cloud_s_is_not_found() {
    let fx = Fixture::new(&READ).await;
    let own = format!("{}/.default", fx.sim.authority_url());
    assert_eq!(fx.sim.graph_scope(), own, "the origin of the Graph URL");
    for accepted in [
        own.as_str(),
        "00000003-0000-0000-c000-000000000000/.default",
    ] {
        let (status, body) = ask_for(&fx, accepted).await;
        assert_eq!(status, 200, "{accepted}: {body}");
    }
    let (status, body) = ask_for(&fx, "https://graph.microsoft.com/.default").await;
    assert_eq!((status, aadsts(&body)), (400, 500011), "{body}");
    assert_eq!(body["error"], "invalid_resource");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.contains(
            "The resource principal named https://graph.microsoft.com was not found in the tenant named Contoso"
        ),
        "{description}"
    );

    // Standing for US Government L4, only that cloud's Graph is known.
    fx.sim.answer_for_graph("https://graph.microsoft.us");
    assert_eq!(fx.sim.graph_scope(), "https://graph.microsoft.us/.default");
    let (status, body) = ask_for(&fx, "https://graph.microsoft.us/.default").await;
    assert_eq!(status, 200, "{body}");
    for refused in [own.as_str(), "https://dod-graph.microsoft.us/.default"] {
        let (status, body) = ask_for(&fx, refused).await;
        assert_eq!((status, aadsts(&body)), (400, 500011), "{refused}: {body}");
    }
}
