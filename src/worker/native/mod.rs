//! The native IMAP engine: an IMAP-to-IMAP copier written in Rust, behind the same
//! [`Engine`] seam as imapsync, and the migration verifier.
//!
//! Why a second engine: imapsync's default run silently leaves duplicates and messages
//! without Message-ID/Received behind, copies one message per round trip, and cannot run in
//! CI. This engine compares folders as multisets (so everything is copied, exactly once),
//! pipelines FETCH and APPEND (LITERAL+), copies several folders at once over separate
//! connections, streams big messages within a fixed memory budget, and resumes by
//! comparing again: a re-run, or a reconnect after a dropped connection, copies only what
//! is missing. It never changes the source (EXAMINE, BODY.PEEK) and never changes a
//! message on the destination (only APPEND and flag updates).
//!
//! Layout: `conn` (connection and pipelining primitives, over our own small client, see
//! there why), `auth` (login), `tls` (TLS configurations and the transport), `wire`
//! (response parser), `utf7` (mailbox names), `folders` (listing and mapping), `identity`
//! (metadata, identity, multiset diff), `copier` (one folder) and `pipeline` (its streaming
//! FETCH→APPEND), `run` (one job), `report` (log and progress), `outcome` (statuses and
//! reasons), `verify` (the verifier).

mod auth;
mod conn;
mod copier;
mod folders;
mod identity;
mod outcome;
mod pipeline;
mod report;
mod run;
mod tls;
mod utf7;
mod verify;
mod wire;

use std::{fmt, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

pub use conn::AuthMethod;
pub use verify::{Difference, FolderReport, VerifyReport, VerifySpec, verify};

use super::engine::{BoxFuture, Engine, JobObserver, JobSpec, RunResult};
use crate::service::{batch::Secret, hosts::HostSpec, imapsync_options::MigrationOptions};

/// Shown on the system page and in every job log.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Settings of the native engine that `MigrationOptions` does not carry: per engine
/// instance, the same for every job it runs.
#[derive(Clone, Debug)]
pub struct NativeOptions {
    /// Accept any certificate from host1 (self-signed) for every job; the handshake is still
    /// checked. A job can also ask for it (`MigrationOptions::accept_invalid_certs1`).
    pub accept_invalid_certs1: bool,
    pub accept_invalid_certs2: bool,
    pub auth1: AuthMethod,
    pub auth2: AuthMethod,
    /// Folders copied at the same time, each over its own pair of connections.
    pub parallel_folders: usize,
    /// Most message bytes in memory at once, across all folders of a job (a message bigger
    /// than this still goes through, alone).
    pub max_bytes_in_flight: u64,
    /// APPEND or STORE commands in flight per connection.
    pub pipeline_depth: usize,
    /// I/O timeout when the job sets no `timeout_secs`.
    pub timeout: Duration,
    /// Upper bound for connecting, the TLS handshake and the greeting.
    pub connect_timeout: Duration,
    /// Reconnections per folder before the job gives up.
    pub max_reconnects: u32,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            accept_invalid_certs1: false,
            accept_invalid_certs2: false,
            auth1: AuthMethod::Auto,
            auth2: AuthMethod::Auto,
            parallel_folders: 4,
            max_bytes_in_flight: 32 * 1024 * 1024,
            pipeline_depth: 64,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            max_reconnects: 3,
        }
    }
}

/// Which side of a migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Host1,
    Host2,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Host1 => "Host1",
            Side::Host2 => "Host2",
        })
    }
}

/// What went wrong, in the categories the outcome needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Name resolution, unreachable network...
    Connect,
    Refused,
    Timeout,
    /// Connected, but no greeting.
    NoGreeting,
    Tls,
    /// The certificate was refused.
    TlsCert,
    Auth,
    Io,
    Closed,
    /// The server said something this client cannot parse.
    Protocol,
    /// A command got NO or BAD.
    Command,
    Quota,
}

/// An error of one side. Never contains a password: only server texts and our sentences.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{side}: {detail}")]
pub struct NativeError {
    pub side: Side,
    pub kind: ErrorKind,
    pub detail: String,
}

impl NativeError {
    pub fn new(side: Side, kind: ErrorKind, detail: String) -> Self {
        Self { side, kind, detail }
    }

    /// Worth reconnecting for.
    pub fn transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Io | ErrorKind::Closed | ErrorKind::Timeout
        )
    }
}

/// Runs jobs with the native engine.
#[derive(Clone, Debug, Default)]
pub struct NativeEngine {
    options: NativeOptions,
}

impl NativeEngine {
    pub fn new(options: NativeOptions) -> Self {
        Self { options }
    }

    pub fn options(&self) -> &NativeOptions {
        &self.options
    }
}

impl Engine for NativeEngine {
    fn name(&self) -> &'static str {
        "native"
    }

    fn version(&self) -> Result<String, String> {
        Ok(format!("pymap native IMAP engine {VERSION}"))
    }

    fn run(
        &self,
        spec: JobSpec,
        observer: Arc<dyn JobObserver>,
        cancel: CancellationToken,
    ) -> BoxFuture<RunResult> {
        let options = self.options.clone();
        Box::pin(run::run_job(spec, options, observer, cancel))
    }
}

/// One side of a login check.
pub struct LoginTarget<'a> {
    pub host: &'a HostSpec,
    pub user: &'a str,
    pub password: &'a Secret,
}

/// Logs in on one side exactly as a job would (same TLS choice, same authentication),
/// then logs out: a credential check before anything is started. `limit` bounds the
/// whole attempt (connect, TLS, greeting and login), so a server that accepts
/// connections but never answers cannot hold a check for long.
pub async fn check_login(
    side: Side,
    target: LoginTarget<'_>,
    options: &MigrationOptions,
    native: &NativeOptions,
    limit: Duration,
) -> Result<(), NativeError> {
    // The same construction as a job's, so the check tries what the job will do.
    let (ep1, ep2) = run::endpoints(
        target.host,
        target.user,
        target.password,
        target.host,
        target.user,
        target.password,
        options,
        native,
    );
    let mut ep = if side == Side::Host1 { ep1 } else { ep2 };
    ep.timeout = ep.timeout.min(limit);
    ep.connect_timeout = ep.connect_timeout.min(limit);
    match tokio::time::timeout(limit, conn::Conn::open(&ep)).await {
        Err(_) => Err(NativeError::new(
            side,
            ErrorKind::Timeout,
            format!(
                "no answer from {}:{} within {limit:?}",
                ep.host.host,
                ep.port()
            ),
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(conn)) => {
            conn.logout().await;
            Ok(())
        }
    }
}
