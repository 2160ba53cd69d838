//! The config parser on hostile input: arbitrary text, and the example config with bytes
//! cut, flipped or spliced. It must answer with a located error or a config, never panic.

use std::path::Path;

use proptest::prelude::*;
use rotationd::config::{Config, ConfigError};

const EXAMPLE: &str = include_str!("../config/rotationd.example.toml");

fn check(src: &str) {
    match Config::from_source(Path::new("fuzz.toml"), src) {
        Ok(_) => {}
        Err(ConfigError::Invalid(d)) => {
            let lines = d.lines();
            assert!(!lines.is_empty(), "an invalid config must say why");
            for (_, line) in lines {
                assert!(line.starts_with("fuzz.toml:"), "unlocated error: {line}");
            }
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,400}") {
        check(&src);
    }

    #[test]
    fn a_truncated_example_never_panics(cut in 0..EXAMPLE.len()) {
        let cut = (0..=cut).rev().find(|i| EXAMPLE.is_char_boundary(*i)).unwrap_or(0);
        check(&EXAMPLE[..cut]);
    }

    #[test]
    fn a_mutated_example_never_panics(
        pos in 0..EXAMPLE.len(),
        insert in prop_oneof![
            Just("\"".to_string()),
            Just("[[secret]]\n".to_string()),
            Just(" = 0\n".to_string()),
            Just("\u{0}".to_string()),
            Just("99999999999999999999".to_string()),
            Just("@quarterly".to_string()),
            "[ -~]{0,20}",
        ],
    ) {
        let pos = (0..=pos).rev().find(|i| EXAMPLE.is_char_boundary(*i)).unwrap_or(0);
        let mut src = EXAMPLE.to_string();
        src.insert_str(pos, &insert);
        check(&src);
    }
}
