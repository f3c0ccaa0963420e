//! cert-rotation: Secrets Manager's rotation function for the app
//! certificate. Each invocation runs one of the four steps.

use dirsync_shared::app::rotation::{RotationEvent, Rotator};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub async fn handle(rotator: &Rotator, event: RotationEvent) -> Result<(), Error> {
    tracing::info!(step = %event.step, token = %event.token, "rotation step");
    rotator.step(&event).await.map_err(|e| {
        tracing::error!(step = %event.step, error = %e, "rotation step failed; the current certificate stays in use");
        e.into()
    })
}
