use lambda_http::{Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dirsync_shared::app::init_tracing();
    let app = dirsync_shared::app::config::app_from_env().await?;
    lambda_http::run(service_fn(|req: Request| {
        let app = &app;
        async move { Ok::<_, lambda_http::Error>(consent_callback::handle(app, req).await) }
    }))
    .await
}
