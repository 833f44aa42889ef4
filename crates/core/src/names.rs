//! Validated newtypes for names typed by people; code past the edge never re-checks them.

use crate::InvalidInput;
use serde::{Deserialize, Serialize};

/// A login name: 3 to 32 characters, lower-case letters, digits, `.`, `_` or `-`,
/// starting with a letter. Kept lower-case so `Anna` and `anna` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub const MIN_CHARS: usize = 3;
    pub const MAX_CHARS: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let value = raw.trim().to_lowercase();
        let count = value.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&count) {
            return Err(InvalidInput::new(
                "username",
                format!(
                    "a username must be {} to {} characters long; '{}' has {count}",
                    Self::MIN_CHARS,
                    Self::MAX_CHARS,
                    truncate_for_message(raw)
                ),
            ));
        }
        if !value.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(InvalidInput::new(
                "username",
                "a username must start with a letter (a to z)",
            ));
        }
        if let Some(bad) = value.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(InvalidInput::new(
                "username",
                format!(
                    "a username may only use letters a to z, digits, '.', '_' and '-'; remove '{bad}'"
                ),
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidInput;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text shown to people (a display name, a class name, a token name): trimmed,
/// not empty, at most `max` characters and without control characters.
pub fn plain_text(
    field: &'static str,
    raw: &str,
    max_chars: usize,
) -> Result<String, InvalidInput> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(InvalidInput::new(
            field,
            format!("{} must not be empty", field.replace('_', " ")),
        ));
    }
    let count = value.chars().count();
    if count > max_chars {
        return Err(InvalidInput::new(
            field,
            format!(
                "{} may be at most {max_chars} characters long; it has {count}",
                field.replace('_', " ")
            ),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(InvalidInput::new(
            field,
            format!(
                "{} must not contain control characters such as tabs or line breaks",
                field.replace('_', " ")
            ),
        ));
    }
    Ok(value.to_string())
}

/// Longer free text (a class description): may be empty and may contain line breaks.
pub fn long_text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, InvalidInput> {
    let value = raw.trim();
    let count = value.chars().count();
    if count > max_chars {
        return Err(InvalidInput::new(
            field,
            format!(
                "{} may be at most {max_chars} characters long; it has {count}",
                field.replace('_', " ")
            ),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(InvalidInput::new(
            field,
            format!(
                "{} must not contain control characters",
                field.replace('_', " ")
            ),
        ));
    }
    Ok(value.to_string())
}

pub const DISPLAY_NAME_MAX_CHARS: usize = 100;
pub const CLASS_NAME_MAX_CHARS: usize = 100;
pub const DESCRIPTION_MAX_CHARS: usize = 4000;
pub const TOKEN_NAME_MAX_CHARS: usize = 100;

fn truncate_for_message(raw: &str) -> String {
    let mut shown: String = raw.chars().take(40).filter(|c| !c.is_control()).collect();
    if raw.chars().count() > 40 {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_trimmed() {
        assert_eq!(
            Username::parse("  Anna.Berg ").unwrap().as_str(),
            "anna.berg"
        );
    }

    #[test]
    fn usernames_with_spaces_or_symbols_are_refused_naming_the_character() {
        let err = Username::parse("anna berg").unwrap_err();
        assert!(err.message.contains("' '"), "{err}");
        assert!(Username::parse("anna/../x").is_err());
        assert!(Username::parse("ännä").is_err());
    }

    #[test]
    fn usernames_must_start_with_a_letter_and_fit_the_length() {
        assert!(Username::parse("1anna").is_err());
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn plain_text_refuses_empty_overlong_and_control_characters() {
        assert!(plain_text("display_name", "   ", 10).is_err());
        assert!(
            plain_text("display_name", "abcdefghijk", 10)
                .unwrap_err()
                .message
                .contains("at most 10")
        );
        assert!(plain_text("display_name", "a\nb", 10).is_err());
        assert_eq!(
            plain_text("display_name", " Dr. Ümit ", 10).unwrap(),
            "Dr. Ümit"
        );
    }

    #[test]
    fn long_text_allows_empty_and_line_breaks() {
        assert_eq!(long_text("description", "", 10).unwrap(), "");
        assert!(long_text("description", "a\nb", 10).is_ok());
        assert!(long_text("description", "a\u{0}b", 10).is_err());
    }
}
