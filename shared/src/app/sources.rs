//! Which `DirectorySource` reads a connector.

use crate::domain::{Connector, ConnectorKind};
use crate::source::graph::{GraphDeps, GraphSource};
use crate::source::{DirectorySource, SourceError};

pub trait SourceFactory: Send + Sync {
    fn source_for(&self, connector: &Connector) -> Result<Box<dyn DirectorySource>, SourceError>;
}

/// The sources this build can read.
pub struct Sources {
    pub graph: std::sync::Arc<GraphDeps>,
}

impl SourceFactory for Sources {
    fn source_for(&self, connector: &Connector) -> Result<Box<dyn DirectorySource>, SourceError> {
        match connector.kind() {
            ConnectorKind::EntraConsent | ConnectorKind::EntraLegacy => Ok(Box::new(
                GraphSource::for_connector(connector, &self.graph)?,
            )),
            other => Err(SourceError::Config(format!(
                "{other} connectors cannot be synced by this version of dirsync yet; \
                 the connector is kept and will sync once support is deployed"
            ))),
        }
    }
}
