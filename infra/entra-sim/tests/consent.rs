//! The admin-consent endpoint: exact redirects, and no redirect to an
//! unregistered address.

mod common;

use std::collections::HashMap;

use common::{Fixture, REDIRECT};
use dirsync_entra_sim::ConsentDecision;

fn consent_url(fx: &Fixture, tenant: &str, redirect: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &fx.client_id.to_string())
        .append_pair("scope", &fx.sim.graph_scope())
        .append_pair("redirect_uri", redirect)
        .append_pair("state", "st-42/xyz")
        .finish();
    format!(
        "{}/{tenant}/v2.0/adminconsent?{query}",
        fx.sim.authority_url()
    )
}

/// The redirect's address and its query parameters, in order.
fn split_location(location: &str) -> (String, Vec<(String, String)>) {
    let url = url::Url::parse(location).unwrap();
    let base = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap(),
        url.path()
    );
    (base, url.query_pairs().into_owned().collect())
}

#[tokio::test]
async fn approval_redirects_with_tenant_scope_and_state_and_grants_the_roles() {
    let fx = Fixture::new(&[]).await;
    fx.sim
        .set_next_consent_decision(ConsentDecision::Approve { tenant: fx.tenant });
    let response = fx
        .http
        .get(consent_url(&fx, "organizations", REDIRECT))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (base, params) = split_location(&location);
    assert_eq!(base, REDIRECT);
    let expected: Vec<(String, String)> = [
        ("admin_consent", "True".to_string()),
        ("tenant", fx.tenant.to_string()),
        ("scope", fx.sim.graph_scope()),
        ("state", "st-42/xyz".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(params, expected);

    // The grant is real: a token for Contoso carries the consented roles.
    let token = fx.token().await;
    let (status, _, _) = fx.get(&token, "users").await;
    assert_eq!(status, 200);
    let (status, _, _) = fx.get(&token, "groups").await;
    assert_eq!(status, 200);
    assert_eq!(fx.sim.stats().route("GET adminconsent"), 1);
}

#[tokio::test]
async fn cancel_redirects_with_access_denied_and_no_tenant() {
    let fx = Fixture::new(&[]).await;
    fx.sim.set_next_consent_decision(ConsentDecision::Cancel);
    let response = fx
        .http
        .get(consent_url(&fx, "organizations", REDIRECT))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("error_description=AADSTS65004%3A+User+declined+to+consent"),
        "{location}"
    );
    let (base, params) = split_location(&location);
    assert_eq!(base, REDIRECT);
    let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec!["error", "error_description", "admin_consent", "state"]
    );
    let params: HashMap<_, _> = params.into_iter().collect();
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["admin_consent"], "True");
    assert_eq!(params["state"], "st-42/xyz");
    assert!(params["error_description"].starts_with("AADSTS65004: "));

    // Nothing was granted.
    let url = fx.token_url(fx.tenant);
    let assertion = fx
        .cert
        .sign_ps256(&common::assertion_claims(fx.client_id, &url));
    let (status, _) = fx.post_assertion(&url, &assertion).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    let fx = Fixture::new(&[]).await;
    fx.sim
        .set_next_consent_decision(ConsentDecision::Approve { tenant: fx.tenant });
    let response = fx
        .http
        .get(consent_url(&fx, "organizations", "https://evil.test/steal"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers().get("location").is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("AADSTS50011"), "{page}");

    // The decision is still pending for a correct request, on the tenant
    // named in the URL.
    let response = fx
        .http
        .get(consent_url(&fx, "contoso.example", REDIRECT))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains(&format!("tenant={}", fx.tenant)));
}

#[tokio::test]
async fn a_new_grant_is_not_seen_by_token_requests_until_it_has_replicated() {
    let fx = Fixture::new(&[]).await;
    fx.sim
        .set_consent_replication_delay(std::time::Duration::from_secs(60));
    fx.sim
        .set_next_consent_decision(ConsentDecision::Approve { tenant: fx.tenant });
    let response = fx
        .http
        .get(consent_url(&fx, "contoso.example", REDIRECT))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);

    // Entra's answer while the service principal replicates: the app is not
    // (yet) in the directory.
    let url = fx.token_url(fx.tenant);
    let refused = || async {
        let assertion = fx
            .cert
            .sign_ps256(&common::assertion_claims(fx.client_id, &url));
        fx.post_assertion(&url, &assertion).await
    };
    let (status, body) = refused().await;
    assert_eq!((status, common::aadsts(&body)), (400, 700016), "{body}");
    assert_eq!(body["error"], "unauthorized_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700016: Application with identifier"),
        "{body}"
    );
    fx.sim.advance_clock(std::time::Duration::from_secs(59));
    assert_eq!(common::aadsts(&refused().await.1), 700016);

    // Replicated: tokens are issued, and consenting again hides nothing.
    fx.sim.advance_clock(std::time::Duration::from_secs(2));
    let token = fx.token().await;
    assert_eq!(fx.get(&token, "users").await.0, 200);
    fx.sim
        .grant_admin_consent(fx.tenant, fx.client_id, &["User.Read.All"]);
    let _ = fx.token().await;
}
