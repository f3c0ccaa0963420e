use dirsync_shared::app::{Failure, config, lambda};
use lambda_http::{Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    dirsync_shared::app::init_tracing();
    let app = lambda::started(config::app_from_env().await).await?;
    lambda_http::run(service_fn(|req: Request| {
        let app = &app;
        async move { Ok::<_, Failure>(consent_callback::handle(app, req).await) }
    }))
    .await
}
