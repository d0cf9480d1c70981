//! `imapsync-standin`: a stand-in executable for imapsync 2.229 that replays a captured run.
//!
//! It exists to test pymap's **process handling** — argv, pass files, log and pid files, output
//! streaming, exit status, signals and timing — and NOT migration: it connects to no server and
//! moves no mail. Every line it prints is a recorded line of a real imapsync run from
//! `tests/fixtures/imapsync` (see INDEX.md there), with this process's pid, paths, hosts, users
//! and counters swapped in (recorded.rs), so pymap's parser sees genuine imapsync text. None of
//! imapsync's wording is written into this program.
//!
//! * argv: imapsync style (`--host1 H --user1 U --passfile1 F ... --logdir D --logfile NAME`);
//!   unknown options are accepted and recorded (echoed as the command line, and written as JSON to
//!   `$IMAPSYNC_STANDIN_ARGV_OUT` if set). `--password1/2` are refused (exit 64, `Unknown option`)
//!   because pymap must pass passwords by file; a pass file that is missing, unreadable or not
//!   mode 0600 gives exit 64 too. `--version` prints the recorded `imapsync --version`.
//! * scenario: `$IMAPSYNC_STANDIN_SCENARIO` (fixture id: `a`, `h`, `c2`...), else `<id>` from
//!   `--user1 standin-<id>@...`, else `a`. Fixtures: `$IMAPSYNC_STANDIN_FIXTURES`, else this crate's
//!   `tests/fixtures/imapsync` (baked in at compile time).
//! * timing: the lines are spread evenly over the recorded wall time, divided by
//!   `$IMAPSYNC_STANDIN_SPEED` (1 = real time, 10 = ten times faster, 0 = no delay);
//!   `$IMAPSYNC_STANDIN_REPEAT=N` prints each `copied to` line N times (big-log tests).
//! * settings in the user name: pymap's runner clears the environment of imapsync, so the
//!   settings above can also ride in `--user1`, as `+`-separated words after the scenario id:
//!   `standin-<id>[+speed<X>][+repeat<N>][+startup<MS>][+hang]@example.com`, e.g.
//!   `standin-a+speed20+startup0@example.com` or `standin-h+speed10+hang@example.com`. An
//!   environment variable, when set, wins over the same setting in the user name; an unknown
//!   word is an error (exit 70), so a typo does not go unnoticed.
//! * files: pid file (`--pidfile`, default `<tmpdir>/imapsync.pid`) removed at exit; log file at
//!   `<logdir>/<logfile>` with the same lines as stdout (imapsync's `--logfile` without
//!   `--logdir` gotcha included: `LOG_imapsync/<logfile>`, relative to the cwd). In Docker context
//!   (`/.dockerenv` without `--nodockercontext`) no pid file, no log unless `--log`, and INT exits.
//! * signals: for the first `$IMAPSYNC_STANDIN_STARTUP_MS` (default 300) no handler is installed,
//!   so TERM kills it silently, like imapsync while Perl loads. Then TERM/QUIT replay fixture h's
//!   recorded ending (statistics block with this run's counters, `Killing myself with signal
//!   TERM`) and die by that signal — or, with `$IMAPSYNC_STANDIN_TERM=hang` (or `+hang`), first
//!   block (ignoring TERM) for `--timeout2`, else `--timeout`, seconds (default 120) as imapsync
//!   sometimes does. INT replays fixture m's recorded reconnection and goes on; a second INT
//!   within 2 s exits like TERM. Fixture `h` replays up to the point where the real run got its
//!   TERM, then behaves as if it got one.
//! * exit: the recorded exit code (fixture `o` writes its stderr and exits 64 straight away).

mod args;
mod recorded;
mod tracker;

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use args::{Args, UserSettings};
use recorded::{Fixture, Identity, Library};
use tracker::Tracker;

const DEFAULT_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imapsync");
const EX_USAGE: i32 = 64;
const EX_SOFTWARE: i32 = 70;

/// Signals received, counted by the async-signal-safe handler and consumed by the main loop.
static SIGNALS: [AtomicU32; 32] = [const { AtomicU32::new(0) }; 32];

extern "C" fn on_signal(sig: libc::c_int) {
    if let Some(count) = SIGNALS.get(sig as usize) {
        count.fetch_add(1, Ordering::SeqCst);
    }
}

fn set_disposition(sig: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction is valid; the handler only touches atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

fn take_signal(sig: libc::c_int) -> bool {
    SIGNALS[sig as usize].swap(0, Ordering::SeqCst) > 0
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn env_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    env(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    // A deterministic start: TERM, INT and QUIT kill silently until our handlers are installed.
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
        set_disposition(sig, libc::SIG_DFL);
    }
    let dir = env("IMAPSYNC_STANDIN_FIXTURES").unwrap_or_else(|| DEFAULT_FIXTURES.to_owned());
    let library = Library::new(Path::new(&dir));
    if argv.iter().any(|a| a == "--version") {
        let version = library.version().unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
        let _ = std::io::stdout().write_all(&version);
        return;
    }
    let args = Args::parse(&argv[1..]).and_then(|a| a.check_passwords().map(|()| a));
    let args = args.unwrap_or_else(|msg| fail(EX_USAGE, &msg));
    let from_user =
        UserSettings::parse(args.get("user1")).unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
    let id = env("IMAPSYNC_STANDIN_SCENARIO").unwrap_or(from_user.scenario);
    let fixture = library.load(&id).unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
    if let Some(path) = env("IMAPSYNC_STANDIN_ARGV_OUT") {
        let (opts, pid) = (&args.opts, std::process::id());
        let record =
            serde_json::json!({ "argv": argv, "scenario": id, "pid": pid, "options": opts });
        let _ = fs::write(path, record.to_string());
    }
    if fixture.stdout.is_empty() {
        // Fixture o: option parsing failed before anything else happened.
        let _ = std::io::stderr().write_all(&fixture.stderr);
        std::process::exit(fixture.exit);
    }
    let startup_ms = env_num(
        "IMAPSYNC_STANDIN_STARTUP_MS",
        from_user.startup_ms.unwrap_or(300),
    );
    std::thread::sleep(Duration::from_millis(startup_ms));
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
        set_disposition(sig, handler);
    }
    let (speed, repeat) = (
        env_num("IMAPSYNC_STANDIN_SPEED", from_user.speed.unwrap_or(1.0)),
        env_num("IMAPSYNC_STANDIN_REPEAT", from_user.repeat.unwrap_or(1)),
    );
    let hang = match env("IMAPSYNC_STANDIN_TERM") {
        Some(v) => v == "hang",
        None => from_user.hang,
    };
    let mut run = Run::start(args, library, &fixture, argv.join(" "));
    run.hang_on_term = hang;
    run.replay(&fixture, speed, repeat);
}

/// Print `msg` on stderr and exit with `code` (before any output on stdout, like imapsync).
fn fail(code: i32, msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(code)
}

/// The running replay.
struct Run {
    args: Args,
    library: Library,
    log: Option<File>,
    /// How this run names itself; its lines replace the recorded run's (`recorded`).
    us: Identity,
    recorded: Identity,
    command_line: String,
    docker: bool,
    started: Instant,
    tracker: Tracker,
    last_int: Option<Instant>,
    expect_command_line: bool,
    /// After TERM, block (ignoring further TERMs) until the timeout, then die.
    hang_on_term: bool,
}

impl Run {
    fn start(args: Args, library: Library, fixture: &Fixture, command_line: String) -> Run {
        let dockerenv = Path::new("/.dockerenv").exists();
        let docker = args.has("dockercontext") || (dockerenv && !args.has("nodockercontext"));
        let cwd = std::env::current_dir().unwrap_or_default();
        let (hosts, users) = args.endpoints();
        let us = Identity {
            pid: std::process::id().to_string(),
            ppid: std::os::unix::process::parent_id().to_string(),
            log: None,
            pidfile: None,
            cwd: cwd.display().to_string(),
            hosts,
            users,
        };
        let mut run = Run {
            args,
            library,
            log: None,
            us,
            recorded: fixture.who.clone(),
            command_line,
            docker,
            started: Instant::now(),
            tracker: Tracker::new(&fixture.stdout),
            last_int: None,
            expect_command_line: false,
            hang_on_term: false,
        };
        run.open_log(fixture);
        run.write_pidfile();
        run
    }

    /// A recorded line of fixture `id` (or of `own`, the replayed run, when it has one).
    fn recorded_line(&self, own: &Fixture, id: &str, prefix: &str) -> (Identity, String) {
        if let Some(line) = own.line(prefix) {
            return (own.who.clone(), line.to_owned());
        }
        let other = self
            .library
            .load(id)
            .unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
        let line = other.line(prefix).map(str::to_owned);
        let missing = || format!("imapsync-standin: fixture {id} has no {prefix:?} line");
        (
            other.who,
            line.unwrap_or_else(|| fail(EX_SOFTWARE, &missing())),
        )
    }

    fn open_log(&mut self, fixture: &Fixture) {
        let a = &self.args;
        if a.has("nolog") || (self.docker && !a.has("log")) {
            return;
        }
        // imapsync's default name is `<date>_<user1>_<user2>.txt`: reuse the recorded date.
        let recorded = self.recorded.log.as_deref().unwrap_or("");
        let date = recorded.rsplit('/').next().unwrap_or("").get(..23);
        let (u1, u2) = (a.get("user1").unwrap_or(""), a.get("user2").unwrap_or(""));
        let default_name = format!("{}_{u1}_{u2}.txt", date.unwrap_or("standin"));
        let name = match (a.get("logdir"), a.get("logfile")) {
            (Some(d), Some(f)) => format!("{}/{f}", d.trim_end_matches('/')),
            // imapsync's gotcha (fixture u1): without --logdir the name goes under LOG_imapsync/.
            (None, Some(f)) => format!("LOG_imapsync/{f}"),
            (Some(d), None) => format!("{}/{default_name}", d.trim_end_matches('/')),
            (None, None) => format!("LOG_imapsync/{default_name}"),
        };
        let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
        if !dir.as_os_str().is_empty() && !dir.exists() && fs::create_dir_all(dir).is_ok() {
            // Printed on stdout only, before the log is open: the log lacks this line too. The
            // recorded line names the directory third and the current directory last.
            let (_, line) = self.recorded_line(fixture, "a", "Creating directory ");
            let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
            words[2] = dir.display().to_string();
            if let Some(last) = words.last_mut() {
                *last = format!("{})", self.us.cwd);
            }
            self.emit(words.join(" ").as_bytes());
        }
        self.log = File::create(&name).ok();
        self.us.log = Some(name);
    }

    fn write_pidfile(&mut self) {
        let path = match self.args.get("pidfile") {
            _ if self.docker => return,
            Some("") => return,
            Some(p) => p.to_owned(),
            None => format!("{}/imapsync.pid", self.args.get("tmpdir").unwrap_or("/tmp")),
        };
        let log = self.us.log.as_deref().unwrap_or("");
        let content = format!("{}\n{log}\n", self.us.pid);
        self.us.pidfile = fs::write(&path, content).is_ok().then_some(path);
    }

    fn replay(&mut self, fixture: &Fixture, speed: f64, repeat: usize) -> ! {
        // Fixture h: stop at the blank line before `Got a signal TERM`, where the real run got it.
        let all = &fixture.stdout;
        let term = all.iter().position(|l| l.starts_with("Got a signal TERM"));
        let lines = &all[..term.map_or(all.len(), |i| i.saturating_sub(1))];
        let copies = |l: &str| match l.starts_with("msg ") && l.contains(" copied to ") {
            true => repeat.max(1),
            false => 1,
        };
        let total: usize = lines.iter().map(|l| copies(l)).sum();
        let pause = match speed > 0.0 {
            true => Duration::from_secs_f64(fixture.seconds / speed / total.max(1) as f64),
            false => Duration::ZERO,
        };
        for (i, line) in lines.iter().enumerate() {
            if i == 0 && line.starts_with("Creating directory ") {
                continue; // printed by open_log() if this run created a directory
            }
            self.tracker.see(line);
            let out = self.rewrite(fixture, line);
            for _ in 0..copies(line) {
                if let Some(out) = &out {
                    self.emit(out.as_bytes());
                }
                self.pause(pause);
            }
        }
        if term.is_some() {
            self.die(libc::SIGTERM);
        }
        let _ = std::io::stderr().write_all(&fixture.stderr);
        self.remove_pidfile();
        std::process::exit(fixture.exit)
    }

    /// This run's version of a recorded line, or `None` to drop it.
    fn rewrite(&mut self, fixture: &Fixture, line: &str) -> Option<String> {
        if std::mem::take(&mut self.expect_command_line) {
            return Some(self.command_line.clone());
        }
        self.expect_command_line = line.starts_with("Command line used");
        // A run logs or not as its options say, whatever the recorded run did: borrow the other
        // kind of line from a capture that has it (l: `--nolog`, a: a log file).
        let logs = self.us.log.is_some();
        if !logs && line.starts_with("Log file is ") {
            return Some(self.recorded_line(fixture, "l", "No log file because").1);
        }
        if logs && line.starts_with("No log file because") {
            let (who, line) = self.recorded_line(fixture, "a", "Log file is ");
            return self.us.localize(&who, &line);
        }
        self.us.localize(&self.recorded, line)
    }

    /// One line to stdout and the log, flushed so pymap sees it at once.
    fn emit(&mut self, line: &[u8]) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line);
        let _ = stdout.write_all(b"\n");
        let _ = stdout.flush();
        if let Some(log) = &mut self.log {
            let _ = log.write_all(line).and_then(|()| log.write_all(b"\n"));
        }
    }

    /// Sleep `d`, handling signals every 10 ms.
    fn pause(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            self.handle_signals();
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }

    fn handle_signals(&mut self) {
        for sig in [libc::SIGTERM, libc::SIGQUIT] {
            if take_signal(sig) {
                self.die(sig);
            }
        }
        if take_signal(libc::SIGINT) {
            let last = self.last_int.replace(Instant::now());
            let twice = last.is_some_and(|t| t.elapsed() < Duration::from_secs(2));
            if self.docker || twice {
                self.die(libc::SIGINT);
            }
            self.reconnect();
        }
    }

    /// imapsync's answer to one INT outside Docker context: fixture m's recorded reconnection.
    fn reconnect(&mut self) {
        let (who, lines) = self
            .library
            .int_reconnection()
            .unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
        self.tracker.reconnects += 1;
        for line in lines {
            if let Some(out) = self.us.localize_endpoints(&who, &line) {
                self.emit(out.as_bytes());
            }
        }
    }

    /// imapsync's exit on a signal: fixture h's recorded ending (statistics with this run's
    /// counters, the suicide lines), then death by `sig`.
    fn die(&mut self, sig: libc::c_int) -> ! {
        let (who, lines) = self
            .library
            .term_ending()
            .unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
        let unidentified = self.recorded_line_of("a", "There are ");
        let name = match sig {
            libc::SIGINT => "INT",
            libc::SIGQUIT => "QUIT",
            _ => "TERM",
        };
        let elapsed = self.started.elapsed();
        for line in lines {
            let line = self.tracker.restate(&line, elapsed, &unidentified);
            // The recorded run got a TERM; name the signal this one got.
            let line = line.replace(" signal TERM", &format!(" signal {name}"));
            if let Some(out) = self.us.localize_endpoints(&who, &line) {
                self.emit(out.as_bytes());
            }
        }
        self.remove_pidfile();
        if self.hang_on_term {
            // Seen in 2 of 12 real runs: blocked in select() on host2 until --timeout.
            set_disposition(libc::SIGTERM, libc::SIG_IGN);
            let timeout = self.args.get("timeout2").or(self.args.get("timeout"));
            let timeout = timeout.and_then(|t| t.parse().ok());
            std::thread::sleep(Duration::from_secs_f64(
                timeout.unwrap_or(120.0f64).max(0.0),
            ));
        }
        set_disposition(sig, libc::SIG_DFL);
        // SAFETY: plain libc calls on a valid, initialised signal set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        std::process::exit(128 + sig)
    }

    /// A recorded line of fixture `id`, or an empty one when it has none (optional wording).
    fn recorded_line_of(&self, id: &str, prefix: &str) -> String {
        self.library.line(id, prefix).unwrap_or_default()
    }

    fn remove_pidfile(&mut self) {
        if let Some(p) = self.us.pidfile.take() {
            let _ = fs::remove_file(p);
        }
    }
}
