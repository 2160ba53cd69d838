//! `rotationd run`: the daemon until SIGTERM or SIGINT, with SIGHUP as reload; and the
//! shutdown signals `rotate` also honours.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{CliError, load_config, runtime};

/// Runs [`crate::daemon::run`] on its own runtime until a shutdown signal.
pub fn run(path: &Path) -> Result<(), CliError> {
    let cfg = load_config(path)?;
    runtime()?.block_on(async move {
        let cancel = CancellationToken::new();
        let reload = Arc::new(Notify::new());
        let (signals, reloads) = (cancel.clone(), reload.clone());
        tokio::spawn(async move {
            watch_signals(reloads).await;
            signals.cancel();
        });
        crate::daemon::run(path.to_path_buf(), cfg, cancel, reload)
            .await
            .map_err(|e| CliError::Failed(format!("{e:#}")))
    })
}

/// Returns on SIGTERM or SIGINT.
pub(super) async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop rotationd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Returns on SIGTERM or SIGINT; each SIGHUP wakes `reload`.
async fn watch_signals(reload: Arc<Notify>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload by restarting");
        return wait_for_shutdown_signal().await;
    };
    let stop = wait_for_shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the configuration");
                reload.notify_one();
            }
        }
    }
}
