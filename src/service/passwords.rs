//! argon2id password hashing, off the async runtime (a hash takes tens of milliseconds).

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng},
};

use super::{Result, ServiceError};

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 1024;

/// A hash of a random password, made once: verifying against it for unknown users makes
/// a wrong name take as long as a wrong password.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn hash_blocking(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
}

pub fn check_policy(password: &str) -> Result<()> {
    if password.chars().count() < MIN_LEN {
        return Err(ServiceError::invalid(
            "password",
            format!("must be at least {MIN_LEN} characters"),
        ));
    }
    if password.len() > MAX_LEN {
        return Err(ServiceError::invalid(
            "password",
            format!("must be at most {MAX_LEN} bytes"),
        ));
    }
    Ok(())
}

pub async fn hash(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
}

/// `None` as hash verifies against a dummy and returns false.
pub async fn verify(password: &str, hash: Option<&str>) -> bool {
    let password = password.to_string();
    let known = hash.is_some();
    let hash = hash.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let hash = match hash {
            Some(h) => h,
            None => DUMMY_HASH
                .get_or_init(|| hash_blocking(&generate()).unwrap_or_default())
                .clone(),
        };
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false)
        && known
}

/// A readable random password for generated accounts.
pub fn generate() -> String {
    crate::keys::random_hex(12)
}
