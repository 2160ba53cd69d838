//! `[daemon]`: the state file, the metrics listener and the pace of the daemon's loops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::DaemonConfig;
use crate::config::checks::{duration, minutes, positive, written_in_range};
use crate::config::diag::Diagnostics;
use crate::config::raw::RawDaemon;

/// `[daemon]`, validated; the defaults when the section is absent.
pub(crate) fn daemon(diags: &mut Diagnostics, d: &RawDaemon) -> DaemonConfig {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 9464));
    let metrics_listen = match &d.metrics_listen {
        None => loopback,
        Some(v) => match v.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    diags.warning(
                        v.span(),
                        format!(
                            "metrics_listen {addr} is not on loopback; /metrics will be reachable from the network, so put it behind a firewall or use 127.0.0.1"
                        ),
                    );
                }
                addr
            }
            Err(e) => {
                diags.error(
                    v.span(),
                    format!(
                        "invalid metrics_listen `{}`: {e}; use IP:PORT like 127.0.0.1:9464",
                        v.get_ref()
                    ),
                );
                loopback
            }
        },
    };
    let max_rotations_per_minute = positive(
        diags,
        &d.max_rotations_per_minute,
        "max_rotations_per_minute",
        u32::MAX,
        30,
    );
    let reconcile_interval = duration(
        diags,
        &d.reconcile_interval,
        "reconcile_interval",
        minutes(15),
    );
    written_in_range(
        diags,
        &d.reconcile_interval,
        reconcile_interval,
        Duration::from_secs(1)..,
        |_| {
            "reconcile_interval must be at least 1s (each reconcile lists the fleet); 15m is the default".into()
        },
    );
    if let Some(p) = &d.state_path {
        // A relative path would depend on the working directory (`/` under systemd).
        if p.get_ref().is_empty() || !std::path::Path::new(p.get_ref()).is_absolute() {
            diags.error(
                p.span(),
                format!(
                    "state_path `{}` must be an absolute path, like /var/lib/rotationd/state.db",
                    p.get_ref()
                ),
            );
        }
    }
    DaemonConfig {
        state_path: d.state_path.as_ref().map_or_else(
            || PathBuf::from("/var/lib/rotationd/state.db"),
            |p| PathBuf::from(p.get_ref()),
        ),
        metrics_listen,
        reconcile_interval,
        max_rotations_per_minute,
    }
}
