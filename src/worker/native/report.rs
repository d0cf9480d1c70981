//! What a native run tells the world while it runs: the job log, the observer's progress
//! and lines, and the counters that become the [`RunSummary`].
//!
//! The log has the same shape as an imapsync job log: human-readable engine lines (`Host1:
//! ...`, `Folder 3/12 [A] -> [B] ...`, `msg [A]/17 {2048} copied to [B]/40`), and pymap's
//! own lines prefixed `pymap: `. Progress uses the imapsync runner's [`Progress`], so the
//! pool, UI, API and CLI treat both engines alike. Several folder workers share one
//! `Report`; its lock is never held across an await.

use std::{
    fs,
    io::{self, BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::worker::{
    engine::JobObserver,
    imapsync::parse::{MAX_ERRORS, Progress, RunSummary},
};

const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Counters of a run (cumulative over folders and workers).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub folders_total: u32,
    pub folders_done: u32,
    pub host1_messages: u64,
    pub host1_bytes: u64,
    pub host2_messages_before: u64,
    pub host2_bytes_before: u64,
    pub copied: u64,
    pub bytes_copied: u64,
    /// Already on the destination.
    pub skipped: u64,
    pub bytes_skipped: u64,
    /// Left out by max/min age or max size.
    pub excluded: u64,
    /// A dry run's would-be copies.
    pub would_copy: u64,
    pub flags_updated: u64,
    pub duplicates_host1: u64,
    pub extra_on_host2: u64,
    pub unidentified_host1: u64,
    /// Vanished from the source between listing and copying.
    pub vanished: u64,
    pub biggest: u64,
    pub reconnections_host1: u64,
    pub reconnections_host2: u64,
    pub append_errors: u64,
    pub other_errors: u64,
}

struct Inner {
    log: Option<BufWriter<fs::File>>,
    last_flush: Instant,
    progress: Progress,
    counters: Counters,
    errors: Vec<String>,
    errors_omitted: u64,
}

pub struct Report {
    inner: Mutex<Inner>,
    observer: Arc<dyn JobObserver>,
    job_id: i64,
    started: Instant,
}

impl Report {
    /// Opens (appends to) the job log, 0600, creating its directory (0700) if needed.
    pub fn open(path: &Path, observer: Arc<dyn JobObserver>, job_id: i64) -> io::Result<Report> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        Ok(Self::with_log(
            Some(BufWriter::with_capacity(64 * 1024, file)),
            observer,
            job_id,
        ))
    }

    fn with_log(
        log: Option<BufWriter<fs::File>>,
        observer: Arc<dyn JobObserver>,
        job_id: i64,
    ) -> Report {
        Report {
            inner: Mutex::new(Inner {
                log,
                last_flush: Instant::now(),
                progress: Progress::default(),
                counters: Counters::default(),
                errors: Vec::new(),
                errors_omitted: 0,
            }),
            observer,
            job_id,
            started: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not silence the log.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, inner: &mut Inner, text: &str, flush: bool) {
        if let Some(log) = inner.log.as_mut() {
            let ok = log
                .write_all(text.as_bytes())
                .and_then(|()| log.write_all(b"\n"));
            let ok = ok.and_then(|()| {
                if flush || inner.last_flush.elapsed() >= FLUSH_EVERY {
                    inner.last_flush = Instant::now();
                    log.flush()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = ok {
                // A failing log (disk full) does not stop the run; say it once.
                tracing::warn!(job_id = self.job_id, "writing the job log failed: {e}");
                inner.log = None;
            }
        }
        self.observer.line(self.job_id, text);
    }

    /// An engine line.
    pub fn line(&self, text: &str) {
        let mut inner = self.lock();
        self.write(&mut inner, text, false);
    }

    /// One of pymap's own lines (`pymap: ` prefixed), flushed at once.
    pub fn pymap(&self, text: &str) {
        let mut inner = self.lock();
        self.write(&mut inner, &format!("pymap: {text}"), true);
    }

    /// An error: logged, kept for the summary (capped) and published as a rare event.
    pub fn error(&self, text: &str, append: bool) {
        let mut inner = self.lock();
        if append {
            inner.counters.append_errors += 1;
        } else {
            inner.counters.other_errors += 1;
        }
        let n = inner.counters.append_errors + inner.counters.other_errors;
        let line = format!("Err {n}: {text}");
        self.write(&mut inner, &line, true);
        if inner.errors.len() < MAX_ERRORS {
            inner.errors.push(line);
        } else {
            inner.errors_omitted += 1;
        }
        self.observer.progress(self.job_id, &inner.progress, true);
    }

    /// Changes counters under the lock.
    pub fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.lock().counters);
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// The source's size, known after listing.
    pub fn totals(&self, messages: u64, bytes: Option<u64>) {
        let mut inner = self.lock();
        inner.progress.messages_total = Some(messages);
        inner.progress.bytes_total = bytes;
        self.observer.progress(self.job_id, &inner.progress, true);
    }

    /// A worker started on folder `index` of `count` (its line comes once it is compared).
    pub fn folder(&self, index: u32, count: u32, name: &str) {
        let mut inner = self.lock();
        inner.progress.folder_index = Some(index);
        inner.progress.folder_count = Some(count);
        inner.progress.folder_name = Some(name.to_owned());
        self.observer.progress(self.job_id, &inner.progress, true);
    }

    /// `n` messages handled without copying (already there, excluded, dry run).
    pub fn handled(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.progress.messages_done += n;
        self.update_rates(&mut inner);
        self.observer.progress(self.job_id, &inner.progress, false);
    }

    /// One message copied; `line` goes to the log.
    pub fn copied(&self, bytes: u64, line: &str) {
        let mut inner = self.lock();
        inner.counters.copied += 1;
        inner.counters.bytes_copied += bytes;
        inner.counters.biggest = inner.counters.biggest.max(bytes);
        let p = &mut inner.progress;
        p.messages_done += 1;
        p.messages_copied += 1;
        p.bytes_done += bytes;
        self.update_rates(&mut inner);
        self.write(&mut inner, line, false);
        self.observer.progress(self.job_id, &inner.progress, false);
    }

    fn update_rates(&self, inner: &mut Inner) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let p = &mut inner.progress;
        // Never more done than announced: messages that arrived after the listing.
        if let Some(total) = p.messages_total
            && p.messages_done > total
        {
            p.messages_total = Some(p.messages_done);
        }
        p.msgs_per_sec = Some((p.messages_copied as f64 / secs * 100.0).round() / 100.0);
        p.bytes_per_sec = Some((p.bytes_done as f64 / secs) as u64);
        let rate = p.messages_done as f64 / secs;
        p.eta_secs = p
            .messages_total
            .filter(|_| rate > 0.0)
            .map(|t| (t.saturating_sub(p.messages_done) as f64 / rate).round() as u64);
    }

    pub fn flush(&self) {
        let mut inner = self.lock();
        if let Some(log) = inner.log.as_mut()
            && let Err(e) = log.flush()
        {
            tracing::warn!(job_id = self.job_id, "writing the job log failed: {e}");
            inner.log = None;
        }
    }

    /// The run's statistics in the shape the imapsync runner produces.
    pub fn summary(&self, dry_run: bool, justlogin: bool, justfolders: bool) -> RunSummary {
        let inner = self.lock();
        let c = &inner.counters;
        let secs = self.started.elapsed().as_secs_f64();
        let mut s = RunSummary {
            progress: inner.progress.clone(),
            errors: inner.errors.clone(),
            errors_omitted: inner.errors_omitted,
            errors_listed: Some(c.append_errors + c.other_errors),
            dry_run,
            justlogin,
            justfolders,
            no_log: false,
            ..RunSummary::default()
        };
        if justlogin {
            return s;
        }
        s.host1_folders = Some(c.folders_total);
        s.host1_messages = Some(c.host1_messages);
        s.host1_bytes = Some(c.host1_bytes);
        s.host2_messages_before = Some(c.host2_messages_before);
        s.host2_bytes_before = Some(c.host2_bytes_before);
        s.host2_messages_after = Some(c.host2_messages_before + c.copied);
        s.host2_bytes_after = Some(c.host2_bytes_before + c.bytes_copied);
        s.duplicates_seen_host1 = c.duplicates_host1;
        let st = &mut s.stats;
        st.transfer_time_secs = Some((secs * 100.0).round() / 100.0);
        st.folders_synced = Some(c.folders_done);
        st.folders_total = Some(c.folders_total);
        st.messages_transferred = Some(c.copied);
        st.messages_could_be_transferred = dry_run.then_some(c.would_copy);
        st.messages_skipped = Some(c.skipped);
        st.bytes_transferred = Some(c.bytes_copied);
        st.bytes_skipped = Some(c.bytes_skipped);
        st.duplicates_host1 = Some(c.duplicates_host1);
        st.host2_not_in_host1 = Some(c.extra_on_host2);
        st.void_host1 = Some(c.unidentified_host1);
        st.message_rate = Some((c.copied as f64 / secs.max(0.001) * 100.0).round() / 100.0);
        st.average_bandwidth_kib =
            Some((c.bytes_copied as f64 / 1024.0 / secs.max(0.001) * 10.0).round() / 10.0);
        st.reconnections_host1 = Some(c.reconnections_host1);
        st.reconnections_host2 = Some(c.reconnections_host2);
        st.biggest_message_transferred = Some(c.biggest);
        st.detected_errors = Some(c.append_errors + c.other_errors);
        s.reconnections = c.reconnections_host1 + c.reconnections_host2;
        s
    }
}
