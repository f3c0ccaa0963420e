//! Service account keys: an RSA key pair and the JSON key file Google's
//! console downloads.

use serde_json::json;

use crate::directory::ServiceAccount;

/// A new service account for `client_email`, and its JSON key file.
pub(crate) fn new_service_account(
    client_email: &str,
    client_id: &str,
    token_uri: &str,
) -> (ServiceAccount, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .expect("RSA key generation with aws-lc-rs");
    let private_key_id: String = (0..20)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let project_id = client_email
        .split_once('@')
        .and_then(|(_, host)| host.strip_suffix(".iam.gserviceaccount.com"))
        .unwrap_or("dirsync-sim")
        .to_string();
    let file = json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": private_key_id,
        "private_key": key.serialize_pem(),
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!(
            "https://www.googleapis.com/robot/v1/metadata/x509/{}",
            client_email.replace('@', "%40")
        ),
        "universe_domain": "googleapis.com",
    });
    let account = ServiceAccount {
        client_id: client_id.to_string(),
        private_key_id,
        public_key_pem: key.public_key_pem(),
    };
    (
        account,
        serde_json::to_string_pretty(&file).expect("JSON of a json! value"),
    )
}
