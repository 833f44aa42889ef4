//! Whether an invite code can still be used, and the message that says why not.

use crate::UnixSeconds;

/// The state of an invite code that matters for registering with it.
#[derive(Debug, Clone, Copy)]
pub struct InviteState {
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: UnixSeconds,
    pub revoked: bool,
}

/// Why an invite code cannot be used. Each reason has its own message so a student knows
/// whether to check for a typo or ask the teacher for a new code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteProblem {
    #[error(
        "this invite code does not exist; check it for typos, or ask your teacher for the code again"
    )]
    Unknown,
    #[error("this invite code was revoked by the teacher; ask your teacher for a new code")]
    Revoked,
    #[error("this invite code expired; ask your teacher for a new code")]
    Expired,
    #[error(
        "this invite code has been used the maximum number of times ({max_uses}); ask your teacher for a new code"
    )]
    UsedUp { max_uses: i64 },
}

impl InviteProblem {
    /// A stable machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            InviteProblem::Unknown => "invite_unknown",
            InviteProblem::Revoked => "invite_revoked",
            InviteProblem::Expired => "invite_expired",
            InviteProblem::UsedUp { .. } => "invite_used_up",
        }
    }
}

/// Revoked is told first (the teacher's decision), then expiry, then the use count.
pub fn check_invite(state: &InviteState, now: UnixSeconds) -> Result<(), InviteProblem> {
    if state.revoked {
        return Err(InviteProblem::Revoked);
    }
    if now >= state.expires_at {
        return Err(InviteProblem::Expired);
    }
    if state.uses >= state.max_uses {
        return Err(InviteProblem::UsedUp {
            max_uses: state.max_uses,
        });
    }
    Ok(())
}

pub const MAX_USES_LIMIT: i64 = 10_000;
/// Invite codes live at most a year; a class that runs longer makes a new one.
pub const MAX_LIFETIME_S: i64 = 366 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> InviteState {
        InviteState {
            max_uses: 2,
            uses: 0,
            expires_at: 1000,
            revoked: false,
        }
    }

    #[test]
    fn a_fresh_code_can_be_used() {
        assert_eq!(check_invite(&state(), 10), Ok(()));
    }

    #[test]
    fn an_expired_code_is_refused_at_its_expiry_second() {
        assert_eq!(check_invite(&state(), 1000), Err(InviteProblem::Expired));
    }

    #[test]
    fn a_used_up_code_says_how_many_uses_it_had() {
        let used = InviteState { uses: 2, ..state() };
        let problem = check_invite(&used, 10).unwrap_err();
        assert_eq!(problem, InviteProblem::UsedUp { max_uses: 2 });
        assert!(problem.to_string().contains("(2)"));
    }

    #[test]
    fn revocation_is_reported_before_expiry_and_use_count() {
        let revoked = InviteState {
            revoked: true,
            uses: 5,
            expires_at: 0,
            ..state()
        };
        assert_eq!(check_invite(&revoked, 10), Err(InviteProblem::Revoked));
    }
}
