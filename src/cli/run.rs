//! `rotationd run`: the daemon until SIGTERM or SIGINT, with SIGHUP as reload; and the
//! shutdown signals `rotate` also honours.

use std::path::Path;
use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{CliError, load_config, runtime};

/// Runs [`crate::daemon::run`] on its own runtime until a shutdown signal; `init`: start a
/// new state database over a lost one (`--init`).
pub fn run(path: &Path, init: bool) -> Result<(), CliError> {
    if let Some(why) = crate::config::writable_by_others(path) {
        return Err(CliError::Failed(format!("refusing to run: {why}")));
    }
    let cfg = load_config(path)?;
    runtime()?.block_on(async move {
        // Installed before anything else runs: a SIGTERM that arrives while the daemon is
        // still starting is then a clean stop, not the default action's abrupt end.
        let signals = Signals::install();
        let cancel = CancellationToken::new();
        let reload = Arc::new(Notify::new());
        let (stop, reloads) = (cancel.clone(), reload.clone());
        tokio::spawn(async move {
            signals.watch(reloads).await;
            stop.cancel();
        });
        crate::daemon::run(path.to_path_buf(), cfg, init, cancel, reload)
            .await
            .map_err(|e| CliError::Failed(format!("{e:#}")))
    })
}

/// The process's signal handlers, registered when this is built (inside a runtime).
pub(super) struct Signals {
    stop: Option<(Signal, Signal)>,
    hup: Option<Signal>,
}

impl Signals {
    /// Registers SIGTERM, SIGINT and SIGHUP at once; what cannot be registered is logged.
    pub(super) fn install() -> Self {
        let stop = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => {
                tracing::error!("cannot install signal handlers; stop rotationd with SIGKILL");
                None
            }
        };
        let hup = signal(SignalKind::hangup())
            .inspect_err(|_| {
                tracing::error!("cannot install the SIGHUP handler; reload by restarting")
            })
            .ok();
        Self { stop, hup }
    }

    /// Returns on SIGTERM or SIGINT.
    pub(super) async fn shutdown(&mut self) {
        let Some((term, int)) = self.stop.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }

    /// Returns on SIGTERM or SIGINT; each SIGHUP wakes `reload`.
    async fn watch(mut self, reload: Arc<Notify>) {
        let Some(mut hup) = self.hup.take() else {
            return self.shutdown().await;
        };
        loop {
            tokio::select! {
                _ = self.shutdown() => return,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    reload.notify_one();
                }
            }
        }
    }
}
