//! rotationd under systemd's notify protocol, with the real binary: NOTIFY_SOCKET is a
//! datagram socket owned by the test, as systemd's would be.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use common::config::{Body, secret};
use common::moto;
use common::rotationd::{Daemon, Env, terminate};

/// Collects notify datagrams until `pred` holds for the list or `timeout` passes.
fn wait_for(
    sock: &UnixDatagram,
    seen: &mut Vec<String>,
    timeout: Duration,
    pred: impl Fn(&[String]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if pred(seen) {
            return true;
        }
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    pred(seen)
}

/// `rotationd run` with NOTIFY_SOCKET on a socket the test owns (returned, bound) and
/// `envs`; waits for its first READY=1 and returns what was seen until then.
fn start_notified(env: &Env, envs: &[(&str, &str)]) -> (Daemon, UnixDatagram, Vec<String>) {
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut command = env.command(&["run"]);
    command.env("NOTIFY_SOCKET", &sock_path);
    for (k, v) in envs {
        command.env(k, v);
    }
    let daemon = Daemon(
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen = Vec::new();
    assert!(
        wait_for(&sock, &mut seen, Duration::from_secs(30), |s| has(
            s, "READY=1"
        ) >= 1),
        "no READY=1: {seen:?}"
    );
    (daemon, sock, seen)
}

fn has(seen: &[String], needle: &str) -> usize {
    seen.iter()
        .filter(|m| m.lines().any(|l| l == needle))
        .count()
}

#[tokio::test]
async fn ready_watchdog_reload_and_stop_follow_the_notify_protocol() {
    moto::recording();
    let env = Env::new("systemd", &Body::new().render()).await;
    let base = std::fs::read_to_string(&env.config).unwrap();
    let added = moto::unique_name("sd/added");
    env.rotatable_secret(&added).await;

    let (mut daemon, sock, mut seen) = start_notified(
        &env,
        &[
            ("WATCHDOG_USEC", "2000000"),
            ("ROTATIOND_TEST_CLOCK_OFFSET", "3600"),
        ],
    );
    // WATCHDOG=1 at about half of WATCHDOG_USEC (2 s): at least 3 in 4 s.
    let before = has(&seen, "WATCHDOG=1");
    let started = Instant::now();
    assert!(wait_for(&sock, &mut seen, Duration::from_secs(6), |s| has(
        s,
        "WATCHDOG=1"
    )
        >= before + 3));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "watchdog pings too fast"
    );

    // A broken config: still running, old config in force, the failure counted.
    std::fs::write(&env.config, format!("{base}\n[daemon]\nbogus = 1\n")).unwrap();
    let pid = daemon.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(wait_for(
        &sock,
        &mut seen,
        Duration::from_secs(10),
        |s| has(s, "RELOADING=1") >= 1
    ));
    assert!(
        seen.iter().any(|m| m.contains("MONOTONIC_USEC=")),
        "{seen:?}"
    );
    assert!(wait_for(
        &sock,
        &mut seen,
        Duration::from_secs(10),
        |s| has(s, "READY=1") >= 2
    ));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a bad reload must not stop rotationd"
    );
    assert!(
        env.metrics()
            .contains("rotationd_config_reloads_total{outcome=\"failure\"} 1")
    );

    // A good config with a new secret whose window is open: applied, the secret rotates.
    let shifted = Utc::now() + chrono::Duration::hours(1) - chrono::Duration::minutes(2);
    std::fs::write(
        &env.config,
        format!(
            "{base}{}",
            secret(&added)
                .schedule(&format!("{} {} * * *", shifted.minute(), shifted.hour()))
                .window("1h")
                .render()
        ),
    )
    .unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(wait_for(
        &sock,
        &mut seen,
        Duration::from_secs(20),
        |s| has(s, "RELOADING=1") >= 2 && has(s, "READY=1") >= 3
    ));
    let rotated = env
        .eventually(Duration::from_secs(60), || {
            (env.rotations_by_rotationd(&added) == 1).then_some(())
        })
        .await;
    assert!(rotated.is_some(), "the reloaded schedule was not applied");
    assert!(
        env.metrics()
            .contains("rotationd_config_reloads_total{outcome=\"success\"} 1")
    );

    let status = terminate(&mut daemon, Duration::from_secs(30));
    assert!(
        wait_for(&sock, &mut seen, Duration::from_secs(5), |s| has(
            s,
            "STOPPING=1"
        ) >= 1),
        "{seen:?}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}

#[tokio::test]
async fn a_hung_loop_stops_feeding_the_watchdog() {
    let env = Env::new("watchdog", &Body::new().render()).await;
    let (mut daemon, sock, mut seen) = start_notified(
        &env,
        &[
            ("WATCHDOG_USEC", "2000000"),
            ("ROTATIOND_TEST_FAILPOINT", "hang-executor"),
        ],
    );
    // The executor hangs after 3 ticks; a few seconds later the pings stop for good.
    wait_for(&sock, &mut seen, Duration::from_secs(6), |_| false);
    let mut quiet = Vec::new();
    wait_for(&sock, &mut quiet, Duration::from_secs(4), |_| false);
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the process itself is still alive"
    );
    assert_eq!(
        has(&quiet, "WATCHDOG=1"),
        0,
        "a hung daemon fed the watchdog: {quiet:?}"
    );
    assert!(
        has(&seen, "WATCHDOG=1") >= 1,
        "it was fed while the loops were alive: {seen:?}"
    );
}

/// SIGTERM while every event consumer is inside a 20 s SQS long poll: the poll is
/// abandoned (what it took comes back after the visibility timeout), the daemon says
/// STOPPING=1 and exits 0 at once, not when the poll ends. `TimeoutStopSec` in
/// `systemd/rotationd.service` counts on it.
#[tokio::test]
async fn sigterm_cancels_the_sqs_long_poll_and_exits_promptly() {
    use common::events::{ALLOW_ACCOUNT, add_events, queue_and_bus};
    let env = Env::new("sigterm", &Body::new().render()).await;
    let (queue_url, bus) = queue_and_bus(&env, "sigterm").await;
    add_events(&env, &queue_url, &bus, ALLOW_ACCOUNT);
    let (mut daemon, sock, mut seen) = start_notified(&env, &[]);
    assert!(env.wait_ready(Duration::from_secs(30)).await);
    // The consumers start polling within a second of the first reconcile (they wait for
    // its inventory); three seconds in, both are inside a 20 s long poll on the empty
    // queue, none of which has come back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !env.metrics().contains("operation=\"ReceiveMessage\""),
        "a long poll already ended: the test would not measure a poll in flight"
    );
    let started = Instant::now();
    let status = terminate(&mut daemon, Duration::from_secs(30));
    let took = started.elapsed();
    println!("SIGTERM with an SQS long poll in flight: exited after {took:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status");
    assert!(
        took <= Duration::from_secs(5),
        "SIGTERM took {took:?} with a long poll in flight; it must not wait for the poll"
    );
    assert!(
        wait_for(&sock, &mut seen, Duration::from_secs(2), |s| has(
            s,
            "STOPPING=1"
        ) >= 1),
        "{seen:?}"
    );
}
