//! The imapsync runner (`ImapsyncEngine`) driving the `imapsync-standin` executable.
//!
//! These tests check **process handling, not migration**: the stand-in replays captured
//! imapsync output (tests/fixtures/imapsync) and moves no mail; no IMAP server is involved.
//! They check what reaches the child (argv, environment, pass files), that its output reaches
//! the log, the parser and the observer without loss, how exit statuses are classified, that
//! cancel goes TERM then KILL, and that nothing (work directory, passwords) is left behind.
//!
//! The runner clears the child's environment, so the stand-in's settings ride in the user
//! name: `standin-<fixture>+speed<X>+startup<MS>+hang@example.com` (see its documentation).

use std::{
    collections::BTreeSet,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use pymap::{
    service::{batch::Secret, hosts::HostSpec, imapsync_options::MigrationOptions},
    worker::{
        engine::{Engine, JobObserver, JobSpec, RunResult},
        imapsync::{parse::Progress, runner::ImapsyncEngine},
        status::JobStatus,
    },
};
use tokio_util::sync::CancellationToken;

const STANDIN: &str = env!("CARGO_BIN_EXE_imapsync-standin");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imapsync");
/// Generous: only the SIGKILL test relies on the grace running out.
const GRACE: Duration = Duration::from_secs(30);
/// For anything that must happen "eventually" on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);
const PASSWORD1: &str = r#"p@ss w0rd "q" $x 'y' \z"#;
const PASSWORD2: &str = r#"2nd s3cr3t "w0rd2" `id` ;|&"#;

#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<String>>,
    progress: Mutex<Vec<(Progress, bool)>>,
}

impl JobObserver for Recorder {
    fn progress(&self, job_id: i64, progress: &Progress, rare: bool) {
        assert_eq!(job_id, 7);
        let mut all = self.progress.lock().unwrap();
        all.push((progress.clone(), rare));
    }

    fn line(&self, job_id: i64, line: &str) {
        assert_eq!(job_id, 7);
        self.lines.lock().unwrap().push(line.to_owned());
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn messages_done(&self) -> u64 {
        let all = self.progress.lock().unwrap();
        all.last().map_or(0, |(p, _)| p.messages_done)
    }

    /// Waits until imapsync reported at least one handled message.
    async fn wait_for_a_message(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.messages_done() == 0 {
            assert!(Instant::now() < deadline, "no progress came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Job {
    dir: tempfile::TempDir,
    spec: JobSpec,
}

impl Job {
    fn new(user1: &str) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let spec = JobSpec {
            job_id: 7,
            task_id: 3,
            host1: HostSpec {
                host: "imap.old.example".into(),
                port: Some(143),
            },
            user1: user1.into(),
            password1: Secret::new(PASSWORD1),
            host2: HostSpec {
                host: "imap.new.example".into(),
                port: None,
            },
            user2: "bob@new.example".into(),
            password2: Secret::new(PASSWORD2),
            options: MigrationOptions::default(),
            log_path: dir.path().join("logs/task-3/job-7.log"),
            work_dir: dir.path().join("run/job-7"),
        };
        Job { dir, spec }
    }

    fn work(&self, name: &str) -> PathBuf {
        self.spec.work_dir.join(name)
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.spec.log_path).unwrap()).into_owned()
    }

    /// The log's lines that came from imapsync (pymap's own start with `pymap: `).
    fn imapsync_log_lines(&self) -> Vec<String> {
        let log = self.log();
        let lines = log.lines().filter(|l| !l.starts_with("pymap: "));
        lines.map(str::to_owned).collect()
    }

    fn pymap_log_lines(&self) -> Vec<String> {
        let log = self.log();
        let lines = log.lines().filter(|l| l.starts_with("pymap: "));
        lines.map(str::to_owned).collect()
    }

    /// After any run: no work directory, nothing at all left where it was, and no password
    /// in any file under the test directory (the log included).
    fn assert_clean(&self) {
        assert!(!self.spec.work_dir.exists(), "work dir left behind");
        let parent = self.spec.work_dir.parent().unwrap();
        if parent.exists() {
            assert_eq!(std::fs::read_dir(parent).unwrap().count(), 0);
        }
        for file in files_under(self.dir.path()) {
            let content = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            assert_no_secret(&content, &file.display().to_string());
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in [PASSWORD1, PASSWORD2, "w0rd", "s3cr3t"] {
        assert!(!text.contains(secret), "a password leaked into {what}");
    }
}

/// Nothing the run returned contains a password.
fn assert_result_clean(r: &RunResult, rec: &Recorder) {
    assert_no_secret(&r.outcome.reason, "the outcome reason");
    assert_no_secret(&format!("{:?}", r.outcome), "the outcome");
    let summary = serde_json::to_string(&r.summary).unwrap();
    assert_no_secret(&summary, "the summary");
    assert_no_secret(&rec.lines().join("\n"), "the observed lines");
}

fn engine() -> ImapsyncEngine {
    ImapsyncEngine::locate(Some(Path::new(STANDIN)))
        .unwrap()
        .with_grace(GRACE)
}

async fn run_with(
    engine: &ImapsyncEngine,
    job: &Job,
    rec: &Arc<Recorder>,
    cancel: CancellationToken,
) -> RunResult {
    let run = engine.run(job.spec.clone(), rec.clone(), cancel);
    tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the run never ended")
}

async fn run(job: &Job) -> (RunResult, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let r = run_with(&engine(), job, &rec, CancellationToken::new()).await;
    (r, rec)
}

/// The fixture's stdout as the stand-in prints it under `--nolog`: like imapsync, without
/// the `Creating directory LOG_imapsync` line and the `Writing also my logfile name` line.
fn fixture_stdout(prefix: &str) -> Vec<String> {
    let name = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with(prefix) && n.ends_with(".stdout.txt"))
        .unwrap();
    let raw = std::fs::read(Path::new(FIXTURES).join(name)).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let lines = text.lines().enumerate();
    let lines = lines.filter(|(i, l)| !(*i == 0 && l.starts_with("Creating directory ")));
    let lines = lines.filter(|(_, l)| !l.starts_with("Writing also my logfile name"));
    lines.map(|(_, l)| l.to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_is_a_warning_with_monotonic_progress_and_a_complete_log() {
    let job = Job::new("standin-a+speed50+startup0@example.com");
    let (r, rec) = run(&job).await;
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_code),
        (JobStatus::Warning, Some(0)),
        "{o:?}"
    );
    assert!(
        o.reason.starts_with("4 messages were not copied"),
        "{}",
        o.reason
    );
    let p = &r.summary.progress;
    assert_eq!((p.messages_done, p.messages_copied), (300, 296));
    assert!(r.summary.no_log, "imapsync ran with --nolog");

    // Progress: monotonic, ending at 300, with rare and frequent events.
    let progress = rec.progress.lock().unwrap().clone();
    let done: Vec<u64> = progress.iter().map(|(p, _)| p.messages_done).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "went backwards");
    assert_eq!(done.last(), Some(&300));
    assert!(progress.iter().any(|(_, rare)| *rare));
    assert!(progress.iter().filter(|(_, rare)| !rare).count() >= 296);

    // The log holds every line imapsync printed, in order, then pymap's closing line.
    let expected = fixture_stdout("a_");
    let logged = job.imapsync_log_lines();
    assert_eq!(logged.len(), expected.len(), "lost or extra lines");
    let msgs = |lines: &[String]| -> Vec<String> {
        let msgs = lines.iter().filter(|l| l.starts_with("msg "));
        msgs.cloned().collect()
    };
    assert_eq!(msgs(&logged), msgs(&expected));
    // imapsync's very last line (`Log file is ...`, said differently under --nolog) arrived.
    assert_eq!(
        logged.last().map(String::as_str),
        Some("No log file because of option --nolog")
    );
    assert!(
        job.log().contains("Dovecot (Debian) ready.\r\n"),
        "raw bytes kept"
    );
    assert_eq!(
        job.pymap_log_lines(),
        ["pymap: imapsync ended: exit code 0"]
    );
    // The observer saw the same lines, without their CR.
    let observed: Vec<String> = rec.lines();
    let stripped: Vec<String> = job
        .log()
        .lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .collect();
    assert_eq!(observed, stripped);
    let mode = std::fs::metadata(&job.spec.log_path).unwrap().permissions();
    assert_eq!(mode.mode() & 0o777, 0o600);
    job.assert_clean();
    assert_result_clean(&r, &rec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn justlogin_succeeds_and_the_log_is_appended_to() {
    let job = Job::new("standin-g+speed20+startup0@example.com");
    let (r, _) = run(&job).await;
    assert_eq!(r.outcome.status, JobStatus::Succeeded, "{:?}", r.outcome);
    assert!(r.outcome.reason.starts_with("Login test passed"));
    let once = job.log().lines().count();
    assert_eq!(once, fixture_stdout("g_").len() + 1);
    // A rerun of the same job appends to its log.
    let (r, _) = run(&job).await;
    assert_eq!(r.outcome.status, JobStatus::Succeeded);
    assert_eq!(job.log().lines().count(), 2 * once);
    job.assert_clean();
    assert_eq!(engine().version().as_deref(), Ok("2.229"));
    assert_eq!(engine().name(), "imapsync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_are_mapped() {
    let cases = [
        ("c", 161, "EXIT_AUTHENTICATION_FAILURE_USER1", "check user1"),
        ("d", 162, "EXIT_AUTHENTICATION_FAILURE_USER2", "check user2"),
        (
            "e",
            102,
            "EXIT_CONNECTION_FAILURE_HOST2",
            "connection refused",
        ),
        ("o", 64, "EX_USAGE", "Unknown option: no-such-option"),
    ];
    let jobs: Vec<Job> = cases
        .iter()
        .map(|(id, ..)| Job::new(&format!("standin-{id}+speed50+startup0@example.com")))
        .collect();
    let results = futures::future::join_all(jobs.iter().map(run)).await;
    for ((job, (r, rec)), (id, code, name, says)) in jobs.iter().zip(&results).zip(cases) {
        let o = &r.outcome;
        assert_eq!(o.status, JobStatus::Failed, "{id}: {o:?}");
        assert_eq!(
            (o.exit_code, o.exit_name.as_str()),
            (Some(code), name),
            "{id}"
        );
        assert!(o.reason.contains(says), "{id}: {}", o.reason);
        job.assert_clean();
        assert_result_clean(r, rec);
    }
    // o prints on stderr only: that line is in the log too.
    let o_log = jobs[3].imapsync_log_lines();
    assert_eq!(o_log, ["Unknown option: no-such-option"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_term_pymap_did_not_send_is_a_retryable_failure() {
    // Fixture h: the recorded run got a TERM from outside, mid-transfer.
    let job = Job::new("standin-h+speed50+startup0@example.com");
    let (r, _) = run(&job).await;
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_code, o.exit_name.as_str(), o.retryable),
        (JobStatus::Failed, None, "SIGTERM", true),
        "{o:?}"
    );
    assert!(o.reason.contains("not sent by pymap"), "{}", o.reason);
    assert_eq!(r.summary.progress.messages_done, 102);
    assert_eq!(
        job.pymap_log_lines(),
        ["pymap: imapsync ended: killed by SIGTERM"]
    );
    job.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_sends_term_and_the_run_is_cancelled() {
    let job = Job::new("standin-a+speed0.5+startup0@example.com");
    let rec = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, spec, rec, cancel) = (engine(), job.spec.clone(), rec.clone(), cancel.clone());
        async move { engine.run(spec, rec, cancel).await }
    });
    rec.wait_for_a_message().await;
    // The log is flushed while imapsync runs, not only at the end.
    let deadline = Instant::now() + PATIENCE;
    while !job.log().contains("\nmsg ") {
        assert!(Instant::now() < deadline, "the log was not flushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!run.is_finished());
    cancel.cancel();
    let r = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("cancel did not end the run")
        .unwrap();
    let o = &r.outcome;
    // Ended by TERM, not by KILL: it stopped well within the grace period.
    assert_eq!(
        (o.status, o.exit_name.as_str(), o.retryable),
        (JobStatus::Cancelled, "SIGTERM", false),
        "{o:?}"
    );
    assert!(o.reason.starts_with("Cancelled"), "{}", o.reason);
    let done = r.summary.progress.messages_done;
    assert!((1..300).contains(&done), "{done}");
    assert_eq!(r.summary.killed_self_with.as_deref(), Some("TERM"));
    let log = job.log();
    assert!(log.contains("\npymap: cancel requested, sent SIGTERM\n"));
    assert!(log.contains("\nKilling myself with signal TERM\n"));
    assert!(log.ends_with("\npymap: imapsync ended: killed by SIGTERM\n"));
    assert!(!log.contains("SIGKILL"));
    job.assert_clean();
    assert_result_clean(&r, &rec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_escalates_to_sigkill_when_imapsync_hangs_after_term() {
    let job = Job::new("standin-a+speed0.5+startup0+hang@example.com");
    let grace = Duration::from_secs(1);
    let rec = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let engine = engine().with_grace(grace);
    let run = tokio::spawn({
        let (spec, rec, cancel) = (job.spec.clone(), rec.clone(), cancel.clone());
        async move { engine.run(spec, rec, cancel).await }
    });
    rec.wait_for_a_message().await;
    let cancelled_at = Instant::now();
    cancel.cancel();
    let r = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("SIGKILL did not end the run")
        .unwrap();
    assert!(
        cancelled_at.elapsed() >= grace,
        "{:?}",
        cancelled_at.elapsed()
    );
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_name.as_str()),
        (JobStatus::Cancelled, "SIGKILL"),
        "{o:?}"
    );
    let log = job.log();
    assert!(
        log.contains("\nKilling myself with signal TERM\n"),
        "TERM was handled"
    );
    assert!(log.contains("\npymap: still running after 1s, sent SIGKILL\n"));
    assert!(log.ends_with("\npymap: imapsync ended: killed by SIGKILL\n"));
    job.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_during_startup_kills_silently_and_cancel_before_start_runs_nothing() {
    // TERM before imapsync installed its handlers: it dies without a word.
    let job = Job::new("standin-a+startup10000@example.com");
    let rec = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, spec, rec, cancel) = (engine(), job.spec.clone(), rec.clone(), cancel.clone());
        async move { engine.run(spec, rec, cancel).await }
    });
    // The pass files are written just before the spawn.
    let deadline = Instant::now() + PATIENCE;
    while !job.work("passfile2").exists() {
        assert!(Instant::now() < deadline, "never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    let r = tokio::time::timeout(PATIENCE, run).await.unwrap().unwrap();
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_name.as_str()),
        (JobStatus::Cancelled, "SIGTERM"),
        "{o:?}"
    );
    assert!(
        o.reason.contains("before any message was handled"),
        "{}",
        o.reason
    );
    assert!(job.imapsync_log_lines().is_empty());
    assert_eq!(
        job.pymap_log_lines(),
        [
            "pymap: cancel requested, sent SIGTERM",
            "pymap: imapsync ended: killed by SIGTERM"
        ]
    );
    job.assert_clean();

    let job = Job::new("standin-g@example.com");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let rec = Arc::new(Recorder::default());
    let r = run_with(&engine(), &job, &rec, cancel).await;
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_code, o.exit_name.as_str()),
        (JobStatus::Cancelled, None, "NOT_STARTED")
    );
    assert!(!job.spec.work_dir.exists());
    assert_eq!(
        rec.lines(),
        ["pymap: cancel requested before imapsync started"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_argv_environment_log_and_results() {
    let job = Job::new("standin-a+speed0.5+startup0@example.com");
    let rec = Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, spec, rec, cancel) = (engine(), job.spec.clone(), rec.clone(), cancel.clone());
        async move { engine.run(spec, rec, cancel).await }
    });
    rec.wait_for_a_message().await; // the pid file is written before any message
    let pid_file = std::fs::read_to_string(job.work("imapsync.pid")).unwrap();
    let pid: u32 = pid_file.lines().next().unwrap().parse().unwrap();
    let proc = |name: &str| std::fs::read(format!("/proc/{pid}/{name}")).unwrap();

    let cmdline = proc("cmdline");
    assert_no_secret(&String::from_utf8_lossy(&cmdline), "/proc/<pid>/cmdline");
    let argv: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8(a.to_vec()).unwrap())
        .collect();
    let work = job.spec.work_dir.display().to_string();
    let value_of = |name: &str| {
        let at = argv
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("{name}"));
        argv[at + 1].clone()
    };
    assert_eq!(value_of("--passfile1"), format!("{work}/passfile1"));
    assert_eq!(value_of("--passfile2"), format!("{work}/passfile2"));
    assert_eq!(value_of("--pidfile"), format!("{work}/imapsync.pid"));
    assert_eq!(value_of("--tmpdir"), work);
    assert_eq!(value_of("--user1"), job.spec.user1);
    assert_eq!(value_of("--port1"), "143");
    assert!(
        !argv.contains(&"--port2".to_owned()),
        "no port given, none passed"
    );
    for flag in [
        "--nodockercontext",
        "--nolog",
        "--noreleasecheck",
        "--addheader",
    ] {
        assert!(argv.contains(&flag.to_owned()), "{flag}");
    }
    assert!(!argv.iter().any(|a| a.starts_with("--password")));

    let environ = proc("environ");
    assert_no_secret(&String::from_utf8_lossy(&environ), "/proc/<pid>/environ");
    let env: Vec<(String, String)> = environ
        .split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let v = String::from_utf8_lossy(v);
            let (k, v) = v.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let keys: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    let allowed = BTreeSet::from(["HOME", "LANG", "PATH", "TZ"]);
    assert!(keys.is_subset(&allowed), "{keys:?}");
    assert!(env.contains(&("HOME".into(), work.clone())));
    assert!(env.contains(&("LANG".into(), "C.UTF-8".into())));
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, job.spec.work_dir);
    // Its own process group: field 5 of /proc/<pid>/stat (after the `(comm)` field).
    let stat = String::from_utf8(proc("stat")).unwrap();
    let after_comm = stat.rsplit_once(") ").unwrap().1;
    let pgrp: u32 = after_comm.split(' ').nth(2).unwrap().parse().unwrap();
    assert_eq!(pgrp, pid);

    // The pass files hold exactly the password and a newline, 0600 in a 0700 directory.
    for (name, password) in [("passfile1", PASSWORD1), ("passfile2", PASSWORD2)] {
        let path = job.work(name);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{password}\n")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let mode = std::fs::metadata(&job.spec.work_dir).unwrap().permissions();
    assert_eq!(mode.mode() & 0o777, 0o700);

    cancel.cancel();
    let r = tokio::time::timeout(PATIENCE, run).await.unwrap().unwrap();
    assert_eq!(r.outcome.status, JobStatus::Cancelled);
    // The echoed command line shows pass file paths, never passwords.
    let echoed = r.summary.command_line.as_deref().unwrap();
    assert!(echoed.contains("--passfile1"), "{echoed}");
    job.assert_clean();
    assert_result_clean(&r, &rec);
}

/// Whether `pid` is gone or a zombie (dead, waiting to be reaped).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_kills_imapsync_and_cleans_up() {
    // What happens when the pool aborts a job's task: the guard must still do its work.
    let job = Job::new("standin-a+speed0.5+startup0@example.com");
    let rec = Arc::new(Recorder::default());
    let run = tokio::spawn({
        let (engine, spec, rec) = (engine(), job.spec.clone(), rec.clone());
        async move { engine.run(spec, rec, CancellationToken::new()).await }
    });
    rec.wait_for_a_message().await;
    let pid_file = std::fs::read_to_string(job.work("imapsync.pid")).unwrap();
    let pid: u32 = pid_file.lines().next().unwrap().parse().unwrap();
    assert!(!dead(pid));
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    let deadline = Instant::now() + PATIENCE;
    while !dead(pid) {
        assert!(Instant::now() < deadline, "imapsync survived its run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_lines_are_all_logged_parsed_and_observed() {
    // 20 times every `copied to` line, as fast as the stand-in can print.
    let job = Job::new("standin-a+speed0+startup0+repeat20@example.com");
    let (r, rec) = run(&job).await;
    assert_eq!(r.outcome.exit_code, Some(0));
    let expected = fixture_stdout("a_").len() + 296 * 19;
    assert_eq!(job.imapsync_log_lines().len(), expected);
    assert_eq!(rec.lines().len(), expected + 1);
    assert_eq!(r.summary.progress.messages_copied, 296 * 20);
    assert_eq!(r.summary.lines, expected as u64);
    job.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_work_dir_is_replaced() {
    let job = Job::new("standin-g+speed20+startup0@example.com");
    std::fs::create_dir_all(&job.spec.work_dir).unwrap();
    for name in ["passfile1", "imapsync.pid", "junk"] {
        std::fs::write(job.work(name), "stale\n").unwrap();
    }
    std::fs::set_permissions(&job.spec.work_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (r, _) = run(&job).await;
    assert_eq!(r.outcome.status, JobStatus::Succeeded, "{:?}", r.outcome);
    job.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_jobs_fail_before_spawning_and_say_why_without_secrets() {
    let mut job = Job::new("-oProxyCommand=evil@example.com");
    let (r, rec) = run(&job).await;
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_code, o.exit_name.as_str(), o.retryable),
        (JobStatus::Failed, None, "INVALID_JOB", false)
    );
    assert!(
        o.reason.starts_with("user1 ") && !o.reason.contains("evil"),
        "{}",
        o.reason
    );
    assert_eq!(job.pymap_log_lines(), [format!("pymap: {}", o.reason)]);
    assert!(!job.spec.work_dir.exists());
    assert_result_clean(&r, &rec);

    job.spec.user1 = "standin-g@example.com".into();
    job.spec.password2 = Secret::new(format!("{PASSWORD2}\nsecond line"));
    let (r, rec) = run(&job).await;
    assert_eq!(r.outcome.exit_name, "INVALID_JOB");
    assert!(
        r.outcome.reason.starts_with("password2 "),
        "{}",
        r.outcome.reason
    );
    assert!(!job.spec.work_dir.exists());
    assert_result_clean(&r, &rec);
    job.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_engine_binary_is_a_clear_failure() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("imapsync");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let engine = ImapsyncEngine::locate(Some(&script)).unwrap();
    std::fs::remove_file(&script).unwrap(); // uninstalled after pymap started

    let job = Job::new("standin-g@example.com");
    let rec = Arc::new(Recorder::default());
    let r = run_with(&engine, &job, &rec, CancellationToken::new()).await;
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_code, o.exit_name.as_str(), o.retryable),
        (JobStatus::Failed, None, "SPAWN_FAILED", false)
    );
    assert!(o.reason.contains("does not exist"), "{}", o.reason);
    assert!(o.reason.contains(&script.display().to_string()));
    assert_eq!(job.pymap_log_lines(), [format!("pymap: {}", o.reason)]);
    assert_eq!(r.summary, Default::default());
    job.assert_clean();
    assert!(engine.version().unwrap_err().contains("could not run"));
}

#[test]
fn locate_explains_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let hint = |e: &str| e.contains("imapsync_path") && e.contains("PYMAP_IMAPSYNC_PATH");

    let missing = dir.path().join("nope/imapsync");
    let e = ImapsyncEngine::locate(Some(&missing)).unwrap_err();
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("no such file"),
        "{e}"
    );
    assert!(hint(&e), "{e}");

    let plain = dir.path().join("plain");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = ImapsyncEngine::locate(Some(&plain)).unwrap_err();
    assert!(e.contains("not executable") && hint(&e), "{e}");
    let e = ImapsyncEngine::locate(Some(dir.path())).unwrap_err();
    assert!(e.contains("not a regular file"), "{e}");

    // PATH search: only absolute directories, only executables named imapsync.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let found = bin.join("imapsync");
    std::fs::copy(STANDIN, &found).unwrap();
    let search = format!("relative/dir:{}:{}", dir.path().display(), bin.display());
    let engine = ImapsyncEngine::locate_in(None, Some(search.as_ref())).unwrap();
    assert_eq!(engine.path(), found);
    assert_eq!(engine.grace(), Duration::from_secs(10));
    assert_eq!(engine.version().as_deref(), Ok("2.229"));

    for search in [Some(dir.path().as_os_str()), Some("".as_ref()), None] {
        let e = ImapsyncEngine::locate_in(None, search).unwrap_err();
        assert!(e.starts_with("imapsync was not found"), "{e}");
        assert!(hint(&e), "{e}");
    }
}

#[test]
fn version_failures_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body, says) in [
        ("fails", "echo boom >&2\nexit 3", "exit code 3"),
        ("silent", "exit 0", "printed nothing"),
        ("multi", "echo 2.229\necho more", ""),
    ] {
        let script = dir.path().join(name);
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let engine = ImapsyncEngine::locate(Some(&script)).unwrap();
        match engine.version() {
            Ok(v) => assert_eq!((name, v.as_str()), ("multi", "2.229")),
            Err(e) => assert!(e.contains(says), "{name}: {e}"),
        }
    }
}
