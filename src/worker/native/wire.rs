//! IMAP wire format: parsing server responses (RFC 3501 §7, §9) and quoting arguments.
//!
//! A response arrives as text segments separated by literals (`{n}\r\n` + n bytes); the
//! connection collects them as [`Part`]s and [`parse`] turns them into a [`Resp`]. Only what
//! the engine reads is modelled: status responses with their code, and data responses as a
//! tree of [`Value`]s (atoms, strings, NIL, lists). Section specs such as
//! `BODY[HEADER.FIELDS (MESSAGE-ID)]` stay one atom, brackets and all.

/// One piece of a response as read from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Text without its CRLF; ends with `{n}` when a literal follows.
    Text(Vec<u8>),
    Literal(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Atom(String),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl Value {
    /// The bytes of an atom or string (`NIL` and lists have none).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(a) => Some(a.as_bytes()),
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text (lossy for 8-bit strings).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub fn number(&self) -> Option<u64> {
        match self {
            Value::Atom(a) => a.parse().ok(),
            _ => None,
        }
    }

    pub fn list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    /// `tag` is `None` for untagged status responses (greeting, BYE, untagged OK/NO).
    Status {
        tag: Option<String>,
        status: Status,
        /// The response code without brackets (`APPENDUID 1 7`, `OVERQUOTA`), if any.
        code: Option<String>,
        text: String,
    },
    /// `* [number] NAME values...`: `FETCH`, `LIST`, `CAPABILITY`, `EXISTS`...
    Data {
        number: Option<u64>,
        name: String,
        values: Vec<Value>,
    },
    /// `+ text`: the server waits for a literal or a SASL response.
    Continue(String),
}

/// Parses one complete response.
pub fn parse(parts: &[Part]) -> Result<Resp, String> {
    let mut lx = Lexer::new(parts);
    let tag = lx.word().ok_or("empty response")?;
    if tag == "+" {
        return Ok(Resp::Continue(lx.rest_text()));
    }
    let second = lx.word().ok_or("response without a keyword")?;
    let (number, name) = match second.parse::<u64>() {
        Ok(n) if tag == "*" => (Some(n), lx.word().ok_or("number without a keyword")?),
        _ => (None, second),
    };
    let upper = name.to_ascii_uppercase();
    let status = match upper.as_str() {
        "OK" => Some(Status::Ok),
        "NO" => Some(Status::No),
        "BAD" => Some(Status::Bad),
        "BYE" => Some(Status::Bye),
        "PREAUTH" => Some(Status::Preauth),
        _ => None,
    };
    if let Some(status) = status.filter(|_| number.is_none()) {
        let (code, text) = split_code(&lx.rest_text());
        let tag = (tag != "*").then_some(tag);
        return Ok(Resp::Status {
            tag,
            status,
            code,
            text,
        });
    }
    if tag != "*" {
        return Err(format!("tagged response without a status: {upper}"));
    }
    let mut values = Vec::new();
    while let Some(v) = lx.value()? {
        values.push(v);
    }
    Ok(Resp::Data {
        number,
        name: upper,
        values,
    })
}

/// `[CODE args] text` → (`CODE args`, `text`).
fn split_code(text: &str) -> (Option<String>, String) {
    let text = text.trim_start();
    if let Some(rest) = text.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        return (
            Some(rest[..end].to_owned()),
            rest[end + 1..].trim_start().to_owned(),
        );
    }
    (None, text.to_owned())
}

struct Lexer<'a> {
    parts: &'a [Part],
    idx: usize,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(parts: &'a [Part]) -> Self {
        Lexer {
            parts,
            idx: 0,
            pos: 0,
        }
    }

    fn text(&self) -> &'a [u8] {
        match self.parts.get(self.idx) {
            Some(Part::Text(t)) => &t[self.pos.min(t.len())..],
            _ => &[],
        }
    }

    fn skip_spaces(&mut self) {
        let n = self.text().iter().take_while(|&&b| b == b' ').count();
        self.pos += n;
    }

    /// The next space-delimited word of the first text part.
    fn word(&mut self) -> Option<String> {
        self.skip_spaces();
        let t = self.text();
        let n = t.iter().take_while(|&&b| b != b' ').count();
        if n == 0 {
            return None;
        }
        self.pos += n;
        Some(String::from_utf8_lossy(&t[..n]).into_owned())
    }

    /// The rest of the current text part (status text never contains literals).
    fn rest_text(&mut self) -> String {
        self.skip_spaces();
        let t = self.text();
        self.pos += t.len();
        String::from_utf8_lossy(t).into_owned()
    }

    /// The next value; `None` at the end of the response or at a `)`.
    fn value(&mut self) -> Result<Option<Value>, String> {
        self.skip_spaces();
        let t = self.text();
        let Some(&first) = t.first() else {
            return Ok(None);
        };
        match first {
            b')' => Ok(None),
            b'(' => {
                self.pos += 1;
                let mut items = Vec::new();
                while let Some(v) = self.value()? {
                    items.push(v);
                }
                self.skip_spaces();
                if self.text().first() != Some(&b')') {
                    return Err("unterminated list".into());
                }
                self.pos += 1;
                Ok(Some(Value::List(items)))
            }
            b'"' => {
                let mut out = Vec::new();
                let mut i = 1;
                loop {
                    match t.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            out.push(*t.get(i + 1).ok_or("bad escape")?);
                            i += 2;
                        }
                        Some(&b) => {
                            out.push(b);
                            i += 1;
                        }
                    }
                }
                self.pos += i + 1;
                Ok(Some(Value::Str(out)))
            }
            b'{' => {
                let close = t.iter().position(|&b| b == b'}').ok_or("bad literal")?;
                if close + 1 != t.len() {
                    return Err("literal marker not at the end of a line".into());
                }
                let Some(Part::Literal(lit)) = self.parts.get(self.idx + 1) else {
                    return Err("literal missing".into());
                };
                self.idx += 2;
                self.pos = 0;
                Ok(Some(Value::Str(lit.clone())))
            }
            _ => {
                let mut depth = 0usize;
                let n = t
                    .iter()
                    .take_while(|&&b| match b {
                        b'[' => {
                            depth += 1;
                            true
                        }
                        b']' => {
                            depth = depth.saturating_sub(1);
                            true
                        }
                        b' ' | b'(' | b')' if depth == 0 => false,
                        _ => true,
                    })
                    .count();
                self.pos += n;
                let atom = String::from_utf8_lossy(&t[..n]).into_owned();
                Ok(Some(if atom.eq_ignore_ascii_case("NIL") {
                    Value::Nil
                } else {
                    Value::Atom(atom)
                }))
            }
        }
    }
}

/// If `text` (one segment, CRLF removed) ends with a literal marker `{n}` or `{n+}`, its size.
pub fn literal_size(text: &[u8]) -> Option<u64> {
    let inner = text.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A quoted string for `s`, or `None` when it must be sent as a literal (CR, LF, NUL, 8-bit).
pub fn quoted(s: &[u8]) -> Option<Vec<u8>> {
    if s.iter()
        .any(|&b| b == 0 || b == b'\r' || b == b'\n' || b >= 0x80)
    {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    Some(out)
}

/// The key/value pairs of a FETCH response's list, keys upper-cased.
pub fn fetch_items(values: &[Value]) -> Vec<(String, &Value)> {
    let Some(Value::List(items)) = values.first() else {
        return Vec::new();
    };
    items
        .chunks(2)
        .filter_map(|kv| match kv {
            [Value::Atom(k), v] => Some((k.to_ascii_uppercase(), v)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Part {
        Part::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn status_responses_with_codes() {
        let r = parse(&[text("A7 OK [APPENDUID 1700000000 42] Append completed.")]).unwrap();
        assert_eq!(
            r,
            Resp::Status {
                tag: Some("A7".into()),
                status: Status::Ok,
                code: Some("APPENDUID 1700000000 42".into()),
                text: "Append completed.".into()
            }
        );
        let r = parse(&[text("* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot ready.")]).unwrap();
        assert!(
            matches!(r, Resp::Status { tag: None, code: Some(c), .. } if c.ends_with("LITERAL+"))
        );
        let r = parse(&[text("A1 NO [OVERQUOTA] Quota exceeded")]).unwrap();
        assert!(
            matches!(r, Resp::Status { status: Status::No, code: Some(c), .. } if c == "OVERQUOTA")
        );
        assert_eq!(
            parse(&[text("+ go ahead")]).unwrap(),
            Resp::Continue("go ahead".into())
        );
    }

    #[test]
    fn fetch_with_literal_and_section_atom() {
        let parts = [
            text(
                "* 3 FETCH (UID 17 RFC822.SIZE 2048 FLAGS (\\Seen $Label1) INTERNALDATE \
                 \"01-Feb-2024 10:00:00 +0100\" BODY[HEADER.FIELDS (MESSAGE-ID)] {25}",
            ),
            Part::Literal(b"Message-ID: <a@b>\r\n\r\n\r\n\r\n".to_vec()),
            text(")"),
        ];
        let Resp::Data {
            number,
            name,
            values,
        } = parse(&parts).unwrap()
        else {
            panic!()
        };
        assert_eq!((number, name.as_str()), (Some(3), "FETCH"));
        let items = fetch_items(&values);
        let keys: Vec<_> = items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "UID",
                "RFC822.SIZE",
                "FLAGS",
                "INTERNALDATE",
                "BODY[HEADER.FIELDS (MESSAGE-ID)]"
            ]
        );
        assert_eq!(items[0].1.number(), Some(17));
        assert_eq!(items[2].1.list().unwrap().len(), 2);
        assert!(items[4].1.bytes().unwrap().starts_with(b"Message-ID"));
    }

    #[test]
    fn list_namespace_and_escapes() {
        let r = parse(&[text(r#"* LIST (\HasNoChildren \Sent) "/" "a \"q\" \\b""#)]).unwrap();
        let Resp::Data { values, .. } = r else {
            panic!()
        };
        assert_eq!(values[1], Value::Str(b"/".to_vec()));
        assert_eq!(values[2], Value::Str(br#"a "q" \b"#.to_vec()));
        let r = parse(&[text(r#"* NAMESPACE (("INBOX." ".")) NIL NIL"#)]).unwrap();
        let Resp::Data { values, .. } = r else {
            panic!()
        };
        assert_eq!(values.len(), 3);
        assert_eq!(values[1], Value::Nil);
        let inner = values[0].list().unwrap()[0].list().unwrap();
        assert_eq!(inner[0], Value::Str(b"INBOX.".to_vec()));
        let r = parse(&[text("* LIST () NIL INBOX")]).unwrap();
        let Resp::Data { values, .. } = r else {
            panic!()
        };
        assert_eq!(
            values,
            [Value::List(vec![]), Value::Nil, Value::Atom("INBOX".into())]
        );
        assert!(parse(&[text("* LIST (a")]).is_err());
        assert!(parse(&[text("* X {3}")]).is_err());
    }

    #[test]
    fn literal_markers_and_quoting() {
        assert_eq!(literal_size(b"* 1 FETCH (BODY[] {1234}"), Some(1234));
        assert_eq!(literal_size(b"A1 APPEND x {12+}"), Some(12));
        assert_eq!(literal_size(b"text {}"), None);
        assert_eq!(literal_size(b"no literal"), None);
        assert_eq!(
            quoted(br#"p@ss w0rd "q" \z"#).unwrap(),
            br#""p@ss w0rd \"q\" \\z""#
        );
        assert_eq!(quoted("é".as_bytes()), None);
        assert_eq!(quoted(b"a\r\nb"), None);
    }
}
