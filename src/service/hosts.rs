//! IMAP host names: validation, HOSTS pattern expansion and provider presets.
//!
//! Hosts end up as separate imapsync argv elements (`--host1`, `--port1`), so
//! there is no shell quoting to get wrong, but a host must still never be
//! parsed as an option (leading `-`), never smuggle a URL, user or path, and
//! never be an ambiguous numeric form that the system resolver would turn
//! into an unexpected address (`0x7f000001`, `127.1` are 127.0.0.1 for
//! `inet_aton`). Whether an address is an acceptable *destination* (private
//! ranges, loopback) is a policy decision left to the caller.
//!
//! HOSTS pattern expansion (typing `mx1` to mean `mx1.mail.example.com`)
//! lives in `hosts/patterns.rs` and is re-exported here.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

mod patterns;

pub use patterns::{
    HostPattern, HostPatterns, MAX_PATTERN_CHARS, PatternError, PatternOrigin, Resolution,
};

/// Longest host name (RFC 1035, without the trailing dot).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest accepted raw input; anything longer cannot be a valid host
/// (253-byte name, trailing dot, `:65535`) and is refused before any
/// further work.
const MAX_INPUT_LEN: usize = MAX_HOSTNAME_LEN + 7;

/// A validated host with an optional port. `host` is lower-case, without a
/// trailing dot, and for IPv6 without brackets, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HostSpec {
    pub host: String,
    pub port: Option<u16>,
}

impl fmt::Display for HostSpec {
    /// `host`, `host:port`, `[::1]` or `[::1]:993`; the output parses back
    /// with [`parse_host`] to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Why a host was refused. Messages never echo the whole input (it may be
/// arbitrarily long); at most one offending character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the host is empty")]
    Empty,
    #[error("the host is too long ({len} bytes; at most {max})")]
    TooLong { len: usize, max: usize },
    #[error("the host must not contain control characters")]
    ControlChar,
    #[error("the host must not contain whitespace")]
    Whitespace,
    #[error("the host must not start with '-'")]
    LeadingDash,
    #[error("enter only the host name, not a URL or path (no '/')")]
    Url,
    #[error("enter only the host name, without a user ('@')")]
    AtSign,
    #[error("non-ASCII host names are not supported; use the punycode (xn--) form")]
    NonAscii,
    #[error("invalid character {0:?} in the host name (letters, digits, '-' and '.' only)")]
    InvalidChar(char),
    #[error("empty label in the host name (leading dot or two dots in a row)")]
    EmptyLabel,
    #[error("a label of the host name is longer than 63 characters")]
    LabelTooLong,
    #[error("a label of the host name must not start or end with '-'")]
    LabelHyphen,
    #[error("ambiguous numeric host; write an IPv4 address as four decimal numbers")]
    AmbiguousNumeric,
    #[error("invalid IPv6 address")]
    InvalidIpv6,
    #[error("missing ']' after the IPv6 address")]
    UnclosedBracket,
    #[error("unexpected characters after ']'; expected ':port'")]
    AfterBracket,
    #[error("write IPv6 addresses with a port in brackets, e.g. [2001:db8::1]:993")]
    Ipv6NeedsBrackets,
    #[error("the port is empty")]
    EmptyPort,
    #[error("the port must be a number from 1 to 65535")]
    InvalidPort,
}

/// Parses and normalises `host`, `host:port`, IPv4, `[ipv6]`,
/// `[ipv6]:port` or a bare IPv6 address (no port). Never panics.
pub fn parse_host(input: &str) -> Result<HostSpec, HostError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    if s.len() > MAX_INPUT_LEN {
        return Err(HostError::TooLong {
            len: s.len(),
            max: MAX_INPUT_LEN,
        });
    }
    // Cheap whole-string checks first, so the error names the real problem
    // (`imaps://host` is a URL, not an "invalid character ':'").
    if s.chars().any(char::is_control) {
        return Err(HostError::ControlChar);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(HostError::Whitespace);
    }
    if s.starts_with('-') {
        return Err(HostError::LeadingDash);
    }
    if s.contains('/') {
        return Err(HostError::Url);
    }
    if s.contains('@') {
        return Err(HostError::AtSign);
    }
    if !s.is_ascii() {
        return Err(HostError::NonAscii);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']').ok_or(HostError::UnclosedBracket)?;
        let address: Ipv6Addr = rest[..close].parse().map_err(|_| HostError::InvalidIpv6)?;
        let port = match &rest[close + 1..] {
            "" => None,
            after => Some(parse_port(
                after.strip_prefix(':').ok_or(HostError::AfterBracket)?,
            )?),
        };
        return Ok(HostSpec {
            host: address.to_string(),
            port,
        });
    }
    let (name, port) = match s.split_once(':') {
        None => (s, None),
        Some((name, port)) if !port.contains(':') => (name, Some(parse_port(port)?)),
        Some(_) => {
            // Several colons: only a bare IPv6 address makes sense.
            let address: Ipv6Addr = s.parse().map_err(|_| HostError::Ipv6NeedsBrackets)?;
            return Ok(HostSpec {
                host: address.to_string(),
                port: None,
            });
        }
    };
    Ok(HostSpec {
        host: parse_name(name)?,
        port,
    })
}

fn parse_port(port: &str) -> Result<u16, HostError> {
    if port.is_empty() {
        return Err(HostError::EmptyPort);
    }
    // Digits only: `u16::from_str` would also accept a leading '+'.
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::InvalidPort);
    }
    match port.parse::<u32>() {
        Ok(n @ 1..=65535) => u16::try_from(n).map_err(|_| HostError::InvalidPort),
        _ => Err(HostError::InvalidPort),
    }
}

/// Validates an IPv4 address or an RFC 1123 host name; returns it
/// normalised (canonical IPv4, or lower-case without trailing dot).
fn parse_name(name: &str) -> Result<String, HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if let Ok(address) = name.parse::<Ipv4Addr>() {
        return Ok(address.to_string());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_HOSTNAME_LEN {
        return Err(HostError::TooLong {
            len: name.len(),
            max: MAX_HOSTNAME_LEN,
        });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(HostError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
        {
            return Err(HostError::InvalidChar(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::LabelHyphen);
        }
    }
    // Not a dotted quad, yet numeric enough for inet_aton (`127.1`,
    // `0x7f000001`, `010.0.0.1`) or with an all-digit top-level label, which
    // no real domain has (RFC 3696).
    let all_digits = |label: &str| label.bytes().all(|b| b.is_ascii_digit());
    let numeric = |label: &str| {
        all_digits(label)
            || label
                .strip_prefix("0x")
                .or_else(|| label.strip_prefix("0X"))
                .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if name.rsplit('.').next().is_some_and(all_digits) || name.split('.').all(numeric) {
        return Err(HostError::AmbiguousNumeric);
    }
    Ok(name.to_ascii_lowercase())
}

/// Mail providers for which imapsync has presets (`--gmail1`, `--office2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Gmail,
    Office365,
    Other,
}

/// The provider behind a (validated, hence lower-case) host.
pub fn provider_of(host: &HostSpec) -> Provider {
    match host.host.as_str() {
        "imap.gmail.com" | "imap.googlemail.com" => Provider::Gmail,
        "outlook.office365.com" | "imap-mail.outlook.com" | "outlook.office.com" => {
            Provider::Office365
        }
        _ => Provider::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(input: &str) -> String {
        parse_host(input)
            .map(|h| h.to_string())
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    fn refused(input: &str) -> HostError {
        parse_host(input).expect_err(input)
    }

    #[test]
    fn accepts_and_normalises() {
        let cases = [
            ("imap.example.com", "imap.example.com"),
            ("  IMAP.Example.COM.  ", "imap.example.com"),
            ("mx1", "mx1"),
            ("imap.example.com:993", "imap.example.com:993"),
            ("host:0143", "host:143"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:143", "192.0.2.1:143"),
            ("[::1]", "[::1]"),
            ("[2001:DB8:0::1]:993", "[2001:db8::1]:993"),
            ("2001:db8::1", "[2001:db8::1]"),
            ("a-b.c-d.example:65535", "a-b.c-d.example:65535"),
            ("host\n", "host"),
        ];
        for (input, expected) in cases {
            assert_eq!(host(input), expected, "{input:?}");
        }
        let spec = parse_host("[::1]:993").unwrap();
        assert_eq!((spec.host.as_str(), spec.port), ("::1", Some(993)));
        let max_label = "a".repeat(63);
        assert!(parse_host(&format!("{max_label}.example")).is_ok());
        let max_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(max_name.len(), MAX_HOSTNAME_LEN);
        assert!(parse_host(&max_name).is_ok());
        assert!(parse_host(&format!("{max_name}.")).is_ok());
        assert!(parse_host(&format!("{max_name}.:65535")).is_ok());
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "a.example",
            "a.example:1",
            "[::1]:993",
            "[fe80::1]",
            "10.0.0.1:2",
        ] {
            let spec = parse_host(input).unwrap();
            assert_eq!(parse_host(&spec.to_string()).unwrap(), spec);
        }
    }

    #[test]
    fn refuses_hostile_and_malformed_input() {
        use HostError::*;
        let long = "a".repeat(1000);
        let too_long_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        let cases: Vec<(&str, HostError)> = vec![
            ("", Empty),
            ("   ", Empty),
            (":993", Empty),
            ("--help", LeadingDash),
            ("-oProxyCommand=x", LeadingDash),
            ("a b", Whitespace),
            ("a\u{a0}b", Whitespace),
            ("ho\nst", ControlChar),
            ("host\0", ControlChar),
            ("host\t:993", ControlChar),
            ("host:0", InvalidPort),
            ("host:99999", InvalidPort),
            ("host:65536", InvalidPort),
            ("host:+993", InvalidPort),
            ("host:-1", InvalidPort),
            ("host:993x", InvalidPort),
            ("host:", EmptyPort),
            ("[::1", UnclosedBracket),
            ("[::1]x", AfterBracket),
            ("[::1]:", EmptyPort),
            ("[::1]:0", InvalidPort),
            ("[not-ip]", InvalidIpv6),
            ("[fe80::1%eth0]", InvalidIpv6),
            ("[192.0.2.1]", InvalidIpv6),
            ("2001:db8::1:993x", Ipv6NeedsBrackets),
            ("a:b:c", Ipv6NeedsBrackets),
            (
                &long,
                TooLong {
                    len: 1000,
                    max: MAX_INPUT_LEN,
                },
            ),
            (
                &too_long_name,
                TooLong {
                    len: 254,
                    max: MAX_HOSTNAME_LEN,
                },
            ),
            ("imaps://imap.example.com", Url),
            ("imap.example.com/inbox", Url),
            ("user@imap.example.com", AtSign),
            ("bücher.example", NonAscii),
            ("imap.еxample.com", NonAscii), // Cyrillic 'е'
            ("host_name.example", InvalidChar('_')),
            ("host;rm", InvalidChar(';')),
            ("a'b", InvalidChar('\'')),
            ("$(reboot)", InvalidChar('$')),
            ("a..b", EmptyLabel),
            (".a", EmptyLabel),
            (".", EmptyLabel),
            ("a.-b", LabelHyphen),
            ("a-.b", LabelHyphen),
            ("127.1", AmbiguousNumeric),
            ("0x7f000001", AmbiguousNumeric),
            ("0x7F.0x1", AmbiguousNumeric),
            ("2130706433", AmbiguousNumeric),
            ("010.0.0.1", AmbiguousNumeric),
            ("256.1.1.1", AmbiguousNumeric),
            ("1.2.3.4.5", AmbiguousNumeric),
            ("example.123", AmbiguousNumeric),
        ];
        for (input, expected) in cases {
            assert_eq!(refused(input), expected, "{input:?}");
        }
        assert_eq!(refused(&format!("{}.x", "a".repeat(64))), LabelTooLong);
        // Messages name the reason without echoing the input.
        let message = refused(&format!("{long}\u{1}")).to_string();
        assert!(message.len() < 100, "{message}");
    }

    #[test]
    fn providers() {
        let provider = |s: &str| provider_of(&parse_host(s).unwrap());
        for gmail in [
            "imap.gmail.com",
            "IMAP.GMAIL.COM.",
            "imap.googlemail.com:993",
        ] {
            assert_eq!(provider(gmail), Provider::Gmail, "{gmail}");
        }
        for office in [
            "outlook.office365.com",
            "imap-mail.outlook.com",
            "outlook.office.com:993",
        ] {
            assert_eq!(provider(office), Provider::Office365, "{office}");
        }
        for other in [
            "gmail.com",
            "imap.gmail.com.evil.example",
            "mail.example.com",
            "[::1]",
        ] {
            assert_eq!(provider(other), Provider::Other, "{other}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_hosts_are_clean(input in "(?s).{0,300}") {
            if let Ok(spec) = parse_host(&input) {
                let shown = spec.to_string();
                prop_assert!(!shown.starts_with('-'));
                prop_assert!(shown.bytes().all(|b| b.is_ascii_graphic()));
                prop_assert!(!shown.contains(['/', '@']));
                prop_assert_eq!(parse_host(&shown).unwrap(), spec);
            }
        }

        #[test]
        fn generated_hosts_are_accepted(
            labels in prop::collection::vec("[a-z]([a-z0-9-]{0,10}[a-z0-9])?", 1..5),
            port in prop::option::of(1u16..),
        ) {
            let name = labels.join(".");
            let input = match port {
                Some(port) => format!("{name}:{port}"),
                None => name.clone(),
            };
            prop_assert_eq!(parse_host(&input).unwrap(), HostSpec { host: name, port });
        }
    }
}
