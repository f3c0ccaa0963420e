//! The operator commands, driven through the binary against the Entra
//! simulator: human and --json output, exit codes, error paths.

use std::process::Command;

mod common;
use common::{Cli, stderr};

use dirsync_entra_sim::{EntraSim, GenSpec, TenantSpec};
use serde_json::Value;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_connectors_sync_runs_lookups_and_export() {
    let sim = EntraSim::start().await.unwrap();
    let tenant = common::contoso(&sim);
    sim.generate_directory(tenant, GenSpec::sized(150, 6, 3));
    let client = common::legacy_app(&sim, tenant);
    let cli = Cli::new();

    // Accounts: created, listed; a bad region refused with the choices.
    let a = cli.json(&[
        "account",
        "add",
        "acme",
        "--name",
        "Acme Corp",
        "--region",
        "eu",
    ]);
    assert_eq!(a["region"], "eu");
    let bad = cli.run(&[
        "account", "add", "globex", "--name", "Globex", "--region", "mars",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("au (Australia)"), "{}", stderr(&bad));
    let listed = cli.run(&["account", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("Acme Corp"));

    // A legacy connector from a spec file, its secret from a file.
    let c = cli.add_legacy_connector(&sim, client);
    assert_eq!(c["source"]["kind"], "entra-legacy");
    assert!(
        !c.to_string().contains("legacy-secret"),
        "the secret is never printed"
    );

    let t = cli.json(&["test", "acme", "legacy"]);
    assert_eq!(t["ok"], true, "{t}");

    // A dry run writes nothing; the real sync does the work.
    let plan = cli.json(&["sync", "acme", "legacy", "--dry-run"]);
    assert!(
        plan["plan"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["action"] == "create")
    );
    let run = cli.json(&["sync", "acme", "legacy"]);
    assert_eq!(run["status"], "succeeded", "{run}");
    let created = run["counts"]["created"].as_u64().unwrap();
    assert!(created > 100);
    let runs = cli.json(&["runs", "list", "acme", "legacy"]);
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "the dry run left no record"
    );
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    let shown = cli.json(&["runs", "show", "acme", "legacy", &id]);
    assert_eq!(shown["run"]["id"], id);

    // Look-ups and the export.
    let export = cli.json(&["export", "acme", "legacy"]);
    let users = export["users"].as_array().unwrap();
    let someone = users
        .iter()
        .find(|u| u["aliases"].as_array().is_some_and(|a| !a.is_empty()))
        .unwrap_or(&users[0]);
    let address = someone["primary_email"].as_str().unwrap().to_uppercase();
    let found = cli.json(&["user", "acme", &address]);
    assert_eq!(found["user"]["id"], someone["id"]);
    let groups = cli.json(&["groups", "acme", "legacy", someone["id"].as_str().unwrap()]);
    assert!(groups["rows"].is_array(), "{groups}");
    assert_eq!(
        export["memberships"].as_array().unwrap().len() as u64,
        run["counts"]["members_added"].as_u64().unwrap()
            - run["counts"]["members_removed"].as_u64().unwrap()
    );

    // Legacy connectors refuse changes until migrated: exit 2, the reason.
    let refused = cli.run(&[
        "connector",
        "update",
        "acme",
        "legacy",
        "--acknowledge-disabled",
        "false",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("migrated"),
        "{}",
        stderr(&refused)
    );

    // A wrong secret: the test fails with exit 1 and plain advice.
    let wrong = cli.dir.path().join("wrong.txt");
    std::fs::write(&wrong, "Not-it-42").unwrap();
    let set = cli.run(&[
        "password",
        "set",
        "acme",
        "legacy",
        "--from-file",
        wrong.to_str().unwrap(),
    ]);
    // Tested first: refused (exit 2) with the reason, and the working
    // secret stays.
    assert_eq!(set.status.code(), Some(2), "{}", stderr(&set));
    let why = stderr(&set);
    assert!(
        why.contains("not stored") && why.contains("AADSTS7000215") && !why.contains("Not-it-42"),
        "{why}"
    );
    assert_eq!(cli.run(&["test", "acme", "legacy"]).status.code(), Some(0));
    // --force stores it anyway: the test after storing fails (exit 1).
    let forced = cli.run(&[
        "password",
        "set",
        "acme",
        "legacy",
        "--force",
        "--from-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(forced.status.code(), Some(1), "{}", stderr(&forced));
    // The reason, in text as in --json.
    assert!(
        stderr(&forced).contains("AADSTS7000215"),
        "{}",
        stderr(&forced)
    );
    let test = cli.run(&["test", "acme", "legacy"]);
    assert_eq!(test.status.code(), Some(1));
    let text = String::from_utf8_lossy(&test.stdout);
    assert!(
        text.contains("AADSTS7000215") && !text.contains("Not-it-42"),
        "{text}"
    );

    // Unknown things are refused with what is missing.
    let missing = cli.run(&["runs", "show", "acme", "legacy", "1772438400000-00000000"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("does not exist"));
    let removed = cli.json(&["connector", "remove", "acme", "legacy"]);
    assert_eq!(removed["deleted"], "legacy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_bootstrap_then_rotate_against_the_app() {
    let sim = EntraSim::start().await.unwrap();
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    let cli = Cli::new();
    let pem = cli.dir.path().join("app.pem");
    let boot = cli.run(&[
        "cert",
        "bootstrap",
        "--local",
        "--secret",
        "dirsync/app-cert",
        "--out",
        pem.to_str().unwrap(),
    ]);
    assert!(boot.status.success(), "{}", stderr(&boot));
    let der =
        dirsync_shared::auth::certificate::certificate_der(&std::fs::read_to_string(&pem).unwrap())
            .unwrap();
    let (client_id, object_id) = (Uuid::new_v4(), Uuid::new_v4());
    sim.register_multitenant_app(dirsync_entra_sim::MultiTenantApp {
        client_id,
        object_id,
        home_tenant: home,
        redirect_uris: vec!["http://localhost:8080/consent/callback".into()],
        certificates: vec![der],
    });
    sim.grant_admin_consent(home, client_id, &["Application.ReadWrite.OwnedBy"]);
    let rotate = |dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_dirsync"))
            .args(["cert", "rotate", "--local", "--secrets-dir"])
            .arg(dir.join("secrets"))
            .env("DIRSYNC_APP_CLIENT_ID", client_id.to_string())
            .env("DIRSYNC_APP_OBJECT_ID", object_id.to_string())
            .env("DIRSYNC_APP_TENANT", home.to_string())
            .env("DIRSYNC_APP_CERT_SECRET", "dirsync/app-cert")
            .env("DIRSYNC_AUTHORITY_URL", sim.authority_url())
            .env("DIRSYNC_GRAPH_URL", sim.graph_url())
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let out = rotate(cli.dir.path());
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            sim.app_key_credentials(object_id).len(),
            2,
            "current and previous only"
        );
    }
    // Without the app's settings the command says which one is missing.
    let out = Command::new(env!("CARGO_BIN_EXE_dirsync"))
        .args(["cert", "rotate", "--local"])
        .env_remove("DIRSYNC_APP_CLIENT_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("DIRSYNC_APP_CLIENT_ID"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_answers_the_admin_api_and_the_consent_callback() {
    let server = Cli::new().serve();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", server.port);
        let auth = format!("Bearer {}", server.token);
        let created = http
            .post(format!("{base}/accounts"))
            .header("authorization", &auth)
            .json(&serde_json::json!({"id": "acme", "name": "Acme", "region": "au"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let listed: Value = http
            .get(format!("{base}/accounts"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["accounts"][0]["id"], "acme");
        // The callback is public (Entra sends the administrator's browser).
        let page = http
            .get(format!(
                "{base}/consent/callback?state=forged&admin_consent=True"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 400);
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert!(
            page.text()
                .await
                .unwrap()
                .contains("expired or was already used")
        );
    });
}

#[test]
fn serve_refuses_what_another_web_page_could_send() {
    let server = Cli::new().serve();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", server.port);
        let auth = format!("Bearer {}", server.token);
        let account = serde_json::json!({"id": "evil", "name": "Evil", "region": "eu"}).to_string();
        // A cross-site form post: no token, a form's content type.
        let r = http
            .post(format!("{base}/accounts"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://attacker.example")
            .body(account.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.text().await.unwrap().contains("Authorization: Bearer"));
        // A wrong token, a DNS-rebound host, a body not declared JSON.
        for (token, host, content_type, status) in [
            ("Bearer nope", None, "application/json", 401),
            (
                auth.as_str(),
                Some("attacker.example"),
                "application/json",
                421,
            ),
            (
                auth.as_str(),
                Some(format!("localhost:{}", server.port + 1).as_str()),
                "application/json",
                421,
            ),
            (auth.as_str(), None, "text/plain", 415),
        ] {
            let mut req = http
                .post(format!("{base}/accounts"))
                .header("authorization", token)
                .header("content-type", content_type)
                .body(account.clone());
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), status, "{token} {host:?} {content_type}");
        }
        // Nothing was created.
        let listed: Value = http
            .get(format!("{base}/accounts"))
            .header("authorization", &auth)
            .header("host", format!("localhost:{}", server.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["accounts"], serde_json::json!([]), "{listed}");
    });
}
