//! `imapsync-standin`: a stand-in executable for imapsync 2.229 that replays a captured run.
//!
//! It exists to test pymap's **process handling** — argv, pass files, log and pid files, output
//! streaming, exit status, signals and timing — and NOT migration: it connects to no server and
//! moves no mail. What it prints is the recorded output of a real imapsync run from
//! `tests/fixtures/imapsync` (see INDEX.md there), with this process's pid, paths and argv
//! substituted, so pymap's parser sees genuine imapsync text.
//!
//! * argv: imapsync style (`--host1 H --user1 U --passfile1 F ... --logdir D --logfile NAME`);
//!   unknown options are accepted and recorded (echoed as the command line, and written as JSON to
//!   `$IMAPSYNC_STANDIN_ARGV_OUT` if set). `--password1/2` are refused (exit 64, `Unknown option`)
//!   because pymap must pass passwords by file; a pass file that is missing, unreadable or not
//!   mode 0600 gives exit 64 too. `--version` prints `2.229`.
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
//!   so TERM kills it silently, like imapsync while Perl loads. Then TERM/QUIT print a statistics
//!   block and `Killing myself with signal TERM` and die by that signal — or, with
//!   `$IMAPSYNC_STANDIN_TERM=hang` (or `+hang`), first block (ignoring TERM) for `--timeout2`,
//!   else `--timeout`, seconds (default 120) as imapsync sometimes does. INT prints imapsync's reconnect lines and goes on; a second
//!   INT within 2 s exits like TERM. Fixture `h` replays up to the point where the real run got
//!   its TERM, then behaves as if it got one.
//! * exit: the recorded exit code (fixture `o` writes its stderr and exits 64 straight away).

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const VERSION: &str = "2.229";
const DEFAULT_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/imapsync");
const EX_USAGE: i32 = 64;
const EX_SOFTWARE: i32 = 70;
/// imapsync options that take a value. Any other option takes one when the next word does not
/// start with `-` (unknown options are tolerated, so their arity is guessed).
const VALUED: &str = "host1 host2 port1 port2 user1 user2 passfile1 passfile2 password1 password2 \
    authuser1 authuser2 authmech1 authmech2 pidfile tmpdir logdir logfile timeout timeout1 \
    timeout2 folder include exclude regextrans2 maxage minage maxsize errorsmax subfolder1 subfolder2";
const LOG_HINT: &str =
    "( to change it, use --logfile filepath ; or use --nolog to turn off logging )";

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
    if argv.iter().any(|a| a == "--version") {
        println!("{VERSION}");
        return;
    }
    let args = Args::parse(&argv[1..]).and_then(|a| a.check_passwords().map(|()| a));
    let args = args.unwrap_or_else(|msg| fail(EX_USAGE, &msg));
    let dir = env("IMAPSYNC_STANDIN_FIXTURES").unwrap_or_else(|| DEFAULT_FIXTURES.to_owned());
    let from_user =
        UserSettings::parse(args.get("user1")).unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
    let id = env("IMAPSYNC_STANDIN_SCENARIO").unwrap_or(from_user.scenario);
    let fixture = Fixture::load(Path::new(&dir), &id).unwrap_or_else(|m| fail(EX_SOFTWARE, &m));
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
    let mut run = Run::start(args, &fixture, argv.join(" "));
    run.hang_on_term = hang;
    run.replay(&fixture, speed, repeat);
}

/// Print `msg` on stderr and exit with `code` (before any output on stdout, like imapsync).
fn fail(code: i32, msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(code)
}

/// `standin-d@example.com` → `d`; anything else → `a`.
#[cfg(test)]
fn scenario_from_user(user1: Option<&str>) -> String {
    UserSettings::parse(user1).map_or_else(|_| "a".to_owned(), |s| s.scenario)
}

/// What `--user1 standin-<id>+word+word@...` asks for (see the module documentation).
#[derive(Debug, Default, PartialEq)]
struct UserSettings {
    scenario: String,
    speed: Option<f64>,
    repeat: Option<usize>,
    startup_ms: Option<u64>,
    hang: bool,
}

impl UserSettings {
    fn parse(user1: Option<&str>) -> Result<UserSettings, String> {
        let local = user1.unwrap_or("").split('@').next().unwrap_or("");
        let Some(rest) = local.strip_prefix("standin-") else {
            return Ok(UserSettings {
                scenario: "a".into(),
                ..UserSettings::default()
            });
        };
        let mut words = rest.split('+');
        let id = words.next().unwrap_or("");
        let mut s = UserSettings {
            scenario: if id.is_empty() { "a" } else { id }.to_owned(),
            ..UserSettings::default()
        };
        for word in words {
            let bad = || format!("imapsync-standin: bad setting {word:?} in user1 {local:?}");
            let num = |prefix: &str| word.strip_prefix(prefix).filter(|n| !n.is_empty());
            if word == "hang" {
                s.hang = true;
            } else if let Some(n) = num("speed") {
                s.speed = Some(n.parse().ok().filter(|x: &f64| *x >= 0.0).ok_or_else(bad)?);
            } else if let Some(n) = num("repeat") {
                s.repeat = Some(n.parse().map_err(|_| bad())?);
            } else if let Some(n) = num("startup") {
                s.startup_ms = Some(n.parse().map_err(|_| bad())?);
            } else {
                return Err(bad());
            }
        }
        Ok(s)
    }
}

/// The parsed command line, in order; flags have no value.
#[derive(Debug, Default)]
struct Args {
    opts: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let mut args = Args::default();
        let mut it = raw.iter().peekable();
        while let Some(word) = it.next() {
            let opt = word.strip_prefix("--").or_else(|| word.strip_prefix('-'));
            let opt = opt.ok_or_else(|| format!("Unknown argument: {word}"))?;
            let (name, inline) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (opt, None),
            };
            if name == "password1" || name == "password2" {
                return Err(format!(
                    "Unknown option: {name}\nimapsync-standin: passwords must be given with \
                     --passfile1/--passfile2, never on the command line"
                ));
            }
            let valued = VALUED.split_whitespace().any(|v| v == name);
            let value = match inline {
                Some(v) => Some(v),
                None if valued || it.peek().is_some_and(|n| !n.starts_with('-')) => {
                    let missing = || format!("Option {name} requires an argument");
                    Some(it.next().ok_or_else(missing)?.clone())
                }
                None => None,
            };
            args.opts.push((name.to_owned(), value));
        }
        Ok(args)
    }

    fn get(&self, name: &str) -> Option<&str> {
        let found = self.opts.iter().rev().find(|(n, _)| n == name);
        found.and_then(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| n == name)
    }

    /// A pass file must exist, be readable and be mode 0600; without one, imapsync would prompt
    /// on a terminal, which pymap must never make it do.
    fn check_passwords(&self) -> Result<(), String> {
        for n in ["1", "2"] {
            let Some(path) = self.get(&format!("passfile{n}")) else {
                if std::env::var_os(format!("IMAPSYNC_PASSWORD{n}")).is_some() {
                    continue;
                }
                return Err(format!(
                    "Failure: no password for user{n}: use --passfile{n}"
                ));
            };
            let bad = |e: std::io::Error| format!("Failure: passfile{n} {path}: {e}");
            let meta = fs::metadata(path).map_err(bad)?;
            fs::read(path).map_err(bad)?;
            let mode = meta.permissions().mode() & 0o777;
            if !meta.is_file() || mode != 0o600 {
                return Err(format!(
                    "Failure: passfile{n} {path} must be mode 0600, not {mode:04o}"
                ));
            }
        }
        Ok(())
    }
}

/// One captured run.
struct Fixture {
    stdout: Vec<Vec<u8>>,
    stderr: Vec<u8>,
    exit: i32,
    seconds: f64,
}

impl Fixture {
    fn load(dir: &Path, id: &str) -> Result<Fixture, String> {
        let (prefix, shown) = (format!("{id}_"), dir.display());
        let entries = fs::read_dir(dir).map_err(|e| format!("imapsync-standin: {shown}: {e}"))?;
        let mut names = entries.filter_map(|e| e.ok()?.file_name().into_string().ok());
        let name = names
            .find(|n| n.starts_with(&prefix) && n.contains(".exit") && n.ends_with(".stdout.txt"))
            .ok_or(format!("imapsync-standin: no fixture {id:?} in {shown}"))?;
        let stdout = fs::read(dir.join(&name)).map_err(|e| format!("imapsync-standin: {e}"))?;
        let stderr = fs::read(dir.join(name.replace(".stdout.", ".stderr."))).unwrap_or_default();
        // index.tsv: id, name, exit, seconds, command.
        let index = fs::read_to_string(dir.join("index.tsv")).unwrap_or_default();
        let row = index.lines().map(|l| l.split('\t').collect::<Vec<_>>());
        let row = row.into_iter().find(|c| c[0] == id).unwrap_or_default();
        let from_name = name.split(".exit").nth(1).and_then(|r| r.split('.').next());
        let exit = row
            .get(2)
            .copied()
            .or(from_name)
            .and_then(|c| c.parse().ok());
        let exit = exit.unwrap_or(0);
        let seconds = row.get(3).and_then(|s| s.parse().ok()).unwrap_or(1.0);
        let mut lines: Vec<Vec<u8>> = stdout.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        if lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        let stdout = lines;
        Ok(Fixture {
            stdout,
            stderr,
            exit,
            seconds,
        })
    }
}

/// Enough bookkeeping to print a plausible statistics block when a signal arrives.
#[derive(Default)]
struct Tracker {
    copied: u64,
    bytes: u64,
    biggest: u64,
    done: u64,
    folder: (u32, u32),
    selected: u64,
    dups: u64,
    void: u64,
    /// From the recorded run: known before the transfer, so true at any point of it.
    started_at: String,
    start_difference: String,
}

impl Tracker {
    fn see(&mut self, line: &str) {
        let num = |s: &str| s.split_whitespace().next()?.parse::<u64>().ok();
        let msg = line
            .strip_prefix("msg ")
            .and_then(|r| r.split_once(" copied to "));
        if let Some((src, _)) = msg {
            let size = src.trim_end().trim_end_matches('}').rsplit('{').next();
            let size = size.and_then(num).unwrap_or(0);
            self.copied += 1;
            self.bytes += size;
            self.biggest = self.biggest.max(size);
        }
        let counter = line
            .strip_suffix(" msgs left")
            .and_then(|h| h.rsplit(' ').next());
        if let Some((left, total)) = counter.and_then(|c| c.split_once('/')) {
            let (left, total) = (num(left).unwrap_or(0), num(total).unwrap_or(0));
            self.done = self.done.max(total.saturating_sub(left));
        }
        let folder = line
            .strip_prefix("Folder ")
            .and_then(|r| r.split_whitespace().next());
        if let Some((i, n)) = folder.and_then(|c| c.split_once('/')) {
            self.folder = (i.parse().unwrap_or(0), n.parse().unwrap_or(0));
        }
        let host1 = line
            .strip_prefix("Host1: folder [")
            .and_then(|r| r.split_once("] selected "));
        if let Some((_, r)) = host1 {
            self.selected += num(r).unwrap_or(0);
            self.dups += r.rsplit(' ').next().and_then(num).unwrap_or(0);
        }
        self.void += u64::from(line.contains(" ignored (no wanted headers"));
        if let Some(at) = line.strip_prefix("Transfer started at ") {
            self.started_at = at.to_owned();
        }
    }
}

/// The running replay.
struct Run {
    args: Args,
    log: Option<File>,
    log_name: Option<String>,
    pidfile: Option<String>,
    /// The recorded run's pid, ppid, log file and pid file, replaced by ours in its lines.
    recorded: [String; 4],
    pid: String,
    ppid: String,
    cwd: String,
    command_line: String,
    docker: bool,
    started: Instant,
    tracker: Tracker,
    last_int: Option<Instant>,
    reconnects: u64,
    expect_command_line: bool,
    /// After TERM, block (ignoring further TERMs) until the timeout, then die.
    hang_on_term: bool,
}

impl Run {
    fn start(args: Args, fixture: &Fixture, command_line: String) -> Run {
        let dockerenv = Path::new("/.dockerenv").exists();
        let docker = args.has("dockercontext") || (dockerenv && !args.has("nodockercontext"));
        let mut recorded: [String; 4] = Default::default();
        let mut tracker = Tracker::default();
        for line in fixture.stdout.iter().map(|l| String::from_utf8_lossy(l)) {
            let path = |rest: &str| rest.split(" ( to ").next().unwrap_or(rest).to_owned();
            let start_diff = line.strip_prefix("Start difference host2 - host1");
            if let Some((_, diff)) = start_diff.and_then(|d| d.split_once(": ")) {
                tracker.start_difference = diff.to_owned();
            } else if let Some(r) = line.strip_prefix("PID is ") {
                let words: Vec<&str> = r.split(' ').collect();
                recorded[0] = words[0].to_owned();
                recorded[1] = words.get(4).unwrap_or(&"").to_string();
            } else if let Some(r) = line.strip_prefix("Log file is ") {
                recorded[2] = path(r); // the first one; the last one is the same
            } else if let Some(r) = line.strip_prefix("PID file is ") {
                recorded[3] = if r.starts_with("unset") {
                    String::new()
                } else {
                    path(r)
                };
            }
        }
        let cwd = std::env::current_dir()
            .unwrap_or_default()
            .display()
            .to_string();
        let mut run = Run {
            log: None,
            log_name: None,
            pidfile: None,
            recorded,
            pid: std::process::id().to_string(),
            ppid: std::os::unix::process::parent_id().to_string(),
            cwd,
            command_line,
            docker,
            started: Instant::now(),
            tracker,
            last_int: None,
            reconnects: 0,
            expect_command_line: false,
            hang_on_term: false,
            args,
        };
        run.open_log();
        run.write_pidfile();
        run
    }

    fn open_log(&mut self) {
        let a = &self.args;
        if a.has("nolog") || (self.docker && !a.has("log")) {
            return;
        }
        // imapsync's default name is `<date>_<user1>_<user2>.txt`: reuse the recorded date.
        let recorded = self.recorded[2].rsplit('/').next().unwrap_or("");
        let date = recorded.get(..23).unwrap_or("standin");
        let (u1, u2) = (a.get("user1").unwrap_or(""), a.get("user2").unwrap_or(""));
        let default_name = format!("{date}_{u1}_{u2}.txt");
        let name = match (a.get("logdir"), a.get("logfile")) {
            (Some(d), Some(f)) => format!("{}/{f}", d.trim_end_matches('/')),
            // imapsync's gotcha (fixture u1): without --logdir the name goes under LOG_imapsync/.
            (None, Some(f)) => format!("LOG_imapsync/{f}"),
            (Some(d), None) => format!("{}/{default_name}", d.trim_end_matches('/')),
            (None, None) => format!("LOG_imapsync/{default_name}"),
        };
        let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
        if !dir.as_os_str().is_empty() && !dir.exists() && fs::create_dir_all(dir).is_ok() {
            // Printed on stdout only, before the log is open: the log lacks this line too.
            let cwd = &self.cwd;
            let msg = format!(
                "Creating directory {} (current directory is {cwd})",
                dir.display()
            );
            self.emit(msg.as_bytes());
        }
        self.log = File::create(&name).ok();
        self.log_name = Some(name);
    }

    fn write_pidfile(&mut self) {
        let path = match self.args.get("pidfile") {
            _ if self.docker => return,
            Some("") => return,
            Some(p) => p.to_owned(),
            None => format!("{}/imapsync.pid", self.args.get("tmpdir").unwrap_or("/tmp")),
        };
        let content = format!("{}\n{}\n", self.pid, self.log_name.as_deref().unwrap_or(""));
        self.pidfile = fs::write(&path, content).is_ok().then_some(path);
    }

    fn replay(&mut self, fixture: &Fixture, speed: f64, repeat: usize) -> ! {
        // Fixture h: stop at the blank line before `Got a signal TERM`, where the real run got it.
        let all = &fixture.stdout;
        let term = all.iter().position(|l| l.starts_with(b"Got a signal TERM"));
        let lines = &all[..term.map_or(all.len(), |i| i.saturating_sub(1))];
        let copies = |l: &[u8]| match l.starts_with(b"msg ") && contains(l, b" copied to ") {
            true => repeat.max(1),
            false => 1,
        };
        let total: usize = lines.iter().map(|l| copies(l)).sum();
        let pause = match speed > 0.0 {
            true => Duration::from_secs_f64(fixture.seconds / speed / total.max(1) as f64),
            false => Duration::ZERO,
        };
        for (i, raw) in lines.iter().enumerate() {
            if i == 0 && raw.starts_with(b"Creating directory ") {
                continue; // printed by open_log() if this run created a directory
            }
            let text = String::from_utf8_lossy(raw);
            self.tracker.see(&text);
            let out = self.rewrite(&text);
            for _ in 0..copies(raw) {
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
    fn rewrite(&mut self, line: &str) -> Option<String> {
        if std::mem::take(&mut self.expect_command_line) {
            return Some(self.command_line.clone());
        }
        self.expect_command_line = line.starts_with("Command line used");
        match &self.log_name {
            None if line.starts_with("Log file is ") => {
                return Some("No log file because of option --nolog".into());
            }
            None if line.starts_with("Writing also my logfile name") => return None,
            Some(name) if line.starts_with("No log file because") => {
                return Some(format!("Log file is {name} {LOG_HINT}"));
            }
            _ => {}
        }
        let mut out = line.to_owned();
        if let Some(dir) = line.strip_prefix("Current directory is ") {
            out = out.replace(dir, &self.cwd);
        }
        let [pid, ppid, log, pidfile] = &self.recorded;
        for (from, to) in [(log, &self.log_name), (pidfile, &self.pidfile)] {
            if let Some(to) = to.as_deref().filter(|_| !from.is_empty()) {
                out = out.replace(from.as_str(), to);
            }
        }
        let with_pid = [
            "PID is ",
            "kill -",
            "Writing my PID ",
            "Exiting with ",
            "Got a s",
            "Ended by",
        ];
        if with_pid.iter().any(|p| line.starts_with(p)) {
            out = replace_number(&replace_number(&out, pid, &self.pid), ppid, &self.ppid);
        }
        Some(out)
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

    /// Several lines, given as one text.
    fn say(&mut self, text: &str) {
        text.split('\n').for_each(|l| self.emit(l.as_bytes()));
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

    /// imapsync's answer to one INT outside Docker context (wording from fixture m).
    fn reconnect(&mut self) {
        let (pid, ppid) = (&self.pid, &self.ppid);
        let h1 = self.args.get("host1").unwrap_or("");
        let h2 = self.args.get("host2").unwrap_or("");
        self.reconnects += 1;
        let text = format!(
            "
Got a signal INT (my PID is {pid} my PPID is {ppid})
Hit 2 ctr-c within 2 seconds to exit the program
Hit only 1 ctr-c to reconnect to both imap servers
For now only one signal INT within 2 seconds.
Info: reconnecting to host1 imap server {h1}
Info: reconnected to host1 imap server {h1}
Info: reconnecting to host2 imap server
Info: reconnected to host2 imap server {h2}
Info: reconnected to both imap servers"
        );
        self.say(&text);
    }

    /// imapsync's exit on TERM (fixture h): statistics, suicide lines, then death by `sig`.
    fn die(&mut self, sig: libc::c_int) -> ! {
        let name = match sig {
            libc::SIGINT => "INT",
            libc::SIGQUIT => "QUIT",
            _ => "TERM",
        };
        let (pid, ppid, stats) = (&self.pid, &self.ppid, self.statistics());
        let mut text = format!(
            "
Got a signal {name} (my PID is {pid} my PPID is {ppid}). Asked to terminate
{stats}
Ended by a signal {name} (my PID is {pid} my PPID is {ppid}). I am asked to terminate immediately.
You should resynchronize those accounts by running a sync again,
since some messages and entire folders might still be missing on host2.
Killing myself with signal {name}
Still there after killing myself with signal {name}...
Exiting with return value 6 (EXIT_BY_SIGNAL) 1/50 nb_errors/max_errors PID {pid}"
        );
        if let Some(p) = &self.pidfile {
            text.push_str(&format!("\nRemoving pidfile {p}"));
        }
        for n in ["1", "2"] {
            let host = self.args.get(&format!("host{n}")).unwrap_or("");
            let user = self.args.get(&format!("user{n}")).unwrap_or("");
            text.push_str(&format!(
                "\nDisconnecting from host{n} {host} user{n} {user}"
            ));
        }
        if let Some(log) = &self.log_name {
            text.push_str(&format!("\nLog file is {log} {LOG_HINT}"));
        }
        self.say(&text);
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

    /// A `++++ Statistics` block and verdict in imapsync's layout, from what was replayed so far.
    fn statistics(&self) -> String {
        let t = &self.tracker;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let (copied, bytes, dups, void, started) =
            (t.copied, t.bytes, t.dups, t.void, &t.started_at);
        let (folder, folders) = t.folder;
        let skipped = t.done.saturating_sub(copied);
        let missing = t.selected.saturating_sub(t.done);
        let identified = t.selected.saturating_sub(dups + void);
        let on_host2 = t.done.saturating_sub(dups + void);
        let (rate, kib_rate) = (copied as f64 / secs, bytes as f64 / 1024.0 / secs);
        let (human, biggest, big_human) = (size(bytes), t.biggest, size(t.biggest));
        let reconnects = self.reconnects;
        let start_diff = &t.start_difference;
        let unidentified = match void {
            0 => "There is no unidentified message on host1.".to_owned(),
            n => format!(
                "There are {n} unidentified messages (usually Sent or Draft messages). \
                 To sync them add option --addheader"
            ),
        };
        format!(
            "++++ Statistics
Transfer started on                     : {started}
Transfer ended on                       : {started}
Transfer time                           : {secs:.1} sec
Folders synced                          : {folder}/{folders} synced
Messages transferred                    : {copied}
Messages skipped                        : {skipped}
Messages found duplicate on host1       : {dups}
Messages found duplicate on host2       : 0
Messages found crossduplicate on host2  : 0
Messages void (noheader) on host1       : {void}
Messages void (noheader) on host2       : 0
Messages found in host1 not in host2    : {missing} messages
Messages found in host2 not in host1    : 0 messages
Messages deleted on host1               : 0
Messages deleted on host2               : 0
Total bytes transferred                 : {bytes} ({human})
Total bytes skipped                     : 0 (0.000 KiB)
Message rate                            : {rate:.1} messages/s
Average bandwidth rate                  : {kib_rate:.1} KiB/s
Reconnections to host1                  : {reconnects}
Reconnections to host2                  : {reconnects}
Biggest message transferred             : {biggest} bytes ({big_human})
Start difference host2 - host1          : {start_diff}
Final difference host2 - host1          : NA messages, NA bytes (NA)
The sync is not finished, there are {missing} among {identified} identified messages in host1 that are not on host2.
{unidentified}
The sync is strict, all {on_host2} identified messages in host2 are on host1.
Detected 0 errors
Check if a new imapsync release is available by adding --releasecheck
Homepage: https://imapsync.lamiral.info/"
        )
    }

    fn remove_pidfile(&mut self) {
        if let Some(p) = self.pidfile.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Replace the occurrences of the number `from` in `s` that are not part of a longer number.
fn replace_number(s: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return s.to_owned();
    }
    let (mut out, mut last) = (String::with_capacity(s.len()), 0);
    for (i, _) in s.match_indices(from) {
        let before = s[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit());
        let after = s[i + from.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit());
        if !before && !after {
            out.push_str(&s[last..i]);
            out.push_str(to);
            last = i + from.len();
        }
    }
    out.push_str(&s[last..]);
    out
}

/// imapsync's human size: `0.000 KiB`, `42.225 KiB`, `35.120 MiB`, `1.500 GiB`.
fn size(b: u64) -> String {
    let (kib, mib) = (1024.0, 1024.0 * 1024.0);
    match b as f64 {
        b if b < mib => format!("{:.3} KiB", b / kib),
        b if b < mib * kib => format!("{:.3} MiB", b / mib),
        b => format!("{:.3} GiB", b / mib / kib),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &str) -> Result<Args, String> {
        Args::parse(&words.split(' ').map(str::to_owned).collect::<Vec<_>>())
    }

    #[test]
    fn argv() {
        let a =
            parse("--host1 h1 --port1=143 --nodockercontext --weird x --flag --user1 standin-c2@x")
                .unwrap();
        assert_eq!(
            (a.get("host1"), a.get("port1"), a.get("weird")),
            (Some("h1"), Some("143"), Some("x"))
        );
        assert!(a.has("nodockercontext") && a.has("flag") && a.get("flag").is_none());
        assert_eq!(scenario_from_user(a.get("user1")), "c2");
        assert_eq!(scenario_from_user(Some("bob@x.org")), "a");
        assert_eq!(scenario_from_user(None), "a");
        let s = UserSettings::parse(Some("standin-h+speed2.5+repeat3+startup0+hang@x")).unwrap();
        let expected = UserSettings {
            scenario: "h".into(),
            speed: Some(2.5),
            repeat: Some(3),
            startup_ms: Some(0),
            hang: true,
        };
        assert_eq!(s, expected);
        assert_eq!(scenario_from_user(Some("standin-+speed9@x")), "a");
        for bad in [
            "standin-a+fast@x",
            "standin-a+speed@x",
            "standin-a+speed-1@x",
            "standin-a+repeatx",
        ] {
            assert!(UserSettings::parse(Some(bad)).is_err(), "{bad}");
        }
        assert!(
            parse("--password1 s")
                .unwrap_err()
                .starts_with("Unknown option: password1\n")
        );
        assert!(parse("--password2=s").is_err());
        assert!(parse("--logfile").is_err());
        assert!(parse("stray").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(
            replace_number("PID 8793 {87930} 8793", "8793", "42"),
            "PID 42 {87930} 42"
        );
        assert_eq!(replace_number("x18793", "8793", "42"), "x18793");
        assert_eq!(size(0), "0.000 KiB");
        assert_eq!(size(43238), "42.225 KiB");
        assert_eq!(size(36825958), "35.120 MiB");
        assert!(contains(b"msg a copied to b", b" copied to "));
    }
}
