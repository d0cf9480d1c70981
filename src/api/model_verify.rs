//! The verification report of a job (`POST /jobs/{id}/verify`, then `verification` in
//! the job): the verifier's report, field for field, so the contract is typed.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};

use crate::{
    service::verification::{Verification, VerifyStatus as Stored},
    worker::native::{Difference as ServiceDifference, FolderReport, VerifyReport},
};

/// `running` until the comparison ends; then `identical`, `differs` (see the report) or
/// `error` (it could not compare: connection, login, TLS...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum VerifyStatus {
    Running,
    Identical,
    Differs,
    Error,
}

impl From<Stored> for VerifyStatus {
    fn from(s: Stored) -> Self {
        match s {
            Stored::Running => VerifyStatus::Running,
            Stored::Identical => VerifyStatus::Identical,
            Stored::Differs => VerifyStatus::Differs,
            Stored::Error => VerifyStatus::Error,
        }
    }
}

/// The last verification of a job.
#[derive(Clone, Debug, Object)]
pub struct JobVerification {
    pub status: VerifyStatus,
    /// When it started (while running) or ended.
    pub at: Option<DateTime<Utc>>,
    /// Absent while running.
    pub report: Option<VerificationReport>,
}

impl From<Verification> for JobVerification {
    fn from(v: Verification) -> Self {
        Self {
            status: v.status.into(),
            at: v.at,
            report: v.report.map(Into::into),
        }
    }
}

/// The two mailboxes compared: folders, subscriptions, and per folder the message
/// identity multisets (Message-ID + size, or a header hash), flags and keywords,
/// internal dates. The task's folder filters and age/size limits apply to both sides.
#[derive(Clone, Debug, Object)]
pub struct VerificationReport {
    /// Everything compared is equal, both ways.
    pub identical: bool,
    /// Nothing from the source is missing or different on the destination (which may
    /// have more).
    pub complete: bool,
    /// Why the comparison could not be done (then nothing else is meaningful).
    pub error: Option<String>,
    pub duration_secs: f64,
    pub folders_compared: u32,
    pub messages_host1: u64,
    pub bytes_host1: u64,
    pub messages_host2: u64,
    pub bytes_host2: u64,
    /// Source folders (their destination names) missing on the destination.
    pub missing_folders: Vec<String>,
    /// Destination folders no source folder maps to.
    pub extra_folders: Vec<String>,
    pub missing_subscriptions: Vec<String>,
    pub extra_subscriptions: Vec<String>,
    /// Folders that differ (identical ones are only counted in `folders_compared`).
    pub folders: Vec<FolderDifference>,
}

impl From<VerifyReport> for VerificationReport {
    fn from(r: VerifyReport) -> Self {
        Self {
            identical: r.identical,
            complete: r.complete,
            error: r.error,
            duration_secs: r.duration_secs,
            folders_compared: r.folders_compared,
            messages_host1: r.messages_host1,
            bytes_host1: r.bytes_host1,
            messages_host2: r.messages_host2,
            bytes_host2: r.bytes_host2,
            missing_folders: r.missing_folders,
            extra_folders: r.extra_folders,
            missing_subscriptions: r.missing_subscriptions,
            extra_subscriptions: r.extra_subscriptions,
            folders: r
                .folders
                .into_iter()
                .filter(|f| !f.identical)
                .map(Into::into)
                .collect(),
        }
    }
}

/// One folder that differs.
#[derive(Clone, Debug, Object)]
pub struct FolderDifference {
    pub host1: String,
    pub host2: String,
    pub messages_host1: u64,
    pub messages_host2: u64,
    /// On the source, not on the destination.
    pub missing: u64,
    /// On the destination, not on the source.
    pub extra: u64,
    pub flag_differences: u64,
    pub date_differences: u64,
    /// Source messages whose identity could not be read.
    pub unidentified: u64,
    /// The first differences (at most 20; the counts above are complete).
    pub examples: Vec<Difference>,
}

impl From<FolderReport> for FolderDifference {
    fn from(f: FolderReport) -> Self {
        Self {
            host1: f.host1,
            host2: f.host2,
            messages_host1: f.messages_host1,
            messages_host2: f.messages_host2,
            missing: f.missing,
            extra: f.extra,
            flag_differences: f.flag_differences,
            date_differences: f.date_differences,
            unidentified: f.unidentified,
            examples: f.examples.into_iter().map(Into::into).collect(),
        }
    }
}

/// One message that differs.
#[derive(Clone, Debug, Object)]
pub struct Difference {
    /// `missing`, `extra`, `flags`, `internal_date` or `unidentified`.
    pub kind: String,
    pub host1_uid: Option<u32>,
    pub host2_uid: Option<u32>,
    pub size: u64,
    pub message_id: Option<String>,
    /// The source and destination values for `flags` and `internal_date`.
    pub host1: Option<String>,
    pub host2: Option<String>,
}

impl From<ServiceDifference> for Difference {
    fn from(d: ServiceDifference) -> Self {
        Self {
            kind: d.kind,
            host1_uid: d.host1_uid,
            host2_uid: d.host2_uid,
            size: d.size,
            message_id: d.message_id,
            host1: d.host1,
            host2: d.host2,
        }
    }
}
