//! `rotationd validate`: the configuration checked, every error located.

use std::path::Path;

use super::{CliError, load_config};

/// Why a configuration without `[requests]` deserves a word.
pub const UNRESTRICTED: &str = "no [requests] section: the CLI is unrestricted, anyone who can run rotationd with AWS credentials allowed to rotate runs rotate and rollback without an approval; add [requests] levels (IAM user and role ARNs to L1/L2/L3) to apply the guide's approval policy to the CLI";

/// Prints `config OK: ...`, or fails with the file's diagnostics.
pub fn validate(path: &Path) -> Result<(), CliError> {
    let cfg = load_config(path)?;
    if let Some(why) = crate::config::writable_by_others(path) {
        eprintln!("warning: {why} (rotationd run refuses it)");
    }
    if cfg.requests.is_none() {
        eprintln!("warning: {UNRESTRICTED}");
    }
    println!(
        "config OK: {} secrets, {} selectors",
        cfg.secrets.len(),
        cfg.selectors.len()
    );
    Ok(())
}
