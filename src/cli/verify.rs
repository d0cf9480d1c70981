//! `pymap verify`: compare two mailboxes, read-only, and say whether they are identical or
//! exactly what differs. The exit status tells scripts which (see [`EXIT_HELP`]).

use std::process::ExitCode;

use clap::Args;

use super::pair::PairArgs;
use crate::{
    service::imapsync_options::MigrationOptions,
    worker::native::{NativeOptions, VerifyReport, VerifySpec, verify},
};

/// Everything compared is equal.
pub const EXIT_IDENTICAL: u8 = 0;
/// The comparison ran and found differences.
pub const EXIT_DIFFERS: u8 = 1;
/// Bad flags or an unreadable password file: nothing was compared (clap uses 2 too).
pub const EXIT_USAGE: u8 = 2;
/// The comparison could not run: connection, TLS, login or server error.
pub const EXIT_UNVERIFIED: u8 = 3;

pub const EXIT_HELP: &str = "\
Exit status:
  0  identical: folders, subscriptions, messages (identity multisets, sizes),
     flags and keywords and internal dates are the same on both sides
  1  differs: the report says exactly what (host2 may only have more: COMPLETE)
  2  usage error: bad flag, unreadable password file; nothing was compared
  3  could not verify: connection refused, timeout, TLS, login failed, server error";

#[derive(Args, Debug)]
#[command(after_help = EXIT_HELP)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Network timeout in seconds (default 120).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u32>,
    /// Print the report as JSON (on stdout; the exit status is the same).
    #[arg(long)]
    pub json: bool,
}

/// The exit status for a report.
pub fn exit_status(report: &VerifyReport) -> u8 {
    if report.error.is_some() {
        EXIT_UNVERIFIED
    } else if report.identical {
        EXIT_IDENTICAL
    } else {
        EXIT_DIFFERS
    }
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut options = MigrationOptions {
        timeout_secs: args.timeout,
        ..MigrationOptions::default()
    };
    args.pair.apply(&mut options);
    if let Err(errors) = options.validate() {
        for e in errors {
            eprintln!("pymap: --{}: {}", e.field.replace('_', "-"), e.message);
        }
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let pair = match args.pair.resolve() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pymap: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let spec = VerifySpec {
        host1: pair.host1,
        user1: pair.user1,
        password1: pair.password1,
        host2: pair.host2,
        user2: pair.user2,
        password2: pair.password2,
        options,
        native: NativeOptions::default(),
    };
    let report = verify(&spec).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::from(exit_status(&report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_distinguishes_identical_differs_and_unverified() {
        let identical = VerifyReport {
            identical: true,
            complete: true,
            ..VerifyReport::default()
        };
        let differs = VerifyReport::default();
        let failed = VerifyReport {
            error: Some("Host1: connection refused".into()),
            ..VerifyReport::default()
        };
        assert_eq!(
            [&identical, &differs, &failed].map(exit_status),
            [EXIT_IDENTICAL, EXIT_DIFFERS, EXIT_UNVERIFIED]
        );
    }
}
