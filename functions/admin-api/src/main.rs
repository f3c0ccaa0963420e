use dirsync_shared::app::{config, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dirsync_shared::app::init_tracing();
    let app = lambda::started(config::app_from_env().await).await?;
    lambda_http::run(admin_api::router(app)).await
}
