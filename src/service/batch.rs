//! Batch input parser: turns what an admin pastes or uploads into mailbox pairs.
//!
//! Two formats are accepted:
//!
//! * **Text**, compatible with the old Python Pymap: one mailbox pair per line,
//!   `user1 password1 user2 password2` or `user password` (same account name
//!   and password on both sides). Fields are separated by runs of spaces, tabs,
//!   `,` or `|` in any mix; a run counts as one separator, so empty fields do
//!   not exist and passwords cannot contain those characters (use CSV for
//!   such passwords). Blank lines and lines whose first non-blank character is
//!   `#` are ignored.
//! * **CSV** (RFC 4180) with a header row, see [`parse_csv`] in `csv_input.rs`.
//!
//! [`parse_auto`] picks the format from the first non-comment line.
//!
//! Security rules that shape this module:
//!
//! * Passwords are wrapped in [`Secret`], whose `Debug` is redacted and which
//!   has no `Display`/`Serialize`, so they cannot end up in logs by accident.
//! * Error messages never echo field values, not even the raw line: in the
//!   text format a mis-split line can put a password fragment into any field.
//! * User names must not start with `-`: they become imapsync arguments and
//!   would otherwise be parsed as options (option injection).
//! * Everything is linear time: the old Pymap used a regex with catastrophic
//!   backtracking, here lines are split with a plain character scanner.
//!
//! Validation is all-or-nothing: every line is checked, every error is
//! reported, and no pair is returned unless the whole batch is valid. An empty
//! batch (no mailbox lines) is *not* an error here; the caller decides.

use std::fmt;

mod collect;
mod csv_header;
mod csv_input;

use collect::{Collector, RawPair};

pub use csv_input::parse_csv;

/// Longest accepted user name, in bytes (RFC 5321 limit of a mailbox address).
pub const MAX_USER_BYTES: usize = 320;
/// Longest accepted password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Default [`BatchLimits::max_lines`].
pub const DEFAULT_MAX_LINES: usize = 5_000;

/// Column names of the CSV format, also used by format detection.
const CSV_COLUMNS: [&str; 7] = [
    "user1",
    "password1",
    "user2",
    "password2",
    "host1",
    "host2",
    "options",
];

/// A password. Deliberately has no `Display` and no `Serialize`, and its
/// `Debug` is redacted, so it cannot leak into logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear text, for writing the imapsync pass file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One source/destination mailbox pair of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxPair {
    /// 1-based physical line of the input where the pair starts.
    pub line: usize,
    pub user1: String,
    pub password1: Secret,
    pub user2: String,
    pub password2: Secret,
    /// Raw per-row host overrides (CSV only); validated by `hosts.rs`.
    pub host1: Option<String>,
    pub host2: Option<String>,
    /// Raw extra imapsync arguments (CSV only); validated by
    /// `imapsync_options.rs`.
    pub options: Option<String>,
}

/// One problem in a batch. `message` never contains a field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// 1-based physical line of the input.
    pub line: usize,
    /// Field concerned (`user1`, `password2`, ...), when there is one.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for BatchError {}

/// All problems of a batch, in line order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchErrors(pub Vec<BatchError>);

impl fmt::Display for BatchErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BatchErrors {}

/// Size limits of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Maximum number of mailbox lines (comments and blank lines excluded).
    pub max_lines: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_lines: DEFAULT_MAX_LINES,
        }
    }
}

/// Input format, as chosen by [`detect_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    Text,
    Csv,
}

/// Parses the text format (see the module documentation).
pub fn parse_text(input: &str, limits: &BatchLimits) -> Result<Vec<MailboxPair>, BatchErrors> {
    parse_text_bytes(input.as_bytes(), limits)
}

/// Detects the format and parses accordingly; see [`detect_format`].
pub fn parse_auto(input: &[u8], limits: &BatchLimits) -> Result<Vec<MailboxPair>, BatchErrors> {
    match detect_format(input) {
        BatchFormat::Csv => parse_csv(input, limits),
        BatchFormat::Text => parse_text_bytes(input, limits),
    }
}

/// CSV when the first non-comment line contains a comma and its first cell,
/// trimmed and lower-cased, is a CSV column name (normally `user1`), else
/// text. Looking at the whole first cell rather than a `user1` prefix keeps a
/// text batch starting with `user1@example.com,secret` in the text format and
/// still recognises quoted or reordered headers.
pub fn detect_format(input: &[u8]) -> BatchFormat {
    let first = strip_bom(input)
        .split(|&b| b == b'\n')
        .find(|line| !is_blank_or_comment(line));
    let Some(Ok(line)) = first.map(std::str::from_utf8) else {
        return BatchFormat::Text;
    };
    let line = line.trim().to_lowercase();
    let first_cell = line
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .trim();
    if line.contains(',') && CSV_COLUMNS.contains(&first_cell) {
        BatchFormat::Csv
    } else {
        BatchFormat::Text
    }
}

/// Spreadsheet programs often prepend a UTF-8 byte order mark; it is not
/// part of the first user name.
fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input)
}

/// Excel's "Unicode text" export is UTF-16; without this check every line
/// would fail with a confusing per-field error.
fn utf16_error(input: &[u8]) -> Option<BatchErrors> {
    let utf16 = input.starts_with(b"\xFF\xFE") || input.starts_with(b"\xFE\xFF");
    utf16.then(|| {
        BatchErrors(vec![BatchError {
            line: 1,
            column: None,
            message: "the input is UTF-16 encoded; save it as UTF-8".into(),
        }])
    })
}

/// Blank or `#` comment line, decided on raw bytes so that a comment in a
/// legacy encoding is still skipped instead of reported as invalid UTF-8.
fn is_blank_or_comment(line: &[u8]) -> bool {
    let trimmed = match std::str::from_utf8(line) {
        Ok(text) => text.trim().as_bytes(),
        Err(_) => line.trim_ascii(),
    };
    trimmed.is_empty() || trimmed[0] == b'#'
}

fn is_text_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | ',' | '|')
}

fn parse_text_bytes(input: &[u8], limits: &BatchLimits) -> Result<Vec<MailboxPair>, BatchErrors> {
    if let Some(errors) = utf16_error(input) {
        return Err(errors);
    }
    let mut collector = Collector::new(*limits);
    for (index, raw) in strip_bom(input).split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        if is_blank_or_comment(raw) || !collector.admit(line) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            collector.error(
                line,
                None,
                "the line is not valid UTF-8; save the file as UTF-8",
            );
            continue;
        };
        // A single pass over the line: split on separator characters and drop
        // the empty pieces between consecutive separators (a run counts once).
        let mut fields = [""; 4];
        let mut count = 0;
        for field in text
            .trim()
            .split(is_text_separator)
            .filter(|f| !f.is_empty())
        {
            if let Some(slot) = fields.get_mut(count) {
                *slot = field;
            }
            count += 1;
        }
        let raw_pair = match count {
            2 => RawPair::new(fields[0], fields[1], None, None),
            4 => RawPair::new(fields[0], fields[1], Some(fields[2]), Some(fields[3])),
            _ => {
                let message = format!(
                    "expected 2 or 4 fields (user password [user2 password2]), found {count}"
                );
                collector.error(line, None, message);
                continue;
            }
        };
        collector.add(line, raw_pair);
    }
    collector.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(input: &str) -> Result<Vec<MailboxPair>, BatchErrors> {
        parse_text(input, &BatchLimits::default())
    }

    fn errors(input: &str) -> Vec<BatchError> {
        text(input).expect_err("input should be refused").0
    }

    fn pair(line: usize, u1: &str, p1: &str, u2: &str, p2: &str) -> MailboxPair {
        MailboxPair {
            line,
            user1: u1.into(),
            password1: Secret::new(p1),
            user2: u2.into(),
            password2: Secret::new(p2),
            host1: None,
            host2: None,
            options: None,
        }
    }

    #[test]
    fn four_fields_and_two_fields() {
        let pairs = text("a@x pw1 b@y pw2\nc@x pw3\n").unwrap();
        assert_eq!(
            pairs,
            vec![
                pair(1, "a@x", "pw1", "b@y", "pw2"),
                pair(2, "c@x", "pw3", "c@x", "pw3")
            ]
        );
    }

    #[test]
    fn separator_runs_of_any_mix_count_once() {
        let pairs = text("a@x \t,| pw1,,b@y||pw2\nc@x|\t|pw3").unwrap();
        assert_eq!(
            pairs,
            vec![
                pair(1, "a@x", "pw1", "b@y", "pw2"),
                pair(2, "c@x", "pw3", "c@x", "pw3")
            ]
        );
    }

    #[test]
    fn blank_comment_whitespace_and_cr_are_ignored() {
        let input = "\u{feff}# header comment\r\n\r\n   \t\n  # indented\n\t a@x pw1 \r\n";
        assert_eq!(
            text(input).unwrap(),
            vec![pair(5, "a@x", "pw1", "a@x", "pw1")]
        );
    }

    #[test]
    fn wrong_field_counts_are_refused_with_the_count() {
        for (input, found) in [
            ("a", 1),
            ("a b c", 3),
            ("a b c d e", 5),
            ("a b c d e f g", 7),
        ] {
            let errs = errors(input);
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].line, 1);
            assert_eq!(errs[0].column, None);
            assert_eq!(
                errs[0].message,
                format!("expected 2 or 4 fields (user password [user2 password2]), found {found}")
            );
        }
    }

    #[test]
    fn all_lines_are_checked_and_nothing_is_accepted_on_error() {
        let errs = errors("a@x p\nb c d\n-e@x p\nf@x p g@y\n");
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert_eq!(errs[1].column.as_deref(), Some("user1"));
    }

    #[test]
    fn errors_never_contain_passwords_or_the_line() {
        let input = "alice@x S3cr3tPW extra\n-bob@x An0therPW\ncarol@x Pw\0nul\nd@x e@x -dashpw";
        let shown = BatchErrors(errors(input)).to_string();
        for secret in ["S3cr3tPW", "An0therPW", "nul", "dashpw", "alice", "bob"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(shown.lines().count(), 4, "{shown}");
    }

    #[test]
    fn invalid_utf8_is_reported_per_line_and_comments_in_other_encodings_skipped() {
        let input = b"# caf\xE9\nok@x pw\nbad\xFF@x pw\n";
        let errs = parse_auto(input, &BatchLimits::default()).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 3);
        assert!(errs[0].message.contains("UTF-8"));
    }

    #[test]
    fn utf16_input_gets_one_clear_error() {
        let errs = parse_auto(b"\xFF\xFEa\0b\0", &BatchLimits::default())
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("UTF-16"));
    }

    #[test]
    fn display_lists_line_and_message() {
        let shown = BatchErrors(errors("a b c\n\nd")).to_string();
        assert_eq!(
            shown,
            "line 1: expected 2 or 4 fields (user password [user2 password2]), found 3\n\
             line 3: expected 2 or 4 fields (user password [user2 password2]), found 1"
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let p = pair(1, "u@x", "hunter2", "u@x", "hunter2");
        let debug = format!("{p:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("Secret(***)"));
        assert_eq!(p.password1.expose(), "hunter2");
    }

    #[test]
    fn empty_input_is_an_empty_batch() {
        assert_eq!(text("").unwrap(), vec![]);
        assert_eq!(text("\n# only a comment\n  \n").unwrap(), vec![]);
    }

    #[test]
    fn format_detection() {
        let csv = [
            "user1,password1\na,b",
            "# comment\n\n  USER1 , password1\n",
            "\u{feff}user1,password1",
            "\"user1\",\"password1\"",
            "password1,user1",
        ];
        for input in csv {
            assert_eq!(
                detect_format(input.as_bytes()),
                BatchFormat::Csv,
                "{input:?}"
            );
        }
        let text = [
            "user1 password1",
            "user1@example.com,secret",
            "alice,secret,bob,secret",
            "# user1,password1\nalice secret",
            "",
        ];
        for input in text {
            assert_eq!(
                detect_format(input.as_bytes()),
                BatchFormat::Text,
                "{input:?}"
            );
        }
        let pairs = parse_auto(b"user1,password1\na@x,\"p w\"\n", &BatchLimits::default());
        assert_eq!(pairs.unwrap(), vec![pair(2, "a@x", "p w", "a@x", "p w")]);
        let pairs = parse_auto(b"user1@x,pw\n", &BatchLimits::default());
        assert_eq!(
            pairs.unwrap(),
            vec![pair(1, "user1@x", "pw", "user1@x", "pw")]
        );
    }

    #[test]
    fn long_hostile_lines_are_linear() {
        // The old Pymap regex backtracked catastrophically on inputs like this.
        let line = format!("{}!", "a ,|\t".repeat(200_000));
        let started = std::time::Instant::now();
        assert_eq!(errors(&line).len(), 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    /// Number of physical lines of an input ("a\nb" and "a\nb\n" both have 2).
    fn line_count(input: &[u8]) -> usize {
        let newlines = input.iter().filter(|&&b| b == b'\n').count();
        newlines + usize::from(!input.is_empty() && !input.ends_with(b"\n"))
    }

    fn assert_lines_in_range(result: &Result<Vec<MailboxPair>, BatchErrors>, input: &[u8]) {
        let lines = line_count(input);
        if let Err(errors) = result {
            assert!(!errors.0.is_empty());
            for error in &errors.0 {
                assert!(
                    (1..=lines).contains(&error.line),
                    "{error:?} with {lines} lines"
                );
            }
        }
        if let Ok(pairs) = result {
            for pair in pairs {
                assert!((1..=lines).contains(&pair.line));
            }
        }
    }

    /// A valid user name, password and rendering choices for one text line.
    fn text_line() -> impl Strategy<Value = (String, String, Option<(String, String)>, String)> {
        let user = "[a-z0-9][a-z0-9._+@-]{0,20}";
        let password = "[^\\s\\p{Cc},|]{1,30}";
        (
            user,
            password,
            prop::option::of((user, password)),
            "[ \t,|]{1,3}",
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn arbitrary_text_never_panics_and_lines_are_in_range(input in "(?s).{0,300}") {
            let result = text(&input);
            assert_lines_in_range(&result, input.as_bytes());
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_lines_are_in_range(
            input in prop::collection::vec(any::<u8>(), 0..300),
            separators in "[ \t,|\n#a-]{0,50}",
        ) {
            for candidate in [input.clone(), [separators.as_bytes(), &input].concat()] {
                let limits = BatchLimits { max_lines: 3 };
                for result in [
                    parse_auto(&candidate, &BatchLimits::default()),
                    parse_auto(&candidate, &limits),
                    parse_csv(&candidate, &BatchLimits::default()),
                ] {
                    assert_lines_in_range(&result, &candidate);
                }
            }
        }

        #[test]
        fn generated_text_batches_round_trip(
            lines in prop::collection::vec(
                (text_line(), "[ \t]{0,2}", "[ \t]{0,2}\r?", prop::option::of("#[^\n\r]{0,10}|[ \t]{0,3}")),
                0..30,
            ),
        ) {
            let mut input = String::new();
            let mut expected = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut line = 0;
            for ((user1, password1, side2, sep), lead, trail, filler) in lines {
                if let Some(filler) = filler {
                    line += 1;
                    input.push_str(&filler);
                    input.push('\n');
                }
                let (user2, password2) = side2.clone().unwrap_or((user1.clone(), password1.clone()));
                if !seen.insert((user1.clone(), user2.clone())) {
                    continue;
                }
                line += 1;
                input.push_str(&lead);
                input.push_str(&user1);
                input.push_str(&sep);
                input.push_str(&password1);
                if side2.is_some() {
                    input.push_str(&sep);
                    input.push_str(&user2);
                    input.push_str(&sep);
                    input.push_str(&password2);
                }
                input.push_str(&trail);
                input.push('\n');
                expected.push(pair(line, &user1, &password1, &user2, &password2));
            }
            prop_assert_eq!(text(&input).unwrap(), expected);
        }
    }
}
