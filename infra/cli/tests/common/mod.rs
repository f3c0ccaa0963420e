//! The CLI tests' harness: the built `dirsync` binary on a store and
//! secrets folder of the test's own.

#![allow(dead_code)]

use std::process::{Command, Output};

use dirsync_entra_sim::{EntraSim, TenantSpec};
use serde_json::Value;
use uuid::Uuid;

pub struct Cli {
    pub dir: tempfile::TempDir,
    /// Environment for every command (the platform app's settings).
    pub env: Vec<(String, String)>,
}

impl Cli {
    pub fn new() -> Self {
        Self::with_env(Vec::new())
    }

    pub fn with_env(env: Vec<(String, String)>) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            env,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dirsync"));
        c.arg("--store")
            .arg(self.dir.path().join("state.db"))
            .arg("--secrets-dir")
            .arg(self.dir.path().join("secrets"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `dirsync serve` on a free port over this store and secrets folder.
    pub fn serve(self) -> Served {
        use std::io::BufRead;
        let mut child = self
            .command(&["serve", "--port", "0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut port = 0;
        let mut token = String::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                port = rest.split(' ').next().unwrap().parse().unwrap();
            }
            if let Some(t) = line.strip_prefix("Authorization: Bearer ") {
                token = t.trim().to_owned();
                break;
            }
        }
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        assert!(
            port > 0 && !token.is_empty(),
            "serve printed its port and token"
        );
        Served {
            child,
            port,
            token,
            cli: self,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `cert bootstrap --local` into `secret`: the certificate (DER) to
    /// register on the platform app.
    pub fn bootstrap_certificate(&self, secret: &str) -> Vec<u8> {
        let pem = self.dir.path().join("bootstrap.pem");
        let pem_path = pem.to_str().unwrap();
        let boot = [
            "cert",
            "bootstrap",
            "--local",
            "--secret",
            secret,
            "--out",
            pem_path,
        ];
        let out = self.run(&boot);
        assert!(out.status.success(), "{}", stderr(&out));
        let pem = std::fs::read_to_string(&pem).unwrap();
        dirsync_shared::auth::certificate::certificate_der(&pem).unwrap()
    }

    /// `--json` output of a command that must succeed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
    }

    /// Account acme and its legacy Entra connector acme/legacy on the
    /// simulator's tenant, signing in as app `client` with `legacy-secret`.
    pub fn legacy_connector(&self, sim: &EntraSim, client: Uuid) {
        self.json(&["account", "add", "acme", "--name", "Acme", "--region", "eu"]);
        self.add_legacy_connector(sim, client);
    }

    /// The legacy connector acme/legacy, its spec and its secret from
    /// files; returns what `connector add` printed.
    pub fn add_legacy_connector(&self, sim: &EntraSim, client: Uuid) -> Value {
        let spec = self.dir.path().join("spec.json");
        std::fs::write(
            &spec,
            serde_json::json!({"id": "legacy", "kind": "entra-legacy", "tenant": "contoso.onmicrosoft.com",
                "client_id": client.to_string(), "acknowledge_disabled": true,
                "authority_url": sim.authority_url(), "graph_url": sim.graph_url()})
            .to_string(),
        )
        .unwrap();
        let secret = self.dir.path().join("secret.txt");
        std::fs::write(&secret, "legacy-secret").unwrap();
        let (spec, secret) = (spec.to_str().unwrap(), secret.to_str().unwrap());
        self.json(&[
            "connector",
            "add",
            "acme",
            "--spec",
            spec,
            "--secret-file",
            secret,
        ])
    }
}

/// The simulator's customer tenant, Contoso.
/// `dirsync serve`, killed on drop (a failed assertion does not leave it
/// running), with the token it printed.
pub struct Served {
    pub child: std::process::Child,
    pub port: u16,
    pub token: String,
    pub cli: Cli,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn contoso(sim: &EntraSim) -> Uuid {
    sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec!["contoso.com".into(), "contoso.onmicrosoft.com".into()],
        ..Default::default()
    })
}

/// A legacy app registration of `tenant` whose secret is `legacy-secret`.
pub fn legacy_app(sim: &EntraSim, tenant: Uuid) -> Uuid {
    let client = Uuid::new_v4();
    sim.add_legacy_app(
        tenant,
        client,
        "legacy-secret",
        chrono::Utc::now() + chrono::Duration::days(10),
        &["Directory.Read.All"],
    );
    client
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
