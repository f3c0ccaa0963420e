//! cert-rotation: Secrets Manager's rotation function for the app
//! certificate. Each invocation runs one of the four steps.

use dirsync_shared::app::Failure;
use dirsync_shared::app::rotation::{RotationEvent, Rotator};

pub async fn handle(rotator: &Rotator, event: RotationEvent) -> Result<(), Failure> {
    tracing::info!(step = %event.step, token = %event.token, "rotation step");
    rotator.step(&event).await.map_err(|e| {
        let failure = Failure::from(e);
        tracing::error!(step = %event.step, error_type = failure.kind.error_type(), error = %failure, "rotation step failed; the current certificate stays in use");
        failure
    })
}
