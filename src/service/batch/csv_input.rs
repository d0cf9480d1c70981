//! CSV flavour of the batch input (RFC 4180, parsed by the `csv` crate).
//!
//! A header row is required. Columns, in any order, case-insensitive and
//! trimmed: `user1`, `password1` (required), `user2`, `password2`, `host1`,
//! `host2`, `options` (optional). An empty `user2`/`password2` means "same as
//! side 1". Quoting lets passwords contain commas, quotes and spaces.
//!
//! Whitespace: user names, hosts and options are trimmed. A password is taken
//! verbatim when its field is quoted; an *unquoted* password with leading or
//! trailing whitespace is an error, because `alice, secret` (space after the
//! comma) almost always means `secret`, while a real password with spaces
//! can be quoted. Silently guessing either way would make logins fail with no
//! hint why. The `csv` crate does not report quoting, so [`quoted_fields`]
//! re-scans the raw record bytes (linear, bounded by the record length).
//!
//! Comments: lines before the header that are blank or start with `#` are
//! skipped (so the text format's comment rule also works here). After the
//! header every row is data: csv-core's comment option would silently drop a
//! row whose first cell is a password starting with `#`.
//!
//! Line numbers: the `csv` crate's record position is where the reader
//! stopped after the previous record, i.e. before skipped blank lines and, for
//! CRLF input, before the `\n`. [`LineCounter`] advances past those bytes and
//! counts `\n` itself so errors point at the physical line where a record
//! starts, also after quoted multi-line fields.

use super::csv_header::{HOST1, HOST2, Header, OPTIONS, PASSWORD1, PASSWORD2, USER1, USER2};
use super::{
    BatchErrors, BatchLimits, CSV_COLUMNS, Collector, MailboxPair, RawPair, is_blank_or_comment,
    strip_bom, utf16_error,
};

/// Parses the CSV format (see the module documentation).
pub fn parse_csv(input: &[u8], limits: &BatchLimits) -> Result<Vec<MailboxPair>, BatchErrors> {
    if let Some(errors) = utf16_error(input) {
        return Err(errors);
    }
    let input = strip_bom(input);
    let (body_start, first_line) = skip_preamble(input);
    let body = &input[body_start..];
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true) // row length is checked here, with a line number
        .from_reader(body);
    let mut lines = LineCounter {
        body,
        pos: 0,
        line: first_line,
    };
    let mut record = csv::ByteRecord::new();
    let mut header: Option<Header> = None;
    let mut collector = Collector::new(*limits);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // Reading from memory with byte records cannot fail; stay safe anyway.
            Err(_) => {
                let line = lines.line;
                collector.error(line, None, "the CSV data could not be read");
                break;
            }
        }
        let offset = record.position().map_or(0, |p| p.byte());
        let (line, start) = lines.record_start(usize::try_from(offset).unwrap_or(usize::MAX));
        // Rows of empty cells are common at the end of spreadsheet exports.
        if record.iter().all(|field| field.trim_ascii().is_empty()) {
            continue;
        }
        match &header {
            None => match Header::parse(&record, line) {
                Ok(parsed) => header = Some(parsed),
                // Without a header no row can be interpreted.
                Err(errors) => return Err(BatchErrors(errors)),
            },
            Some(header) => {
                if collector.admit(line) {
                    parse_row(&mut collector, header, &record, body, start, line);
                }
            }
        }
    }
    collector.finish()
}

/// Returns the byte offset and the line number of the first line that is
/// neither blank nor a `#` comment.
fn skip_preamble(input: &[u8]) -> (usize, usize) {
    let mut offset = 0;
    let mut line = 1;
    while offset < input.len() {
        let end = input[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |i| offset + i);
        if !is_blank_or_comment(&input[offset..end]) {
            break;
        }
        offset = end + 1;
        line += 1;
    }
    (offset.min(input.len()), line)
}

/// Maps csv record positions to physical line numbers (see module docs).
struct LineCounter<'a> {
    body: &'a [u8],
    /// Bytes before `pos` are already counted in `line`.
    pos: usize,
    line: usize,
}

impl LineCounter<'_> {
    /// Returns the line and byte offset of the record whose csv position is
    /// `offset`. Offsets only grow, so the total work is linear.
    fn record_start(&mut self, offset: usize) -> (usize, usize) {
        let mut start = offset.clamp(self.pos, self.body.len());
        while matches!(self.body.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        self.line += self.body[self.pos..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = start;
        (self.line, start)
    }
}

/// Which of the first `count` fields of the record starting at `start` begin
/// with a quote, following csv-core's rules: inside quotes `""` is a literal
/// quote; after the closing quote the field continues unquoted; a quote in
/// an unquoted field is literal.
fn quoted_fields(body: &[u8], start: usize, count: usize) -> Vec<bool> {
    let mut flags = Vec::with_capacity(count);
    let mut i = start;
    for _ in 0..count {
        let quoted = body.get(i) == Some(&b'"');
        flags.push(quoted);
        if quoted {
            i += 1;
            while let Some(&b) = body.get(i) {
                i += 1;
                if b == b'"' {
                    if body.get(i) == Some(&b'"') {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
        }
        while let Some(&b) = body.get(i) {
            if b == b'\r' || b == b'\n' {
                break;
            }
            i += 1;
            if b == b',' {
                break;
            }
        }
    }
    flags
}

fn parse_row(
    collector: &mut Collector,
    header: &Header,
    record: &csv::ByteRecord,
    body: &[u8],
    start: usize,
    line: usize,
) {
    if record.len() != header.width {
        let message = format!(
            "expected {} fields as in the header, found {}",
            header.width,
            record.len()
        );
        collector.error(line, None, message);
        return;
    }
    let mut values: [Option<&str>; 7] = [None; 7];
    for (k, value) in values.iter_mut().enumerate() {
        let Some(bytes) = header.get(record, k) else {
            continue;
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => *value = Some(text),
            Err(_) => {
                let column = CSV_COLUMNS[k];
                let message = format!("{column} is not valid UTF-8; save the file as UTF-8");
                collector.error(line, Some(column), message);
            }
        }
    }
    if collector.line_failed(line) {
        return;
    }
    let needed = [PASSWORD1, PASSWORD2]
        .iter()
        .filter_map(|&k| header.position(k))
        .max()
        .map_or(0, |last| last + 1);
    let quoted = quoted_fields(body, start, needed);
    let mut password = |k: usize| -> Option<&str> {
        let raw = values[k]?;
        let is_quoted = header
            .position(k)
            .is_some_and(|p| quoted.get(p) == Some(&true));
        if is_quoted || raw.trim() == raw {
            return Some(raw).filter(|p| !p.is_empty());
        }
        if raw.trim().is_empty() {
            return None;
        }
        let column = CSV_COLUMNS[k];
        let message = format!(
            "{column} has leading or trailing whitespace; if it is part of the password, \
             quote the field (the opening quote directly after the comma)"
        );
        collector.error(line, Some(column), message);
        // Already reported; the trimmed value keeps the other checks quiet
        // about emptiness, and the pair is rejected because the line failed.
        Some(raw.trim())
    };
    let password1 = password(PASSWORD1);
    let password2 = password(PASSWORD2);
    let trimmed = |k: usize| values[k].map(str::trim).filter(|v| !v.is_empty());
    let raw = RawPair {
        user1: values[USER1].map_or("", str::trim),
        // A missing password1 is reported as empty by the shared validation.
        password1: password1.unwrap_or(""),
        user2: trimmed(USER2),
        password2,
        host1: trimmed(HOST1),
        host2: trimmed(HOST2),
        options: trimmed(OPTIONS),
    };
    collector.add(line, raw);
}

#[cfg(test)]
mod tests {
    use super::super::{BatchError, BatchLimits, Secret};
    use super::*;
    use proptest::prelude::*;

    fn csv(input: &str) -> Result<Vec<MailboxPair>, BatchErrors> {
        parse_csv(input.as_bytes(), &BatchLimits::default())
    }

    fn errors(input: &str) -> Vec<BatchError> {
        csv(input).expect_err("input should be refused").0
    }

    fn messages(input: &str) -> Vec<(usize, String)> {
        errors(input)
            .into_iter()
            .map(|e| (e.line, e.message))
            .collect()
    }

    #[test]
    fn full_header_any_order_and_case() {
        let input = " Password2 ,USER1,user2,password1,host1,Host2,options\r\n\
                     p2,a@x,b@y,p1, imap.x.org ,,--automap\r\n";
        let pairs = csv(input).unwrap();
        assert_eq!(
            pairs,
            vec![MailboxPair {
                line: 2,
                user1: "a@x".into(),
                password1: Secret::new("p1"),
                user2: "b@y".into(),
                password2: Secret::new("p2"),
                host1: Some("imap.x.org".into()),
                host2: None,
                options: Some("--automap".into()),
            }]
        );
    }

    #[test]
    fn empty_side_two_means_same_as_side_one() {
        let pairs =
            csv("user1,password1,user2,password2\na@x,p1,,\nb@x,p1,c@x,\nd@x,p,,q\n").unwrap();
        let sides: Vec<_> = pairs
            .iter()
            .map(|p| (p.user2.as_str(), p.password2.expose()))
            .collect();
        assert_eq!(sides, [("a@x", "p1"), ("c@x", "p1"), ("d@x", "q")]);
        // The user2/password2 columns themselves are optional too.
        assert_eq!(csv("user1,password1\na@x,p\n").unwrap()[0].user2, "a@x");
    }

    #[test]
    fn quoted_passwords_keep_separators_quotes_and_spaces() {
        let input = "user1,password1,user2,password2\n\
                     a@x,\" p,a|s\"\"s \",b@x,\"#'x' \"\n";
        let pairs = csv(input).unwrap();
        assert_eq!(pairs[0].password1.expose(), " p,a|s\"s ");
        assert_eq!(pairs[0].password2.expose(), "#'x' ");
    }

    #[test]
    fn unquoted_password_with_outer_whitespace_is_refused() {
        let input = "user1, password1, user2, password2\na@x, secret, b@x,\"quoted ok \"\n";
        let errs = errors(input);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].column.as_deref(), Some("password1"));
        assert!(
            errs[0]
                .message
                .starts_with("password1 has leading or trailing whitespace")
        );
        assert!(!errs[0].message.contains("secret"));
        // A quote after a space is literal in RFC 4180, so this is unquoted.
        let errs = errors("user1,password1\na@x, \"secret\"\n");
        assert_eq!(errs[0].column.as_deref(), Some("password1"));
        // Whitespace-only means empty: falls back to password1 on side 2.
        let pairs = csv("user1,password1,password2\na@x,p,  \n").unwrap();
        assert_eq!(pairs[0].password2.expose(), "p");
    }

    #[test]
    fn quoted_fields_scanner() {
        let body = b"a,\"b,\"\"c\",\"d\"e ,f\r\nnext";
        assert_eq!(
            quoted_fields(body, 0, 5),
            vec![false, true, true, false, false]
        );
        assert_eq!(quoted_fields(b"\"open,", 0, 2), vec![true, false]);
    }

    #[test]
    fn row_width_must_match_header() {
        let errs = messages("user1,password1\na@x,p,extra\nb@x\n");
        assert_eq!(
            errs,
            [
                (2, "expected 2 fields as in the header, found 3".into()),
                (3, "expected 2 fields as in the header, found 1".into())
            ]
        );
    }

    #[test]
    fn line_numbers_follow_physical_lines() {
        let input = "# comment\r\n\r\nuser1,password1,options\r\n\r\n\
                     a@x,p,\"multi\r\nline\r\noptions\"\r\n,,\r\n   \r\n\
                     -b@x,p,\r\nc@x,,\r\n";
        let errs = errors(input);
        let got: Vec<_> = errs.iter().map(|e| (e.line, e.column.as_deref())).collect();
        assert_eq!(got, [(10, Some("user1")), (11, Some("password1"))]);
        let pairs = csv("user1,password1,options\n\"a@x\",p,\"x\ny\"\n\nb@x,p,\n").unwrap();
        assert_eq!((pairs[0].line, pairs[1].line), (2, 5));
    }

    #[test]
    fn rows_starting_with_hash_are_data_after_the_header() {
        let pairs = csv("password1,user1\n#secret,a@x\n").unwrap();
        assert_eq!(pairs[0].password1.expose(), "#secret");
    }

    #[test]
    fn invalid_utf8_reports_line_and_column() {
        let input = b"user1,password1\na@x,ok\nb@x,p\xE9\n";
        let errs = parse_csv(input, &BatchLimits::default()).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(
            (errs[0].line, errs[0].column.as_deref()),
            (3, Some("password1"))
        );
        assert!(errs[0].message.contains("UTF-8"));
    }

    #[test]
    fn bom_limit_duplicates_and_empty_input() {
        let pairs = parse_csv(
            b"\xEF\xBB\xBFuser1,password1\na@x,p\n",
            &BatchLimits::default(),
        );
        assert_eq!(pairs.unwrap()[0].user1, "a@x");
        let errs = errors("user1,password1,user2\na@x,p,b@x\nA@x,q,B@X\n");
        assert_eq!(
            (errs[0].line, errs[0].message.as_str()),
            (3, "duplicate of line 2")
        );
        let limits = BatchLimits { max_lines: 1 };
        let errs = parse_csv(b"user1,password1\na,p\nb,p\nc,p\n", &limits)
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 3);
        assert!(errs[0].message.contains(" 3 ") && errs[0].message.contains(" 1 "));
        assert_eq!(csv("").unwrap(), vec![]);
        assert_eq!(csv("# nothing\n").unwrap(), vec![]);
        assert_eq!(csv("user1,password1\n").unwrap(), vec![]);
    }

    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    );

    fn row() -> impl Strategy<Value = Row> {
        let user = "[a-z0-9][a-z0-9._+@-]{0,20}";
        // Any password without NUL/CR/LF, including separators and quotes.
        let password = "[^\\x00\\r\\n]{1,20}";
        let options = prop::option::of("[a-z -]{1,10}(\n[a-z]{1,5})?");
        (
            user,
            password,
            user,
            password,
            prop::option::of("[a-z]{1,8}\\.org"),
            options,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn csv_like_noise_never_panics_and_lines_are_in_range(
            body in "[a-c,\"\r\n #@-]{0,200}",
            header in "(# x\n)?user1,password1(,user2)?(,options)?\r?\n",
        ) {
            let input = format!("{header}{body}");
            let lines = input.matches('\n').count() + usize::from(!input.ends_with('\n'));
            match parse_csv(input.as_bytes(), &BatchLimits::default()) {
                Ok(pairs) => {
                    for pair in pairs {
                        prop_assert!((2..=lines).contains(&pair.line));
                    }
                }
                Err(errors) => {
                    for error in errors.0 {
                        prop_assert!((1..=lines).contains(&error.line), "{:?}", error);
                    }
                }
            }
        }

        #[test]
        fn generated_csv_batches_round_trip(
            rows in prop::collection::vec(row(), 0..20),
            reversed in any::<bool>(),
            crlf in any::<bool>(),
            always_quote in any::<bool>(),
        ) {
            let mut header = vec!["user1", "password1", "user2", "password2", "host1", "options"];
            if reversed {
                header.reverse();
            }
            let style = if always_quote { csv::QuoteStyle::Always } else { csv::QuoteStyle::Necessary };
            let terminator = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
            let mut writer = csv::WriterBuilder::new()
                .quote_style(style)
                .terminator(terminator)
                .from_writer(Vec::new());
            writer.write_record(&header).unwrap();
            let mut expected = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (user1, password1, user2, password2, host1, options) in rows {
                if !seen.insert((user1.clone(), user2.clone())) {
                    continue;
                }
                // Only quoted fields keep outer whitespace; see module docs.
                let keeps = |p: &str| always_quote || p.trim() == p;
                if !keeps(&password1) || !keeps(&password2) {
                    continue;
                }
                writer.flush().unwrap();
                let line = 1 + writer.get_ref().iter().filter(|&&b| b == b'\n').count();
                let mut fields = vec![
                    user1.clone(),
                    password1.clone(),
                    user2.clone(),
                    password2.clone(),
                    host1.clone().unwrap_or_default(),
                    options.clone().unwrap_or_default(),
                ];
                if reversed {
                    fields.reverse();
                }
                writer.write_record(&fields).unwrap();
                expected.push(MailboxPair {
                    line,
                    user1,
                    password1: Secret::new(password1),
                    user2,
                    password2: Secret::new(password2),
                    host1,
                    host2: None,
                    options: options.as_deref().map(str::trim).filter(|o| !o.is_empty()).map(String::from),
                });
            }
            let input = writer.into_inner().unwrap();
            prop_assert_eq!(parse_csv(&input, &BatchLimits::default()).unwrap(), expected);
        }
    }
}
