//! Runs the Google Workspace Directory API simulator with a generated
//! customer, for the demo and for manual runs, until Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use dirsync_google_sim::GoogleSim;

#[derive(Parser, Debug)]
#[command(about = "Google Workspace Admin SDK Directory API simulator on loopback")]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Primary domain of the customer.
    #[arg(long, default_value = "example.test")]
    domain: String,
    /// Super admin to impersonate (default: admin@DOMAIN).
    #[arg(long)]
    admin: Option<String>,
    /// Service account client email.
    #[arg(long, default_value = "dirsync@dirsync-sim.iam.gserviceaccount.com")]
    service_account: String,
    /// Where to write the service account's JSON key file (default: a
    /// temporary directory).
    #[arg(long)]
    key_out: Option<PathBuf>,
    /// Users to generate.
    #[arg(long, default_value_t = 1_000)]
    users: u32,
    /// Groups to generate.
    #[arg(long, default_value_t = 50)]
    groups: u32,
    /// Seed of the generated directory.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Do not grant domain-wide delegation.
    #[arg(long)]
    no_delegation: bool,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let sim = GoogleSim::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port))
        .await
        .map_err(|e| format!("binding port {}: {e}", args.port))?;
    let admin = args
        .admin
        .unwrap_or_else(|| format!("admin@{}", args.domain));
    let customer = sim.add_customer(&args.domain, &admin);
    let key_json = sim.add_service_account(&args.service_account);
    let key: serde_json::Value = serde_json::from_str(&key_json).map_err(|e| e.to_string())?;
    let client_id = key["client_id"].as_str().unwrap_or_default().to_string();
    if !args.no_delegation {
        sim.grant_delegation(
            &customer,
            &client_id,
            &[
                "admin.directory.user.readonly",
                "admin.directory.group.readonly",
            ],
        );
    }
    sim.generate(&customer, args.users, args.groups, args.seed);

    let key_path = match args.key_out {
        Some(path) => path,
        None => {
            let dir = std::env::temp_dir().join(format!("google-sim-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            dir.join("service-account.json")
        }
    };
    std::fs::write(&key_path, &key_json)
        .map_err(|e| format!("writing {}: {e}", key_path.display()))?;

    println!("token URL:       {}", sim.token_url());
    println!("API URL:         {}/admin/directory/v1/", sim.api_url());
    println!("customer:        {customer} ({})", args.domain);
    println!("admin (sub):     {admin}");
    println!(
        "service account: {} (client id {client_id})",
        args.service_account
    );
    println!("key file:        {}", key_path.display());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    Ok(())
}
