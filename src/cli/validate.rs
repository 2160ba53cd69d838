//! `rotationd validate`: the configuration checked, every error located.

use std::path::Path;

use super::{CliError, load_config};

/// Prints `config OK: ...`, or fails with the file's diagnostics.
pub fn validate(path: &Path) -> Result<(), CliError> {
    let cfg = load_config(path)?;
    if let Some(why) = crate::config::writable_by_others(path) {
        eprintln!("warning: {why} (rotationd run refuses it)");
    }
    println!(
        "config OK: {} secrets, {} selectors",
        cfg.secrets.len(),
        cfg.selectors.len()
    );
    Ok(())
}
