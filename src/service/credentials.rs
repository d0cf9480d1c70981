//! Mailbox passwords at rest: XChaCha20-Poly1305 under a key derived from the
//! installation secret, with the row id and field name as associated data, so a
//! ciphertext copied to another row or field does not decrypt.

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};

use super::batch::Secret;

const NONCE_LEN: usize = 24;

fn aad(job_id: i64, field: &str) -> Vec<u8> {
    format!("pymap/job/{job_id}/{field}").into_bytes()
}

pub fn encrypt(key: &[u8; 32], job_id: i64, field: &str, secret: &Secret) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the OS random source works");
    let aad = aad(job_id, field);
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret.expose().as_bytes(),
                aad: &aad,
            },
        )
        .expect("encryption of a short message cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// `None` when the data was tampered with, moved, or sealed under another secret key.
pub fn decrypt(key: &[u8; 32], job_id: i64, field: &str, data: &[u8]) -> Option<Secret> {
    if data.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = data.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.into());
    let aad = aad(job_id, field);
    let plain = cipher
        .decrypt(
            &XNonce::try_from(nonce).ok()?,
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .ok()?;
    String::from_utf8(plain).ok().map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = [7u8; 32];
        let secret = Secret::new(r#"p@ss w0rd "q" $x 'y' \z"#);
        let sealed = encrypt(&key, 42, "password1", &secret);
        assert!(
            !sealed.windows(4).any(|w| w == b"p@ss"),
            "no plaintext in the blob"
        );
        assert_eq!(
            decrypt(&key, 42, "password1", &sealed).unwrap().expose(),
            secret.expose()
        );
        // Another row, another field, another key, or a flipped bit: refused.
        assert!(decrypt(&key, 43, "password1", &sealed).is_none());
        assert!(decrypt(&key, 42, "password2", &sealed).is_none());
        assert!(decrypt(&[8u8; 32], 42, "password1", &sealed).is_none());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(decrypt(&key, 42, "password1", &bad).is_none());
        // Fresh nonce every time.
        assert_ne!(sealed, encrypt(&key, 42, "password1", &secret));
    }
}
