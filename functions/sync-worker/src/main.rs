use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dirsync_shared::app::init_tracing();
    let app = dirsync_shared::app::config::app_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let app = &app;
        async move {
            let deadline = sync_worker::stop_by(event.context.deadline);
            Ok::<_, lambda_runtime::Error>(
                sync_worker::handle(app, event.payload, Some(deadline)).await,
            )
        }
    }))
    .await
}
