//! Request and response bodies of the account, admin, preflight and system endpoints.

use chrono::{DateTime, Utc};
use entity::{api_token, audit_event, user};
use poem_openapi::{Enum, Object};

use crate::service::{
    self,
    hosts::{HostPattern as ServicePattern, Resolution},
    query::Dashboard as ServiceDashboard,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl From<Role> for service::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => service::Role::Admin,
            Role::User => service::Role::User,
        }
    }
}

impl Role {
    fn stored(s: &str) -> Self {
        match s {
            "admin" => Role::Admin,
            _ => Role::User,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AuthMethod {
    Session,
    Token,
}

/// The caller's account.
#[derive(Clone, Debug, Object)]
pub struct Profile {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// How this request was authenticated.
    pub auth: AuthMethod,
    /// With session authentication: send this as `X-CSRF-Token` on unsafe requests.
    pub csrf_token: Option<String>,
    /// With token authentication: when the token expires.
    pub token_expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordChange {
    #[oai(write_only)]
    pub current_password: String,
    #[oai(write_only)]
    pub new_password: String,
}

/// `regex` → append `suffix`, as in the old Pymap HOSTS setting.
#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct HostPattern {
    pub regex: String,
    pub suffix: String,
}

impl From<ServicePattern> for HostPattern {
    fn from(p: ServicePattern) -> Self {
        Self {
            regex: p.regex,
            suffix: p.suffix,
        }
    }
}

impl From<HostPattern> for ServicePattern {
    fn from(p: HostPattern) -> Self {
        Self {
            regex: p.regex,
            suffix: p.suffix,
        }
    }
}

#[derive(Clone, Debug, Object)]
pub struct HostPatterns {
    /// Yours, tried first.
    pub patterns: Vec<HostPattern>,
    /// The installation's, tried after yours (read-only).
    pub global: Vec<HostPattern>,
}

#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct SetHostPatterns {
    pub patterns: Vec<HostPattern>,
}

/// What a typed host resolves to.
#[derive(Clone, Debug, Object)]
pub struct HostResolution {
    pub typed: String,
    /// `host` or `host:port`.
    pub resolved: String,
    pub host: String,
    pub port: Option<u16>,
    /// The pattern that matched, e.g. "your pattern #2".
    pub via: Option<String>,
}

impl From<Resolution> for HostResolution {
    fn from(r: Resolution) -> Self {
        Self {
            via: r.via(),
            resolved: r.resolved.to_string(),
            host: r.resolved.host.clone(),
            port: r.resolved.port,
            typed: r.typed,
        }
    }
}

/// An API token (never its secret).
#[derive(Clone, Debug, Object)]
pub struct Token {
    pub id: i64,
    pub name: String,
    /// The secret's first characters, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Not revoked and not expired.
    pub active: bool,
}

impl From<api_token::Model> for Token {
    fn from(t: api_token::Model) -> Self {
        Self {
            active: service::tokens::is_active(&t, Utc::now()),
            id: t.id,
            name: t.name,
            prefix: t.prefix,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// When it stops working; or give `expires_in_days`; neither: never.
    pub expires_at: Option<DateTime<Utc>>,
    pub expires_in_days: Option<u32>,
}

/// A new token. `secret` is shown only in this response; store it now.
#[derive(Clone, Debug, Object)]
pub struct CreatedToken {
    pub token: Token,
    pub secret: String,
}

#[derive(Clone, Debug, Object)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<user::Model> for User {
    fn from(u: user::Model) -> Self {
        Self {
            id: u.id,
            role: Role::stored(&u.role),
            name: u.name,
            disabled: u.disabled,
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        }
    }
}

#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[oai(write_only)]
    pub password: String,
    /// Default `user`.
    pub role: Option<Role>,
}

/// Change what is given; leave the rest out.
#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UserPatch {
    pub disabled: Option<bool>,
    pub role: Option<Role>,
}

#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordReset {
    #[oai(write_only)]
    pub password: String,
}

#[derive(Clone, Debug, Object)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub client_addr: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    pub detail: Option<String>,
}

impl From<audit_event::Model> for AuditEvent {
    fn from(e: audit_event::Model) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor_id: e.actor_id,
            actor_name: e.actor_name,
            action: e.action,
            object_type: e.object_type,
            object_id: e.object_id,
            client_addr: e.client_addr,
            outcome: e.outcome,
            detail: e.detail,
        }
    }
}

#[derive(Clone, Debug, Object)]
pub struct AuditList {
    pub items: Vec<AuditEvent>,
    pub next_cursor: Option<String>,
    pub total: Option<u64>,
}

#[derive(Clone, Debug, Object)]
pub struct PoolInfo {
    /// Jobs this process runs at once at most.
    pub concurrency: u64,
    pub per_source_host: u64,
    pub per_destination_host: u64,
    /// Jobs running in this process now.
    pub running_here: u64,
}

/// The dashboard counts: your work, or everyone's for admins.
#[derive(Clone, Debug, Object)]
pub struct Dashboard {
    pub tasks: u64,
    pub mailboxes: u64,
    pub running: u64,
    pub queued: u64,
    pub succeeded_24h: u64,
    pub warning_24h: u64,
    pub failed_24h: u64,
    pub messages_moved: u64,
    pub bytes_moved: u64,
    pub run_time_secs: u64,
    /// Accounts that are not disabled.
    pub active_users: u64,
    pub pool_concurrency: u64,
    pub pool_running: u64,
}

impl From<ServiceDashboard> for Dashboard {
    fn from(d: ServiceDashboard) -> Self {
        Self {
            tasks: d.tasks,
            mailboxes: d.mailboxes,
            running: d.running,
            queued: d.queued,
            succeeded_24h: d.succeeded_24h,
            warning_24h: d.warning_24h,
            failed_24h: d.failed_24h,
            messages_moved: d.messages_moved,
            bytes_moved: d.bytes_moved,
            run_time_secs: d.run_time_secs,
            active_users: d.active_users,
            pool_concurrency: d.pool.concurrency as u64,
            pool_running: d.pool.running_here as u64,
        }
    }
}

#[derive(Clone, Debug, Object)]
pub struct EngineInfo {
    /// `imapsync` or `native`.
    pub name: String,
    pub available: bool,
    pub version: Option<String>,
    /// Why it is unavailable.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Object)]
pub struct QueueInfo {
    /// Queued jobs, those waiting for an automatic retry included.
    pub queued: u64,
    /// Queued jobs that may start now.
    pub ready: u64,
    /// Running jobs on all replicas.
    pub running: u64,
}

#[derive(Clone, Debug, Object)]
pub struct System {
    pub version: String,
    pub engines: Vec<EngineInfo>,
    pub pool: PoolInfo,
    pub queue: QueueInfo,
    /// `sqlite` or `postgres`.
    pub database: String,
    pub redis: bool,
    pub disk: DiskInfo,
}

/// Space on the filesystems pymap writes to.
#[derive(Clone, Debug, Object)]
pub struct DiskInfo {
    /// The filesystem holding the data directory (SQLite, secret key).
    pub data: FilesystemInfo,
    /// The filesystem holding the log directory.
    pub logs: FilesystemInfo,
    /// Bytes of the files under the log directory (absent when unreadable).
    pub log_dir_bytes: Option<u64>,
    /// The log directory has too many files to count: `log_dir_bytes` is a lower bound.
    pub log_dir_partial: bool,
    /// Some filesystem has less than 10 % free.
    pub low: bool,
}

#[derive(Clone, Debug, Object)]
pub struct FilesystemInfo {
    pub path: String,
    /// Absent when the filesystem could not be queried (see `error`).
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    /// Less than 10 % free.
    pub low: bool,
    pub error: Option<String>,
}

impl FilesystemInfo {
    fn new(path: String, f: &Result<service::disk::Filesystem, String>) -> Self {
        match f {
            Ok(f) => Self {
                path,
                free_bytes: Some(f.free_bytes),
                total_bytes: Some(f.total_bytes),
                low: f.low,
                error: None,
            },
            Err(e) => Self {
                path,
                free_bytes: None,
                total_bytes: None,
                low: false,
                error: Some(e.clone()),
            },
        }
    }
}

impl DiskInfo {
    pub fn new(data_dir: String, log_dir: String, r: &service::disk::DiskReport) -> Self {
        Self {
            data: FilesystemInfo::new(data_dir, &r.data),
            logs: FilesystemInfo::new(log_dir, &r.logs),
            log_dir_bytes: r.log_dir_bytes.as_ref().ok().copied(),
            log_dir_partial: r.log_dir_partial,
            low: r.low(),
        }
    }
}

/// One mailbox of a preflight check.
#[derive(Clone, Debug, Object)]
pub struct PreflightLine {
    /// Batch line (or `mailboxes` index + 1).
    pub line: u64,
    pub user1: String,
    pub user2: String,
    pub host1: String,
    pub host2: String,
    /// `ok` (both logins work), `failed` or `unchecked`.
    pub login: String,
    /// What failed, in words (`source: wrong user name or password`…).
    pub message: Option<String>,
    /// The login on host1, when checked.
    pub source_login: Option<LoginCheck>,
    /// The login on host2, when checked.
    pub destination_login: Option<LoginCheck>,
}

/// How one login of a preflight check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum LoginStatus {
    /// Logged in (and out again).
    Ok,
    /// The server refused the user name or password.
    Rejected,
    /// No IMAP session: connection refused, unreachable, timed out, or TLS failed.
    Unreachable,
    /// Connected, but the login failed for another reason.
    Error,
}

/// One login of a preflight check. `message` never contains the password.
#[derive(Clone, Debug, Object)]
pub struct LoginCheck {
    pub status: LoginStatus,
    pub message: Option<String>,
}

impl From<&service::login_check::SideResult> for LoginCheck {
    fn from(r: &service::login_check::SideResult) -> Self {
        use service::login_check::LoginStatus as S;
        Self {
            status: match r.status {
                S::Ok => LoginStatus::Ok,
                S::Rejected => LoginStatus::Rejected,
                S::Unreachable => LoginStatus::Unreachable,
                S::Error => LoginStatus::Error,
            },
            message: r.message.clone(),
        }
    }
}

/// The batch as it would run: resolved hosts and every mailbox pair.
#[derive(Clone, Debug, Object)]
pub struct PreflightReport {
    pub source: HostResolution,
    pub destination: HostResolution,
    pub engine: String,
    pub mailboxes: u64,
    pub lines: Vec<PreflightLine>,
    /// Whether logins were checked (see `login` of each line).
    pub logins_checked: bool,
}
