//! The local runtime: the same `App` the Lambda functions build, over the
//! embedded store (or DynamoDB), local secret files and an in-process queue.

use std::path::PathBuf;
use std::sync::Arc;

use dirsync_shared::app::window::WindowSpans;
use dirsync_shared::app::worker::{JobOutcome, process};
use dirsync_shared::app::{App, Caller, api, config};
use dirsync_shared::clock::SystemClock;
use dirsync_shared::domain::SyncRun;
use dirsync_shared::engine::EngineSettings;
use dirsync_shared::queue::LocalQueue;
use dirsync_shared::secrets::LocalSecretStore;
use dirsync_shared::store::{DynamoTable, EmbeddedTable, StateStore, Table};
use serde_json::Value;

pub struct Local {
    pub app: App,
    pub queue: Arc<LocalQueue>,
}

/// Builds the local runtime: `store` is a SQLite file path, or
/// `dynamodb://TABLE` (standard AWS configuration, `AWS_ENDPOINT_URL_*`).
pub async fn open(store: &str, secrets_dir: PathBuf) -> Result<Local, String> {
    let table: Arc<dyn Table> = match store.strip_prefix("dynamodb://") {
        Some(name) if !name.is_empty() => Arc::new(DynamoTable::from_env(name).await),
        Some(_) => {
            return Err(
                "--store dynamodb:// needs a table name, like dynamodb://dirsync-state-prod".into(),
            );
        }
        None => {
            Arc::new(EmbeddedTable::open(std::path::Path::new(store)).map_err(|e| e.to_string())?)
        }
    };
    let state = StateStore::new(table, Arc::new(SystemClock));
    let secrets = Arc::new(LocalSecretStore::with_dir(secrets_dir));
    let mut settings = config::settings_from_env().map_err(|e| e.to_string())?;
    settings.window_spans = WindowSpans::NONE;
    // On this machine's own store the operator is the deployment: custom
    // hosts are allowed (simulators, private clouds). A DynamoDB table may
    // be a real deployment's, whose own setting (DIRSYNC_ALLOW_CUSTOM_CLOUD)
    // stands.
    if !store.starts_with("dynamodb://") {
        settings.allow_custom_cloud = true;
    }
    let queue = Arc::new(LocalQueue::default());
    let app = App::builder(state, queue.clone(), secrets)
        .entra_app(config::entra_app_from_env().map_err(|e| e.to_string())?)
        .engine(EngineSettings {
            progress: Some(crate::progress::hook()),
            ..EngineSettings::default()
        })
        .settings(settings)
        .build();
    Ok(Local { app, queue })
}

impl Local {
    /// One admin-API call; errors carry the API's message.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (u16, String)> {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .body(bytes)
            .map_err(|e| (400, e.to_string()))?;
        let resp = api::handle(&self.app, req, Caller::operator(whoami())).await;
        let status = resp.status().as_u16();
        let value: Value = serde_json::from_str(resp.body()).unwrap_or_default();
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err((
                status,
                value["error"].as_str().unwrap_or("error").to_owned(),
            ))
        }
    }

    /// Runs every queued job (and its continuations) here and now.
    pub async fn run_queued(&self) -> Result<Vec<SyncRun>, String> {
        let mut runs = Vec::new();
        loop {
            let jobs = self.queue.take_all();
            if jobs.is_empty() {
                return Ok(runs);
            }
            for (job, _) in jobs {
                match process(&self.app, &job, None)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    JobOutcome::Finished(run) => runs.push(run),
                    JobOutcome::AlreadyRunning => {
                        return Err("another sync of this connector is running".into());
                    }
                    JobOutcome::Skipped(why) => return Err(why),
                    JobOutcome::Continued(_) => {}
                    // Local windows have no span: only a window named for
                    // a later time gets here.
                    JobOutcome::Deferred { due } => {
                        return Err(format!("the job is not due before {due}"));
                    }
                }
            }
        }
    }
}

fn whoami() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into())
    )
}
