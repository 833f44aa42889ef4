//! Platform roles (admin, teacher, student) and the role someone has inside one class.

use serde::{Deserialize, Serialize};

/// What a person is on the platform as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Role {
    Admin,
    Teacher,
    Student,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Teacher => "teacher",
            Role::Student => "student",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "teacher" => Some(Role::Teacher),
            "student" => Some(Role::Student),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a person is inside one class: teachers run it, students take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum ClassRole {
    Teacher,
    Student,
}

impl ClassRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClassRole::Teacher => "teacher",
            ClassRole::Student => "student",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "teacher" => Some(ClassRole::Teacher),
            "student" => Some(ClassRole::Student),
            _ => None,
        }
    }

    /// The platform role given to someone who registers with an invite for this class role.
    pub fn platform_role(self) -> Role {
        match self {
            ClassRole::Teacher => Role::Teacher,
            ClassRole::Student => Role::Student,
        }
    }
}

impl std::fmt::Display for ClassRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Role::parse(&value)
            .ok_or_else(|| format!("unknown role '{value}'; choose admin, teacher or student"))
    }
}

impl TryFrom<String> for ClassRole {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ClassRole::parse(&value)
            .ok_or_else(|| format!("unknown class role '{value}'; choose teacher or student"))
    }
}
