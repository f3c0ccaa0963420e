//! `dirsync cert …`: the platform app's certificate, bootstrapped once and
//! rotated as the rotation function does it.

use std::path::PathBuf;

use clap::Subcommand;
use dirsync_shared::app::rotation::bootstrap as first_certificate;
use dirsync_shared::domain::SecretRef;
use dirsync_shared::secrets::{LocalSecretStore, SecretStore, SecretsManagerStore};

use crate::exit::{Failure, Outcome};
use crate::out::line;

#[derive(Subcommand)]
pub enum CertCommand {
    /// Create the first certificate: stored as the secret's current version,
    /// its public part written to a file to upload to the app registration.
    Bootstrap {
        /// The secret holding the app certificate (the stack's
        /// AppCertificateSecretArn output, or its name).
        #[arg(long)]
        secret: String,
        /// Keep the secret in --secrets-dir instead of AWS Secrets Manager.
        #[arg(long)]
        local: bool,
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
    /// Rotate now: the four steps the rotation function runs daily. The app
    /// comes from DIRSYNC_APP_CLIENT_ID, DIRSYNC_APP_OBJECT_ID,
    /// DIRSYNC_APP_TENANT and DIRSYNC_APP_CERT_SECRET.
    Rotate {
        /// Use the secret in --secrets-dir instead of AWS Secrets Manager.
        #[arg(long)]
        local: bool,
    },
}

pub async fn run(command: CertCommand, secrets_dir: &std::path::Path) -> Outcome {
    match command {
        CertCommand::Bootstrap {
            secret,
            local,
            out,
            days,
            force,
        } => bootstrap(&secret, local, secrets_dir, &out, days, force).await,
        CertCommand::Rotate { local } => rotate(local, secrets_dir).await,
    }
}

pub async fn bootstrap(
    secret: &str,
    local: bool,
    dir: &std::path::Path,
    out: &std::path::Path,
    days: i64,
    force: bool,
) -> Outcome {
    let name: SecretRef = secret
        .parse()
        .map_err(|e| Failure::refused(format!("--secret: {e}")))?;
    if !(1..=365).contains(&days) {
        return Err(Failure::refused("--days must be between 1 and 365"));
    }
    let store: Box<dyn SecretStore> = if local {
        Box::new(LocalSecretStore::with_dir(dir))
    } else {
        Box::new(SecretsManagerStore::from_env().await)
    };
    if !force && store.current(&name).await.is_ok() {
        return Err(Failure::refused(format!(
            "{} already holds a certificate; the daily rotation renews it. Use --force to replace it \
                 (then upload the new certificate to the app registration)",
            name.as_str()
        )));
    }
    let cert = first_certificate(
        store.as_ref(),
        &name,
        chrono::Utc::now(),
        chrono::Duration::days(days),
    )
    .await
    .map_err(Failure::internal)?;
    std::fs::write(out, &cert.stored.certificate_pem)
        .map_err(|e| Failure::internal(format!("cannot write {}: {e}", out.display())))?;
    line(&format!(
        "Stored a new RSA key and certificate in {} (current version).",
        name.as_str()
    ));
    line(&format!(
        "Thumbprint (SHA-1): {}",
        cert.stored.thumbprint_sha1.to_uppercase()
    ));
    line(&format!("Valid until: {}", cert.stored.not_after));
    line(&format!(
        "Next: upload {} to the app registration (Azure portal → App registrations → the platform app → \
         Certificates & secrets → Certificates → Upload certificate). From then on the rotation function \
         renews it every day.",
        out.display()
    ));
    Ok(())
}

pub async fn rotate(local: bool, dir: &std::path::Path) -> Outcome {
    let rotator = if local {
        dirsync_shared::app::config::rotator_with(std::sync::Arc::new(LocalSecretStore::with_dir(
            dir,
        )))
    } else {
        dirsync_shared::app::config::rotator_from_env().await
    }
    .map_err(|e| Failure::refused(e.to_string()))?;
    let token = uuid::Uuid::new_v4().to_string();
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let event = dirsync_shared::app::rotation::RotationEvent {
            secret_id: rotator.app.certificate.as_str().to_owned(),
            token: token.clone(),
            step: step.into(),
        };
        rotator.step(&event).await.map_err(|e| {
            Failure::failed(format!("{step}: {e}; the current certificate stays in use"))
        })?;
        eprintln!("{step}: done");
    }
    line(&format!(
        "rotated: version {token} is current; the app keeps the current and previous certificates"
    ));
    Ok(())
}
