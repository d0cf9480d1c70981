//! The native engine and the verifier against real Dovecot servers (see `dovecot.rs`).

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
        native::{AuthMethod, NativeEngine, NativeOptions, VerifyReport, VerifySpec, verify},
        status::JobStatus,
    },
};
use tokio_util::sync::CancellationToken;

use crate::dovecot::{self, CorpusSpec, Dovecot, HOSTILE, Options, secret};

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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
    assert_eq!(r.summary.stats.messages_transferred, Some(0));
    assert_eq!(r.summary.stats.messages_skipped, Some(corpus.messages));

    // Back from `.` to `/`, into another mailbox: identical to the original too.
    let back = at(&slash, "carol");
    let (r, _) = run(&engine(), job(dir.path(), &dst, &back, plain())).await;
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Cancelled,
        "{}",
        r.outcome.reason
    );
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
    let second = r.summary.stats.messages_transferred.unwrap();
    // Whatever was in flight at the cancel is either there (skipped) or copied now.
    assert_eq!(
        second + r.summary.stats.messages_skipped.unwrap(),
        corpus.messages
    );
    assert!(second <= corpus.messages - 40);
    assert_identical(&verify(&check(&src, &dst, plain(), NativeOptions::default())).await);
}

/// Logins, refused connections, a server that never greets and a TLS mismatch each end
/// with the status and reason imapsync would have given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_map_to_the_right_status_and_reason() {
    let Some(a) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let good = at(&a, "alice");
    let wrong = |user| {
        let mut spec = job(dir.path(), &good, &at(&a, "bob"), plain());
        if user == 1 {
            spec.password1 = pymap::service::batch::Secret::new("wrong password");
        } else {
            spec.password2 = pymap::service::batch::Secret::new("wrong password");
        }
        spec
    };
    let both = {
        let mut s = wrong(1);
        s.password2 = pymap::service::batch::Secret::new("wrong too");
        s
    };
    // Nothing listens on a port we just released.
    let closed = HostSpec {
        host: "127.0.0.1".into(),
        port: Some(
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        ),
    };
    let refused = job(
        dir.path(),
        &Side {
            host: closed,
            user: "alice",
        },
        &good,
        plain(),
    );
    // Accepts and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_host = HostSpec {
        host: "127.0.0.1".into(),
        port: Some(silent.local_addr().unwrap().port()),
    };
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let mut quiet = job(
        dir.path(),
        &good,
        &Side {
            host: silent_host,
            user: "bob",
        },
        plain(),
    );
    quiet.options.timeout_secs = Some(2);
    let mismatch = job(
        dir.path(),
        &good,
        &at(&a, "bob"),
        MigrationOptions {
            tls1: TlsMode::Implicit,
            ..plain()
        },
    );
    let starttls = job(
        dir.path(),
        &good,
        &at(&a, "bob"),
        MigrationOptions {
            tls2: TlsMode::Starttls,
            ..plain()
        },
    );
    let e = engine();
    let started = Instant::now();
    // Failed logins make Dovecot delay every login from the address for a while (auth
    // penalty): the cases with a 2 s timeout go first.
    let mut results =
        futures::future::join_all([refused, quiet, mismatch, starttls].map(|s| run(&e, s))).await;
    results.extend(futures::future::join_all([wrong(1), wrong(2), both].map(|s| run(&e, s))).await);
    eprintln!("failure cases took {:?}", started.elapsed());
    hold.abort();
    let expect = [
        ("EXIT_CONNECTION_FAILURE_HOST1", "connection refused", true),
        ("EXIT_CONNECTION_FAILURE_HOST2", "never answered", true),
        ("EXIT_TLS_FAILURE", "did not answer with TLS", false),
        ("EXIT_TLS_FAILURE", "STARTTLS is required", false),
        (
            "EXIT_AUTHENTICATION_FAILURE_USER1",
            "check user1 and password1",
            false,
        ),
        (
            "EXIT_AUTHENTICATION_FAILURE_USER2",
            "check user2 and password2",
            false,
        ),
        ("EXIT_AUTHENTICATION_FAILURE_USER1", "failed too", false),
    ];
    for ((r, _), (name, words, retry)) in results.iter().zip(expect) {
        let o = &r.outcome;
        assert_eq!(
            (o.status, o.exit_name.as_str(), o.retryable),
            (JobStatus::Failed, name, retry),
            "{}",
            o.reason
        );
        assert!(o.reason.contains(words), "{name}: {}", o.reason);
        assert!(!o.reason.contains("wrong password") && !o.reason.contains("alice-secret"));
    }
    let log = std::fs::read_to_string(dir.path().join("logs/job-7.log")).unwrap();
    assert!(
        !log.contains("wrong password")
            && !log.contains("alice-secret")
            && !log.contains("bob-secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_password_works_with_login_and_authenticate_plain() {
    let Some(a) = Dovecot::start(Options::slash()).await else {
        return;
    };
    dovecot::fill(
        &a,
        "hostile",
        &CorpusSpec {
            messages: 12,
            big: 0,
            ..CorpusSpec::small()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(&a, "hostile"), at(&a, "dave"));
    for (auth1, auth2) in [
        (AuthMethod::Login, AuthMethod::Plain),
        (AuthMethod::Plain, AuthMethod::Login),
    ] {
        let native = NativeOptions {
            auth1,
            auth2,
            ..NativeOptions::default()
        };
        let e = NativeEngine::new(native.clone());
        let (r, _) = run(&e, job(dir.path(), &src, &dst, plain())).await;
        assert_eq!(
            r.outcome.status,
            JobStatus::Succeeded,
            "{}",
            r.outcome.reason
        );
        let back = run(
            &e,
            job(
                dir.path(),
                &dst,
                &src,
                MigrationOptions {
                    just_login: true,
                    ..plain()
                },
            ),
        )
        .await
        .0;
        assert_eq!(
            back.outcome.status,
            JobStatus::Succeeded,
            "{}",
            back.outcome.reason
        );
        assert!(back.outcome.reason.starts_with("Login test passed"));
        assert_identical(&verify(&check(&src, &dst, plain(), native)).await);
    }
    let log = std::fs::read_to_string(dir.path().join("logs/job-7.log")).unwrap();
    assert!(!log.contains(HOSTILE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_tls_is_refused_by_default_and_accepted_on_request() {
    let Some(t) = Dovecot::start(Options::tls()).await else {
        return;
    };
    dovecot::fill(
        &t,
        "alice",
        &CorpusSpec {
            messages: 20,
            big: 1,
            ..CorpusSpec::small()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = Side {
        host: t.tls_host(),
        user: "alice",
    };
    let dst = at(&t, "bob");
    let implicit = MigrationOptions {
        tls1: TlsMode::Implicit,
        tls2: TlsMode::Starttls,
        ..MigrationOptions::default()
    };
    let (r, _) = run(&engine(), job(dir.path(), &src, &dst, implicit.clone())).await;
    assert_eq!(
        (r.outcome.status, r.outcome.exit_name.as_str()),
        (JobStatus::Failed, "EXIT_TLS_FAILURE"),
        "{}",
        r.outcome.reason
    );
    assert!(
        r.outcome
            .reason
            .contains("not signed by a trusted authority"),
        "{}",
        r.outcome.reason
    );
    assert!(
        r.outcome
            .reason
            .contains("allow invalid certificates for host1"),
        "{}",
        r.outcome.reason
    );
    let native = NativeOptions {
        accept_invalid_certs1: true,
        ..NativeOptions::default()
    };
    // host2 is still verified: STARTTLS to it fails on the certificate.
    let (r, _) = run(
        &NativeEngine::new(native.clone()),
        job(dir.path(), &src, &dst, implicit.clone()),
    )
    .await;
    assert!(r.outcome.reason.contains("host2"), "{}", r.outcome.reason);
    let native = NativeOptions {
        accept_invalid_certs2: true,
        ..native
    };
    let (r, rec) = run(
        &NativeEngine::new(native.clone()),
        job(dir.path(), &src, &dst, implicit.clone()),
    )
    .await;
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
    let lines = rec.lines.lock().unwrap().join("\n");
    assert!(
        lines.contains("(implicit TLS)") && lines.contains("(STARTTLS)"),
        "{lines}"
    );
    assert_identical(&verify(&check(&src, &dst, implicit, native)).await);
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
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
    assert_eq!(
        r.outcome.status,
        JobStatus::Succeeded,
        "{}",
        r.outcome.reason
    );
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

// ------------------------------------------------------------------------------------------
// Bench (scripts/bench-engine.sh): ignored by default.

/// Runs the engine in a child process (the same test binary) so its peak RSS and CPU time
/// are its own, for each corpus size and added round-trip time; verifies after every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench: run by scripts/bench-engine.sh"]
async fn bench_engine() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
    let sizes: Vec<usize> = env("PYMAP_BENCH_MESSAGES", "2000")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let rtts: Vec<u64> = env("PYMAP_BENCH_RTT_MS", "0,20")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let Some(src) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let Some(dst) = Dovecot::start(Options::slash()).await else {
        return;
    };
    println!(
        "| engine | messages | MB | RTT ms | seconds | msgs/s | MB/s | peak RSS MiB | CPU s | verified |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (k, &n) in sizes.iter().enumerate() {
        // ≈ 135 KB per message on average, 1 in 200 with a 3 MB attachment.
        let spec = CorpusSpec {
            messages: n,
            big: n / 200,
            big_size: 3 * 1024 * 1024,
            attachment: 240 * 1024,
            seed: 7 + k as u64,
        };
        let user = ["alice", "carol"][k % 2];
        let started = Instant::now();
        let corpus = dovecot::fill(&src, user, &spec).await;
        eprintln!(
            "corpus: {} messages, {:.1} MB, filled in {:.1?}",
            corpus.messages,
            corpus.bytes as f64 / 1e6,
            started.elapsed()
        );
        for &rtt in &rtts {
            dst.wipe("bob");
            let one_way = std::time::Duration::from_micros(rtt * 500);
            let (p1, p2) = (
                dovecot::proxy(src.port, one_way, None).await,
                dovecot::proxy(dst.port, one_way, None).await,
            );
            let (h1, h2) = if rtt == 0 {
                (src.host(), dst.host())
            } else {
                (p1.host(), p2.host())
            };
            let child = serde_json::json!({"port1": h1.port, "user1": user, "port2": h2.port, "user2": "bob"});
            let m = tokio::task::spawn_blocking(move || measure(&child.to_string()))
                .await
                .unwrap();
            let report = verify(&check(
                &at(&src, user),
                &at(&dst, "bob"),
                plain(),
                NativeOptions::default(),
            ))
            .await;
            assert_eq!(m.copied, corpus.messages, "{}", m.reason);
            println!(
                "| native | {} | {:.0} | {rtt} | {:.1} | {:.0} | {:.1} | {:.0} | {:.1} | {} |",
                corpus.messages,
                corpus.bytes as f64 / 1e6,
                m.secs,
                corpus.messages as f64 / m.secs,
                corpus.bytes as f64 / 1e6 / m.secs,
                m.max_rss_kib as f64 / 1024.0,
                m.cpu_secs,
                if report.identical {
                    "identical"
                } else {
                    "DIFFERENT"
                }
            );
            assert_identical(&report);
        }
        if which("imapsync").is_none() {
            println!(
                "| imapsync | {} | - | - | - | - | - | - | - | not on PATH: not measured |",
                corpus.messages
            );
        }
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Measured {
    secs: f64,
    cpu_secs: f64,
    max_rss_kib: i64,
    copied: u64,
    reason: String,
}

/// Runs `bench_child` with `job` and waits for it with `wait4` to get its own rusage.
// The child is reaped by `wait4` (which std's `wait` cannot replace: it drops the rusage).
#[allow(clippy::zombie_processes)]
fn measure(job: &str) -> Measured {
    use std::io::Read;
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args([
            "native::bench_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PYMAP_BENCH_CHILD", job)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped; the pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let secs = started.elapsed().as_secs_f64();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_RESULT "))
        .unwrap_or_else(|| panic!("no result from the child:\n{out}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        secs: v["secs"].as_f64().unwrap_or(secs),
        cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        copied: v["copied"].as_u64().unwrap_or(0),
        reason: v["reason"].as_str().unwrap_or_default().to_owned(),
    }
}

/// The engine run measured by `bench_engine` (does nothing unless started by it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench helper"]
async fn bench_child() {
    let Ok(job_json) = std::env::var("PYMAP_BENCH_CHILD") else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&job_json).unwrap();
    let host = |k: &str| HostSpec {
        host: "127.0.0.1".into(),
        port: v[k].as_u64().map(|p| p as u16),
    };
    let (u1, u2) = (v["user1"].as_str().unwrap(), v["user2"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let spec = job(
        dir.path(),
        &Side {
            host: host("port1"),
            user: u1,
        },
        &Side {
            host: host("port2"),
            user: u2,
        },
        plain(),
    );
    let started = Instant::now();
    let (r, _) = run(&NativeEngine::default(), spec).await;
    let result = serde_json::json!({
        "secs": started.elapsed().as_secs_f64(),
        "copied": r.summary.stats.messages_transferred,
        "reason": r.outcome.reason,
    });
    println!("BENCH_RESULT {result}");
}

/// A full destination stops the run (not retryable); a message the destination refuses is
/// an APPEND error: the others are copied and a re-run may be tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_refused_messages() {
    let Some(a) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let Some(full) = Dovecot::start(Options {
        quota: Some("1M"),
        ..Options::slash()
    })
    .await
    else {
        return;
    };
    let Some(small) = Dovecot::start(Options {
        max_mail_size: Some("2M"),
        ..Options::slash()
    })
    .await
    else {
        return;
    };
    let corpus = dovecot::fill(&a, "alice", &CorpusSpec::small()).await;
    let dir = tempfile::tempdir().unwrap();
    let src = at(&a, "alice");
    let (r, _) = run(&engine(), job(dir.path(), &src, &at(&full, "bob"), plain())).await;
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_name.as_str(), o.retryable),
        (JobStatus::Failed, "EXIT_OVERQUOTA", false),
        "{}",
        o.reason
    );
    assert!(o.reason.contains("over quota"), "{}", o.reason);

    let (r, _) = run(
        &engine(),
        job(dir.path(), &src, &at(&small, "bob"), plain()),
    )
    .await;
    let o = &r.outcome;
    assert_eq!(
        (o.status, o.exit_name.as_str(), o.retryable),
        (JobStatus::Failed, "EXIT_ERR_APPEND", true),
        "{}",
        o.reason
    );
    assert_eq!(
        r.summary.stats.messages_transferred,
        Some(corpus.messages - 2)
    );
    assert_eq!(r.summary.errors.len(), 2, "{:?}", r.summary.errors);
    let report = verify(&check(
        &src,
        &at(&small, "bob"),
        plain(),
        NativeOptions::default(),
    ))
    .await;
    let missing: u64 = report.folders.iter().map(|f| f.missing).sum();
    assert_eq!(
        (missing, report.complete),
        (2, false),
        "{}",
        report.to_text()
    );
}
