//! Field validation, limits and duplicate detection shared by the text and
//! CSV batch formats, so both behave identically.

use std::collections::HashMap;

use super::{
    BatchError, BatchErrors, BatchLimits, MAX_PASSWORD_BYTES, MAX_USER_BYTES, MailboxPair, Secret,
};

/// Field values of one input line before validation. `None` on side 2
/// means "same as side 1".
pub(super) struct RawPair<'a> {
    pub(super) user1: &'a str,
    pub(super) password1: &'a str,
    pub(super) user2: Option<&'a str>,
    pub(super) password2: Option<&'a str>,
    pub(super) host1: Option<&'a str>,
    pub(super) host2: Option<&'a str>,
    pub(super) options: Option<&'a str>,
}

impl<'a> RawPair<'a> {
    pub(super) fn new(
        user1: &'a str,
        password1: &'a str,
        user2: Option<&'a str>,
        password2: Option<&'a str>,
    ) -> Self {
        Self {
            user1,
            password1,
            user2,
            password2,
            host1: None,
            host2: None,
            options: None,
        }
    }
}

/// A field check: `Err` carries the reason, to be prefixed with the column.
type Rule = fn(&str) -> Result<(), &'static str>;

/// Accumulates pairs and errors over a whole batch; shared by both formats so
/// that validation, limits and duplicate detection behave identically.
pub(super) struct Collector {
    limits: BatchLimits,
    pairs: Vec<MailboxPair>,
    errors: Vec<BatchError>,
    /// Lower-cased (user1, user2) -> line of first occurrence.
    seen: HashMap<(String, String), usize>,
    mailbox_lines: usize,
    first_excess_line: Option<usize>,
}

impl Collector {
    pub(super) fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            pairs: Vec::new(),
            errors: Vec::new(),
            seen: HashMap::new(),
            mailbox_lines: 0,
            first_excess_line: None,
        }
    }

    /// Counts a mailbox line; false once over the limit, in which case the
    /// line is only counted (so the error can state the total) and not
    /// validated.
    pub(super) fn admit(&mut self, line: usize) -> bool {
        self.mailbox_lines += 1;
        if self.mailbox_lines > self.limits.max_lines {
            self.first_excess_line.get_or_insert(line);
            return false;
        }
        true
    }

    pub(super) fn error(&mut self, line: usize, column: Option<&str>, message: impl Into<String>) {
        self.errors.push(BatchError {
            line,
            column: column.map(str::to_owned),
            message: message.into(),
        });
    }

    /// Errors are pushed in line order, so the last one tells whether the
    /// current line already failed (e.g. a CSV-specific check).
    pub(super) fn line_failed(&self, line: usize) -> bool {
        self.errors.last().is_some_and(|e| e.line == line)
    }

    /// Validates every field of a line, then records the pair unless the
    /// line has any error or duplicates an earlier pair.
    pub(super) fn add(&mut self, line: usize, raw: RawPair<'_>) {
        let checks: [(&str, Option<&str>, Rule); 4] = [
            ("user1", Some(raw.user1), check_user),
            ("password1", Some(raw.password1), check_password),
            ("user2", raw.user2, check_user),
            ("password2", raw.password2, check_password),
        ];
        for (column, value, check) in checks {
            if let Some(Err(reason)) = value.map(check) {
                self.error(line, Some(column), format!("{column} {reason}"));
            }
        }
        if self.line_failed(line) {
            return;
        }
        let user2 = raw.user2.unwrap_or(raw.user1);
        let key = (raw.user1.to_lowercase(), user2.to_lowercase());
        if let Some(&first) = self.seen.get(&key) {
            self.error(line, None, format!("duplicate of line {first}"));
            return;
        }
        self.seen.insert(key, line);
        self.pairs.push(MailboxPair {
            line,
            user1: raw.user1.to_owned(),
            password1: Secret::new(raw.password1),
            user2: user2.to_owned(),
            password2: Secret::new(raw.password2.unwrap_or(raw.password1)),
            host1: raw.host1.map(str::to_owned),
            host2: raw.host2.map(str::to_owned),
            options: raw.options.map(str::to_owned),
        });
    }

    pub(super) fn finish(self) -> Result<Vec<MailboxPair>, BatchErrors> {
        if let Some(line) = self.first_excess_line {
            // One error instead of thousands: the batch must be split anyway.
            return Err(BatchErrors(vec![BatchError {
                line,
                column: None,
                message: format!(
                    "too many mailbox lines: {} (the limit is {} per batch); split the batch",
                    self.mailbox_lines, self.limits.max_lines
                ),
            }]));
        }
        if self.errors.is_empty() {
            Ok(self.pairs)
        } else {
            Err(BatchErrors(self.errors))
        }
    }
}

/// Zero-width and bidirectional-override characters: invisible in the UI,
/// so a user name containing one would look right and fail to log in (or
/// spoof another name).
fn is_invisible_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

fn check_user(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        Err("is empty")
    } else if user.len() > MAX_USER_BYTES {
        Err("is longer than 320 bytes")
    } else if user.chars().any(char::is_control) {
        Err("contains a control character")
    } else if user.chars().any(char::is_whitespace) {
        Err("contains whitespace")
    } else if user.chars().any(is_invisible_format_char) {
        Err("contains an invisible formatting character")
    } else if user.starts_with('-') {
        // imapsync would parse it as an option.
        Err("must not start with '-'")
    } else {
        Ok(())
    }
}

fn check_password(password: &str) -> Result<(), &'static str> {
    if password.is_empty() {
        Err("is empty")
    } else if password.len() > MAX_PASSWORD_BYTES {
        Err("is longer than 1024 bytes")
    } else if password.contains(['\0', '\r', '\n']) {
        // Passwords are written as one line of an imapsync pass file.
        Err("contains a NUL, CR or LF character")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BatchLimits, parse_text};
    use super::*;

    fn errors_of(input: &str) -> Vec<BatchError> {
        parse_text(input, &BatchLimits::default())
            .expect_err("input should be refused")
            .0
    }

    fn only_error(input: &str) -> BatchError {
        let mut errors = errors_of(input);
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn user_rules() {
        let long = format!("{}@x", "u".repeat(MAX_USER_BYTES));
        let cases = [
            (
                format!("ok@x pw {long} pw"),
                "user2",
                "user2 is longer than 320 bytes",
            ),
            ("-o@x pw".into(), "user1", "user1 must not start with '-'"),
            (
                "a@x pw --help pw".into(),
                "user2",
                "user2 must not start with '-'",
            ),
            (
                "a\u{7}b pw".into(),
                "user1",
                "user1 contains a control character",
            ),
            ("a\u{a0}b pw".into(), "user1", "user1 contains whitespace"),
            (
                "a\u{200b}b pw".into(),
                "user1",
                "user1 contains an invisible formatting character",
            ),
            (
                "a@x pw b\u{202e}c pw".into(),
                "user2",
                "user2 contains an invisible formatting character",
            ),
        ];
        for (input, column, message) in cases {
            let error = only_error(&input);
            assert_eq!(
                (error.line, error.column.as_deref()),
                (1, Some(column)),
                "{input:?}"
            );
            assert_eq!(error.message, message, "{input:?}");
        }
        let exactly_max = "u".repeat(MAX_USER_BYTES);
        assert!(parse_text(&format!("{exactly_max} pw"), &BatchLimits::default()).is_ok());
        // Non-ASCII user names are fine (SMTPUTF8 addresses exist).
        assert!(parse_text("jürgen@exämple.de pw", &BatchLimits::default()).is_ok());
    }

    #[test]
    fn password_rules() {
        let long = "p".repeat(MAX_PASSWORD_BYTES + 1);
        let error = only_error(&format!("a@x {long}"));
        assert_eq!(error.column.as_deref(), Some("password1"));
        assert_eq!(error.message, "password1 is longer than 1024 bytes");
        let error = only_error("a@x ok b@x p\0w");
        assert_eq!(error.column.as_deref(), Some("password2"));
        assert_eq!(
            error.message,
            "password2 contains a NUL, CR or LF character"
        );
        assert_eq!(
            check_password("mid\rcr"),
            Err("contains a NUL, CR or LF character")
        );
        assert_eq!(check_password(""), Err("is empty"));
        assert_eq!(check_user(""), Err("is empty"));
        // Passwords may start with '-' or '#' and hold any other character.
        let ok = "a@x -#p\"'\\$(x)ä\u{7} b@x #\u{a0}x";
        let pairs = parse_text(ok, &BatchLimits::default()).unwrap();
        assert_eq!(pairs[0].password1.expose(), "-#p\"'\\$(x)ä\u{7}");
        assert_eq!(pairs[0].password2.expose(), "#\u{a0}x");
        let exactly_max = "p".repeat(MAX_PASSWORD_BYTES);
        assert!(parse_text(&format!("a@x {exactly_max}"), &BatchLimits::default()).is_ok());
    }

    #[test]
    fn every_bad_field_of_a_line_is_reported() {
        let errors = errors_of("-a p\0 -b q\0");
        let columns: Vec<_> = errors
            .iter()
            .map(|e| e.column.as_deref().unwrap())
            .collect();
        assert_eq!(columns, ["user1", "password1", "user2", "password2"]);
    }

    #[test]
    fn duplicates_are_case_insensitive_and_reported_on_the_later_line() {
        let error = only_error("a@x p b@y q\n# c\nA@X other B@Y other\n");
        assert_eq!((error.line, error.column), (3, None));
        assert_eq!(error.message, "duplicate of line 1");
        let error = only_error("a@x p\nc@x p\nA@x p a@X q");
        assert_eq!(
            (error.line, error.message.as_str()),
            (3, "duplicate of line 1")
        );
        // Same source to two destinations is not a duplicate pair.
        assert!(parse_text("a@x p b@y q\na@x p c@y q", &BatchLimits::default()).is_ok());
    }

    #[test]
    fn line_limit_gives_one_error_with_limit_and_count() {
        let limits = BatchLimits { max_lines: 3 };
        let input = "# c\na@x p\nb@x p\n\nc@x p\nd@x p\n-bad\ne@x p\n";
        let errors = parse_text(input, &limits).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 6);
        assert_eq!(
            errors[0].message,
            "too many mailbox lines: 6 (the limit is 3 per batch); split the batch"
        );
        let exactly = "a@x p\nb@x p\nc@x p\n# more comments do not count\n";
        assert_eq!(parse_text(exactly, &limits).unwrap().len(), 3);
        assert_eq!(BatchLimits::default().max_lines, 5_000);
        let big: String = (0..5_001).map(|i| format!("u{i}@x p\n")).collect();
        let errors = parse_text(&big, &BatchLimits::default()).unwrap_err().0;
        assert!(errors[0].message.contains("5001") && errors[0].message.contains("5000"));
    }
}
