//! Job logs, reached by job id (never by a file name): permission check, path
//! confinement to the log directory, and reading a tail or a byte range.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use entity::{job, task};
use sea_orm::DatabaseConnection;

use super::{Actor, Result, ServiceError};

/// Largest slice returned at once.
pub const MAX_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Most lines a tail may ask for.
pub const MAX_TAIL_LINES: usize = 10_000;

/// Which part of a log to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRange {
    /// The last `n` lines.
    Tail(usize),
    /// `limit` bytes from `offset` (at most [`MAX_CHUNK_BYTES`]).
    Bytes { offset: u64, limit: u64 },
    /// Like `Bytes`, but only complete lines (for following a log as it grows); a line
    /// longer than `limit` comes in pieces.
    Lines { offset: u64, limit: u64 },
}

/// A slice of a log: `text` covers bytes `offset..end` of a file of `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    pub text: String,
    pub offset: u64,
    pub end: u64,
    pub size: u64,
}

/// A job's log file, checked to be ours to read.
#[derive(Clone, Debug)]
pub struct JobLog {
    pub task: task::Model,
    pub job: job::Model,
    /// `None` when the job has not run yet.
    pub path: Option<PathBuf>,
}

/// The log of a job the actor may see. A stored path outside `<log_dir>/jobs` is never
/// opened (it would mean the database was tampered with).
pub async fn job_log(
    db: &DatabaseConnection,
    actor: &Actor,
    log_dir: &Path,
    job_id: i64,
) -> Result<JobLog> {
    let (task, job) = super::tasks::get_job(db, actor, job_id).await?;
    let path = match job.log_path.as_deref() {
        None => None,
        Some(stored) => {
            let stored = PathBuf::from(stored);
            let root = log_dir.join("jobs");
            let inside = stored.starts_with(&root)
                && stored
                    .components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir));
            if !inside {
                return Err(ServiceError::Internal(format!(
                    "job {job_id} has a log path outside {}",
                    root.display()
                )));
            }
            Some(stored)
        }
    };
    Ok(JobLog { task, job, path })
}

/// Read part of a log file. A missing file reads as empty (the job has not written yet).
pub async fn read(path: &Path, range: LogRange) -> Result<LogChunk> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || read_blocking(&path, range))
        .await
        .map_err(|e| ServiceError::Internal(format!("log reader: {e}")))?
}

fn read_blocking(path: &Path, range: LogRange) -> Result<LogChunk> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogChunk {
                text: String::new(),
                offset: 0,
                end: 0,
                size: 0,
            });
        }
        Err(e) => {
            return Err(ServiceError::Internal(format!(
                "cannot open {}: {e}",
                path.display()
            )));
        }
    };
    let io = |e: std::io::Error| ServiceError::Internal(format!("reading {}: {e}", path.display()));
    let size = file.metadata().map_err(io)?.len();
    let (offset, limit) = match range {
        LogRange::Bytes { offset, limit } | LogRange::Lines { offset, limit } => {
            (offset.min(size), limit.min(MAX_CHUNK_BYTES))
        }
        LogRange::Tail(lines) => (
            tail_start(&mut file, size, lines).map_err(io)?,
            MAX_CHUNK_BYTES,
        ),
    };
    let want = limit.min(size - offset);
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut buf).map_err(io)?;
    if matches!(range, LogRange::Lines { .. }) && (buf.len() as u64) < limit {
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(complete);
    }
    let end = offset + buf.len() as u64;
    Ok(LogChunk {
        text: String::from_utf8_lossy(&buf).into_owned(),
        offset,
        end,
        size,
    })
}

/// Where the last `lines` lines start, reading backwards in blocks, never further back
/// than [`MAX_CHUNK_BYTES`] from the end.
fn tail_start(file: &mut std::fs::File, size: u64, lines: usize) -> std::io::Result<u64> {
    let lines = lines.min(MAX_TAIL_LINES);
    let floor = size.saturating_sub(MAX_CHUNK_BYTES);
    if lines == 0 {
        return Ok(size);
    }
    let mut pos = size;
    let mut newlines = 0;
    let mut block = vec![0u8; 64 * 1024];
    // A final newline ends the last line; it does not start another one.
    let mut skip_last = true;
    while pos > floor {
        let start = pos.saturating_sub(block.len() as u64).max(floor);
        let len = (pos - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..len])?;
        for i in (0..len).rev() {
            if block[i] != b'\n' {
                skip_last = false;
                continue;
            }
            if skip_last {
                skip_last = false;
                continue;
            }
            newlines += 1;
            if newlines == lines {
                return Ok(start + i as u64 + 1);
            }
        }
        pos = start;
    }
    Ok(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let (_dir, path) = write("one\ntwo\nthree\n");
        let chunk = read_blocking(&path, LogRange::Tail(2)).unwrap();
        assert_eq!(chunk.text, "two\nthree\n");
        assert_eq!((chunk.offset, chunk.end, chunk.size), (4, 14, 14));
        assert_eq!(
            read_blocking(&path, LogRange::Tail(10)).unwrap().text,
            "one\ntwo\nthree\n"
        );
        assert_eq!(read_blocking(&path, LogRange::Tail(0)).unwrap().text, "");
        let (_dir, path) = write("a\nb");
        assert_eq!(read_blocking(&path, LogRange::Tail(1)).unwrap().text, "b");
    }

    #[test]
    fn byte_ranges_are_clamped() {
        let (_dir, path) = write("0123456789");
        let c = read_blocking(
            &path,
            LogRange::Bytes {
                offset: 3,
                limit: 4,
            },
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.offset, c.end), ("3456", 3, 7));
        let c = read_blocking(
            &path,
            LogRange::Bytes {
                offset: 50,
                limit: 4,
            },
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.offset, c.end, c.size), ("", 10, 10, 10));
    }

    #[test]
    fn following_returns_complete_lines_only() {
        let (_dir, path) = write("one\ntwo\npart");
        let c = read_blocking(
            &path,
            LogRange::Lines {
                offset: 0,
                limit: 100,
            },
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.end), ("one\ntwo\n", 8));
        let c = read_blocking(
            &path,
            LogRange::Lines {
                offset: 8,
                limit: 100,
            },
        )
        .unwrap();
        assert_eq!((c.text.as_str(), c.end), ("", 8));
        // A line longer than the limit still makes progress.
        let c = read_blocking(
            &path,
            LogRange::Lines {
                offset: 0,
                limit: 2,
            },
        )
        .unwrap();
        assert_eq!(c.text, "on");
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let c = read_blocking(&dir.path().join("none"), LogRange::Tail(5)).unwrap();
        assert_eq!(c.size, 0);
    }
}
