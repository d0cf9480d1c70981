//! What imapsync is given for one job: its command line (a list of argv elements, never a
//! shell string), its environment and its private work directory with the pass files.
//!
//! * **Argv**: everything that identifies the mailboxes comes from the [`JobSpec`]; everything
//!   about files and processes is fixed here, and the allowlist of `imapsync_options` refuses
//!   those options as extra arguments, so a batch cannot redirect the pid file, the log or the
//!   temporary files.
//! * **Passwords** go to `passfile1`/`passfile2` in the job's private work directory (0700),
//!   created 0600 from the start (`create_new`, never a pre-existing file), holding the
//!   password and a `"\n"`: imapsync reads the first line of a pass file and chomps that
//!   `"\n"` (`nthline()` in imapsync 2.229), so a password cannot contain a line break and
//!   such a job is refused. Passwords never appear in argv, in the child's environment, in the
//!   log or in an outcome.
//! * **Environment**: cleared, then only `PATH`, `HOME=<work_dir>`, `LANG=C.UTF-8` and `TZ`
//!   when set, so pymap's own secrets (`PYMAP_*`), `NOTIFY_SOCKET` and the like never reach
//!   imapsync, and it reads and writes nothing in pymap's home. The working directory is the
//!   work directory too.
//! * **Pid file**: `--pidfile <work_dir>/imapsync.pid`, one per job (the default
//!   `/tmp/imapsync.pid` is shared by all runs and a killed run leaves it behind). pymap does
//!   not need it (it knows the child's pid); it is removed with the work directory.

use std::{
    ffi::{CString, OsStr, OsString},
    fs, io,
    io::Write,
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use crate::{service::hosts::provider_of, worker::engine::JobSpec};

/// Names of the files the runner keeps in the job's private work directory.
pub(crate) const PASSFILE1: &str = "passfile1";
pub(crate) const PASSFILE2: &str = "passfile2";
pub(crate) const PIDFILE: &str = "imapsync.pid";

/// Checks what would otherwise reach imapsync as an option or be cut by its pass-file reader.
/// The reason names the field, never its value (a mis-split batch line can put a password
/// fragment into any field).
pub(crate) fn check(spec: &JobSpec) -> Result<(), String> {
    for (name, host) in [("host1", &spec.host1), ("host2", &spec.host2)] {
        // `parse_host` already guarantees this; a JobSpec built by hand might not.
        if host.host.is_empty() || host.host.starts_with('-') {
            return Err(format!(
                "{name} is empty or starts with '-': refusing to pass it to imapsync, which \
                 would read it as an option."
            ));
        }
    }
    for (name, user) in [("user1", &spec.user1), ("user2", &spec.user2)] {
        if user.is_empty() || user.starts_with('-') {
            return Err(format!(
                "{name} is empty or starts with '-': refusing to pass it to imapsync, which \
                 would read it as an option."
            ));
        }
        if user.contains('\0') {
            return Err(format!("{name} contains a NUL character."));
        }
    }
    for (name, secret) in [
        ("password1", &spec.password1),
        ("password2", &spec.password2),
    ] {
        // imapsync reads only the first line of a pass file (and chomps its "\n").
        if secret.expose().contains('\n') {
            return Err(format!(
                "{name} contains a line break, which imapsync cannot read from a pass file."
            ));
        }
    }
    if let Err(errors) = spec.options.validate() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("Invalid migration options: {}.", list.join("; ")));
    }
    Ok(())
}

/// The full argv after the program name. Call [`check`] first.
pub(crate) fn build(spec: &JobSpec, work_dir: &Path) -> Vec<OsString> {
    let mut argv: Vec<OsString> = Vec::with_capacity(40);
    let sides = [
        ('1', &spec.host1, &spec.user1, PASSFILE1),
        ('2', &spec.host2, &spec.user2, PASSFILE2),
    ];
    for (n, host, user, passfile) in sides {
        argv.extend([format!("--host{n}").into(), host.host.clone().into()]);
        if let Some(port) = host.port {
            argv.extend([format!("--port{n}").into(), port.to_string().into()]);
        }
        argv.extend([format!("--user{n}").into(), user.into()]);
        argv.extend([
            format!("--passfile{n}").into(),
            work_dir.join(passfile).into(),
        ]);
    }
    // Without it imapsync detects /.dockerenv (pymap's own container), then writes no pid file,
    // changes directory to /var/tmp and treats INT as "exit" (INDEX.md, fixture l).
    argv.push("--nodockercontext".into());
    // One pid file per job: the default /tmp/imapsync.pid is shared by all runs.
    argv.extend(["--pidfile".into(), work_dir.join(PIDFILE).into()]);
    argv.extend(["--tmpdir".into(), work_dir.into()]);
    argv.extend(["--noreleasecheck".into(), "--no-modulesversion".into()]);
    // pymap writes the job log itself from the streamed output: see runner.rs.
    argv.push("--nolog".into());
    let options = spec
        .options
        .to_imapsync_args(provider_of(&spec.host1), provider_of(&spec.host2));
    argv.extend(options.into_iter().map(OsString::from));
    argv
}

const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why `p` cannot be run, if it cannot.
pub(crate) fn executable(p: &Path) -> Result<(), String> {
    let meta = fs::metadata(p).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "no such file exists".to_owned(),
        _ => format!("it cannot be read ({e})"),
    })?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let c_path = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| "the path contains a NUL byte".to_owned())?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let runnable = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0;
    if meta.permissions().mode() & 0o111 == 0 || !runnable {
        return Err("it is not executable".into());
    }
    Ok(())
}

/// `imapsync` in the absolute directories of `search_path` (relative entries such as `.` are
/// skipped: pymap never runs a program found relative to its working directory).
pub(crate) fn find_on_path(search_path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(search_path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("imapsync"))
        .find(|candidate| executable(candidate).is_ok())
}

/// The whole environment of a child process.
pub(crate) fn child_env(home: Option<&Path>) -> Vec<(&'static str, OsString)> {
    let path = std::env::var_os("PATH").filter(|p| !p.is_empty());
    let mut env = vec![
        ("PATH", path.unwrap_or_else(|| FALLBACK_PATH.into())),
        ("LANG", "C.UTF-8".into()),
    ];
    if let Some(home) = home {
        env.push(("HOME", home.into()));
    }
    if let Some(tz) = std::env::var_os("TZ") {
        env.push(("TZ", tz));
    }
    env
}

/// Signal a whole process group. Never signals group 0 or 1 (`kill(0)`/`kill(-1)` would hit
/// pymap itself or every process).
pub(crate) fn signal_group(pgid: i32, sig: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: a plain system call on integers.
    unsafe { libc::kill(-pgid, sig) == 0 }
}

/// Creates a pass file: 0600 from the start, never an existing file or a symlink.
pub(crate) fn write_passfile(path: &Path, password: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The umask can only narrow 0600; make it exactly 0600 (the stand-in insists).
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(password.as_bytes())?;
    file.write_all(b"\n")
}

/// The job's private directory, and the process group living in it: removed and killed on
/// every way out of a run (see the module documentation).
pub(crate) struct WorkDir {
    path: PathBuf,
    /// True once the directory is known to be ours: only then is it ever removed.
    owned: bool,
    /// The child's process group while it may be alive.
    pub(crate) group: Option<i32>,
}

impl WorkDir {
    pub(crate) fn new(path: &Path) -> WorkDir {
        WorkDir {
            path: path.to_owned(),
            owned: false,
            group: None,
        }
    }

    /// A fresh, empty 0700 directory (a previous run that died with pymap may have left one).
    pub(crate) fn create(&mut self) -> io::Result<()> {
        if fs::symlink_metadata(&self.path).is_ok() {
            check_ours(&self.path)?;
            fs::remove_dir_all(&self.path)?;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)?;
        check_ours(&self.path)?;
        self.owned = true;
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
    }

    /// Called once the child is reaped: kills what it may have left in its group. True if
    /// there was something.
    pub(crate) fn reaped(&mut self) -> bool {
        // While any member lives the id stays reserved (no new process can take it); once the
        // group is empty, `kill(-pgid, 0)` fails, short of the id being reused within the
        // microseconds since the reaping.
        self.group
            .take()
            .is_some_and(|pgid| signal_group(pgid, 0) && signal_group(pgid, libc::SIGKILL))
    }

    pub(crate) fn cleanup(&mut self) -> io::Result<()> {
        if !std::mem::take(&mut self.owned) {
            return Ok(());
        }
        // The pass files first, on their own, in case removing the rest fails.
        for name in [PASSFILE1, PASSFILE2, PIDFILE] {
            let _ = fs::remove_file(self.path.join(name));
        }
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            result => result,
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(pgid) = self.group.take() {
            signal_group(pgid, libc::SIGKILL);
        }
        if let Err(e) = self.cleanup() {
            let path = self.path.display();
            tracing::warn!("could not remove the work directory {path}: {e}");
        }
    }
}

/// A real directory (not a symlink) owned by this process's user.
fn check_ours(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::other("it exists and is not a directory"));
    }
    // SAFETY: geteuid cannot fail and has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(io::Error::other("it belongs to another user"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{batch::Secret, hosts::HostSpec, imapsync_options::MigrationOptions};

    fn spec() -> JobSpec {
        JobSpec {
            job_id: 1,
            task_id: 1,
            host1: HostSpec {
                host: "imap.gmail.com".into(),
                port: Some(993),
            },
            user1: "alice@old.example".into(),
            password1: Secret::new("p1 \"x\""),
            host2: HostSpec {
                host: "::1".into(),
                port: None,
            },
            user2: "bob@new.example".into(),
            password2: Secret::new("p2"),
            options: MigrationOptions::default(),
            log_path: "/data/logs/job-1.log".into(),
            work_dir: "/data/run/job-1".into(),
        }
    }

    #[test]
    fn argv_has_one_element_per_value_and_no_password() {
        let s = spec();
        let argv = build(&s, Path::new("/w"));
        let argv: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "--host1",
                "imap.gmail.com",
                "--port1",
                "993",
                "--user1",
                "alice@old.example",
                "--passfile1",
                "/w/passfile1",
                "--host2",
                "::1",
                "--user2",
                "bob@new.example",
                "--passfile2",
                "/w/passfile2",
                "--nodockercontext",
                "--pidfile",
                "/w/imapsync.pid",
                "--tmpdir",
                "/w",
                "--noreleasecheck",
                "--no-modulesversion",
                "--nolog",
                "--addheader",
                "--gmail1",
            ]
        );
        assert!(!argv.iter().any(|a| a.contains("p1") || a.contains("p2")));
        assert_eq!(check(&s), Ok(()));
    }

    #[test]
    fn dangerous_fields_are_refused_without_echoing_them() {
        let mut s = spec();
        s.user1 = "-oProxyCommand=evil".into();
        let e = check(&s).unwrap_err();
        assert!(e.starts_with("user1 ") && !e.contains("evil"), "{e}");
        let mut s = spec();
        s.host2.host = "--help".into();
        assert!(check(&s).unwrap_err().starts_with("host2 "));
        let mut s = spec();
        s.password2 = Secret::new("hunter2\nxyzzy");
        let e = check(&s).unwrap_err();
        assert!(e.starts_with("password2 ") && !e.contains("hunter2"), "{e}");
        let mut s = spec();
        s.options.delete_on_destination = true;
        assert!(check(&s).unwrap_err().contains("delete_on_destination"));
    }

    #[test]
    fn signal_group_refuses_dangerous_ids() {
        assert!(!signal_group(0, 0));
        assert!(!signal_group(1, 0));
        assert!(!signal_group(-5, 0));
    }
}
