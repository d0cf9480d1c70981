//! Final classification of an imapsync run: process end + parsed output → job status.
//!
//! The rules come from the captured runs in `tests/fixtures/imapsync` (INDEX.md):
//! * a death by signal counts, whatever imapsync printed (on TERM it prints
//!   `Exiting with return value 6 (EXIT_BY_SIGNAL)` and then kills itself with SIGTERM);
//! * exit 0 is not always success: by default imapsync silently leaves duplicates and messages
//!   without Message-Id/Received on the source, and says so only in its statistics, so those
//!   runs become `Warning`;
//! * the reason is a sentence for the sysadmin, quoting imapsync's first error when it helps
//!   (imapsync already prints passwords as `MASKED`, so nothing needs redacting).

use super::parse::RunSummary;
use crate::worker::status::JobStatus;

/// How the imapsync process ended, as reported by `waitpid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessEnd {
    Exited(i32),
    Signaled(i32),
}

/// The verdict on a run, ready to be stored on the job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub status: JobStatus,
    /// The exit status; `None` when the process died by a signal.
    pub exit_code: Option<i32>,
    /// imapsync's name for the exit code (`EXIT_AUTHENTICATION_FAILURE_USER1`) or the signal (`SIGTERM`).
    pub exit_name: String,
    /// One or two sentences for a sysadmin.
    pub reason: String,
    /// Whether running the same job again unchanged may succeed (resuming is always safe).
    pub retryable: bool,
}

/// imapsync 2.229's exit codes: (code, name, status, retryable, reason). Retryable means that
/// running the job again unchanged may work: connection trouble yes, credentials or usage never.
#[rustfmt::skip]
const EXIT_CODES: &[(i32, &str, JobStatus, bool, &str)] = &[
    (1, "EXIT_CATCH_ALL", FAILED, false, "imapsync failed with an unclassified error."),
    (6, "EXIT_BY_SIGNAL", FAILED, true,
        "imapsync was stopped by a signal that pymap did not send; running the job again resumes the sync."),
    (7, "EXIT_BY_FILE", FAILED, false, "imapsync stopped itself because its stop file was present."),
    (8, "EXIT_PID_FILE_ERROR", FAILED, false,
        "imapsync could not handle its pid file: check that the job's run directory is writable and that \
         no other run uses the same pid file."),
    (10, "EXIT_CONNECTION_FAILURE", FAILED, true, "imapsync could not connect to one of the servers."),
    (12, "EXIT_TLS_FAILURE", FAILED, false,
        "The TLS negotiation with one of the servers failed: check the SSL/TLS settings and the ports."),
    (16, "EXIT_AUTHENTICATION_FAILURE", FAILED, false, "Login failed: check both usernames and passwords."),
    (21, "EXIT_SUBFOLDER1_NO_EXISTS", FAILED, false,
        "The folder given as subfolder1 does not exist on the source server."),
    (64, "EX_USAGE", FAILED, false, "imapsync rejected its command line (an unsupported extra option?)."),
    (66, "EX_NOINPUT", FAILED, false, "imapsync could not read one of its input files (password file?)."),
    (69, "EX_UNAVAILABLE", FAILED, true, "imapsync reported that a service it needs is unavailable."),
    (70, "EX_SOFTWARE", FAILED, false, "imapsync hit an internal software error."),
    (101, "EXIT_CONNECTION_FAILURE_HOST1", FAILED, true,
        "Could not connect to the source server (host1): check host1, port1, the SSL/TLS setting and the firewall."),
    (102, "EXIT_CONNECTION_FAILURE_HOST2", FAILED, true,
        "Could not connect to the destination server (host2): check host2, port2, the SSL/TLS setting and the \
         firewall."),
    (111, "EXIT_WITH_ERRORS", FAILED, true, "The sync ran to its end but some operations failed."),
    (112, "EXIT_WITH_ERRORS_MAX", FAILED, true, "The sync was aborted after too many errors."),
    (113, "EXIT_OVERQUOTA", FAILED, false,
        "The destination mailbox is over quota: raise the quota or free space, then run the job again."),
    (114, "EXIT_ERR_APPEND", FAILED, true, "Copying messages to the destination failed (APPEND errors)."),
    (115, "EXIT_ERR_FETCH", FAILED, true, "Reading messages from the source failed (FETCH errors)."),
    (116, "EXIT_ERR_CREATE", FAILED, false,
        "Creating folders on the destination failed: check folder names and permissions there."),
    (117, "EXIT_ERR_SELECT", FAILED, false, "Opening (SELECT) some folders failed."),
    (118, "EXIT_TRANSFER_EXCEEDED", JobStatus::Warning, false,
        "The sync stopped at the configured transfer limit; run the job again later to continue."),
    (119, "EXIT_ERR_APPEND_VIRUS", FAILED, false, "The destination refused some messages as infected by a virus."),
    (120, "EXIT_ERR_FLAGS", FAILED, false, "Setting flags on the destination failed."),
    (161, "EXIT_AUTHENTICATION_FAILURE_USER1", FAILED, false,
        "Login to the source server failed for this mailbox: check user1 and password1."),
    (162, "EXIT_AUTHENTICATION_FAILURE_USER2", FAILED, false,
        "Login to the destination server failed for this mailbox: check user2 and password2."),
    (254, "EXIT_TESTS_FAILED", FAILED, false, "imapsync's self-tests failed: the imapsync installation is broken."),
];
const FAILED: JobStatus = JobStatus::Failed;

/// Decide the job status of a finished run. `cancelled_by_us` is true when pymap signalled it.
pub fn classify(end: ProcessEnd, summary: &RunSummary, cancelled_by_us: bool) -> Outcome {
    match end {
        ProcessEnd::Signaled(sig) => by_signal(sig, summary, cancelled_by_us),
        ProcessEnd::Exited(0) => exit_ok(summary),
        ProcessEnd::Exited(code) if cancelled_by_us => Outcome {
            status: JobStatus::Cancelled,
            exit_code: Some(code),
            exit_name: exit_name(code, summary),
            reason: format!(
                "Cancelled: imapsync stopped {}. {RESUME}",
                where_stopped(summary)
            ),
            retryable: false,
        },
        ProcessEnd::Exited(code) => by_code(code, summary),
    }
}

const RESUME: &str = "Running the job again resumes where it stopped.";

fn by_signal(sig: i32, summary: &RunSummary, cancelled_by_us: bool) -> Outcome {
    let name = signal_name(sig);
    let (status, reason, retryable) = if cancelled_by_us {
        let reason = format!(
            "Cancelled: imapsync ended by {name} {}. {RESUME}",
            where_stopped(summary)
        );
        (JobStatus::Cancelled, reason, false)
    } else {
        // KILL is typically the OOM killer or an admin; a rerun resumes safely. A crash
        // (SEGV, ABRT, ...) is likely to happen again on the same data.
        let external = [
            libc::SIGKILL,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
        ];
        let retry = external.contains(&sig);
        let why = if retry {
            "not sent by pymap"
        } else {
            "imapsync crashed"
        };
        let reason = format!(
            "imapsync was killed by {name} (signal {sig}, {why}) {}.{}",
            where_stopped(summary),
            if retry {
                format!(" {RESUME}")
            } else {
                String::new()
            }
        );
        (JobStatus::Failed, reason, retry)
    };
    Outcome {
        status,
        exit_code: None,
        exit_name: name,
        reason,
        retryable,
    }
}

fn by_code(code: i32, summary: &RunSummary) -> Outcome {
    let Some(&(_, _, status, mut retryable, base)) = EXIT_CODES.iter().find(|e| e.0 == code) else {
        return Outcome {
            status: JobStatus::Failed,
            exit_code: Some(code),
            exit_name: exit_name(code, summary),
            reason: with_error(
                format!("imapsync exited with unexpected code {code}."),
                summary,
            ),
            retryable: false,
        };
    };
    let mut reason = base.to_owned();
    let err = first_error(summary).unwrap_or_default();
    match code {
        // imapsync reports host1's failure when both logins fail (fixture c2): say so.
        161 if summary
            .errors
            .iter()
            .any(|e| e.contains("Host2 failure: Error login")) =>
        {
            reason.push_str(
                " Login to the destination server failed too: check user2 and password2.",
            );
        }
        10 | 101 | 102 => {
            if err.contains("SSL connect attempt failed") || err.contains("wrong version number") {
                // Deterministic misconfiguration (fixture p gets 102, not 12): retrying won't help.
                reason.push_str(" The TLS handshake failed: the port probably does not speak implicit TLS (IMAPS); check the port and the SSL setting.");
                retryable = false;
            } else if err.contains("Connection refused") {
                reason.push_str(" Nothing is listening on that port (connection refused).");
            } else if err.contains("timeout waiting") {
                reason
                    .push_str(" The server accepted the connection but never answered (timeout).");
            }
        }
        // Usage errors go to stderr, not to the `Err` listing (fixture o).
        64 if summary.usage_error.is_some() => {
            let said = summary.usage_error.as_deref().unwrap_or_default();
            reason = format!("{reason} imapsync said: {said}");
        }
        111 | 112 => {
            if let Some(n) = summary.nb_errors.or(summary.stats.detected_errors) {
                reason = format!("{reason} {n} error(s) were reported.");
            }
        }
        _ => {}
    }
    Outcome {
        status,
        exit_code: Some(code),
        exit_name: exit_name(code, summary),
        reason: if code == 64 {
            reason
        } else {
            with_error(reason, summary)
        },
        retryable,
    }
}

/// Exit 0: success, unless messages stayed behind or this was only a simulation.
fn exit_ok(s: &RunSummary) -> Outcome {
    let st = &s.stats;
    let ok = |reason: String| Outcome {
        status: JobStatus::Succeeded,
        exit_code: Some(0),
        exit_name: exit_name(0, s),
        reason,
        retryable: false,
    };
    if s.dry_run {
        let would = st
            .messages_could_be_transferred
            .map(|n| format!(" imapsync would have copied {}.", msgs(n)));
        return ok(format!(
            "Dry run: nothing was written to the destination.{}",
            would.unwrap_or_default()
        ));
    }
    if s.justlogin {
        return ok(
            "Login test passed: both servers accepted the credentials; nothing was copied.".into(),
        );
    }
    if s.justfolders {
        let folders = match (st.folders_synced, st.folders_total) {
            (Some(a), Some(b)) => format!(" ({a}/{b})"),
            _ => String::new(),
        };
        return ok(format!(
            "Folders created and subscribed on the destination{folders}; no messages were copied."
        ));
    }

    let dups = st.duplicates_host1.unwrap_or(0);
    let void = st.void_host1.or(s.verdict.unidentified_host1).unwrap_or(0);
    // Final difference < 0 is the ground truth of what stayed behind (NA after a kill).
    let missing = match st.final_difference_messages {
        Some(d) => u64::try_from(-d).unwrap_or(0),
        None => s
            .verdict
            .not_finished_missing
            .or(st.host1_not_in_host2)
            .unwrap_or(0)
            .max(void),
    };
    let errors = st.detected_errors.unwrap_or(0);
    if missing == 0 && !s.verdict.sync_not_finished && errors == 0 {
        let copied = st
            .messages_transferred
            .unwrap_or(s.progress.messages_copied);
        let bytes = st.bytes_transferred.unwrap_or(s.progress.bytes_done);
        let mut reason = format!(
            "Sync complete: {} copied ({})",
            msgs(copied),
            human_bytes(bytes)
        );
        if let Some(skipped) = st.messages_skipped.filter(|&n| n > 0) {
            reason.push_str(&format!(", {skipped} already on the destination"));
        }
        reason.push('.');
        return ok(reason);
    }

    let mut parts = Vec::new();
    let mut fixes = Vec::new();
    let void_part = void.min(missing);
    let dup_part = dups.min(missing - void_part);
    if dup_part > 0 {
        parts.push(format!("{dup_part} duplicate{} on host1", plural(dup_part)));
        fixes.push("sync duplicates");
    }
    if void_part > 0 {
        parts.push(format!("{void_part} without Message-ID/Received"));
        fixes.push("add-header");
    }
    let other = missing - dup_part - void_part;
    if other > 0 {
        parts.push(format!("{other} for other reasons (see the log)"));
    }
    let mut reason = String::new();
    if s.verdict.sync_not_finished {
        reason.push_str("imapsync says the sync is not finished. ");
    }
    if missing > 0 {
        let were = if missing == 1 {
            "message was"
        } else {
            "messages were"
        };
        reason.push_str(&format!(
            "{missing} {were} not copied: {}",
            join_and(&parts)
        ));
        if fixes.is_empty() {
            reason.push_str("; run the job again.");
        } else {
            reason.push_str(&format!(
                "; rerun with {}, or use the native engine.",
                fixes.join(" and ")
            ));
        }
    }
    if errors > 0 {
        reason = with_error(
            format!("{reason} imapsync reported {errors} error(s).")
                .trim_start()
                .to_owned(),
            s,
        );
    }
    Outcome {
        status: JobStatus::Warning,
        ..ok(reason.trim_end().to_owned())
    }
}

/// The printed exit name when imapsync printed the same code, else ours.
fn exit_name(code: i32, summary: &RunSummary) -> String {
    if let (Some(v), Some(n)) = (summary.exit_value, &summary.exit_name)
        && v == code
    {
        return n.clone();
    }
    if code == 0 {
        return "EX_OK".into();
    }
    EXIT_CODES
        .iter()
        .find(|e| e.0 == code)
        .map_or("EXIT_UNKNOWN", |e| e.1)
        .to_owned()
}

/// imapsync's first error, without the `Err 1/2: ` prefix.
fn first_error(summary: &RunSummary) -> Option<&str> {
    let e = summary.errors.first().or(summary.failures.first())?;
    Some(
        match e.strip_prefix("Err ").and_then(|r| r.split_once(": ")) {
            Some((_, text)) => text,
            None => e,
        },
    )
}

fn with_error(reason: String, summary: &RunSummary) -> String {
    match first_error(summary) {
        Some(e) => format!("{reason} imapsync said: {}", e.trim_end()),
        None => reason,
    }
}

/// "after 102 of 300 messages" / "before any message was handled".
fn where_stopped(summary: &RunSummary) -> String {
    let p = &summary.progress;
    match p.messages_total {
        Some(total) if p.messages_done > 0 => {
            format!("after {} of {total} messages", p.messages_done)
        }
        _ if p.messages_done > 0 => format!("after {}", msgs(p.messages_done)),
        _ => "before any message was handled".into(),
    }
}

/// `SIGTERM` for 15, ...; `SIG<n>` for the rare ones.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("SIG{sig}"),
    };
    name.to_owned()
}

fn msgs(n: u64) -> String {
    format!("{n} message{}", plural(n))
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn human_bytes(b: u64) -> String {
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

    #[test]
    fn every_documented_code_is_mapped_and_retry_rules_hold() {
        let codes = [
            0, 1, 6, 7, 8, 10, 12, 16, 21, 64, 66, 69, 70, 101, 102, 111, 112, 113, 114, 115, 116,
            117, 118, 119, 120, 161, 162, 254,
        ];
        let s = RunSummary::default();
        for code in codes {
            let o = classify(ProcessEnd::Exited(code), &s, false);
            assert_ne!(o.exit_name, "EXIT_UNKNOWN", "{code}");
            assert!(!o.reason.is_empty());
            let retry = matches!(code, 6 | 10 | 69 | 101 | 102 | 111 | 112 | 114 | 115);
            assert_eq!(o.retryable, retry, "{code}");
        }
        let o = classify(ProcessEnd::Exited(3), &s, false);
        assert_eq!(
            (o.status, o.exit_name.as_str()),
            (JobStatus::Failed, "EXIT_UNKNOWN")
        );
    }

    #[test]
    fn signals_are_named_and_cancel_wins() {
        let s = RunSummary::default();
        let o = classify(ProcessEnd::Signaled(libc::SIGSEGV), &s, false);
        assert_eq!(
            (o.status, o.exit_name.as_str(), o.retryable),
            (JobStatus::Failed, "SIGSEGV", false)
        );
        let o = classify(ProcessEnd::Signaled(libc::SIGKILL), &s, true);
        assert_eq!((o.status, o.exit_code), (JobStatus::Cancelled, None));
        assert_eq!(
            classify(ProcessEnd::Exited(6), &s, true).status,
            JobStatus::Cancelled
        );
        assert_eq!(signal_name(99), "SIG99");
    }

    #[test]
    fn words() {
        assert_eq!(
            join_and(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
        assert_eq!(human_bytes(37895582), "36.1 MiB");
        assert_eq!(human_bytes(12), "12 bytes");
    }
}
