//! Which `DirectorySource` reads a connector.

use crate::domain::{Connector, ConnectorKind};
use crate::source::graph::{GraphDeps, GraphSource};
use crate::source::{DirectorySource, SourceError};

pub trait SourceFactory: Send + Sync {
    fn source_for(&self, connector: &Connector) -> Result<Box<dyn DirectorySource>, SourceError>;

    /// A source that reads `connector` with `secret` in place of its
    /// stored one, to test a new secret before it replaces the working one;
    /// `None` for a kind that cannot (Entra's legacy client secrets go
    /// through a token cache keyed by the app).
    fn with_secret(
        &self,
        _connector: &Connector,
        _secret: crate::secrets::SecretValue,
    ) -> Option<Result<Box<dyn DirectorySource>, SourceError>> {
        None
    }
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
        if matches!(
            connector.kind(),
            ConnectorKind::EntraConsent | ConnectorKind::EntraLegacy
        ) {
            return None;
        }
        let candidate = crate::secrets::Candidate {
            inner: self.secrets.clone(),
            name,
            value: secret,
        };
        Some(self.build(connector, std::sync::Arc::new(candidate)))
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
