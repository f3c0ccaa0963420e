//! The Lambda handlers, invoked in-process with the event fixtures in
//! `events/`, against DynamoDB Local, the SQS and Secrets Manager emulator,
//! and the Entra simulator.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::Utc;
use common::world::{World, world};
use dirsync_entra_sim::Faults;
use dirsync_shared::app::window::{WindowEvent, WindowSpans, fan_out};
use dirsync_shared::app::worker::{JobOutcome, process};
use dirsync_shared::app::{App, AppSettings, FailureKind};
use dirsync_shared::clock::Clock;
use dirsync_shared::domain::*;
use dirsync_shared::queue::{Job, LocalQueue};
use dirsync_shared::secrets::Stage;
use dirsync_shared::store::{PageRequest, Scope, all_pages};
use serde_json::{Value, json};

fn fixture_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn sqs_event(messages: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = messages;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_enqueues_each_due_connector_once() {
    let w = world(10).await;
    w.account("acme", Region::Europe).await;
    w.account("globex", Region::Europe).await;
    w.account("initech", Region::NorthAmerica).await;
    w.consent_connector("acme", "entra-main", true, true).await;
    w.consent_connector("acme", "paused", true, false).await;
    w.consent_connector("acme", "pending", false, true).await;
    w.consent_connector("globex", "entra", true, true).await;
    w.consent_connector("initech", "entra", true, true).await;

    let event: Value = serde_json::from_str(&fixture_file("scheduler-window.json")).unwrap();
    let report = sync_window::handle(&w.app, event.clone()).await.unwrap();
    assert_eq!((report.enqueued, report.already, report.not_due), (2, 0, 2));
    let jobs = w.jobs().await;
    let mut who: Vec<String> = jobs
        .iter()
        .map(|(j, _)| format!("{}/{}", j.account, j.connector))
        .collect();
    who.sort();
    assert_eq!(
        who,
        ["acme/entra-main", "globex/entra"],
        "Europe's due connectors, once each"
    );
    assert!(
        jobs.iter()
            .all(|(j, _)| matches!(j.trigger, Trigger::Schedule { .. }))
    );

    // The scheduler fires the same window again: nothing more.
    let again = sync_window::handle(&w.app, event).await.unwrap();
    assert_eq!((again.enqueued, again.already), (0, 2));
    assert!(w.jobs().await.is_empty());

    // A schedule without our Input is refused with the fix.
    let raw: Value = serde_json::from_str(&fixture_file("scheduler-default-payload.json")).unwrap();
    let err = sync_window::handle(&w.app, raw).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Configuration, "retrying cannot help");
    assert!(err.message.contains("Input"), "{err}");
}

/// A window spread over three hours, far beyond SQS's 15-minute delay:
/// each connector's job is sent on until its offset and runs then, once,
/// although the window fires twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_spanning_hours_starts_each_connector_once_at_its_offset() {
    let w = world(5).await;
    // Customers of their own: each may sync the one tenant.
    let ids = [
        "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka",
    ];
    for id in ids {
        w.account(id, Region::Europe).await;
        w.consent_connector(id, "entra", true, true).await;
    }
    let span = Duration::from_secs(3 * 3600);
    let queue = Arc::new(LocalQueue::default());
    let (clock, sim) = (w.f.clock.clone(), &w.sim);
    let app = App {
        queue: queue.clone(),
        settings: AppSettings {
            window_spans: WindowSpans {
                entra: span,
                ..WindowSpans::NONE
            },
            ..w.app.settings.clone()
        },
        ..w.app
    };
    let window = clock.now();
    let event = WindowEvent {
        region: Region::Europe,
        scheduled_time: window,
    };
    let first = fan_out(
        &app.store,
        app.queue.as_ref(),
        &event,
        &app.settings.window_spans,
    )
    .await
    .unwrap();
    let again = fan_out(
        &app.store,
        app.queue.as_ref(),
        &event,
        &app.settings.window_spans,
    )
    .await
    .unwrap();
    assert_eq!((first.enqueued, again.enqueued, again.already), (8, 0, 8));

    // SQS as the worker sees it: each message arrives when its delay is up.
    let mut in_flight: Vec<(chrono::DateTime<Utc>, Job)> = Vec::new();
    let mut deliveries = std::collections::BTreeMap::<String, u32>::new();
    let mut started = std::collections::BTreeMap::<String, chrono::DateTime<Utc>>::new();
    loop {
        for (job, delay) in queue.take_all() {
            assert!(
                delay <= Duration::from_secs(900),
                "SQS delays 15 minutes at most"
            );
            in_flight.push((
                clock.now() + chrono::Duration::from_std(delay).unwrap(),
                job,
            ));
        }
        in_flight.sort_by_key(|(at, _)| *at);
        if in_flight.is_empty() {
            break;
        }
        let (at, job) = in_flight.remove(0);
        let step = at - clock.now();
        clock.advance(step);
        sim.advance_clock(step.to_std().unwrap_or_default());
        *deliveries.entry(job.account.to_string()).or_default() += 1;
        match process(&app, &job, None).await.unwrap() {
            JobOutcome::Deferred { .. } => {}
            JobOutcome::Finished(run) => {
                assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.message);
                let earlier = started.insert(job.account.to_string(), run.started_at);
                assert!(earlier.is_none(), "{} ran twice", job.account);
            }
            other => panic!("{}: {other:?}", job.account),
        }
    }
    let mut latest = Duration::ZERO;
    for id in ids {
        let offset = dirsync_shared::app::window::offset(id, "entra", span);
        let due = window + chrono::Duration::from_std(offset).unwrap();
        let at = started[id];
        assert!(
            at >= due && at - due <= chrono::Duration::seconds(1),
            "{id}: due at {due}, started at {at}"
        );
        let sent = deliveries[id];
        assert!(
            u64::from(sent) <= offset.as_secs() / 900 + 1,
            "{id}: {sent} deliveries for an offset of {offset:?}"
        );
        latest = latest.max(offset);
    }
    assert!(
        latest > Duration::from_secs(3600),
        "the span is used: {latest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_sync_continues_across_invocations() {
    let w = world(3000).await;
    w.sim.set_faults(Faults {
        page_latency: Duration::from_millis(150),
        ..Default::default()
    });
    w.account("acme", Region::Europe).await;
    let c = w.consent_connector("acme", "entra-main", true, true).await;
    let mut event: SqsEvent = serde_json::from_str(&fixture_file("sqs-sync-job.json")).unwrap();
    let mut invocations = 0;
    loop {
        invocations += 1;
        assert!(invocations <= 20, "the run makes progress");
        // Each invocation has about a page's worth of time.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
        let response = sync_worker::handle(&w.app, event, Some(deadline)).await;
        assert!(response.batch_item_failures.is_empty());
        let next = w.jobs().await;
        if next.is_empty() {
            break;
        }
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0.trigger, Trigger::Continuation);
        event = sqs_event(next.into_iter().map(|(_, m)| m).collect());
    }
    assert!(
        invocations >= 3,
        "continued across {invocations} invocations"
    );
    let scope = Scope::new(c.account.clone(), c.id.clone());
    let runs =
        w.f.store
            .list_runs(&scope, PageRequest::first(10))
            .await
            .unwrap()
            .items;
    assert_eq!(runs.len(), 1, "one run, continued");
    assert_eq!(
        runs[0].status,
        RunStatus::Succeeded,
        "{:?}",
        runs[0].message
    );
    let users = all_pages(|p| w.f.store.list_users(&scope, p))
        .await
        .unwrap();
    let snap = w.sim.snapshot(w.tenant);
    let expected = snap
        .users
        .iter()
        .filter(|u| {
            u.user_type == dirsync_entra_sim::UserType::Member
                && (u.mail.is_some() || !u.proxy_addresses.is_empty())
        })
        .count();
    assert_eq!(users.len(), expected);
    assert_eq!(
        runs[0].counts.created as usize,
        expected + snap.groups.len(),
        "nothing created twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_fail_and_a_job_failing_every_time_records_a_failed_run() {
    let w = world(10).await;
    let poison: SqsEvent = serde_json::from_str(&fixture_file("sqs-poison.json")).unwrap();
    let r = sync_worker::handle(&w.app, poison, None).await;
    assert_eq!(
        r.batch_item_failures.len(),
        1,
        "left for the dead-letter queue"
    );

    // A job whose run cannot even start (the store refuses) on its last delivery.
    w.account("acme", Region::Europe).await;
    let c = w.consent_connector("acme", "entra-main", true, true).await;
    let mut event: SqsEvent = serde_json::from_str(&fixture_file("sqs-sync-job.json")).unwrap();
    event.records[0].attributes.insert(
        "ApproximateReceiveCount".into(),
        sync_worker::MAX_RECEIVES.to_string(),
    );
    // Hold the lease with a run that is not ours: the job is dropped, not failed.
    let scope = Scope::new(c.account.clone(), c.id.clone());
    w.f.store
        .acquire_lease(&scope, "someone-else", chrono::Duration::minutes(5))
        .await
        .unwrap();
    let r = sync_worker::handle(&w.app, event.clone(), None).await;
    assert!(
        r.batch_item_failures.is_empty(),
        "already running is not a failure"
    );
    assert!(
        w.f.store
            .list_runs(&scope, PageRequest::first(5))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // A run whose source cannot start (its secret was never stored)
    // records a failed run that says what to do.
    let google: ConnectorSpec = serde_json::from_value(json!({
        "id": "ad", "kind": "google", "admin_email": "admin@corp.example.com",
        "service_account_key_ref": "dirsync/acme/google"
    }))
    .unwrap();
    let ad =
        w.f.store
            .create_connector(
                &google
                    .validate(AccountId::new("acme").unwrap(), Utc::now())
                    .unwrap(),
            )
            .await
            .unwrap();
    let mut event: SqsEvent = serde_json::from_str(&fixture_file("sqs-sync-job.json")).unwrap();
    event.records[0].body = Some(json!({"account": "acme", "connector": "ad", "trigger": {"trigger": "manual", "requested_by": null}}).to_string());
    let r = sync_worker::handle(&w.app, event, None).await;
    assert!(r.batch_item_failures.is_empty());
    let runs =
        w.f.store
            .list_runs(
                &Scope::new(ad.account.clone(), ad.id.clone()),
                PageRequest::first(5),
            )
            .await
            .unwrap()
            .items;
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(
        runs[0]
            .message
            .as_deref()
            .unwrap()
            .contains("does not exist"),
        "{:?}",
        runs[0].message
    );
}

async fn call(w: &World, name: &str) -> (u16, Value) {
    let req = lambda_http::request::from_str(&fixture_file(name)).unwrap();
    let resp = admin_api::handle(&w.app, req).await;
    let status = resp.status().as_u16();
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("{other:?}"),
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_happy_paths_and_refusals() {
    let mut w = world(40).await;
    let (s, b) = call(&w, "http-create-account.json").await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(&w, "http-create-account.json").await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = call(&w, "http-create-account-bad-region.json").await;
    assert_eq!(s, 400);
    assert!(
        b["error"].as_str().unwrap().contains("au (Australia)"),
        "{b}"
    );

    // A legacy connector with its secret: stored in Secrets Manager, never returned.
    let (s, b) = call(&w, "http-create-legacy-connector.json").await;
    assert_eq!(s, 201, "{b}");
    assert!(!b.to_string().contains("legacy-client-secret-value"));
    let secret_name = b["source"]["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        w.app
            .secrets
            .get(&secret_name.parse().unwrap(), Stage::Current)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        "legacy-client-secret-value"
    );
    // The same request again is refused and leaves the stored secret alone.
    let (s, _) = call(&w, "http-create-legacy-connector.json").await;
    assert_eq!(s, 409);
    assert!(
        w.app
            .secrets
            .get(&secret_name.parse().unwrap(), Stage::Current)
            .await
            .unwrap()
            .is_some()
    );
    // Legacy connectors refuse configuration changes until migrated.
    let (s, b) = call(&w, "http-patch-legacy-connector.json").await;
    assert_eq!(s, 409);
    assert!(b["error"].as_str().unwrap().contains("migrated"), "{b}");
    // Bad input is refused with the fix, and nothing is half-written.
    let (s, b) = call(&w, "http-create-connector-spaces.json").await;
    assert_eq!(s, 400);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("\"contoso.com,fabrikam.com\""),
        "{b}"
    );
    assert!(
        w.f.store
            .get_connector(
                &AccountId::new("acme").unwrap(),
                &ConnectorId::new("bad").unwrap()
            )
            .await
            .unwrap()
            .is_none()
    );

    // Production deployments refuse connectors that name their own hosts.
    w.app.settings.allow_custom_cloud = false;
    let req = http::Request::builder()
        .method("POST")
        .uri("/accounts/acme/connectors")
        .body(serde_json::to_vec(&json!({"connector": {"id": "evil", "kind": "entra",
            "authority_url": "https://login.attacker.example", "graph_url": "https://graph.attacker.example"}})).unwrap())
        .unwrap();
    let resp = dirsync_shared::app::api::handle(
        &w.app,
        req,
        dirsync_shared::app::Caller::operator("test"),
    )
    .await;
    assert_eq!(resp.status(), 400, "{}", resp.body());
    assert!(resp.body().contains("cloud preset"));
    w.app.settings.allow_custom_cloud = true;

    // Sync now on a consent connector: queued; a second one while a run holds the lease: refused.
    let c = w.consent_connector("acme", "entra-main", true, true).await;
    let (s, b) = call(&w, "http-test-connection.json").await;
    assert_eq!(s, 200);
    assert_eq!(b["ok"], true, "{b}");
    let (s, _) = call(&w, "http-sync-now.json").await;
    assert_eq!(s, 202);
    let jobs = w.jobs().await;
    assert_eq!(jobs.len(), 1);
    match &jobs[0].0.trigger {
        Trigger::Manual { requested_by } => assert_eq!(
            requested_by.as_deref(),
            Some("arn:aws:iam::123456789012:user/operator")
        ),
        other => panic!("{other:?}"),
    }
    let scope = Scope::new(c.account.clone(), c.id.clone());
    let lease =
        w.f.store
            .acquire_lease(&scope, "run-x", chrono::Duration::minutes(5))
            .await
            .unwrap();
    let (s, b) = call(&w, "http-sync-now.json").await;
    assert_eq!(s, 409, "{b}");
    assert!(b["error"].as_str().unwrap().contains("already running"));
    w.f.store.release_lease(&lease).await.unwrap();

    // Run the queued job, then read the runs and look a user up.
    let r = sync_worker::handle(
        &w.app,
        sqs_event(jobs.into_iter().map(|(_, m)| m).collect()),
        None,
    )
    .await;
    assert!(r.batch_item_failures.is_empty());
    let (s, b) = call(&w, "http-list-runs.json").await;
    assert_eq!(s, 200);
    assert_eq!(b["runs"][0]["status"], "succeeded", "{b}");
    let user1 = w
        .sim
        .snapshot(w.tenant)
        .users
        .into_iter()
        .find(|u| u.user_type == dirsync_entra_sim::UserType::Member && u.mail.is_some())
        .unwrap();
    let mail = user1.mail.clone().unwrap();
    let req_json = fixture_file("http-find-user.json").replace(
        "USER1%40contoso.com",
        &mail.replace('@', "%40").to_uppercase(),
    );
    let resp = admin_api::handle(&w.app, lambda_http::request::from_str(&req_json).unwrap()).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let lambda_http::Body::Text(t) = resp.body() else {
        panic!()
    };
    let found: Value = serde_json::from_str(t).unwrap();
    assert_eq!(found["user"]["id"], user1.id.to_string());
    assert_eq!(found["connector"], "entra-main");
}
