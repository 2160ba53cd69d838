//! The real binary, as a user runs it: `validate` and `plan` on the shipped example config.

use std::path::Path;
use std::process::{Command, Output};

fn rotationd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rotationd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("ROTATIOND_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const EXAMPLE: &str = "config/rotationd.example.toml";

#[test]
fn validate_accepts_the_example_config() {
    let o = rotationd(&["--config", EXAMPLE, "validate"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "config OK: 2 secrets, 2 selectors\n");
    assert_eq!(stderr(&o), "", "the example config must not warn");
}

#[test]
fn config_path_comes_from_the_environment() {
    let o = Command::new(env!("CARGO_BIN_EXE_rotationd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ROTATIOND_CONFIG", EXAMPLE)
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn unreadable_config_exits_1_with_the_path() {
    let o = rotationd(&["--config", "/nonexistent/rotationd.toml", "validate"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read config file /nonexistent/rotationd.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plan_json_lists_the_windows_in_time_order() {
    let o = rotationd(&[
        "--config",
        EXAMPLE,
        "plan",
        "--from",
        "2026-12-31T00:00:00Z",
        "--days",
        "20",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows: Vec<(String, String, String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_string();
            (
                s("secret"),
                s("window_start"),
                s("window_end"),
                s("reason"),
                s("ticket"),
            )
        })
        .collect();
    let row = |a: &str, b: &str, c: &str, t: &str| {
        (
            a.to_string(),
            b.to_string(),
            c.to_string(),
            "scheduled".to_string(),
            t.to_string(),
        )
    };
    // @quarterly (default) 4h window, "0 2 1 1,4,7,10 *" 4h, "0 3 1 1,4,7,10 *" 3h,
    // "0 4 15 * *" 2h: worked out by hand from the example config.
    assert_eq!(
        rows,
        vec![
            row(
                "selector:tag:rotation=quarterly",
                "2027-01-01T00:00:00Z",
                "2027-01-01T04:00:00Z",
                "CHG-10430"
            ),
            row(
                "selector:prefix:prod/internal/",
                "2027-01-01T02:00:00Z",
                "2027-01-01T06:00:00Z",
                "CHG-10431"
            ),
            row(
                "prod/payments/db",
                "2027-01-01T03:00:00Z",
                "2027-01-01T06:00:00Z",
                "CHG-10421"
            ),
            row(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/vendor/stripe-AbC123",
                "2027-01-15T04:00:00Z",
                "2027-01-15T06:00:00Z",
                "CHG-10422"
            ),
        ]
    );
}

#[test]
fn plan_table_has_a_header_and_one_line_per_window() {
    let o = rotationd(&[
        "--config",
        EXAMPLE,
        "plan",
        "--from",
        "2027-01-02T00:00:00Z",
        "--days",
        "92",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("START"), "{out}");
    // Jan 15, Feb 15, Mar 15 (vendor) and Apr 1 (three quarterly windows).
    assert_eq!(lines.len(), 1 + 3 + 3, "{out}");
    assert!(lines[1].contains("2027-01-15T04:00:00Z") && lines[1].contains("stripe"));
}

#[test]
fn plan_rejects_a_bad_from_with_exit_2() {
    let o = rotationd(&["--config", EXAMPLE, "plan", "--from", "tomorrow"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid --from `tomorrow`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plan_on_an_invalid_config_exits_2() {
    let fixture = Path::new("tests/fixtures/config/five_errors.toml");
    let o = rotationd(&["--config", fixture.to_str().unwrap(), "plan"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o)
            .lines()
            .filter(|l| l.contains(": error: "))
            .count(),
        5
    );
}
