//! Command-line interface: `serve`, `migrate`, `config show`, `user …`, `healthcheck`,
//! `sync`, `verify` and `batch`.

mod dev;
mod migrate;
mod pair;
mod verify;

use std::{io::BufRead, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    config::{Loaded, Overrides, render_show},
    db,
    service::{self, Actor, Role, ServiceError},
    telemetry,
};

#[derive(Parser, Debug)]
#[command(name = "pymap", version, about = "Migrate IMAP mailboxes in batches")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that override configuration for every command.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Configuration file (default ./config.json; also PYMAP_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (SQLite database, secret key, logs).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Database URL (sqlite://… or postgres://…).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Redis URL for shared sessions, throttling and events.
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web server (and, later, the worker pool).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8000.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Migrate one mailbox in the foreground (exit 0 only on success).
    Sync(migrate::SyncArgs),
    /// Compare two mailboxes (read-only): exit 0 identical, 1 differs, 3 could not verify.
    Verify(verify::VerifyArgs),
    /// Submit a batch file as a task for the server's workers; prints the task id.
    Batch(migrate::BatchArgs),
    /// Developer tools (benchmark data).
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Exit 0 only when the running server reports ready (for container HEALTHCHECKs).
    Healthcheck {
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration with the source of each value (secrets redacted).
    Show,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (password prompted, or read from stdin).
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user: they can no longer log in and their sessions end.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Change a user's role.
    Role {
        name: String,
        #[arg(value_parser = ["admin", "user"])]
        role: String,
    },
}

impl Cli {
    pub fn overrides(&self) -> Overrides {
        let listen = match &self.command {
            Command::Serve { listen } => listen.clone(),
            _ => None,
        };
        Overrides {
            config: self.global.config.clone(),
            listen,
            data_dir: self.global.data_dir.clone(),
            log_dir: self.global.log_dir.clone(),
            database_url: self.global.database_url.clone(),
            redis_url: self.global.redis_url.clone(),
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| anyhow::anyhow!("cannot prompt for a password ({e}); use --password-stdin"))?;
    let second = rpassword::prompt_password("Repeat: ")?;
    anyhow::ensure!(first == second, "the passwords differ");
    Ok(first)
}

/// Run a command; the exit code says how it went (2 = configuration).
pub async fn dispatch(cli: Cli, loaded: Loaded) -> ExitCode {
    let serving = matches!(cli.command, Command::Serve { .. });
    let _guard = match telemetry::init(&loaded.config, serving) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("pymap: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    match run_command(cli.command, loaded).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pymap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(command: Command, loaded: Loaded) -> anyhow::Result<ExitCode> {
    let config = loaded.config.clone();
    match command {
        Command::Config(ConfigCommand::Show) => {
            print!("{}", render_show(&loaded));
        }
        Command::Healthcheck { timeout_secs } => {
            let addr = crate::healthcheck::probe_addr(config.listen);
            return Ok(
                match crate::healthcheck::check(addr, Duration::from_secs(timeout_secs)) {
                    Ok((200, _)) => ExitCode::SUCCESS,
                    Ok((status, body)) => {
                        eprintln!("pymap: not ready ({status}): {body}");
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("pymap: {addr} does not answer: {e}");
                        ExitCode::FAILURE
                    }
                },
            );
        }
        Command::Serve { .. } => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
            crate::app::run(config, listener, shutdown_signal()).await?;
        }
        Command::Migrate => {
            db::open(&config).await?;
            println!("database is up to date");
        }
        Command::User(cmd) => return user_command(cmd, &config).await,
        Command::Sync(args) => return migrate::sync(args, &config).await,
        Command::Batch(args) => return migrate::batch(args, &config).await,
        Command::Verify(args) => return verify::run(args).await,
        Command::Dev(cmd) => return dev::run(cmd, &config).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn user_command(
    cmd: UserCommand,
    config: &crate::config::Config,
) -> anyhow::Result<ExitCode> {
    let conn = db::open(config).await?;
    let actor = Actor::cli();
    let result = match cmd {
        UserCommand::Create {
            name,
            admin,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let role = if admin { Role::Admin } else { Role::User };
            service::accounts::create(&conn, &actor, &name, &password, role)
                .await
                .map(|u| println!("created {} ({})", u.name, u.role))
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            service::accounts::set_password(&conn, &actor, &name, &password)
                .await
                .map(|()| println!("password changed"))
        }
        UserCommand::List => service::accounts::list(&conn, &actor).await.map(|users| {
            println!("{:<32} {:<6} {:<9} last login", "name", "role", "state");
            for u in users {
                let last = u
                    .last_login_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into());
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{:<32} {:<6} {:<9} {last}", u.name, u.role, state);
            }
        }),
        UserCommand::Disable { name } => {
            service::accounts::set_disabled(&conn, &actor, &name, true)
                .await
                .map(|()| println!("{name} disabled"))
        }
        UserCommand::Enable { name } => {
            service::accounts::set_disabled(&conn, &actor, &name, false)
                .await
                .map(|()| println!("{name} enabled"))
        }
        UserCommand::Role { name, role } => {
            let role = Role::parse(&role).expect("clap checked the value");
            service::accounts::set_role(&conn, &actor, &name, role)
                .await
                .map(|()| println!("{name} is now {}", role.as_str()))
        }
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ServiceError::NotFound) => {
            eprintln!("pymap: no such user");
            Ok(ExitCode::FAILURE)
        }
        Err(e @ (ServiceError::Invalid { .. } | ServiceError::Conflict(_))) => {
            eprintln!("pymap: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
