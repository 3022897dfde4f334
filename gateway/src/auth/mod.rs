//! Authentication: passwords, browser sessions with CSRF tokens, machine API tokens, login rate
//! limits. Secrets are random 256-bit values shown once; only their SHA-256 is stored.
//!
//! - [`password`]: argon2id hashing and new-password rules.
//! - [`ratelimit`]: sliding-window limiter for failed logins per account and per address.
//! - [`secret`], [`secret_hash`]: session ids, CSRF tokens and API tokens.

pub mod password;
pub mod ratelimit;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A fresh random secret (256 bits, base64url) with a readable prefix.
pub fn secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a secret: SHA-256, base64url.
pub fn secret_hash(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time comparison of two strings (CSRF tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_random_and_hash_stably() {
        let a = super::secret("ses");
        assert!(a.starts_with("ses_") && a.len() > 40);
        assert_ne!(a, super::secret("ses"));
        assert_eq!(super::secret_hash(&a), super::secret_hash(&a));
        assert!(super::constant_time_eq("abc", "abc") && !super::constant_time_eq("abc", "abd"));
    }
}
