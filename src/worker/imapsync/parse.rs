//! Incremental parser for imapsync 2.229 output.
//!
//! The worker feeds every stdout/stderr line of a run to [`OutputParser::feed`], in order, as it
//! arrives. The parser keeps only counters and a few capped lists (never the lines themselves), so
//! a 300k-line log costs a few KiB. Matching is done with `starts_with`/`find`/`split` on the
//! exact wording of the captured runs in `tests/fixtures/imapsync` (see INDEX.md there): imapsync
//! prints everything to stdout in plain English, and this is the only contract we have with it.
//!
//! Progress is cumulative ([`OutputParser::progress`]), so a caller may drop intermediate
//! [`ProgressEvent::Message`] events and persist at most once per second without losing anything;
//! the rare events (totals, folder, error, signal, notice) are worth persisting right away:
//!
//! ```text
//! if let Some(event) = parser.feed(&line) {
//!     if !event.is_frequent() || last_save.elapsed() >= Duration::from_secs(1) {
//!         save(parser.progress());   // cumulative, so skipped Message events lose nothing
//!         last_save = Instant::now();
//!     }
//! }
//! ...
//! let outcome = exit::classify(process_end, &parser.finish(), cancelled_by_us);
//! ```

use serde::{Deserialize, Serialize};

/// At most this many `Err i/N:` lines are kept (imapsync's own default `--errorsmax` is 50).
pub const MAX_ERRORS: usize = 50;
/// Each kept error or notice line is cut to this many characters.
pub const MAX_LINE_CHARS: usize = 1000;
/// Cap for the small lists (live failures, signals, notices): they only need the first few.
const MAX_SMALL_LIST: usize = 20;

/// Something worth telling the caller about one line.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// The source mailbox size, from the sizing block before the transfer.
    Totals { messages: u64, bytes: u64 },
    /// imapsync started on folder `index` of `count` (1-based). `name` is the UTF-8 form.
    Folder {
        index: u32,
        count: u32,
        name: String,
    },
    /// One message handled (copied, skipped or simulated). `done`/`total` come from imapsync's
    /// `K/T msgs left` counter; `bytes_done` sums the sizes of the messages copied by this run.
    Message {
        done: u64,
        total: u64,
        bytes_done: u64,
        eta_secs: Option<u64>,
    },
    /// An error line (`HostN failure: ...` as it happens, `Err i/N: ...` in the final listing).
    Error(String),
    /// imapsync reported receiving a signal (`TERM`, `INT`, ...).
    Signal(String),
    /// A line an admin should see: Docker context, reconnection, suicide by signal...
    Notice(String),
}

impl ProgressEvent {
    /// True for the per-message events, which can arrive hundreds of times per second and should
    /// be coalesced; everything else is rare and worth persisting immediately.
    pub fn is_frequent(&self) -> bool {
        matches!(self, ProgressEvent::Message { .. })
    }
}

/// Cumulative progress of the run, as of the last line fed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// Messages imapsync intends to handle: `T` of `K/T msgs left`, else `Host1 Nb messages`.
    pub messages_total: Option<u64>,
    /// `Host1 Total size` from the sizing block.
    pub bytes_total: Option<u64>,
    /// Messages handled so far (`T - K`; includes skipped ones). Never decreases.
    pub messages_done: u64,
    /// `copied to` lines seen.
    pub messages_copied: u64,
    /// Sum of the `{SIZE}` of the copied messages.
    pub bytes_done: u64,
    pub folder_index: Option<u32>,
    pub folder_count: Option<u32>,
    pub folder_name: Option<String>,
    /// imapsync's own estimate of the seconds left.
    pub eta_secs: Option<u64>,
    pub msgs_per_sec: Option<f64>,
    pub bytes_per_sec: Option<u64>,
}

/// The `++++ Statistics` block. Every field is `None` when the line was not printed (early
/// failure, `--justlogin`) or printed as `NA`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Statistics {
    pub transfer_started: Option<String>,
    pub transfer_ended: Option<String>,
    pub transfer_time_secs: Option<f64>,
    pub folders_synced: Option<u32>,
    pub folders_total: Option<u32>,
    pub messages_transferred: Option<u64>,
    /// `--dry`: `Messages transferred : 0 (could be N without dry mode)`.
    pub messages_could_be_transferred: Option<u64>,
    pub messages_skipped: Option<u64>,
    pub duplicates_host1: Option<u64>,
    pub duplicates_host2: Option<u64>,
    pub crossduplicates_host2: Option<u64>,
    /// Messages with neither Message-Id nor Received: not synced without `--addheader`.
    pub void_host1: Option<u64>,
    pub void_host2: Option<u64>,
    pub host1_not_in_host2: Option<u64>,
    pub host2_not_in_host1: Option<u64>,
    pub deleted_host1: Option<u64>,
    pub deleted_host2: Option<u64>,
    pub bytes_transferred: Option<u64>,
    pub bytes_skipped: Option<u64>,
    pub message_rate: Option<f64>,
    pub average_bandwidth_kib: Option<f64>,
    pub reconnections_host1: Option<u64>,
    pub reconnections_host2: Option<u64>,
    pub biggest_message_transferred: Option<u64>,
    pub start_difference_messages: Option<i64>,
    pub start_difference_bytes: Option<i64>,
    /// `Final difference host2 - host1`: negative means messages stayed behind on host1.
    pub final_difference_messages: Option<i64>,
    pub final_difference_bytes: Option<i64>,
    pub detected_errors: Option<u64>,
}

/// The sentences imapsync prints after the statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Verdict {
    /// `The sync looks good, all N identified messages in host1 are on host2.`
    pub sync_looks_good: bool,
    pub identified_in_host1: Option<u64>,
    /// `The sync is not finished, there are N among M identified messages in host1 that are not on host2.`
    pub sync_not_finished: bool,
    pub not_finished_missing: Option<u64>,
    /// `There are N unidentified messages ...` / `There is no unidentified message on host1.`
    pub unidentified_host1: Option<u64>,
    /// `The sync is strict, ...` (true) or `The sync is not strict...` (false).
    pub sync_strict: Option<bool>,
}

/// Everything learned from one run, for classification and for the job's JSON record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    pub progress: Progress,
    pub stats: Statistics,
    pub verdict: Verdict,
    /// Sizing block before the transfer (`Host1 Nb messages`, `Host1 Total size`, ...).
    pub host1_messages: Option<u64>,
    pub host1_bytes: Option<u64>,
    pub host1_folders: Option<u32>,
    pub host2_messages_before: Option<u64>,
    pub host2_bytes_before: Option<u64>,
    /// Sizing block after the transfer (`--foldersizesatend`, on by default).
    pub host2_messages_after: Option<u64>,
    pub host2_bytes_after: Option<u64>,
    /// Sum of `duplicates D` over `Host1: folder [X] selected N messages, duplicates D`.
    pub duplicates_seen_host1: u64,
    /// `Host1: F/UID size N ignored (no wanted headers ...)` lines.
    pub noheader_ignored: u64,
    /// `Err i/N: ...` lines, verbatim, at most [`MAX_ERRORS`], each cut to [`MAX_LINE_CHARS`].
    pub errors: Vec<String>,
    /// `Err` lines dropped because of the cap.
    pub errors_omitted: u64,
    /// `++++ Listing N errors encountered during the sync`.
    pub errors_listed: Option<u64>,
    /// `Host1 failure: ...` / `Host2 failure: ...` as printed during the run (capped).
    pub failures: Vec<String>,
    /// `ERR_...` from `The most frequent error is ERR_....`
    pub most_frequent_error: Option<String>,
    /// `Unknown option: x` (stderr, exit 64).
    pub usage_error: Option<String>,
    /// `Exiting with return value N (NAME...)`.
    pub exit_value: Option<i32>,
    pub exit_name: Option<String>,
    pub nb_errors: Option<u64>,
    pub max_errors: Option<u64>,
    pub imapsync_version: Option<String>,
    pub imapsync_pid: Option<u32>,
    /// The echoed command line (imapsync prints passwords as `MASKED`), cut to [`MAX_LINE_CHARS`].
    pub command_line: Option<String>,
    pub log_file: Option<String>,
    pub no_log: bool,
    pub pid_file: Option<String>,
    pub docker_context: bool,
    pub dry_run: bool,
    pub justlogin: bool,
    pub justfolders: bool,
    /// Signal names from `Got a signal X`, in order (capped).
    pub signals_received: Vec<String>,
    /// `Info: reconnected to both imap servers` lines.
    pub reconnections: u64,
    /// `Killing myself with signal X`.
    pub killed_self_with: Option<String>,
    /// Docker-context and similar lines, verbatim (capped).
    pub notices: Vec<String>,
    /// Lines fed.
    pub lines: u64,
}

/// Line-by-line parser; see the module documentation.
#[derive(Debug, Default)]
pub struct OutputParser {
    s: RunSummary,
    /// Inside the `++++ Statistics` block (it runs to the end of the output).
    in_stats: bool,
    /// Past `++++ Looping`: a second sizing block describes the state after the sync.
    after_loop: bool,
    /// The line after `Command line used, run by ...` is the command line.
    expect_command_line: bool,
}

impl OutputParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Progress so far; cheap to clone and persist.
    pub fn progress(&self) -> &Progress {
        &self.s.progress
    }

    /// Everything learned so far.
    pub fn summary(&self) -> &RunSummary {
        &self.s
    }

    /// The end of the output: hand over what was learned.
    pub fn finish(self) -> RunSummary {
        self.s
    }

    /// Feed one line (with or without its `\n`/`\r\n`: raw IMAP lines keep their `\r`).
    pub fn feed(&mut self, line: &str) -> Option<ProgressEvent> {
        let line = line.trim_end_matches(['\n', '\r']);
        self.s.lines += 1;
        // By far the most frequent line: test it first.
        if let Some(rest) = line.strip_prefix("msg ") {
            return self.on_msg(rest);
        }
        if self.expect_command_line {
            self.expect_command_line = false;
            self.on_command_line(line);
            return None;
        }
        if self.in_stats
            && let Some((key, value)) = line.split_once(':')
            && self.on_stat(key.trim_end(), value.trim())
        {
            return None;
        }
        match line.as_bytes().first()? {
            b'+' => self.on_section(line),
            b'E' => self.on_e(line),
            b'F' => self.on_folder(line),
            b'H' => self.on_host(line),
            b'T' => self.on_verdict(line),
            _ => self.on_misc(line),
        }
    }

    /// `msg FOLDER/UID {SIZE}   copied to FOLDER/UID   X msgs/s  Y MiB/s Z MiB copied ETA: ... N s  K/T msgs left`
    /// or, with `--dry`, `msg FOLDER/UID copying to FOLDER \t(not really since --dry mode) ETA: ...`.
    fn on_msg(&mut self, rest: &str) -> Option<ProgressEvent> {
        let before = self.progress_key();
        if let Some((src, dst)) = rest.split_once(" copied to ") {
            let p = &mut self.s.progress;
            p.messages_copied += 1;
            // The size is the last `{N}` of the source part (folder names may contain braces).
            if let Some(size) = src.trim_end().strip_suffix('}').and_then(|s| {
                let open = s.rfind('{')?;
                s[open + 1..].parse::<u64>().ok()
            }) {
                p.bytes_done += size;
            }
            if let Some((head, tail)) = dst.rsplit_once(" msgs/s ") {
                p.msgs_per_sec = head.rsplit(' ').next().and_then(|x| x.parse().ok());
                let mut it = tail.split_whitespace();
                if let (Some(v), Some(unit)) = (it.next(), it.next()) {
                    p.bytes_per_sec = scaled(v, unit.trim_end_matches("/s"));
                }
            }
        } else if rest.contains("--dry mode") {
            self.s.dry_run = true;
        }
        self.on_msgs_left(rest);
        (self.progress_key() != before).then(|| self.message_event())
    }

    /// `... ETA: <date>  N s  K/T msgs left`, at the end of message and `ETA:` lines.
    fn on_msgs_left(&mut self, line: &str) {
        let Some((left, total, eta)) = msgs_left(line) else {
            return;
        };
        let p = &mut self.s.progress;
        p.messages_total = Some(total);
        // Monotonic on purpose: a UI bar must never go backwards.
        p.messages_done = p.messages_done.max(total.saturating_sub(left));
        p.eta_secs = eta;
    }

    fn progress_key(&self) -> (u64, u64, u64, Option<u64>) {
        let p = &self.s.progress;
        (p.messages_done, p.messages_copied, p.bytes_done, p.eta_secs)
    }

    fn message_event(&self) -> ProgressEvent {
        let p = &self.s.progress;
        ProgressEvent::Message {
            done: p.messages_done,
            total: p.messages_total.unwrap_or(p.messages_done),
            bytes_done: p.bytes_done,
            eta_secs: p.eta_secs,
        }
    }

    fn on_section(&mut self, line: &str) -> Option<ProgressEvent> {
        if line.starts_with("++++ Statistics") {
            self.in_stats = true;
        } else if line.starts_with("++++ Looping") {
            self.after_loop = true;
        } else if let Some(rest) = line.strip_prefix("++++ Listing ") {
            self.s.errors_listed = first_u64(rest);
        }
        None
    }

    fn on_e(&mut self, line: &str) -> Option<ProgressEvent> {
        if let Some(rest) = line.strip_prefix("Err ") {
            // `Err i/N: text`
            let text = cut(rest.split_once(": ").map_or(rest, |(_, t)| t));
            // Already reported live as `HostN failure: ...`: keep it, but do not announce it twice.
            let already_seen = self.s.failures.contains(&text);
            if self.s.errors.len() < MAX_ERRORS {
                self.s.errors.push(cut(line));
            } else {
                self.s.errors_omitted += 1;
            }
            return (!already_seen).then_some(ProgressEvent::Error(text));
        }
        if line.starts_with("ETA: ") {
            let before = self.progress_key();
            self.on_msgs_left(line);
            return (self.progress_key() != before).then(|| self.message_event());
        }
        if let Some(rest) = line.strip_prefix("Exiting with return value ") {
            // `6 (EXIT_BY_SIGNAL) 1/50 nb_errors/max_errors PID 16611`
            self.s.exit_value = rest.split(' ').next().and_then(|v| v.parse().ok());
            if let Some((_, after)) = rest.split_once('(') {
                let inside = after.split(')').next().unwrap_or(after);
                let name = inside.split(':').next().unwrap_or(inside).trim();
                self.s.exit_name = Some(name.to_owned());
                let counts = after.split_once(')').map_or("", |(_, c)| c.trim_start());
                let counts = counts.split(' ').next().unwrap_or_default();
                if let Some((n, m)) = counts.split_once('/') {
                    self.s.nb_errors = n.parse().ok();
                    self.s.max_errors = m.parse().ok();
                }
            }
        } else if line.starts_with("Exiting because of --justlogin") {
            self.s.justlogin = true;
        } else if line.starts_with("Ended by a signal") {
            return self.notice(line);
        }
        None
    }

    /// `Folder    7/16 [INBOX]        -> [INBOX]` or `Folder 1/16 [&BB8E...-] = [Привет] -> [...]`.
    fn on_folder(&mut self, line: &str) -> Option<ProgressEvent> {
        let rest = line.strip_prefix("Folder ")?.trim_start();
        let (counter, rest) = rest.split_once(' ')?;
        let (index, count) = counter.split_once('/')?;
        let (index, count) = (index.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        let src = rest.split(" -> [").next().unwrap_or(rest).trim();
        // Prefer the UTF-8 form `[imap-utf7] = [utf8]` that imapsync prints for non-ASCII names.
        let name = match src.split_once("] = [") {
            Some((_, utf8)) => utf8.strip_suffix(']').unwrap_or(utf8),
            None => src.trim_start_matches('[').trim_end_matches(']'),
        }
        .to_owned();
        let p = &mut self.s.progress;
        p.folder_index = Some(index);
        p.folder_count = Some(count);
        p.folder_name = Some(name.clone());
        Some(ProgressEvent::Folder { index, count, name })
    }

    fn on_host(&mut self, line: &str) -> Option<ProgressEvent> {
        let s = &mut self.s;
        // Host1 is only read, so its end-of-run sizes fill in when there was no sizing before
        // (`--justfolders`); they do not become progress totals then: nothing was to be copied.
        if let Some(v) = line.strip_prefix("Host1 Nb messages:") {
            s.host1_messages = s.host1_messages.or(first_u64(v));
            if !self.after_loop {
                s.progress.messages_total = s.progress.messages_total.or(s.host1_messages);
            }
        } else if let Some(v) = line.strip_prefix("Host1 Total size:") {
            s.host1_bytes = s.host1_bytes.or(first_u64(v));
            if !self.after_loop {
                s.progress.bytes_total = s.host1_bytes;
                return Some(ProgressEvent::Totals {
                    messages: s.host1_messages.unwrap_or(0),
                    bytes: s.host1_bytes.unwrap_or(0),
                });
            }
        } else if let Some(v) = line.strip_prefix("Host2 Nb messages:") {
            let slot = if self.after_loop {
                &mut s.host2_messages_after
            } else {
                &mut s.host2_messages_before
            };
            *slot = first_u64(v);
        } else if let Some(v) = line.strip_prefix("Host2 Total size:") {
            let slot = if self.after_loop {
                &mut s.host2_bytes_after
            } else {
                &mut s.host2_bytes_before
            };
            *slot = first_u64(v);
        } else if let Some(v) = line.strip_prefix("Host1 Nb folders:") {
            s.host1_folders = first_u64(v).and_then(|n| u32::try_from(n).ok());
        } else if let Some(rest) = line.strip_prefix("Host1: ") {
            if rest.starts_with("folder [") {
                if let Some((_, d)) = rest.rsplit_once(", duplicates ") {
                    s.duplicates_seen_host1 += first_u64(d).unwrap_or(0);
                }
            } else if rest.contains(" ignored (no wanted headers") {
                s.noheader_ignored += 1;
            }
        } else if line.starts_with("Host1 failure: ") || line.starts_with("Host2 failure: ") {
            if s.failures.len() < MAX_SMALL_LIST {
                s.failures.push(cut(line));
            }
            return Some(ProgressEvent::Error(cut(line)));
        } else if let Some(rest) = line.strip_prefix("Here is imapsync ") {
            s.imapsync_version = rest.split(' ').next().map(str::to_owned);
        }
        None
    }

    fn on_verdict(&mut self, line: &str) -> Option<ProgressEvent> {
        let v = &mut self.s.verdict;
        if let Some(rest) = line.strip_prefix("The sync looks good, all ") {
            v.sync_looks_good = true;
            v.identified_in_host1 = first_u64(rest);
        } else if let Some(rest) = line.strip_prefix("The sync is not finished") {
            v.sync_not_finished = true;
            v.not_finished_missing = rest
                .split_once("there are ")
                .and_then(|(_, n)| first_u64(n));
        } else if line.starts_with("The sync is strict") {
            v.sync_strict = Some(true);
        } else if line.starts_with("The sync is not strict") {
            v.sync_strict = Some(false);
        } else if let Some(rest) = line.strip_prefix("There are ") {
            if rest.contains(" unidentified messages") {
                v.unidentified_host1 = first_u64(rest);
            }
        } else if line.starts_with("There is no unidentified message") {
            v.unidentified_host1 = Some(0);
        } else if let Some(rest) = line.strip_prefix("The most frequent error is ") {
            let code = rest.split([' ', '.']).next().unwrap_or(rest);
            self.s.most_frequent_error = Some(code.to_owned());
        }
        None
    }

    fn on_misc(&mut self, line: &str) -> Option<ProgressEvent> {
        let s = &mut self.s;
        if let Some(rest) = line.strip_prefix("Got a signal ") {
            let name = rest.split([' ', '.']).next().unwrap_or(rest).to_owned();
            if s.signals_received.len() < MAX_SMALL_LIST {
                s.signals_received.push(name.clone());
            }
            return Some(ProgressEvent::Signal(name));
        }
        if line.starts_with("Info: reconnected to both imap servers") {
            s.reconnections += 1;
            return self.notice(line);
        }
        if let Some(rest) = line.strip_prefix("Killing myself with signal ") {
            s.killed_self_with = Some(rest.trim().to_owned());
            return self.notice(line);
        }
        if let Some(rest) = line.strip_prefix("Log file is ") {
            let path = rest.split(" ( to change it").next().unwrap_or(rest);
            s.log_file = Some(path.to_owned());
        } else if line.starts_with("No log file because of option --nolog") {
            s.no_log = true;
        } else if let Some(rest) = line.strip_prefix("PID file is ") {
            if !rest.starts_with("unset") {
                s.pid_file = rest.split(" ( to change it").next().map(str::to_owned);
            }
        } else if let Some(rest) = line.strip_prefix("PID is ") {
            s.imapsync_pid = rest.split(' ').next().and_then(|p| p.parse().ok());
        } else if line.starts_with("Command line used") {
            self.expect_command_line = true;
        } else if let Some(rest) = line.strip_prefix("Detected ") {
            s.stats.detected_errors = first_u64(rest);
        } else if let Some(rest) = line.strip_prefix("Unknown option: ") {
            s.usage_error
                .get_or_insert_with(|| cut(&format!("Unknown option: {rest}")));
        } else if line.starts_with("Docker context detected")
            || line.starts_with("No log by default in Docker context")
            || line.starts_with("Under docker context")
        {
            s.docker_context = true;
            return self.notice(line);
        } else if line.starts_with("Changing current directory to ") {
            return self.notice(line);
        }
        None
    }

    fn on_command_line(&mut self, line: &str) {
        for arg in line.split_whitespace() {
            match arg {
                "--dry" => self.s.dry_run = true,
                "--justlogin" => self.s.justlogin = true,
                "--justfolders" => self.s.justfolders = true,
                _ => {}
            }
        }
        self.s.command_line = Some(cut(line));
    }

    /// One `Key   : value` line of the statistics block; false if the key is not one of them.
    fn on_stat(&mut self, key: &str, v: &str) -> bool {
        let st = &mut self.s.stats;
        match key {
            "Transfer started on" => st.transfer_started = Some(v.to_owned()),
            "Transfer ended on" => st.transfer_ended = Some(v.to_owned()),
            "Transfer time" => st.transfer_time_secs = first_f64(v),
            "Folders synced" => {
                let (a, b) = v
                    .split(' ')
                    .next()
                    .and_then(|c| c.split_once('/'))
                    .unwrap_or(("", ""));
                st.folders_synced = a.parse().ok();
                st.folders_total = b.parse().ok();
            }
            "Messages transferred" => {
                st.messages_transferred = first_u64(v);
                if let Some((_, n)) = v.split_once("(could be ") {
                    st.messages_could_be_transferred = first_u64(n);
                    self.s.dry_run = true;
                }
            }
            "Messages skipped" => st.messages_skipped = first_u64(v),
            "Messages found duplicate on host1" => st.duplicates_host1 = first_u64(v),
            "Messages found duplicate on host2" => st.duplicates_host2 = first_u64(v),
            "Messages found crossduplicate on host2" => st.crossduplicates_host2 = first_u64(v),
            "Messages void (noheader) on host1" => st.void_host1 = first_u64(v),
            "Messages void (noheader) on host2" => st.void_host2 = first_u64(v),
            "Messages found in host1 not in host2" => st.host1_not_in_host2 = first_u64(v),
            "Messages found in host2 not in host1" => st.host2_not_in_host1 = first_u64(v),
            "Messages deleted on host1" => st.deleted_host1 = first_u64(v),
            "Messages deleted on host2" => st.deleted_host2 = first_u64(v),
            "Total bytes transferred" => st.bytes_transferred = first_u64(v),
            "Total bytes skipped" => st.bytes_skipped = first_u64(v),
            "Message rate" => st.message_rate = first_f64(v),
            "Average bandwidth rate" => st.average_bandwidth_kib = first_f64(v),
            "Reconnections to host1" => st.reconnections_host1 = first_u64(v),
            "Reconnections to host2" => st.reconnections_host2 = first_u64(v),
            "Biggest message transferred" => st.biggest_message_transferred = first_u64(v),
            "Start difference host2 - host1" => {
                (st.start_difference_messages, st.start_difference_bytes) = difference(v);
            }
            "Final difference host2 - host1" => {
                (st.final_difference_messages, st.final_difference_bytes) = difference(v);
            }
            _ => return false,
        }
        true
    }

    fn notice(&mut self, line: &str) -> Option<ProgressEvent> {
        if self.s.notices.len() < MAX_SMALL_LIST {
            self.s.notices.push(cut(line));
        }
        Some(ProgressEvent::Notice(cut(line)))
    }
}

/// `(K, T, N)` from `... N s  K/T msgs left`.
fn msgs_left(line: &str) -> Option<(u64, u64, Option<u64>)> {
    let (head, counter) = line.strip_suffix(" msgs left")?.rsplit_once(' ')?;
    let (left, total) = counter.split_once('/')?;
    let eta = head
        .trim_end()
        .strip_suffix(" s")
        .and_then(|h| h.rsplit(' ').next());
    Some((
        left.parse().ok()?,
        total.parse().ok()?,
        eta.and_then(|n| n.parse().ok()),
    ))
}

/// The leading unsigned integer of `s` (after spaces), e.g. `"  300 messages"` → 300.
fn first_u64(s: &str) -> Option<u64> {
    let s = s.trim_start();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

fn first_f64(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// `-4 messages, -1069624 bytes (-1.020 MiB)`; `NA messages, NA bytes (NA)` gives `None`s.
fn difference(v: &str) -> (Option<i64>, Option<i64>) {
    let mut it = v.split(", ");
    let num = |part: Option<&str>| {
        part.and_then(|p| p.split(' ').next())
            .and_then(|n| n.parse().ok())
    };
    (num(it.next()), num(it.next()))
}

/// `5.596` `MiB` → bytes.
fn scaled(value: &str, unit: &str) -> Option<u64> {
    let factor = match unit {
        "B" | "bytes" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v: f64 = value.parse().ok()?;
    Some((v * factor).round() as u64)
}

/// `line` cut to [`MAX_LINE_CHARS`] characters (on a char boundary).
fn cut(line: &str) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((i, _)) => line[..i].to_owned(),
        None => line.to_owned(),
    }
}
