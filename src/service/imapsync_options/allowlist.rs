//! The allowlist of imapsync options an admin may pass as extra arguments,
//! the kind of value each takes, dedicated refusal messages for dangerous
//! options, and value checks (shared with the typed folder regexes).

/// Longest regex, in characters (also used for the typed folder regexes).
pub const MAX_REGEX_CHARS: usize = 500;
/// Compiled size limit of the sanity-check regex compilation.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Flag,
    /// Optional `-` then decimal digits.
    Int,
    /// Non-negative decimal number, e.g. `0.5`.
    Float,
    Regex,
    /// A folder name (non-empty).
    Folder,
    /// A folder prefix; may be empty (`--prefix2 ""` means "no prefix").
    Prefix,
    /// A header field name such as `Message-Id`.
    Header,
    /// A single hierarchy separator character.
    Char,
    /// A SASL mechanism name such as `PLAIN`.
    Mech,
}

impl Kind {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Kind::Flag => "no value",
            Kind::Int => "an integer",
            Kind::Float => "a number",
            Kind::Regex => "a regular expression",
            Kind::Folder => "a folder name",
            Kind::Prefix => "a folder prefix",
            Kind::Header => "a header name",
            Kind::Char => "a single character",
            Kind::Mech => "an authentication mechanism",
        }
    }
}

/// Options an admin may pass, without the leading `--`.
pub(super) const ALLOWED: &[(&str, Kind)] = {
    use Kind::*;
    &[
        ("addheader", Flag),
        ("authmech1", Mech),
        ("authmech2", Mech),
        ("automap", Flag),
        ("buffersize", Int),
        ("delete2duplicates", Flag),
        ("domino1", Flag),
        ("domino2", Flag),
        ("exchange1", Flag),
        ("exchange2", Flag),
        ("exclude", Regex),
        ("exitwhenover", Int),
        ("expunge1", Flag),
        ("folder", Folder),
        ("folderfirst", Folder),
        ("folderlast", Folder),
        ("folderrec", Folder),
        ("gmail1", Flag),
        ("gmail2", Flag),
        ("idatefromheader", Flag),
        ("include", Regex),
        ("maxage", Int),
        ("maxbytesafter", Int),
        ("maxbytespersecond", Int),
        ("maxlinelength", Int),
        ("maxmessagespersecond", Float),
        ("maxsize", Int),
        ("minage", Int),
        ("minsize", Int),
        ("nofoldersizes", Flag),
        ("nofoldersizesatend", Flag),
        ("noexpunge2", Flag),
        ("nosyncacls", Flag),
        ("nosyncduplicates", Flag),
        ("notls1", Flag),
        ("notls2", Flag),
        ("nouidexpunge2", Flag),
        ("nousecache", Flag),
        ("office1", Flag),
        ("office2", Flag),
        ("prefix1", Prefix),
        ("prefix2", Prefix),
        ("sep1", Char),
        ("sep2", Char),
        ("skipemptyfolders", Flag),
        ("skipsize", Flag),
        ("split1", Int),
        ("split2", Int),
        ("ssl1", Flag),
        ("ssl2", Flag),
        ("subfolder1", Folder),
        ("subfolder2", Folder),
        ("subscribeall", Flag),
        ("syncacls", Flag),
        ("syncduplicates", Flag),
        ("syncinternaldates", Flag),
        ("timeout1", Int),
        ("timeout2", Int),
        ("tls1", Flag),
        ("tls2", Flag),
        ("usecache", Flag),
        ("useheader", Header),
    ]
};

const PERL_CODE: &str = "it evaluates Perl code";
const RUNS_COMMAND: &str = "it runs an external command";
const PYMAP_SETS: &str = "pymap sets it itself from the batch";
const CREDENTIALS: &str = "pymap manages credentials itself";
const FILES: &str = "pymap manages log files, temporary files and processes itself";
const NOT_A_MIGRATION: &str = "it does not run a migration";
pub(super) const LEAKS: &str = "it can write passwords to the log";

/// Known-dangerous options with a dedicated explanation, without `--`.
/// Anything not allowed is refused anyway; these just say why.
const REFUSED: &[(&str, &str)] = &[
    ("regextrans2", PERL_CODE),
    ("regexmess", PERL_CODE),
    ("regexflag", PERL_CODE),
    ("skipmess", PERL_CODE),
    ("delete2foldersonly", PERL_CODE),
    ("delete2foldersbutnot", PERL_CODE),
    ("pipemess", RUNS_COMMAND),
    ("maxlinelengthcmd", RUNS_COMMAND),
    ("host1", PYMAP_SETS),
    ("host2", PYMAP_SETS),
    ("port1", PYMAP_SETS),
    ("port2", PYMAP_SETS),
    ("user1", PYMAP_SETS),
    ("user2", PYMAP_SETS),
    ("password1", PYMAP_SETS),
    ("password2", PYMAP_SETS),
    ("passfile1", PYMAP_SETS),
    ("passfile2", PYMAP_SETS),
    ("authuser1", CREDENTIALS),
    ("authuser2", CREDENTIALS),
    ("oauthaccesstoken1", CREDENTIALS),
    ("oauthaccesstoken2", CREDENTIALS),
    ("oauthdirect1", CREDENTIALS),
    ("oauthdirect2", CREDENTIALS),
    ("logdir", FILES),
    ("logfile", FILES),
    ("log", FILES),
    ("nolog", FILES),
    ("pidfile", FILES),
    ("pidfilelocking", FILES),
    ("tmpdir", FILES),
    ("config", FILES),
    ("dockercontext", FILES),
    ("nodockercontext", FILES),
    ("releasecheck", FILES),
    ("noreleasecheck", FILES),
    ("abort", "it kills other imapsync processes"),
    ("justconnect", NOT_A_MIGRATION),
    ("tests", NOT_A_MIGRATION),
    ("testslive", NOT_A_MIGRATION),
    ("testslive6", NOT_A_MIGRATION),
    ("version", NOT_A_MIGRATION),
    ("help", NOT_A_MIGRATION),
    ("showpasswords", LEAKS),
    ("delete1", "it deletes messages on the source"),
    ("delete", "it deletes messages on the source"),
    ("delete2folders", "it deletes folders on the destination"),
    (
        "delete2",
        "use the 'delete on destination' option, which needs an explicit confirmation",
    ),
    ("dry", "use the 'dry run' option instead"),
    ("justlogin", "use the 'just login' option instead"),
    ("justfolders", "use the 'just folders' option instead"),
];

/// Message for an option that is not allowed.
pub(super) fn refusal(lower: &str) -> String {
    let shown = if lower.is_empty() {
        "--".to_owned()
    } else if lower.len() <= 40
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        format!("--{lower}")
    } else {
        // Never echo something that may not even be an option name.
        return "unknown or unsupported imapsync option".into();
    };
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == lower) {
        format!("{shown} is refused: {why}")
    } else if lower.starts_with("debug") {
        format!("{shown} is refused: {LEAKS}")
    } else if lower.is_empty() {
        "a bare '--' is not allowed".into()
    } else {
        format!("unknown or unsupported imapsync option {shown}")
    }
}

pub(super) fn check_value(kind: Kind, value: &str) -> Result<(), String> {
    if value.chars().any(char::is_control) {
        return Err("the value must not contain control characters".into());
    }
    // Only integers may look like options (`-1`); anything else starting
    // with '-' could be parsed by imapsync as an option.
    if kind != Kind::Int && value.starts_with('-') {
        return Err("the value must not start with '-'".into());
    }
    let ok = match kind {
        Kind::Flag => value.is_empty(),
        Kind::Int => {
            let digits = value.strip_prefix('-').unwrap_or(value);
            (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        }
        Kind::Float => {
            let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
            let digits = |s: &str, max: usize| {
                (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
            };
            digits(int, 12) && digits(frac, 9)
        }
        Kind::Regex => return check_regex(value),
        Kind::Folder => !value.is_empty() && value.len() <= 1024,
        Kind::Prefix => value.len() <= 1024,
        Kind::Header => {
            (1..=76).contains(&value.len())
                && value.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        }
        Kind::Char => value.chars().count() == 1 && !value.starts_with(char::is_whitespace),
        Kind::Mech => {
            (1..=20).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {}", kind.describe()))
    }
}

/// Sanity check for a folder regex (shared with the typed include/exclude
/// lists). imapsync uses *Perl* regexes; compiling with the `regex` crate
/// only rejects obviously broken ones, at the price of also refusing Perl
/// extensions it lacks (look-around, back-references). Perl code blocks are
/// refused explicitly whatever the `regex` crate thinks of them.
pub(super) fn check_regex(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the regex is empty".into());
    }
    if value.chars().count() > MAX_REGEX_CHARS {
        return Err(format!(
            "the regex is longer than {MAX_REGEX_CHARS} characters"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("the regex must not contain control characters".into());
    }
    if value.starts_with('-') {
        return Err("the regex must not start with '-' (write [-] instead)".into());
    }
    if ["(?{", "(??{", "(*{"]
        .iter()
        .any(|code| value.contains(code))
    {
        return Err("Perl code in regexes ((?{ ... }), (??{ ... })) is refused".into());
    }
    regex::RegexBuilder::new(value)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| {
            // Syntax errors are multi-line drawings; the last line says why.
            let text = e.to_string();
            let why = text
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            format!("invalid regex: {why}")
        })
}

#[cfg(test)]
mod tests {
    use super::super::{OptionError, parse_extra_args};
    use super::*;

    fn ok(input: &str) -> Vec<String> {
        parse_extra_args(input).unwrap_or_else(|e| panic!("{input:?}: {e:?}"))
    }

    fn only_error(input: &str) -> OptionError {
        let mut errors = parse_extra_args(input).expect_err(input);
        assert_eq!(errors.len(), 1, "{input:?}: {errors:?}");
        errors.remove(0)
    }

    fn sample_value(kind: Kind) -> &'static str {
        match kind {
            Kind::Flag => "",
            Kind::Int => "42",
            Kind::Float => "0.5",
            Kind::Regex => "^Archive/.*$",
            Kind::Folder => "Sent Items",
            Kind::Prefix => "INBOX.",
            Kind::Header => "Message-Id",
            Kind::Char => "/",
            Kind::Mech => "PLAIN",
        }
    }

    #[test]
    fn every_allowed_option_passes_in_both_forms() {
        for &(name, kind) in ALLOWED {
            let value = sample_value(kind);
            if kind == Kind::Flag {
                assert_eq!(ok(&format!("--{name}")), [format!("--{name}")]);
                continue;
            }
            let expected = [format!("--{name}"), value.to_owned()];
            assert_eq!(ok(&format!("--{name} '{value}'")), expected, "{name}");
            assert_eq!(ok(&format!("--{name}=\"{value}\"")), expected, "{name}");
        }
    }

    #[test]
    fn every_refused_option_has_its_reason_and_value_is_not_echoed() {
        for &(name, why) in REFUSED {
            for input in [
                format!("--{name} s3cr3t"),
                format!("--{name}=s3cr3t"),
                format!("--{name}"),
            ] {
                let error = only_error(&input);
                assert_eq!(error.field, "extra_args[0]");
                assert_eq!(error.message, format!("--{name} is refused: {why}"));
            }
        }
        let error = only_error("--regextrans2 's/a/b/'");
        assert_eq!(
            error.message,
            "--regextrans2 is refused: it evaluates Perl code"
        );
        for debug in [
            "--debug",
            "--debugimap",
            "--debugimap1",
            "--debugcontent",
            "--DebugFlags",
        ] {
            let error = only_error(debug);
            assert!(
                error
                    .message
                    .ends_with("is refused: it can write passwords to the log"),
                "{debug}"
            );
        }
        let error = only_error("--PassWord1 hunter2");
        assert_eq!(
            error.message,
            "--password1 is refused: pymap sets it itself from the batch"
        );
    }

    #[test]
    fn values() {
        assert_eq!(
            ok("--maxage -1 --split1=-5"),
            ["--maxage", "-1", "--split1", "-5"]
        );
        assert_eq!(
            ok("--prefix2 '' --prefix1="),
            ["--prefix2", "", "--prefix1", ""]
        );
        let error = only_error("--folder -x");
        assert_eq!(error.message, "--folder: the value must not start with '-'");
        let error = only_error("--folder=\"a\nb\"");
        assert_eq!(
            error.message,
            "--folder: the value must not contain control characters"
        );
        // Unicode folder names and '=' inside values are fine.
        assert_eq!(
            ok("--folder=Gesendete=Objekte"),
            ["--folder", "Gesendete=Objekte"]
        );
        assert_eq!(ok("--folder 'Entwürfe'"), ["--folder", "Entwürfe"]);
    }

    #[test]
    fn regex_values() {
        for bad in ["(?{ system('id') })", "a(??{ $x })", "(*{ 1 })"] {
            let error = only_error(&format!("--include '{bad}'"));
            assert!(
                error.message.contains("Perl code"),
                "{bad}: {}",
                error.message
            );
        }
        let error = only_error("--exclude '(unclosed'");
        assert_eq!(error.message, "--exclude: invalid regex: unclosed group");
        assert!(
            only_error("--include '-x'")
                .message
                .contains("must not start with '-'")
        );
        let long = "a".repeat(MAX_REGEX_CHARS + 1);
        assert!(
            only_error(&format!("--include {long}"))
                .message
                .contains("longer than 500")
        );
        assert!(
            only_error("--include '(\\w{100}){100}'")
                .message
                .contains("invalid regex")
        );
        // Look-around is valid Perl but unsupported by the sanity check.
        assert!(
            only_error("--exclude '^(?!INBOX)'")
                .message
                .contains("invalid regex")
        );
    }
}
