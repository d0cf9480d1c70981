//! The installation secret and the keys derived from it.
//!
//! One secret (configured, or generated once into `<data_dir>/.secret` with mode 0600)
//! keys everything; HKDF gives each use its own key so that, say, a CSRF token can never
//! be replayed as a cookie signature.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use hkdf::Hkdf;
use sha2::Sha256;

use crate::config::{Config, Secret};

/// Keys derived from the installation secret.
#[derive(Clone)]
pub struct Keys {
    /// Signs session cookies (poem's cookie key takes 64 bytes).
    pub cookie: [u8; 64],
    /// Keys CSRF tokens.
    pub csrf: [u8; 32],
    /// Encrypts stored mailbox credentials.
    pub credentials: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl Keys {
    pub fn derive(secret: &Secret) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"pymap/v1"), secret.expose().as_bytes());
        let mut keys = Keys {
            cookie: [0; 64],
            csrf: [0; 32],
            credentials: [0; 32],
        };
        hk.expand(b"session-cookie", &mut keys.cookie)
            .expect("64 bytes is a valid HKDF length");
        hk.expand(b"csrf", &mut keys.csrf)
            .expect("32 bytes is a valid HKDF length");
        hk.expand(b"credentials", &mut keys.credentials)
            .expect("32 bytes is a valid HKDF length");
        keys
    }
}

/// Random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source works");
    hex::encode(buf)
}

/// The configured secret, else the one in `<data_dir>/.secret`, generated on first start.
pub fn load_or_create_secret(config: &Config) -> anyhow::Result<Secret> {
    if let Some(secret) = &config.secret_key {
        return Ok(secret.clone());
    }
    let path = config.data_dir.join(".secret");
    read_or_generate(&path)
}

fn read_or_generate(path: &Path) -> anyhow::Result<Secret> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let secret = random_hex(48);
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new secret key");
            Ok(Secret::new(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "secret key file was readable by others; restricting it to 0600");
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
            }
            let text = fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let text = text.trim();
            anyhow::ensure!(
                text.len() >= 32,
                "secret key in {} is shorter than 32 characters",
                path.display()
            );
            Ok(Secret::new(text))
        }
        Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_with_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/.secret");
        let first = read_or_generate(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = read_or_generate(&path).unwrap();
        assert_eq!(first, second);
        assert!(first.expose().len() >= 64);
    }

    #[test]
    fn derived_keys_differ_per_use_and_per_secret() {
        let a = Keys::derive(&Secret::new("a".repeat(40)));
        let b = Keys::derive(&Secret::new("b".repeat(40)));
        assert_ne!(a.csrf, a.credentials);
        assert_ne!(a.csrf, b.csrf);
    }
}
