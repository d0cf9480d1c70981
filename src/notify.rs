//! systemd readiness and watchdog (`Type=notify`); silently nothing without NOTIFY_SOCKET
//! (e.g. under supervisord).

use std::time::Duration;

use sd_notify::NotifyState;

pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    if let Some(interval) = sd_notify::watchdog_enabled()
        && !interval.is_zero()
    {
        // Ping at half the interval systemd allows.
        let every: Duration = interval / 2;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        });
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}
