//! API tokens, browser sessions and invite codes: how their secrets are made and stored.
//!
//! Token secrets carry 256 random bits and are stored only as a SHA-256 digest; invite
//! codes are short enough to read out in a lecture hall and are stored as typed.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every token secret starts with this, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "vxh_";

/// A freshly made token secret: shown to its owner once, then only its digest is kept.
pub struct NewToken {
    pub secret: String,
    pub digest: String,
    /// The first characters after the prefix, kept so people can tell their tokens apart.
    pub hint: String,
}

pub fn new_token() -> NewToken {
    let bytes: [u8; 32] = rand::random();
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let digest = token_digest(&secret);
    let hint = secret[..TOKEN_PREFIX.len() + 6].to_string();
    NewToken {
        secret,
        digest,
        hint,
    }
}

/// 32 random bytes for a keyed secret (the de-identification key).
pub fn new_key() -> [u8; 32] {
    rand::random()
}

/// The hex SHA-256 digest under which a token is stored and looked up.
pub fn token_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two digests in constant time.
pub fn digests_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether a string looks like a voxhub token at all (cheap check before a lookup).
pub fn looks_like_token(raw: &str) -> bool {
    raw.len() == TOKEN_PREFIX.len() + 43
        && raw.starts_with(TOKEN_PREFIX)
        && raw[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Crockford's base32 alphabet: no I, L, O or U, so a code read aloud is not misheard.
const INVITE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new invite code of 12 characters (60 random bits) written as `XXXX-XXXX-XXXX`.
pub fn new_invite_code() -> String {
    let bytes: [u8; 12] = rand::random();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| INVITE_ALPHABET[(b & 31) as usize] as char)
        .collect();
    format!(
        "{}-{}-{}",
        chars[0..4].iter().collect::<String>(),
        chars[4..8].iter().collect::<String>(),
        chars[8..12].iter().collect::<String>()
    )
}

/// A random first password of 20 characters in four groups (100 random bits), readable
/// from a terminal without confusing look-alike letters.
pub fn new_password() -> String {
    let bytes: [u8; 20] = rand::random();
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| INVITE_ALPHABET[(b & 31) as usize].to_ascii_lowercase() as char)
        .collect();
    chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Brings a typed invite code to its stored form: upper case, dashes and spaces dropped and
/// put back, and the letters people confuse with digits read as those digits.
pub fn normalize_invite_code(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    if cleaned.len() != 12 || !cleaned.bytes().all(|b| INVITE_ALPHABET.contains(&b)) {
        return None;
    }
    Some(format!(
        "{}-{}-{}",
        &cleaned[0..4],
        &cleaned[4..8],
        &cleaned[8..12]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_bits_and_are_stored_as_digests() {
        let token = new_token();
        assert!(looks_like_token(&token.secret), "{}", token.secret);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.secret[TOKEN_PREFIX.len()..])
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(token.digest, token_digest(&token.secret));
        assert!(!token.digest.contains(&token.secret[4..]));
        assert_ne!(new_token().secret, token.secret);
    }

    #[test]
    fn digest_comparison_checks_every_byte() {
        assert!(digests_match("abcd", "abcd"));
        assert!(!digests_match("abcd", "abce"));
        assert!(!digests_match("abcd", "abc"));
    }

    #[test]
    fn malformed_tokens_are_recognised_before_any_lookup() {
        assert!(!looks_like_token("vxh_short"));
        assert!(!looks_like_token(&format!("xxx_{}", "a".repeat(43))));
        assert!(!looks_like_token(&format!("vxh_{}", "!".repeat(43))));
    }

    #[test]
    fn invite_codes_forgive_case_dashes_and_lookalike_letters() {
        let code = new_invite_code();
        assert_eq!(normalize_invite_code(&code).as_deref(), Some(code.as_str()));
        assert_eq!(
            normalize_invite_code(&code.to_lowercase().replace('-', " ")).as_deref(),
            Some(code.as_str())
        );
        assert_eq!(
            normalize_invite_code("abcd-efgh-oil1").as_deref(),
            Some("ABCD-EFGH-0111")
        );
        assert_eq!(normalize_invite_code("too-short"), None);
        assert_eq!(
            normalize_invite_code("ABCD-EFGH-JKU1"),
            None,
            "U is not in the alphabet"
        );
    }
}
