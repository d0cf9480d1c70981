//! Business logic. No HTTP types here: `web/`, `api/` and the CLI all call these
//! functions, which own their transactions and write the audit trail.

pub mod accounts;
pub mod announce;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod credentials;
pub mod disk;
pub mod hosts;
pub mod imapsync_options;
mod job_insert;
pub mod job_state;
pub mod login_check;
pub mod logs;
pub mod passwords;
pub mod pool_writes;
pub mod profile;
pub mod query;
pub mod retry_passwords;
pub mod task_actions;
pub mod tasks;
pub mod tokens;
pub mod verification;
pub mod web_support;

use std::{net::IpAddr, time::Duration};

/// Who is acting, for permission checks and the audit trail.
#[derive(Clone, Debug)]
pub struct Actor {
    pub id: Option<i64>,
    pub name: String,
    pub role: Role,
    pub addr: Option<IpAddr>,
}

impl Actor {
    /// The command line run by an operator of the machine: full rights.
    pub fn cli() -> Self {
        Self {
            id: None,
            name: "cli".into(),
            role: Role::Admin,
            addr: None,
        }
    }

    /// pymap itself (bootstrap, workers).
    pub fn system() -> Self {
        Self {
            id: None,
            name: "system".into(),
            role: Role::Admin,
            addr: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// What the service layer can answer besides success. Boundaries (`web::Error`,
/// `api::ApiError`, the CLI) map these to their own form in one place each.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Several problems at once (a batch, a form), each with its field and line.
    #[error("{} problems, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    InvalidMany(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("not allowed")]
    Forbidden,
    /// Wrong password, unknown user and disabled user all look the same to the client.
    #[error("invalid user name or password")]
    InvalidCredentials,
    #[error("too many failed logins; try again in {} minutes", retry_after.as_secs().div_ceil(60).max(1))]
    Throttled { retry_after: Duration },
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One problem with one input field; `line` for batch lines (1-based).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
