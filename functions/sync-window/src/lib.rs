//! sync-window: fired by EventBridge Scheduler at 08:00, 13:00 and 23:00 in
//! each region's timezone; enqueues one job per due connector of the region.

use dirsync_shared::app::App;
use dirsync_shared::app::window::{FanOut, WindowEvent, fan_out};
use serde_json::Value;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub async fn handle(app: &App, payload: Value) -> Result<FanOut, Error> {
    if payload.get("detail").is_some_and(Value::is_string) {
        return Err(
            "the schedule sent its default payload: give the schedule an Input with region and \
                    scheduled_time (see template.yaml)"
                .into(),
        );
    }
    let event: WindowEvent = serde_json::from_value(payload)
        .map_err(|e| format!("the window event must be {{\"region\", \"scheduled_time\"}}: {e}"))?;
    let report = fan_out(
        &app.store,
        app.queue.as_ref(),
        &event,
        app.settings.window_spread,
    )
    .await?;
    tracing::info!(region = %event.region, window = %event.scheduled_time, ?report, "window fanned out");
    Ok(report)
}
