//! What outlives a configuration reload and a change of role: readiness, the loops'
//! heartbeats, the systemd notify protocol and watchdog, and the HTTP server for
//! `/metrics`, `/healthz` and `/readyz`.
//!
//! The watchdog is fed only while every loop that beats (the executor and the alert
//! publisher while leading, the lease loop while standing by) has beaten within half of
//! `WATCHDOG_USEC`, so a hung loop lets systemd restart the service. The loops wait on
//! notifications rather than ticking; [`Health::beat_every`] tells them how often to wake
//! only to beat, and is `None` (no such wake) without a watchdog.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Readiness, role and heartbeats, shared by every generation of loops.
pub struct Health {
    pub metrics: Arc<Metrics>,
    ready: AtomicBool,
    /// Standby (`[state] backend = "dynamodb"` and the lease is not ours), with what
    /// `/readyz` says about it (who leads).
    standby: std::sync::Mutex<Option<String>>,
    /// The state file was deleted or replaced under the daemon (the state guard): not
    /// ready again until a restart.
    state_lost: std::sync::Mutex<Option<String>>,
    /// The state store's writes fail at the disk, for longer than the grace period.
    writes_failing: std::sync::Mutex<Option<String>>,
    beats: std::sync::Mutex<HashMap<&'static str, tokio::time::Instant>>,
    /// systemd's watchdog interval (`WATCHDOG_USEC`), if it watches this process.
    watchdog: Option<Duration>,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>, watchdog: Option<Duration>) -> Health {
        Health {
            metrics,
            ready: AtomicBool::new(false),
            standby: std::sync::Mutex::new(None),
            state_lost: std::sync::Mutex::new(None),
            writes_failing: std::sync::Mutex::new(None),
            beats: std::sync::Mutex::new(HashMap::new()),
            watchdog,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        self.export_ready();
    }

    /// `rotationd_ready` says what `/readyz` says.
    fn export_ready(&self) {
        let ready = self.ready.load(Ordering::Relaxed) && self.unready_because().is_none();
        self.metrics.ready.set(i64::from(ready));
    }

    /// The state file is gone: `/readyz` says so until the process ends.
    pub fn set_state_lost(&self, why: String) {
        if let Ok(mut s) = self.state_lost.lock() {
            *s = Some(why);
        }
        self.set_ready(false);
    }

    pub fn state_lost(&self) -> Option<String> {
        self.state_lost.lock().ok().and_then(|s| s.clone())
    }

    /// Writes to the state store have failed for longer than the grace period (`Some`,
    /// with why), or land again (`None`).
    pub fn set_writes_failing(&self, why: Option<String>) {
        if let Ok(mut s) = self.writes_failing.lock() {
            *s = why;
        }
        self.export_ready();
    }

    /// Why `/readyz` answers 503 whatever the role: the state file lost, or writes failing.
    fn unready_because(&self) -> Option<String> {
        if let Some(lost) = self.state_lost() {
            return Some(format!(
                "not ready: the state file was {lost}; rotationd stopped acting, restart it (see the state_lost alert)\n"
            ));
        }
        self.writes_failing
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .map(|why| format!("not ready: writes to the state database fail: {why}\n"))
    }

    /// Leader (`None`, also the SQLite backend's only role) or standby behind `holder`.
    pub fn set_standby(&self, holder: Option<String>) {
        self.metrics.leader.set(i64::from(holder.is_none()));
        if let Ok(mut s) = self.standby.lock() {
            *s = holder;
        }
    }

    /// Forgets the loops of the previous role: a standby runs none of the leader's loops,
    /// and their old beats must not starve the watchdog.
    pub fn reset_beats(&self) {
        if let Ok(mut b) = self.beats.lock() {
            b.clear();
        }
    }

    /// A main loop is alive.
    pub fn beat(&self, name: &'static str) {
        if let Ok(mut b) = self.beats.lock() {
            b.insert(name, tokio::time::Instant::now());
        }
    }

    /// How often a loop that otherwise sleeps until it is notified must wake just to
    /// beat: a quarter of the watchdog interval, twice as often as [`watchdog`] checks.
    /// `None` without a watchdog: nobody reads the beats then.
    pub fn beat_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 4)
    }

    /// Every loop that ever beat did so within `within`.
    fn alive(&self, within: Duration) -> bool {
        self.beats
            .lock()
            .map(|b| b.values().all(|t| t.elapsed() <= within))
            .unwrap_or(false)
    }
}

/// Tells systemd (a no-op without `NOTIFY_SOCKET`).
pub fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// RELOADING=1 with the monotonic time systemd wants beside it.
pub fn notify_reloading() {
    let mut states = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// Sends WATCHDOG=1 at half the watchdog interval, but only while the loops keep beating:
/// a hung loop lets systemd's watchdog fire.
pub async fn watchdog(health: Arc<Health>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval / 2) => {}
        }
        if health.alive(interval / 2) {
            notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("a main loop stopped beating; not feeding the systemd watchdog");
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `cancel`. Bound once per process:
/// the listener and the registry outlive reloads.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    cancel: CancellationToken,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let s1 = health.clone();
    let s2 = health;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    s1.metrics.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                let standby = s2.standby.lock().ok().and_then(|s| s.clone());
                if let Some(why) = s2.unready_because() {
                    (StatusCode::SERVICE_UNAVAILABLE, why)
                } else if let Some(holder) = standby {
                    // Ready for its role: following the log, ready to take over.
                    (StatusCode::OK, format!("standby: {holder}\n"))
                } else if s2.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready: leader\n".to_string())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: waiting for a successful reconcile with AWS\n".to_string(),
                    )
                }
            }),
        );
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_beating_is_not_alive() {
        let h = Health::new(Arc::new(Metrics::new()), Some(Duration::from_secs(2)));
        assert_eq!(h.beat_every(), Some(Duration::from_millis(500)));
        assert!(h.alive(Duration::from_secs(1)), "no loop yet: nothing hung");
        h.beat("executor");
        h.beat("publisher");
        tokio::time::advance(Duration::from_millis(600)).await;
        h.beat("publisher");
        assert!(h.alive(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_millis(600)).await;
        h.beat("publisher");
        assert!(!h.alive(Duration::from_secs(1)), "the executor stopped");
        h.reset_beats();
        assert!(h.alive(Duration::from_secs(1)), "a new role starts afresh");
    }

    #[test]
    fn without_a_watchdog_nothing_wakes_to_beat() {
        let h = Health::new(Arc::new(Metrics::new()), None);
        assert_eq!(h.beat_every(), None);
    }
}
