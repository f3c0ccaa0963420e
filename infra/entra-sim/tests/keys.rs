//! Certificate rotation on the app: addKey / removeKey with proofs of
//! possession, and reading the key credentials back.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Cert, Fixture, aadsts, assertion_claims, now};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

const AAD_GRAPH: &str = "00000002-0000-0000-c000-000000000000";

fn proof_claims(fx: &Fixture) -> Value {
    let now = now();
    json!({"aud": AAD_GRAPH, "iss": fx.object_id.to_string(), "nbf": now, "exp": now + 600})
}

fn add_key_body(cert: &Cert, proof: &str) -> Value {
    json!({
        "keyCredential": {
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": STANDARD.encode(&cert.der),
        },
        "passwordCredential": null,
        "proof": proof,
    })
}

async fn assertion_status(fx: &Fixture, cert: &Cert) -> (u16, Value) {
    let url = fx.token_url(fx.tenant);
    let assertion = cert.sign_ps256(&assertion_claims(fx.client_id, &url));
    fx.post_assertion(&url, &assertion).await
}

#[tokio::test]
async fn add_then_remove_a_key_rolls_the_certificate() {
    let fx = Fixture::new(&["User.Read.All"]).await;
    let home_token = fx.token_for(fx.home).await;
    let old_key = fx.sim.app_key_credentials(fx.object_id)[0].clone();
    let new_cert = Cert::rsa();

    let proof = fx.cert.sign_rs256(&proof_claims(&fx));
    let path = format!("applications/{}/addKey", fx.object_id);
    let (status, _, added) = fx
        .post_json(&home_token, &path, &add_key_body(&new_cert, &proof))
        .await;
    assert_eq!(status, 200, "{added}");
    let thumbprint: String = Sha1::digest(&new_cert.der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(added["customKeyIdentifier"], thumbprint);
    assert_eq!(added["type"], "AsymmetricX509Cert");
    assert_eq!(added["usage"], "Verify");
    assert!(added["key"].is_null(), "the key itself is never returned");
    assert!(added["endDateTime"].as_str().unwrap().starts_with("4096-"));
    let keys = fx.sim.app_key_credentials(fx.object_id);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].key_id.to_string(), added["keyId"].as_str().unwrap());
    assert_eq!(keys[1].der, new_cert.der);

    // The new certificate works at once; then the old one is removed with a
    // proof signed by the new one.
    assert_eq!(assertion_status(&fx, &new_cert).await.0, 200);
    let proof = new_cert.sign_ps256(&proof_claims(&fx));
    let (status, _, body) = fx
        .post_json(
            &home_token,
            &format!("applications/{}/removeKey", fx.object_id),
            &json!({"keyId": old_key.key_id, "proof": proof}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let keys = fx.sim.app_key_credentials(fx.object_id);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].der, new_cert.der);
    let (status, body) = assertion_status(&fx, &fx.cert).await;
    assert_eq!(
        (status, aadsts(&body)),
        (401, 700027),
        "the old certificate is gone"
    );
}

#[tokio::test]
async fn invalid_proofs_are_refused() {
    let fx = Fixture::new(&["User.Read.All"]).await;
    let home_token = fx.token_for(fx.home).await;
    let path = format!("applications/{}/addKey", fx.object_id);
    let new_cert = Cert::rsa();
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "wrong audience",
            {
                let mut c = proof_claims(&fx);
                c["aud"] = "https://graph.microsoft.com".into();
                fx.cert.sign_rs256(&c)
            },
            400,
        ),
        (
            "issuer is the client id, not the object id",
            {
                let mut c = proof_claims(&fx);
                c["iss"] = fx.client_id.to_string().into();
                fx.cert.sign_rs256(&c)
            },
            400,
        ),
        (
            "lives longer than 10 minutes",
            {
                let mut c = proof_claims(&fx);
                c["exp"] = (now() + 3600).into();
                fx.cert.sign_rs256(&c)
            },
            400,
        ),
        (
            "expired",
            {
                let mut c = proof_claims(&fx);
                c["nbf"] = (now() - 1200).into();
                c["exp"] = (now() - 600).into();
                fx.cert.sign_rs256(&c)
            },
            400,
        ),
        (
            "signed by a certificate the app does not have",
            Cert::rsa().sign_rs256(&proof_claims(&fx)),
            401,
        ),
        ("not a JWT", "not-a-jwt".to_string(), 401),
    ];
    for (case, proof, expected) in cases {
        let (status, _, body) = fx
            .post_json(&home_token, &path, &add_key_body(&new_cert, &proof))
            .await;
        assert_eq!(status, expected, "{case}: {body}");
        assert!(body["error"]["code"].is_string(), "{case}: a Graph error");
    }
    assert_eq!(
        fx.sim.app_key_credentials(fx.object_id).len(),
        1,
        "nothing was added"
    );

    // A token from another tenant may not roll the app's keys.
    let contoso = fx.token().await;
    let proof = fx.cert.sign_rs256(&proof_claims(&fx));
    let (status, _, _) = fx
        .post_json(&contoso, &path, &add_key_body(&new_cert, &proof))
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn reading_the_application_needs_an_application_role() {
    let fx = Fixture::new(&["User.Read.All"]).await;
    let path = format!("applications/{}", fx.object_id);
    let token = fx.token_for(fx.home).await;
    let (status, _, _) = fx.get(&token, &path).await;
    assert_eq!(status, 403);

    fx.sim
        .grant_admin_consent(fx.home, fx.client_id, &["Application.ReadWrite.OwnedBy"]);
    let token = fx.token_for(fx.home).await;
    let (status, _, app) = fx.get(&token, &path).await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["appId"], fx.client_id.to_string());
    let keys = app["keyCredentials"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let registered = &fx.sim.app_key_credentials(fx.object_id)[0];
    assert_eq!(keys[0]["keyId"], registered.key_id.to_string());
    let (status, _, by_app_id) = fx
        .get(&token, &format!("applications(appId='{}')", fx.client_id))
        .await;
    assert_eq!(status, 200);
    assert_eq!(by_app_id["id"], fx.object_id.to_string());
}
