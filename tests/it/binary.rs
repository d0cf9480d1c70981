//! The real `pymap` binary: first start on embedded defaults, readiness, healthcheck,
//! graceful SIGTERM, the user CLI, `config show` and the configuration exit code.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::harness::bin;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command with a clean environment: only what the test sets reaches pymap.
fn pymap(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PYMAP_DATA_DIR", dir.join("data"))
        .current_dir(dir);
    cmd
}

#[test]
fn serve_healthcheck_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Play systemd: a notify socket and a 300 ms watchdog.
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let child = pymap(dir.path())
        .args(["serve", "--listen", &listen])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for readiness through the healthcheck subcommand itself.
    let started = Instant::now();
    loop {
        let ok = pymap(dir.path())
            .args(["healthcheck"])
            .env("PYMAP_LISTEN", &listen)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pymap did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Embedded defaults: SQLite, generated secret (0600), generated admin password file.
    use std::os::unix::fs::PermissionsExt;
    let data = dir.path().join("data");
    assert!(data.join("pymap.db").exists());
    assert_eq!(
        std::fs::metadata(data.join(".secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let admin_password = std::fs::read_to_string(data.join("initial-admin-password")).unwrap();

    let mut buf = [0u8; 256];
    let mut messages = Vec::new();
    while !(messages.iter().any(|m| m == "READY=1")
        && messages.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2)
    {
        let n = notify.recv(&mut buf).expect("sd_notify messages arrive");
        messages.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }

    // SIGTERM: STOPPING=1, then a graceful exit with status 0.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    loop {
        let n = notify.recv(&mut buf).expect("STOPPING=1 arrives");
        if String::from_utf8_lossy(&buf[..n]).trim() == "STOPPING=1" {
            break;
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    // The generated admin password is shown once on the console, never in the log files.
    assert!(stderr.contains(admin_password.trim()));
    let logs: String = std::fs::read_dir(data.join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(logs.contains("pymap listening"), "daily log file written");
    assert!(
        !logs.contains(admin_password.trim()),
        "no secret in log files"
    );

    // Not running any more: healthcheck fails.
    let status = pymap(dir.path())
        .args(["healthcheck", "--timeout-secs", "1"])
        .env("PYMAP_LISTEN", &listen)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}

#[test]
fn user_cli_and_config_show() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = pymap(dir.path())
        .args(["user", "create", "Operator", "--admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"operator-pass-1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("operator-pass-1"));

    let out = pymap(dir.path()).args(["user", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("operator") && list.contains("admin"),
        "{list}"
    );
    let out = pymap(dir.path())
        .args(["user", "disable", "operator"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = pymap(dir.path()).args(["user", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("disabled"));
    let out = pymap(dir.path())
        .args(["user", "disable", "ghost"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));

    let out = pymap(dir.path())
        .args([
            "config",
            "show",
            "--redis-url",
            "redis://:hunter2@127.0.0.1:1/",
        ])
        .env("PYMAP_SECRET_KEY", "k".repeat(40))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        shown.contains("environment variable PYMAP_DATA_DIR"),
        "{shown}"
    );
    assert!(shown.contains("command-line flag --redis-url"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !shown.contains(&"k".repeat(40)),
        "{shown}"
    );
}

#[test]
fn configuration_errors_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{\"listen\": }").unwrap();
    let out = pymap(dir.path()).args(["config", "show"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("line 1, column 12"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let out = pymap(dir.path())
        .args(["serve"])
        .env("PYMAP_WORKERS__CONCURRENCY", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PYMAP_WORKERS__CONCURRENCY") && err.contains("workers.concurrency"),
        "{err}"
    );
}

/// `pymap sync` runs one migration in the foreground with the same runner; exit 0 only
/// for success. (Process handling, not migration: imapsync is the replaying stand-in.)
#[test]
fn sync_command_exit_status_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let standin = env!("CARGO_BIN_EXE_imapsync-standin");
    let run = |user: &str| {
        let mut child = pymap(dir.path())
            .args([
                "sync",
                "--host1",
                "src.example.com",
                "--user1",
                user,
                "--host2",
                "dst.example.com:143",
                "--user2",
                user,
                "--passwords-stdin",
            ])
            .env("PYMAP_IMAPSYNC_PATH", standin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"secret one\nsecret two\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let ok = run("standin-g+speed20@example.com");
    let report = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{report}");
    assert!(report.contains("status:      succeeded"), "{report}");
    let warning = run("standin-a+speed50@example.com");
    let report = String::from_utf8_lossy(&warning.stdout);
    assert_eq!(
        warning.status.code(),
        Some(1),
        "a warning is not a success: {report}"
    );
    assert!(
        report.contains("4 messages") && report.contains("transferred: 296"),
        "{report}"
    );
    let auth = run("standin-c+speed20@example.com");
    assert_eq!(auth.status.code(), Some(1));
    for out in [&ok, &warning, &auth] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains("secret one") && !all.contains("secret two"),
            "{all}"
        );
    }
    // The report names the log; it holds the replayed output and no password.
    let log_line = report.lines().find(|l| l.starts_with("log:")).unwrap();
    let log = std::fs::read_to_string(log_line.trim_start_matches("log:").trim()).unwrap();
    assert!(log.contains("Exiting with return value"));
    assert!(!log.contains("secret one"));
}

/// `pymap batch` validates the whole file (errors per line, nothing created) and prints
/// the new task's id.
#[test]
fn batch_command_submits_or_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let standin = env!("CARGO_BIN_EXE_imapsync-standin");
    // The task's owner (admin by default) must exist: create it as an operator would.
    let mut child = pymap(dir.path())
        .args(["user", "create", "admin", "--admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"admin-password-1\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::write(
        dir.path().join("bad.txt"),
        "a@x.example pw\nonly-three fields here\n",
    )
    .unwrap();
    let out = pymap(dir.path())
        .args([
            "batch",
            "bad.txt",
            "--source",
            "src.example.com",
            "--destination",
            "dst.example.com",
        ])
        .env("PYMAP_IMAPSYNC_PATH", standin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
    std::fs::write(
        dir.path().join("good.csv"),
        "user1,password1,user2,password2\na@x.example,\"p,w \"\"1\"\"\",b@y.example,pw2\n",
    )
    .unwrap();
    let out = pymap(dir.path())
        .args([
            "batch",
            "good.csv",
            "--source",
            "src.example.com",
            "--destination",
            "dst.example.com",
        ])
        .env("PYMAP_IMAPSYNC_PATH", standin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(id >= 1);
}
