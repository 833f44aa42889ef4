//! Invite codes: creation, listing, revocation and registering with one.

use crate::users::{NewUser, User};
use crate::{Result, Store, StoreError, WriteTx, is_unique_violation, now_s};
use serde::Serialize;
use sqlx::Row;
use voxhub_core::invite::{InviteProblem, InviteState, check_invite};
use voxhub_core::role::ClassRole;

/// An invite code as teachers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Invite {
    pub id: i64,
    pub class_id: i64,
    pub code: String,
    #[sqlx(try_from = "String")]
    pub role: ClassRole,
    pub max_uses: i64,
    pub uses: i64,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: i64,
    pub created_by: String,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<i64>,
    /// `active`, `revoked`, `expired` or `used_up`, as of the moment it was read.
    #[sqlx(skip)]
    pub status: String,
}

impl Invite {
    fn with_status(mut self, now: i64) -> Self {
        let state = InviteState {
            max_uses: self.max_uses,
            uses: self.uses,
            expires_at: self.expires_at,
            revoked: self.revoked_at.is_some(),
        };
        self.status = match check_invite(&state, now) {
            Ok(()) => "active".into(),
            Err(InviteProblem::Revoked) => "revoked".into(),
            Err(InviteProblem::Expired) => "expired".into(),
            Err(_) => "used_up".into(),
        };
        self
    }
}

const INVITE_SELECT: &str =
    "SELECT i.id, i.class_id, i.code, i.role, i.max_uses, i.uses, i.expires_at,
    u.username AS created_by, i.created_at, i.revoked_at
    FROM invites i JOIN users u ON u.id = i.created_by";

pub struct NewInvite<'a> {
    pub class_id: i64,
    pub code: &'a str,
    pub role: ClassRole,
    pub max_uses: i64,
    pub expires_at: i64,
    pub created_by: i64,
}

/// What registering with an invite made.
#[derive(Debug, Clone)]
pub struct Registration {
    pub user: User,
    pub class_id: i64,
    pub class_name: String,
    pub role: ClassRole,
    pub invite_id: i64,
}

impl WriteTx {
    pub async fn create_invite(&mut self, new: &NewInvite<'_>) -> Result<i64> {
        let result = sqlx::query_scalar(
            "INSERT INTO invites (class_id, code, role, max_uses, uses, expires_at, created_by, created_at)
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7) RETURNING id",
        )
        .bind(new.class_id)
        .bind(new.code)
        .bind(new.role.as_str())
        .bind(new.max_uses)
        .bind(new.expires_at)
        .bind(new.created_by)
        .bind(now_s())
        .fetch_one(self.conn())
        .await;
        match result {
            Ok(id) => Ok(id),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
                "that invite code exists already; try again".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes a code of the given class; revoking twice is harmless.
    pub async fn revoke_invite(&mut self, class_id: i64, invite_id: i64) -> Result<()> {
        let done = sqlx::query("UPDATE invites SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND class_id = $2")
            .bind(invite_id)
            .bind(class_id)
            .bind(now_s())
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "class {class_id} has no invite code with id {invite_id}; check the list of codes on the class page"
            )));
        }
        Ok(())
    }

    /// Creates an account through an invite code and puts it in the code's class, all in
    /// this transaction: if any step fails, nothing is created and the code is not used up.
    pub async fn register_with_invite(
        &mut self,
        code: &str,
        new: NewUser<'_>,
    ) -> Result<Registration> {
        let row = sqlx::query(
            "SELECT i.id, i.class_id, i.role, i.max_uses, i.uses, i.expires_at, i.revoked_at, c.name
             FROM invites i JOIN classes c ON c.id = i.class_id WHERE i.code = $1",
        )
        .bind(code)
        .fetch_optional(self.conn())
        .await?
        .ok_or(StoreError::Invite(InviteProblem::Unknown))?;
        let invite_id: i64 = row.get(0);
        let class_id: i64 = row.get(1);
        let role = ClassRole::parse(row.get::<String, _>(2).as_str())
            .ok_or_else(|| StoreError::Database("invite with an unknown role".into()))?;
        let state = InviteState {
            max_uses: row.get(3),
            uses: row.get(4),
            expires_at: row.get(5),
            revoked: row.get::<Option<i64>, _>(6).is_some(),
        };
        let class_name: String = row.get(7);
        check_invite(&state, now_s()).map_err(StoreError::Invite)?;
        let counted =
            sqlx::query("UPDATE invites SET uses = uses + 1 WHERE id = $1 AND uses < max_uses")
                .bind(invite_id)
                .execute(self.conn())
                .await?;
        if counted.rows_affected() == 0 {
            return Err(StoreError::Invite(InviteProblem::UsedUp {
                max_uses: state.max_uses,
            }));
        }
        let user = self
            .create_user(NewUser {
                role: role.platform_role(),
                ..new
            })
            .await?;
        self.put_member(class_id, user.id, role, None, Some(invite_id))
            .await?;
        Ok(Registration {
            user,
            class_id,
            class_name,
            role,
            invite_id,
        })
    }
}

impl Store {
    pub async fn invites(&self, class_id: i64) -> Result<Vec<Invite>> {
        let now = now_s();
        let invites = sqlx::query_as::<_, Invite>(sqlx::AssertSqlSafe(format!(
            "{INVITE_SELECT} WHERE i.class_id = $1 ORDER BY i.created_at DESC, i.id DESC"
        )))
        .bind(class_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(invites.into_iter().map(|i| i.with_status(now)).collect())
    }

    pub async fn invite(&self, class_id: i64, invite_id: i64) -> Result<Invite> {
        sqlx::query_as::<_, Invite>(sqlx::AssertSqlSafe(format!("{INVITE_SELECT} WHERE i.id = $1 AND i.class_id = $2")))
            .bind(invite_id)
            .bind(class_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|i| i.with_status(now_s()))
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "class {class_id} has no invite code with id {invite_id}; check the list of codes on the class page"
                ))
            })
    }
}
