//! `dirsync migrate` moves a legacy connector onto the platform app,
//! through the binary: the consent URL it prints, the administrator's
//! consent at the Entra simulator, the callback `dirsync serve` answers,
//! then `dirsync consent status` and a sync with the platform app.

use std::io::BufRead;
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use dirsync_entra_sim::{ConsentDecision, EntraSim, GenSpec, MultiTenantApp, TenantSpec};
use serde_json::Value;
use uuid::Uuid;

const CERT: &str = "dirsync/app-cert";

struct Cli {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dirsync"));
        c.arg("--store")
            .arg(self.dir.path().join("state.db"))
            .arg("--secrets-dir")
            .arg(self.dir.path().join("secrets"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out: Output = self.command(&all).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

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
    let tenant = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
        ..Default::default()
    });
    sim.generate_directory(tenant, GenSpec::sized(60, 4, 5));
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    let legacy = Uuid::new_v4();
    sim.add_legacy_app(
        tenant,
        legacy,
        "legacy-secret",
        Utc::now() + chrono::Duration::days(10),
        &["Directory.Read.All"],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/consent/callback");
    let platform = Uuid::new_v4();
    let cli = Cli {
        dir: tempfile::tempdir().unwrap(),
        env: vec![
            ("DIRSYNC_APP_CLIENT_ID".into(), platform.to_string()),
            ("DIRSYNC_APP_CERT_SECRET".into(), CERT.into()),
            ("DIRSYNC_CONSENT_REDIRECT_URI".into(), redirect.clone()),
        ],
    };
    let pem = cli.dir.path().join("app.pem");
    let pem_path = pem.to_str().unwrap();
    let boot = [
        "cert",
        "bootstrap",
        "--local",
        "--secret",
        CERT,
        "--out",
        pem_path,
    ];
    assert!(cli.command(&boot).output().unwrap().status.success());
    let der =
        dirsync_shared::auth::certificate::certificate_der(&std::fs::read_to_string(&pem).unwrap())
            .unwrap();
    sim.register_multitenant_app(MultiTenantApp {
        client_id: platform,
        object_id: Uuid::new_v4(),
        home_tenant: home,
        redirect_uris: vec![redirect],
        certificates: vec![der],
    });

    cli.json(&["account", "add", "acme", "--name", "Acme", "--region", "eu"]);
    let spec = cli.dir.path().join("spec.json");
    std::fs::write(
        &spec,
        serde_json::json!({"id": "legacy", "kind": "entra-legacy", "tenant": "contoso.onmicrosoft.com",
            "client_id": legacy.to_string(), "acknowledge_disabled": true,
            "authority_url": sim.authority_url(), "graph_url": sim.graph_url()})
        .to_string(),
    )
    .unwrap();
    let secret = cli.dir.path().join("secret.txt");
    std::fs::write(&secret, "legacy-secret").unwrap();
    let add = ["connector", "add", "acme", "--spec", spec.to_str().unwrap()];
    cli.json(&[&add[..], &["--secret-file", secret.to_str().unwrap()]].concat());
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
