//! `pymap dev …`: developer tools. `dev seed` fills a database with realistic finished
//! tasks and jobs, for benchmarks and for trying the UI with a lot of data.

use std::{process::ExitCode, time::Instant};

use chrono::{Duration, Utc};
use clap::{Args, Subcommand};
use entity::{job, task};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};

use crate::{
    config::Config,
    db,
    service::{self, Actor, Role, ServiceError, accounts},
    worker::status::JobStatus,
};

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Fill the database with finished tasks and jobs (nothing is queued, so a running
    /// server has no work to pick up).
    Seed(SeedArgs),
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    #[arg(long, default_value_t = 1000)]
    pub tasks: u64,
    #[arg(long, default_value_t = 10)]
    pub jobs_per_task: u64,
    /// Spread the tasks over this many users (`seed-user-1` …, created when missing).
    #[arg(long, default_value_t = 10)]
    pub users: u64,
    /// Also create an API token for this user and print it (expires in 7 days).
    #[arg(long, value_name = "USER")]
    pub token_for: Option<String>,
}

pub async fn run(cmd: DevCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let conn = db::open(config).await?;
    let configured = config
        .admin_password
        .as_ref()
        .map(|s| s.expose().to_string());
    if let Some(generated) = accounts::ensure_bootstrap_admin(&conn, configured.as_deref()).await? {
        eprintln!("created user admin with password {generated}");
    }
    match cmd {
        DevCommand::Seed(args) => seed(&conn, &args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A small deterministic generator (xorshift64*): the same seed gives the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

async fn seed_users(db: &DatabaseConnection, n: u64) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for i in 1..=n.max(1) {
        let name = format!("seed-user-{i}");
        let user = match accounts::find_by_name(db, &name).await? {
            Some(u) => u,
            None => {
                let password = service::passwords::generate();
                match accounts::create(db, &Actor::cli(), &name, &password, Role::User).await {
                    Ok(u) => u,
                    Err(ServiceError::Conflict(_)) => accounts::find_by_name(db, &name)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("user {name} vanished"))?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        ids.push(user.id);
    }
    Ok(ids)
}

fn job_outcome(rng: &mut Rng) -> (JobStatus, Option<i32>, &'static str, &'static str) {
    match rng.below(100) {
        0..=79 => (
            JobStatus::Succeeded,
            Some(0),
            "EX_OK",
            "Finished: every message is on the destination.",
        ),
        80..=87 => (
            JobStatus::Warning,
            Some(0),
            "EX_OK",
            "Finished, but 3 messages could not be copied (see the log).",
        ),
        88..=91 => (
            JobStatus::Failed,
            Some(161),
            "EXIT_AUTHENTICATION_FAILURE_USER1",
            "Login failed on the source: check user name and password.",
        ),
        92..=94 => (
            JobStatus::Failed,
            Some(102),
            "EXIT_CONNECTION_FAILURE_HOST2",
            "Could not connect to the destination server.",
        ),
        _ => (
            JobStatus::Cancelled,
            None,
            "CANCELLED",
            "Cancelled before it started.",
        ),
    }
}

async fn seed(db: &DatabaseConnection, args: &SeedArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let owners = seed_users(db, args.users).await?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ args.tasks ^ (args.jobs_per_task << 32));
    let now = Utc::now();
    let options = serde_json::to_string(&service::imapsync_options::MigrationOptions::default())?;
    let mut jobs_written = 0u64;
    let per_txn = 100;
    let mut t = 0;
    while t < args.tasks {
        let txn = db::write_txn(db).await?;
        for _ in 0..per_txn.min(args.tasks - t) {
            t += 1;
            let created =
                now - Duration::minutes((args.tasks - t) as i64 * 13 + rng.below(10) as i64);
            let owner = owners[rng.below(owners.len() as u64) as usize];
            let customer = rng.below(400);
            let source = format!("mail{}.old-provider.example", rng.below(20));
            let destination = format!("imap{}.new-host.example.net:993", rng.below(5));
            let mut rows = Vec::with_capacity(args.jobs_per_task as usize);
            let mut counts = [0i32; 7];
            let mut run_time = 0.0;
            for p in 1..=args.jobs_per_task {
                let (status, exit_code, exit_name, reason) = job_outcome(&mut rng);
                counts[JobStatus::ALL
                    .iter()
                    .position(|s| *s == status)
                    .unwrap_or(0)] += 1;
                let ran = status != JobStatus::Cancelled;
                let messages = if ran {
                    50 + rng.below(20_000) as i64
                } else {
                    0
                };
                let bytes = messages * (20_000 + rng.below(80_000) as i64);
                let secs = if ran {
                    messages as f64 / 40.0 + 3.0
                } else {
                    0.0
                };
                run_time += secs;
                let user = format!("user{p}@customer{customer}.example.com");
                rows.push(job::ActiveModel {
                    position: Set(p as i32),
                    user1: Set(user.clone()),
                    user2: Set(user),
                    password1: Set(None),
                    password2: Set(None),
                    host1: Set(source.clone()),
                    host2: Set(destination.clone()),
                    extra_args: Set(None),
                    status: Set(status.as_str().into()),
                    attempts: Set(if ran { 1 } else { 0 }),
                    next_attempt_at: Set(None),
                    cancel_requested: Set(false),
                    claimed_by: Set(None),
                    heartbeat_at: Set(None),
                    exit_code: Set(exit_code),
                    exit_name: Set(Some(exit_name.into())),
                    reason: Set(Some(reason.into())),
                    errors: Set(Some("[]".into())),
                    messages_done: Set(messages),
                    messages_total: Set(Some(messages)),
                    bytes_done: Set(bytes),
                    bytes_total: Set(Some(bytes)),
                    folder_index: Set(None),
                    folder_count: Set(Some(12)),
                    folder_name: Set(None),
                    eta_secs: Set(None),
                    messages_transferred: Set(ran.then_some(messages)),
                    messages_skipped: Set(ran.then_some(0)),
                    errors_count: Set(Some(if status == JobStatus::Warning { 3 } else { 0 })),
                    bytes_transferred: Set(ran.then_some(bytes)),
                    duration_secs: Set(ran.then_some(secs)),
                    sync_ok: Set(Some(status == JobStatus::Succeeded)),
                    unidentified: Set(None),
                    summary: Set(None),
                    log_path: Set(None),
                    created_at: Set(created),
                    started_at: Set(ran.then_some(created)),
                    finished_at: Set(Some(created + Duration::seconds(secs as i64))),
                    updated_at: Set(created + Duration::seconds(secs as i64)),
                    ..Default::default()
                });
            }
            let count =
                |s: JobStatus| counts[JobStatus::ALL.iter().position(|x| *x == s).unwrap_or(0)];
            let status = if count(JobStatus::Failed) > 0 {
                JobStatus::Failed
            } else if count(JobStatus::Cancelled) > 0 {
                JobStatus::Cancelled
            } else if count(JobStatus::Warning) > 0 {
                JobStatus::Warning
            } else {
                JobStatus::Succeeded
            };
            let finished = created + Duration::seconds(run_time as i64 / 4 + 1);
            let task = task::ActiveModel {
                owner_id: Set(owner),
                label: Set(format!("Customer {customer} — batch {t}")),
                source_typed: Set(source.clone()),
                destination_typed: Set(destination.clone()),
                source: Set(source),
                destination: Set(destination),
                engine: Set("imapsync".into()),
                options: Set(options.clone()),
                status: Set(status.as_str().into()),
                jobs_total: Set(args.jobs_per_task as i32),
                jobs_queued: Set(0),
                jobs_running: Set(0),
                jobs_succeeded: Set(count(JobStatus::Succeeded)),
                jobs_warning: Set(count(JobStatus::Warning)),
                jobs_failed: Set(count(JobStatus::Failed)),
                jobs_cancelled: Set(count(JobStatus::Cancelled)),
                cancel_requested: Set(false),
                archived: Set(rng.below(10) == 0),
                created_at: Set(created),
                started_at: Set(Some(created)),
                finished_at: Set(Some(finished)),
                run_time_secs: Set(run_time as i64),
                credentials_wiped_at: Set(Some(finished)),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
            let rows: Vec<job::ActiveModel> = rows
                .into_iter()
                .map(|mut r| {
                    r.task_id = Set(task.id);
                    r
                })
                .collect();
            jobs_written += rows.len() as u64;
            // 44 columns a row: 300 rows stay below every backend's parameter limit.
            for chunk in rows.chunks(300) {
                job::Entity::insert_many(chunk.to_vec()).exec(&txn).await?;
            }
        }
        txn.commit().await?;
        if t % 1000 == 0 || t == args.tasks {
            eprintln!("  {t}/{} tasks", args.tasks);
        }
    }
    eprintln!(
        "seeded {} tasks and {jobs_written} jobs for {} users in {:.1}s",
        args.tasks,
        owners.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(name) = &args.token_for {
        let user = accounts::find_by_name(db, name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user named {name}"))?;
        let actor = service::auth::actor_for(&user, None);
        let token =
            service::tokens::create(db, &actor, "dev seed", Some(Utc::now() + Duration::days(7)))
                .await?;
        println!("{}", token.secret);
    }
    Ok(())
}
