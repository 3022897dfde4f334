//! Password hashing with argon2id (PHC strings), and the rules a new password must meet.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password accepted for a new account.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (longer input is refused before hashing).
pub const MAX_LEN: usize = 128;

/// Hashes a password into a PHC string.
pub fn hash(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any input of bounded length")
        .to_string()
}

/// Whether `password` matches the PHC string `phc`; a malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Why a new password is refused.
pub fn check_new(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_LEN {
        return Err("密码至少 8 个字符 / the password needs at least 8 characters");
    }
    if password.len() > MAX_LEN {
        return Err("密码太长 / the password is too long");
    }
    Ok(())
}

/// [`verify`] on a blocking thread: argon2 takes tens of milliseconds of CPU, which must not
/// stall the server's async threads during a login storm.
pub async fn verify_blocking(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .unwrap_or(false)
}

/// [`hash`] on a blocking thread, for the same reason.
pub async fn hash_blocking(password: String) -> String {
    match tokio::task::spawn_blocking(move || hash(&password)).await {
        Ok(h) => h,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = super::hash("课堂密码123");
        let b = super::hash("课堂密码123");
        assert_ne!(a, b);
        assert!(super::verify("课堂密码123", &a));
        assert!(!super::verify("wrong", &a));
        assert!(!super::verify("x", "not a phc string"));
        assert!(super::check_new("short").is_err());
        assert!(super::check_new("long enough").is_ok());
    }
}
