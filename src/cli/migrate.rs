//! `pymap sync` (one migration in the foreground, with a progress bar and the final
//! report) and `pymap batch` (submit a task for the server's worker pool).

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::pair::PairArgs;
use crate::{
    app,
    config::Config,
    db,
    service::{
        self, Actor, ServiceError,
        imapsync_options::{MigrationOptions, parse_extra_args},
        tasks::{BatchInput, NewTask, TaskEnv},
    },
    worker::{
        engine::{JobObserver, JobSpec},
        imapsync::parse::Progress,
        status::JobStatus,
    },
};

#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    #[arg(long, default_value = "imapsync", value_parser = ["imapsync", "native"])]
    pub engine: String,
    /// Simulate: change nothing on the destination.
    #[arg(long)]
    pub dry: bool,
    /// Only check that both logins work.
    #[arg(long)]
    pub justlogin: bool,
    /// Extra imapsync arguments (allowlisted), e.g. "--exclude ^Trash$".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub extra_args: String,
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// Batch file (text `user1 password1 user2 password2` lines, or CSV); `-` for stdin.
    pub file: PathBuf,
    #[arg(long)]
    pub source: String,
    #[arg(long)]
    pub destination: String,
    /// User who owns the task.
    #[arg(long, default_value = "admin")]
    pub owner: String,
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long, default_value = "imapsync", value_parser = ["imapsync", "native"])]
    pub engine: String,
    #[arg(long)]
    pub dry: bool,
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub extra_args: String,
}

/// Draws the bar from progress reports.
struct Bar(ProgressBar);

impl JobObserver for Bar {
    fn progress(&self, _job: i64, p: &Progress, _rare: bool) {
        if let Some(total) = p.messages_total {
            self.0.set_length(total);
        }
        self.0.set_position(p.messages_done);
        if let (Some(i), Some(n)) = (p.folder_index, p.folder_count) {
            self.0.set_message(format!(
                "folder {i}/{n} {}",
                p.folder_name.as_deref().unwrap_or("")
            ));
        }
    }
    fn line(&self, _job: i64, _line: &str) {}
}

pub async fn sync(args: SyncArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mut options = MigrationOptions {
        dry_run: args.dry,
        just_login: args.justlogin,
        ..Default::default()
    };
    args.pair.apply(&mut options);
    options.extra_args = parse_extra_args(&args.extra_args).map_err(|errs| {
        anyhow::anyhow!(
            "--extra-args: {}",
            errs.iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    if let Err(errs) = options.validate() {
        anyhow::bail!(
            "{}",
            errs.iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let engine = app::engines(config)
        .get(&args.engine)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pair = args.pair.resolve()?;
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let log_path = config
        .log_dir()
        .join("cli")
        .join(format!("sync-{stamp}-{}.log", std::process::id()));
    let run_dir = config.run_dir();
    crate::worker::run_dir::prepare(&run_dir, false).map_err(anyhow::Error::msg)?;
    let spec = JobSpec {
        job_id: 0,
        task_id: 0,
        host1: pair.host1,
        user1: pair.user1,
        password1: pair.password1,
        host2: pair.host2,
        user2: pair.user2,
        password2: pair.password2,
        options,
        log_path: log_path.clone(),
        work_dir: run_dir.join(format!("cli-{}", std::process::id())),
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} msgs ({eta}) {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        on_signal.cancel();
    });
    let result = engine.run(spec, Arc::new(Bar(bar.clone())), cancel).await;
    crate::worker::run_dir::remove_if_empty(&run_dir);
    bar.finish_and_clear();
    let o = &result.outcome;
    let s = &result.summary.stats;
    println!("status:      {}", o.status);
    println!("reason:      {}", o.reason);
    println!(
        "exit:        {} ({})",
        o.exit_code.map_or("-".into(), |c| c.to_string()),
        o.exit_name
    );
    if let Some(n) = s.messages_transferred {
        println!(
            "transferred: {n} messages, {} bytes",
            s.bytes_transferred.unwrap_or(0)
        );
    }
    if let Some(n) = s.messages_skipped {
        println!("skipped:     {n} messages");
    }
    for e in result.summary.errors.iter().take(10) {
        println!("error:       {e}");
    }
    println!("log:         {}", log_path.display());
    Ok(if o.status == JobStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn batch(args: BatchArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let bytes = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?
    };
    let conn = db::open(config).await?;
    let secret = crate::keys::load_or_create_secret(config)?;
    let keys = crate::keys::Keys::derive(&secret);
    let engines = app::engines(config);
    let env = TaskEnv {
        db: &conn,
        config,
        credentials_key: &keys.credentials,
        engines: &engines,
    };
    let new = NewTask {
        label: args.label,
        source: args.source,
        destination: args.destination,
        engine: args.engine,
        options: MigrationOptions {
            dry_run: args.dry,
            ..Default::default()
        },
        extra_args: args.extra_args,
        batch: BatchInput::Auto(bytes),
        owner: Some(args.owner),
    };
    match service::tasks::create(&env, &Actor::cli(), new).await {
        Ok(task) => {
            println!("{}", task.id);
            eprintln!(
                "task {} queued: {} mailboxes, {} → {}",
                task.id, task.jobs_total, task.source, task.destination
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ServiceError::InvalidMany(errors)) => {
            for e in errors {
                eprintln!("pymap: {e}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e @ (ServiceError::Invalid { .. } | ServiceError::Conflict(_))) => {
            eprintln!("pymap: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
