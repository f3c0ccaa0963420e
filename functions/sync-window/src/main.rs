use dirsync_shared::app::{config, lambda};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dirsync_shared::app::init_tracing();
    let app = lambda::started(config::app_from_env().await).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let app = &app;
        async move { sync_window::handle(app, event.payload).await }
    }))
    .await
}
