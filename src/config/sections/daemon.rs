//! `[daemon]`: the state file, the metrics listener and the pace of the daemon's loops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::checks::{duration, minutes, positive, written_in_range};
use crate::config::diag::Diagnostics;
use crate::config::raw::RawDaemon;
use crate::config::{DaemonConfig, Mode};

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
    let mode = match &d.mode {
        None => Mode::default(),
        Some(v) => match v.get_ref().as_str() {
            "enforce" => Mode::Enforce,
            "observe" => Mode::Observe,
            other => {
                diags.error(
                    v.span(),
                    format!("unknown mode `{other}`, expected \"enforce\" or \"observe\""),
                );
                Mode::default()
            }
        },
    };
    DaemonConfig {
        state_path: d.state_path.as_ref().map_or_else(
            || PathBuf::from("/var/lib/rotationd/state.db"),
            |p| PathBuf::from(p.get_ref()),
        ),
        metrics_listen,
        reconcile_interval,
        max_rotations_per_minute,
        mode,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::Config;
    use crate::config::testing::{MINIMAL, errors, warnings_of};

    /// MINIMAL (8 lines) then a `[daemon]` header on line 10 with `keys` from line 11.
    fn daemon_section(keys: &str) -> String {
        format!("{MINIMAL}\n[daemon]\n{keys}\n")
    }

    #[test]
    fn daemon_values_out_of_range_are_errors() {
        assert_eq!(
            errors(&daemon_section(
                "max_rotations_per_minute = 0\nreconcile_interval = \"500ms\"\nstate_path = \"state.db\""
            )),
            vec![
                "t.toml:11:28: error: max_rotations_per_minute must be between 1 and 4294967295, found 0",
                "t.toml:12:22: error: reconcile_interval must be at least 1s (each reconcile lists the fleet); 15m is the default",
                "t.toml:13:14: error: state_path `state.db` must be an absolute path, like /var/lib/rotationd/state.db",
            ]
        );
        assert_eq!(
            errors(&daemon_section("max_rotations_per_minute = 4294967296")),
            vec![
                "t.toml:11:28: error: max_rotations_per_minute must be between 1 and 4294967295, found 4294967296"
            ]
        );
    }

    #[test]
    fn the_limits_themselves_are_accepted() {
        let src = daemon_section(
            "max_rotations_per_minute = 4294967295\nreconcile_interval = \"1s\"\nstate_path = \"/srv/rotationd.db\"\nmetrics_listen = \"127.0.0.1:9000\"",
        );
        let (cfg, _) = Config::from_source(Path::new("t.toml"), &src).unwrap();
        assert_eq!(cfg.daemon.max_rotations_per_minute.get(), u32::MAX);
        assert_eq!(cfg.daemon.reconcile_interval, Duration::from_secs(1));
        assert_eq!(cfg.daemon.metrics_listen.to_string(), "127.0.0.1:9000");
        assert!(warnings_of(&src).is_empty());
    }

    #[test]
    fn mode_is_enforce_unless_observe_is_written() {
        let (cfg, _) = Config::from_source(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(cfg.daemon.mode, crate::config::Mode::Enforce);
        let (cfg, _) =
            Config::from_source(Path::new("t.toml"), &daemon_section("mode = \"observe\""))
                .unwrap();
        assert_eq!(cfg.daemon.mode, crate::config::Mode::Observe);
        assert_eq!(
            errors(&daemon_section("mode = \"dry-run\"")),
            vec!["t.toml:11:8: error: unknown mode `dry-run`, expected \"enforce\" or \"observe\""]
        );
    }

    #[test]
    fn metrics_off_loopback_warn() {
        assert_eq!(
            warnings_of(&daemon_section("metrics_listen = \"0.0.0.0:9464\"")),
            vec![
                "t.toml:11:18: warning: metrics_listen 0.0.0.0:9464 is not on loopback; /metrics will be reachable from the network, so put it behind a firewall or use 127.0.0.1"
            ]
        );
        assert_eq!(
            errors(&daemon_section("metrics_listen = \"localhost\"")),
            vec![
                "t.toml:11:18: error: invalid metrics_listen `localhost`: invalid socket address syntax; use IP:PORT like 127.0.0.1:9464"
            ]
        );
    }
}
