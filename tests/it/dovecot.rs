//! Private Dovecot servers for tests and benches, and a deterministic mail corpus.
//!
//! Each [`Dovecot`] is a real `dovecot` (Debian `dovecot-imapd`) with its whole state under
//! a temp dir: 127.0.0.1 on free high ports, passwd-file users (one with a hostile
//! password), Maildir, a chosen separator and namespace prefix, optionally TLS with a
//! self-signed certificate made by `openssl`. It is stopped when dropped. The binary comes
//! from `PYMAP_TEST_DOVECOT` (exported by `scripts/test.sh`); without it tests skip,
//! except under `CI=true`. Dovecot needs root here (it switches to the mail uid).
//!
//! The corpus is filled through IMAP APPEND with async-imap, a client independent of the
//! engine under test, so a bug in the engine's client cannot hide in the fixtures.

use std::{
    collections::BTreeMap,
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

// ------------------------------------------------------------------------------------------
// The corpus.

/// Corpus folders as path components in modified UTF-7 (written out by hand, so they also
/// check the engine's encoder), and whether they are subscribed.
pub const FOLDERS: [(&[&str], bool); 12] = [
    (&["INBOX"], true),
    (&["Sent"], true),
    (&["Projects"], true),
    (&["Projects", "2024"], true),
    (&["Projects", "2024", "Q1"], true),
    (&["Archiv&AOk-"], true),
    (&["Donn&AOk-es"], true),
    (&["Donn&AOk-es", "&AMk-t&AOk- 2023"], true),
    (&["&BB8EQAQ4BDIENQRC-"], true),
    (&["Spaces &- Symbols"], true),
    (&["Empty"], true),
    (&["Unsubscribed"], false),
];
/// Index of `Archivé` in [`FOLDERS`] (cross-folder copies go there).
const ARCHIVE: usize = 5;

#[derive(Clone, Debug)]
pub struct CorpusSpec {
    /// Generated messages (duplicates and cross-folder copies come on top).
    pub messages: usize,
    /// How many of them carry a big attachment, and its size in bytes.
    pub big: usize,
    pub big_size: usize,
    /// Typical attachment size of ordinary messages (0: text only).
    pub attachment: usize,
    pub seed: u64,
}

impl CorpusSpec {
    /// The test corpus: 150 messages, two of 3 MB.
    pub fn small() -> Self {
        CorpusSpec {
            messages: 150,
            big: 2,
            big_size: 3 * 1024 * 1024,
            attachment: 8 * 1024,
            seed: 42,
        }
    }
}

/// What was appended.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    pub messages: u64,
    pub bytes: u64,
    /// Per folder (UTF-7 wire name with the server's separator): messages appended.
    pub per_folder: BTreeMap<String, u64>,
    /// Internal dates (seconds) of all appended messages, for the age filters.
    pub dates: Vec<i64>,
    pub sizes: Vec<u64>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn wire_name(options: &Options, components: &[&str]) -> String {
    if components == ["INBOX"] {
        return "INBOX".into();
    }
    format!(
        "{}{}",
        options.prefix,
        components.join(&options.separator.to_string())
    )
}

/// One generated message: (bytes, flags, internal date as IMAP text, seconds).
fn message(spec: &CorpusSpec, i: usize, rng: &mut Rng) -> (Vec<u8>, String, String, i64) {
    let t = 1_600_000_000 + i as i64 * 86_400 / 3 + rng.below(3600) as i64;
    let zones = ["+0000", "+0200", "-0500", "+0530"];
    let zone = zones[i % zones.len()];
    let offset = match zone {
        "+0200" => 7200,
        "-0500" => -18000,
        "+0530" => 19800,
        _ => 0,
    };
    let local = chrono::DateTime::from_timestamp(t + offset, 0)
        .expect("valid time")
        .naive_utc();
    let date = format!("{} {zone}", local.format("%d-%b-%Y %H:%M:%S"));
    let rfc822_date = format!("{} {zone}", local.format("%a, %d %b %Y %H:%M:%S"));
    let mut h = String::new();
    if i % 25 != 11 {
        h.push_str(&format!(
            "Received: from mx{0}.corpus.test by mail.corpus.test; {rfc822_date}\r\n",
            i % 7
        ));
    }
    if i % 20 != 3 && i % 25 != 11 {
        h.push_str(&format!(
            "Message-ID: <corpus-{}-{i}@corpus.test>\r\n",
            spec.seed
        ));
    }
    h.push_str(&format!("Date: {rfc822_date}\r\nFrom: Sender {0} <sender{0}@corpus.test>\r\nTo: alice@corpus.test\r\n", i % 13));
    let eight_bit = i % 15 == 4;
    match i % 10 {
        0 => h.push_str(&format!(
            "Subject: =?UTF-8?B?w4l0w6kg8J+YgCBuwrA=?= {i}\r\n"
        )),
        _ if eight_bit => h.push_str(&format!("Subject: Données été {i} — Привет\r\n")),
        _ => h.push_str(&format!("Subject: Corpus message {i}\r\n")),
    }
    h.push_str("MIME-Version: 1.0\r\n");
    let text = if eight_bit {
        format!("Bonjour, voilà le message {i}. Ça marche: «ok».\r\n")
    } else {
        format!("Hello, this is message {i} of the pymap test corpus.\r\n")
    };
    let cte = if eight_bit { "8bit" } else { "7bit" };
    let attachment = if i < spec.big {
        spec.big_size
    } else if spec.attachment > 0 && i.is_multiple_of(3) {
        spec.attachment / 2 + rng.below(spec.attachment as u64) as usize
    } else {
        0
    };
    let mut body = Vec::new();
    if attachment == 0 {
        h.push_str(&format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
        ));
        body.extend_from_slice(text.as_bytes());
    } else {
        let b = format!("b{i}");
        h.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n"
        ));
        body.extend_from_slice(format!("--{b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{text}\r\n").as_bytes());
        body.extend_from_slice(format!("--{b}\r\nContent-Type: application/octet-stream; name=\"data{i}.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data{i}.bin\"\r\n\r\n").as_bytes());
        let raw: Vec<u8> = (0..attachment).map(|_| rng.next() as u8).collect();
        let b64 = base64(&raw);
        for line in b64.as_bytes().chunks(76) {
            body.extend_from_slice(line);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    }
    let mut bytes = h.into_bytes();
    bytes.extend_from_slice(&body);
    let all = [
        "\\Seen",
        "\\Flagged",
        "\\Answered",
        "\\Draft",
        "$Forwarded",
        "$Label1",
    ];
    let bits = rng.next();
    let flags: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(k, _)| bits >> k & 1 == 1)
        .map(|(_, f)| *f)
        .collect();
    (
        bytes,
        format!("({})", flags.join(" ")),
        format!("\"{date}\""),
        t,
    )
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub type Session = async_imap::Session<TcpStream>;

/// Logs in with async-imap (plain IMAP).
pub async fn session(server: &Dovecot, user: &str) -> Session {
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .expect("greeting")
        .expect("greeting");
    client
        .login(user, secret(user).expose())
        .await
        .map_err(|(e, _)| e)
        .expect("login")
}

/// Fills `user`'s mailbox with the corpus.
pub async fn fill(server: &Dovecot, user: &str, spec: &CorpusSpec) -> Corpus {
    let mut s = session(server, user).await;
    let o = &server.options;
    for (components, subscribed) in FOLDERS {
        let name = wire_name(o, components);
        if name != "INBOX" {
            s.create(&name)
                .await
                .unwrap_or_else(|e| panic!("create {name}: {e}"));
        }
        if subscribed {
            s.subscribe(&name).await.expect("subscribe");
        }
    }
    let mut corpus = Corpus::default();
    let mut rng = Rng(spec.seed);
    // Folder weights: INBOX gets half, `Empty` nothing.
    let weights: [u64; 12] = [50, 10, 4, 4, 4, 6, 3, 5, 4, 5, 0, 5];
    let sum: u64 = weights.iter().sum();
    for i in 0..spec.messages {
        let (bytes, flags, date, t) = message(spec, i, &mut rng);
        let mut pick = rng.below(sum);
        let folder = weights
            .iter()
            .position(|&w| {
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("weights");
        let mut targets = vec![folder];
        // Exact duplicates in one folder, also of a message without any identifying header.
        if i % 30 == 7 || i % 50 == 11 {
            targets.extend([folder, folder]);
        }
        // The same message in another folder.
        if i % 40 == 3 && folder != ARCHIVE {
            targets.push(ARCHIVE);
        }
        for f in targets {
            let name = wire_name(o, FOLDERS[f].0);
            s.append(&name, Some(&flags), Some(&date), &bytes)
                .await
                .unwrap_or_else(|e| panic!("append to {name}: {e}"));
            corpus.messages += 1;
            corpus.bytes += bytes.len() as u64;
            corpus.dates.push(t);
            corpus.sizes.push(bytes.len() as u64);
            *corpus.per_folder.entry(name).or_default() += 1;
        }
    }
    s.logout().await.ok();
    corpus
}

// ------------------------------------------------------------------------------------------
// A TCP proxy that adds latency and can cut a connection (reconnect tests, latency benches).

pub struct Proxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub fn host(&self) -> HostSpec {
        HostSpec {
            host: "127.0.0.1".into(),
            port: Some(self.port),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards 127.0.0.1:`port` to `target`, delaying every chunk by `one_way` in each
/// direction (so the round trip grows by twice that, while bandwidth is unchanged). The
/// first connection to carry more than `cut_after` bytes from the client is closed there.
pub async fn proxy(target: u16, one_way: Duration, cut_after: Option<u64>) -> Proxy {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cut_done = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let cut = cut_after.filter(|_| !cut_done.load(Ordering::SeqCst));
            let cut_done = cut_done.clone();
            conns.spawn(async move {
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = pump(cr, sw, one_way, cut);
                let down = pump(sr, cw, one_way, None);
                // Either direction ending (or the cut) ends the connection.
                tokio::select! {
                    cut = up => if cut { cut_done.store(true, Ordering::SeqCst) },
                    _ = down => {}
                }
            });
        }
    });
    Proxy { port, task }
}

/// Copies `r` to `w` with a delay; true when it stopped because of the cut.
async fn pump(
    mut r: impl tokio::io::AsyncRead + Unpin,
    mut w: impl tokio::io::AsyncWrite + Unpin,
    delay: Duration,
    cut: Option<u64>,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut total = 0u64;
        loop {
            let mut buf = vec![0; 64 * 1024];
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            total += n as u64;
            if cut.is_some_and(|c| total > c) {
                return true;
            }
            buf.truncate(n);
            if tx.send((Instant::now() + delay, buf)).await.is_err() {
                return false;
            }
        }
    };
    let writer = async move {
        while let Some((due, buf)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if w.write_all(&buf).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        cut = &mut reader => {
            if !cut {
                // End of input: deliver what is still delayed.
                writer.await;
            }
            cut
        }
        () = &mut writer => false,
    }
}
