//! The parent of the per-job work directories, where imapsync's pass files (the mailbox
//! passwords in clear text) live while a job runs. Before anything is written under it, it
//! must be a directory of ours that nobody else can enter; where it is by default (in RAM)
//! is [`crate::config::Config::run_dir`]'s business.

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::Path,
};

/// Work directories of the pool are `job-<id>`; `pymap sync` uses `cli-<pid>`.
const POOL_PREFIX: &str = "job-";

/// Create `dir` (mode 0700) if missing and check it is private to this user. With
/// `clean_pool_dirs`, remove the work directories a previous process of the pool left behind
/// (it died with jobs running); anything else in `dir` is left alone.
pub fn prepare(dir: &Path, clean_pool_dirs: bool) -> Result<(), String> {
    let shown = dir.display();
    let explain = |why: String| {
        format!(
            "run_dir {shown}: {why}. pymap writes mailbox passwords there while jobs run, so it \
             must be a directory of this user that nobody else can enter (mode 0700); fix it, \
             or set run_dir (PYMAP_RUN_DIR) to another directory"
        )
    };
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| explain(format!("cannot create it: {e}")))?,
        Err(e) => return Err(explain(e.to_string())),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| explain(e.to_string()))?;
    let uid = rustix::process::geteuid().as_raw();
    if meta.file_type().is_symlink() {
        return Err(explain("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(explain("it is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(explain(format!(
            "it belongs to uid {}, not to this user (uid {uid})",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(explain(format!("its mode is {mode:04o}")));
    }
    if clean_pool_dirs {
        let entries = fs::read_dir(dir).map_err(|e| explain(e.to_string()))?;
        for entry in entries.flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(POOL_PREFIX);
            if stale && let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a stale work directory");
            }
        }
    }
    Ok(())
}

/// Remove `dir` if it is empty (at shutdown: a directory in RAM should not outlive us).
pub fn remove_if_empty(dir: &Path) {
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_stale_pool_dirs_removed() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("a/b/run");
        prepare(&dir, true).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::create_dir(dir.join("job-7")).unwrap();
        fs::write(dir.join("job-7/passfile1"), "old secret\n").unwrap();
        fs::create_dir(dir.join("cli-99")).unwrap();
        prepare(&dir, false).unwrap();
        assert!(
            dir.join("job-7/passfile1").exists(),
            "no cleaning unless asked"
        );
        prepare(&dir, true).unwrap();
        assert!(!dir.join("job-7").exists(), "stale pool dir removed");
        assert!(
            dir.join("cli-99").exists(),
            "a running `pymap sync` keeps its dir"
        );
        fs::remove_dir(dir.join("cli-99")).unwrap();
        remove_if_empty(&dir);
        assert!(!dir.exists());
    }

    #[test]
    fn an_open_or_foreign_directory_is_refused_with_the_setting_named() {
        let top = tempfile::tempdir().unwrap();
        let open = top.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare(&open, true).unwrap_err();
        assert!(
            err.contains("its mode is 0755") && err.contains("PYMAP_RUN_DIR"),
            "{err}"
        );
        let link = top.path().join("link");
        std::os::unix::fs::symlink(top.path(), &link).unwrap();
        assert!(prepare(&link, true).unwrap_err().contains("symbolic link"));
        let file = top.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(
            prepare(&file, true)
                .unwrap_err()
                .contains("not a directory")
        );
        if rustix::process::geteuid().is_root() {
            let foreign = top.path().join("foreign");
            fs::DirBuilder::new().mode(0o700).create(&foreign).unwrap();
            std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
            let err = prepare(&foreign, true).unwrap_err();
            assert!(err.contains("belongs to uid 65534"), "{err}");
        }
        // Nothing of the refused directories was touched.
        assert!(open.exists() && file.exists());
    }
}
