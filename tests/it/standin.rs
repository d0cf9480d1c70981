//! Process-level tests of `imapsync-standin` itself: run it, signal it, and check what pymap
//! would see (exit status, stdout, log and pid files), parsing its output with the real parser.
//!
//! These tests check **process handling, not migration**: the stand-in replays captured imapsync
//! output (tests/fixtures/imapsync) and moves no mail; no IMAP server is involved.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use pymap::worker::{
    imapsync::{
        exit::{ProcessEnd, classify},
        parse::{OutputParser, RunSummary},
    },
    status::JobStatus,
};

const BIN: &str = env!("CARGO_BIN_EXE_imapsync-standin");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imapsync");

struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        for n in ["1", "2"] {
            let p = dir.path().join(format!("pass{n}"));
            std::fs::write(&p, "s3cret p@ss \"q\"\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Job { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The argv pymap passes, plus `extra`; no delays unless the test sets them.
    fn command(&self, user1: &str, extra: &[&str]) -> Command {
        let p = |n: &str| self.path(n).display().to_string();
        let mut c = Command::new(BIN);
        c.args([
            "--host1",
            "imap.old.example",
            "--port1",
            "143",
            "--user1",
            user1,
        ]);
        c.args(["--passfile1", &p("pass1")]);
        c.args(["--host2", "imap.new.example", "--port2", "993"]);
        c.args(["--user2", "bob@new.example", "--passfile2", &p("pass2")]);
        c.args([
            "--nodockercontext",
            "--pidfile",
            &p("job.pid"),
            "--tmpdir",
            &p(""),
        ]);
        c.args(["--logdir", &p("logs"), "--logfile", "job.log"]);
        c.args([
            "--noreleasecheck",
            "--no-modulesversion",
            "--timeout",
            "120",
        ]);
        c.args(extra);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("IMAPSYNC")) {
            c.env_remove(k);
        }
        c.env("IMAPSYNC_STANDIN_FIXTURES", FIXTURES)
            .env("IMAPSYNC_STANDIN_SPEED", "0");
        c.env("IMAPSYNC_STANDIN_STARTUP_MS", "0")
            .current_dir(self.dir.path());
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }
}

/// A running stand-in whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut c: Command) -> Running {
        let mut child = c.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a plain system call on our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Wait for a line satisfying `pred` (panics after 30 s).
    fn wait_for(&mut self, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("line never came");
            let hit = pred(&line);
            self.seen.push(line);
            if hit {
                return;
            }
        }
    }

    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, self.seen, err)
    }
}

fn run(c: Command) -> (ExitStatus, Vec<String>, String) {
    Running::spawn(c).finish()
}

fn parse(lines: &[String]) -> RunSummary {
    let mut p = OutputParser::new();
    lines.iter().for_each(|l| {
        p.feed(l);
    });
    p.finish()
}

fn end(status: ExitStatus) -> ProcessEnd {
    match status.signal() {
        Some(sig) => ProcessEnd::Signaled(sig),
        None => ProcessEnd::Exited(status.code().unwrap()),
    }
}

#[test]
fn version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"2.229\n"[..])
    );
}

#[test]
fn full_replay_streams_logs_and_cleans_up() {
    let job = Job::new();
    let (status, lines, err) = run(job.command("alice@old.example", &[]));
    assert_eq!((status.code(), err.as_str()), (Some(0), ""));
    // Our own `Creating directory` line replaces the recorded one.
    let expected = format!(
        "Creating directory {} (current directory is {})",
        job.path("logs").display(),
        job.dir.path().display()
    );
    assert_eq!(lines[0], expected);
    let log = std::fs::read_to_string(job.path("logs/job.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        lines[1..],
        "log = stdout minus first line"
    );
    assert!(
        log.contains("Dovecot (Debian) ready.\r\n"),
        "raw IMAP lines keep their CR"
    );
    assert!(!job.path("job.pid").exists(), "pid file removed at exit");
    let s = parse(&lines);
    let log_path = job.path("logs/job.log");
    assert_eq!(s.log_file.as_deref(), Some(log_path.to_str().unwrap()));
    assert_eq!(
        s.pid_file.as_deref(),
        Some(job.path("job.pid").to_str().unwrap())
    );
    assert!(s.imapsync_pid.is_some_and(|p| p != 8793));
    assert!(
        s.command_line.as_deref().unwrap().contains("--passfile1"),
        "argv echoed"
    );
    let o = classify(end(status), &s, false);
    assert_eq!(
        (o.status, s.progress.messages_copied),
        (JobStatus::Warning, 296)
    );
}

#[test]
fn pid_file_exists_while_running_and_timing_follows_speed() {
    let job = Job::new();
    let mut c = job.command("standin-g@x", &[]);
    c.env("IMAPSYNC_STANDIN_SPEED", "1"); // g: 104 lines over 1.3 s
    let t = Instant::now();
    let mut r = Running::spawn(c);
    r.wait_for(|l| l.starts_with("Writing my PID"));
    let content = std::fs::read_to_string(job.path("job.pid")).unwrap();
    assert_eq!(
        content.lines().next(),
        Some(r.child.id().to_string().as_str())
    );
    let (status, _, _) = r.finish();
    let wall = t.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(wall > Duration::from_millis(1100), "{wall:?}");

    // Faster: only a lower bound would be robust on a loaded machine, so compare instead.
    let mut c = job.command("standin-g@x", &[]);
    c.env("IMAPSYNC_STANDIN_SPEED", "10");
    let t = Instant::now();
    assert_eq!(run(c).0.code(), Some(0));
    assert!(t.elapsed() < wall, "{:?} vs {wall:?}", t.elapsed());
}

#[test]
fn settings_in_the_user_name_and_env_precedence() {
    let job = Job::new();
    // No env: the user name sets speed (g: 1.3 s recorded) and startup.
    let mut c = job.command("standin-g+speed1+startup0@x", &[]);
    c.env_remove("IMAPSYNC_STANDIN_SPEED");
    let t = Instant::now();
    assert_eq!(run(c).0.code(), Some(0));
    assert!(
        t.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        t.elapsed()
    );
    // The environment wins (SPEED=0 from Job::command): no delay at all.
    let t = Instant::now();
    let (st, lines, _) = run(job.command("standin-g+speed0.01@x", &[]));
    assert_eq!(st.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(60), "env must win");
    assert_eq!(parse(&lines).exit_value, Some(0));
    // repeat from the user name.
    let (_, lines, _) = run(job.command("standin-a+repeat3@x", &[]));
    assert_eq!(parse(&lines).progress.messages_copied, 296 * 3);
    // A typo is loud.
    let (st, lines, err) = run(job.command("standin-a+sped20@x", &[]));
    assert_eq!((st.code(), lines.len()), (Some(70), 0));
    assert!(err.contains("bad setting \"sped20\""), "{err}");
}

#[test]
fn hang_from_the_user_name_blocks_after_term() {
    let job = Job::new();
    let mut c = job.command("standin-a+speed0.5+hang@x", &["--timeout2", "2"]);
    c.env_remove("IMAPSYNC_STANDIN_SPEED");
    let mut r = Running::spawn(c);
    r.wait_for(|l| l.contains("copied to"));
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    r.wait_for(|l| l.starts_with("Log file is")); // the last line before the hang
    assert!(r.child.try_wait().unwrap().is_none(), "still hanging");
    let (status, _, _) = r.finish();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    // --timeout2 (2 s) wins over --timeout (120 s).
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn scenario_by_user1_or_env_gives_recorded_exit_codes() {
    let job = Job::new();
    for (user, env, code, status) in [
        ("standin-d@example.com", None, 162, JobStatus::Failed),
        ("alice@x", Some("c2"), 161, JobStatus::Failed),
        ("standin-e1", None, 101, JobStatus::Failed),
        ("standin-f@x", None, 0, JobStatus::Succeeded),
    ] {
        let mut c = job.command(user, &[]);
        if let Some(id) = env {
            c.env("IMAPSYNC_STANDIN_SCENARIO", id);
        }
        let (st, lines, _) = run(c);
        assert_eq!(st.code(), Some(code), "{user}");
        assert_eq!(
            classify(end(st), &parse(&lines), false).status,
            status,
            "{user}"
        );
    }
    // o: option parsing failure, stderr only.
    let (st, lines, err) = run(job.command("standin-o@x", &[]));
    assert_eq!(
        (st.code(), lines.len(), err.as_str()),
        (Some(64), 0, "Unknown option: no-such-option\n")
    );
}

#[test]
fn passwords_only_by_file() {
    let job = Job::new();
    let (st, lines, err) = run(job.command("alice@x", &["--password1", "secret"]));
    assert_eq!((st.code(), lines.len()), (Some(64), 0));
    assert!(err.starts_with("Unknown option: password1\n"), "{err}");
    let (st, _, err) = run(job.command("alice@x", &["--password2=secret"]));
    assert!(
        st.code() == Some(64) && err.starts_with("Unknown option: password2"),
        "{err}"
    );

    std::fs::set_permissions(job.path("pass2"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (st, _, err) = run(job.command("alice@x", &[]));
    assert!(st.code() == Some(64) && err.contains("mode 0600"), "{err}");
    std::fs::remove_file(job.path("pass2")).unwrap();
    let (st, _, err) = run(job.command("alice@x", &[]));
    assert!(st.code() == Some(64) && err.contains("passfile2"), "{err}");
    assert!(!job.path("job.pid").exists() && !job.path("logs").exists());
}

#[test]
fn term_prints_statistics_and_dies_by_sigterm() {
    let job = Job::new();
    let mut c = job.command("alice@x", &[]);
    c.env("IMAPSYNC_STANDIN_SPEED", "0.5");
    let mut r = Running::spawn(c);
    r.wait_for(|l| l.contains("copied to"));
    r.signal(libc::SIGTERM);
    let (status, lines, _) = r.finish();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let s = parse(&lines);
    assert_eq!(s.killed_self_with.as_deref(), Some("TERM"));
    assert_eq!(s.exit_name.as_deref(), Some("EXIT_BY_SIGNAL"));
    assert!(
        s.stats
            .messages_transferred
            .is_some_and(|n| (1..296).contains(&n))
    );
    assert_eq!(s.stats.bytes_transferred, Some(s.progress.bytes_done));
    assert!(!job.path("job.pid").exists(), "removed before dying");
    let o = classify(end(status), &s, true);
    assert_eq!(
        (o.status, o.exit_name.as_str()),
        (JobStatus::Cancelled, "SIGTERM")
    );
}

#[test]
fn fixture_h_is_replayed_up_to_its_term() {
    let job = Job::new();
    let (status, lines, _) = run(job.command("standin-h@x", &[]));
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let s = parse(&lines);
    let st = &s.stats;
    // Same numbers as the real run's own statistics block.
    assert_eq!(
        (
            st.messages_transferred,
            st.messages_skipped,
            st.duplicates_host1
        ),
        (Some(100), Some(2), Some(2))
    );
    assert_eq!(
        (st.host1_not_in_host2, st.bytes_transferred),
        (Some(70), Some(10807760))
    );
    assert_eq!(
        (
            st.folders_synced,
            st.folders_total,
            st.start_difference_messages
        ),
        (Some(7), Some(16), Some(-300))
    );
    let verdict = "The sync is not finished, there are 70 among 170 identified messages in \
                   host1 that are not on host2.";
    assert!(lines.iter().any(|l| l == verdict));
    assert_eq!(s.progress.messages_done, 102);
}

#[test]
fn term_hang_blocks_until_timeout() {
    let job = Job::new();
    let mut c = job.command("alice@x", &["--timeout", "2"]);
    c.env("IMAPSYNC_STANDIN_SPEED", "0.5")
        .env("IMAPSYNC_STANDIN_TERM", "hang");
    let mut r = Running::spawn(c);
    r.wait_for(|l| l.contains("copied to"));
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    r.wait_for(|l| l.starts_with("Log file is")); // the last line before the hang
    std::thread::sleep(Duration::from_millis(500));
    r.signal(libc::SIGTERM); // ignored while hanging
    assert!(r.child.try_wait().unwrap().is_none(), "still hanging");
    let (status, _, _) = r.finish();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    assert!(
        t.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn term_during_startup_kills_silently() {
    let job = Job::new();
    let mut c = job.command("alice@x", &[]);
    c.env("IMAPSYNC_STANDIN_STARTUP_MS", "5000");
    let r = Running::spawn(c);
    std::thread::sleep(Duration::from_millis(300));
    r.signal(libc::SIGTERM);
    let (status, lines, err) = r.finish();
    assert_eq!(
        (status.signal(), lines.len(), err.as_str()),
        (Some(libc::SIGTERM), 0, "")
    );
    assert!(!job.path("job.pid").exists() && !job.path("logs").exists());
}

#[test]
fn int_reconnects_and_twice_exits() {
    let job = Job::new();
    let mut c = job.command("alice@x", &[]);
    c.env("IMAPSYNC_STANDIN_SPEED", "2");
    let mut r = Running::spawn(c);
    r.wait_for(|l| l.contains("copied to"));
    r.signal(libc::SIGINT);
    r.wait_for(|l| l == "Info: reconnected to both imap servers");
    let (status, lines, _) = r.finish();
    assert_eq!(status.code(), Some(0));
    let s = parse(&lines);
    assert_eq!(
        (s.reconnections, s.signals_received.as_slice()),
        (1, &["INT".to_owned()][..])
    );
    assert!(lines.contains(&"Info: reconnected to host1 imap server imap.old.example".to_owned()));
    assert_eq!(s.progress.messages_copied, 296);

    let mut c = job.command("alice@x", &[]);
    c.env("IMAPSYNC_STANDIN_SPEED", "0.5");
    let mut r = Running::spawn(c);
    r.wait_for(|l| l.contains("copied to"));
    r.signal(libc::SIGINT);
    r.wait_for(|l| l == "Info: reconnected to both imap servers");
    r.signal(libc::SIGINT);
    let (status, lines, _) = r.finish();
    assert_eq!(status.signal(), Some(libc::SIGINT));
    assert!(lines.contains(&"Killing myself with signal INT".to_owned()));
}

#[test]
fn repeat_makes_big_logs() {
    let job = Job::new();
    let mut c = job.command("alice@x", &[]);
    c.env("IMAPSYNC_STANDIN_REPEAT", "100");
    let (status, lines, _) = run(c);
    assert_eq!(status.code(), Some(0));
    let (_, once, _) = run(Job::new().command("alice@x", &[]));
    assert_eq!(lines.len(), once.len() + 296 * 99);
    assert_eq!(parse(&lines).progress.messages_copied, 29600);
}

#[test]
fn argv_is_recorded_and_logfile_gotcha_and_docker_context() {
    let job = Job::new();
    let out = job.path("argv.json");
    let (pass1, pass2, pid) = (job.path("pass1"), job.path("pass2"), job.path("p.pid"));
    let mut c = Command::new(BIN);
    c.args(["--host1", "h1", "--user1", "standin-u1@x", "--passfile1"])
        .arg(&pass1);
    c.args(["--host2", "h2", "--user2", "u2", "--passfile2"])
        .arg(&pass2);
    c.args(["--nodockercontext", "--logfile", "job-42.log", "--pidfile"])
        .arg(&pid);
    c.args(["--frobnicate", "7"]);
    c.env("IMAPSYNC_STANDIN_SPEED", "0")
        .env("IMAPSYNC_STANDIN_STARTUP_MS", "0")
        .env("IMAPSYNC_STANDIN_ARGV_OUT", &out);
    c.current_dir(job.dir.path())
        .env_remove("IMAPSYNC_STANDIN_SCENARIO");
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(v["scenario"], "u1");
    assert!(
        v["options"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["frobnicate", "7"]))
    );
    // imapsync's gotcha: --logfile without --logdir lands under ./LOG_imapsync/.
    assert!(job.path("LOG_imapsync/job-42.log").exists());

    let mut c = job.command("standin-g@x", &["--dockercontext"]);
    c.env("IMAPSYNC_STANDIN_SPEED", "0.5");
    let mut r = Running::spawn(c);
    r.wait_for(|l| l.starts_with("Host1"));
    r.signal(libc::SIGINT);
    let (status, lines, _) = r.finish();
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "INT means exit in Docker context"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "No log file because of option --nolog")
    );
    assert!(!job.path("logs").exists() && !job.path("job.pid").exists());
}
