//! Private Dovecot servers for tests and benches, and a deterministic mail corpus.
//!
//! Each [`Dovecot`] is a real `dovecot` (Debian `dovecot-imapd`) with its whole state under
//! a temp dir: 127.0.0.1 on free high ports, passwd-file users (one with a hostile
//! password), Maildir, a chosen separator and namespace prefix, optionally TLS with a
//! self-signed certificate made by `openssl`. It is stopped when dropped. The binary comes
//! from `PYMAP_TEST_DOVECOT` (exported by `scripts/test.sh`); without it tests skip,
//! except under `CI=true`. Dovecot needs root here (it switches to the mail uid).
//!
//! The corpus (`dovecot/corpus.rs`) is filled through IMAP APPEND with async-imap, a client
//! independent of the engine under test, so a bug in the engine's client cannot hide in the
//! fixtures. `dovecot/proxy.rs` adds latency or cuts connections.

mod corpus;
mod proxy;

pub use corpus::{CorpusSpec, fill, session};
pub use proxy::proxy;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pymap::service::{batch::Secret, hosts::HostSpec};
use tokio::net::TcpStream;

use crate::harness::service_url;

/// Users of every server: (name, password).
pub const USERS: [(&str, &str); 5] = [
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
    ("carol", "carol-secret"),
    ("dave", "dave-secret"),
    ("hostile", HOSTILE),
];
/// Spaces, quotes, a backslash, a dollar and an at sign: everything a naive quoting breaks.
pub const HOSTILE: &str = r#"p@ss w0rd "q" $x 'y' \z"#;
const MAIL_UID: u32 = 5000;

#[derive(Clone, Debug)]
pub struct Options {
    pub separator: char,
    /// Personal namespace prefix, e.g. `INBOX.` (must end with the separator) or empty.
    pub prefix: &'static str,
    pub tls: bool,
    /// Quota plugin settings: storage limit per user, largest message accepted (`1M`).
    pub quota: Option<&'static str>,
    pub max_mail_size: Option<&'static str>,
}

impl Options {
    pub fn slash() -> Self {
        Options {
            separator: '/',
            prefix: "",
            tls: false,
            quota: None,
            max_mail_size: None,
        }
    }
    /// Courier-style: `.` separator and an `INBOX.` prefix.
    pub fn dot() -> Self {
        Options {
            separator: '.',
            prefix: "INBOX.",
            ..Self::slash()
        }
    }
    pub fn tls() -> Self {
        Options {
            tls: true,
            ..Self::slash()
        }
    }
}

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: Option<u16>,
    pub options: Options,
}

/// The dovecot binary, or `None` (skip) outside CI.
pub fn binary() -> Option<PathBuf> {
    let path = service_url("PYMAP_TEST_DOVECOT")?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if matches!(std::env::var("CI").as_deref(), Ok("true" | "1")) {
            panic!("the Dovecot tests need root (Dovecot switches to the mail uid)");
        }
        eprintln!("SKIP: the Dovecot tests need root");
        return None;
    }
    Some(PathBuf::from(path))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Dovecot {
    /// Starts a server, or `None` when Dovecot is unavailable (skip).
    pub async fn start(options: Options) -> Option<Dovecot> {
        let bin = binary()?;
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin, options.clone()).await {
                Ok(d) => return Some(d),
                Err(e) => last = e,
            }
        }
        panic!("Dovecot did not start: {last}");
    }

    async fn try_start(bin: &Path, options: Options) -> Result<Dovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("pymap-dovecot-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = dir.path();
        // Dovecot's processes run as the mail uid and must traverse the dir.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        for sub in ["run", "state", "log", "mail"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| e.to_string())?;
        }
        chown(&root.join("mail"), MAIL_UID)?;
        let users: String = USERS
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        fs::write(root.join("users"), users).map_err(|e| e.to_string())?;
        let port = free_port();
        let tls_port = options.tls.then(free_port);
        let ssl = if options.tls {
            make_cert(root)?;
            format!(
                "ssl = yes\nssl_cert = <{0}/cert.pem\nssl_key = <{0}/key.pem\nssl_dh = </usr/share/dovecot/dh.pem\n",
                root.display()
            )
        } else {
            "ssl = no\n".to_owned()
        };
        let mut quota = String::new();
        if options.quota.is_some() || options.max_mail_size.is_some() {
            quota.push_str(
                "mail_plugins = $mail_plugins quota\nplugin {\n  quota = maildir:User quota\n",
            );
            if let Some(q) = options.quota {
                quota.push_str(&format!("  quota_rule = *:storage={q}\n"));
            }
            if let Some(m) = options.max_mail_size {
                quota.push_str(&format!("  quota_max_mail_size = {m}\n"));
            }
            quota.push_str("}\n");
        }
        let d = root.display();
        let conf = format!(
            r#"instance_name = pymap-test-{port}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = 127.0.0.1
log_path = {d}/log/dovecot.log
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_failure_delay = 0
{ssl}
{quota}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={d}/mail/%u
}}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = optimized
mail_max_userip_connections = 50
namespace inbox {{
  inbox = yes
  separator = {sep}
  prefix = {prefix}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service imap {{
  process_limit = 256
}}
"#,
            sep = options.separator,
            prefix = options.prefix,
            tls_port = tls_port.unwrap_or(0),
        );
        fs::write(root.join("dovecot.conf"), conf).map_err(|e| e.to_string())?;
        // The daemon keeps its inherited stdio open: a pipe would never reach EOF.
        let stderr = fs::File::create(root.join("log/start.err")).map_err(|e| e.to_string())?;
        let status = Command::new(bin)
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .map_err(|e| format!("running {}: {e}", bin.display()))?;
        let server = Dovecot {
            dir,
            port,
            tls_port,
            options,
        };
        if !status.success() {
            let said =
                fs::read_to_string(server.dir.path().join("log/start.err")).unwrap_or_default();
            return Err(format!("dovecot exited with {status}: {said}"));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for p in [Some(port), tls_port].into_iter().flatten() {
            while TcpStream::connect(("127.0.0.1", p)).await.is_err() {
                if Instant::now() > deadline {
                    return Err(format!("dovecot does not listen on {p}: {}", server.log()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(server)
    }

    pub fn host(&self) -> HostSpec {
        HostSpec {
            host: "127.0.0.1".into(),
            port: Some(self.port),
        }
    }

    pub fn tls_host(&self) -> HostSpec {
        HostSpec {
            host: "127.0.0.1".into(),
            port: self.tls_port,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log/dovecot.log")).unwrap_or_default()
    }

    /// Removes a user's mail (between bench runs); Dovecot recreates it on the next login.
    pub fn wipe(&self, user: &str) {
        let _ = fs::remove_dir_all(self.dir.path().join("mail").join(user));
    }

    fn stop(&self) {
        let pid_file = self.dir.path().join("run/master.pid");
        let Ok(pid) = fs::read_to_string(&pid_file) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        // SAFETY: signalling a pid we started; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: as above, signal 0 only checks for existence.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chown(path: &Path, uid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

fn make_cert(root: &Path) -> Result<(), String> {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(root.join("key.pem"))
        .arg("-out")
        .arg(root.join("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

pub fn secret(user: &str) -> Secret {
    Secret::new(
        USERS
            .iter()
            .find(|(u, _)| *u == user)
            .expect("known user")
            .1,
    )
}
