//! The engine bench, run by `scripts/bench-engine.sh` (ignored in normal test runs).
//!
//! When `imapsync` is on PATH, the same copies are also made by pymap's imapsync runner
//! (`ImapsyncEngine`, the argv pymap uses in production) and verified the same way, so the
//! two engines are compared in one run on the same corpus, servers and delays.

use std::{sync::Arc, time::Instant};

use pymap::{
    service::hosts::HostSpec,
    worker::{
        engine::Engine,
        imapsync::runner::ImapsyncEngine,
        native::{NativeEngine, NativeOptions, verify},
    },
};
use tokio_util::sync::CancellationToken;

use super::{Recorder, Side, assert_identical, at, check, job, plain, run};
use crate::dovecot::{self, CorpusSpec, Dovecot, Options};

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
        let engines: &[&str] = match which("imapsync") {
            Some(_) => &["native", "imapsync"],
            None => &["native"],
        };
        for &rtt in &rtts {
            let mut rates = Vec::new();
            for &engine in engines {
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
                let child = serde_json::json!({"engine": engine, "port1": h1.port, "user1": user, "port2": h2.port, "user2": "bob"});
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
                let rate = corpus.messages as f64 / m.secs;
                rates.push(rate);
                println!(
                    "| {engine} | {} | {:.0} | {rtt} | {:.1} | {rate:.0} | {:.1} | {:.0} | {:.1} | {} |",
                    corpus.messages,
                    corpus.bytes as f64 / 1e6,
                    m.secs,
                    corpus.bytes as f64 / 1e6 / m.secs,
                    m.max_rss_kib as f64 / 1024.0,
                    m.cpu_secs,
                    match (report.identical, engine) {
                        (true, _) => "identical".to_owned(),
                        // imapsync's defaults may leave messages behind (see the fixtures):
                        // reported as found, not asserted.
                        (false, "imapsync") => format!(
                            "DIFFERENT, {} copied: {}",
                            m.copied,
                            report
                                .to_text()
                                .lines()
                                .take(3)
                                .collect::<Vec<_>>()
                                .join(" / ")
                        ),
                        (false, _) => "DIFFERENT".to_owned(),
                    }
                );
                if engine == "native" {
                    assert_eq!(m.copied, corpus.messages, "{}", m.reason);
                    assert_identical(&report);
                }
            }
            if let [native, imapsync] = rates[..] {
                println!(
                    "|  | native ÷ imapsync at {rtt} ms: {:.1}× the messages per second |  |  |  |  |  |  |  |  |",
                    native / imapsync
                );
            }
        }
        if engines.len() == 1 {
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
            "native::bench::bench_child",
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
        // libtest prints `test … ... ` before the test's own output, on the same line.
        .find_map(|l| l.split_once("BENCH_RESULT ").map(|(_, r)| r))
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
    let r = match v["engine"].as_str().unwrap_or("native") {
        "imapsync" => {
            let engine = ImapsyncEngine::locate(None).expect("imapsync on PATH");
            let rec = Arc::new(Recorder::default());
            engine.run(spec, rec, CancellationToken::new()).await
        }
        _ => run(&NativeEngine::default(), spec).await.0,
    };
    let result = serde_json::json!({
        "secs": started.elapsed().as_secs_f64(),
        "copied": r.summary.stats.messages_transferred,
        "reason": r.outcome.reason,
    });
    println!("BENCH_RESULT {result}");
}
