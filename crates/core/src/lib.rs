//! Domain types and pure rules of voxhub: names, roles, permissions, passwords, tokens,
//! invite codes, login throttling and the audit hash chain.
//!
//! Nothing in this crate performs I/O (no files, sockets, database or clock reads beyond
//! what a caller passes in), so every rule here is unit-tested in isolation. The other
//! crates depend on this one; it depends on none of them.
//!
//! | module | owns |
//! | --- | --- |
//! | [`names`] | validated newtypes for user input (usernames, display names, class names) |
//! | [`role`] | platform roles and roles inside a class |
//! | [`permissions`] | who may do what; the only place access rules are written |
//! | [`resources`] | CPU and memory amounts as people write them |
//! | [`password`] | password policy and argon2id hashing |
//! | [`secret`] | API token and invite code generation and hashing |
//! | [`invite`] | whether an invite code can still be used |
//! | [`throttle`] | login throttling per username and per source address |
//! | [`audit`] | audit entries and their hash chain |
//! | [`duration`] | human durations such as `14d` or `12h` |

pub mod audit;
pub mod duration;
pub mod invite;
pub mod names;
pub mod password;
pub mod permissions;
pub mod resources;
pub mod role;
pub mod secret;
pub mod throttle;

/// A value given by a user that does not meet the rules, with the field it came from and
/// a message that says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Seconds since the Unix epoch; every timestamp in voxhub is stored this way.
pub type UnixSeconds = i64;

/// Serialises a [`UnixSeconds`] timestamp as an RFC 3339 string (UTC) for people and programs.
pub mod timefmt {
    use serde::Serializer;

    pub fn rfc3339(seconds: i64) -> String {
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| seconds.to_string())
    }

    pub fn serialize<S: Serializer>(seconds: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(*seconds))
    }

    pub fn serialize_option<S: Serializer>(
        seconds: &Option<i64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match seconds {
            Some(seconds) => serializer.serialize_str(&rfc3339(*seconds)),
            None => serializer.serialize_none(),
        }
    }

    /// A readable UTC time for web pages, e.g. `2026-11-21 09:58 UTC`.
    pub fn human(seconds: i64) -> String {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|t| t.format(&format).ok())
            .unwrap_or_else(|| seconds.to_string())
    }
}
