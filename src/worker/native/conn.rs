//! One IMAP connection: TCP, implicit TLS or STARTTLS, greeting, capabilities, login, and
//! the primitives the copier pipelines with (send a command without waiting, read the next
//! response, read or stream a literal).
//!
//! This is a small client of our own rather than async-imap: async-imap runs one command at
//! a time and wants whole messages in memory for APPEND, while the copier keeps dozens of
//! APPENDs in flight (LITERAL+), streams multi-megabyte literals from one server to the
//! other in chunks, and must control exactly which bytes are in memory. Every read and write
//! has a timeout. Passwords are only ever written to the socket, never into an error.

use std::{
    collections::{HashSet, VecDeque},
    io,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter},
    net::TcpStream,
};

use super::{
    ErrorKind, NativeError as Error, Side,
    tls::{Stream, handshake},
    utf7,
    wire::{self, Part, Resp, Status},
};
use crate::service::{batch::Secret, hosts::HostSpec, imapsync_options::TlsMode};

/// Longest response line accepted (literals are counted separately).
const MAX_LINE: usize = 1024 * 1024;
/// Largest literal read into memory by [`Conn::read_response`] (bodies are streamed).
pub const MAX_MEMORY_LITERAL: u64 = 64 * 1024 * 1024;
const IO_BUFFER: usize = 64 * 1024;

/// How to log in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// AUTHENTICATE PLAIN when the server offers it, else LOGIN.
    #[default]
    Auto,
    Login,
    Plain,
}

/// Everything needed to open and log in one connection to one side.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub side: Side,
    pub host: HostSpec,
    pub user: String,
    pub password: Secret,
    pub tls: TlsMode,
    pub accept_invalid_certs: bool,
    pub auth: AuthMethod,
    /// Idle timeout of every read and write.
    pub timeout: Duration,
    /// Timeout of the TCP connect, the TLS handshake and the greeting.
    pub connect_timeout: Duration,
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        self.host.port.unwrap_or(if self.tls == TlsMode::Implicit {
            993
        } else {
            143
        })
    }
}

/// A command argument.
pub enum Arg<'a> {
    /// Sent as is (keywords, sequence sets, flag lists).
    Raw(&'a [u8]),
    /// A string: quoted when possible, else a literal.
    Str(&'a [u8]),
    /// A mailbox name in UTF-8, sent in modified UTF-7.
    Mailbox(&'a str),
}

/// The end of a command: its status and the untagged data that came before it.
#[derive(Debug)]
pub struct Done {
    pub status: Status,
    pub code: Option<String>,
    pub text: String,
    pub data: Vec<Resp>,
}

pub struct Conn {
    io: BufReader<BufWriter<Stream>>,
    pub side: Side,
    tag: u32,
    caps: HashSet<String>,
    timeout: Duration,
    /// Responses read while waiting for a continuation, handed out before reading more.
    pending: VecDeque<Resp>,
    /// `plain`, `STARTTLS` or `implicit TLS`, for the log.
    pub security: &'static str,
    pub greeting: String,
}

impl Conn {
    /// Connects, secures, reads the greeting and logs in.
    pub async fn open(ep: &Endpoint) -> Result<Conn, Error> {
        let side = ep.side;
        let port = ep.port();
        let addr = (ep.host.host.as_str(), port);
        let tcp = match tokio::time::timeout(ep.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(Error::new(
                    side,
                    ErrorKind::Timeout,
                    format!(
                        "connecting to {}:{port} timed out after {:?}",
                        ep.host.host, ep.connect_timeout
                    ),
                ));
            }
            Ok(Err(e)) => {
                let kind = if e.kind() == io::ErrorKind::ConnectionRefused {
                    ErrorKind::Refused
                } else {
                    ErrorKind::Connect
                };
                return Err(Error::new(
                    side,
                    kind,
                    format!("could not connect to {}:{port}: {e}", ep.host.host),
                ));
            }
            Ok(Ok(tcp)) => tcp,
        };
        // Pipelined commands are small writes: without this, Nagle + delayed ACKs stall them.
        let _ = tcp.set_nodelay(true);
        let (stream, security) = if ep.tls == TlsMode::Implicit {
            (
                Stream::Tls(Box::new(handshake(ep, tcp).await?)),
                "implicit TLS",
            )
        } else {
            (Stream::Plain(tcp), "plain")
        };
        let mut conn = Conn {
            io: BufReader::with_capacity(IO_BUFFER, BufWriter::with_capacity(IO_BUFFER, stream)),
            side,
            tag: 0,
            caps: HashSet::new(),
            timeout: ep.connect_timeout,
            pending: VecDeque::new(),
            security,
            greeting: String::new(),
        };
        let greeting = match conn.next_response().await {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::Timeout => {
                return Err(Error::new(
                    side,
                    ErrorKind::NoGreeting,
                    format!(
                        "the server at {}:{port} accepted the connection but sent no greeting within {:?}",
                        ep.host.host, ep.connect_timeout
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let preauth = match greeting {
            Resp::Status {
                tag: None,
                status: s @ (Status::Ok | Status::Preauth),
                code,
                text,
            } => {
                conn.greeting = text;
                conn.set_caps_from(code.as_deref());
                s == Status::Preauth
            }
            Resp::Status {
                status: Status::Bye,
                text,
                ..
            } => {
                return Err(Error::new(
                    side,
                    ErrorKind::Connect,
                    format!("the server refused the connection: {text}"),
                ));
            }
            _ => {
                return Err(Error::new(
                    side,
                    ErrorKind::Protocol,
                    "the server's greeting is not an IMAP greeting".into(),
                ));
            }
        };
        if conn.caps.is_empty() {
            conn.refresh_caps().await?;
        }
        let wants_tls = match ep.tls {
            TlsMode::Starttls => true,
            TlsMode::Auto => conn.has("STARTTLS"),
            TlsMode::Plain | TlsMode::Implicit => false,
        };
        if wants_tls && !preauth {
            if !conn.has("STARTTLS") {
                return Err(Error::new(
                    side,
                    ErrorKind::Tls,
                    "STARTTLS is required but the server does not offer it".into(),
                ));
            }
            conn.starttls(ep).await?;
        }
        conn.timeout = ep.timeout;
        if !preauth {
            conn.login(ep).await?;
        }
        Ok(conn)
    }

    async fn starttls(&mut self, ep: &Endpoint) -> Result<(), Error> {
        let done = self.run(&[Arg::Raw(b"STARTTLS")]).await?;
        if done.status != Status::Ok {
            return Err(self.err(
                ErrorKind::Tls,
                format!("STARTTLS was refused: {}", done.text),
            ));
        }
        // Bytes already buffered after the OK would be plaintext injected before the handshake.
        if !self.io.buffer().is_empty() {
            return Err(self.err(
                ErrorKind::Tls,
                "the server sent data right after STARTTLS (refused: possible injection)".into(),
            ));
        }
        let old = std::mem::replace(
            &mut self.io,
            BufReader::new(BufWriter::new(Stream::Detached)),
        );
        let Stream::Plain(tcp) = old.into_inner().into_inner() else {
            return Err(self.err(ErrorKind::Tls, "STARTTLS on a TLS connection".into()));
        };
        let tls = handshake(ep, tcp).await?;
        self.io = BufReader::with_capacity(
            IO_BUFFER,
            BufWriter::with_capacity(IO_BUFFER, Stream::Tls(Box::new(tls))),
        );
        self.security = "STARTTLS";
        // RFC 3501: capabilities learned before STARTTLS must be forgotten.
        self.caps.clear();
        self.refresh_caps().await
    }

    pub(super) fn set_caps_from(&mut self, code: Option<&str>) {
        if let Some(list) = code.and_then(|c| c.strip_prefix("CAPABILITY ")) {
            self.caps = list
                .split_whitespace()
                .map(|c| c.to_ascii_uppercase())
                .collect();
        }
    }

    pub(super) async fn refresh_caps(&mut self) -> Result<(), Error> {
        let done = self
            .run_ok("CAPABILITY", &[Arg::Raw(b"CAPABILITY")])
            .await?;
        for r in done {
            if let Resp::Data { name, values, .. } = r
                && name == "CAPABILITY"
            {
                self.caps = values
                    .iter()
                    .filter_map(|v| v.text())
                    .map(|c| c.to_ascii_uppercase())
                    .collect();
            }
        }
        Ok(())
    }

    pub fn has(&self, cap: &str) -> bool {
        self.caps.contains(cap)
    }

    pub fn err(&self, kind: ErrorKind, detail: String) -> Error {
        Error::new(self.side, kind, detail)
    }

    fn io_err(&self, e: io::Error) -> Error {
        let kind = match e.kind() {
            io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            _ => ErrorKind::Io,
        };
        self.err(kind, format!("connection lost: {e}"))
    }

    fn timed_out(&self) -> Error {
        self.err(
            ErrorKind::Timeout,
            format!("no answer within {:?}", self.timeout),
        )
    }

    /// Writes raw bytes (buffered).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match tokio::time::timeout(self.timeout, self.io.get_mut().write_all(bytes)).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(self.io_err(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    pub async fn flush(&mut self) -> Result<(), Error> {
        match tokio::time::timeout(self.timeout, self.io.get_mut().flush()).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(self.io_err(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("P{}", self.tag)
    }

    /// Whether a literal of `n` bytes may be sent without waiting for the server's `+`.
    pub fn literal_plus(&self, n: u64) -> bool {
        self.has("LITERAL+") || (self.has("LITERAL-") && n <= 4096)
    }

    /// Writes a literal marker; without LITERAL+, waits for the continuation. Responses
    /// read meanwhile stay queued for [`Conn::next_response`].
    pub async fn literal_marker(&mut self, tag: &str, n: u64) -> Result<(), Error> {
        if self.literal_plus(n) {
            return self.write(format!("{{{n}+}}\r\n").as_bytes()).await;
        }
        self.write(format!("{{{n}}}\r\n").as_bytes()).await?;
        self.flush().await?;
        let mut held = VecDeque::new();
        let result = loop {
            match self.read_resp().await {
                Ok(Resp::Continue(_)) => break Ok(()),
                Ok(Resp::Status {
                    tag: Some(t), text, ..
                }) if t == tag => {
                    break Err(self.err(
                        ErrorKind::Command,
                        format!("the server refused the literal: {text}"),
                    ));
                }
                Ok(r) => held.push_back(r),
                Err(e) => break Err(e),
            }
        };
        self.pending.extend(held);
        result
    }

    /// Sends a command (not flushed) and returns its tag.
    pub async fn send(&mut self, args: &[Arg<'_>]) -> Result<String, Error> {
        let tag = self.begin(args).await?;
        self.write(b"\r\n").await?;
        Ok(tag)
    }

    /// Writes a tag and `args`, but not the final CRLF (for APPEND's literal).
    pub async fn begin(&mut self, args: &[Arg<'_>]) -> Result<String, Error> {
        let tag = self.next_tag();
        self.write(tag.as_bytes()).await?;
        self.write(b" ").await?;
        for arg in args {
            match arg {
                Arg::Raw(b) => self.write(b).await?,
                Arg::Str(s) => self.write_string(&tag, s).await?,
                Arg::Mailbox(name) => {
                    let wire = utf7::encode(name);
                    self.write_string(&tag, wire.as_bytes()).await?;
                }
            }
        }
        Ok(tag)
    }

    async fn write_string(&mut self, tag: &str, s: &[u8]) -> Result<(), Error> {
        match wire::quoted(s) {
            Some(q) => self.write(&q).await,
            None => {
                self.literal_marker(tag, s.len() as u64).await?;
                self.write(s).await
            }
        }
    }

    /// Sends a command and waits for its completion.
    pub async fn run(&mut self, args: &[Arg<'_>]) -> Result<Done, Error> {
        let tag = self.send(args).await?;
        self.finish(&tag).await
    }

    /// Like [`Conn::run`], but NO/BAD become errors naming `what`.
    pub async fn run_ok(&mut self, what: &str, args: &[Arg<'_>]) -> Result<Vec<Resp>, Error> {
        let done = self.run(args).await?;
        if done.status != Status::Ok {
            return Err(self.command_error(what, &done));
        }
        Ok(done.data)
    }

    pub fn command_error(&self, what: &str, done: &Done) -> Error {
        let quota = done
            .code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("OVERQUOTA"))
            || done.text.to_ascii_lowercase().contains("quota");
        let kind = if quota {
            ErrorKind::Quota
        } else {
            ErrorKind::Command
        };
        let code = done
            .code
            .as_deref()
            .map(|c| format!("[{c}] "))
            .unwrap_or_default();
        self.err(kind, format!("{what} failed: {code}{}", done.text))
    }

    /// Reads responses until the tagged one for `tag`.
    pub async fn finish(&mut self, tag: &str) -> Result<Done, Error> {
        self.flush().await?;
        let mut data = Vec::new();
        loop {
            match self.next_response().await? {
                Resp::Status {
                    tag: Some(t),
                    status,
                    code,
                    text,
                } if t == tag => {
                    return Ok(Done {
                        status,
                        code,
                        text,
                        data,
                    });
                }
                Resp::Status {
                    tag: None,
                    status: Status::Bye,
                    text,
                    ..
                } => {
                    return Err(self.err(
                        ErrorKind::Closed,
                        format!("the server closed the connection: {text}"),
                    ));
                }
                r @ Resp::Data { .. } => data.push(r),
                _ => {}
            }
        }
    }

    /// The next response: a queued one, else one read from the wire (flush first!).
    pub async fn next_response(&mut self) -> Result<Resp, Error> {
        match self.pending.pop_front() {
            Some(r) => Ok(r),
            None => self.read_resp().await,
        }
    }

    async fn read_resp(&mut self) -> Result<Resp, Error> {
        let parts = self.read_parts(MAX_MEMORY_LITERAL).await?;
        wire::parse(&parts)
            .map_err(|e| self.err(ErrorKind::Protocol, format!("unreadable response: {e}")))
    }

    /// One whole response, its literals (each at most `cap` bytes) in memory.
    pub async fn read_parts(&mut self, cap: u64) -> Result<Vec<Part>, Error> {
        let mut parts = Vec::new();
        loop {
            let line = self.read_line().await?;
            match wire::literal_size(&line) {
                Some(n) if n > cap => {
                    return Err(self.err(
                        ErrorKind::Protocol,
                        format!(
                            "the server sent a {n}-byte literal where at most {cap} were expected"
                        ),
                    ));
                }
                Some(n) => {
                    parts.push(Part::Text(line));
                    let lit = self.read_literal(n as usize).await?;
                    parts.push(Part::Literal(lit));
                }
                None => {
                    parts.push(Part::Text(line));
                    return Ok(parts);
                }
            }
        }
    }

    /// One response line without its CRLF (a line ending in `{n}` is followed by a literal).
    pub async fn read_line(&mut self) -> Result<Vec<u8>, Error> {
        let mut line = Vec::new();
        loop {
            let available = match tokio::time::timeout(self.timeout, self.io.fill_buf()).await {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => return Err(self.io_err(e)),
                Ok(Ok(b)) => b,
            };
            if available.is_empty() {
                return Err(self.err(ErrorKind::Closed, "the server closed the connection".into()));
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..take]);
            self.io.consume(take);
            if done {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if line.len() > MAX_LINE {
                return Err(self.err(ErrorKind::Protocol, "response line too long".into()));
            }
        }
    }

    /// Reads exactly `n` literal bytes into memory.
    pub async fn read_literal(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; n];
        self.read_exact(&mut buf).await?;
        Ok(buf)
    }

    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        match tokio::time::timeout(self.timeout, self.io.read_exact(buf)).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(self.io_err(e)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// SELECT (or EXAMINE, read-only) a mailbox; returns its message count.
    pub async fn select(&mut self, name: &str, read_only: bool) -> Result<u64, Error> {
        let cmd: &[u8] = if read_only { b"EXAMINE " } else { b"SELECT " };
        let what = format!("{} {name}", if read_only { "EXAMINE" } else { "SELECT" });
        let data = self
            .run_ok(&what, &[Arg::Raw(cmd), Arg::Mailbox(name)])
            .await?;
        Ok(data
            .iter()
            .filter_map(|r| match r {
                Resp::Data {
                    number: Some(n),
                    name,
                    ..
                } if name == "EXISTS" => Some(*n),
                _ => None,
            })
            .next_back()
            .unwrap_or(0))
    }

    /// Says goodbye without waiting long: the connection is dropped either way.
    pub async fn logout(mut self) {
        self.timeout = Duration::from_secs(2);
        let _ = self.run(&[Arg::Raw(b"LOGOUT")]).await;
    }
}
