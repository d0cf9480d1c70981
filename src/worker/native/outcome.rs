//! How a native run ended → the same [`Outcome`] an imapsync run would get: the same
//! statuses, exit codes and exit names (`EXIT_AUTHENTICATION_FAILURE_USER1`...), the same
//! retry rules, and reasons worded for the admin without mentioning imapsync.

use super::{ErrorKind, NativeError, Side, report::Counters};
use crate::worker::{
    imapsync::{exit::Outcome, parse::RunSummary},
    status::JobStatus,
};

/// How the run stopped.
#[derive(Debug)]
pub enum End {
    /// Ran to its end (possibly with per-message or per-folder errors, in the counters).
    Done,
    /// Stopped by an error that makes going on pointless.
    Fatal(NativeError),
    /// Both logins failed.
    BothAuth(NativeError, NativeError),
    Cancelled,
}

const RESUME: &str = "Running the job again resumes where it stopped.";

fn outcome(
    status: JobStatus,
    code: Option<i32>,
    name: &str,
    reason: String,
    retryable: bool,
) -> Outcome {
    Outcome {
        status,
        exit_code: code,
        exit_name: name.to_owned(),
        reason,
        retryable,
    }
}

fn server(side: Side) -> &'static str {
    match side {
        Side::Host1 => "the source server (host1)",
        Side::Host2 => "the destination server (host2)",
    }
}

pub fn classify(end: &End, s: &RunSummary, c: &Counters) -> Outcome {
    use JobStatus::{Cancelled, Failed};
    match end {
        End::Cancelled => {
            let p = &s.progress;
            let at = match p.messages_total {
                Some(t) if p.messages_done > 0 => {
                    format!("after {} of {t} messages", p.messages_done)
                }
                _ => "before any message was handled".into(),
            };
            outcome(
                Cancelled,
                None,
                "CANCELLED",
                format!("Cancelled: the native engine stopped {at}. {RESUME}"),
                false,
            )
        }
        End::BothAuth(a, b) => outcome(
            Failed,
            Some(161),
            "EXIT_AUTHENTICATION_FAILURE_USER1",
            format!(
                "Login to the source server failed for this mailbox: check user1 and password1 (the server said: {}). \
                 Login to the destination server failed too: check user2 and password2 (the server said: {}).",
                a.detail, b.detail
            ),
            false,
        ),
        End::Fatal(e) => fatal(e),
        End::Done => done(s, c),
    }
}

fn fatal(e: &NativeError) -> Outcome {
    use JobStatus::Failed;
    let (n1, n2) = (e.side == Side::Host1, e.side == Side::Host2);
    match e.kind {
        ErrorKind::Auth => {
            let (code, name, who) = if n1 {
                (
                    161,
                    "EXIT_AUTHENTICATION_FAILURE_USER1",
                    "the source server failed for this mailbox: check user1 and password1",
                )
            } else {
                (
                    162,
                    "EXIT_AUTHENTICATION_FAILURE_USER2",
                    "the destination server failed for this mailbox: check user2 and password2",
                )
            };
            outcome(
                Failed,
                Some(code),
                name,
                format!("Login to {who} (the server said: {}).", e.detail),
                false,
            )
        }
        ErrorKind::Tls | ErrorKind::TlsCert => {
            let hint = if e.kind == ErrorKind::TlsCert {
                format!(
                    " If you trust this server's certificate (self-signed), allow invalid certificates for {}; \
                     otherwise install a certificate signed by a trusted authority on the server.",
                    if n1 { "host1" } else { "host2" }
                )
            } else {
                " Check the SSL/TLS setting and the port.".into()
            };
            outcome(
                Failed,
                Some(12),
                "EXIT_TLS_FAILURE",
                format!(
                    "The TLS negotiation with {} failed: {}.{hint}",
                    server(e.side),
                    e.detail
                ),
                false,
            )
        }
        ErrorKind::Connect
        | ErrorKind::Refused
        | ErrorKind::Timeout
        | ErrorKind::NoGreeting
        | ErrorKind::Io
        | ErrorKind::Closed => {
            let (code, name) = if n2 {
                (102, "EXIT_CONNECTION_FAILURE_HOST2")
            } else {
                (101, "EXIT_CONNECTION_FAILURE_HOST1")
            };
            let what = match e.kind {
                ErrorKind::Refused => {
                    "Nothing is listening on that port (connection refused): check the host, the port and the firewall."
                }
                ErrorKind::NoGreeting => {
                    "The server accepted the connection but never answered (timeout): check the port and the SSL/TLS setting."
                }
                ErrorKind::Io | ErrorKind::Closed => RESUME,
                _ => "Check the host, the port, the SSL/TLS setting and the firewall.",
            };
            outcome(
                Failed,
                Some(code),
                name,
                format!("Could not talk to {}: {}. {what}", server(e.side), e.detail),
                true,
            )
        }
        ErrorKind::Quota => outcome(
            Failed,
            Some(113),
            "EXIT_OVERQUOTA",
            format!(
                "The destination mailbox is over quota: raise the quota or free space, then run the job again (the server said: {}).",
                e.detail
            ),
            false,
        ),
        ErrorKind::Protocol | ErrorKind::Command => outcome(
            Failed,
            Some(1),
            "EXIT_CATCH_ALL",
            format!(
                "The native engine stopped: {} said something it could not handle: {}.",
                server(e.side),
                e.detail
            ),
            false,
        ),
    }
}

fn done(s: &RunSummary, c: &Counters) -> Outcome {
    use JobStatus::{Failed, Succeeded, Warning};
    let ok = |reason: String| outcome(Succeeded, Some(0), "EX_OK", reason, false);
    if s.justlogin {
        return ok(
            "Login test passed: both servers accepted the credentials; nothing was copied.".into(),
        );
    }
    let errors = c.append_errors + c.other_errors;
    if errors > 0 {
        let first = s
            .errors
            .first()
            .map(|e| format!(" First error: {e}"))
            .unwrap_or_default();
        let (code, name, what) = if c.other_errors == 0 {
            (
                114,
                "EXIT_ERR_APPEND",
                "Copying messages to the destination failed (APPEND errors)",
            )
        } else {
            (
                111,
                "EXIT_WITH_ERRORS",
                "The sync ran to its end but some operations failed",
            )
        };
        return outcome(
            Failed,
            Some(code),
            name,
            format!(
                "{what}: {errors} error(s), {} copied.{first} {RESUME}",
                msgs(c.copied)
            ),
            true,
        );
    }
    if s.dry_run {
        return ok(format!(
            "Dry run: nothing was written to the destination. The native engine would have copied {}.",
            msgs(c.would_copy)
        ));
    }
    if s.justfolders {
        return ok(format!(
            "Folders created and subscribed on the destination ({}/{}); no messages were copied.",
            c.folders_done, c.folders_total
        ));
    }
    let mut reason = format!(
        "Sync complete: {} copied ({})",
        msgs(c.copied),
        human_bytes(c.bytes_copied)
    );
    if c.skipped > 0 {
        reason.push_str(&format!(", {} already on the destination", c.skipped));
    }
    if c.excluded > 0 {
        reason.push_str(&format!(
            ", {} left out by the age/size options",
            c.excluded
        ));
    }
    reason.push('.');
    if c.vanished > 0 {
        reason.push_str(&format!(
            " {} disappeared from the source during the run.",
            msgs(c.vanished)
        ));
        return outcome(Warning, Some(0), "EX_OK", reason, false);
    }
    ok(reason)
}

fn msgs(n: u64) -> String {
    format!("{n} message{}", if n == 1 { "" } else { "s" })
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} bytes");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(side: Side, kind: ErrorKind) -> NativeError {
        NativeError::new(side, kind, "detail".into())
    }

    #[test]
    fn errors_map_to_imapsync_exit_names_and_retry_rules() {
        let s = RunSummary::default();
        let c = Counters::default();
        let cases = [
            (
                err(Side::Host1, ErrorKind::Auth),
                "EXIT_AUTHENTICATION_FAILURE_USER1",
                false,
            ),
            (
                err(Side::Host2, ErrorKind::Auth),
                "EXIT_AUTHENTICATION_FAILURE_USER2",
                false,
            ),
            (
                err(Side::Host1, ErrorKind::Refused),
                "EXIT_CONNECTION_FAILURE_HOST1",
                true,
            ),
            (
                err(Side::Host2, ErrorKind::NoGreeting),
                "EXIT_CONNECTION_FAILURE_HOST2",
                true,
            ),
            (
                err(Side::Host2, ErrorKind::TlsCert),
                "EXIT_TLS_FAILURE",
                false,
            ),
            (err(Side::Host2, ErrorKind::Quota), "EXIT_OVERQUOTA", false),
        ];
        for (e, name, retry) in cases {
            let o = classify(&End::Fatal(e), &s, &c);
            assert_eq!(
                (o.status, o.exit_name.as_str(), o.retryable),
                (JobStatus::Failed, name, retry)
            );
            assert!(o.reason.contains("detail"), "{}", o.reason);
        }
        let o = classify(&End::Fatal(err(Side::Host1, ErrorKind::TlsCert)), &s, &c);
        assert!(o.reason.contains("allow invalid certificates for host1"));
        let o = classify(&End::Cancelled, &s, &c);
        assert_eq!(o.status, JobStatus::Cancelled);
    }

    #[test]
    fn completed_runs() {
        let s = RunSummary::default();
        let c = Counters {
            copied: 3,
            bytes_copied: 5000,
            skipped: 2,
            ..Counters::default()
        };
        let o = classify(&End::Done, &s, &c);
        assert_eq!(o.status, JobStatus::Succeeded);
        assert_eq!(
            o.reason,
            "Sync complete: 3 messages copied (4.9 KiB), 2 already on the destination."
        );
        let c = Counters {
            append_errors: 1,
            ..c
        };
        let o = classify(&End::Done, &s, &c);
        assert_eq!(
            (o.status, o.exit_name.as_str(), o.retryable),
            (JobStatus::Failed, "EXIT_ERR_APPEND", true)
        );
    }
}
