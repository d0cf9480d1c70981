//! Disk space for the system page: how full the filesystems holding the data and log
//! directories are, and how much the logs take. A full disk stops SQLite, the logs and
//! imapsync's pass files at once, so the page warns well before that.

use std::{
    io,
    path::{Path, PathBuf},
};

use serde::Serialize;

/// Below this share of free space the page warns.
pub const LOW_PERCENT: u64 = 10;
/// A log directory walk stops after this many entries (the size is then a lower bound).
const MAX_ENTRIES: usize = 200_000;

/// One filesystem, as seen from a directory on it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Filesystem {
    pub path: String,
    /// Space an unprivileged process may still use.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Free space is below [`LOW_PERCENT`] of the total.
    pub low: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiskReport {
    pub data: Result<Filesystem, String>,
    pub logs: Result<Filesystem, String>,
    /// Total size of the files under the log directory.
    pub log_dir_bytes: Result<u64, String>,
    /// The walk stopped early: `log_dir_bytes` is a lower bound.
    pub log_dir_partial: bool,
}

impl DiskReport {
    /// Any filesystem low on space.
    pub fn low(&self) -> bool {
        [&self.data, &self.logs]
            .iter()
            .any(|f| f.as_ref().is_ok_and(|f| f.low))
    }
}

pub fn is_low(free: u64, total: u64) -> bool {
    total > 0 && free.saturating_mul(100) < total.saturating_mul(LOW_PERCENT)
}

/// The filesystem holding `path` (its nearest existing ancestor, so a log directory not
/// created yet still reports the disk it will be on).
pub fn filesystem(path: &Path) -> io::Result<Filesystem> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let st = rustix::fs::statvfs(existing)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let total = st.f_blocks.saturating_mul(st.f_frsize);
    Ok(Filesystem {
        path: path.display().to_string(),
        free_bytes: free,
        total_bytes: total,
        low: is_low(free, total),
    })
}

/// Bytes of the regular files under `dir` (symbolic links are not followed); a missing
/// directory is empty. The bool says whether the walk stopped at [`MAX_ENTRIES`].
pub fn dir_size(dir: &Path) -> io::Result<(u64, bool)> {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            seen += 1;
            if seen > MAX_ENTRIES {
                return Ok((total, true));
            }
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok((total, false))
}

/// Everything the system page shows, read off the async threads (a big log directory
/// takes a while to walk).
pub async fn report(data_dir: PathBuf, log_dir: PathBuf) -> DiskReport {
    let work = move || {
        let size = dir_size(&log_dir);
        DiskReport {
            data: filesystem(&data_dir).map_err(|e| e.to_string()),
            logs: filesystem(&log_dir).map_err(|e| e.to_string()),
            log_dir_partial: size.as_ref().is_ok_and(|(_, partial)| *partial),
            log_dir_bytes: size.map(|(bytes, _)| bytes).map_err(|e| e.to_string()),
        }
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) => {
            let why = format!("disk check failed: {e}");
            DiskReport {
                data: Err(why.clone()),
                logs: Err(why.clone()),
                log_dir_bytes: Err(why),
                log_dir_partial: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_means_under_ten_percent_free() {
        assert!(is_low(9, 100));
        assert!(!is_low(10, 100));
        assert!(!is_low(50, 100));
        assert!(is_low(0, 1));
        assert!(
            !is_low(0, 0),
            "an empty total (pseudo filesystem) is not a warning"
        );
        assert!(!is_low(u64::MAX / 2, u64::MAX), "no overflow");
    }

    #[test]
    fn sizes_count_files_in_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir(dir.path().join("task-1")).unwrap();
        std::fs::write(dir.path().join("task-1/b.log"), vec![0u8; 234]).unwrap();
        assert_eq!(dir_size(dir.path()).unwrap(), (1234, false));
        assert_eq!(dir_size(&dir.path().join("missing")).unwrap(), (0, false));
    }

    #[test]
    fn a_directory_not_created_yet_reports_its_disk() {
        let dir = tempfile::tempdir().unwrap();
        let fs = filesystem(&dir.path().join("not/yet")).unwrap();
        assert!(
            fs.total_bytes > 0 && fs.free_bytes <= fs.total_bytes,
            "{fs:?}"
        );
        assert!(fs.path.ends_with("not/yet"));
    }
}
