//! A certificate rotated by another process is the one a running
//! `dirsync serve` signs with: two `dirsync cert rotate` runs leave the
//! app without the key serve started with, and its next sync and its next
//! consent must still sign in, without a restart.

mod common;

use common::{Cli, Served, contoso, stderr};
use dirsync_entra_sim::{ConsentDecision, EntraSim, GenSpec, TenantSpec};
use serde_json::{Value, json};
use uuid::Uuid;

const CERT: &str = "dirsync/app-cert";
const REDIRECT: &str = "http://localhost:8080/consent/callback";

struct Platform {
    sim: EntraSim,
    client_id: Uuid,
    object_id: Uuid,
    home: Uuid,
}

impl Platform {
    fn env(&self) -> Vec<(String, String)> {
        [
            ("DIRSYNC_APP_CLIENT_ID", self.client_id.to_string()),
            ("DIRSYNC_APP_OBJECT_ID", self.object_id.to_string()),
            ("DIRSYNC_APP_TENANT", self.home.to_string()),
            ("DIRSYNC_APP_CERT_SECRET", CERT.into()),
            ("DIRSYNC_AUTHORITY_URL", self.sim.authority_url()),
            ("DIRSYNC_GRAPH_URL", self.sim.graph_url()),
            ("DIRSYNC_CONSENT_REDIRECT_URI", REDIRECT.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The simulator with the platform app registered on a bootstrapped
/// certificate kept in the CLI's secrets folder.
async fn platform() -> (Platform, Cli) {
    let sim = EntraSim::start().await.unwrap();
    let home = sim.add_tenant(TenantSpec {
        display_name: "Platform".into(),
        verified_domains: vec!["platform.example".into()],
        ..Default::default()
    });
    let p = Platform {
        sim,
        client_id: Uuid::new_v4(),
        object_id: Uuid::new_v4(),
        home,
    };
    let cli = Cli::with_env(p.env());
    let der = cli.bootstrap_certificate(CERT);
    p.sim
        .register_multitenant_app(dirsync_entra_sim::MultiTenantApp {
            client_id: p.client_id,
            object_id: p.object_id,
            home_tenant: home,
            redirect_uris: vec![REDIRECT.into()],
            certificates: vec![der],
        });
    p.sim
        .grant_admin_consent(home, p.client_id, &["Application.ReadWrite.OwnedBy"]);
    (p, cli)
}

struct Api<'a> {
    http: reqwest::Client,
    server: &'a Served,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.server.port)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method, self.url(path))
            .header("authorization", format!("Bearer {}", self.server.token))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    /// The query string the simulator redirects the browser back with.
    async fn follow(&self, url: &str) -> String {
        let resp = self.http.get(url).send().await.unwrap();
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        url::Url::parse(&location)
            .unwrap()
            .query()
            .unwrap()
            .to_owned()
    }

    /// The callback page serve answers for `query`: its status and where
    /// it sends the administrator next.
    async fn callback(&self, query: &str) -> (u16, Option<String>, String) {
        let resp = self
            .http
            .get(self.url(&format!("/consent/callback?{query}")))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let next = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, next, resp.text().await.unwrap())
    }

    /// A consent connector of `tenant`, through admin consent and the
    /// administrator's sign-in, both answered on serve's callback.
    async fn consent(&self, sim: &EntraSim, connector: &str, tenant: Uuid) {
        self.call(
            reqwest::Method::POST,
            "/accounts/acme/connectors",
            json!({"connector": {"id": connector, "kind": "entra", "tenant": tenant.to_string(),
                "acknowledge_disabled": true,
                "authority_url": sim.authority_url(), "graph_url": sim.graph_url()}}),
        )
        .await;
        let started = self
            .call(
                reqwest::Method::POST,
                &format!("/accounts/acme/connectors/{connector}/consent"),
                json!({}),
            )
            .await;
        sim.set_next_consent_decision(ConsentDecision::Approve { tenant });
        let query = self.follow(started["consent_url"].as_str().unwrap()).await;
        let (_, sign_in, page) = self.callback(&query).await;
        let sign_in = sign_in.unwrap_or_else(|| panic!("no sign-in after the grant: {page}"));
        let (status, _, page) = self.callback(&self.follow(&sign_in).await).await;
        assert_eq!(status, 200, "{connector}: {page}");
    }

    async fn runs(&self, connector: &str) -> Vec<Value> {
        let path = format!("/accounts/acme/connectors/{connector}/runs");
        let runs = self.call(reqwest::Method::GET, &path, Value::Null).await;
        runs["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Syncs now and returns the new run once it has ended.
    async fn sync(&self, connector: &str) -> Value {
        let before: Vec<Value> = self
            .runs(connector)
            .await
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        let path = format!("/accounts/acme/connectors/{connector}/sync");
        self.call(reqwest::Method::POST, &path, json!({})).await;
        for _ in 0..400 {
            let ended = self
                .runs(connector)
                .await
                .into_iter()
                .find(|r| !before.contains(&r["id"]) && r["ended_at"].is_string());
            if let Some(run) = ended {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{connector}: no run ended");
    }
}

fn rotate(cli: &Cli) {
    let out = cli.run(&["cert", "rotate", "--local"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_signs_with_the_certificate_another_process_rotated() {
    let (p, cli) = platform().await;
    let (first, second) = (
        contoso(&p.sim),
        p.sim.add_tenant(TenantSpec {
            display_name: "Fabrikam".into(),
            verified_domains: vec!["fabrikam.com".into()],
            ..Default::default()
        }),
    );
    p.sim.generate_directory(first, GenSpec::sized(40, 3, 5));

    let server = cli.serve();
    let api = Api {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        server: &server,
    };
    api.call(
        reqwest::Method::POST,
        "/accounts",
        json!({"id": "acme", "name": "Acme", "region": "eu"}),
    )
    .await;
    api.consent(&p.sim, "contoso", first).await;
    let run = api.sync("contoso").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let bootstrap = p.sim.app_key_credentials(p.object_id)[0].key_id;

    // Another process rotates twice: the key serve started with is no
    // longer registered on the app, and every token it holds is void.
    rotate(&server.cli);
    rotate(&server.cli);
    let keys: Vec<Uuid> = p
        .sim
        .app_key_credentials(p.object_id)
        .iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(!keys.contains(&bootstrap));
    p.sim.expire_access_tokens();

    let run = api.sync("contoso").await;
    assert_eq!(
        run["status"], "succeeded",
        "a sync after the rotations: {run}"
    );
    api.consent(&p.sim, "fabrikam", second).await;
    let stats = p.sim.stats();
    let with_rotated: u64 = keys
        .iter()
        .map(|k| stats.certificate_sign_ins_with(*k))
        .sum();
    assert!(
        with_rotated >= 2,
        "serve signed in with a rotated key: {:?}",
        stats.certificate_sign_ins
    );
}
