//! Password policy and argon2id hashing. Plain passwords live only in [`Password`], which
//! never prints its contents.

use crate::InvalidInput;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

pub const MIN_CHARS: usize = 10;
/// Long enough for any passphrase, short enough that hashing cannot be used to burn CPU.
pub const MAX_BYTES: usize = 256;

/// A plain password that passed the policy. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// Checks a new password against the policy. `username` is refused as a password.
    pub fn new_checked(raw: &str, username: &str) -> Result<Self, InvalidInput> {
        if raw.chars().count() < MIN_CHARS {
            return Err(InvalidInput::new(
                "password",
                format!(
                    "a password must be at least {MIN_CHARS} characters long; a short sentence is easy to remember"
                ),
            ));
        }
        if raw.len() > MAX_BYTES {
            return Err(InvalidInput::new(
                "password",
                format!("a password may be at most {MAX_BYTES} bytes long"),
            ));
        }
        if raw.trim().eq_ignore_ascii_case(username.trim()) {
            return Err(InvalidInput::new(
                "password",
                "the password must not be the same as the username",
            ));
        }
        Ok(Self(raw.to_string()))
    }

    /// A password typed at login, checked only for size so that hashing stays bounded.
    pub fn for_login(raw: &str) -> Result<Self, InvalidInput> {
        if raw.len() > MAX_BYTES {
            return Err(InvalidInput::new(
                "password",
                format!("a password may be at most {MAX_BYTES} bytes long"),
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hashes with argon2id and a fresh random salt (PHC string format).
    pub fn hash(&self) -> String {
        Argon2::default()
            .hash_password(self.0.as_bytes())
            .expect("argon2 with default parameters accepts any password up to MAX_BYTES")
            .to_string()
    }

    /// Constant-time check against a stored PHC hash; a malformed stored hash never matches.
    pub fn verify(&self, stored_hash: &str) -> bool {
        match PasswordHash::new(stored_hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(self.0.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// A hash that no password matches, verified against when a username does not exist so
/// that a login for an unknown user costs as much time as one for a known user.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| Password("voxhub-dummy-password-never-used".into()).hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_passwords_and_the_username_are_refused() {
        assert!(Password::new_checked("short", "anna").is_err());
        assert!(Password::new_checked("annaberg01", "AnnaBerg01").is_err());
        assert!(Password::new_checked(&"x".repeat(MAX_BYTES + 1), "anna").is_err());
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let password = Password::new_checked("correct horse battery", "anna").unwrap();
        let first = password.hash();
        let second = password.hash();
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "every hash gets its own salt");
        assert!(password.verify(&first));
        assert!(
            !Password::for_login("wrong horse battery")
                .unwrap()
                .verify(&first)
        );
        assert!(!password.verify("not a hash"));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let password = Password::new_checked("correct horse battery", "anna").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
