//! The imapsync engine: one job is one imapsync child process.
//!
//! What the child is given (argv, environment, pass files, pid file, work directory) and why is
//! in `argv.rs`. Here: running it, streaming its output, cancelling it. Facts about imapsync
//! 2.229 come from `tests/fixtures/imapsync/INDEX.md`.
//!
//! * **Log**: imapsync runs with `--nolog` and pymap writes the job log itself from the
//!   streamed output. imapsync's log holds nothing that stdout does not (INDEX.md: the log is
//!   stdout minus one line), while stderr (usage errors, Perl warnings) is only in our log;
//!   there is a single writer, so no two processes append to one file; the stand-in, imapsync
//!   and the native engine produce the same kind of log, with pymap's own lines (`pymap: ...`:
//!   cancel, exit status) in their place in time; imapsync's placement gotchas do not apply
//!   (`--logfile` without `--logdir` lands under `./LOG_imapsync/`, fixture u1; no log at all in
//!   Docker context, fixture l); and the log lives outside the work directory, which is removed
//!   after every run. The price: if pymap itself dies, imapsync dies too (SIGPIPE on its next
//!   line) and its last lines are lost; the job is then rerun anyway.
//! * **Streams**: stdout and stderr are read concurrently, line by line as bytes, and merged
//!   in order of arrival; both are read to their end before the run is classified. The log
//!   gets the raw bytes; the parser and the observer get the line decoded (lossy UTF-8),
//!   without `\r`, cut to 64 KiB.
//! * **Process group**: the child leads its own group. Cancelling sends SIGTERM to the group,
//!   then SIGKILL after the grace period, because imapsync may stay blocked up to `--timeout`
//!   after TERM (INDEX.md, "Signals").
//! * **Cleanup**: a guard (`argv::WorkDir`) kills the group if it is still alive and removes
//!   the pass files, the pid file and the work directory on every way out of a run: success,
//!   failure, cancel, a panic in an observer or the run's future being dropped.

use std::{
    ffi::OsStr,
    fs,
    io::{self, BufWriter, Read, Write},
    os::unix::{
        fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
        process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::{mpsc, oneshot},
    time::MissedTickBehavior,
};
use tokio_util::sync::CancellationToken;

use super::{
    argv::{
        self, PASSFILE1, PASSFILE2, WorkDir, child_env, executable, find_on_path, signal_group,
        write_passfile,
    },
    exit::{Outcome, ProcessEnd, classify, signal_name},
    parse::{OutputParser, RunSummary},
};
use crate::worker::{
    engine::{BoxFuture, Engine, JobObserver, JobSpec, RunResult},
    status::JobStatus,
};

/// Time between SIGTERM and SIGKILL when a run is cancelled (INDEX.md's cancel recipe).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Each line is cut to this many bytes before it reaches the parser and the observer.
pub const PARSE_LINE_BYTES: usize = 64 * 1024;
/// Longer lines are split into pieces of this size (in the log too): memory stays bounded
/// whatever imapsync prints.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How long the output may stay open after imapsync exited (something it started holds it).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(5);
/// `exit_name` of runs that never started.
pub const SPAWN_FAILED: &str = "SPAWN_FAILED";
pub const INVALID_JOB: &str = "INVALID_JOB";
pub const NOT_STARTED: &str = "NOT_STARTED";
pub const WAIT_FAILED: &str = "WAIT_FAILED";

/// Runs jobs with an imapsync executable.
#[derive(Clone, Debug)]
pub struct ImapsyncEngine {
    path: PathBuf,
    grace: Duration,
}

impl ImapsyncEngine {
    /// The configured executable (which must exist and be executable), else `imapsync` on PATH.
    pub fn locate(configured: Option<&Path>) -> Result<Self, String> {
        Self::locate_in(configured, std::env::var_os("PATH").as_deref())
    }

    /// [`ImapsyncEngine::locate`] with an explicit search path (a `PATH`-style list).
    pub fn locate_in(
        configured: Option<&Path>,
        search_path: Option<&OsStr>,
    ) -> Result<Self, String> {
        let path = match configured {
            Some(p) => {
                executable(p).map_err(|why| {
                    format!(
                        "imapsync_path is set to {}, but {why}. Set imapsync_path in the \
                         configuration (or the PYMAP_IMAPSYNC_PATH environment variable) to the \
                         full path of the imapsync executable, or unset it to look for imapsync \
                         on PATH.",
                        p.display()
                    )
                })?;
                std::path::absolute(p).map_err(|e| format!("imapsync_path {}: {e}", p.display()))?
            }
            None => find_on_path(search_path).ok_or_else(|| {
                let shown = search_path
                    .map(|p| p.to_string_lossy().into_owned())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "empty".into());
                format!(
                    "imapsync was not found: there is no executable named imapsync on PATH \
                     ({shown}). Install imapsync (pymap is tested with 2.229), or set \
                     imapsync_path in the configuration file or the PYMAP_IMAPSYNC_PATH \
                     environment variable to the full path of the imapsync executable."
                )
            })?,
        };
        Ok(Self {
            path,
            grace: DEFAULT_GRACE,
        })
    }

    /// Time between SIGTERM and SIGKILL when a run is cancelled.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }
}

impl Engine for ImapsyncEngine {
    fn name(&self) -> &'static str {
        "imapsync"
    }

    /// Runs `<path> --version` (10 s at most) and returns its first line. Blocking.
    fn version(&self) -> Result<String, String> {
        let shown = self.path.display();
        let mut child = std::process::Command::new(&self.path)
            .arg("--version")
            .env_clear()
            .envs(child_env(None))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("could not run {shown} --version: {e}"))?;
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(stdout) = stdout {
                let _ = stdout.take(64 * 1024).read_to_end(&mut out);
            }
            out
        });
        let deadline = Instant::now() + VERSION_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    signal_group(child.id() as i32, libc::SIGKILL);
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{shown} --version did not answer within {VERSION_TIMEOUT:?}"
                    ));
                }
                Err(e) => return Err(format!("{shown} --version: {e}")),
            }
        };
        let out = reader.join().unwrap_or_default();
        let first = String::from_utf8_lossy(&out);
        let first = first.lines().next().unwrap_or("").trim();
        match (status.success(), first.is_empty()) {
            (true, false) => Ok(first.to_owned()),
            (true, true) => Err(format!("{shown} --version printed nothing")),
            (false, _) => Err(format!("{shown} --version failed ({})", describe(status))),
        }
    }

    fn run(
        &self,
        spec: JobSpec,
        observer: Arc<dyn JobObserver>,
        cancel: CancellationToken,
    ) -> BoxFuture<RunResult> {
        let engine = self.clone();
        Box::pin(async move { engine.run_job(spec, observer, cancel).await })
    }
}

fn describe(status: ExitStatus) -> String {
    match status.signal() {
        Some(sig) => format!("killed by {}", signal_name(sig)),
        None => format!("exit code {}", status.code().unwrap_or(-1)),
    }
}

/// A run that ended before imapsync started.
fn not_started(status: JobStatus, exit_name: &str, reason: String) -> RunResult {
    RunResult {
        outcome: Outcome {
            status,
            exit_code: None,
            exit_name: exit_name.to_owned(),
            reason,
            retryable: false,
        },
        summary: RunSummary::default(),
    }
}

/// Says why in the log, then gives up.
fn refuse(out: &mut Output, exit_name: &str, reason: String) -> RunResult {
    out.pymap(&reason);
    out.flush();
    not_started(JobStatus::Failed, exit_name, reason)
}

impl ImapsyncEngine {
    async fn run_job(
        self,
        spec: JobSpec,
        observer: Arc<dyn JobObserver>,
        cancel: CancellationToken,
    ) -> RunResult {
        // Declared first, dropped last: after the child (kill_on_drop) and everything else.
        let mut work = WorkDir::new(&spec.work_dir);
        let mut out = match Output::open(&spec.log_path, observer, spec.job_id) {
            Ok(out) => out,
            Err(e) => {
                let shown = spec.log_path.display();
                let reason = format!("Could not open the job log {shown}: {e}.");
                return not_started(JobStatus::Failed, SPAWN_FAILED, reason);
            }
        };
        if cancel.is_cancelled() {
            out.pymap("cancel requested before imapsync started");
            out.flush();
            let reason = "Cancelled before imapsync started.".to_owned();
            return not_started(JobStatus::Cancelled, NOT_STARTED, reason);
        }
        if let Err(reason) = argv::check(&spec) {
            return refuse(&mut out, INVALID_JOB, reason);
        }
        if let Err(e) = work.create() {
            let shown = spec.work_dir.display();
            let reason = format!("The work directory {shown} is unusable: {e}.");
            return refuse(&mut out, SPAWN_FAILED, reason);
        }
        for (name, secret) in [(PASSFILE1, &spec.password1), (PASSFILE2, &spec.password2)] {
            let path = spec.work_dir.join(name);
            if let Err(e) = write_passfile(&path, secret.expose()) {
                let reason = format!("Could not write the pass file {}: {e}.", path.display());
                return refuse(&mut out, SPAWN_FAILED, reason);
            }
        }
        let mut command = Command::new(&self.path);
        command
            .args(argv::build(&spec, &spec.work_dir))
            .env_clear()
            .envs(child_env(Some(&spec.work_dir)))
            .current_dir(&spec.work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return refuse(&mut out, SPAWN_FAILED, spawn_failure(&self.path, &e)),
        };
        // The child is the leader of its own group: its pid is the group id.
        let pgid = child.id().map_or(0, |pid| pid as i32);
        work.group = Some(pgid);
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let reason = "imapsync's output could not be captured.".to_owned();
            return refuse(&mut out, SPAWN_FAILED, reason);
        };

        let mut parser = OutputParser::new();
        let (tx, rx) = mpsc::channel(1024);
        let (exited_tx, exited_rx) = oneshot::channel();
        let readers = drain(stdout, stderr, tx.clone(), exited_rx, pgid);
        let (child_ref, cancel_ref, grace) = (&mut child, &cancel, self.grace);
        let supervisor = async move {
            let result = supervise(child_ref, pgid, cancel_ref, grace, &tx).await;
            let _ = exited_tx.send(());
            result
        };
        let consumer = consume(rx, &mut out, &mut parser);
        let ((), (status, cancelled), ()) = tokio::join!(readers, supervisor, consumer);

        if work.reaped() {
            out.pymap("killed processes that imapsync left behind in its process group");
        }
        let summary = parser.finish();
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                let reason = format!("Could not wait for imapsync to end: {e}.");
                out.pymap(&reason);
                out.flush();
                let mut result = not_started(JobStatus::Failed, WAIT_FAILED, reason);
                result.summary = summary;
                return result;
            }
        };
        let end = match status.signal() {
            Some(sig) => ProcessEnd::Signaled(sig),
            None => ProcessEnd::Exited(status.code().unwrap_or(-1)),
        };
        out.pymap(&format!("imapsync ended: {}", describe(status)));
        if let Err(e) = work.cleanup() {
            let shown = spec.work_dir.display();
            out.pymap(&format!("could not remove the work directory {shown}: {e}"));
        }
        out.flush();
        RunResult {
            outcome: classify(end, &summary, cancelled),
            summary,
        }
    }
}

fn spawn_failure(path: &Path, e: &io::Error) -> String {
    let shown = path.display();
    match e.kind() {
        io::ErrorKind::NotFound if path.exists() => format!(
            "Could not start imapsync: the interpreter named on the first line of {shown} \
             (usually perl) is missing."
        ),
        io::ErrorKind::NotFound => format!(
            "Could not start imapsync: {shown} does not exist (any more). Install imapsync or \
             fix imapsync_path (PYMAP_IMAPSYNC_PATH)."
        ),
        io::ErrorKind::PermissionDenied => {
            format!("Could not start imapsync: {shown} is not executable (permission denied).")
        }
        _ => format!("Could not start imapsync ({shown}): {e}."),
    }
}

/// What flows from the readers (and the supervisor) to the log.
enum Msg {
    /// One line of imapsync's stdout or stderr, raw, without its `"\n"`.
    Line(Vec<u8>),
    /// One of pymap's own lines, without the `pymap: ` prefix.
    Pymap(String),
}

/// Waits for the child; on cancel, TERM to the group, then KILL after `grace`.
/// Returns the exit status and whether we cancelled.
async fn supervise(
    child: &mut Child,
    pgid: i32,
    cancel: &CancellationToken,
    grace: Duration,
    tx: &mpsc::Sender<Msg>,
) -> (io::Result<ExitStatus>, bool) {
    tokio::select! {
        biased;
        status = child.wait() => return (status, false),
        () = cancel.cancelled() => {}
    }
    signal_group(pgid, libc::SIGTERM);
    let _ = tx
        .send(Msg::Pymap("cancel requested, sent SIGTERM".into()))
        .await;
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return (status, true);
    }
    signal_group(pgid, libc::SIGKILL);
    let line = format!("still running after {grace:?}, sent SIGKILL");
    let _ = tx.send(Msg::Pymap(line)).await;
    (child.wait().await, true)
}

/// Reads stdout and stderr to their ends. Should they stay open [`DRAIN_AFTER_EXIT`] after
/// imapsync exited (a process it started holds them), kill the group and stop waiting.
async fn drain(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Msg>,
    exited: oneshot::Receiver<()>,
    pgid: i32,
) {
    let both = async { tokio::join!(read_lines(stdout, &tx), read_lines(stderr, &tx)) };
    tokio::pin!(both);
    let too_long = async {
        match exited.await {
            Ok(()) => tokio::time::sleep(DRAIN_AFTER_EXIT).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = &mut both => return,
        () = too_long => {}
    }
    let line = format!(
        "imapsync exited but its output was still open after {DRAIN_AFTER_EXIT:?}: killing its \
         process group"
    );
    let _ = tx.send(Msg::Pymap(line)).await;
    signal_group(pgid, libc::SIGKILL);
    if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut both)
        .await
        .is_err()
    {
        let line = "gave up reading imapsync's output".to_owned();
        let _ = tx.send(Msg::Pymap(line)).await;
    }
}

async fn read_lines(stream: impl AsyncRead + Unpin, tx: &mpsc::Sender<Msg>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let mut line = Vec::new();
        match read_line(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(0) => return,
            Ok(_) => {
                if tx.send(Msg::Line(line)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let line = format!("reading imapsync's output failed: {e}");
                let _ = tx.send(Msg::Pymap(line)).await;
                return;
            }
        }
    }
}

/// Appends one line to `line`, without its `"\n"`, or the first `max` bytes of a longer one
/// (the rest comes with the next call). Returns the bytes consumed: 0 at the end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let room = max.saturating_sub(line.len());
        let newline = available.iter().position(|&b| b == b'\n');
        let (take, done) = match newline {
            Some(i) if i <= room => (i + 1, true),
            _ => (available.len().min(room), false),
        };
        let chunk = &available[..take];
        line.extend_from_slice(chunk.strip_suffix(b"\n").unwrap_or(chunk));
        reader.consume(take);
        consumed += take;
        if done || line.len() >= max {
            return Ok(consumed);
        }
    }
}

/// The text of a raw line for the parser and the observer: without its `"\r"`, cut to
/// [`PARSE_LINE_BYTES`], invalid UTF-8 replaced.
fn line_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    String::from_utf8_lossy(&raw[..raw.len().min(PARSE_LINE_BYTES)]).into_owned()
}

/// Writes every message to the log, in order of arrival, and flushes at least every
/// [`FLUSH_EVERY`].
async fn consume(mut rx: mpsc::Receiver<Msg>, out: &mut Output, parser: &mut OutputParser) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Line(raw)) => out.imapsync_line(&raw, parser),
                Some(Msg::Pymap(text)) => out.pymap(&text),
                None => break,
            },
            _ = tick.tick() => out.flush(),
        }
    }
    out.flush();
}

/// The job log plus the observer: everything a line goes to.
struct Output {
    log: BufWriter<fs::File>,
    path: PathBuf,
    dirty: bool,
    broken: bool,
    last_flush: Instant,
    observer: Arc<dyn JobObserver>,
    job_id: i64,
}

impl Output {
    /// Opens (appends to) the job log, 0600, creating its directory (0700) if needed.
    fn open(path: &Path, observer: Arc<dyn JobObserver>, job_id: i64) -> io::Result<Output> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        Ok(Output {
            // Appends land in the page cache: writing synchronously costs microseconds, and
            // tokio::fs would only move each write to the blocking pool.
            log: BufWriter::with_capacity(64 * 1024, file),
            path: path.to_owned(),
            dirty: false,
            broken: false,
            last_flush: Instant::now(),
            observer,
            job_id,
        })
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        let written = self
            .log
            .write_all(bytes)
            .and_then(|()| self.log.write_all(b"\n"));
        self.dirty = true;
        if let Err(e) = written {
            self.broken(&e);
        }
    }

    /// A failing log (disk full...) does not stop the run: the parser and the observer still
    /// get every line, and the failure is reported once.
    fn broken(&mut self, e: &io::Error) {
        self.broken = true;
        let (job_id, path) = (self.job_id, self.path.display());
        tracing::warn!(job_id, "writing the job log {path} failed: {e}");
    }

    fn imapsync_line(&mut self, raw: &[u8], parser: &mut OutputParser) {
        self.write(raw);
        let text = line_text(raw);
        let event = parser.feed(&text);
        self.observer.line(self.job_id, &text);
        if let Some(event) = event {
            let rare = !event.is_frequent();
            self.observer.progress(self.job_id, parser.progress(), rare);
        }
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// One of pymap's own lines, prefixed so nobody takes it for imapsync's.
    fn pymap(&mut self, text: &str) {
        let line = format!("pymap: {text}");
        self.write(line.as_bytes());
        self.observer.line(self.job_id, &line);
    }

    fn flush(&mut self) {
        if self.dirty && !self.broken {
            if let Err(e) = self.log.flush() {
                self.broken(&e);
            }
            self.dirty = false;
        }
        self.last_flush = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut reader = input;
        let mut all = Vec::new();
        loop {
            let mut line = Vec::new();
            if read_line(&mut reader, &mut line, max).await.unwrap() == 0 {
                return all;
            }
            all.push(line);
        }
    }

    #[tokio::test]
    async fn lines_are_split_on_newlines_and_capped() {
        let got = lines(b"a\r\n\nbb\nlast", 4).await;
        assert_eq!(got, [&b"a\r"[..], b"", b"bb", b"last"]);
        // Exactly `max` bytes then a newline: no spurious empty line.
        let got = lines(b"abcd\nabcdefghij\nx\n", 4).await;
        assert_eq!(got, [&b"abcd"[..], b"abcd", b"efgh", b"ij", b"x"]);
        let big = vec![b'x'; 3 * MAX_LINE_BYTES / 2];
        let got = lines(&[&big[..], b"\nend\n"].concat(), MAX_LINE_BYTES).await;
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES, MAX_LINE_BYTES / 2, 3]
        );
    }

    #[test]
    fn line_text_strips_cr_caps_and_replaces_invalid_utf8() {
        assert_eq!(line_text(b"Dovecot ready.\r"), "Dovecot ready.");
        assert_eq!(line_text(b"caf\xe9"), "caf\u{fffd}");
        let long = vec![b'y'; PARSE_LINE_BYTES + 10];
        assert_eq!(line_text(&long).len(), PARSE_LINE_BYTES);
    }
}
