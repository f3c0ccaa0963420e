//! The application services the Lambda functions (and the local CLI) call:
//! the sync window's fan-out, the worker's job, the admin API. Everything
//! they need is built once into an [`App`].

pub mod access;
pub mod api;
pub mod audit;
pub mod builder;
pub mod config;
pub mod consent;
pub mod failure;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics;
pub mod rotation;
pub mod sources;
pub mod window;
pub mod worker;

use std::sync::Arc;

use crate::engine::{EngineError, SyncEngine};
use crate::queue::{JobQueue, QueueError};
use crate::secrets::{SecretError, SecretStore};
use crate::source::SourceError;
use crate::store::{StateStore, StoreError};

pub use access::Caller;
pub use builder::AppBuilder;
pub use failure::{Failure, FailureKind};
pub use sources::{SourceFactory, Sources};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0} does not exist")]
    NotFound(String),
    /// A path names no user or group of the connector, or several.
    #[error(transparent)]
    Lookup(#[from] api::LookupError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// Well formed but refused on its merits (a new secret that fails its
    /// connection test); `body` says more, beside the message.
    #[error("{message}")]
    Unprocessable {
        message: String,
        body: serde_json::Value,
    },
    /// The caller may not do this (another account's, or not signed).
    #[error("{0}")]
    Forbidden(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// Settings of the deployment (environment variables in Lambda).
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// How much of a sync window the jobs are spread over, per kind.
    pub window_spans: window::WindowSpans,
    /// Prefix of secrets the admin API creates (`<prefix>/<account>/<connector>`).
    pub secret_prefix: String,
    /// Where Entra returns administrators after admin consent (registered on
    /// the app).
    pub consent_redirect_uri: Option<String>,
    /// Whether connectors may name their own sign-in and Graph hosts (local
    /// runs and the demo, against the simulator); never in production.
    pub allow_custom_cloud: bool,
    /// Principals (IAM ARNs) that administer the whole platform: create
    /// accounts, grant access, act for every account.
    pub platform_admins: Vec<String>,
    /// The platform app's Graph budget across all tenants, paced in the
    /// table by every worker; `None` leaves each worker to Graph's 429s.
    pub graph_budget: Option<crate::source::budget::BudgetLimits>,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            window_spans: window::WindowSpans::default(),
            secret_prefix: "dirsync".into(),
            consent_redirect_uri: None,
            allow_custom_cloud: false,
            platform_admins: Vec::new(),
            graph_budget: Some(crate::source::budget::BudgetLimits::default()),
        }
    }
}

impl App {
    /// The one secret name of a connector: `{prefix}/{account}/{connector}`.
    /// Names are never taken from a request, so no connector can name
    /// another's secret.
    pub fn secret_name(
        &self,
        account: &crate::domain::AccountId,
        connector: &crate::domain::ConnectorId,
    ) -> Result<crate::domain::SecretRef, AppError> {
        format!("{}/{account}/{connector}", self.settings.secret_prefix)
            .parse()
            .map_err(|e| AppError::Config(format!("DIRSYNC_SECRET_PREFIX: {e}")))
    }
}

/// Structured logs: JSON lines in Lambda (CloudWatch parses them), plain
/// text on a terminal. `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok() {
        builder.json().flatten_event(true).without_time().try_init()
    } else {
        builder.try_init()
    };
    // A second initialisation (tests) keeps the first.
    let _ = result;
}

/// Cheap to clone: every part is shared.
#[derive(Clone)]
pub struct App {
    pub store: StateStore,
    pub engine: SyncEngine,
    pub queue: Arc<dyn JobQueue>,
    pub secrets: Arc<dyn SecretStore>,
    pub sources: Arc<dyn SourceFactory>,
    /// Graph access as the platform app (consent confirmation, rotation).
    pub graph: Arc<crate::source::graph::GraphDeps>,
    pub settings: AppSettings,
}
