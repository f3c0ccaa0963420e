//! Connecting and binding to an LDAP server, and what its errors mean.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ldap3::asn1::parse_tag;
use ldap3::controls::PagedResults;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult, Scope, SearchEntry,
    SearchOptions, SearchResult,
};

use crate::domain::{LdapSettings, LdapTransport};
use crate::source::SourceError;

/// The paged-results control (RFC 2696), as AD names it.
const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// The TLS configuration: the public roots, plus the connector's own CA
/// when it has one (most on-premises directories use a private CA).
fn tls_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, SourceError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Config(e.to_string()))?
        .with_root_certificates(trusted_roots(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The roots a directory's certificate may chain to: Mozilla's public ones,
/// built in because Lambda has no system store to read them from, and the
/// connector's CA.
fn trusted_roots(ca_pem: Option<&str>) -> Result<rustls::RootCertStore, SourceError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    for cert in CertificateDer::pem_slice_iter(ca_pem.unwrap_or_default().as_bytes()) {
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
    Ok(roots)
}

/// How long any one exchange with the server may take, and how many
/// entries a paged search asks for at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Each operation (connect with its TLS, bind, each search page, each
    /// ranged retrieval, unbind) gets this long; a server that stalls fails
    /// the read within it rather than holding the invocation.
    pub timeout: Duration,
    /// Entries per paged-results page: AD answers at most 1,000.
    pub page_size: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            page_size: 1000,
        }
    }
}

impl Limits {
    /// The time limit sent with each search (whole seconds): a little less
    /// than our own, so that a slow server answers timeLimitExceeded — which
    /// says what happened — before we give up on it.
    fn server_time_limit(&self) -> i32 {
        let secs = self.timeout.as_secs().saturating_sub(1).max(1);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// One search request; `what` names it in errors ("users search, page 3").
pub struct Query<'a> {
    pub what: &'a str,
    pub base: &'a str,
    pub scope: Scope,
    pub filter: &'a str,
    pub attrs: &'a [&'a str],
}

/// What one search request returned: its entries (referrals, which
/// searches from a domain root return, are passed over) and, for a paged
/// search with more to come, the cookie that asks for the next page.
pub struct Found {
    pub entries: Vec<SearchEntry>,
    pub cookie: Option<Vec<u8>>,
}

/// A bound connection. Every call to the server goes through here with the
/// time limit: ldap3's own `with_timeout` covers only the next operation,
/// and a server that stops answering would otherwise hold a read forever.
pub struct Session {
    ldap: Ldap,
    limits: Limits,
    /// Requests sent on this session, and by the whole source.
    pub sent: u64,
    total: Arc<AtomicU64>,
}

/// Runs one LDAP exchange within `timeout`; a stall becomes an error that
/// names the operation and the limit.
async fn within<T>(
    timeout: Duration,
    what: &str,
    exchange: impl Future<Output = Result<T, LdapError>>,
) -> Result<Result<T, LdapError>, SourceError> {
    tokio::time::timeout(timeout, exchange).await.map_err(|_| {
        SourceError::Unavailable(format!(
            "the LDAP server did not answer the {what} within {} s: the connection stalled or the \
             server is overloaded; the read was stopped, try again later and check the server if it keeps happening",
            timeout.as_secs_f64()
        ))
    })
}

impl Session {
    /// Opens a connection as the connector says (LDAPS, StartTLS, or plain
    /// when explicitly allowed) and binds with the service account.
    pub async fn open(
        settings: &LdapSettings,
        password: &str,
        limits: Limits,
        total: Arc<AtomicU64>,
    ) -> Result<Session, SourceError> {
        let mut conn = LdapConnSettings::new().set_conn_timeout(limits.timeout);
        let what = match settings.transport {
            LdapTransport::Ldaps => {
                conn = conn.set_config(tls_config(settings.ca_certificate.as_deref())?);
                "connection and TLS handshake"
            }
            LdapTransport::StartTls => {
                conn = conn
                    .set_config(tls_config(settings.ca_certificate.as_deref())?)
                    .set_starttls(true);
                "connection and StartTLS"
            }
            LdapTransport::PlainInsecure => "connection",
        };
        let url = &settings.url;
        let (driver, ldap) = within(
            limits.timeout,
            what,
            LdapConnAsync::with_settings(conn, url),
        )
        .await?
        .map_err(|e| connect_error(url, e))?;
        ldap3::drive!(driver);
        let mut session = Session {
            ldap,
            limits,
            sent: 0,
            total,
        };
        session.count();
        let bound = within(
            limits.timeout,
            "bind",
            session.ldap.simple_bind(&settings.bind_dn, password),
        )
        .await?
        .map_err(|e| connect_error(url, e))?;
        if bound.rc != 0 {
            return Err(bind_error(bound.rc, &bound.text));
        }
        Ok(session)
    }

    pub fn page_size(&self) -> i32 {
        self.limits.page_size
    }

    fn count(&mut self) {
        self.sent += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// One search request: with `cookie`, one page of a paged search (an
    /// empty cookie asks for the first).
    pub async fn search(
        &mut self,
        q: &Query<'_>,
        cookie: Option<&[u8]>,
    ) -> Result<Found, SourceError> {
        // A base search reads one entry; a subtree search is paged, and a
        // size limit there would cap the whole result, not the page.
        let size_limit = if q.scope == Scope::Base { 1 } else { 0 };
        let options = SearchOptions::new()
            .timelimit(self.limits.server_time_limit())
            .sizelimit(size_limit);
        self.ldap.with_search_options(options);
        if let Some(cookie) = cookie {
            self.ldap.with_controls(PagedResults {
                size: self.limits.page_size,
                cookie: cookie.to_vec(),
            });
        }
        self.count();
        let SearchResult(entries, done) = within(
            self.limits.timeout,
            q.what,
            self.ldap
                .search(q.base, q.scope, q.filter, q.attrs.to_vec()),
        )
        .await?
        .map_err(|e| SourceError::Unavailable(format!("LDAP {} failed: {e}", q.what)))?;
        search_result(q, &done)?;
        Ok(Found {
            entries: entries.into_iter().map(SearchEntry::construct).collect(),
            cookie: cookie.and(paged_cookie(&done)?),
        })
    }

    /// Ends the session politely; a server that does not answer is left.
    pub async fn close(mut self) {
        self.count();
        let _ = within(self.limits.timeout, "unbind", self.ldap.unbind()).await;
    }
}

/// A search's result code: success, or what went wrong and what to do.
/// A limit the server applied is never a short read taken as complete.
fn search_result(q: &Query<'_>, done: &LdapResult) -> Result<(), SourceError> {
    let (rc, what, text) = (done.rc, q.what, &done.text);
    let advice = match rc {
        // Success, or a referral (searches from a domain root return them).
        0 | 10 => return Ok(()),
        // A read of one entry by its DN: the entry is not there.
        32 if q.scope == Scope::Base => return Ok(()),
        32 => {
            return Err(SourceError::Config(format!(
                "the base DN {:?} does not exist in the directory (the {what}): check the connector's base DN",
                q.base
            )));
        }
        3 => {
            return Err(SourceError::Unavailable(format!(
                "the directory stopped the {what} at its time limit (timeLimitExceeded, result 3: {text}): \
                 the server is slow or busy; try again later, or raise the service account's search time limit"
            )));
        }
        4 => {
            "the directory caps how many entries one search may return (sizeLimitExceeded): raise the \
             service account's size limit (AD: MaxResultSetSize; Domino: the server's maximum search results) \
             and check that the server honours the paged-results control"
        }
        11 => {
            "the directory refused the search at an administrative limit (adminLimitExceeded): raise the \
             server's query limits (AD: MaxPageSize, MaxResultSetSize, MaxQueryDuration) or narrow the \
             connector's base DN or filters"
        }
        _ => {
            return Err(SourceError::Unavailable(format!(
                "LDAP {what} failed (result {rc}: {text})"
            )));
        }
    };
    Err(SourceError::Config(format!(
        "LDAP {what} was cut short: {advice} (result {rc}: {text}); nothing was read as complete"
    )))
}

/// The cookie of a paged-results response control, or `None` when the
/// search is complete (an empty cookie, or a server that did not page).
/// Read by hand: ldap3's parser panics on a malformed value.
fn paged_cookie(done: &LdapResult) -> Result<Option<Vec<u8>>, SourceError> {
    let Some(control) = done.ctrls.iter().find(|c| c.1.ctype == PAGED_RESULTS_OID) else {
        return Ok(None);
    };
    let malformed =
        || SourceError::Protocol("the server's paged-results control is malformed".into());
    let value = control.1.val.as_deref().ok_or_else(malformed)?;
    let (_, tag) = parse_tag(value).map_err(|_| malformed())?;
    let mut parts = tag.expect_constructed().ok_or_else(malformed)?.into_iter();
    let cookie = parts
        .nth(1)
        .and_then(|t| t.expect_primitive())
        .ok_or_else(malformed)?;
    Ok((!cookie.is_empty()).then_some(cookie))
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

    fn names_isrg_root_x1(anchor: &rustls_pki_types::TrustAnchor<'_>) -> bool {
        anchor
            .subject
            .windows(b"ISRG Root X1".len())
            .any(|w| w == b"ISRG Root X1")
    }

    #[test]
    fn a_publicly_trusted_directory_is_trusted_without_a_ca_and_a_private_ca_is_added() {
        let public = trusted_roots(None).unwrap();
        assert!(public.len() > 100, "{} roots", public.len());
        assert!(public.roots.iter().any(names_isrg_root_x1));

        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().pem();
        assert_eq!(trusted_roots(Some(&ca)).unwrap().len(), public.len() + 1);

        let err = trusted_roots(Some(
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("not valid PEM"), "{err}");
    }
}
