//! One native job from start to end: log in on both sides, map and create folders, copy
//! folders in parallel (each worker with its own pair of connections), reconnect and resume
//! on dropped connections, and classify the end.
//!
//! Resuming needs no state: every folder attempt starts by comparing both sides, so what
//! an interrupted attempt (or a cancelled or crashed run) already copied is found on the
//! destination and not copied again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    ErrorKind, NativeError, NativeOptions, Side,
    conn::{Arg, Conn, Endpoint},
    copier::{self, Ctx, FolderProgress},
    folders::{self, FolderFilter, FolderPlan, Mapping},
    identity::MessageFilter,
    outcome::{self, End},
    report::Report,
    wire::Resp,
};
use crate::{
    service::{
        hosts::{Provider, provider_of},
        imapsync_options::{MigrationOptions, TlsMode},
    },
    worker::{
        engine::{JobObserver, JobSpec, RunResult},
        imapsync::{
            exit::Outcome,
            parse::RunSummary,
            runner::{INVALID_JOB, NOT_STARTED, SPAWN_FAILED},
        },
        status::JobStatus,
    },
};

/// The two endpoints of a job or a verification. A certificate is accepted unverified
/// when the job asks for it (per side) or the engine is configured so for every job.
#[allow(clippy::too_many_arguments)]
pub fn endpoints(
    host1: &crate::service::hosts::HostSpec,
    user1: &str,
    password1: &crate::service::batch::Secret,
    host2: &crate::service::hosts::HostSpec,
    user2: &str,
    password2: &crate::service::batch::Secret,
    options: &MigrationOptions,
    native: &NativeOptions,
) -> (Endpoint, Endpoint) {
    let timeout = options
        .timeout_secs
        .map_or(native.timeout, |s| Duration::from_secs(u64::from(s)));
    let make = |side,
                host: &crate::service::hosts::HostSpec,
                user: &str,
                password: &crate::service::batch::Secret,
                tls: TlsMode,
                accept,
                auth| {
        // Port 993 is implicit TLS unless told otherwise (imapsync does the same).
        let tls = if tls == TlsMode::Auto && host.port == Some(993) {
            TlsMode::Implicit
        } else {
            tls
        };
        Endpoint {
            side,
            host: host.clone(),
            user: user.to_owned(),
            password: password.clone(),
            tls,
            accept_invalid_certs: accept,
            auth,
            timeout,
            connect_timeout: timeout.min(native.connect_timeout),
        }
    };
    (
        make(
            Side::Host1,
            host1,
            user1,
            password1,
            options.tls1,
            options.accept_invalid_certs1 || native.accept_invalid_certs1,
            native.auth1,
        ),
        make(
            Side::Host2,
            host2,
            user2,
            password2,
            options.tls2,
            options.accept_invalid_certs2 || native.accept_invalid_certs2,
            native.auth2,
        ),
    )
}

/// Logs in on both sides at once; when both fail on credentials, says so.
pub async fn open_both(ep1: &Endpoint, ep2: &Endpoint) -> Result<(Conn, Conn), End> {
    match tokio::join!(Conn::open(ep1), Conn::open(ep2)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(a), Err(b)) if a.kind == ErrorKind::Auth && b.kind == ErrorKind::Auth => {
            Err(End::BothAuth(a, b))
        }
        (Err(a), _) => Err(End::Fatal(a)),
        (_, Err(b)) => Err(End::Fatal(b)),
    }
}

fn failed(status: JobStatus, name: &str, reason: String) -> RunResult {
    RunResult {
        outcome: Outcome {
            status,
            exit_code: None,
            exit_name: name.to_owned(),
            reason,
            retryable: false,
        },
        summary: RunSummary::default(),
    }
}

pub async fn run_job(
    spec: JobSpec,
    native: NativeOptions,
    observer: Arc<dyn JobObserver>,
    cancel: CancellationToken,
) -> RunResult {
    let report = match Report::open(&spec.log_path, observer, spec.job_id) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            let reason = format!(
                "Could not open the job log {}: {e}.",
                spec.log_path.display()
            );
            return failed(JobStatus::Failed, SPAWN_FAILED, reason);
        }
    };
    // The native engine needs no work directory; one left by an earlier imapsync attempt goes.
    if spec.work_dir.exists() {
        let _ = std::fs::remove_dir_all(&spec.work_dir);
    }
    let o = &spec.options;
    if cancel.is_cancelled() {
        report.pymap("cancel requested before the native engine started");
        return failed(
            JobStatus::Cancelled,
            NOT_STARTED,
            "Cancelled before the native engine started.".into(),
        );
    }
    let refuse = |reason: String| {
        report.pymap(&reason);
        failed(JobStatus::Failed, INVALID_JOB, reason)
    };
    if let Err(errors) = o.validate() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return refuse(format!("Invalid options: {}.", list.join("; ")));
    }
    if o.delete_on_destination {
        return refuse(
            "The native engine never deletes messages on the destination (delete_on_destination is set): \
             turn the option off or use imapsync for this job."
                .into(),
        );
    }
    let filter = match FolderFilter::new(&o.include_folders, &o.exclude_folders) {
        Ok(f) => f,
        Err(e) => return refuse(format!("Invalid folder filter: {e}.")),
    };
    let (ep1, ep2) = endpoints(
        &spec.host1,
        &spec.user1,
        &spec.password1,
        &spec.host2,
        &spec.user2,
        &spec.password2,
        o,
        &native,
    );
    report.pymap(&format!(
        "native IMAP engine {}: host1 {} user {} -> host2 {} user {}{}{}{}",
        super::VERSION,
        spec.host1,
        spec.user1,
        spec.host2,
        spec.user2,
        if o.dry_run { " (dry run)" } else { "" },
        if o.just_login {
            " (login test only)"
        } else {
            ""
        },
        if o.just_folders {
            " (folders only)"
        } else {
            ""
        },
    ));
    if !o.extra_args.is_empty() {
        report.pymap(&format!(
            "{} imapsync extra argument(s) do not apply to the native engine and are ignored",
            o.extra_args.len()
        ));
    }
    let provider1 = provider_of(&spec.host1);
    let work = run_inner(&ep1, &ep2, o, &native, filter, provider1, report.clone());
    let end = tokio::select! {
        end = work => end,
        () = cancel.cancelled() => {
            report.pymap("cancel requested: connections closed, messages in transit discarded by the server");
            End::Cancelled
        }
    };
    let summary = report.summary(o.dry_run, o.just_login, o.just_folders);
    let outcome = outcome::classify(&end, &summary, &report.counters());
    report.pymap(&format!(
        "native engine ended: {} ({}): {}",
        outcome.status, outcome.exit_name, outcome.reason
    ));
    report.flush();
    RunResult { outcome, summary }
}

async fn run_inner(
    ep1: &Endpoint,
    ep2: &Endpoint,
    o: &MigrationOptions,
    native: &NativeOptions,
    filter: FolderFilter,
    provider1: Provider,
    report: Arc<Report>,
) -> End {
    let (mut c1, mut c2) = match open_both(ep1, ep2).await {
        Ok(c) => c,
        Err(end) => return end,
    };
    for (c, ep) in [(&c1, ep1), (&c2, ep2)] {
        report.line(&format!(
            "{}: {}:{} ({}) logged in as {}; server says: {}",
            c.side,
            ep.host.host,
            ep.port(),
            c.security,
            ep.user,
            c.greeting
        ));
    }
    if o.just_login {
        tokio::join!(c1.logout(), c2.logout());
        return End::Done;
    }
    let (l1, l2) = match tokio::try_join!(folders::list(&mut c1), folders::list(&mut c2)) {
        Ok(l) => l,
        Err(e) => return End::Fatal(e),
    };
    let plan = folders::plan(&l1, &l2, &filter, provider1);
    report.line(&format!(
        "Host1: {} folders (delimiter {:?}, prefix {:?}); Host2: {} folders (delimiter {:?}, prefix {:?}); {} to sync",
        l1.folders.len(),
        l1.delim.unwrap_or('/'),
        l1.prefix,
        l2.folders.len(),
        l2.delim.unwrap_or('/'),
        l2.prefix,
        plan.folders.len()
    ));
    for (name, why) in &plan.skipped {
        report.line(&format!("Host1: folder [{name}] skipped: {why}"));
    }
    let sizes = match status_sizes(&mut c1, &plan).await {
        Ok(s) => s,
        Err(e) => return End::Fatal(e),
    };
    let total: u64 = sizes.values().map(|s| s.0).sum();
    let bytes: Option<u64> = sizes.values().map(|s| s.1).sum();
    report.totals(total, bytes);
    report.count(|c| c.folders_total = plan.folders.len() as u32);
    let mut creatable = Vec::new();
    for m in &plan.folders {
        match ensure_folder(&mut c2, m, o.dry_run, &report).await {
            Ok(true) => creatable.push(m.clone()),
            Ok(false) => {}
            Err(e) => return End::Fatal(e),
        }
    }
    if let Err(e) = subscribe(&mut c2, &plan.subscribe, o.dry_run, &report).await {
        return End::Fatal(e);
    }
    if o.just_folders {
        report.count(|c| c.folders_done = creatable.len() as u32);
        tokio::join!(c1.logout(), c2.logout());
        return End::Done;
    }
    let filter = MessageFilter::new(o.max_age_days, o.min_age_days, o.max_size_bytes);
    let ctx = Arc::new(Ctx::new(
        native.max_bytes_in_flight,
        native.pipeline_depth,
        o.dry_run,
        filter,
        report.clone(),
    ));
    let count = plan.folders.len() as u32;
    let mut queue: Vec<(u32, Mapping)> = plan
        .folders
        .iter()
        .enumerate()
        .filter(|(_, m)| creatable.contains(m))
        .map(|(i, m)| (i as u32 + 1, m.clone()))
        .collect();
    // Biggest folders first, so parallel workers finish together.
    queue.sort_by_key(|(_, m)| std::cmp::Reverse(sizes.get(&m.src).map_or(0, |s| s.0)));
    let queue = Arc::new(Mutex::new(VecDeque::from(queue)));
    let workers = native.parallel_folders.clamp(1, 16);
    let mut set = JoinSet::new();
    let mut first = Some((c1, c2));
    for _ in 0..workers {
        let w = Worker {
            ep1: ep1.clone(),
            ep2: ep2.clone(),
            queue: queue.clone(),
            ctx: ctx.clone(),
            count,
            max_reconnects: native.max_reconnects,
        };
        set.spawn(w.run(first.take()));
    }
    // Dropping the set (cancel, fatal error) aborts the other workers.
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return End::Fatal(e),
            Err(e) => {
                return End::Fatal(NativeError::new(
                    Side::Host1,
                    ErrorKind::Protocol,
                    format!("internal error: a folder worker failed: {e}"),
                ));
            }
        }
    }
    End::Done
}

/// STATUS of every planned source folder, pipelined: (messages, bytes when the server has
/// STATUS=SIZE).
async fn status_sizes(
    c1: &mut Conn,
    plan: &FolderPlan,
) -> Result<HashMap<String, (u64, Option<u64>)>, NativeError> {
    let items: &[u8] = if c1.has("STATUS=SIZE") {
        b" (MESSAGES SIZE)"
    } else {
        b" (MESSAGES)"
    };
    let mut tags = Vec::new();
    for m in &plan.folders {
        tags.push(
            c1.send(&[Arg::Raw(b"STATUS "), Arg::Mailbox(&m.src), Arg::Raw(items)])
                .await?,
        );
    }
    let mut out = HashMap::new();
    for tag in tags {
        for r in c1.finish(&tag).await?.data {
            let Resp::Data { name, values, .. } = r else {
                continue;
            };
            if name != "STATUS" || values.len() < 2 {
                continue;
            }
            let Some(raw) = values[0].text() else {
                continue;
            };
            let folder = super::utf7::decode(&raw).unwrap_or(raw);
            let list = values[1].list().unwrap_or_default();
            let get = |key: &str| {
                list.chunks(2)
                    .find(|kv| kv[0].text().is_some_and(|k| k.eq_ignore_ascii_case(key)))
                    .and_then(|kv| kv.get(1)?.number())
            };
            out.insert(folder, (get("MESSAGES").unwrap_or(0), get("SIZE")));
        }
    }
    Ok(out)
}

/// Subscribes to `names` on the destination (pipelined).
async fn subscribe(
    c2: &mut Conn,
    names: &[String],
    dry_run: bool,
    report: &Report,
) -> Result<(), NativeError> {
    if dry_run {
        for name in names {
            report.line(&format!("Host2: would subscribe to [{name}] (dry run)"));
        }
        return Ok(());
    }
    let mut tags = Vec::new();
    for name in names {
        tags.push((
            c2.send(&[Arg::Raw(b"SUBSCRIBE "), Arg::Mailbox(name)])
                .await?,
            name,
        ));
    }
    for (tag, name) in tags {
        let done = c2.finish(&tag).await?;
        if done.status == super::wire::Status::Ok {
            report.line(&format!("Host2: subscribed to [{name}]"));
        } else {
            report.error(
                &c2.command_error(&format!("SUBSCRIBE [{name}]"), &done)
                    .to_string(),
                false,
            );
        }
    }
    Ok(())
}

/// Creates a missing destination folder. `Ok(false)`: it could not be, skip it.
async fn ensure_folder(
    c2: &mut Conn,
    m: &Mapping,
    dry_run: bool,
    report: &Report,
) -> Result<bool, NativeError> {
    if m.exists_on_dst {
        return Ok(true);
    }
    if dry_run {
        report.line(&format!("Host2: would create folder [{}] (dry run)", m.dst));
        return Ok(true);
    }
    let done = c2
        .run(&[Arg::Raw(b"CREATE "), Arg::Mailbox(&m.dst)])
        .await?;
    let exists = done
        .code
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("ALREADYEXISTS"));
    if done.status == super::wire::Status::Ok || exists {
        report.line(&format!("Host2: created folder [{}]", m.dst));
        return Ok(true);
    }
    let err = c2.command_error(&format!("CREATE [{}]", m.dst), &done);
    if err.kind == ErrorKind::Quota {
        return Err(err);
    }
    report.error(&format!("{err}; its messages were not copied"), false);
    Ok(false)
}

struct Worker {
    ep1: Endpoint,
    ep2: Endpoint,
    queue: Arc<Mutex<VecDeque<(u32, Mapping)>>>,
    ctx: Arc<Ctx>,
    count: u32,
    max_reconnects: u32,
}

impl Worker {
    fn next(&self) -> Option<(u32, Mapping)> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    async fn run(self, mut conns: Option<(Conn, Conn)>) -> Result<(), NativeError> {
        let report = &self.ctx.report;
        while let Some((index, m)) = self.next() {
            let label = format!("Folder {index}/{}", self.count);
            report.folder(index, self.count, &m.src);
            let mut progress = FolderProgress::default();
            let mut attempt = 0;
            loop {
                let (c1, c2) = match conns.as_mut() {
                    Some(c) => c,
                    None => match open_both(&self.ep1, &self.ep2).await {
                        Ok(c) => conns.insert(c),
                        Err(End::Fatal(e)) if e.transient() && attempt < self.max_reconnects => {
                            attempt += 1;
                            self.backoff(&e, attempt).await;
                            continue;
                        }
                        Err(End::Fatal(e) | End::BothAuth(e, _)) => return Err(e),
                        Err(_) => return Ok(()),
                    },
                };
                match copier::copy_folder(c1, c2, &m, &label, &self.ctx, &mut progress).await {
                    Ok(r) => {
                        copier::account(report, &r, &progress);
                        break;
                    }
                    Err(e) if e.transient() && attempt < self.max_reconnects => {
                        // The pair is in an unknown state (half-written literal...): replace both.
                        conns = None;
                        attempt += 1;
                        self.backoff(&e, attempt).await;
                    }
                    Err(e) if e.kind == ErrorKind::Command => {
                        report.error(&format!("folder [{}]: {e}", m.src), false);
                        // A refused FETCH may have stopped an APPEND half-way: start afresh.
                        conns = None;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some((c1, c2)) = conns {
            tokio::join!(c1.logout(), c2.logout());
        }
        Ok(())
    }

    async fn backoff(&self, e: &NativeError, attempt: u32) {
        let report = &self.ctx.report;
        report.count(|c| match e.side {
            Side::Host1 => c.reconnections_host1 += 1,
            Side::Host2 => c.reconnections_host2 += 1,
        });
        let wait = Duration::from_secs(1 << (attempt - 1).min(5));
        report.line(&format!(
            "Info: {e}; reconnecting in {wait:?} (attempt {attempt}/{}), the folder resumes where it stopped",
            self.max_reconnects
        ));
        tokio::time::sleep(wait).await;
    }
}
