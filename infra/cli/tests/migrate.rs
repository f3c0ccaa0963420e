//! `dirsync migrate` moves a legacy connector onto the platform app,
//! through the binary: the consent URL it prints, the administrator's
//! consent at the Entra simulator, the callback `dirsync serve` answers,
//! then `dirsync consent status` and a sync with the platform app.

use std::io::BufRead;
use std::process::Stdio;

mod common;
use common::Cli;

use dirsync_entra_sim::{ConsentDecision, EntraSim, GenSpec, MultiTenantApp, TenantSpec};
use uuid::Uuid;

const CERT: &str = "dirsync/app-cert";

/// `dirsync serve` on `port`, killed on drop.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(cli: &Cli, port: u16) -> Served {
    let mut child = cli
        .command(&["serve", "--port", &port.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("Authorization: Bearer ") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Served(child)
}

/// Where `url` redirects to.
async fn location(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(url).send().await.unwrap();
    assert!(r.status().is_redirection(), "{url}: {}", r.status());
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_a_legacy_connector_onto_the_platform_app() {
    let sim = EntraSim::start().await.unwrap();
    let tenant = common::contoso(&sim);
    sim.generate_directory(tenant, GenSpec::sized(60, 4, 5));
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    let legacy = common::legacy_app(&sim, tenant);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/consent/callback");
    let platform = Uuid::new_v4();
    let cli = Cli::with_env(vec![
        ("DIRSYNC_APP_CLIENT_ID".into(), platform.to_string()),
        ("DIRSYNC_APP_CERT_SECRET".into(), CERT.into()),
        ("DIRSYNC_CONSENT_REDIRECT_URI".into(), redirect.clone()),
    ]);
    let der = cli.bootstrap_certificate(CERT);
    sim.register_multitenant_app(MultiTenantApp {
        client_id: platform,
        object_id: Uuid::new_v4(),
        home_tenant: home,
        redirect_uris: vec![redirect],
        certificates: vec![der],
    });

    cli.legacy_connector(&sim, legacy);
    let first = cli.json(&["sync", "acme", "legacy"]);
    assert_eq!(first["status"], "succeeded", "{first}");
    let status = cli.json(&["consent", "status", "acme", "legacy"]);
    assert_eq!(status["state"], "legacy", "{status}");

    // The migration: the URL, the administrator's consent, the callback.
    let _served = serve(&cli, port);
    let started = cli.json(&["migrate", "acme", "legacy"]);
    let url = started["consent_url"].as_str().unwrap();
    sim.set_next_consent_decision(ConsentDecision::Approve { tenant });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let callback = location(&http, url).await;
    let sign_in = location(&http, &callback).await;
    let back = location(&http, &sign_in).await;
    let page = http.get(&back).send().await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());

    let status = cli.json(&["consent", "status", "acme", "legacy"]);
    assert_eq!(status["state"], "granted", "{status}");
    assert_eq!(status["tenant"], tenant.to_string());
    assert_eq!(status["migrated_from"], legacy.to_string());
    let after = cli.json(&["sync", "acme", "legacy"]);
    assert_eq!(after["status"], "succeeded", "{after}");
    assert_eq!(
        after["counts"]["created"], 0,
        "the same objects, read with the platform app"
    );
}
