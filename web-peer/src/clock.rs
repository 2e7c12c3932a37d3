//! Time for the sans-IO state machines, which count from an arbitrary start, and sleeping.

use std::time::Duration;

/// Milliseconds since the page loaded, as a [`Duration`] (the clock `shared` expects).
pub fn now() -> Duration {
    Duration::from_secs_f64(js_sys::Date::now() / 1000.0)
}

/// Resolves after `duration` (rounded to whole milliseconds, at most about 24 days).
pub async fn sleep(duration: Duration) {
    let ms = duration.as_millis().min(u128::from(i32::MAX as u32)) as u32;
    gloo::timers::future::TimeoutFuture::new(ms).await;
}
