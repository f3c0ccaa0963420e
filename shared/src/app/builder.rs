//! The one way to put an [`App`] together. Lambda's configuration, the
//! CLI's local runtime, the demo and the tests differ only in the parts they
//! hand in (a table, a queue, a secret store) and a few settings; the
//! wiring between the parts — one token provider, one set of tenant
//! limiters and the app's shared budget, used by the engine's sources and
//! the platform's own Graph calls — lives here alone.

use std::sync::Arc;

use crate::engine::{EngineSettings, SyncEngine};
use crate::queue::JobQueue;
use crate::secrets::SecretStore;
use crate::source::budget::SharedBudget;
use crate::source::graph::{EntraApp, GraphDeps};
use crate::source::retry::RetryPolicy;
use crate::store::StateStore;

use super::{App, AppSettings, Sources};

pub struct AppBuilder {
    store: StateStore,
    queue: Arc<dyn JobQueue>,
    secrets: Arc<dyn SecretStore>,
    entra_app: Option<EntraApp>,
    engine: EngineSettings,
    retry: RetryPolicy,
    settings: AppSettings,
}

impl App {
    /// An App over these parts, with the production settings until told
    /// otherwise. Tokens are stamped with the store's clock.
    pub fn builder(
        store: StateStore,
        queue: Arc<dyn JobQueue>,
        secrets: Arc<dyn SecretStore>,
    ) -> AppBuilder {
        AppBuilder {
            store,
            queue,
            secrets,
            entra_app: None,
            engine: EngineSettings::default(),
            retry: RetryPolicy::default(),
            settings: AppSettings::default(),
        }
    }
}

impl AppBuilder {
    /// The platform's multi-tenant app (consent connectors, rotation);
    /// without one, only legacy and directory connectors work.
    pub fn entra_app(mut self, app: Option<EntraApp>) -> Self {
        self.entra_app = app;
        self
    }

    pub fn engine(mut self, settings: EngineSettings) -> Self {
        self.engine = settings;
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    pub fn settings(mut self, settings: AppSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The platform app's budget, counted in the app's own table.
    fn shared_budget(&self) -> Option<Arc<SharedBudget>> {
        let app = self.entra_app.as_ref()?;
        let limits = self.settings.graph_budget?;
        Some(Arc::new(SharedBudget::new(
            self.store.clone(),
            app.client_id.to_string(),
            limits,
        )))
    }

    pub fn build(self) -> App {
        let budget = self.shared_budget();
        let graph = Arc::new(
            GraphDeps::new(
                self.secrets.clone(),
                self.store.clock(),
                self.retry,
                self.entra_app,
            )
            .with_budget(budget),
        );
        App {
            engine: SyncEngine::new(self.store.clone(), self.engine),
            store: self.store,
            queue: self.queue,
            sources: Arc::new(Sources {
                graph: graph.clone(),
                secrets: self.secrets.clone(),
            }),
            secrets: self.secrets,
            graph,
            settings: self.settings,
        }
    }
}
