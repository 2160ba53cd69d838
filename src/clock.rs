//! The time rotationd acts on: a leaf module, so that everything that needs "now" (the
//! engine, the watcher, the event consumers, the request loop, the daemon) can take a
//! [`Clock`] without depending on the engine that used to hold it.

use chrono::{DateTime, Utc};

/// How rotationd shows a time to people (CLI tables, alert texts): UTC to the second.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// The time rotationd acts on. Tests of the real binary shift it with
/// `ROTATIOND_TEST_CLOCK_OFFSET` (seconds, may be negative; see [`crate::test_hooks`]:
/// builds without the `test-hooks` feature ignore it) to put "now" inside or outside a
/// window without waiting for one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset: chrono::Duration,
}

impl Clock {
    pub fn from_env() -> Clock {
        let offset = crate::test_hooks::clock_offset_seconds()
            .map(chrono::Duration::seconds)
            .unwrap_or_default();
        Clock { offset }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_clock_is_the_wall_clock() {
        let before = Utc::now();
        let now = Clock::default().now();
        assert!(before <= now && now <= Utc::now());
    }

    #[test]
    fn an_offset_shifts_now_by_that_many_seconds() {
        let clock = Clock {
            offset: chrono::Duration::seconds(-3600),
        };
        let shifted = clock.now();
        let wall = Utc::now();
        assert!(
            (wall - shifted - chrono::Duration::hours(1))
                .num_seconds()
                .abs()
                <= 1
        );
    }
}
