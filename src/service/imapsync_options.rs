//! Typed migration options and their translation into imapsync arguments.
//!
//! The runner builds imapsync's argv as a `Vec<String>` (never a shell
//! string), so each value is its own argv element and needs no quoting. What
//! still matters is *which* options reach imapsync: the typed options below
//! map to a fixed set of flags, and free-form extra arguments go through the
//! allowlist in `imapsync_options/allowlist.rs`.
//!
//! Call [`MigrationOptions::validate`] before [`MigrationOptions::to_imapsync_args`];
//! the latter is infallible and, as a second line of defence, drops any
//! extra argument that does not pass the allowlist.

use serde::{Deserialize, Serialize};

use crate::service::hosts::Provider;

mod allowlist;
mod extra_args;

pub use allowlist::MAX_REGEX_CHARS;
use allowlist::check_regex;
pub use extra_args::parse_extra_args;
use extra_args::{ExtraArg, check_tokens};

/// Most entries in `include_folders` or `exclude_folders`.
pub const MAX_FOLDER_REGEXES: usize = 100;
/// Longest accepted `timeout_secs`.
pub const MAX_TIMEOUT_SECS: u32 = 3600;

/// How imapsync talks TLS to one side.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// imapsync's default: STARTTLS when the server offers it (and implicit
    /// TLS on port 993). No flag.
    #[default]
    Auto,
    /// No TLS at all (`--notls`).
    Plain,
    /// STARTTLS required (`--tls`).
    Starttls,
    /// Implicit TLS, usually port 993 (`--ssl`).
    Implicit,
}

/// Migration settings of a batch (or of one row, after merging).
///
/// `Default` is written by hand rather than derived so that
/// `MigrationOptions::default()` and deserialising `{}` agree: both have
/// `add_header: true`, imapsync's recommended setting that lets it find
/// messages without a Message-Id again on the next run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct MigrationOptions {
    pub dry_run: bool,
    pub just_login: bool,
    pub just_folders: bool,
    /// Folder regexes (`--include`).
    pub include_folders: Vec<String>,
    /// Folder regexes (`--exclude`).
    pub exclude_folders: Vec<String>,
    pub max_age_days: Option<u32>,
    pub min_age_days: Option<u32>,
    pub max_size_bytes: Option<u64>,
    pub sync_duplicates: bool,
    pub add_header: bool,
    pub delete_on_destination: bool,
    pub delete_confirmed: bool,
    pub tls1: TlsMode,
    pub tls2: TlsMode,
    pub timeout_secs: Option<u32>,
    /// Accept a self-signed (or otherwise unverifiable) TLS certificate from host1. The
    /// native engine and the verifier honour it; imapsync needs no flag (see
    /// [`MigrationOptions::to_imapsync_args`]). Old stored options lack it: false.
    pub accept_invalid_certs1: bool,
    pub accept_invalid_certs2: bool,
    /// Allowlisted extra arguments, one argv element each (see
    /// [`parse_extra_args`]).
    pub extra_args: Vec<String>,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            just_login: false,
            just_folders: false,
            include_folders: Vec::new(),
            exclude_folders: Vec::new(),
            max_age_days: None,
            min_age_days: None,
            max_size_bytes: None,
            sync_duplicates: false,
            add_header: true,
            delete_on_destination: false,
            delete_confirmed: false,
            tls1: TlsMode::Auto,
            tls2: TlsMode::Auto,
            timeout_secs: None,
            accept_invalid_certs1: false,
            accept_invalid_certs2: false,
            extra_args: Vec::new(),
        }
    }
}

/// A problem with one option. `field` names it the way the form does, with
/// an index for list entries: `include_folders[1]`, `extra_args[0]`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct OptionError {
    pub field: String,
    pub message: String,
}

impl OptionError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl MigrationOptions {
    /// Checks every option and returns all problems at once.
    pub fn validate(&self) -> Result<(), Vec<OptionError>> {
        let mut errors = Vec::new();
        for (name, list) in [
            ("include_folders", &self.include_folders),
            ("exclude_folders", &self.exclude_folders),
        ] {
            if list.len() > MAX_FOLDER_REGEXES {
                let message = format!("at most {MAX_FOLDER_REGEXES} regexes");
                errors.push(OptionError::new(name, message));
            }
            for (i, regex) in list.iter().enumerate() {
                if let Err(message) = check_regex(regex) {
                    errors.push(OptionError::new(format!("{name}[{i}]"), message));
                }
            }
        }
        if self.max_age_days == Some(0) {
            errors.push(OptionError::new("max_age_days", "must be at least 1 day"));
        }
        if let (Some(min), Some(max)) = (self.min_age_days, self.max_age_days)
            && min >= max
        {
            let message =
                "must be smaller than max_age_days, or no message is old enough and young enough";
            errors.push(OptionError::new("min_age_days", message));
        }
        if self.max_size_bytes == Some(0) {
            errors.push(OptionError::new(
                "max_size_bytes",
                "must be at least 1 byte",
            ));
        }
        if self.just_login && self.just_folders {
            let message = "just_login and just_folders exclude each other";
            errors.push(OptionError::new("just_folders", message));
        }
        if self.delete_on_destination && !self.delete_confirmed {
            let message = "delete on destination removes messages on host2 that are not on host1; \
                           confirm it explicitly";
            errors.push(OptionError::new("delete_on_destination", message));
        }
        if self
            .timeout_secs
            .is_some_and(|t| !(1..=MAX_TIMEOUT_SECS).contains(&t))
        {
            let message = format!("must be between 1 and {MAX_TIMEOUT_SECS} seconds");
            errors.push(OptionError::new("timeout_secs", message));
        }
        let (args, extra_errors) = check_tokens(&self.extra_args);
        errors.extend(extra_errors);
        errors.extend(args.iter().filter_map(|arg| self.conflict(arg)));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// An extra argument that would contradict a typed option (imapsync
    /// would silently keep one of the two).
    fn conflict(&self, arg: &ExtraArg) -> Option<OptionError> {
        let typed = match arg.name {
            "ssl1" | "tls1" | "notls1" if self.tls1 != TlsMode::Auto => "tls1",
            "ssl2" | "tls2" | "notls2" if self.tls2 != TlsMode::Auto => "tls2",
            "maxage" if self.max_age_days.is_some() => "max_age_days",
            "minage" if self.min_age_days.is_some() => "min_age_days",
            "maxsize" if self.max_size_bytes.is_some() => "max_size_bytes",
            "timeout1" | "timeout2" if self.timeout_secs.is_some() => "timeout_secs",
            _ => return None,
        };
        let message = format!("--{} conflicts with the {typed} setting", arg.name);
        Some(OptionError::new(
            format!("extra_args[{}]", arg.index),
            message,
        ))
    }

    /// The imapsync arguments for these options, one argv element each;
    /// hosts, users, passwords and logging are added by the runner. Provider
    /// presets (`--gmail1`, `--office2`) are added for known providers
    /// unless already among the extra arguments.
    pub fn to_imapsync_args(&self, provider1: Provider, provider2: Provider) -> Vec<String> {
        fn flag(on: bool, name: &str, argv: &mut Vec<String>) {
            if on {
                argv.push(name.to_owned());
            }
        }
        let mut argv = Vec::new();
        flag(self.dry_run, "--dry", &mut argv);
        flag(self.just_login, "--justlogin", &mut argv);
        flag(self.just_folders, "--justfolders", &mut argv);
        for regex in &self.include_folders {
            argv.extend(["--include".to_owned(), regex.clone()]);
        }
        for regex in &self.exclude_folders {
            argv.extend(["--exclude".to_owned(), regex.clone()]);
        }
        let numbers = [
            ("--maxage", self.max_age_days.map(u64::from)),
            ("--minage", self.min_age_days.map(u64::from)),
            ("--maxsize", self.max_size_bytes),
        ];
        for (name, value) in numbers {
            if let Some(value) = value {
                argv.extend([name.to_owned(), value.to_string()]);
            }
        }
        flag(self.sync_duplicates, "--syncduplicates", &mut argv);
        flag(self.add_header, "--addheader", &mut argv);
        // Belt and braces: validate() already refuses the unconfirmed case.
        let delete = self.delete_on_destination && self.delete_confirmed;
        flag(delete, "--delete2", &mut argv);
        for (mode, side) in [(self.tls1, '1'), (self.tls2, '2')] {
            let name = match mode {
                TlsMode::Auto => continue,
                TlsMode::Plain => "--notls",
                TlsMode::Starttls => "--tls",
                TlsMode::Implicit => "--ssl",
            };
            argv.push(format!("{name}{side}"));
        }
        // accept_invalid_certs1/2 map to nothing: imapsync 2.229 does not verify server
        // certificates unless told to (`--sslargs1 SSL_verify_mode=1`), so a self-signed
        // certificate is already accepted. Should a later imapsync verify by default, this
        // is where `--sslargs1 SSL_verify_mode=0` would go.
        if let Some(timeout) = self.timeout_secs {
            let timeout = timeout.to_string();
            argv.extend(["--timeout1".to_owned(), timeout.clone()]);
            argv.extend(["--timeout2".to_owned(), timeout]);
        }
        let (extra, _) = check_tokens(&self.extra_args);
        let has = |name: &str| extra.iter().any(|arg| arg.name == name);
        for (provider, side) in [(provider1, '1'), (provider2, '2')] {
            let preset = match provider {
                Provider::Gmail => "gmail",
                Provider::Office365 => "office",
                Provider::Other => continue,
            };
            let name = format!("{preset}{side}");
            if !has(&name) {
                argv.push(format!("--{name}"));
            }
        }
        for arg in &extra {
            arg.push_argv(&mut argv);
        }
        argv
    }
}

#[cfg(test)]
mod tests;
