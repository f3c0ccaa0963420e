use dirsync_shared::app::rotation::RotationEvent;
use dirsync_shared::app::{config, lambda};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    dirsync_shared::app::init_tracing();
    let rotator = lambda::started(config::rotator_from_env().await).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<RotationEvent>| {
        let rotator = &rotator;
        async move { cert_rotation::handle(rotator, event.payload).await }
    }))
    .await
}
