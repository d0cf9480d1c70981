//! The native engine and the verifier against real Dovecot servers (see `dovecot.rs`):
//! copying, resuming and verifying here; failures and options in `native/failures.rs`;
//! `pymap verify` in `native/cli.rs`; the bench in `native/bench.rs`.

mod bench;
mod cli;
mod failures;

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use futures::StreamExt;
use pymap::{
    service::{
        hosts::HostSpec,
        imapsync_options::{MigrationOptions, TlsMode},
    },
    worker::{
        engine::{Engine, JobObserver, JobSpec, RunResult},
        imapsync::parse::Progress,
        native::{NativeEngine, NativeOptions, VerifyReport, VerifySpec, verify},
        status::JobStatus,
    },
};
use tokio_util::sync::CancellationToken;

use crate::dovecot::{self, CorpusSpec, Dovecot, Options, secret};

#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<String>>,
    pub last: Mutex<Progress>,
    pub rare: Mutex<u64>,
    /// Cancel once this many messages were copied.
    pub cancel_at: Option<(u64, CancellationToken)>,
    cancelled: AtomicBool,
}

impl JobObserver for Recorder {
    fn progress(&self, _job: i64, p: &Progress, rare: bool) {
        *self.last.lock().unwrap() = p.clone();
        if rare {
            *self.rare.lock().unwrap() += 1;
        }
        if let Some((n, token)) = &self.cancel_at
            && p.messages_copied >= *n
            && !self.cancelled.swap(true, Ordering::SeqCst)
        {
            token.cancel();
        }
    }
    fn line(&self, _job: i64, line: &str) {
        self.lines.lock().unwrap().push(line.to_owned());
    }
}

pub struct Side<'a> {
    pub host: HostSpec,
    pub user: &'a str,
}

pub fn at<'a>(server: &Dovecot, user: &'a str) -> Side<'a> {
    Side {
        host: server.host(),
        user,
    }
}

pub fn job(dir: &Path, a: &Side, b: &Side, options: MigrationOptions) -> JobSpec {
    JobSpec {
        job_id: 7,
        task_id: 3,
        host1: a.host.clone(),
        user1: a.user.into(),
        password1: secret(a.user),
        host2: b.host.clone(),
        user2: b.user.into(),
        password2: secret(b.user),
        options,
        log_path: dir.join("logs/job-7.log"),
        work_dir: dir.join("run/job-7"),
    }
}

pub fn check(a: &Side, b: &Side, options: MigrationOptions, native: NativeOptions) -> VerifySpec {
    VerifySpec {
        host1: a.host.clone(),
        user1: a.user.into(),
        password1: secret(a.user),
        host2: b.host.clone(),
        user2: b.user.into(),
        password2: secret(b.user),
        options,
        native,
    }
}

pub fn engine() -> NativeEngine {
    NativeEngine::new(NativeOptions {
        parallel_folders: 3,
        ..NativeOptions::default()
    })
}

/// The run ended with `want`; a failure shows the run's reason.
#[track_caller]
fn assert_status(r: &RunResult, want: JobStatus) {
    assert_eq!(r.outcome.status, want, "{}", r.outcome.reason);
}

async fn run(engine: &NativeEngine, spec: JobSpec) -> (RunResult, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let result = engine
        .run(spec, rec.clone(), CancellationToken::new())
        .await;
    (result, rec)
}

fn assert_identical(report: &VerifyReport) {
    assert!(report.identical, "not identical:\n{}", report.to_text());
}

fn plain() -> MigrationOptions {
    MigrationOptions {
        tls1: TlsMode::Plain,
        tls2: TlsMode::Plain,
        ..MigrationOptions::default()
    }
}

/// Full copy between a `/` server and a `.` server with an `INBOX.` prefix, verify,
/// second run, and back to a third mailbox: nothing lost in either direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_copy_is_identical_rerun_copies_nothing_and_round_trips() {
    let Some(slash) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let Some(dot) = Dovecot::start(Options::dot()).await else {
        return;
    };
    let corpus = dovecot::fill(&slash, "alice", &CorpusSpec::small()).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(&slash, "alice"), at(&dot, "bob"));
    let started = Instant::now();
    let (r, rec) = run(&engine(), job(dir.path(), &src, &dst, plain())).await;
    eprintln!("first run: {:?} in {:?}", r.outcome, started.elapsed());
    assert_status(&r, JobStatus::Succeeded);
    assert_eq!(r.outcome.exit_name, "EX_OK");
    let st = &r.summary.stats;
    assert_eq!(st.messages_transferred, Some(corpus.messages));
    assert_eq!(st.bytes_transferred, Some(corpus.bytes));
    assert_eq!(st.messages_skipped, Some(0));
    assert_eq!(st.folders_total, Some(12));
    assert!(st.duplicates_host1.unwrap() > 0);
    let p = rec.last.lock().unwrap().clone();
    assert_eq!(
        (p.messages_total, p.messages_done, p.messages_copied),
        (Some(corpus.messages), corpus.messages, corpus.messages)
    );
    assert_eq!(p.bytes_done, corpus.bytes);
    // The log: engine lines and pymap's own, never a password.
    let log = std::fs::read_to_string(dir.path().join("logs/job-7.log")).unwrap();
    assert!(log.contains("msg [INBOX]/1 {"), "{log}");
    if std::env::var("SHOW_LOG").is_ok() {
        eprintln!("{log}");
    }
    assert!(log.contains("pymap: native engine ended: succeeded"));
    assert!(!log.contains("alice-secret") && !log.contains("bob-secret"));
    assert_eq!(log.lines().count(), rec.lines.lock().unwrap().len());

    // An independent client sees the folders under their `.`-separated, prefixed names.
    let mut s = dovecot::session(&dot, "bob").await;
    let names: Vec<String> = s
        .list(Some(""), Some("*"))
        .await
        .unwrap()
        .filter_map(|n| async { n.ok() })
        .map(|n| n.name().to_owned())
        .collect()
        .await;
    for want in [
        "INBOX.Donn&AOk-es.&AMk-t&AOk- 2023",
        "INBOX.&BB8EQAQ4BDIENQRC-",
        "INBOX.Projects.2024.Q1",
        "INBOX.Empty",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let subs: Vec<String> = s
        .lsub(Some(""), Some("*"))
        .await
        .unwrap()
        .filter_map(|n| async { n.ok() })
        .map(|n| n.name().to_owned())
        .collect()
        .await;
    assert!(
        !subs.iter().any(|n| n == "INBOX.Unsubscribed")
            && subs.iter().any(|n| n == "INBOX.Spaces &- Symbols"),
        "{subs:?}"
    );
    let inbox = s.status("INBOX", "(MESSAGES)").await.unwrap();
    assert_eq!(u64::from(inbox.exists), corpus.per_folder["INBOX"]);
    s.logout().await.ok();

    let report = verify(&check(&src, &dst, plain(), NativeOptions::default())).await;
    assert_identical(&report);
    assert_eq!(
        (report.messages_host1, report.messages_host2),
        (corpus.messages, corpus.messages)
    );

    let (r, _) = run(&engine(), job(dir.path(), &src, &dst, plain())).await;
    assert_status(&r, JobStatus::Succeeded);
    assert_eq!(r.summary.stats.messages_transferred, Some(0));
    assert_eq!(r.summary.stats.messages_skipped, Some(corpus.messages));

    // Back from `.` to `/`, into another mailbox: identical to the original too.
    let back = at(&slash, "carol");
    let (r, _) = run(&engine(), job(dir.path(), &dst, &back, plain())).await;
    assert_status(&r, JobStatus::Succeeded);
    assert_identical(&verify(&check(&dst, &back, plain(), NativeOptions::default())).await);
    assert_identical(&verify(&check(&src, &back, plain(), NativeOptions::default())).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_run_resumes_to_identical() {
    let Some(a) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let corpus = dovecot::fill(&a, "alice", &CorpusSpec::small()).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(&a, "alice"), at(&a, "bob"));
    let cancel = CancellationToken::new();
    let rec = Arc::new(Recorder {
        cancel_at: Some((40, cancel.clone())),
        ..Recorder::default()
    });
    let r = engine()
        .run(job(dir.path(), &src, &dst, plain()), rec.clone(), cancel)
        .await;
    assert_status(&r, JobStatus::Cancelled);
    assert!(!r.outcome.retryable);
    let first = r.summary.stats.messages_transferred.unwrap();
    assert!(
        (40..corpus.messages).contains(&first),
        "copied {first} before the cancel took effect"
    );
    assert!(r.outcome.reason.contains("resumes"), "{}", r.outcome.reason);
    let report = verify(&check(&src, &dst, plain(), NativeOptions::default())).await;
    assert!(!report.complete);

    let (r, _) = run(&engine(), job(dir.path(), &src, &dst, plain())).await;
    assert_status(&r, JobStatus::Succeeded);
    let second = r.summary.stats.messages_transferred.unwrap();
    // Whatever was in flight at the cancel is either there (skipped) or copied now.
    assert_eq!(
        second + r.summary.stats.messages_skipped.unwrap(),
        corpus.messages
    );
    assert!(second <= corpus.messages - 40);
    assert_identical(&verify(&check(&src, &dst, plain(), NativeOptions::default())).await);
}

/// Dry run, folders only, age and size limits; the verifier applies the same limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_folders_only_and_message_filters() {
    let Some(a) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let corpus = dovecot::fill(&a, "alice", &CorpusSpec::small()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = at(&a, "alice");
    let e = engine();
    let (r, _) = run(
        &e,
        job(
            dir.path(),
            &src,
            &at(&a, "bob"),
            MigrationOptions {
                dry_run: true,
                ..plain()
            },
        ),
    )
    .await;
    assert_status(&r, JobStatus::Succeeded);
    assert!(
        r.outcome
            .reason
            .contains(&format!("would have copied {} messages", corpus.messages)),
        "{}",
        r.outcome.reason
    );
    let mut s = dovecot::session(&a, "bob").await;
    let n = s.list(Some(""), Some("*")).await.unwrap().count().await;
    assert_eq!(n, 1, "a dry run created folders");
    s.logout().await.ok();

    let (r, _) = run(
        &e,
        job(
            dir.path(),
            &src,
            &at(&a, "bob"),
            MigrationOptions {
                just_folders: true,
                ..plain()
            },
        ),
    )
    .await;
    assert_status(&r, JobStatus::Succeeded);
    let report = verify(&check(
        &src,
        &at(&a, "bob"),
        plain(),
        NativeOptions::default(),
    ))
    .await;
    assert!(
        report.missing_folders.is_empty() && report.missing_subscriptions.is_empty(),
        "{}",
        report.to_text()
    );
    assert_eq!((report.messages_host2, report.complete), (0, false));

    // Only messages up to 100 KB, between 10 and 25 days older than the newest message.
    let newest = *corpus.dates.iter().max().unwrap();
    let now = chrono::Utc::now().timestamp();
    let days = |d: i64| ((now - newest) / 86_400 + d) as u32;
    let limits = MigrationOptions {
        max_size_bytes: Some(100_000),
        min_age_days: Some(days(10)),
        max_age_days: Some(days(25)),
        ..plain()
    };
    let want = corpus
        .dates
        .iter()
        .zip(&corpus.sizes)
        .filter(|&(&t, &size)| {
            let age = (now - t) / 86_400;
            size <= 100_000 && age >= i64::from(days(10)) && age < i64::from(days(25))
        })
        .count() as u64;
    assert!(want > 10 && want < corpus.messages / 2, "{want}");
    let (r, _) = run(&e, job(dir.path(), &src, &at(&a, "carol"), limits.clone())).await;
    assert_status(&r, JobStatus::Succeeded);
    assert_eq!(r.summary.stats.messages_transferred, Some(want));
    assert!(
        r.outcome
            .reason
            .contains("left out by the age/size options")
    );
    assert_identical(
        &verify(&check(
            &src,
            &at(&a, "carol"),
            limits,
            NativeOptions::default(),
        ))
        .await,
    );
    let unfiltered = verify(&check(
        &src,
        &at(&a, "carol"),
        plain(),
        NativeOptions::default(),
    ))
    .await;
    assert!(!unfiltered.complete);
}

/// The verifier names each kind of difference; a re-run repairs what it can (a message
/// deleted on the destination, flags changed there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifier_reports_exact_differences_and_rerun_repairs_them() {
    let Some(a) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let corpus = dovecot::fill(
        &a,
        "alice",
        &CorpusSpec {
            messages: 60,
            big: 0,
            ..CorpusSpec::small()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(&a, "alice"), at(&a, "bob"));
    let (r, _) = run(&engine(), job(dir.path(), &src, &dst, plain())).await;
    assert_status(&r, JobStatus::Succeeded);
    let mut s = dovecot::session(&a, "bob").await;
    s.select("INBOX").await.unwrap();
    s.store("1", "+FLAGS.SILENT (\\Deleted)")
        .await
        .unwrap()
        .count()
        .await;
    s.expunge().await.unwrap().count().await;
    s.store("2", "FLAGS.SILENT ($Other)")
        .await
        .unwrap()
        .count()
        .await;
    s.create("Extra").await.unwrap();
    s.unsubscribe("Sent").await.unwrap();
    s.logout().await.ok();
    let report = verify(&check(&src, &dst, plain(), NativeOptions::default())).await;
    assert!(!report.identical && !report.complete);
    assert_eq!(report.extra_folders, ["Extra"]);
    assert_eq!(report.missing_subscriptions, ["Sent"]);
    let inbox = report.folders.iter().find(|f| f.host1 == "INBOX").unwrap();
    assert_eq!(
        (
            inbox.missing,
            inbox.extra,
            inbox.flag_differences,
            inbox.date_differences
        ),
        (1, 0, 1, 0),
        "{}",
        report.to_text()
    );
    assert_eq!(inbox.messages_host1 - 1, inbox.messages_host2);
    assert!(
        inbox
            .examples
            .iter()
            .any(|e| e.kind == "flags" && e.host2.as_deref() == Some("($Other)"))
    );
    assert_eq!(report.folders.iter().filter(|f| !f.identical).count(), 1);
    let text = report.to_text();
    assert!(
        text.starts_with("DIFFERENT") && text.contains("Extra"),
        "{text}"
    );

    let (r, _) = run(&engine(), job(dir.path(), &src, &dst, plain())).await;
    assert_eq!(r.summary.stats.messages_transferred, Some(1));
    assert_eq!(r.summary.stats.messages_skipped, Some(corpus.messages - 1));
    let report = verify(&check(&src, &dst, plain(), NativeOptions::default())).await;
    assert!(report.complete && !report.identical, "{}", report.to_text());
    assert_eq!(report.extra_folders, ["Extra"]);
}

/// A connection cut in the middle of a folder: the worker reconnects and the folder
/// resumes without copying anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_is_resumed_after_reconnecting() {
    let Some(a) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let corpus = dovecot::fill(&a, "alice", &CorpusSpec::small()).await;
    let cutter = dovecot::proxy(a.port, std::time::Duration::ZERO, Some(2 * 1024 * 1024)).await;
    let dir = tempfile::tempdir().unwrap();
    let src = at(&a, "alice");
    let dst = Side {
        host: cutter.host(),
        user: "bob",
    };
    let (r, rec) = run(&engine(), job(dir.path(), &src, &dst, plain())).await;
    assert_status(&r, JobStatus::Succeeded);
    assert!(
        r.summary.stats.reconnections_host2.unwrap() >= 1,
        "no reconnection"
    );
    assert!(
        rec.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("Info: Host2: ") && l.contains("reconnecting"))
    );
    // Copied now + found already there (copied before the cut) = everything, once.
    let st = &r.summary.stats;
    assert_eq!(
        st.messages_transferred.unwrap() + st.messages_skipped.unwrap(),
        corpus.messages
    );
    assert_eq!(rec.last.lock().unwrap().messages_done, corpus.messages);
    assert_identical(
        &verify(&check(
            &src,
            &at(&a, "bob"),
            plain(),
            NativeOptions::default(),
        ))
        .await,
    );
}
