use aws_lambda_events::event::sqs::SqsEvent;
use dirsync_shared::app::{Failure, config, lambda};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dirsync_shared::app::init_tracing();
    let app = lambda::started(config::app_from_env().await).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let app = &app;
        async move {
            let deadline = sync_worker::stop_by(event.context.deadline);
            Ok::<_, Failure>(sync_worker::handle(app, event.payload, Some(deadline)).await)
        }
    }))
    .await
}
