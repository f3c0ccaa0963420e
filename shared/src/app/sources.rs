//! Which `DirectorySource` reads a connector.

use crate::domain::{Connector, ConnectorKind};
use crate::source::graph::{GraphDeps, GraphSource};
use crate::source::{DirectorySource, SourceError};

pub trait SourceFactory: Send + Sync {
    fn source_for(&self, connector: &Connector) -> Result<Box<dyn DirectorySource>, SourceError>;

    /// A source that reads `connector` with `secret` in place of its
    /// stored one, to test a new secret before it replaces the working one;
    /// `None` for a kind without a secret of the customer's (the consent
    /// connector signs in with the platform's certificate).
    fn with_secret(
        &self,
        _connector: &Connector,
        _secret: crate::secrets::SecretValue,
    ) -> Option<Result<Box<dyn DirectorySource>, SourceError>> {
        None
    }

    /// `connector`'s secret has just been replaced: forgets what this
    /// process keeps made from the old one (an Entra token), so that the
    /// next test or sync uses the new one.
    fn secret_replaced(&self, _connector: &Connector) {}
}

/// Every kind of source, built once per process.
pub struct Sources {
    pub graph: std::sync::Arc<GraphDeps>,
    /// Where LDAP connectors' passwords are.
    pub secrets: std::sync::Arc<dyn crate::secrets::SecretStore>,
}

impl SourceFactory for Sources {
    fn source_for(&self, connector: &Connector) -> Result<Box<dyn DirectorySource>, SourceError> {
        // Before any secret is read: only where it was given for.
        connector
            .check_secret_binding()
            .map_err(|e| SourceError::Config(e.problem))?;
        self.build(connector, self.secrets.clone())
    }

    fn with_secret(
        &self,
        connector: &Connector,
        secret: crate::secrets::SecretValue,
    ) -> Option<Result<Box<dyn DirectorySource>, SourceError>> {
        let name = connector.source.secret_ref()?.clone();
        if let Err(e) = connector.check_secret_binding() {
            return Some(Err(SourceError::Config(e.problem)));
        }
        let candidate: std::sync::Arc<dyn crate::secrets::SecretStore> =
            std::sync::Arc::new(crate::secrets::Candidate {
                inner: self.secrets.clone(),
                name,
                value: secret,
            });
        match connector.kind() {
            ConnectorKind::EntraConsent => None,
            // A legacy app's client secret is read by the token provider,
            // whose cache is keyed by the secret's name: the candidate is
            // tested through a provider of its own, so that the test neither
            // passes on the stored secret's cached token nor leaves the
            // candidate's token behind when it is not stored.
            ConnectorKind::EntraLegacy => {
                let deps = GraphDeps {
                    tokens: std::sync::Arc::new(self.graph.tokens.isolated(candidate)),
                    limiters: self.graph.limiters.clone(),
                    policy: self.graph.policy,
                    app: self.graph.app.clone(),
                    budget: None,
                };
                Some(
                    GraphSource::for_connector(connector, &deps)
                        .map(|s| Box::new(s) as Box<dyn DirectorySource>),
                )
            }
            _ => Some(self.build(connector, candidate)),
        }
    }

    fn secret_replaced(&self, connector: &Connector) {
        if connector.kind() == ConnectorKind::EntraLegacy
            && let Ok(source) = GraphSource::for_connector(connector, &self.graph)
        {
            source.forget_token();
        }
    }
}

impl Sources {
    fn build(
        &self,
        connector: &Connector,
        secrets: std::sync::Arc<dyn crate::secrets::SecretStore>,
    ) -> Result<Box<dyn DirectorySource>, SourceError> {
        match connector.kind() {
            ConnectorKind::EntraConsent | ConnectorKind::EntraLegacy => Ok(Box::new(
                GraphSource::for_connector(connector, &self.graph)?,
            )),
            ConnectorKind::ActiveDirectory | ConnectorKind::Domino => Ok(Box::new(
                crate::source::ldap::LdapSource::for_connector(connector, secrets)?,
            )),
            ConnectorKind::Google => Ok(Box::new(
                crate::source::google::GoogleSource::for_connector(
                    connector,
                    secrets,
                    std::sync::Arc::new(crate::clock::SystemClock),
                    self.graph.policy,
                )?,
            )),
        }
    }
}
