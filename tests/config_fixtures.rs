//! Config error fixtures: every `tests/fixtures/config/NAME.toml` is validated by the real
//! binary, and its exit code and stderr must equal `NAME.expected` exactly: the first line
//! is `exit N`, the rest is stderr. The messages and their FILE:LINE:COL positions are part
//! of the contract, so an unintended change in either fails here.

use std::path::Path;
use std::process::Command;

#[test]
fn fixtures_match_expected_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/fixtures/config");
    let mut checked = 0;
    let mut broken = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    for toml in entries {
        let expected_path = toml.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{} has no .expected file: {e}", toml.display()));
        let (first, rest) = expected.split_once('\n').unwrap_or((&expected, ""));
        let want_code: i32 = first
            .strip_prefix("exit ")
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: first line must be `exit N`", expected_path.display()));
        let rel = toml.strip_prefix(root).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rotationd"))
            .current_dir(root)
            .arg("--config")
            .arg(rel)
            .arg("validate")
            .env_remove("ROTATIOND_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code().unwrap();
        if code != want_code || stderr != rest {
            failures.push(format!(
                "{}: exit {code} (want {want_code})\n--- got stderr ---\n{stderr}--- want ---\n{rest}",
                rel.display()
            ));
        }
        checked += 1;
        if want_code != 0 {
            broken += 1;
        }
    }
    assert!(
        broken >= 20,
        "expected at least twenty rejected fixtures, found {broken} of {checked}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
