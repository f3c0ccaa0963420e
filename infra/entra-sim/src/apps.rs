//! App registrations and their service principals (who may get tokens where,
//! with which application roles).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::certs::RegisteredKey;

/// How the app was registered.
#[derive(Clone, Debug)]
pub(crate) enum AppKind {
    /// The consent connector's app, registered once, consented per tenant.
    MultiTenant { redirect_uris: Vec<String> },
    /// A customer-made single-tenant app with a client secret.
    Legacy,
}

#[derive(Clone, Debug)]
pub(crate) struct Secret {
    pub key_id: Uuid,
    pub value: String,
    pub expires: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct AppReg {
    pub client_id: Uuid,
    pub object_id: Uuid,
    pub home_tenant: Uuid,
    pub kind: AppKind,
    pub keys: Vec<RegisteredKey>,
    pub secrets: Vec<Secret>,
    pub disabled: bool,
    /// Tenants where the app has a service principal, with the application
    /// roles granted there. No entry: the app is not in that directory.
    pub grants: HashMap<Uuid, Vec<String>>,
    /// Service principals still replicating after admin consent: until this
    /// time, token requests in that tenant do not find the app.
    pub replicating_until: HashMap<Uuid, DateTime<Utc>>,
}

impl AppReg {
    pub fn display_name(&self) -> String {
        match self.kind {
            AppKind::MultiTenant { .. } => "dirsync".to_string(),
            AppKind::Legacy => format!("legacy-{}", &self.client_id.to_string()[..8]),
        }
    }

    pub fn redirect_uris(&self) -> &[String] {
        match &self.kind {
            AppKind::MultiTenant { redirect_uris } => redirect_uris,
            AppKind::Legacy => &[],
        }
    }

    /// Adds roles to the service principal in `tenant`, creating it.
    pub fn grant(&mut self, tenant: Uuid, roles: &[&str]) {
        let granted = self.grants.entry(tenant).or_default();
        for role in roles {
            if !granted.iter().any(|r| r == role) {
                granted.push(role.to_string());
            }
        }
    }

    /// As [`AppReg::grant`]; a service principal this creates is seen by
    /// token requests from `visible_at` on (one that exists stays seen).
    pub fn grant_visible_at(&mut self, tenant: Uuid, roles: &[&str], visible_at: DateTime<Utc>) {
        if !self.grants.contains_key(&tenant) {
            self.replicating_until.insert(tenant, visible_at);
        }
        self.grant(tenant, roles);
    }

    /// Whether token requests in `tenant` find the app's service principal
    /// at `now`.
    pub fn is_in_tenant(&self, tenant: Uuid, now: DateTime<Utc>) -> bool {
        self.grants.contains_key(&tenant)
            && self
                .replicating_until
                .get(&tenant)
                .is_none_or(|t| *t <= now)
    }

    /// The Graph `application` resource.
    pub fn to_json(&self, graph_base: &str) -> Value {
        let sign_in_audience = match self.kind {
            AppKind::MultiTenant { .. } => "AzureADMultipleOrgs",
            AppKind::Legacy => "AzureADMyOrg",
        };
        json!({
            "@odata.context": format!("{graph_base}/v1.0/$metadata#applications/$entity"),
            "id": self.object_id,
            "appId": self.client_id,
            "displayName": self.display_name(),
            "signInAudience": sign_in_audience,
            "keyCredentials": self.keys.iter().map(key_credential_json).collect::<Vec<_>>(),
            "passwordCredentials": self.secrets.iter().map(|s| json!({
                "customKeyIdentifier": null,
                "displayName": "secret",
                "endDateTime": s.expires.to_rfc3339_opts(SecondsFormat::Secs, true),
                "hint": s.value.chars().take(3).collect::<String>(),
                "keyId": s.key_id,
                "secretText": null,
                "startDateTime": null,
            })).collect::<Vec<_>>(),
            "web": { "redirectUris": self.redirect_uris() },
        })
    }
}

/// A `keyCredential` as Graph returns it (never with the key itself).
pub(crate) fn key_credential_json(key: &RegisteredKey) -> Value {
    json!({
        "customKeyIdentifier": key.thumbprint_hex(),
        "displayName": key.subject,
        "endDateTime": key.info.end.to_rfc3339_opts(SecondsFormat::Secs, true),
        "key": null,
        "keyId": key.info.key_id,
        "startDateTime": key.info.start.to_rfc3339_opts(SecondsFormat::Secs, true),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    })
}

/// All app registrations, by client id.
#[derive(Default)]
pub(crate) struct AppRegistry {
    apps: HashMap<Uuid, AppReg>,
    by_object: HashMap<Uuid, Uuid>,
}

impl AppRegistry {
    pub fn insert(&mut self, app: AppReg) {
        self.by_object.insert(app.object_id, app.client_id);
        self.apps.insert(app.client_id, app);
    }

    pub fn get(&self, client_id: Uuid) -> Option<&AppReg> {
        self.apps.get(&client_id)
    }

    pub fn get_mut(&mut self, client_id: Uuid) -> Option<&mut AppReg> {
        self.apps.get_mut(&client_id)
    }

    pub fn by_object(&self, object_id: Uuid) -> Option<&AppReg> {
        self.by_object
            .get(&object_id)
            .and_then(|client| self.apps.get(client))
    }

    pub fn by_object_mut(&mut self, object_id: Uuid) -> Option<&mut AppReg> {
        let client = *self.by_object.get(&object_id)?;
        self.apps.get_mut(&client)
    }
}
