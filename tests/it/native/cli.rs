//! `pymap verify` as a user runs it: the real binary against a real Dovecot, its report and
//! its exit status (0 identical, 1 differs, 2 usage, 3 could not verify), passwords from
//! stdin or a file and never echoed.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use futures::StreamExt;
use pymap::worker::status::JobStatus;

use super::{assert_status, at, engine, job, plain, run};
use crate::{
    dovecot::{self, CorpusSpec, Dovecot, HOSTILE, Options, secret},
    harness::bin,
};

/// Runs `pymap verify <args>` with `stdin` as its input, in a clean environment.
async fn pymap_verify(dir: &std::path::Path, args: Vec<String>, stdin: String) -> Output {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(bin())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PYMAP_DATA_DIR", dir.join("data"))
            .current_dir(&dir)
            .arg("verify")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_command_exit_status_and_report() {
    let Some(server) = Dovecot::start(Options::tls()).await else {
        return;
    };
    let corpus = dovecot::fill(
        &server,
        "alice",
        &CorpusSpec {
            messages: 30,
            big: 0,
            ..CorpusSpec::small()
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (at(&server, "alice"), at(&server, "bob"));
    let (r, _) = run(&engine(), job(work.path(), &src, &dst, plain())).await;
    assert_status(&r, JobStatus::Succeeded);
    let port = server.port.to_string();
    let tls_port = server.tls_port.unwrap().to_string();
    let args = |host2_port: &str, tls2: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--host1",
            "127.0.0.1",
            "--user1",
            "alice",
            "--host2",
            "127.0.0.1",
            "--user2",
            "bob",
            "--passwords-stdin",
            "--tls1",
            "plain",
            "--tls2",
            tls2,
        ]
        .map(String::from)
        .into();
        a[1] = format!("127.0.0.1:{port}");
        a[5] = format!("127.0.0.1:{host2_port}");
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let passwords = format!("{}\n{}\n", secret("alice").expose(), secret("bob").expose());
    let dir = work.path();

    // Identical, over implicit TLS with the self-signed certificate accepted.
    let ok = pymap_verify(
        dir,
        args(&tls_port, "implicit", &["--accept-invalid-certs2"]),
        passwords.clone(),
    )
    .await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.starts_with(&format!(
            "IDENTICAL: 12 folders compared; host1 {} messages",
            corpus.messages
        )),
        "{out}"
    );
    // The same certificate, not accepted: could not verify.
    let cert = pymap_verify(dir, args(&tls_port, "implicit", &[]), passwords.clone()).await;
    assert_eq!(cert.status.code(), Some(3), "{}", text(&cert));
    assert!(
        text(&cert).contains("Verification failed") && text(&cert).contains("certificate"),
        "{}",
        text(&cert)
    );

    // One message fewer on the destination: differs, naming the folder; JSON says the same.
    let mut s = dovecot::session(&server, "bob").await;
    s.select("INBOX").await.unwrap();
    s.store("1", "+FLAGS.SILENT (\\Deleted)")
        .await
        .unwrap()
        .count()
        .await;
    s.expunge().await.unwrap().count().await;
    s.logout().await.ok();
    let differs = pymap_verify(dir, args(&port, "plain", &[]), passwords.clone()).await;
    assert_eq!(differs.status.code(), Some(1), "{}", text(&differs));
    let out = String::from_utf8_lossy(&differs.stdout);
    assert!(
        out.starts_with("DIFFERENT")
            && out.contains("[INBOX] -> [INBOX]")
            && out.contains("1 missing"),
        "{out}"
    );
    let json = pymap_verify(dir, args(&port, "plain", &["--json"]), passwords.clone()).await;
    assert_eq!(json.status.code(), Some(1), "{}", text(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["identical"], false);
    let inbox = report["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["host1"] == "INBOX")
        .unwrap();
    assert_eq!(inbox["missing"], 1, "{report}");

    // A wrong password: could not verify (3), not "differs".
    let wrong = pymap_verify(
        dir,
        args(&port, "plain", &[]),
        format!("{}\nnot bob's\n", secret("alice").expose()),
    )
    .await;
    assert_eq!(wrong.status.code(), Some(3), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("destination server failed"),
        "{}",
        text(&wrong)
    );
    // A bad flag value: usage (2), nothing compared.
    let mut bad = args(&port, "plain", &[]);
    bad[1] = "127.0.0.1:notaport".into();
    let usage = pymap_verify(dir, bad, passwords.clone()).await;
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
    assert!(text(&usage).contains("--host1"), "{}", text(&usage));

    // A password file (first line) works too, with a password full of shell specials.
    let passfile = dir.join("hostile.pass");
    std::fs::write(&passfile, format!("{HOSTILE}\nignored\n")).unwrap();
    let mut same = args(&port, "plain", &["--passfile1"]);
    same.push(passfile.display().to_string());
    same[3] = "hostile".into();
    same[7] = "hostile".into();
    let hostile = pymap_verify(dir, same, format!("{HOSTILE}\n")).await;
    assert_eq!(hostile.status.code(), Some(0), "{}", text(&hostile));

    for o in [&ok, &cert, &differs, &json, &wrong, &usage, &hostile] {
        let all = text(o);
        for pw in [secret("alice"), secret("bob"), secret("hostile")] {
            assert!(
                !all.contains(pw.expose()),
                "a password in the output: {all}"
            );
        }
    }
}
