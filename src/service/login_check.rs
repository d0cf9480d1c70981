//! Login checks before a migration starts: for every line of a validated batch, log in
//! on the source and the destination with the native IMAP client, log out, and say per
//! line and side what happened. Nothing is written; passwords go to the servers only.
//!
//! A whole batch must answer within one request, so lines run 8 at a time, each login
//! is bounded, and once a host could not be reached the following lines do not wait for
//! it again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{StreamExt, stream};
use serde::Serialize;

use super::{
    batch::Secret,
    hosts::parse_host,
    imapsync_options::MigrationOptions,
    tasks::{Plan, PlannedJob},
};
use crate::worker::native::{self, ErrorKind, LoginTarget, NativeError, NativeOptions, Side};

/// Lines checked at once (each opens one connection per side).
pub const CONCURRENCY: usize = 8;
/// Longest one login may take, connect to LOGIN answer.
pub const LOGIN_LIMIT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginStatus {
    /// Logged in (and out).
    Ok,
    /// The server refused the user name or password.
    Rejected,
    /// No IMAP session: refused, unreachable, timed out, TLS failed.
    Unreachable,
    /// Connected, but something else went wrong (protocol error, dropped connection).
    Error,
}

/// What one side of one line found. `message` is the server's or our explanation,
/// never containing the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideResult {
    pub status: LoginStatus,
    pub message: Option<String>,
}

impl SideResult {
    fn ok() -> Self {
        Self {
            status: LoginStatus::Ok,
            message: None,
        }
    }
}

/// The result of one batch line, in the order of the plan's jobs.
#[derive(Clone, Debug, Serialize)]
pub struct LineResult {
    pub line: usize,
    pub user1: String,
    pub user2: String,
    pub host1: String,
    pub host2: String,
    pub source: SideResult,
    pub destination: SideResult,
}

impl LineResult {
    pub fn ok(&self) -> bool {
        self.source.status == LoginStatus::Ok && self.destination.status == LoginStatus::Ok
    }

    /// One sentence for the line.
    pub fn summary(&self) -> String {
        let side = |name: &str, r: &SideResult| match r.status {
            LoginStatus::Ok => None,
            LoginStatus::Rejected => Some(format!("{name}: wrong user name or password")),
            LoginStatus::Unreachable => Some(format!("{name}: cannot connect")),
            LoginStatus::Error => Some(format!("{name}: login failed")),
        };
        let parts: Vec<String> = [
            side("source", &self.source),
            side("destination", &self.destination),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "both logins work".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Hosts found unreachable so far: `(is host1, host)` → why. (No line number: the API
/// numbers lines differently from the batch text.)
type Unreachable = Arc<Mutex<HashMap<(bool, String), String>>>;

/// Check every line of `plan`. Results come in the order of `plan.jobs`.
pub async fn check_plan(plan: &Plan, native: &NativeOptions) -> Vec<LineResult> {
    let unreachable: Unreachable = Arc::default();
    // Futures made up front: a closure inside the stream would make the handler's future
    // generic over a lifetime, which poem's `Send` bound cannot express.
    let lines: Vec<_> = plan
        .jobs
        .iter()
        .map(|job| check_line(job, &plan.options, native, unreachable.clone()))
        .collect();
    stream::iter(lines).buffered(CONCURRENCY).collect().await
}

async fn check_line(
    job: &PlannedJob,
    options: &MigrationOptions,
    native: &NativeOptions,
    unreachable: Unreachable,
) -> LineResult {
    let pair = &job.pair;
    let (source, destination) = tokio::join!(
        check_side(
            Side::Host1,
            &job.host1,
            &pair.user1,
            &pair.password1,
            options,
            native,
            &unreachable
        ),
        check_side(
            Side::Host2,
            &job.host2,
            &pair.user2,
            &pair.password2,
            options,
            native,
            &unreachable
        ),
    );
    LineResult {
        line: pair.line,
        user1: pair.user1.clone(),
        user2: pair.user2.clone(),
        host1: job.host1.clone(),
        host2: job.host2.clone(),
        source,
        destination,
    }
}

async fn check_side(
    side: Side,
    host: &str,
    user: &str,
    password: &Secret,
    options: &MigrationOptions,
    native: &NativeOptions,
    unreachable: &Unreachable,
) -> SideResult {
    let key = (side == Side::Host1, host.to_string());
    if let Some(why) = unreachable.lock().expect("lock").get(&key) {
        return SideResult {
            status: LoginStatus::Unreachable,
            message: Some(format!(
                "not tried: an earlier line could not reach {host} ({why})"
            )),
        };
    }
    // The plan holds hosts that were validated already; a failure here is a bug.
    let spec = match parse_host(host) {
        Ok(spec) => spec,
        Err(e) => {
            return SideResult {
                status: LoginStatus::Error,
                message: Some(e.to_string()),
            };
        }
    };
    let target = LoginTarget {
        host: &spec,
        user,
        password,
    };
    match native::check_login(side, target, options, native, LOGIN_LIMIT).await {
        Ok(()) => SideResult::ok(),
        Err(e) => {
            let status = status_of(&e);
            let message = scrub(&e.detail, password);
            if status == LoginStatus::Unreachable {
                unreachable
                    .lock()
                    .expect("lock")
                    .entry(key)
                    .or_insert_with(|| message.clone());
            }
            SideResult {
                status,
                message: Some(message),
            }
        }
    }
}

fn status_of(e: &NativeError) -> LoginStatus {
    match e.kind {
        ErrorKind::Auth => LoginStatus::Rejected,
        ErrorKind::Connect
        | ErrorKind::Refused
        | ErrorKind::Timeout
        | ErrorKind::NoGreeting
        | ErrorKind::Tls
        | ErrorKind::TlsCert => LoginStatus::Unreachable,
        ErrorKind::Io
        | ErrorKind::Closed
        | ErrorKind::Protocol
        | ErrorKind::Command
        | ErrorKind::Quota => LoginStatus::Error,
    }
}

/// Our client never puts a password in an error, but the text after NO is the server's:
/// one that echoes what it was sent must not make us show the password.
fn scrub(message: &str, password: &Secret) -> String {
    let p = password.expose();
    if !p.is_empty() && message.contains(p) {
        "the server's answer is not shown because it contains the password".into()
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_echoing_the_password_is_not_repeated() {
        let pw = Secret::new("hunter22");
        assert_eq!(
            scrub("NO [AUTHENTICATIONFAILED] bad", &pw),
            "NO [AUTHENTICATIONFAILED] bad"
        );
        assert!(!scrub("NO user x password hunter22 wrong", &pw).contains("hunter22"));
    }

    #[test]
    fn errors_are_classified_by_kind() {
        let e = |kind| NativeError::new(Side::Host1, kind, String::new());
        assert_eq!(status_of(&e(ErrorKind::Auth)), LoginStatus::Rejected);
        assert_eq!(status_of(&e(ErrorKind::Refused)), LoginStatus::Unreachable);
        assert_eq!(status_of(&e(ErrorKind::TlsCert)), LoginStatus::Unreachable);
        assert_eq!(status_of(&e(ErrorKind::Protocol)), LoginStatus::Error);
    }

    #[test]
    fn the_summary_names_each_failing_side() {
        let r = |status| SideResult {
            status,
            message: None,
        };
        let mut line = LineResult {
            line: 1,
            user1: "a".into(),
            user2: "b".into(),
            host1: "h1".into(),
            host2: "h2".into(),
            source: r(LoginStatus::Ok),
            destination: r(LoginStatus::Rejected),
        };
        assert!(!line.ok());
        assert_eq!(line.summary(), "destination: wrong user name or password");
        line.source = r(LoginStatus::Unreachable);
        assert_eq!(
            line.summary(),
            "source: cannot connect; destination: wrong user name or password"
        );
        line.source = r(LoginStatus::Ok);
        line.destination = r(LoginStatus::Ok);
        assert!(line.ok());
    }
}
