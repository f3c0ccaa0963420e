//! A connector's secret goes only where it was given for.
//!
//! Each secret-bearing source has an *endpoint*: everything that decides
//! where the secret (or a token made from it) is sent — the LDAP URL,
//! transport, CA and bind DN; the legacy app's sign-in host, tenant and
//! client; Google's API host and the administrator acted as. The connector
//! keeps a digest of the endpoint its secret was last given for, and every
//! use checks it, so no code path that changes the endpoint without the
//! secret can send the secret elsewhere. (It guards the service's own
//! paths; whoever can write the table directly is past every guard.)

use sha2::{Digest, Sha256};

use super::{Connector, ConnectorSpec, LdapTransport, SecretRef, SourceConfig, ValidationError};

impl SourceConfig {
    /// Where this source sends its secret; `None` for a source without one.
    pub fn secret_endpoint(&self) -> Option<String> {
        match self {
            SourceConfig::EntraConsent { .. } => None,
            SourceConfig::EntraLegacy {
                cloud,
                tenant_domain,
                client_id,
                ..
            } => Some(endpoint(&[
                "entra-legacy",
                cloud.authority_url(),
                cloud.graph_url(),
                tenant_domain.as_str(),
                &client_id.to_string(),
            ])),
            SourceConfig::ActiveDirectory { ldap } | SourceConfig::Domino { ldap, .. } => {
                let ca = ldap.ca_certificate.as_deref().unwrap_or_default();
                Some(endpoint(&[
                    "ldap",
                    &ldap.url,
                    transport_code(ldap.transport),
                    &ldap.bind_dn,
                    ca,
                ]))
            }
            SourceConfig::Google {
                admin_email,
                api_url,
                ..
            } => Some(endpoint(&[
                "google",
                api_url.as_deref().unwrap_or("default"),
                admin_email.as_str(),
            ])),
        }
    }

    /// The secret this source reads, if it has one.
    pub fn secret_ref(&self) -> Option<&SecretRef> {
        match self {
            SourceConfig::EntraConsent { .. } => None,
            SourceConfig::EntraLegacy { client_secret, .. } => Some(client_secret),
            SourceConfig::ActiveDirectory { ldap } | SourceConfig::Domino { ldap, .. } => {
                Some(&ldap.password)
            }
            SourceConfig::Google {
                service_account_key,
                ..
            } => Some(service_account_key),
        }
    }

    /// Points the source at another secret name (no-op without a secret).
    pub fn set_secret_ref(&mut self, name: SecretRef) {
        match self {
            SourceConfig::EntraConsent { .. } => {}
            SourceConfig::EntraLegacy { client_secret, .. } => *client_secret = name,
            SourceConfig::ActiveDirectory { ldap } | SourceConfig::Domino { ldap, .. } => {
                ldap.password = name
            }
            SourceConfig::Google {
                service_account_key,
                ..
            } => *service_account_key = name,
        }
    }
}

/// The parts as a JSON array: no two endpoints read alike.
fn endpoint(parts: &[&str]) -> String {
    serde_json::to_string(parts).unwrap_or_default()
}

fn transport_code(t: LdapTransport) -> &'static str {
    match t {
        LdapTransport::Ldaps => "ldaps",
        LdapTransport::StartTls => "start-tls",
        LdapTransport::PlainInsecure => "plain-insecure",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(endpoint: &str) -> String {
    hex(&Sha256::digest(endpoint.as_bytes()))
}

impl Connector {
    /// Records that the secret was given for where the connector points now.
    pub fn bind_secret(&mut self) {
        self.secret_bound_to = self.source.secret_endpoint().map(|e| digest(&e));
    }

    /// Whether the connector still points where its secret was given for.
    /// (A source without a secret, such as a migrated connector, sends none.)
    pub fn secret_endpoint_changed(&self) -> bool {
        match self.source.secret_endpoint() {
            None => false,
            Some(e) => Some(digest(&e)) != self.secret_bound_to,
        }
    }

    /// Refuses to use the secret anywhere but where it was given for.
    pub fn check_secret_binding(&self) -> Result<(), ValidationError> {
        if self.secret_endpoint_changed() {
            return Err(ValidationError::new(
                "secret",
                format!(
                    "connector {} now points somewhere its secret was not given for, so the secret is not \
                     sent; check where it points (GET /accounts/{a}/connectors/{c}), and if that is right \
                     give the secret again with the version you read (PUT /accounts/{a}/connectors/{c}/secret)",
                    self.id,
                    a = self.account,
                    c = self.id
                ),
            ));
        }
        Ok(())
    }
}

/// The settings a change may carry; the rest (id, kind, tenant, cloud,
/// secret names) are fixed for a connector's life, or changed by their own
/// operation.
pub const CHANGEABLE: [&str; 21] = [
    "description",
    "enabled",
    "acknowledge_disabled",
    "email_domains",
    "max_user_removals",
    "max_user_removals_percent",
    "max_group_removals",
    "max_group_removals_percent",
    "max_membership_removals",
    "max_membership_removals_percent",
    "url",
    "transport",
    "base_dn",
    "bind_dn",
    "ca_certificate",
    "user_filter",
    "group_filter",
    "deny_access_group",
    "admin_email",
    "customer",
    "api_url",
];

impl From<&Connector> for ConnectorSpec {
    /// The spec that validates back into this connector's settings.
    fn from(c: &Connector) -> Self {
        let mut spec = ConnectorSpec {
            id: Some(c.id.to_string()),
            kind: Some(c.kind().code().to_owned()),
            description: Some(c.description.clone()),
            enabled: Some(c.state == super::ConnectorState::Enabled),
            acknowledge_disabled: Some(c.options.acknowledge_disabled),
            email_domains: Some(c.options.email_domains.to_string()),
            ..ConnectorSpec::default()
        };
        let guard = &c.options.deletion_guard;
        spec.max_user_removals = Some(guard.users.max_count);
        spec.max_user_removals_percent = Some(guard.users.max_percent);
        spec.max_group_removals = Some(guard.groups.max_count);
        spec.max_group_removals_percent = Some(guard.groups.max_percent);
        spec.max_membership_removals = Some(guard.memberships.max_count);
        spec.max_membership_removals_percent = Some(guard.memberships.max_percent);
        let cloud = |spec: &mut ConnectorSpec, cloud: &super::Cloud| match cloud {
            super::Cloud::Custom {
                authority_url,
                graph_url,
            } => {
                spec.authority_url = Some(authority_url.clone());
                spec.graph_url = Some(graph_url.clone());
            }
            preset => {
                spec.cloud = serde_json::to_value(preset)
                    .ok()
                    .and_then(|v| v["cloud"].as_str().map(str::to_owned))
            }
        };
        match &c.source {
            SourceConfig::EntraConsent {
                cloud: cl, tenant, ..
            } => {
                cloud(&mut spec, cl);
                spec.tenant = tenant.clone();
            }
            SourceConfig::EntraLegacy {
                cloud: cl,
                tenant_domain,
                client_id,
                client_secret,
            } => {
                cloud(&mut spec, cl);
                spec.tenant = Some(tenant_domain.to_string());
                spec.client_id = Some(client_id.to_string());
                spec.client_secret_ref = Some(client_secret.as_str().to_owned());
            }
            SourceConfig::ActiveDirectory { ldap } | SourceConfig::Domino { ldap, .. } => {
                spec.url = Some(ldap.url.clone());
                spec.transport = Some(transport_code(ldap.transport).to_owned());
                spec.base_dn = Some(ldap.base_dn.clone());
                spec.bind_dn = Some(ldap.bind_dn.clone());
                spec.password_ref = Some(ldap.password.as_str().to_owned());
                spec.ca_certificate = ldap.ca_certificate.clone();
                spec.user_filter = ldap.user_filter.clone();
                spec.group_filter = ldap.group_filter.clone();
                if let SourceConfig::Domino {
                    deny_access_group, ..
                } = &c.source
                {
                    spec.deny_access_group = deny_access_group.clone();
                }
            }
            SourceConfig::Google {
                admin_email,
                service_account_key,
                customer,
                api_url,
            } => {
                spec.admin_email = Some(admin_email.to_string());
                spec.service_account_key_ref = Some(service_account_key.as_str().to_owned());
                spec.customer = Some(customer.clone());
                spec.api_url = api_url.clone();
            }
        }
        spec
    }
}

impl ConnectorSpec {
    /// This spec with the settings `change` gives laid over it. `change`
    /// must carry only [`CHANGEABLE`] settings.
    pub fn changed_by(&self, change: &ConnectorSpec) -> Result<ConnectorSpec, ValidationError> {
        let fixed = serde_json::to_value(change)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, v)| !v.is_null() && !CHANGEABLE.contains(&k.as_str()))
            .map(|(k, _)| k)
            .collect::<Vec<_>>();
        if !fixed.is_empty() {
            return Err(ValidationError::new(
                "settings",
                format!(
                    "{} cannot be changed; change {} (the tenant with POST …/tenant, a secret with PUT …/secret), \
                     or delete the connector and create it again",
                    fixed.join(", "),
                    CHANGEABLE.join(", ")
                ),
            ));
        }
        let mut merged = serde_json::to_value(self).unwrap_or_default();
        if let (Some(base), Ok(serde_json::Value::Object(over))) =
            (merged.as_object_mut(), serde_json::to_value(change))
        {
            for (k, v) in over.into_iter().filter(|(_, v)| !v.is_null()) {
                base.insert(k, v);
            }
        }
        serde_json::from_value(merged).map_err(|e| ValidationError::new("settings", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;
    use crate::domain::AccountId;

    fn ad() -> Connector {
        serde_json::from_value::<ConnectorSpec>(json!({
            "id": "ad", "kind": "ldap-ad", "url": "ldaps://dc1.corp.example.com",
            "base_dn": "DC=corp", "bind_dn": "svc@corp", "password_ref": "dirsync/acme/ad",
            "user_filter": "(objectClass=user)"
        }))
        .unwrap()
        .validate(AccountId::new("acme").unwrap(), Utc::now())
        .unwrap()
    }

    #[test]
    fn a_new_connector_is_bound_and_a_moved_one_is_not() {
        let c = ad();
        assert!(c.check_secret_binding().is_ok());
        for change in [
            json!({"url": "ldaps://attacker.example"}),
            json!({"url": "ldap://dc1.corp.example.com", "transport": "plain-insecure"}),
            json!({"bind_dn": "cn=other"}),
            json!({"ca_certificate": rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()])
                .unwrap()
                .cert
                .pem()}),
        ] {
            let spec = ConnectorSpec::from(&c)
                .changed_by(&serde_json::from_value(change.clone()).unwrap())
                .unwrap();
            let moved = spec.validate(c.account.clone(), Utc::now()).unwrap();
            let mut kept = c.clone();
            kept.source = moved.source;
            assert!(kept.secret_endpoint_changed(), "{change}");
            let err = kept.check_secret_binding().unwrap_err();
            assert!(err.problem.contains("give the secret again"), "{err}");
        }
        // A filter or the base DN does not move the secret.
        let spec = ConnectorSpec::from(&c)
            .changed_by(&serde_json::from_value(json!({"base_dn": "OU=Staff,DC=corp"})).unwrap())
            .unwrap();
        let mut kept = c.clone();
        kept.source = spec.validate(c.account.clone(), Utc::now()).unwrap().source;
        assert!(!kept.secret_endpoint_changed());
    }

    #[test]
    fn moving_a_google_connector_moves_its_key() {
        let c = serde_json::from_value::<ConnectorSpec>(json!({
            "id": "g", "kind": "google", "admin_email": "admin@acme.com",
            "service_account_key_ref": "dirsync/acme/g"
        }))
        .unwrap()
        .validate(AccountId::new("acme").unwrap(), Utc::now())
        .unwrap();
        let moved = |change: serde_json::Value| {
            let spec = ConnectorSpec::from(&c)
                .changed_by(&serde_json::from_value(change).unwrap())
                .unwrap();
            let mut kept = c.clone();
            kept.source = spec.validate(c.account.clone(), Utc::now()).unwrap().source;
            kept.secret_endpoint_changed()
        };
        assert!(moved(
            json!({"api_url": "https://directory.attacker.example"})
        ));
        assert!(moved(json!({"admin_email": "someone@attacker.example"})));
        assert!(
            !moved(json!({"customer": "C0123"})),
            "the customer is not where the key goes"
        );
    }

    #[test]
    fn a_spec_round_trips_and_fixed_settings_are_refused() {
        let c = ad();
        let back = ConnectorSpec::from(&c)
            .validate(c.account.clone(), c.created_at)
            .unwrap();
        assert_eq!(back.source, c.source);
        assert_eq!(back.options, c.options);
        let err = ConnectorSpec::from(&c)
            .changed_by(
                &serde_json::from_value(json!({"password_ref": "dirsync/globex/ad"})).unwrap(),
            )
            .unwrap_err();
        assert!(
            err.problem.contains("password_ref cannot be changed"),
            "{err}"
        );
    }
}
