//! The flags that name two mailboxes (hosts, users, passwords, TLS), shared by `pymap sync`
//! and `pymap verify` so both take exactly the same ones.
//!
//! Passwords never come from the command line (it is visible to every local user in
//! `ps`): a file's first line, stdin, or an interactive prompt.

use std::{io::BufRead, path::PathBuf};

use clap::Args;

use crate::service::{
    batch::Secret,
    hosts::{HostSpec, parse_host},
    imapsync_options::{MigrationOptions, TlsMode},
};

#[derive(Args, Debug)]
pub struct PairArgs {
    /// Source server, host[:port].
    #[arg(long)]
    pub host1: String,
    #[arg(long)]
    pub user1: String,
    /// File whose first line is the source password (else prompted, or read from stdin).
    #[arg(long, value_name = "FILE")]
    pub passfile1: Option<PathBuf>,
    /// Destination server, host[:port].
    #[arg(long)]
    pub host2: String,
    #[arg(long)]
    pub user2: String,
    #[arg(long, value_name = "FILE")]
    pub passfile2: Option<PathBuf>,
    /// Read the missing passwords from stdin, one per line (source first).
    #[arg(long)]
    pub passwords_stdin: bool,
    /// TLS to the source: auto (STARTTLS when offered, implicit on port 993), plain,
    /// starttls or implicit.
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "starttls", "implicit"])]
    pub tls1: String,
    /// TLS to the destination (as --tls1).
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "starttls", "implicit"])]
    pub tls2: String,
    /// Accept a self-signed certificate from the source (native engine and verify).
    #[arg(long)]
    pub accept_invalid_certs1: bool,
    /// Accept a self-signed certificate from the destination.
    #[arg(long)]
    pub accept_invalid_certs2: bool,
}

/// The pair's hosts and passwords, checked and read.
pub struct Pair {
    pub host1: HostSpec,
    pub user1: String,
    pub password1: Secret,
    pub host2: HostSpec,
    pub user2: String,
    pub password2: Secret,
}

fn tls(value: &str) -> TlsMode {
    match value {
        "plain" => TlsMode::Plain,
        "starttls" => TlsMode::Starttls,
        "implicit" => TlsMode::Implicit,
        _ => TlsMode::Auto,
    }
}

impl PairArgs {
    /// TLS settings into `options`.
    pub fn apply(&self, options: &mut MigrationOptions) {
        options.tls1 = tls(&self.tls1);
        options.tls2 = tls(&self.tls2);
        options.accept_invalid_certs1 = self.accept_invalid_certs1;
        options.accept_invalid_certs2 = self.accept_invalid_certs2;
    }

    /// Parses the hosts (errors name the flag), then reads the passwords.
    pub fn resolve(self) -> anyhow::Result<Pair> {
        let host1 = parse_host(&self.host1).map_err(|e| anyhow::anyhow!("--host1: {e}"))?;
        let host2 = parse_host(&self.host2).map_err(|e| anyhow::anyhow!("--host2: {e}"))?;
        let password1 = password(
            &self.passfile1,
            self.passwords_stdin,
            "Password for user1: ",
        )?;
        let password2 = password(
            &self.passfile2,
            self.passwords_stdin,
            "Password for user2: ",
        )?;
        Ok(Pair {
            host1,
            user1: self.user1,
            password1,
            host2,
            user2: self.user2,
            password2,
        })
    }
}

fn read_first_line(path: &PathBuf) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(Secret::new(text.lines().next().unwrap_or_default()))
}

fn password(file: &Option<PathBuf>, stdin: bool, prompt: &str) -> anyhow::Result<Secret> {
    if let Some(path) = file {
        return read_first_line(path);
    }
    if stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(Secret::new(line.trim_end_matches(['\n', '\r'])));
    }
    rpassword::prompt_password(prompt)
        .map(Secret::new)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot prompt for a password ({e}); use --passfile1/2 or --passwords-stdin"
            )
        })
}
