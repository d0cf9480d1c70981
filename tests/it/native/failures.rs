//! Failures (logins, connections, TLS, quota) and their statuses and reasons; the hostile
//! password; self-signed TLS.

use std::time::Instant;

use pymap::{
    service::{
        batch::Secret,
        hosts::HostSpec,
        imapsync_options::{MigrationOptions, TlsMode},
    },
    worker::{
        native::{AuthMethod, NativeEngine, NativeOptions, verify},
        status::JobStatus,
    },
};

use super::{Side, assert_identical, assert_status, at, check, engine, job, plain, run};
use crate::dovecot::{self, CorpusSpec, Dovecot, HOSTILE, Options};

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
            spec.password1 = Secret::new("wrong password");
        } else {
            spec.password2 = Secret::new("wrong password");
        }
        spec
    };
    let both = {
        let mut s = wrong(1);
        s.password2 = Secret::new("wrong too");
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
        assert_status(&r, JobStatus::Succeeded);
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
        assert_status(&back, JobStatus::Succeeded);
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
    assert_status(&r, JobStatus::Succeeded);
    let lines = rec.lines.lock().unwrap().join("\n");
    assert!(
        lines.contains("(implicit TLS)") && lines.contains("(STARTTLS)"),
        "{lines}"
    );
    assert_identical(&verify(&check(&src, &dst, implicit, native)).await);
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
