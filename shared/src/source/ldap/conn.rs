//! Connecting and binding to an LDAP server, and what its errors mean.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};

use crate::domain::{LdapSettings, LdapTransport};
use crate::source::SourceError;

const TIMEOUT: Duration = Duration::from_secs(20);

/// The TLS configuration: the platform's roots, plus the connector's own CA
/// when it has one (most on-premises directories use a private CA).
fn tls_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, SourceError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| {
                SourceError::Config(format!(
                    "the connector's CA certificate is not valid PEM: {e}"
                ))
            })?;
            roots.add(cert).map_err(|e| {
                SourceError::Config(format!(
                    "the connector's CA certificate cannot be used: {e}"
                ))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens a connection as the connector says (LDAPS, StartTLS, or plain when
/// explicitly allowed) and binds with the service account.
pub async fn connect(settings: &LdapSettings, password: &str) -> Result<Ldap, SourceError> {
    let mut conn = LdapConnSettings::new().set_conn_timeout(TIMEOUT);
    match settings.transport {
        LdapTransport::Ldaps => {
            conn = conn.set_config(tls_config(settings.ca_certificate.as_deref())?)
        }
        LdapTransport::StartTls => {
            conn = conn
                .set_config(tls_config(settings.ca_certificate.as_deref())?)
                .set_starttls(true)
        }
        LdapTransport::PlainInsecure => {}
    }
    let (driver, mut ldap) = LdapConnAsync::with_settings(conn, &settings.url)
        .await
        .map_err(|e| connect_error(&settings.url, e))?;
    ldap3::drive!(driver);
    ldap.with_timeout(TIMEOUT);
    let bound = ldap
        .simple_bind(&settings.bind_dn, password)
        .await
        .map_err(|e| connect_error(&settings.url, e))?;
    if bound.rc != 0 {
        return Err(bind_error(bound.rc, &bound.text));
    }
    Ok(ldap)
}

/// A failed bind in plain words; AD puts the reason in `data xxx`.
pub fn bind_error(rc: u32, text: &str) -> SourceError {
    let data = text
        .split("data ")
        .nth(1)
        .map(|d| {
            d.chars()
                .take_while(|c| c.is_ascii_hexdigit())
                .collect::<String>()
        })
        .unwrap_or_default();
    let advice = match (rc, data.as_str()) {
        (49, "52e") => {
            "the service account's password is wrong: set the current password (Update password, then Test connection)"
        }
        (49, "775") => {
            "the service account is locked out: unlock it in Active Directory, then Test connection"
        }
        (49, "532") | (49, "773") => {
            "the service account's password has expired: set a new one in the directory and here"
        }
        (49, "533") => "the service account is disabled: enable it in the directory",
        (49, "701") => "the service account has expired: extend it in the directory",
        (49, "525") => "the service account (bind DN) does not exist: check the bind DN",
        (49, _) => {
            "the directory refused the service account's credentials: check the bind DN and password"
        }
        (8, _) | (13, _) => "the server requires an encrypted connection: use ldaps:// or StartTLS",
        _ => "the directory refused to let the service account sign in",
    };
    SourceError::Auth(format!(
        "LDAP bind failed: {advice} (result {rc}{})",
        if data.is_empty() {
            String::new()
        } else {
            format!(", data {data}")
        }
    ))
}

/// Transport failures in plain words (never with the password).
pub fn connect_error(url: &str, e: LdapError) -> SourceError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        SourceError::Config(format!(
            "the TLS connection to {url} failed ({text}): check that the server's certificate is valid for this host name \
             and signed by a CA the connector trusts (add the CA certificate to the connector)"
        ))
    } else if lower.contains("timed out") || lower.contains("timeout") {
        SourceError::Unavailable(format!(
            "{url} did not answer in time: check that the host is reachable from the platform's addresses (firewall) and the port is open"
        ))
    } else if lower.contains("connection refused")
        || lower.contains("resolve")
        || lower.contains("dns")
        || lower.contains("io error")
    {
        SourceError::Unavailable(format!(
            "{url} could not be reached ({text}): check the host name, the port and the firewall"
        ))
    } else {
        SourceError::Unavailable(format!("LDAP connection to {url} failed: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_explain_the_ad_data_codes() {
        let t = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563";
        assert!(bind_error(49, t).to_string().contains("password is wrong"));
        assert!(
            bind_error(49, "... data 775, v4563")
                .to_string()
                .contains("locked out")
        );
        assert!(
            bind_error(49, "... data 532, v4563")
                .to_string()
                .contains("expired")
        );
        assert!(
            bind_error(49, "Invalid credentials")
                .to_string()
                .contains("check the bind DN")
        );
    }
}
