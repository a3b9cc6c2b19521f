//! Password hashing with argon2id (the `argon2` crate's defaults: m=19 MiB, t=2, p=1),
//! stored as PHC strings (`$argon2id$v=19$...`).
//!
//! Invariant: plain passwords are never stored nor logged; only [`hash`] output is.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::IdentityError;

/// Longest password accepted (hashing is deliberately expensive).
pub const MAX_PASSWORD_LEN: usize = 4096;

/// Checks a new password: 1 to [`MAX_PASSWORD_LEN`] bytes.
pub fn check(password: &str) -> Result<(), IdentityError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(IdentityError::BadRequest(format!(
            "Invalid password: 1 to {MAX_PASSWORD_LEN} characters."
        )));
    }
    Ok(())
}

/// Hashes a password with a fresh random salt.
pub fn hash(password: &str) -> Result<String, IdentityError> {
    check(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Internal(format!("argon2: {e}")))
}

/// Whether `password` matches the stored PHC string (false for an unparsable hash).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random password (24 characters, base64url of 18 random bytes).
pub fn generate() -> String {
    use argon2::password_hash::rand_core::RngCore;
    use base64::Engine as _;
    let mut b = [0u8; 18];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
