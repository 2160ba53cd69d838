//! The test hooks exist only in test builds: the release binary, built as it ships
//! (`cargo build --release`, no dev-dependencies, so no `test-hooks` feature), ignores
//! `ROTATIOND_TEST_CLOCK_OFFSET` and `ROTATIOND_TEST_FAILPOINT`; the binary the tests
//! build honours them (the control, so that this test can tell the two apart).
//!
//! scripts/test.sh builds the release binary before the tests run, so that the build
//! below is a no-op there and does not compete with the other tests for the CPU.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::config::{Body, dependent, selector};
use common::moto::{self, recording};
use common::rotationd::Env;

/// Ten years back: an attempt started under this offset is unmistakable.
const OFFSET: &str = "-315360000";

fn release_binary() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(&manifest)
        .args(["build", "--release", "--locked", "--bin", "rotationd"]);
    // What cargo set for this test process (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...) would
    // reach the build as if the user had set it: some crates' builds read such variables
    // (ring reads CARGO_MANIFEST_DIR), so cargo would rebuild the whole release tree that
    // scripts/test.sh built a minute ago. Only the user's own cargo settings go on.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let users = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL"].contains(&key.as_ref())
            || [
                "CARGO_BUILD_",
                "CARGO_NET_",
                "CARGO_REGISTRIES_",
                "CARGO_PROFILE_",
                "CARGO_TERM_",
            ]
            .iter()
            .any(|p| key.starts_with(p));
        if (key.starts_with("CARGO_") && !users) || key == "LD_LIBRARY_PATH" {
            cargo.env_remove(key.as_ref());
        }
    }
    let out = cargo.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build --release failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The target directory cargo used: CARGO_TARGET_DIR when set, else target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { manifest.join(t) })
        .unwrap_or_else(|| manifest.join("target"));
    let bin = target.join("release").join("rotationd");
    assert!(bin.is_file(), "no release binary at {}", bin.display());
    bin
}

fn started_at(env: &Env, secret: &str) -> Option<i64> {
    env.db()
        .query_row(
            "SELECT started_at FROM attempts WHERE secret = ?1",
            [secret],
            |r| r.get(0),
        )
        .ok()
}

#[tokio::test]
async fn the_release_binary_ignores_the_clock_offset_and_the_failpoints() {
    recording();
    let body = Body::new()
        .with(selector("hooks/").dependents(["billing-api"]))
        .with(dependent("billing-api"))
        .render();
    let env = Env::new("hooks", &body).await;
    let release = release_binary();

    // The release binary: the failpoint would pause it forever after RotateSecret and
    // the offset would date the attempt ten years back; it does neither.
    let shipped = moto::unique_name("hooks/release");
    env.rotatable_secret(&shipped).await;
    let log = env.dir.path().join("release.log");
    let before = chrono::Utc::now().timestamp();
    let mut rotate = env
        .command_of(
            &release,
            &[
                "rotate",
                "--secret",
                &shipped,
                "--ticket",
                "INC-71",
                "--reason",
                "hooks",
                "--emergency",
            ],
        )
        .env("ROTATIOND_TEST_FAILPOINT", "after-rotate")
        .env("ROTATIOND_TEST_CLOCK_OFFSET", OFFSET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let finished = env
        .eventually(Duration::from_secs(60), || rotate.try_wait().unwrap())
        .await;
    let Some(status) = finished else {
        rotate.kill().unwrap();
        panic!("the release binary stopped at the after-rotate failpoint");
    };
    assert!(
        status.success(),
        "the release rotation failed:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let at = started_at(&env, &shipped).expect("the release binary recorded its attempt");
    assert!(
        at >= before - 5,
        "the release binary moved its clock: attempt started at {at}, wall clock {before}"
    );

    // The control: the test build honours both.
    let tested = moto::unique_name("hooks/test-build");
    env.rotatable_secret(&tested).await;
    let mut rotate = env
        .rotate_emergency_command(&tested, "INC-72", "hooks")
        .env("ROTATIOND_TEST_FAILPOINT", "after-rotate")
        .env("ROTATIOND_TEST_CLOCK_OFFSET", OFFSET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let monitoring = env
        .eventually(Duration::from_secs(30), || {
            env.db()
                .query_row(
                    "SELECT started_at FROM attempts WHERE secret = ?1 AND state = 'monitoring'",
                    [&tested],
                    |r| r.get::<_, i64>(0),
                )
                .ok()
        })
        .await;
    let still_running = rotate.try_wait().unwrap().is_none();
    rotate.kill().unwrap();
    rotate.wait().unwrap();
    let at = monitoring.expect("the test build never reached monitoring");
    assert!(
        still_running,
        "the test build did not pause at the failpoint"
    );
    assert!(
        at < before - 300_000_000,
        "the test build ignored the clock offset: attempt started at {at}"
    );
}
