//! sync-window: fired by EventBridge Scheduler at 08:00, 13:00 and 23:00 in
//! each region's timezone; enqueues one job per due connector of the region.

use dirsync_shared::app::window::{FanOut, WindowEvent, fan_out};
use dirsync_shared::app::{App, Failure};
use serde_json::Value;

/// Fans the window out; a payload that is not the schedule's Input is a
/// configuration failure (the schedule must be fixed, retries cannot help).
pub async fn handle(app: &App, payload: Value) -> Result<FanOut, Failure> {
    if payload.get("detail").is_some_and(Value::is_string) {
        return Err(Failure::configuration(
            "the schedule sent its default payload: give the schedule an Input with region and \
             scheduled_time (see template.yaml)",
        ));
    }
    let event: WindowEvent = serde_json::from_value(payload).map_err(|e| {
        Failure::configuration(format!(
            "the window event must be {{\"region\", \"scheduled_time\"}}: {e}"
        ))
    })?;
    let report = fan_out(
        &app.store,
        app.queue.as_ref(),
        &event,
        &app.settings.window_spans,
    )
    .await?;
    tracing::info!(region = %event.region, window = %event.scheduled_time, ?report, "window fanned out");
    Ok(report)
}
