//! Service functions the web UI needed that no shared module offers yet: searching a
//! job's log, and the admin check of the system page. The file comes from `logs::job_log` (reached by job id, path confined to
//! the log directory), never from user input.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Actor, Result, ServiceError};

/// For read-only admin pages whose data has no permission check of its own (queue
/// depth, engines): only admins may look.
pub fn require_admin(actor: &Actor) -> Result<()> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

fn io(e: std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("reading a job log: {e}"))
}

/// Lines containing `needle` (case-insensitive), numbered from 1, at most `max` of them,
/// and how many matched in all. A missing file has no lines.
pub async fn log_search(
    path: &Path,
    needle: &str,
    max: usize,
) -> Result<(Vec<(usize, String)>, usize)> {
    let needle = needle.to_lowercase();
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io(e)),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let (mut found, mut total, mut number) = (Vec::new(), 0, 0);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await.map_err(io)? == 0 {
            break;
        }
        number += 1;
        let text = String::from_utf8_lossy(&line);
        if text.to_lowercase().contains(&needle) {
            total += 1;
            if found.len() < max {
                found.push((number, text.trim_end().to_string()));
            }
        }
    }
    Ok((found, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn search_numbers_lines_and_counts_beyond_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        std::fs::write(&path, "one\ntwo\nthree\npartial").unwrap();
        let (hits, total) = log_search(&path, "T", 1).await.unwrap();
        assert_eq!((hits, total), (vec![(2, "two".to_string())], 3));
        let none = log_search(&dir.path().join("none"), "x", 5).await.unwrap();
        assert_eq!(none, (vec![], 0));
    }
}
