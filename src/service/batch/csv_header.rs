//! Header row of the CSV batch format: maps the known column names
//! (case-insensitive, trimmed, any order) to positions, and reports missing,
//! duplicate and unknown columns without ever echoing a possible password.

use super::{BatchError, CSV_COLUMNS};

pub(super) const USER1: usize = 0;
pub(super) const PASSWORD1: usize = 1;
pub(super) const USER2: usize = 2;
pub(super) const PASSWORD2: usize = 3;
pub(super) const HOST1: usize = 4;
pub(super) const HOST2: usize = 5;
pub(super) const OPTIONS: usize = 6;

const EXPECTED_COLUMNS: &str =
    "expected user1, password1, user2, password2 and optionally host1, host2, options";

/// Positions of the known columns in the header row.
pub(super) struct Header {
    columns: [Option<usize>; 7],
    pub(super) width: usize,
}

impl Header {
    pub(super) fn parse(record: &csv::ByteRecord, line: usize) -> Result<Self, Vec<BatchError>> {
        let error = |message: String| BatchError {
            line,
            column: None,
            message,
        };
        if record.len() == 1 && record[0].contains(&b';') {
            return Err(vec![error(
                "the header has a single column containing ';': save the CSV with ',' as separator"
                    .into(),
            )]);
        }
        let names: Vec<String> = record
            .iter()
            .map(|field| String::from_utf8_lossy(field).trim().to_lowercase())
            .collect();
        let mut columns = [None; 7];
        let mut duplicates = Vec::new();
        let mut unknown = Vec::new();
        for (position, name) in names.iter().enumerate() {
            match CSV_COLUMNS.iter().position(|known| known == name) {
                Some(k) if columns[k].is_some() => duplicates.push(k),
                Some(k) => columns[k] = Some(position),
                None => unknown.push(position),
            }
        }
        if columns.iter().all(Option::is_none) {
            // Most likely a data row: do not echo any of it.
            return Err(vec![error(format!(
                "the first line must be a header row naming the columns ({EXPECTED_COLUMNS})"
            ))]);
        }
        let mut errors = Vec::new();
        for k in [USER1, PASSWORD1] {
            if columns[k].is_none() {
                errors.push(error(format!("missing column {}", CSV_COLUMNS[k])));
            }
        }
        for &k in &duplicates {
            errors.push(error(format!(
                "column {} appears more than once",
                CSV_COLUMNS[k]
            )));
        }
        // Echo an unknown name only when the row is clearly a header, so a
        // data row mistaken for one cannot leak a password.
        let clearly_header = errors.is_empty();
        for position in unknown {
            let name = &names[position];
            let message = if clearly_header && looks_like_column_name(name) {
                format!("unknown column '{name}' ({EXPECTED_COLUMNS})")
            } else {
                format!("unknown column #{} ({EXPECTED_COLUMNS})", position + 1)
            };
            errors.push(error(message));
        }
        if errors.is_empty() {
            Ok(Self {
                columns,
                width: record.len(),
            })
        } else {
            Err(errors)
        }
    }

    /// Position of a known column (index into `CSV_COLUMNS`) in the rows.
    pub(super) fn position(&self, column: usize) -> Option<usize> {
        self.columns[column]
    }

    pub(super) fn get<'r>(&self, record: &'r csv::ByteRecord, column: usize) -> Option<&'r [u8]> {
        self.columns[column].and_then(|position| record.get(position))
    }
}

fn looks_like_column_name(name: &str) -> bool {
    name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' '))
}

#[cfg(test)]
mod tests {
    use super::super::{BatchErrors, BatchLimits, MailboxPair, parse_csv};

    fn messages(input: &str) -> Vec<(usize, String)> {
        let result: Result<Vec<MailboxPair>, BatchErrors> =
            parse_csv(input.as_bytes(), &BatchLimits::default());
        let errors = result.expect_err("input should be refused").0;
        errors.into_iter().map(|e| (e.line, e.message)).collect()
    }

    #[test]
    fn header_is_required_and_checked() {
        let no_header = messages("alice@x,secret,bob@x,secret2\n");
        assert_eq!(no_header.len(), 1);
        assert!(
            no_header[0]
                .1
                .starts_with("the first line must be a header row")
        );
        assert!(!no_header[0].1.contains("secret"));
        assert_eq!(messages("user1,user2\n")[0].1, "missing column password1");
        assert_eq!(
            messages("user1,password1,user1\n"),
            [(1, "column user1 appears more than once".into())]
        );
        let unknown = messages("# intro\nuser1,password1,pasword2,fancy stuff!\n");
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown[0].0, 2);
        assert!(
            unknown[0]
                .1
                .starts_with("unknown column 'pasword2' (expected user1")
        );
        assert!(unknown[1].1.starts_with("unknown column #4 "));
        // A data row that merely looks like a header must not echo values.
        let ambiguous = messages("user1,user1,hunter2\n");
        assert!(
            ambiguous.iter().all(|(_, m)| !m.contains("hunter2")),
            "{ambiguous:?}"
        );
        let semicolons = messages("user1;password1\na;b\n");
        assert!(semicolons[0].1.contains("';'"));
    }
}
