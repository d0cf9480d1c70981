//! Extra imapsync arguments typed by an admin: tokenising and checking
//! them against the allowlist (`allowlist.rs`).
//!
//! imapsync has options that evaluate Perl code (`--regextrans2`, ...), run
//! commands (`--pipemess`), read or write files, or print passwords
//! (`--debug*`, `--showpasswords`). Extra arguments therefore go through an
//! allowlist of option names, each with the kind of value it takes, and
//! everything else is refused. Option names are matched case-insensitively
//! (Getopt::Long, imapsync's option parser, ignores case by default) and
//! emitted in canonical lower case, so neither case tricks nor
//! abbreviations reach imapsync.
//!
//! Error messages may name an option but never echo a value: a confused
//! admin could paste a password after `--password1`.

use super::OptionError;
use super::allowlist::{ALLOWED, Kind, check_value, refusal};

/// Longest extra-arguments string.
const MAX_INPUT_LEN: usize = 4096;
/// Most tokens in one extra-arguments string.
const MAX_TOKENS: usize = 200;

/// One validated extra argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExtraArg {
    /// Index of the option's token, for error fields.
    pub(super) index: usize,
    /// Canonical option name without `--`.
    pub(super) name: &'static str,
    pub(super) value: Option<String>,
}

impl ExtraArg {
    pub(super) fn push_argv(&self, argv: &mut Vec<String>) {
        argv.push(format!("--{}", self.name));
        argv.extend(self.value.clone());
    }
}

/// Splits `input` on whitespace, with `"..."` and `'...'` grouping (quotes
/// are removed, can sit inside a token as in `--include="a b"`, and have no
/// escapes), then validates the arguments against the allowlist. Returns
/// the arguments normalised to separate argv elements (`--opt=value`
/// becomes `--opt`, `value`).
pub fn parse_extra_args(input: &str) -> Result<Vec<String>, Vec<OptionError>> {
    let tokens = tokenize(input).map_err(|e| vec![e])?;
    let (args, errors) = check_tokens(&tokens);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut argv = Vec::with_capacity(tokens.len());
    for arg in &args {
        arg.push_argv(&mut argv);
    }
    Ok(argv)
}

fn error(index: usize, message: impl Into<String>) -> OptionError {
    OptionError {
        field: format!("extra_args[{index}]"),
        message: message.into(),
    }
}

fn tokenize(input: &str) -> Result<Vec<String>, OptionError> {
    let whole = |message: &str| OptionError {
        field: "extra_args".into(),
        message: message.into(),
    };
    if input.len() > MAX_INPUT_LEN {
        return Err(whole("the extra arguments are longer than 4096 bytes"));
    }
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut quote = None;
    for c in input.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else {
                    current.push(c);
                }
                in_token = true;
            }
        }
    }
    if quote.is_some() {
        return Err(error(tokens.len(), "unterminated quote"));
    }
    if in_token {
        tokens.push(current);
    }
    if tokens.len() > MAX_TOKENS {
        return Err(whole("too many extra arguments (at most 200)"));
    }
    Ok(tokens)
}

/// Validates tokens (as typed, or as stored in `extra_args`), returning the
/// arguments that passed and one error per problem; error fields use the
/// token index.
pub(super) fn check_tokens(tokens: &[String]) -> (Vec<ExtraArg>, Vec<OptionError>) {
    let mut args = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let index = i;
        let token = &tokens[i];
        i += 1;
        let Some(body) = token.strip_prefix("--") else {
            let message = if token.starts_with('-') {
                "options must start with '--'"
            } else {
                "expected an option starting with '--', found a value"
            };
            errors.push(error(index, message));
            continue;
        };
        let (name, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        let lower = name.to_ascii_lowercase();
        let Some(&(canonical, kind)) = ALLOWED.iter().find(|(n, _)| *n == lower) else {
            errors.push(error(index, refusal(&lower)));
            // Skip what is probably the refused option's value, so that it
            // is neither reported (echoing nothing is the rule anyway) nor
            // mistaken for an option.
            if inline_value.is_none() && tokens.get(i).is_some_and(|t| !t.starts_with('-')) {
                i += 1;
            }
            continue;
        };
        if kind == Kind::Flag {
            if inline_value.is_some() {
                errors.push(error(index, format!("--{canonical} takes no value")));
            } else {
                let name = canonical;
                args.push(ExtraArg {
                    index,
                    name,
                    value: None,
                });
            }
            continue;
        }
        let value = match inline_value {
            Some(value) => value,
            // A following option is not taken as the value: `--include
            // --regextrans2 x` must still report --regextrans2.
            None => match tokens.get(i) {
                Some(next) if !next.starts_with("--") => {
                    i += 1;
                    next.as_str()
                }
                _ => {
                    let message = format!("--{canonical} needs {}", kind.describe());
                    errors.push(error(index, message));
                    continue;
                }
            },
        };
        match check_value(kind, value) {
            Ok(()) => args.push(ExtraArg {
                index,
                name: canonical,
                value: Some(value.to_owned()),
            }),
            Err(reason) => errors.push(error(index, format!("--{canonical}: {reason}"))),
        }
    }
    (args, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(input: &str) -> Vec<String> {
        parse_extra_args(input).unwrap_or_else(|e| panic!("{input:?}: {e:?}"))
    }

    fn refused(input: &str) -> Vec<OptionError> {
        parse_extra_args(input).expect_err(input)
    }

    fn only_error(input: &str) -> OptionError {
        let mut errors = refused(input);
        assert_eq!(errors.len(), 1, "{input:?}: {errors:?}");
        errors.remove(0)
    }

    #[test]
    fn unknown_and_malformed_options() {
        let error = only_error("--frobnicate");
        assert_eq!(
            error.message,
            "unknown or unsupported imapsync option --frobnicate"
        );
        // Abbreviations and negations of allowed options are not allowed.
        for input in [
            "--auto",
            "--noautomap",
            "--no-automap",
            "--sslargs1 SSL_ca_file=/x",
        ] {
            assert!(
                only_error(input)
                    .message
                    .starts_with("unknown or unsupported"),
                "{input}"
            );
        }
        assert_eq!(
            only_error("-automap").message,
            "options must start with '--'"
        );
        assert_eq!(only_error("--").message, "a bare '--' is not allowed");
        let error = only_error("stray");
        assert_eq!(
            error.message,
            "expected an option starting with '--', found a value"
        );
        let weird = only_error("--a\u{7}b=topsecret");
        assert_eq!(weird.message, "unknown or unsupported imapsync option");
        assert_eq!(
            only_error("--automap=yes").message,
            "--automap takes no value"
        );
        assert_eq!(only_error("--maxage").message, "--maxage needs an integer");
        assert_eq!(
            only_error("--maxage=x").message,
            "--maxage: expected an integer"
        );
        assert_eq!(
            only_error("--maxage 1.5").message,
            "--maxage: expected an integer"
        );
        assert_eq!(
            only_error("--maxage +5").message,
            "--maxage: expected an integer"
        );
        assert_eq!(
            only_error("--maxmessagespersecond 1.").message,
            "--maxmessagespersecond: expected a number"
        );
        assert_eq!(
            only_error("--folder ''").message,
            "--folder: expected a folder name"
        );
        assert_eq!(
            only_error("--sep1 ab").message,
            "--sep1: expected a single character"
        );
        assert_eq!(
            only_error("--useheader 'X: y'").message,
            "--useheader: expected a header name"
        );
        assert_eq!(
            only_error("--authmech1 'a b'").message,
            "--authmech1: expected an authentication mechanism"
        );
    }

    #[test]
    fn quotes_group_and_are_removed() {
        assert_eq!(
            ok("  --folder \"Sent Items\"\t--include='^a b$' "),
            ["--folder", "Sent Items", "--include", "^a b$"]
        );
        assert_eq!(
            ok("--folder \"it's\" --folder 'say \"hi\"'"),
            ["--folder", "it's", "--folder", "say \"hi\""]
        );
        assert_eq!(ok("--folder=a\"b c\"d"), ["--folder", "ab cd"]);
        // No escapes: a backslash is literal (regexes need it).
        assert_eq!(
            ok(r"--include '^INBOX\.Sent$'"),
            ["--include", r"^INBOX\.Sent$"]
        );
        assert_eq!(ok(""), Vec::<String>::new());
        assert_eq!(ok("   "), Vec::<String>::new());
        let error = only_error("--automap --folder 'unterminated");
        assert_eq!(
            (error.field.as_str(), error.message.as_str()),
            ("extra_args[2]", "unterminated quote")
        );
        // No shell expansion of any kind.
        assert_eq!(
            ok("--folder $HOME --folder `id` --folder ~"),
            ["--folder", "$HOME", "--folder", "`id`", "--folder", "~"]
        );
    }

    #[test]
    fn injection_attempts_are_refused_and_errors_carry_the_token_index() {
        let errors = refused("--include \"x\" --regextrans2 's/a/b/'");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "extra_args[2]");
        // An option where a value is expected is not swallowed as the value.
        let errors = refused("--include --regextrans2 s/a/b/e");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["extra_args[0]", "extra_args[1]"]);
        assert!(errors[1].message.contains("--regextrans2 is refused"));
        let errors = refused(
            "--automap --pipemess 'rm -rf /' --folder=-x --passfile1 /etc/shadow --logfile=/tmp/x",
        );
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "extra_args[1]",
                "extra_args[3]",
                "extra_args[4]",
                "extra_args[6]"
            ]
        );
        let all = format!("{errors:?}");
        for value in ["rm -rf", "shadow", "/tmp/x"] {
            assert!(!all.contains(value), "{all}");
        }
        // Too much input is refused before tokenising.
        let errors = refused(&"--automap ".repeat(500));
        assert_eq!(errors[0].field, "extra_args");
        assert!(
            refused(&"--automap ".repeat(201))[0]
                .message
                .contains("at most 200")
        );
    }

    #[test]
    fn stored_tokens_are_checked_like_typed_ones() {
        let tokens: Vec<String> = ["--maxage=3", "--folder", "a b", "--nolog"]
            .map(String::from)
            .into();
        let (args, errors) = check_tokens(&tokens);
        let names: Vec<_> = args.iter().map(|a| (a.index, a.name)).collect();
        assert_eq!(names, [(0, "maxage"), (1, "folder")]);
        assert_eq!(errors[0].field, "extra_args[3]");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_output_is_allowlisted(input in "(?s).{0,200}") {
            if let Ok(argv) = parse_extra_args(&input) {
                let mut expect_option = true;
                for (i, arg) in argv.iter().enumerate() {
                    prop_assert!(!arg.contains(char::is_control));
                    if expect_option {
                        let name = arg.strip_prefix("--").unwrap();
                        let kind = ALLOWED.iter().find(|(n, _)| *n == name).unwrap().1;
                        expect_option = kind == Kind::Flag;
                    } else {
                        prop_assert!(!arg.starts_with('-') || arg[1..].bytes().all(|b| b.is_ascii_digit()), "{i}");
                        expect_option = true;
                    }
                }
                prop_assert!(expect_option);
            }
        }

        #[test]
        fn words_with_options_are_refused_unless_allowed(
            words in prop::collection::vec("--[a-z0-9]{1,20}", 1..5),
        ) {
            let input = words.join(" ");
            let allowed = words.iter().all(|w| {
                ALLOWED.iter().any(|(n, k)| *k == Kind::Flag && w[2..] == **n)
            });
            prop_assert_eq!(parse_extra_args(&input).is_ok(), allowed);
        }
    }
}
