//! API tokens and browser/CLI sessions. Both are random secrets stored as SHA-256 digests;
//! a session is made by logging in, an API token by its owner for scripts.

use crate::users::User;
use crate::{Result, Store, StoreError, WriteTx, now_s};
use serde::Serialize;
use voxhub_core::secret::{NewToken, digests_match, new_token};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Session,
    Api,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Api => "api",
        }
    }
}

/// A token as its owner sees it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Token {
    pub id: i64,
    pub user_id: i64,
    /// `api` for personal tokens, `session` for logins.
    pub kind: String,
    pub name: String,
    /// The first characters of the secret, to tell tokens apart.
    pub hint: String,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: i64,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<i64>,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<i64>,
}

const TOKEN_COLUMNS_SELECT: &str = "SELECT id, user_id, kind, name, hint, created_at, expires_at, last_used_at, revoked_at FROM tokens";

/// Who a presented token belongs to.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub token_id: i64,
    pub kind: TokenKind,
    pub expires_at: i64,
}

/// Why a presented token was not accepted, so the message can say what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Unknown,
    Revoked,
    Expired,
    UserDisabled,
}

/// `last_used_at` is written at most once a minute per token so that busy clients do not
/// turn every read into a write.
const LAST_USED_RESOLUTION_S: i64 = 60;

impl WriteTx {
    /// Makes a token; the returned secret is the only time it exists in clear.
    pub async fn create_token(
        &mut self,
        user_id: i64,
        kind: TokenKind,
        name: &str,
        expires_at: i64,
    ) -> Result<(Token, NewToken)> {
        let new = new_token();
        let token = sqlx::query_as::<_, Token>(
            "INSERT INTO tokens (user_id, kind, name, digest, hint, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, user_id, kind, name, hint, created_at, expires_at, last_used_at, revoked_at",
        )
        .bind(user_id)
        .bind(kind.as_str())
        .bind(name)
        .bind(&new.digest)
        .bind(&new.hint)
        .bind(now_s())
        .bind(expires_at)
        .fetch_one(self.conn())
        .await?;
        Ok((token, new))
    }

    pub async fn revoke_token(&mut self, token_id: i64) -> Result<Token> {
        sqlx::query_as::<_, Token>(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1
             RETURNING id, user_id, kind, name, hint, created_at, expires_at, last_used_at, revoked_at",
        )
        .bind(token_id)
        .bind(now_s())
        .fetch_optional(self.conn())
        .await?
        .ok_or_else(|| token_not_found(token_id))
    }

    /// Ends every live session of a user except `keep` (the one making the change).
    pub async fn revoke_sessions_of(&mut self, user_id: i64, keep: Option<i64>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $2
             WHERE user_id = $1 AND kind = 'session' AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3)",
        )
        .bind(user_id)
        .bind(now_s())
        .bind(keep)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// Revokes every live session and personal API token of a user except `keep`: after a
    /// password reset nothing an intruder may have made keeps working.
    pub async fn revoke_all_tokens_of(&mut self, user_id: i64, keep: Option<i64>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $2
             WHERE user_id = $1 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3)",
        )
        .bind(user_id)
        .bind(now_s())
        .bind(keep)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }
}

fn token_not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "there is no token with id {id}; list your tokens to find its id"
    ))
}

#[derive(sqlx::FromRow)]
struct AuthRow {
    #[sqlx(flatten)]
    user: User,
    token_id: i64,
    kind: String,
    digest: String,
    expires_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl Store {
    /// Looks a presented token up by its digest and checks that it and its owner are live.
    pub async fn authenticate(
        &self,
        digest: &str,
    ) -> Result<std::result::Result<Authenticated, TokenRejection>> {
        let row = sqlx::query_as::<_, AuthRow>(
            "SELECT u.id, u.username, u.display_name, u.role, u.disabled, u.created_at,
                    t.id AS token_id, t.kind, t.digest, t.expires_at, t.last_used_at, t.revoked_at
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row.filter(|row| digests_match(&row.digest, digest)) else {
            return Ok(Err(TokenRejection::Unknown));
        };
        let now = now_s();
        if row.revoked_at.is_some() {
            return Ok(Err(TokenRejection::Revoked));
        }
        if row.expires_at <= now {
            return Ok(Err(TokenRejection::Expired));
        }
        if row.user.disabled {
            return Ok(Err(TokenRejection::UserDisabled));
        }
        if row
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_RESOLUTION_S)
        {
            sqlx::query("UPDATE tokens SET last_used_at = $2 WHERE id = $1")
                .bind(row.token_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        let kind = if row.kind == "session" {
            TokenKind::Session
        } else {
            TokenKind::Api
        };
        Ok(Ok(Authenticated {
            user: row.user,
            token_id: row.token_id,
            kind,
            expires_at: row.expires_at,
        }))
    }

    /// A user's tokens of one kind, newest first; revoked and expired ones are included so
    /// the owner can see what happened to them.
    pub async fn tokens_of(&self, user_id: i64, kind: TokenKind) -> Result<Vec<Token>> {
        Ok(sqlx::query_as::<_, Token>(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLUMNS_SELECT} WHERE user_id = $1 AND kind = $2 ORDER BY created_at DESC, id DESC"
        )))
        .bind(user_id)
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn token(&self, token_id: i64) -> Result<Token> {
        sqlx::query_as::<_, Token>(sqlx::AssertSqlSafe(format!(
            "{TOKEN_COLUMNS_SELECT} WHERE id = $1"
        )))
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| token_not_found(token_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;
    use voxhub_core::secret::token_digest;

    #[tokio::test]
    async fn tokens_authenticate_until_revoked_expired_or_disabled() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        let user = crate::test_support::student(&mut tx, "anna").await;
        let (live, live_secret) = tx
            .create_token(user.id, TokenKind::Api, "laptop", now_s() + 60)
            .await
            .unwrap();
        let (_, expired_secret) = tx
            .create_token(user.id, TokenKind::Api, "old", now_s() - 1)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let auth = store
            .authenticate(&live_secret.digest)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(auth.user.id, user.id);
        assert_eq!(
            store
                .authenticate(&expired_secret.digest)
                .await
                .unwrap()
                .unwrap_err(),
            TokenRejection::Expired
        );
        assert_eq!(
            store
                .authenticate(&token_digest("vxh_nope"))
                .await
                .unwrap()
                .unwrap_err(),
            TokenRejection::Unknown
        );

        let mut tx = store.begin().await.unwrap();
        tx.update_user(
            user.id,
            &crate::users::UserChanges {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .authenticate(&live_secret.digest)
                .await
                .unwrap()
                .unwrap_err(),
            TokenRejection::UserDisabled
        );

        let mut tx = store.begin().await.unwrap();
        tx.revoke_token(live.id).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .authenticate(&live_secret.digest)
                .await
                .unwrap()
                .unwrap_err(),
            TokenRejection::Revoked
        );
    }
}
