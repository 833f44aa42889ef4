//! `ObjectId`: the SHA-256 of an object's content, and the only name an object has.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::StorageError;

/// The lowercase hexadecimal SHA-256 of an object's content.
///
/// Parsing accepts exactly 64 lowercase hexadecimal characters and nothing else, so an id
/// can be joined onto a path without ever naming `..`, a separator or another file.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(String);

impl ObjectId {
    /// The id that content with these bytes has.
    pub fn for_content(bytes: &[u8]) -> ObjectId {
        ObjectId::from_digest(Sha256::digest(bytes).into())
    }

    pub(crate) fn from_digest(digest: [u8; 32]) -> ObjectId {
        ObjectId(hex::encode(digest))
    }

    /// Checks text from outside (a URL, a database row) and makes it an id.
    pub fn parse(text: &str) -> Result<ObjectId, StorageError> {
        let well_formed =
            text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if well_formed {
            Ok(ObjectId(text.to_owned()))
        } else {
            Err(StorageError::InvalidId {
                given: text.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ObjectId {
    type Err = StorageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ObjectId::parse(text)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn id_of_content_is_its_lowercase_hex_sha256() {
        assert_eq!(ObjectId::for_content(b"").as_str(), EMPTY_SHA256);
        assert_eq!(
            ObjectId::parse(EMPTY_SHA256).unwrap(),
            ObjectId::for_content(b"")
        );
    }

    #[test]
    fn anything_but_64_lowercase_hex_characters_is_refused() {
        let refused = [
            String::new(),
            "..".to_owned(),
            "../x".to_owned(),
            format!("../{}", &EMPTY_SHA256[3..]),
            format!("{}/{}", &EMPTY_SHA256[..2], &EMPTY_SHA256[3..]),
            EMPTY_SHA256.to_uppercase(),
            EMPTY_SHA256[..63].to_owned(),
            format!("{EMPTY_SHA256}0"),
            format!("{}g", &EMPTY_SHA256[..63]),
            format!(" {}", &EMPTY_SHA256[1..]),
            format!("{}\u{e9}", &EMPTY_SHA256[..62]),
        ];
        for text in refused {
            match text.parse::<ObjectId>() {
                Err(StorageError::InvalidId { given }) => assert_eq!(given, text),
                other => panic!("{text:?} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_id_message_names_what_was_given() {
        let message = ObjectId::parse("../etc/passwd").unwrap_err().to_string();
        assert!(message.contains("\"../etc/passwd\""), "{message}");
    }
}
