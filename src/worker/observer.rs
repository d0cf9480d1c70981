//! A running job's observer: log lines go out as events at once; progress snapshots are
//! taken at most once a second (at once for rare events such as a new folder), published,
//! and handed to the pool, whose loop writes all running jobs' progress in one transaction.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{sync::Notify, task::JoinHandle};

use super::{
    engine::JobObserver,
    events::{Event, EventBus, EventKind},
    imapsync::parse::Progress,
};

/// Where a snapshot goes to be written (the pool's pending writes).
pub trait ProgressSink: Send + Sync + 'static {
    fn progress(&self, job_id: i64, progress: Progress);
}

pub struct Observer {
    bus: EventBus,
    sink: Arc<dyn ProgressSink>,
    owner_id: i64,
    task_id: i64,
    latest: Mutex<Option<Progress>>,
    rare: Notify,
}

impl Observer {
    pub fn new(bus: EventBus, sink: Arc<dyn ProgressSink>, owner_id: i64, task_id: i64) -> Self {
        Self {
            bus,
            sink,
            owner_id,
            task_id,
            latest: Mutex::new(None),
            rare: Notify::new(),
        }
    }

    /// The task taking snapshots while the job runs; abort it when the run ends.
    pub fn spawn_persister(self: Arc<Self>, job_id: i64) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut last = Instant::now() - Duration::from_secs(1);
            loop {
                tokio::select! {
                    _ = self.rare.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                if last.elapsed() < Duration::from_secs(1) {
                    // Rare events may arrive in bursts: still at most one snapshot a second.
                    tokio::time::sleep(Duration::from_secs(1).saturating_sub(last.elapsed())).await;
                }
                let Some(progress) = self.latest.lock().expect("observer lock").take() else {
                    continue;
                };
                last = Instant::now();
                self.sink.progress(job_id, progress.clone());
                self.bus.publish(Event {
                    owner_id: self.owner_id,
                    task_id: self.task_id,
                    job_id: Some(job_id),
                    kind: EventKind::JobProgress { progress },
                    origin: String::new(),
                });
            }
        })
    }
}

impl JobObserver for Observer {
    fn progress(&self, _job_id: i64, progress: &Progress, rare: bool) {
        *self.latest.lock().expect("observer lock") = Some(progress.clone());
        if rare {
            self.rare.notify_one();
        }
    }

    fn line(&self, job_id: i64, line: &str) {
        self.bus.publish(Event {
            owner_id: self.owner_id,
            task_id: self.task_id,
            job_id: Some(job_id),
            kind: EventKind::LogLine {
                line: line.to_string(),
            },
            origin: String::new(),
        });
    }
}
