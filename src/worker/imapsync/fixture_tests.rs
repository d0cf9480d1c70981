//! Table-driven tests over the captured imapsync 2.229 runs in `tests/fixtures/imapsync`
//! (scenarios and facts in INDEX.md there). Each row replays a run's stdout then stderr through
//! the parser, checks the final progress, key statistics and verdict, then the classification.
//! A few synthetic lines at the end cover shapes and limits the captures do not reach.
//!
//! Note on `b` and `h1`: they end with the same `Final difference host2 - host1 : -4 messages`
//! (3 duplicates + 1 void message still missing) as `a`, so by the same rule they are `Warning`.

use std::path::{Path, PathBuf};

use super::exit::{ProcessEnd, classify};
use super::parse::{MAX_ERRORS, MAX_LINE_CHARS, OutputParser, ProgressEvent, RunSummary};
use crate::worker::status::JobStatus;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imapsync")
}

/// The fixture file `<id>_<scenario>.exit<rc>.<kind>.txt` (exact id: `c_` is not `c2_`).
fn fixture(id: &str, kind: &str) -> PathBuf {
    let prefix = format!("{id}_");
    let suffix = format!(".{kind}.txt");
    let dir = fixtures_dir();
    let name = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with(&prefix) && n.ends_with(&suffix) && n.contains(".exit"))
        .unwrap_or_else(|| panic!("no {kind} fixture for {id}"));
    dir.join(name)
}

/// Replays a fixture through the parser, returning the events and the summary.
fn replay(id: &str) -> (Vec<ProgressEvent>, RunSummary) {
    let mut parser = OutputParser::new();
    let mut events = Vec::new();
    for kind in ["stdout", "stderr"] {
        let bytes = std::fs::read(fixture(id, kind)).unwrap();
        for line in String::from_utf8_lossy(&bytes).lines() {
            events.extend(parser.feed(line));
        }
    }
    (events, parser.finish())
}

/// What the verdict lines said.
#[derive(Debug, PartialEq)]
enum V {
    Nothing,
    Good,
    NotFinished,
}

/// transferred, skipped, duplicates host1, void host1, final difference (messages)
type Stats = (
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<i64>,
);

struct Row {
    id: &'static str,
    end: ProcessEnd,
    /// messages_total, messages_done, messages_copied, bytes_done
    progress: (Option<u64>, u64, u64, u64),
    stats: Stats,
    /// verdict, unidentified on host1, number of `Err` lines
    verdict: (V, Option<u64>, usize),
    /// status, exit name, retryable, substring of the reason
    outcome: (JobStatus, &'static str, bool, &'static str),
}

const EXITED_0: ProcessEnd = ProcessEnd::Exited(0);
const ALL: Option<u64> = Some(300);
const NONE5: Stats = (None, None, None, None, None);
const NO_PROGRESS: (Option<u64>, u64, u64, u64) = (None, 0, 0, 0);
const LEFT_4: &str = "4 messages were not copied: 3 duplicates on host1 and 1 without Message-ID/Received; rerun with sync duplicates and add-header, or use the native engine";
const JUSTLOGIN: (JobStatus, &str, bool, &str) =
    (JobStatus::Succeeded, "EX_OK", false, "Login test passed");

/// One row per captured run: what the parser and the classifier must make of it.
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use JobStatus::*;
    use ProcessEnd::{Exited, Signaled};
    let auth1 = "Login to the source server failed for this mailbox: check user1 and password1. imapsync said: \
        Host1 failure: Error login on [127.0.0.1] with user [user1] auth [LOGIN]: 2 NO [AUTHENTICATIONFAILED] \
        Authentication failed.";
    let refused2 = "destination server (host2): check host2, port2, the SSL/TLS setting and the firewall. \
        Nothing is listening on that port (connection refused).";
    let timeout2 = "never answered (timeout). imapsync said: Host2 failure: can not open imap connection on host2 \
        [127.0.0.1] with user [user1]: timeout waiting 5s for data from server";
    vec![
        Row { id: "a", end: EXITED_0, progress: (ALL, 300, 296, 36825958),
            stats: (Some(296), Some(4), Some(3), Some(1), Some(-4)), verdict: (V::Good, Some(1), 0),
            outcome: (Warning, "EX_OK", false, LEFT_4) },
        Row { id: "b", end: EXITED_0, progress: (ALL, 300, 0, 0),
            stats: (Some(0), Some(300), Some(3), Some(1), Some(-4)), verdict: (V::Good, Some(1), 0),
            outcome: (Warning, "EX_OK", false, LEFT_4) },
        Row { id: "c", end: Exited(161), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 1),
            outcome: (Failed, "EXIT_AUTHENTICATION_FAILURE_USER1", false, auth1) },
        Row { id: "c2", end: Exited(161), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 2),
            outcome: (Failed, "EXIT_AUTHENTICATION_FAILURE_USER1", false,
                "check user1 and password1. Login to the destination server failed too: check user2 and password2.") },
        Row { id: "d", end: Exited(162), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 1),
            outcome: (Failed, "EXIT_AUTHENTICATION_FAILURE_USER2", false,
                "Login to the destination server failed for this mailbox: check user2 and password2.") },
        Row { id: "e", end: Exited(102), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 1),
            outcome: (Failed, "EXIT_CONNECTION_FAILURE_HOST2", true, refused2) },
        Row { id: "e1", end: Exited(101), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 1),
            outcome: (Failed, "EXIT_CONNECTION_FAILURE_HOST1", true, "Could not connect to the source server (host1)") },
        Row { id: "f", end: EXITED_0, progress: (ALL, 121, 0, 0),
            stats: (Some(0), Some(2), Some(2), Some(0), Some(-300)), verdict: (V::NotFinished, Some(0), 0),
            outcome: (Succeeded, "EX_OK", false,
                "Dry run: nothing was written to the destination. imapsync would have copied 298 messages.") },
        Row { id: "g", end: EXITED_0, progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 0),
            outcome: JUSTLOGIN },
        Row { id: "h", end: Signaled(libc::SIGTERM), progress: (ALL, 102, 100, 10807760),
            stats: (Some(100), Some(2), Some(2), Some(0), None), verdict: (V::NotFinished, Some(0), 0),
            outcome: (Cancelled, "SIGTERM", false, "ended by SIGTERM after 102 of 300 messages. Running the job again") },
        Row { id: "h1", end: EXITED_0, progress: (ALL, 300, 196, 26018198),
            stats: (Some(196), Some(104), Some(3), Some(1), Some(-4)), verdict: (V::Good, Some(1), 0),
            outcome: (Warning, "EX_OK", false, LEFT_4) },
        Row { id: "i", end: EXITED_0, progress: NO_PROGRESS,
            stats: (Some(0), Some(0), Some(0), Some(0), None), verdict: (V::Nothing, None, 0),
            outcome: (Succeeded, "EX_OK", false,
                "Folders created and subscribed on the destination (16/16); no messages were copied.") },
        Row { id: "j", end: EXITED_0, progress: (ALL, 300, 300, 37895609),
            stats: (Some(300), Some(0), Some(3), Some(0), Some(0)), verdict: (V::Good, Some(0), 0),
            outcome: (Succeeded, "EX_OK", false, "Sync complete: 300 messages copied (36.1 MiB).") },
        Row { id: "k", end: EXITED_0, progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 0),
            outcome: JUSTLOGIN },
        Row { id: "l", end: EXITED_0, progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 0),
            outcome: JUSTLOGIN },
        Row { id: "m", end: EXITED_0, progress: (ALL, 300, 296, 36825958),
            stats: (Some(296), Some(4), Some(3), Some(1), Some(-4)), verdict: (V::Good, Some(1), 0),
            outcome: (Warning, "EX_OK", false, LEFT_4) },
        Row { id: "n", end: EXITED_0, progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 0),
            outcome: JUSTLOGIN },
        Row { id: "o", end: Exited(64), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 0),
            outcome: (Failed, "EX_USAGE", false, "imapsync said: Unknown option: no-such-option") },
        Row { id: "p", end: Exited(102), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 1),
            outcome: (Failed, "EXIT_CONNECTION_FAILURE_HOST2", false,
                "The TLS handshake failed: the port probably does not speak implicit TLS (IMAPS)") },
        Row { id: "q", end: Exited(102), progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 1),
            outcome: (Failed, "EXIT_CONNECTION_FAILURE_HOST2", true, timeout2) },
        Row { id: "u1", end: EXITED_0, progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 0),
            outcome: JUSTLOGIN },
        Row { id: "u2", end: EXITED_0, progress: NO_PROGRESS, stats: NONE5, verdict: (V::Nothing, None, 0),
            outcome: JUSTLOGIN },
    ]
}

#[test]
fn every_fixture_parses_and_classifies_as_expected() {
    let table = rows();
    // One row per captured run (the index lists them all, plus the `--version` capture).
    let index = std::fs::read_to_string(fixtures_dir().join("index.tsv")).unwrap();
    let ids: Vec<&str> = index
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert_eq!(ids.len(), table.len());
    for id in &ids {
        assert!(table.iter().any(|r| r.id == *id), "no row for fixture {id}");
    }

    for row in table {
        let id = row.id;
        let (events, s) = replay(id);
        assert_monotonic(id, &events);

        let p = &s.progress;
        assert_eq!(
            (
                p.messages_total,
                p.messages_done,
                p.messages_copied,
                p.bytes_done
            ),
            row.progress,
            "{id}: progress"
        );
        let st = &s.stats;
        let stats = (
            st.messages_transferred,
            st.messages_skipped,
            st.duplicates_host1,
            st.void_host1,
            st.final_difference_messages,
        );
        assert_eq!(stats, row.stats, "{id}: statistics");
        if let Some(bytes) = st.bytes_transferred {
            assert_eq!(
                bytes, p.bytes_done,
                "{id}: summed {{SIZE}} = Total bytes transferred"
            );
        }
        let verdict = match (s.verdict.sync_looks_good, s.verdict.sync_not_finished) {
            (true, false) => V::Good,
            (false, true) => V::NotFinished,
            (false, false) => V::Nothing,
            (true, true) => panic!("{id}: both verdicts"),
        };
        assert_eq!(
            (verdict, s.verdict.unidentified_host1, s.errors.len()),
            row.verdict,
            "{id}: verdict"
        );

        let code = match row.end {
            ProcessEnd::Exited(c) => c,
            ProcessEnd::Signaled(_) => 6, // h: printed 6 (EXIT_BY_SIGNAL), died by SIGTERM
        };
        assert_eq!(
            s.exit_value,
            (id != "o").then_some(code),
            "{id}: printed exit value"
        );

        let cancelled = matches!(row.end, ProcessEnd::Signaled(_));
        let o = classify(row.end, &s, cancelled);
        let (status, name, retryable, reason) = row.outcome;
        assert_eq!(
            (o.status, o.exit_name.as_str(), o.retryable),
            (status, name, retryable),
            "{id}: {}",
            o.reason
        );
        assert!(
            o.reason.contains(reason),
            "{id}: reason {:?} lacks {reason:?}",
            o.reason
        );
        assert_eq!(
            o.exit_code,
            match row.end {
                ProcessEnd::Exited(c) => Some(c),
                _ => None,
            }
        );
    }
}

/// Progress as seen through the events alone never goes backwards and stays within its total.
fn assert_monotonic(id: &str, events: &[ProgressEvent]) {
    let (mut done, mut bytes, mut folder) = (0, 0, 0);
    for ev in events {
        match ev {
            ProgressEvent::Message {
                done: d,
                total,
                bytes_done,
                ..
            } => {
                assert!(
                    *d >= done && *bytes_done >= bytes && d <= total,
                    "{id}: {ev:?} after {done}/{bytes}"
                );
                (done, bytes) = (*d, *bytes_done);
            }
            ProgressEvent::Folder { index, count, .. } => {
                assert!(
                    *index > folder && index <= count,
                    "{id}: {ev:?} after folder {folder}"
                );
                folder = *index;
            }
            _ => {}
        }
    }
}

#[test]
fn term_not_sent_by_us_is_a_failure_that_can_be_retried() {
    let (_, s) = replay("h");
    let o = classify(ProcessEnd::Signaled(libc::SIGTERM), &s, false);
    assert_eq!(
        (o.status, o.exit_name.as_str(), o.exit_code, o.retryable),
        (JobStatus::Failed, "SIGTERM", None, true)
    );
    assert!(o.reason.contains("not sent by pymap"), "{}", o.reason);
    // What imapsync printed before dying.
    assert_eq!(
        (s.exit_name.as_deref(), s.killed_self_with.as_deref()),
        (Some("EXIT_BY_SIGNAL"), Some("TERM"))
    );
    assert_eq!(s.signals_received, ["TERM"]);
    assert_eq!(
        (
            s.stats.folders_synced,
            s.stats.folders_total,
            s.verdict.not_finished_missing
        ),
        (Some(7), Some(16), Some(70))
    );
}

#[test]
fn events_report_totals_folders_signals_and_errors() {
    let (events, s) = replay("m");
    assert_eq!(
        events.first(),
        Some(&ProgressEvent::Totals {
            messages: 300,
            bytes: 37895582
        })
    );
    let folders: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProgressEvent::Folder { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(folders.len(), 16);
    assert_eq!(
        folders[..4],
        ["Привет", "Archivé", "Données", "Données/Été 2023"]
    );
    assert!(folders.contains(&"Spaces & Symbols"));
    assert!(events.contains(&ProgressEvent::Signal("INT".into())));
    assert!(events.contains(&ProgressEvent::Notice(
        "Info: reconnected to both imap servers".into()
    )));
    assert_eq!(
        (
            s.reconnections,
            s.stats.reconnections_host1,
            s.stats.reconnections_host2
        ),
        (1, Some(1), Some(1))
    );
    // Rare events only: what a caller would persist immediately; messages get coalesced.
    assert!(events.iter().filter(|e| !e.is_frequent()).count() < 25);

    let (events, _) = replay("c2");
    let errors: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, ProgressEvent::Error(_)))
        .collect();
    assert_eq!(
        errors.len(),
        2,
        "live failures, not repeated by the Err listing: {errors:?}"
    );
}

#[test]
fn housekeeping_lines() {
    let (_, a) = replay("a");
    assert_eq!(
        a.log_file.as_deref(),
        Some("LOG_imapsync/2026_11_22_23_34_47_935_user1_user1.txt")
    );
    assert_eq!(
        (a.pid_file.as_deref(), a.imapsync_pid),
        (Some("/tmp/imapsync.pid"), Some(8793))
    );
    assert_eq!(
        (a.imapsync_version.as_deref(), a.nb_errors, a.max_errors),
        (Some("2.229"), Some(0), Some(50))
    );
    assert!(
        a.command_line
            .as_deref()
            .unwrap()
            .contains("--password1 MASKED")
    );
    assert_eq!(
        (
            a.noheader_ignored,
            a.duplicates_seen_host1,
            a.stats.detected_errors
        ),
        (1, 3, Some(0))
    );
    assert_eq!(a.host2_messages_after, Some(296));

    let (_, l) = replay("l");
    assert!(l.docker_context && l.no_log && l.justlogin);
    assert_eq!((l.log_file, l.pid_file), (None, None));
    assert!(
        l.notices
            .iter()
            .any(|n| n.starts_with("No log by default in Docker context"))
    );

    let (_, u1) = replay("u1");
    assert_eq!(
        u1.log_file.as_deref(),
        Some("LOG_imapsync//srv/runs/u1/job-42.log")
    );
    assert_eq!(u1.pid_file.as_deref(), Some("/srv/runs/u1/job-42.pid"));
    let (_, u2) = replay("u2");
    assert_eq!(u2.log_file.as_deref(), Some("/srv/runs/u2/logs/job-42.log"));

    let (_, c) = replay("c");
    assert_eq!(
        c.most_frequent_error.as_deref(),
        Some("ERR_AUTHENTICATION_FAILURE_USER1")
    );
    assert_eq!((c.errors_listed, c.failures.len()), (Some(1), 1));

    let (_, f) = replay("f");
    assert!(f.dry_run);
    assert_eq!(f.stats.messages_could_be_transferred, Some(298));

    let version =
        std::fs::read_to_string(fixtures_dir().join("imapsync_version.stdout.txt")).unwrap();
    assert_eq!(version, "2.229\n");
}

#[test]
fn log_files_parse_like_stdout() {
    // The log is stdout minus the first `Creating directory` line: same summary but the count.
    for id in ["a", "h", "c2", "u2"] {
        let (_, from_stdout) = replay(id);
        let mut parser = OutputParser::new();
        let log = std::fs::read(fixture(id, "log")).unwrap();
        String::from_utf8_lossy(&log).lines().for_each(|l| {
            parser.feed(l);
        });
        let from_log = parser.finish();
        assert_eq!(from_log.lines + 1, from_stdout.lines, "{id}");
        assert_eq!(
            RunSummary {
                lines: 0,
                ..from_log
            },
            RunSummary {
                lines: 0,
                ..from_stdout
            },
            "{id}"
        );
    }
}

#[test]
fn a_big_log_is_cheap() {
    // ~300k lines (a replayed 350 times): must stay linear and allocation-light.
    let text = std::fs::read_to_string(fixture("a", "stdout")).unwrap();
    let mut parser = OutputParser::new();
    let start = std::time::Instant::now();
    let mut frequent = 0u64;
    for _ in 0..350 {
        for line in text.lines() {
            if parser.feed(line).is_some_and(|e| e.is_frequent()) {
                frequent += 1;
            }
        }
    }
    let s = parser.finish();
    assert_eq!(s.lines, 350 * 862);
    assert_eq!(s.progress.messages_copied, 350 * 296);
    assert!(frequent >= 296);
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}

// Line shapes the captures lack, or limits they do not reach.

fn feed_all(lines: &[&str]) -> (Vec<ProgressEvent>, RunSummary) {
    let mut parser = OutputParser::new();
    let events = lines.iter().filter_map(|l| parser.feed(l)).collect();
    (events, parser.finish())
}

#[test]
fn copied_line_with_spaces_in_folder_and_crlf() {
    let line = "msg Spaces &- Symbols/10 {86157}          copied to Spaces &- Symbols/10         \
                49.80 msgs/s  5.596 MiB/s 6.854 MiB copied ETA: Sunday 22 November 2026-11-22 \
                23:02:09 +0000 UTC  5 s  237/300 msgs left\r\n";
    let (events, s) = feed_all(&[line]);
    let expected = ProgressEvent::Message {
        done: 63,
        total: 300,
        bytes_done: 86157,
        eta_secs: Some(5),
    };
    assert_eq!(events, [expected]);
    assert_eq!(s.progress.msgs_per_sec, Some(49.80));
    assert_eq!(
        s.progress.bytes_per_sec,
        Some((5.596f64 * 1048576.0).round() as u64)
    );
}

#[test]
fn done_never_goes_backwards_and_unchanged_eta_lines_are_silent() {
    let eta = |left: u32| {
        format!("ETA: Sunday 22 November 2026-11-22 23:34:54 +0000 UTC  3 s  {left}/300 msgs left")
    };
    let mut p = OutputParser::new();
    assert!(p.feed(&eta(250)).is_some());
    assert!(p.feed(&eta(250)).is_none());
    p.feed(&eta(260));
    assert_eq!(p.progress().messages_done, 50);
}

#[test]
fn errors_are_capped_and_cut_on_char_boundaries() {
    let long = "é".repeat(3000);
    let lines: Vec<String> = (1..=60).map(|i| format!("Err {i}/60: {long}")).collect();
    let (events, s) = feed_all(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        (s.errors.len(), s.errors_omitted, events.len()),
        (MAX_ERRORS, 10, 60)
    );
    assert!(s.errors.iter().all(|e| e.chars().count() == MAX_LINE_CHARS));
}

#[test]
fn odd_values_and_irrelevant_lines() {
    let (events, s) = feed_all(&[
        "++++ Statistics",
        "Final difference host2 - host1          : 0 messages, 27 bytes (0.026 KiB)",
        "Start difference host2 - host1          : NA messages, NA bytes (NA)",
        "Messages transferred                    : many",
        "Some key                                : 12",
        "",
        "Folder x",
        "Host1: folder [X]",
        "Err",
        "msg ",
        "Folders synced : 1/2 synced",
    ]);
    assert!(events.is_empty(), "{events:?}");
    let st = s.stats;
    assert_eq!(
        (st.final_difference_messages, st.final_difference_bytes),
        (Some(0), Some(27))
    );
    assert_eq!(
        (st.start_difference_messages, st.messages_transferred),
        (None, None)
    );
    assert_eq!((st.folders_synced, st.folders_total), (Some(1), Some(2)));
}
