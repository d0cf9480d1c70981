//! HOSTS expansion, from the old Pymap: a list of `[regex, suffix]` pairs;
//! when a typed host matches a regex, the suffix is appended, so with
//! `["^[a-z0-9-]+$", ".mail.example.com"]` typing `mx1` means
//! `mx1.mail.example.com`. Each user has their own list, tried before the
//! global one. Regexes use the `regex` crate (linear-time matching) with a
//! length cap and a compiled-size limit, because user patterns come from
//! the web UI.

use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::{HostError, HostSpec, MAX_HOSTNAME_LEN, MAX_INPUT_LEN, parse_host};

/// Longest pattern regex, in characters.
pub const MAX_PATTERN_CHARS: usize = 500;
/// Compiled program size limit for pattern regexes (the default is 10 MiB;
/// host patterns are tiny, and many users may each have a few).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// One HOSTS entry. Deserialises from `{"regex": .., "suffix": ..}` or, as
/// in the old Pymap configuration, from a `[regex, suffix]` pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPattern {
    pub regex: String,
    pub suffix: String,
}

/// Whose pattern list a pattern comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternOrigin {
    User,
    Global,
}

impl fmt::Display for PatternOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternOrigin::User => "your",
            PatternOrigin::Global => "global",
        })
    }
}

/// A pattern that could not be compiled. `index` is 0-based; the message
/// shows it 1-based ("your host pattern #2: ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin} host pattern #{}: {reason}", .index + 1)]
pub struct PatternError {
    pub origin: PatternOrigin,
    pub index: usize,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct CompiledPattern {
    regex: Regex,
    suffix: String,
}

/// Compiled HOSTS patterns of one user plus the global ones.
#[derive(Debug, Clone)]
pub struct HostPatterns {
    user: Vec<CompiledPattern>,
    global: Vec<CompiledPattern>,
}

/// Outcome of [`HostPatterns::resolve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// What was typed, trimmed.
    pub typed: String,
    pub resolved: HostSpec,
    /// The pattern that matched (0-based index), if any.
    pub pattern: Option<(PatternOrigin, usize)>,
}

impl Resolution {
    /// Human description for the UI, e.g. "your pattern #2".
    pub fn via(&self) -> Option<String> {
        self.pattern
            .map(|(origin, index)| format!("{origin} pattern #{}", index + 1))
    }
}

impl HostPatterns {
    pub fn new(user: &[HostPattern], global: &[HostPattern]) -> Result<Self, PatternError> {
        Ok(Self {
            user: compile_all(user, PatternOrigin::User)?,
            global: compile_all(global, PatternOrigin::Global)?,
        })
    }

    /// Expands a typed host: the user's patterns first, then the global
    /// ones, first match wins and appends its suffix; without a match the
    /// typed value is used as is. Matching is done on the trimmed,
    /// ASCII-lower-cased value (host names are case-insensitive, so a
    /// pattern `^[a-z0-9-]+$` also expands `MX1`). The result must pass
    /// [`parse_host`]. Unanchored regexes match anywhere, like `re.search`.
    pub fn resolve(&self, typed: &str) -> Result<Resolution, HostError> {
        let typed = typed.trim();
        if typed.is_empty() {
            return Err(HostError::Empty);
        }
        if typed.len() > MAX_INPUT_LEN {
            return Err(HostError::TooLong {
                len: typed.len(),
                max: MAX_INPUT_LEN,
            });
        }
        let key = typed.to_ascii_lowercase();
        let lists = [
            (PatternOrigin::User, &self.user),
            (PatternOrigin::Global, &self.global),
        ];
        let found = lists.into_iter().find_map(|(origin, list)| {
            list.iter()
                .position(|p| p.regex.is_match(&key))
                .map(|index| (origin, index, &list[index].suffix))
        });
        let (candidate, pattern) = match found {
            Some((origin, index, suffix)) => (format!("{key}{suffix}"), Some((origin, index))),
            None => (key, None),
        };
        Ok(Resolution {
            typed: typed.to_owned(),
            resolved: parse_host(&candidate)?,
            pattern,
        })
    }
}

fn compile_all(
    patterns: &[HostPattern],
    origin: PatternOrigin,
) -> Result<Vec<CompiledPattern>, PatternError> {
    let fail = |index: usize, reason: String| PatternError {
        origin,
        index,
        reason,
    };
    let mut compiled = Vec::with_capacity(patterns.len());
    for (index, pattern) in patterns.iter().enumerate() {
        if pattern.regex.chars().count() > MAX_PATTERN_CHARS {
            let reason = format!("the regex is longer than {MAX_PATTERN_CHARS} characters");
            return Err(fail(index, reason));
        }
        let regex = RegexBuilder::new(&pattern.regex)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                // Syntax errors are multi-line drawings; the last line says why.
                let text = e.to_string();
                let why = text.lines().last().unwrap_or_default();
                fail(
                    index,
                    format!("invalid regex: {}", why.trim_start_matches("error: ")),
                )
            })?;
        // The suffix is appended to a host name; anything else could never
        // produce a valid host, so say so when the pattern is saved.
        let suffix_ok = pattern.suffix.len() <= MAX_HOSTNAME_LEN
            && pattern
                .suffix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !suffix_ok {
            let reason = "the suffix may only contain letters, digits, '.', '-' and ':'";
            return Err(fail(index, reason.into()));
        }
        compiled.push(CompiledPattern {
            regex,
            suffix: pattern.suffix.clone(),
        });
    }
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(regex: &str, suffix: &str) -> HostPattern {
        HostPattern {
            regex: regex.into(),
            suffix: suffix.into(),
        }
    }

    #[test]
    fn patterns_expand_user_first_then_global() {
        let user = [
            pattern("^old-", ".legacy.example"),
            pattern("^[a-z0-9-]+$", ".my.example"),
        ];
        let global = [
            pattern("^[a-z0-9-]+$", ".mail.example.com"),
            pattern("^x", ".x.example"),
        ];
        let patterns = HostPatterns::new(&user, &global).unwrap();
        let r = patterns.resolve(" MX1 ").unwrap();
        assert_eq!(r.typed, "MX1");
        assert_eq!(r.resolved.to_string(), "mx1.my.example");
        assert_eq!(r.pattern, Some((PatternOrigin::User, 1)));
        assert_eq!(r.via().as_deref(), Some("your pattern #2"));
        let r = patterns.resolve("old-box").unwrap();
        assert_eq!(
            (r.resolved.host.as_str(), r.pattern),
            ("old-box.legacy.example", Some((PatternOrigin::User, 0)))
        );
        let global_only = HostPatterns::new(&[], &global).unwrap();
        let r = global_only.resolve("mx1").unwrap();
        assert_eq!(r.resolved.host, "mx1.mail.example.com");
        assert_eq!(r.via().as_deref(), Some("global pattern #1"));
        // No match: used as is.
        let r = global_only.resolve("imap.other.org:993").unwrap();
        assert_eq!(
            (r.resolved.to_string(), r.pattern),
            ("imap.other.org:993".into(), None)
        );
        // A suffix may carry a port.
        let ported = HostPatterns::new(&[pattern("^mx[0-9]$", ".example:993")], &[]).unwrap();
        assert_eq!(
            ported.resolve("mx2").unwrap().resolved.to_string(),
            "mx2.example:993"
        );
    }

    #[test]
    fn resolution_is_validated() {
        let patterns = HostPatterns::new(&[], &[pattern(".*", ".mail.example.com")]).unwrap();
        assert_eq!(
            patterns.resolve("--help").unwrap_err(),
            HostError::LeadingDash
        );
        assert_eq!(patterns.resolve("a b").unwrap_err(), HostError::Whitespace);
        assert_eq!(patterns.resolve("").unwrap_err(), HostError::Empty);
        assert!(matches!(
            patterns.resolve(&"a".repeat(5000)),
            Err(HostError::TooLong { .. })
        ));
        let none = HostPatterns::new(&[], &[]).unwrap();
        assert_eq!(none.resolve("x@y").unwrap_err(), HostError::AtSign);
    }

    #[test]
    fn pattern_errors_name_origin_and_index() {
        let good = pattern("^a$", ".example");
        let err = HostPatterns::new(&[good.clone(), pattern("(unclosed", "")], &[])
            .err()
            .unwrap();
        assert_eq!((err.origin, err.index), (PatternOrigin::User, 1));
        assert!(
            err.to_string()
                .starts_with("your host pattern #2: invalid regex:"),
            "{err}"
        );
        let long = "a".repeat(MAX_PATTERN_CHARS + 1);
        let err = HostPatterns::new(std::slice::from_ref(&good), &[pattern(&long, "")])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "global host pattern #1: the regex is longer than 500 characters"
        );
        let err = HostPatterns::new(&[], &[good.clone(), pattern("^b$", " evil; x")])
            .err()
            .unwrap();
        assert_eq!((err.origin, err.index), (PatternOrigin::Global, 1));
        assert!(err.reason.contains("suffix"));
        // Under the length cap but huge when compiled: the size limit stops it.
        let err = HostPatterns::new(&[pattern("(\\w{100}){100}", "")], &[])
            .err()
            .unwrap();
        assert!(err.reason.contains("invalid regex"), "{err}");
        let exactly = "a".repeat(MAX_PATTERN_CHARS);
        assert!(HostPatterns::new(&[pattern(&exactly, "")], &[]).is_ok());
    }

    #[test]
    fn patterns_deserialise_from_pairs_like_old_pymap() {
        let json = r#"[["^[a-z0-9-]+$", ".mail.example.com"], {"regex": "^x$", "suffix": ""}]"#;
        let patterns: Vec<HostPattern> = serde_json::from_str(json).unwrap();
        assert_eq!(
            patterns,
            [
                pattern("^[a-z0-9-]+$", ".mail.example.com"),
                pattern("^x$", "")
            ]
        );
    }
}
