//! Logging: human-readable lines to stderr, and for the server also daily rolling files
//! in the log dir. Keep the returned guard alive or buffered lines are lost at exit.

use tracing_appender::{non_blocking::WorkerGuard, rolling};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::Config;

pub fn init(config: &Config, to_files: bool) -> anyhow::Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_new(&config.log_level)?;
    // Colours only for a person at a terminal: container logs and journald would keep
    // the escape codes as text.
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if !to_files {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(stderr)
            .try_init();
        return Ok(None);
    }
    let dir = config.log_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("log_dir {} is not usable: {e}", dir.display()))?;
    let appender = rolling::Builder::new()
        .rotation(rolling::Rotation::DAILY)
        .filename_prefix("pymap")
        .filename_suffix("log")
        .max_log_files(config.log_retention_days)
        .build(&dir)
        .map_err(|e| anyhow::anyhow!("cannot log to {}: {e}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let file = fmt::layer().with_writer(writer).with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
    Ok(Some(guard))
}
