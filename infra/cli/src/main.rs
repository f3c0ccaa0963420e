//! `dirsync`: the operator CLI and local runtime. This revision has the
//! demo (the README's main command) and the certificate bootstrap (the one
//! step rotation cannot do: the app has no key to prove with yet).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
use dirsync_shared::app::rotation::bootstrap;
use dirsync_shared::domain::SecretRef;
use dirsync_shared::secrets::{LocalSecretStore, SecretStore, SecretsManagerStore};

#[derive(Parser)]
#[command(name = "dirsync", about = "Operate dirsync", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole product on this machine: a simulated Entra ID tenant,
    /// admin consent, certificate rotation, a sync window, a delta sync and
    /// the deletion guard, on an embedded store. No cloud account needed.
    Demo {
        /// Users in the simulated tenant.
        #[arg(long, default_value_t = 3000)]
        users: u32,
        /// Where the demo keeps its store and secrets.
        #[arg(long, default_value = "dirsync-demo")]
        dir: PathBuf,
    },
    /// The platform app's certificate.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create the first certificate: stored as the secret's current version,
    /// its public part written to a file to upload to the app registration.
    Bootstrap {
        /// The secret holding the app certificate (the stack's
        /// AppCertificateSecretArn output, or its name).
        #[arg(long)]
        secret: String,
        /// Keep secrets in this folder instead of AWS Secrets Manager (local runs).
        #[arg(long)]
        secrets_dir: Option<PathBuf>,
        /// Where to write the certificate to upload (PEM, no private key).
        #[arg(long, default_value = "dirsync-app-certificate.pem")]
        out: PathBuf,
        /// Validity in days; the daily rotation takes over long before.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Replace a certificate the secret already holds.
        #[arg(long)]
        force: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dirsync: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Demo { users, dir } => {
            if !(10..=200_000).contains(&users) {
                return Err("--users must be between 10 and 200000".into());
            }
            demo::run(users, &dir).await
        }
        Command::Cert {
            command:
                CertCommand::Bootstrap {
                    secret,
                    secrets_dir,
                    out,
                    days,
                    force,
                },
        } => {
            let name: SecretRef = secret.parse().map_err(|e| format!("--secret: {e}"))?;
            if !(1..=365).contains(&days) {
                return Err("--days must be between 1 and 365".into());
            }
            let store: Box<dyn SecretStore> = match secrets_dir {
                Some(dir) => Box::new(LocalSecretStore::with_dir(dir)),
                None => Box::new(SecretsManagerStore::from_env().await),
            };
            if !force && store.current(&name).await.is_ok() {
                return Err(format!(
                    "{} already holds a certificate; the daily rotation renews it. Use --force to replace it \
                     (then upload the new certificate to the app registration)",
                    name.as_str()
                ));
            }
            let cert = bootstrap(
                store.as_ref(),
                &name,
                chrono::Utc::now(),
                chrono::Duration::days(days),
            )
            .await
            .map_err(|e| e.to_string())?;
            std::fs::write(&out, &cert.stored.certificate_pem)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            println!(
                "Stored a new RSA key and certificate in {} (current version).",
                name.as_str()
            );
            println!(
                "Thumbprint (SHA-1): {}",
                cert.stored.thumbprint_sha1.to_uppercase()
            );
            println!("Valid until: {}", cert.stored.not_after);
            println!(
                "Next: upload {} to the app registration (Azure portal → App registrations → the platform app → \
                 Certificates & secrets → Certificates → Upload certificate). From then on the rotation function \
                 renews it every day.",
                out.display()
            );
            Ok(())
        }
    }
}
