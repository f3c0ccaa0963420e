//! Which `DirectorySource` reads a connector.

use crate::domain::{Connector, ConnectorKind};
use crate::source::graph::{GraphDeps, GraphSource};
use crate::source::{DirectorySource, SourceError};

pub trait SourceFactory: Send + Sync {
    fn source_for(&self, connector: &Connector) -> Result<Box<dyn DirectorySource>, SourceError>;
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
        match connector.kind() {
            ConnectorKind::EntraConsent | ConnectorKind::EntraLegacy => Ok(Box::new(
                GraphSource::for_connector(connector, &self.graph)?,
            )),
            ConnectorKind::ActiveDirectory | ConnectorKind::Domino => Ok(Box::new(
                crate::source::ldap::LdapSource::for_connector(connector, self.secrets.clone())?,
            )),
            ConnectorKind::Google => Ok(Box::new(
                crate::source::google::GoogleSource::for_connector(
                    connector,
                    self.secrets.clone(),
                    std::sync::Arc::new(crate::clock::SystemClock),
                    self.graph.policy,
                )?,
            )),
        }
    }
}
