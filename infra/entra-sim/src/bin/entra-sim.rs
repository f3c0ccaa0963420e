//! Runs the Entra ID / Graph simulator with a generated tenant, for the demo
//! and for manual runs, until Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use chrono::{Duration, Utc};
use clap::Parser;
use dirsync_entra_sim::{CONSENT_ROLES, EntraSim, GenSpec, MultiTenantApp, TenantSpec};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "Entra ID + Microsoft Graph simulator on loopback")]
struct Args {
    /// Users to generate in the customer tenant.
    #[arg(long, default_value_t = 1_000)]
    users: u32,
    /// Groups to generate.
    #[arg(long, default_value_t = 50)]
    groups: u32,
    /// Seed of the generated directory.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// PEM certificate to register on the consent connector's app. Without
    /// it a certificate is generated and written, with its key, to a
    /// temporary directory.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Redirect URI registered on the app for admin consent.
    #[arg(long, default_value = "http://localhost:8080/consent/callback")]
    redirect_uri: String,
    /// Verified domain of the customer tenant.
    #[arg(long, default_value = "contoso.example")]
    domain: String,
    /// Do not pre-grant admin consent in the customer tenant.
    #[arg(long)]
    no_consent: bool,
    /// Client secret of the legacy app registered in the customer tenant.
    #[arg(long, default_value = "legacy-secret")]
    legacy_secret: String,
}

fn read_certificate(path: &PathBuf) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
    Ok(parsed.contents)
}

fn generate_certificate() -> Result<(Vec<u8>, PathBuf), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec!["dirsync.test".to_string()])
        .map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dirsync consent connector");
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("entra-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("cert.pem"), cert.pem()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).map_err(|e| e.to_string())?;
    Ok((cert.der().to_vec(), dir))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let sim = EntraSim::new();
    let addr = sim
        .serve(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port))
        .await
        .map_err(|e| format!("binding port {}: {e}", args.port))?;

    let home = sim.add_tenant(TenantSpec {
        display_name: "dirsync".into(),
        verified_domains: vec!["dirsync.test".into()],
        ..TenantSpec::default()
    });
    let customer = sim.add_tenant(TenantSpec {
        display_name: "Contoso".into(),
        verified_domains: vec![args.domain.clone()],
        ..TenantSpec::default()
    });
    sim.generate_directory(customer, GenSpec::sized(args.users, args.groups, args.seed));

    let (der, written) = match &args.cert {
        Some(path) => (read_certificate(path)?, None),
        None => {
            let (der, dir) = generate_certificate()?;
            (der, Some(dir))
        }
    };
    let client_id = Uuid::new_v4();
    let object_id = Uuid::new_v4();
    sim.register_multitenant_app(MultiTenantApp {
        client_id,
        object_id,
        home_tenant: home,
        redirect_uris: vec![args.redirect_uri.clone()],
        certificates: vec![der],
    });
    if !args.no_consent {
        sim.grant_admin_consent(customer, client_id, &CONSENT_ROLES);
    }
    let legacy_client = Uuid::new_v4();
    sim.add_legacy_app(
        customer,
        legacy_client,
        &args.legacy_secret,
        Utc::now() + Duration::days(365),
        &["User.Read.All", "Directory.Read.All"],
    );

    let snapshot = sim.snapshot(customer);
    println!("entra-sim listening on {addr}");
    println!("authority:        {}", sim.authority_url());
    println!("graph:            {}", sim.graph_url());
    println!("token scope:      {}", sim.graph_scope());
    println!("publisher tenant: {home}");
    println!(
        "customer tenant:  {customer} ({}; {} users, {} groups, {} memberships)",
        args.domain,
        snapshot.users.len(),
        snapshot.groups.len(),
        snapshot.memberships.len()
    );
    println!("token endpoint:   {}", sim.token_url(&customer.to_string()));
    println!("consent app:      client id {client_id}, object id {object_id}");
    println!("redirect uri:     {}", args.redirect_uri);
    if let Some(dir) = written {
        println!(
            "certificate:      {} (key {})",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        );
    }
    println!(
        "admin consent:    {}",
        if args.no_consent {
            "not granted"
        } else {
            "granted (User.Read.All, Group.Read.All)"
        }
    );
    println!(
        "legacy app:       client id {legacy_client}, secret '{}'",
        args.legacy_secret
    );

    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
    Ok(())
}
