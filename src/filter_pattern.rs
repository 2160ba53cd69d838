//! CloudWatch Logs filter patterns for unstructured log lines: the subset
//! `[[dependent]] auth_error_pattern` takes, parsed when the config is, and matched by
//! rotationd itself on what `FilterLogEvents` returns.
//!
//! Why match again what CloudWatch Logs already filtered: the count decides whether a
//! rotation broke a service, so it must not depend on a server's reading of the pattern.
//! moto 5.2.5, the test server, gets `?` alternatives wrong (a line matching none of them
//! matches; docs/moto-findings.md), and a pattern CloudWatch reads more loosely than its
//! documentation would inflate the count the same way. The pattern is still sent, so that
//! only candidate lines cross the network; rotationd keeps no line, only whether it matched.
//!
//! The syntax, as AWS documents it for unstructured log events:
//!
//! - `term`: the line contains `term` (case-sensitive). Several terms must all be there.
//! - `"a phrase"`: the same, for text with spaces or punctuation (`\"` is a quote).
//! - `?term` / `?"a phrase"`: at least one of the `?` terms is there.
//! - `-term` / `-"a phrase"`: the line does not contain it.
//!
//! JSON (`{ $.field = ... }`), space-delimited (`[ip, user, ...]`) and regular-expression
//! (`%...%`) patterns are refused: none of them says "an authentication error" more
//! clearly, and each would be a second matcher to keep right.

use std::fmt;
use std::str::FromStr;

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPattern {
    text: String,
    all: Vec<String>,
    any: Vec<String>,
    none: Vec<String>,
}

/// Why a pattern cannot be used; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "the pattern is empty; write the text an authentication failure logs, e.g. ?\"authentication failed\" ?\" 401 \""
    )]
    Empty,
    #[error("a quote opened at character {0} is never closed; close it with \"")]
    Unclosed(usize),
    #[error("`{0}` alone matches nothing; put the term right after it, e.g. ?\"401\"")]
    Dangling(char),
    #[error(
        "only terms, \"phrases\", ?alternatives and -exclusions are supported, not JSON, space-delimited or regular-expression patterns; match the text of the line"
    )]
    Structured,
    #[error("the pattern only excludes; add a term that an authentication failure contains")]
    OnlyExclusions,
}

impl FilterPattern {
    /// Whether `line` matches.
    pub fn matches(&self, line: &str) -> bool {
        self.all.iter().all(|t| line.contains(t.as_str()))
            && (self.any.is_empty() || self.any.iter().any(|t| line.contains(t.as_str())))
            && !self.none.iter().any(|t| line.contains(t.as_str()))
    }

    /// The pattern as written (what `FilterLogEvents` is sent).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for FilterPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for FilterPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, PatternError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(PatternError::Empty);
        }
        if trimmed.starts_with('{') || trimmed.starts_with('[') || trimmed.starts_with('%') {
            return Err(PatternError::Structured);
        }
        let mut p = FilterPattern {
            text: trimmed.to_string(),
            all: Vec::new(),
            any: Vec::new(),
            none: Vec::new(),
        };
        let chars: Vec<(usize, char)> = trimmed.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            let (_, c) = chars[i];
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let prefix = matches!(c, '?' | '-').then_some(c);
            if prefix.is_some() {
                i += 1;
                if i >= chars.len() || chars[i].1.is_whitespace() {
                    return Err(PatternError::Dangling(c));
                }
            }
            let term = if chars[i].1 == '"' {
                let open = i;
                i += 1;
                let mut term = String::new();
                loop {
                    let Some(&(_, c)) = chars.get(i) else {
                        return Err(PatternError::Unclosed(open + 1));
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' if chars.get(i).is_some_and(|(_, n)| *n == '"') => {
                            term.push('"');
                            i += 1;
                        }
                        c => term.push(c),
                    }
                }
                term
            } else {
                let start = i;
                while i < chars.len() && !chars[i].1.is_whitespace() {
                    i += 1;
                }
                chars[start..i].iter().map(|(_, c)| c).collect()
            };
            if term.is_empty() {
                // `""` would match every line.
                return Err(PatternError::Empty);
            }
            match prefix {
                Some('?') => p.any.push(term),
                Some(_) => p.none.push(term),
                None => p.all.push(term),
            }
        }
        if p.all.is_empty() && p.any.is_empty() {
            return Err(PatternError::OnlyExclusions);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> FilterPattern {
        s.parse().unwrap()
    }

    #[test]
    fn alternatives_match_any_one_and_nothing_else() {
        // The guide's example, as the issue writes it.
        let auth = p(r#"?"authentication failed" ?" 401 " ?" 403 ""#);
        assert!(auth.matches("FATAL: password authentication failed for user \"svc\""));
        assert!(auth.matches("GET /orders 401 12ms"));
        assert!(auth.matches("POST /pay 403 3ms"));
        // What moto 5.2.5 matches too (tests/moto_facts.rs), and must not count.
        assert!(!auth.matches("GET /orders 200 12ms"));
        assert!(!auth.matches("connected as svc"));
        // The spaces are part of the phrase: 4010 or a 401 at the end of a line is not it.
        assert!(!auth.matches("order 4010 shipped"));
        assert!(!auth.matches("status=401"));
    }

    #[test]
    fn terms_must_all_match_and_exclusions_must_not() {
        let both = p("ERROR auth");
        assert!(both.matches("ERROR: auth refused"));
        assert!(!both.matches("ERROR: disk full"));
        // Case-sensitive, as CloudWatch Logs is for unstructured events.
        assert!(!both.matches("error: auth refused"));
        let except = p(r#"ERROR -"health check""#);
        assert!(except.matches("ERROR login refused"));
        assert!(!except.matches("ERROR health check failed"));
        let mixed = p("auth ?401 ?403");
        assert!(mixed.matches("auth 403"));
        assert!(!mixed.matches("auth 500"));
        assert!(!mixed.matches("401 without the word"));
        let quoted = p(r#""say \"no\"""#);
        assert!(quoted.matches(r#"they say "no" here"#));
        assert_eq!(quoted.as_str(), r#""say \"no\"""#);
    }

    #[test]
    fn unusable_patterns_are_refused_with_what_to_write() {
        let err = |s: &str| s.parse::<FilterPattern>().unwrap_err();
        assert_eq!(err("   "), PatternError::Empty);
        assert_eq!(err(r#""""#), PatternError::Empty);
        assert_eq!(err(r#"?"auth failed"#), PatternError::Unclosed(2));
        assert_eq!(err("? 401"), PatternError::Dangling('?'));
        assert_eq!(err("auth -"), PatternError::Dangling('-'));
        assert_eq!(err("{ $.status = 401 }"), PatternError::Structured);
        assert_eq!(err("[ip, user, status=401]"), PatternError::Structured);
        assert_eq!(err("%4[0-9]{2}%"), PatternError::Structured);
        assert_eq!(err("-debug"), PatternError::OnlyExclusions);
        for e in [
            PatternError::Empty,
            PatternError::Structured,
            PatternError::Unclosed(3),
        ] {
            let m = e.to_string();
            assert!(
                m.chars().next().unwrap().is_lowercase() && !m.ends_with('.'),
                "{m}"
            );
        }
    }
}
