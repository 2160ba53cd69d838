//! The hooks the tests of the real binary steer it with: a clock offset and failpoints.
//! A leaf module, compiled in only with the `test-hooks` cargo feature. The test builds
//! enable it (the crate is its own dev-dependency with that feature), `cargo build` and
//! `cargo build --release` do not: a shipped binary ignores the variables, so nobody who
//! can set its environment can move its clock or hang it (`tests/release_hooks.rs` runs
//! the release binary with both set).

/// Seconds (may be negative) added to the wall clock, to put "now" inside or outside a
/// window without waiting for one.
pub const CLOCK_OFFSET_ENV: &str = "ROTATIOND_TEST_CLOCK_OFFSET";

/// A named place where the binary misbehaves on purpose: `after-rotate` (the engine
/// pauses forever right after RotateSecret was answered and committed) and
/// `hang-executor` (the executor stops beating, for the systemd watchdog).
pub const FAILPOINT_ENV: &str = "ROTATIOND_TEST_FAILPOINT";

/// Whether this build honours the hooks at all.
pub const ENABLED: bool = cfg!(feature = "test-hooks");

/// The clock offset in seconds; always `None` without the feature.
pub fn clock_offset_seconds() -> Option<i64> {
    if !ENABLED {
        return None;
    }
    std::env::var(CLOCK_OFFSET_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
}

/// The failpoint asked for; always `None` without the feature.
pub fn failpoint() -> Option<String> {
    if !ENABLED {
        return None;
    }
    std::env::var(FAILPOINT_ENV).ok()
}

/// Whether `name` is the failpoint asked for.
pub fn failpoint_is(name: &str) -> bool {
    failpoint().is_some_and(|f| f == name)
}
