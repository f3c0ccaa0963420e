//! `$batch`, injected faults, resource units and stats.

mod common;

use std::time::{Duration, Instant};

use common::Fixture;
use dirsync_entra_sim::{Faults, GenSpec, TenantSpec};
use serde_json::{Value, json};

const READ: [&str; 2] = ["User.Read.All", "Group.Read.All"];

fn batch_of(urls: &[String]) -> Value {
    json!({
        "requests": urls
            .iter()
            .enumerate()
            .map(|(i, url)| json!({"id": i.to_string(), "method": "GET", "url": url}))
            .collect::<Vec<_>>()
    })
}

#[tokio::test]
async fn a_batch_of_20_is_answered_and_21_refused() {
    let fx = Fixture::new(&READ).await;
    fx.sim
        .generate_directory(fx.tenant, GenSpec::sized(200, 25, 8));
    let token = fx.token().await;
    let groups: Vec<String> = fx
        .sim
        .snapshot(fx.tenant)
        .groups
        .iter()
        .map(|g| format!("/groups/{}/members?$select=id", g.id))
        .collect();
    fx.sim.reset_stats();

    let (status, _, body) = fx
        .post_json(&token, "$batch", &batch_of(&groups[..20]))
        .await;
    assert_eq!(status, 200, "{body}");
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 20);
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response["id"], i.to_string());
        assert_eq!(response["status"], 200);
        assert!(response["body"]["value"].is_array());
        assert_eq!(
            response["headers"]["x-ms-resource-unit"], "2",
            "members 3, −1 for $select"
        );
    }
    let stats = fx.sim.stats();
    assert_eq!(stats.route("POST /v1.0/$batch"), 1);
    assert_eq!(
        stats.route("GET /v1.0/groups/{id}/members"),
        20,
        "inner requests count"
    );
    assert_eq!(stats.resource_units[&fx.tenant], 40);

    let (status, _, body) = fx
        .post_json(&token, "$batch", &batch_of(&groups[..21]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fx.sim.stats().route("GET /v1.0/groups/{id}/members"), 20);
}

#[tokio::test]
async fn throttle_next_gives_429_with_retry_after_outside_and_inside_batches() {
    let fx = Fixture::new(&READ).await;
    let token = fx.token().await;
    fx.sim.set_faults(Faults {
        throttle_next: 2,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let (status, headers, body) = fx.get(&token, "users").await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["code"], "TooManyRequests");

    // The second throttled request is the first inside this batch.
    let urls = vec!["/users".to_string(), "/groups".to_string()];
    let (status, _, body) = fx.post_json(&token, "$batch", &batch_of(&urls)).await;
    assert_eq!(status, 200);
    assert_eq!(body["responses"][0]["status"], 429);
    assert_eq!(body["responses"][0]["headers"]["Retry-After"], "1");
    assert_eq!(body["responses"][1]["status"], 200);

    let (status, _, _) = fx.get(&token, "users").await;
    assert_eq!(status, 200, "the fault is used up");
    let stats = fx.sim.stats();
    assert_eq!(stats.throttled, 2);
    assert_eq!(stats.faults_injected, 2);
}

#[tokio::test]
async fn throttle_every_nth_request() {
    let fx = Fixture::new(&READ).await;
    let token = fx.token().await;
    fx.sim.set_faults(Faults {
        throttle_every: Some(3),
        ..Faults::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(fx.get(&token, "users").await.0);
    }
    assert_eq!(statuses, vec![200, 200, 429, 200, 200, 429]);
}

#[tokio::test]
async fn server_errors_alternate_503_and_504() {
    let fx = Fixture::new(&READ).await;
    let token = fx.token().await;
    fx.sim.set_faults(Faults {
        server_error_next: 2,
        ..Faults::default()
    });
    let (first, _, body) = fx.get(&token, "users").await;
    assert_eq!(first, 503);
    assert_eq!(body["error"]["code"], "ServiceNotAvailable");
    let (second, _, _) = fx.get(&token, "users").await;
    assert_eq!(second, 504);
    let (third, _, _) = fx.get(&token, "users").await;
    assert_eq!(third, 200);
}

#[tokio::test]
async fn a_dropped_connection_is_a_connection_error() {
    let fx = Fixture::new(&READ).await;
    let token = fx.token().await;
    fx.sim.set_faults(Faults {
        drop_connection_next: 1,
        ..Faults::default()
    });
    let result = fx
        .http
        .get(format!("{}/v1.0/users", fx.sim.graph_url()))
        .bearer_auth(&token)
        .send()
        .await;
    let error = result.expect_err("no response arrives");
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    assert_eq!(fx.sim.stats().faults_injected, 1);
    let (status, _, _) = fx.get(&token, "users").await;
    assert_eq!(status, 200, "the next request is served");
}

#[tokio::test]
async fn page_latency_and_forced_throttle_percentage() {
    let fx = Fixture::new(&READ).await;
    let token = fx.token().await;
    fx.sim.set_faults(Faults {
        page_latency: Duration::from_millis(150),
        throttle_percentage_header: Some(85),
        ..Faults::default()
    });
    let started = Instant::now();
    let (status, headers, _) = fx.get(&token, "users").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(headers["x-ms-throttle-limit-percentage"], "0.85");
    assert_eq!(headers["x-ms-resource-unit"], "2");
}

#[tokio::test]
async fn resource_units_are_enforced_per_app_and_tenant_when_asked() {
    let fx = Fixture::new(&READ).await;
    // A small tenant: 3,500 RU per 10 s. /users without $select costs 2.
    let small = fx.sim.add_tenant(TenantSpec {
        display_name: "Tiny".into(),
        verified_domains: vec!["tiny.example".into()],
        ..TenantSpec::default()
    });
    fx.sim.grant_admin_consent(small, fx.client_id, &READ);
    let token = fx.token_for(small).await;
    fx.sim.set_faults(Faults {
        enforce_resource_units: true,
        ..Faults::default()
    });
    // Spend the budget 20 requests at a time: 88 batches reach 3,500 RU.
    let urls: Vec<String> = (0..20).map(|_| "/users".to_string()).collect();
    let mut served = 0;
    let mut throttled = None;
    let mut last_served = Value::Null;
    for _ in 0..100 {
        let (_, _, body) = fx.post_json(&token, "$batch", &batch_of(&urls)).await;
        for response in body["responses"].as_array().unwrap() {
            match response["status"].as_u64().unwrap() {
                200 => {
                    served += 1;
                    last_served = response.clone();
                }
                429 => {
                    throttled = Some(response.clone());
                    break;
                }
                other => panic!("unexpected {other}"),
            }
        }
        if throttled.is_some() {
            break;
        }
    }
    assert_eq!(served, 1_750, "3,500 RU at 2 RU each");
    let throttled = throttled.expect("the budget runs out");
    let headers = &throttled["headers"];
    assert!(
        headers["Retry-After"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            <= 10
    );
    assert!(
        headers["x-ms-throttle-scope"]
            .as_str()
            .unwrap()
            .starts_with("Tenant_Application/ReadWrite/")
    );
    assert_eq!(fx.sim.stats().resource_units[&small], 3_500);
    assert_eq!(
        last_served["headers"]["x-ms-throttle-limit-percentage"], "1.00",
        "the budget is announced as spent"
    );

    // Another tenant has its own budget.
    let token = fx.token().await;
    let (status, _, _) = fx.get(&token, "users").await;
    assert_eq!(status, 200);
}
