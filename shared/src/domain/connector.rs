//! Connectors: one account's link to one directory, with its sync options.
//!
//! A [`Connector`] is always valid: it is built from a [`ConnectorSpec`] (what
//! an administrator or the CLI sends) by [`ConnectorSpec::validate`], which
//! refuses missing or misplaced settings with a message naming the field.
//! Secrets are never held here, only [`SecretRef`]s naming them in the
//! secret store.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    AccountId, ConnectorId, DeletionGuard, DomainFilter, DomainName, EmailAddress, GUARD_SETTINGS,
    ValidationError,
};

/// The kinds of directory a connector can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ConnectorKind {
    /// Entra ID through the platform's multi-tenant app and admin consent.
    EntraConsent,
    /// Entra ID through an app registration the customer made (client ID +
    /// key + tenant domain). Kept until migrated to a consent connector.
    EntraLegacy,
    /// On-premises Active Directory over LDAP.
    ActiveDirectory,
    /// HCL Domino Directory over LDAP.
    Domino,
    /// Google Workspace through a service account with domain-wide delegation.
    Google,
}

impl ConnectorKind {
    pub const ALL: [ConnectorKind; 5] = [
        ConnectorKind::EntraConsent,
        ConnectorKind::EntraLegacy,
        ConnectorKind::ActiveDirectory,
        ConnectorKind::Domino,
        ConnectorKind::Google,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ConnectorKind::EntraConsent => "entra",
            ConnectorKind::EntraLegacy => "entra-legacy",
            ConnectorKind::ActiveDirectory => "ldap-ad",
            ConnectorKind::Domino => "ldap-domino",
            ConnectorKind::Google => "google",
        }
    }
}

impl FromStr for ConnectorKind {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectorKind::ALL
            .into_iter()
            .find(|k| k.code() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ConnectorKind::ALL.iter().map(|k| k.code()).collect();
                ValidationError::new(
                    "kind",
                    format!(
                        "{s:?} is not a connector kind; use one of {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

impl TryFrom<String> for ConnectorKind {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ConnectorKind> for String {
    fn from(k: ConnectorKind) -> String {
        k.code().to_owned()
    }
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The name of a secret in the secret store (a Secrets Manager name or ARN, or
/// a local secret's name). The value itself never enters a connector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretRef(String);

impl SecretRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SecretRef {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Secrets Manager names: 1-512 of letters, digits and /_+=.@- ; ARNs add ':'.
        let ok = !s.is_empty()
            && s.len() <= 2048
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValidationError::new(
                "secret reference",
                "name the secret (e.g. \"dirsync/acme/ad-password\" or its ARN), not its value; \
                 use letters, digits and /_+=.@-: only",
            ))
        }
    }
}

impl TryFrom<String> for SecretRef {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<SecretRef> for String {
    fn from(s: SecretRef) -> String {
        s.0
    }
}

/// Where Entra's login and Graph live. National clouds use other hosts; tests
/// and the demo point `Custom` at the simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cloud", rename_all = "kebab-case")]
pub enum Cloud {
    Global,
    UsGov,
    UsGovDod,
    China,
    Custom {
        authority_url: String,
        graph_url: String,
    },
}

impl Cloud {
    pub const PRESETS: [&'static str; 4] = ["global", "us-gov", "us-gov-dod", "china"];

    pub fn authority_url(&self) -> &str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
            Cloud::Custom { authority_url, .. } => authority_url,
        }
    }

    pub fn graph_url(&self) -> &str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
            Cloud::Custom { graph_url, .. } => graph_url,
        }
    }

    /// The scope of an app-only token for this cloud's Graph. Each national
    /// cloud has its own Graph resource, and its Entra refuses another's.
    pub fn graph_scope(&self) -> String {
        graph_scope(self.graph_url())
    }

    fn from_parts(
        preset: Option<&str>,
        authority: Option<&str>,
        graph: Option<&str>,
    ) -> Result<Self, ValidationError> {
        match (preset, authority, graph) {
            (None | Some("custom"), Some(a), Some(g)) => Ok(Cloud::Custom {
                authority_url: checked_base_url("authority_url", a)?,
                graph_url: checked_base_url("graph_url", g)?,
            }),
            (None | Some("custom"), Some(_), None) | (None | Some("custom"), None, Some(_)) => {
                Err(ValidationError::new(
                    "cloud",
                    "a custom cloud needs both authority_url and graph_url",
                ))
            }
            (Some("custom"), None, None) => Err(ValidationError::new(
                "cloud",
                "a custom cloud needs authority_url and graph_url",
            )),
            (None, None, None) | (Some("global"), None, None) => Ok(Cloud::Global),
            (Some("us-gov"), None, None) => Ok(Cloud::UsGov),
            (Some("us-gov-dod"), None, None) => Ok(Cloud::UsGovDod),
            (Some("china"), None, None) => Ok(Cloud::China),
            (Some(p), None, None) => Err(ValidationError::new(
                "cloud",
                format!(
                    "{p:?} is not a cloud; use one of {}, or give authority_url and graph_url",
                    Cloud::PRESETS.join(", ")
                ),
            )),
            (Some(_), _, _) => Err(ValidationError::new(
                "cloud",
                "give either a cloud preset or authority_url and graph_url, not both",
            )),
        }
    }
}

/// The `.default` scope of the Graph at `graph_url`: a resource is named by
/// its origin (`https://graph.microsoft.us`), so the path under which a
/// simulator serves Graph is left out.
pub fn graph_scope(graph_url: &str) -> String {
    let resource = url::Url::parse(graph_url).map_or_else(
        |_| graph_url.trim_end_matches('/').to_owned(),
        |u| u.origin().ascii_serialization(),
    );
    format!("{resource}/.default")
}

/// A base URL for a custom cloud: https, or plain http to this machine only
/// (the simulators), without a trailing slash.
fn checked_base_url(field: &str, url: &str) -> Result<String, ValidationError> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| {
            trimmed.strip_prefix("http://").filter(|r| {
                let host = r.split(['/', ':']).next().unwrap_or_default();
                matches!(host, "localhost") || r.starts_with("[::1]") || host.starts_with("127.")
            })
        })
        .ok_or_else(|| {
            ValidationError::new(
                field,
                format!(
                    "{url:?} must be an https:// URL (plain http is accepted for localhost only)"
                ),
            )
        })?;
    if rest.is_empty() || rest.contains(char::is_whitespace) || rest.contains(['?', '#']) {
        return Err(ValidationError::new(
            field,
            format!("{url:?} is not a base URL (no spaces, query or fragment)"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// A consent connector's tenant as given (a verified domain or the tenant
/// id), in one spelling: lower case, a GUID hyphenated. Consent is accepted
/// from this tenant only, so it must be named before consent can start.
pub fn tenant_name(value: &str) -> Result<String, ValidationError> {
    let value = value.trim();
    if let Ok(id) = Uuid::parse_str(value) {
        return Ok(id.to_string());
    }
    value
        .parse::<DomainName>()
        .map(|d| d.as_str().to_owned())
        .map_err(|e| {
            ValidationError::new(
                "tenant",
                format!(
                    "{} (give the tenant's domain, e.g. contoso.onmicrosoft.com, or its tenant ID, a GUID)",
                    e.problem
                ),
            )
        })
}

/// Whether the customer's administrator has granted consent to the platform's
/// multi-tenant app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Consent {
    Pending,
    Granted {
        tenant_id: Uuid,
        granted_at: DateTime<Utc>,
        /// The scope Entra reported for the grant.
        #[serde(default)]
        scope: Option<String>,
        /// Who started the consent (the admin API caller).
        #[serde(default)]
        started_by: Option<String>,
        /// The client ID of the legacy app registration this connector was
        /// migrated from, if it was.
        #[serde(default)]
        migrated_from: Option<Uuid>,
    },
}

impl Consent {
    /// A grant with nothing known but the tenant and the time.
    pub fn granted(tenant_id: Uuid, granted_at: DateTime<Utc>) -> Self {
        Consent::Granted {
            tenant_id,
            granted_at,
            scope: None,
            started_by: None,
            migrated_from: None,
        }
    }
}

/// How a Domino connector tells directory documents apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DominoIdentity {
    /// By lower-cased DN: connectors stored before `dominoUNID` was read,
    /// until their next run re-keys them (see
    /// [`crate::source::DirectorySource::identity_changes`]).
    #[default]
    Dn,
    /// By the document's `dominoUNID`, which renames and moves keep.
    Unid,
}

/// How an LDAP connection is protected. Plain LDAP sends the service
/// account's password in clear, so it must be asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LdapTransport {
    Ldaps,
    StartTls,
    PlainInsecure,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LdapSettings {
    /// `ldaps://host[:port]` or `ldap://host[:port]`.
    pub url: String,
    pub transport: LdapTransport,
    /// Where to search. Active Directory: one DN. Domino: blank for the
    /// whole directory (its documented way to see people under every
    /// organization and groups at the root), or several DNs separated by
    /// `;` (`o=Acme; o=AcmeEU`); see [`LdapSettings::bases`].
    pub base_dn: String,
    pub bind_dn: String,
    pub password: SecretRef,
    /// PEM of a private CA that signed the server's certificate.
    pub ca_certificate: Option<String>,
    pub user_filter: Option<String>,
    pub group_filter: Option<String>,
}

impl LdapSettings {
    /// The search bases `base_dn` names, in order: one, several, or the
    /// empty DN (the root) when it is blank.
    pub fn bases(&self) -> Vec<String> {
        let bases = super::ldap_dn::split_bases(&self.base_dn);
        if bases.is_empty() {
            vec![String::new()]
        } else {
            bases
        }
    }
}

/// What a connector reads and how it authenticates: exactly the settings its
/// kind needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceConfig {
    #[serde(rename = "entra")]
    EntraConsent {
        cloud: Cloud,
        /// The tenant the connector is for (a domain or the tenant id, see
        /// [`tenant_name`]): consent is accepted from this tenant only. `None`
        /// only on connectors stored before a tenant had to be named; they
        /// name one with the change-tenant operation before consent.
        #[serde(alias = "tenant_hint")]
        tenant: Option<String>,
        consent: Consent,
    },
    EntraLegacy {
        cloud: Cloud,
        tenant_domain: DomainName,
        client_id: Uuid,
        client_secret: SecretRef,
    },
    #[serde(rename = "ldap-ad")]
    ActiveDirectory { ldap: LdapSettings },
    #[serde(rename = "ldap-domino")]
    Domino {
        ldap: LdapSettings,
        /// Members of this group, through nested groups, are treated as
        /// disabled: Domino has no disabled flag of its own. Its DN, or its
        /// name as the server document shows it (`Deny Access`), looked up
        /// by `cn` at each run.
        deny_access_group: Option<String>,
        /// Stored connectors without it are keyed by DN.
        #[serde(default)]
        identity: DominoIdentity,
    },
    Google {
        /// The super administrator the service account impersonates.
        admin_email: EmailAddress,
        service_account_key: SecretRef,
        /// `my_customer` unless a reseller reads another customer.
        customer: String,
        /// The Directory API's base URL when it is not Google's (the
        /// simulator); token requests go to the key file's `token_uri`.
        #[serde(default)]
        api_url: Option<String>,
    },
}

impl SourceConfig {
    pub fn kind(&self) -> ConnectorKind {
        match self {
            SourceConfig::EntraConsent { .. } => ConnectorKind::EntraConsent,
            SourceConfig::EntraLegacy { .. } => ConnectorKind::EntraLegacy,
            SourceConfig::ActiveDirectory { .. } => ConnectorKind::ActiveDirectory,
            SourceConfig::Domino { .. } => ConnectorKind::Domino,
            SourceConfig::Google { .. } => ConnectorKind::Google,
        }
    }

    /// Whether the source gives its objects other ids than those stored
    /// (a Domino connector keyed by DN): its next run re-keys them first.
    pub fn keyed_by_legacy_ids(&self) -> bool {
        matches!(
            self,
            SourceConfig::Domino {
                identity: DominoIdentity::Dn,
                ..
            }
        )
    }

    /// The stored objects now carry the ids the source gives.
    pub fn ids_migrated(&mut self) {
        if let SourceConfig::Domino { identity, .. } = self {
            *identity = DominoIdentity::Unid;
        }
    }

    /// Keeps `current`'s identity through a change of settings: only a
    /// run's re-keying changes it, never an edit.
    pub fn keep_identity_of(&mut self, current: &SourceConfig) {
        if let (
            SourceConfig::Domino { identity, .. },
            SourceConfig::Domino { identity: kept, .. },
        ) = (self, current)
        {
            *identity = *kept;
        }
    }

    /// A source that cannot be read yet (consent not granted) is not due for
    /// syncs.
    pub fn is_ready(&self) -> bool {
        !matches!(
            self,
            SourceConfig::EntraConsent {
                consent: Consent::Pending,
                ..
            }
        )
    }
}

/// What the sync does with what it reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOptions {
    /// "Acknowledge disabled accounts": accounts disabled at the source are
    /// disabled in the platform. Off: they stay enabled.
    pub acknowledge_disabled: bool,
    /// "Optional email domains filter".
    pub email_domains: DomainFilter,
    /// How much one run may remove or disable before it is staged.
    #[serde(default)]
    pub deletion_guard: DeletionGuard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    /// Synced in every window and on demand.
    Enabled,
    /// Kept with its data, but not synced until enabled again.
    Paused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connector {
    pub account: AccountId,
    pub id: ConnectorId,
    pub description: String,
    pub state: ConnectorState,
    pub options: SyncOptions,
    pub source: SourceConfig,
    /// Bumped on every stored change; updates name the version they read so
    /// that two concurrent edits cannot silently overwrite each other.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where the connector's secret was given for (a digest of
    /// [`SourceConfig::secret_endpoint`]); checked before every use.
    #[serde(default)]
    pub secret_bound_to: Option<String>,
}

impl Connector {
    pub fn kind(&self) -> ConnectorKind {
        self.source.kind()
    }

    /// Whether scheduled windows should sync it.
    pub fn is_due(&self) -> bool {
        self.state == ConnectorState::Enabled && self.source.is_ready()
    }
}

/// A connector as an administrator describes it: flat, every setting
/// optional, unknown fields refused. [`ConnectorSpec::validate`] turns it into
/// a [`Connector`] or says what to fix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSpec {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub acknowledge_disabled: Option<bool>,
    pub email_domains: Option<String>,
    // The deletion guard (see [`GUARD_SETTINGS`])
    pub max_user_removals: Option<u64>,
    pub max_user_removals_percent: Option<u64>,
    pub max_group_removals: Option<u64>,
    pub max_group_removals_percent: Option<u64>,
    pub max_membership_removals: Option<u64>,
    pub max_membership_removals_percent: Option<u64>,
    // Entra
    pub cloud: Option<String>,
    pub authority_url: Option<String>,
    pub graph_url: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_ref: Option<String>,
    // LDAP
    pub url: Option<String>,
    pub transport: Option<String>,
    pub base_dn: Option<String>,
    pub bind_dn: Option<String>,
    pub password_ref: Option<String>,
    pub ca_certificate: Option<String>,
    pub user_filter: Option<String>,
    pub group_filter: Option<String>,
    pub deny_access_group: Option<String>,
    // Google
    pub admin_email: Option<String>,
    pub service_account_key_ref: Option<String>,
    pub customer: Option<String>,
    pub api_url: Option<String>,
}

/// Settings each kind takes, with what to give when one is missing.
const NEEDS: &[(ConnectorKind, &str, &str)] = &[
    (
        ConnectorKind::EntraConsent,
        "tenant",
        "the tenant that will consent: its domain, e.g. contoso.onmicrosoft.com, or its tenant ID (a GUID)",
    ),
    (
        ConnectorKind::EntraLegacy,
        "tenant",
        "the tenant's domain, e.g. contoso.onmicrosoft.com",
    ),
    (
        ConnectorKind::EntraLegacy,
        "client_id",
        "the Application (client) ID of the app registration",
    ),
    (
        ConnectorKind::EntraLegacy,
        "client_secret_ref",
        "the name of the secret holding the app's key (client secret)",
    ),
    (
        ConnectorKind::ActiveDirectory,
        "url",
        "the server, e.g. ldaps://dc1.corp.example.com",
    ),
    (
        ConnectorKind::ActiveDirectory,
        "base_dn",
        "where to search, e.g. DC=corp,DC=example,DC=com",
    ),
    (
        ConnectorKind::ActiveDirectory,
        "bind_dn",
        "the read-only service account's DN or user@domain",
    ),
    (
        ConnectorKind::ActiveDirectory,
        "password_ref",
        "the name of the secret holding the service account's password",
    ),
    (
        ConnectorKind::Domino,
        "url",
        "the Domino LDAP server, e.g. ldaps://domino.example.com",
    ),
    (
        ConnectorKind::Domino,
        "bind_dn",
        "the read-only account's DN",
    ),
    (
        ConnectorKind::Domino,
        "password_ref",
        "the name of the secret holding the account's password",
    ),
    (
        ConnectorKind::Google,
        "admin_email",
        "the super administrator the service account acts as",
    ),
    (
        ConnectorKind::Google,
        "service_account_key_ref",
        "the name of the secret holding the service account's JSON key",
    ),
];

/// Settings that belong to some kinds only; given to another kind they are a
/// mistake worth telling about rather than ignoring.
const ONLY_FOR: &[(&str, &[ConnectorKind])] = &[
    (
        "cloud",
        &[ConnectorKind::EntraConsent, ConnectorKind::EntraLegacy],
    ),
    (
        "authority_url",
        &[ConnectorKind::EntraConsent, ConnectorKind::EntraLegacy],
    ),
    (
        "graph_url",
        &[ConnectorKind::EntraConsent, ConnectorKind::EntraLegacy],
    ),
    (
        "tenant",
        &[ConnectorKind::EntraConsent, ConnectorKind::EntraLegacy],
    ),
    ("client_id", &[ConnectorKind::EntraLegacy]),
    ("client_secret_ref", &[ConnectorKind::EntraLegacy]),
    (
        "url",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    (
        "transport",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    (
        "base_dn",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    (
        "bind_dn",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    (
        "password_ref",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    (
        "ca_certificate",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    (
        "user_filter",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    (
        "group_filter",
        &[ConnectorKind::ActiveDirectory, ConnectorKind::Domino],
    ),
    ("deny_access_group", &[ConnectorKind::Domino]),
    ("admin_email", &[ConnectorKind::Google]),
    ("service_account_key_ref", &[ConnectorKind::Google]),
    ("customer", &[ConnectorKind::Google]),
    ("api_url", &[ConnectorKind::Google]),
];

impl ConnectorSpec {
    fn field(&self, name: &str) -> Option<&str> {
        let v = match name {
            "cloud" => &self.cloud,
            "authority_url" => &self.authority_url,
            "graph_url" => &self.graph_url,
            "tenant" => &self.tenant,
            "client_id" => &self.client_id,
            "client_secret_ref" => &self.client_secret_ref,
            "url" => &self.url,
            "transport" => &self.transport,
            "base_dn" => &self.base_dn,
            "bind_dn" => &self.bind_dn,
            "password_ref" => &self.password_ref,
            "ca_certificate" => &self.ca_certificate,
            "user_filter" => &self.user_filter,
            "group_filter" => &self.group_filter,
            "deny_access_group" => &self.deny_access_group,
            "admin_email" => &self.admin_email,
            "service_account_key_ref" => &self.service_account_key_ref,
            "customer" => &self.customer,
            "api_url" => &self.api_url,
            _ => &None,
        };
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    fn need(&self, name: &str) -> &str {
        // `validate` has already checked every NEEDS entry of the kind.
        self.field(name).unwrap_or_default()
    }

    /// Builds the connector, or explains every missing or misplaced setting.
    pub fn validate(
        &self,
        account: AccountId,
        now: DateTime<Utc>,
    ) -> Result<Connector, ValidationError> {
        let kind: ConnectorKind = self
            .kind
            .as_deref()
            .ok_or_else(|| {
                let known: Vec<&str> = ConnectorKind::ALL.iter().map(|k| k.code()).collect();
                ValidationError::new(
                    "kind",
                    format!("say which kind of connector: {}", known.join(", ")),
                )
            })?
            .parse()?;
        let id = ConnectorId::new(self.id.clone().unwrap_or_default())?;

        let missing: Vec<String> = NEEDS
            .iter()
            .filter(|(k, name, _)| *k == kind && self.field(name).is_none())
            .map(|(_, name, what)| format!("{name} ({what})"))
            .collect();
        if !missing.is_empty() {
            return Err(ValidationError::new(
                "settings",
                format!("a {kind} connector needs {}", missing.join("; ")),
            ));
        }
        let misplaced: Vec<&str> = ONLY_FOR
            .iter()
            .filter(|(name, kinds)| !kinds.contains(&kind) && self.field(name).is_some())
            .map(|(name, _)| *name)
            .collect();
        if !misplaced.is_empty() {
            return Err(ValidationError::new(
                "settings",
                format!(
                    "{} do(es) not apply to a {kind} connector; remove them",
                    misplaced.join(", ")
                ),
            ));
        }

        let source = match kind {
            ConnectorKind::EntraConsent => SourceConfig::EntraConsent {
                cloud: self.cloud()?,
                tenant: Some(tenant_name(self.need("tenant"))?),
                consent: Consent::Pending,
            },
            ConnectorKind::EntraLegacy => SourceConfig::EntraLegacy {
                cloud: self.cloud()?,
                tenant_domain: self.need("tenant").parse().map_err(|e: ValidationError| {
                    ValidationError::new("tenant", format!("{} (give the tenant's domain name)", e.problem))
                })?,
                client_id: Uuid::parse_str(self.need("client_id")).map_err(|_| {
                    ValidationError::new(
                        "client_id",
                        "is not a GUID; copy the Application (client) ID from the app registration's overview",
                    )
                })?,
                client_secret: self.secret("client_secret_ref")?,
            },
            ConnectorKind::ActiveDirectory => SourceConfig::ActiveDirectory {
                ldap: LdapSettings {
                    base_dn: one_base_dn(self.need("base_dn"))?,
                    ..self.ldap()?
                },
            },
            ConnectorKind::Domino => SourceConfig::Domino {
                ldap: LdapSettings {
                    base_dn: domino_bases(self.field("base_dn").unwrap_or_default())?,
                    ..self.ldap()?
                },
                deny_access_group: self
                    .field("deny_access_group")
                    .map(deny_group)
                    .transpose()?,
                identity: DominoIdentity::Unid,
            },
            ConnectorKind::Google => SourceConfig::Google {
                admin_email: self.need("admin_email").parse()?,
                service_account_key: self.secret("service_account_key_ref")?,
                customer: self.field("customer").unwrap_or("my_customer").to_owned(),
                api_url: self
                    .field("api_url")
                    .map(|u| checked_base_url("api_url", u))
                    .transpose()?,
            },
        };

        let mut connector = Connector {
            account,
            id,
            description: self
                .description
                .clone()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            state: if self.enabled.unwrap_or(true) {
                ConnectorState::Enabled
            } else {
                ConnectorState::Paused
            },
            options: SyncOptions {
                acknowledge_disabled: self.acknowledge_disabled.unwrap_or(false),
                email_domains: self.email_domains.as_deref().unwrap_or("").parse()?,
                deletion_guard: self.deletion_guard()?,
            },
            source,
            version: 0,
            created_at: now,
            updated_at: now,
            secret_bound_to: None,
        };
        // A connector is made with its secret: bound to where it points now.
        connector.bind_secret();
        Ok(connector)
    }

    fn deletion_guard(&self) -> Result<DeletionGuard, ValidationError> {
        let mut guard = DeletionGuard::default();
        for (name, _) in GUARD_SETTINGS {
            if let Some(value) = self.guard_setting(name) {
                guard.set(name, value)?;
            }
        }
        Ok(guard)
    }

    /// One of the deletion guard's settings, as given.
    pub fn guard_setting(&self, name: &str) -> Option<u64> {
        match name {
            "max_user_removals" => self.max_user_removals,
            "max_user_removals_percent" => self.max_user_removals_percent,
            "max_group_removals" => self.max_group_removals,
            "max_group_removals_percent" => self.max_group_removals_percent,
            "max_membership_removals" => self.max_membership_removals,
            "max_membership_removals_percent" => self.max_membership_removals_percent,
            _ => None,
        }
    }

    fn cloud(&self) -> Result<Cloud, ValidationError> {
        Cloud::from_parts(
            self.field("cloud"),
            self.field("authority_url"),
            self.field("graph_url"),
        )
    }

    fn secret(&self, name: &str) -> Result<SecretRef, ValidationError> {
        self.need(name)
            .parse()
            .map_err(|e: ValidationError| ValidationError::new(name, e.problem))
    }

    fn ldap(&self) -> Result<LdapSettings, ValidationError> {
        let url = self.need("url").to_owned();
        let default = if url.starts_with("ldaps://") {
            LdapTransport::Ldaps
        } else if url.starts_with("ldap://") {
            LdapTransport::StartTls
        } else {
            return Err(ValidationError::new(
                "url",
                format!("{url:?} must start with ldaps:// (or ldap:// with StartTLS)"),
            ));
        };
        let transport = match self.field("transport") {
            None => default,
            Some("ldaps") => LdapTransport::Ldaps,
            Some("start-tls") => LdapTransport::StartTls,
            Some("plain-insecure") => LdapTransport::PlainInsecure,
            Some(other) => {
                return Err(ValidationError::new(
                    "transport",
                    format!("{other:?} is not a transport; use ldaps, start-tls or plain-insecure"),
                ));
            }
        };
        let scheme_ok = match transport {
            LdapTransport::Ldaps => url.starts_with("ldaps://"),
            LdapTransport::StartTls | LdapTransport::PlainInsecure => url.starts_with("ldap://"),
        };
        if !scheme_ok {
            return Err(ValidationError::new(
                "transport",
                "ldaps needs an ldaps:// URL; start-tls and plain-insecure need an ldap:// URL",
            ));
        }
        check_ldap_url(&url)?;
        if let Some(pem) = self.field("ca_certificate") {
            check_ca_pem(pem).map_err(|problem| ValidationError::new("ca_certificate", problem))?;
        }
        for name in ["user_filter", "group_filter"] {
            if let Some(filter) = self.field(name) {
                super::ldap_filter::check(filter).map_err(|problem| {
                    ValidationError::new(name, format!("is not an LDAP filter: it {problem}"))
                })?;
            }
        }
        Ok(LdapSettings {
            url,
            transport,
            base_dn: self.field("base_dn").unwrap_or_default().to_owned(),
            bind_dn: self.need("bind_dn").to_owned(),
            password: self.secret("password_ref")?,
            ca_certificate: self.field("ca_certificate").map(str::to_owned),
            user_filter: self.field("user_filter").map(str::to_owned),
            group_filter: self.field("group_filter").map(str::to_owned),
        })
    }
}

/// Active Directory's base DN: one DN (its domain, or an OU of it).
fn one_base_dn(text: &str) -> Result<String, ValidationError> {
    let bases = super::ldap_dn::split_bases(text);
    if bases.len() > 1 {
        return Err(ValidationError::new(
            "base_dn",
            format!(
                "{text:?} names {} bases; an ldap-ad connector searches one base DN \
                 (e.g. DC=corp,DC=example,DC=com): use one connector per domain",
                bases.len()
            ),
        ));
    }
    check_dn("base_dn", text)?;
    Ok(text.to_owned())
}

/// Domino's base DN: blank (the whole directory), or DNs separated by `;`,
/// each checked; kept as `o=Acme; o=AcmeEU`.
fn domino_bases(text: &str) -> Result<String, ValidationError> {
    let bases = super::ldap_dn::split_bases(text);
    let mut keys = Vec::new();
    for base in &bases {
        check_dn("base_dn", base)?;
        let key = super::ldap_dn::key(base);
        if keys.contains(&key) {
            return Err(ValidationError::new(
                "base_dn",
                format!("names {base:?} twice; give each base once"),
            ));
        }
        keys.push(key);
    }
    Ok(bases.join("; "))
}

fn check_dn(field: &str, dn: &str) -> Result<(), ValidationError> {
    if super::ldap_dn::is_dn(dn) {
        return Ok(());
    }
    Err(ValidationError::new(
        field,
        format!(
            "{dn:?} is not a DN: write it as attribute=value pairs separated by commas, e.g. \
             ou=Sales,o=Acme (escape a comma inside a value as \\,)"
        ),
    ))
}

/// The deny-access group: a DN, or a group's name (`Deny Access`), which
/// cannot contain `=` (a value with one is meant as a DN, so it must be one).
fn deny_group(value: &str) -> Result<String, ValidationError> {
    if value.contains('=') {
        check_dn("deny_access_group", value).map_err(|e| {
            ValidationError::new(
                "deny_access_group",
                format!(
                    "{}; or give the group's name as the server document shows it, e.g. Deny Access",
                    e.problem
                ),
            )
        })?;
    }
    Ok(value.to_owned())
}

/// An LDAP URL names a server and nothing else: `ldaps://host[:port]`.
fn check_ldap_url(url: &str) -> Result<(), ValidationError> {
    let bad = |why: &str| {
        ValidationError::new(
            "url",
            format!(
                "{url:?} {why}; give the server as ldaps://dc1.corp.example.com (a port may follow, e.g. :636)"
            ),
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no server"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "carries credentials (give the bind DN and the password separately)",
        ));
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() || parsed.fragment().is_some()
    {
        return Err(bad("has a path or query (give the base DN in base_dn)"));
    }
    Ok(())
}

/// The CA certificates a connector trusts: PEM that holds at least one
/// certificate, each usable as a trust anchor.
fn check_ca_pem(pem: &str) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let advice = "give the CA certificate in PEM form (-----BEGIN CERTIFICATE----- …), as exported from the CA";
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("is not valid PEM ({e}); {advice}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("holds a certificate that cannot be read ({e}); {advice}"))?;
    }
    if roots.is_empty() {
        return Err(format!("holds no certificate; {advice}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct() -> AccountId {
        AccountId::new("acme").unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn spec(json: serde_json::Value) -> ConnectorSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn ldap_urls_filters_and_ca_certificates_are_checked_when_given() {
        let ad = |extra: serde_json::Value| {
            let mut j = serde_json::json!({"id": "ad", "kind": "ldap-ad", "url": "ldaps://dc1.corp.example.com",
                "base_dn": "DC=corp", "bind_dn": "svc@corp", "password_ref": "p"});
            for (k, v) in extra.as_object().unwrap() {
                j[k] = v.clone();
            }
            spec(j).validate(acct(), now())
        };
        assert!(ad(serde_json::json!({"user_filter": "(&(objectClass=user)(mail=*))"})).is_ok());
        let ca = rcgen::generate_simple_self_signed(vec!["ca.corp".to_owned()])
            .unwrap()
            .cert
            .pem();
        assert!(ad(serde_json::json!({"ca_certificate": ca})).is_ok());
        for (extra, field, says) in [
            (
                serde_json::json!({"user_filter": "(foo"}),
                "user_filter",
                "missing a \")\"",
            ),
            (
                serde_json::json!({"group_filter": "objectClass=group"}),
                "group_filter",
                "needs \"(\"",
            ),
            (
                serde_json::json!({"ca_certificate": "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----"}),
                "ca_certificate",
                "PEM",
            ),
            (
                serde_json::json!({"ca_certificate": "not a certificate at all"}),
                "ca_certificate",
                "no certificate",
            ),
            (
                serde_json::json!({"url": "ldaps://"}),
                "url",
                "names no server",
            ),
            (
                serde_json::json!({"url": "ldaps://dc1/DC=corp"}),
                "url",
                "base_dn",
            ),
            (
                serde_json::json!({"url": "ldaps://svc:pw@dc1"}),
                "url",
                "credentials",
            ),
        ] {
            let e = ad(extra.clone()).unwrap_err();
            assert_eq!(e.field, field, "{extra}");
            assert!(e.problem.contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn legacy_entra_connector_names_each_missing_setting() {
        let err =
            spec(serde_json::json!({"id": "old", "kind": "entra-legacy", "tenant": "contoso.com"}))
                .validate(acct(), now())
                .unwrap_err();
        assert!(
            err.problem
                .contains("client_id (the Application (client) ID"),
            "{err}"
        );
        assert!(err.problem.contains("client_secret_ref"), "{err}");
        assert!(!err.problem.contains("tenant ("), "{err}");
    }

    #[test]
    fn a_complete_legacy_connector_is_built() {
        let c = spec(serde_json::json!({
            "id": "old", "kind": "entra-legacy", "tenant": "Contoso.onmicrosoft.com",
            "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
            "client_secret_ref": "dirsync/acme/legacy",
            "email_domains": "contoso.com,fabrikam.com", "acknowledge_disabled": true
        }))
        .validate(acct(), now())
        .unwrap();
        assert_eq!(c.kind(), ConnectorKind::EntraLegacy);
        assert!(c.options.acknowledge_disabled);
        assert_eq!(c.options.email_domains.domains().len(), 2);
        assert!(c.is_due());
        let SourceConfig::EntraLegacy {
            tenant_domain,
            cloud,
            ..
        } = &c.source
        else {
            panic!("wrong source")
        };
        assert_eq!(tenant_domain.as_str(), "contoso.onmicrosoft.com");
        assert_eq!(cloud.graph_url(), "https://graph.microsoft.com");
        // Round-trips through its stored form.
        let back: Connector = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn settings_of_another_kind_and_unknown_fields_are_refused() {
        let err = spec(serde_json::json!({
            "id": "ad", "kind": "ldap-ad", "url": "ldaps://dc1.corp.example.com",
            "base_dn": "DC=corp", "bind_dn": "svc@corp", "password_ref": "p", "client_id": "x"
        }))
        .validate(acct(), now())
        .unwrap_err();
        assert!(err.problem.contains("client_id"), "{err}");
        assert!(
            serde_json::from_value::<ConnectorSpec>(serde_json::json!({"clientid": "x"})).is_err()
        );
    }

    #[test]
    fn each_cloud_asks_for_its_own_graph_resource() {
        // The service root endpoints of Microsoft's national cloud table.
        let expected = [
            (
                Cloud::Global,
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com/.default",
            ),
            (
                Cloud::UsGov,
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us/.default",
            ),
            (
                Cloud::UsGovDod,
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us/.default",
            ),
            (
                Cloud::China,
                "https://login.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn/.default",
            ),
        ];
        for (cloud, authority, scope) in expected {
            assert_eq!(
                (cloud.authority_url(), cloud.graph_scope().as_str()),
                (authority, scope)
            );
        }
        let custom = Cloud::from_parts(
            None,
            Some("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080/graph/"),
        )
        .unwrap();
        assert_eq!(
            custom.graph_scope(),
            "http://127.0.0.1:8080/.default",
            "the path is left out"
        );
        assert_eq!(
            graph_scope("https://Graph.Example:443/v1"),
            "https://graph.example/.default"
        );
    }

    #[test]
    fn consent_connectors_wait_for_consent_and_take_custom_clouds() {
        let c = spec(serde_json::json!({
            "id": "main", "kind": "entra", "tenant": "contoso.com",
            "authority_url": "http://127.0.0.1:8080/", "graph_url": "http://127.0.0.1:8080/graph"
        }))
        .validate(acct(), now())
        .unwrap();
        assert!(!c.is_due(), "pending consent is not due");
        let SourceConfig::EntraConsent { cloud, .. } = &c.source else {
            panic!()
        };
        assert_eq!(cloud.authority_url(), "http://127.0.0.1:8080");
        let err = spec(serde_json::json!({"id": "m", "kind": "entra", "tenant": "contoso.com", "authority_url": "http://evil.example/"}))
            .validate(acct(), now())
            .unwrap_err();
        assert!(err.problem.contains("graph_url"), "{err}");
        let err = spec(serde_json::json!({
            "id": "m", "kind": "entra", "tenant": "contoso.com", "authority_url": "http://evil.example", "graph_url": "https://g.example"
        }))
        .validate(acct(), now())
        .unwrap_err();
        assert!(err.problem.contains("https://"), "{err}");
        assert!(
            spec(serde_json::json!({"id": "m", "kind": "entra", "tenant": "contoso.com", "cloud": "mars"}))
                .validate(acct(), now())
                .is_err()
        );
    }

    #[test]
    fn consent_connectors_must_name_their_tenant() {
        let err = spec(serde_json::json!({"id": "main", "kind": "entra"}))
            .validate(acct(), now())
            .unwrap_err();
        assert!(
            err.problem.contains("tenant (") && err.problem.contains("GUID"),
            "{err}"
        );
        let err = spec(serde_json::json!({"id": "main", "kind": "entra", "tenant": "contoso"}))
            .validate(acct(), now())
            .unwrap_err();
        assert_eq!(err.field, "tenant", "{err}");
        let c = spec(serde_json::json!({
            "id": "main", "kind": "entra", "tenant": "6731DE76-14A6-49AE-97BC-6EBA6914391E"
        }))
        .validate(acct(), now())
        .unwrap();
        let SourceConfig::EntraConsent { tenant, .. } = &c.source else {
            panic!()
        };
        assert_eq!(
            tenant.as_deref(),
            Some("6731de76-14a6-49ae-97bc-6eba6914391e")
        );
        // Connectors stored before the rename still read.
        let mut stored = serde_json::to_value(&c).unwrap();
        let source = stored["source"].as_object_mut().unwrap();
        let named = source.remove("tenant").unwrap();
        source.insert("tenant_hint".into(), named);
        let back: Connector = serde_json::from_value(stored).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn ldap_transport_must_match_the_url_and_plain_must_be_asked_for() {
        let base = serde_json::json!({
            "id": "ad", "kind": "ldap-ad", "url": "ldap://dc1.corp.example.com",
            "base_dn": "DC=corp", "bind_dn": "svc@corp", "password_ref": "dirsync/ad"
        });
        let c = spec(base.clone()).validate(acct(), now()).unwrap();
        let SourceConfig::ActiveDirectory { ldap } = &c.source else {
            panic!()
        };
        assert_eq!(ldap.transport, LdapTransport::StartTls);
        let mut wrong = base.clone();
        wrong["transport"] = "ldaps".into();
        assert!(spec(wrong).validate(acct(), now()).is_err());
        let mut bad_url = base;
        bad_url["url"] = "dc1.corp.example.com".into();
        assert_eq!(
            spec(bad_url).validate(acct(), now()).unwrap_err().field,
            "url"
        );
    }

    #[test]
    fn bad_domains_filter_and_secret_values_are_refused() {
        let err = spec(serde_json::json!({
            "id": "g", "kind": "google", "admin_email": "admin@example.com",
            "service_account_key_ref": "dirsync/g", "email_domains": "example.com; other.com"
        }))
        .validate(acct(), now())
        .unwrap_err();
        assert_eq!(err.field, "email_domains");
        let err = spec(serde_json::json!({
            "id": "g", "kind": "google", "admin_email": "admin@example.com",
            "service_account_key_ref": "{\"private_key\": \"...\"}"
        }))
        .validate(acct(), now())
        .unwrap_err();
        assert_eq!(err.field, "service_account_key_ref");
        assert!(
            !err.to_string().contains("private_key"),
            "a secret value is never echoed: {err}"
        );
    }

    fn ldap(kind: &str, extra: serde_json::Value) -> Result<Connector, ValidationError> {
        let mut j = serde_json::json!({"id": "c", "kind": kind, "url": "ldaps://dir.example.com",
            "bind_dn": "cn=svc,o=Acme", "password_ref": "p"});
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        spec(j).validate(acct(), now())
    }

    fn domino_settings(c: &Connector) -> (&LdapSettings, Option<&str>) {
        match &c.source {
            SourceConfig::Domino {
                ldap,
                deny_access_group,
                ..
            } => (ldap, deny_access_group.as_deref()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn domino_searches_the_whole_directory_by_default_or_several_bases() {
        let whole = ldap("ldap-domino", serde_json::json!({})).unwrap();
        assert_eq!(domino_settings(&whole).0.base_dn, "");
        assert_eq!(domino_settings(&whole).0.bases(), [""]);
        let blank = ldap("ldap-domino", serde_json::json!({"base_dn": " "})).unwrap();
        assert_eq!(domino_settings(&blank).0.bases(), [""]);
        let two = ldap(
            "ldap-domino",
            serde_json::json!({"base_dn": "o=Acme;  o=AcmeEU ;"}),
        )
        .unwrap();
        assert_eq!(domino_settings(&two).0.base_dn, "o=Acme; o=AcmeEU");
        assert_eq!(domino_settings(&two).0.bases(), ["o=Acme", "o=AcmeEU"]);
        for (base, says) in [
            ("o=Acme; Sales", "\"Sales\" is not a DN"),
            ("o=Acme; O=ACME", "twice"),
        ] {
            let e = ldap("ldap-domino", serde_json::json!({"base_dn": base})).unwrap_err();
            assert_eq!(e.field, "base_dn");
            assert!(e.problem.contains(says), "{base}: {e}");
        }
    }

    #[test]
    fn active_directory_keeps_one_base_dn() {
        let e = ldap("ldap-ad", serde_json::json!({})).unwrap_err();
        assert!(e.problem.contains("base_dn (where to search"), "{e}");
        let e = ldap("ldap-ad", serde_json::json!({"base_dn": "DC=a; DC=b"})).unwrap_err();
        assert!(e.problem.contains("one base DN"), "{e}");
        let e = ldap(
            "ldap-ad",
            serde_json::json!({"base_dn": "corp.example.com"}),
        )
        .unwrap_err();
        assert!(e.problem.contains("is not a DN"), "{e}");
        assert!(
            ldap(
                "ldap-ad",
                serde_json::json!({"base_dn": "DC=corp,DC=example"})
            )
            .is_ok()
        );
    }

    #[test]
    fn the_deny_group_is_a_dn_or_a_name() {
        for given in ["Deny Access", "cn=Deny Access,o=Acme"] {
            let c = ldap(
                "ldap-domino",
                serde_json::json!({"deny_access_group": given}),
            )
            .unwrap();
            assert_eq!(domino_settings(&c).1, Some(given));
        }
        let e = ldap(
            "ldap-domino",
            serde_json::json!({"deny_access_group": "cn=Deny\\"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "deny_access_group");
        assert!(
            e.problem.contains("is not a DN") && e.problem.contains("Deny Access"),
            "{e}"
        );
    }

    #[test]
    fn stored_ldap_settings_with_one_base_dn_still_load() {
        let stored = serde_json::json!({"url": "ldaps://d", "transport": "ldaps", "base_dn": "o=Acme",
            "bind_dn": "cn=svc", "password": "p", "ca_certificate": null, "user_filter": null,
            "group_filter": null});
        let ldap: LdapSettings = serde_json::from_value(stored).unwrap();
        assert_eq!(ldap.bases(), ["o=Acme"]);
    }
}
