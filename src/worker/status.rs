//! The lifecycle states of a migration job.
//!
//! The same names are used in the database (`as_str`), in JSON (`serde`, snake_case) and in the
//! UI, so a status always reads the same wherever an admin meets it.

use std::fmt;
use std::str::FromStr;

/// Where a job stands. `Queued` and `Running` are live; every other state is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker slot.
    Queued,
    /// imapsync is running.
    Running,
    /// Finished and everything that should be on the destination is there.
    Succeeded,
    /// Finished, but something needs the admin's attention (e.g. messages left behind).
    Warning,
    /// Did not finish its work (login, connection, imapsync error, crash).
    Failed,
    /// Stopped on request of the admin.
    Cancelled,
    /// Stopped by something else than the admin (e.g. the appliance restarted mid-run).
    Interrupted,
}

impl JobStatus {
    /// Every status, in lifecycle order (handy for filters and tests).
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Warning,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Interrupted,
    ];

    /// The stable snake_case name stored in the database; identical to the serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Warning => "warning",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }

    /// True once the job will not change state any more by itself (it may still be re-run).
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned by [`JobStatus::from_str`] for a name that is not a status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownJobStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownJobStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownJobStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>(), Ok(st));
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(serde_json::from_str::<JobStatus>(&json).unwrap(), st);
            assert_eq!(st.to_string(), st.as_str());
        }
    }

    #[test]
    fn unknown_names_are_rejected() {
        assert_eq!(
            "Succeeded".parse::<JobStatus>(),
            Err(UnknownJobStatus("Succeeded".into()))
        );
        assert!("".parse::<JobStatus>().is_err());
    }

    #[test]
    fn only_queued_and_running_are_live() {
        let live: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .collect();
        assert_eq!(live, [JobStatus::Queued, JobStatus::Running]);
    }
}
