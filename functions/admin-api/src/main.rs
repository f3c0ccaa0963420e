#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dirsync_shared::app::init_tracing();
    let app = dirsync_shared::app::config::app_from_env().await?;
    lambda_http::run(admin_api::router(app)).await
}
