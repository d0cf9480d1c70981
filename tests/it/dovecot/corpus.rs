//! A deterministic corpus: nested, non-ASCII, empty and unsubscribed folders, duplicates,
//! cross-folder copies, messages without Message-ID (and without Received), 8-bit and
//! RFC 2047 headers, attachments up to several MB, all flags plus keywords, distinct
//! internal dates.

use std::collections::BTreeMap;

use tokio::net::TcpStream;

use super::{Dovecot, Options, secret};

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
