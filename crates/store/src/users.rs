//! Accounts: creation, lookup, listing, disabling and password changes.

use crate::{Result, Store, StoreError, WriteTx, is_unique_violation, now_s};
use serde::Serialize;
use voxhub_core::names::Username;
use voxhub_core::role::Role;

/// An account as shown to people and programs (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub disabled: bool,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
}

pub struct NewUser<'a> {
    pub username: &'a Username,
    pub display_name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
}

/// What changing an account may touch; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub display_name: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

impl WriteTx {
    pub async fn create_user(&mut self, new: NewUser<'_>) -> Result<User> {
        let now = now_s();
        let result = sqlx::query_as::<_, User>(
            "INSERT INTO users (username, display_name, role, password_hash, disabled, created_at, password_changed_at)
             VALUES ($1, $2, $3, $4, FALSE, $5, $5)
             RETURNING id, username, display_name, role, disabled, created_at",
        )
        .bind(new.username.as_str())
        .bind(new.display_name)
        .bind(new.role.as_str())
        .bind(new.password_hash)
        .bind(now)
        .fetch_one(self.conn())
        .await;
        match result {
            Ok(user) => Ok(user),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "the username '{}' is already taken; choose another one",
                new.username
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn update_user(&mut self, id: i64, changes: &UserChanges) -> Result<User> {
        let user = sqlx::query_as::<_, User>(
            "UPDATE users SET
                display_name = COALESCE($2, display_name),
                role = COALESCE($3, role),
                disabled = COALESCE($4, disabled)
             WHERE id = $1
             RETURNING id, username, display_name, role, disabled, created_at",
        )
        .bind(id)
        .bind(changes.display_name.as_deref())
        .bind(changes.role.map(Role::as_str))
        .bind(changes.disabled)
        .fetch_optional(self.conn())
        .await?;
        user.ok_or_else(|| not_found(id))
    }

    pub async fn set_password_hash(&mut self, id: i64, password_hash: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(password_hash)
        .bind(now_s())
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    pub async fn count_users(&mut self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.conn())
            .await?)
    }
}

pub(crate) fn not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "there is no user with id {id}; check the id in the user list"
    ))
}

impl Store {
    pub async fn user(&self, id: i64) -> Result<User> {
        sqlx::query_as::<_, User>("SELECT id, username, display_name, role, disabled, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(id))
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        Ok(sqlx::query_as::<_, User>("SELECT id, username, display_name, role, disabled, created_at FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The account and its password hash, for checking a login.
    pub async fn login_record(&self, username: &str) -> Result<Option<(User, String)>> {
        let row = sqlx::query_as::<_, LoginRow>(
            "SELECT id, username, display_name, role, disabled, created_at, password_hash FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| (row.user, row.password_hash)))
    }

    pub async fn password_hash(&self, id: i64) -> Result<String> {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Every account, optionally narrowed by a text in the username or display name.
    pub async fn list_users(&self, search: Option<&str>) -> Result<Vec<User>> {
        let pattern = search.map(|s| format!("%{}%", crate::escape_like(&s.to_lowercase())));
        Ok(sqlx::query_as::<_, User>(
            "SELECT id, username, display_name, role, disabled, created_at FROM users
             WHERE ($1 IS NULL OR username LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\')
             ORDER BY username",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    #[sqlx(flatten)]
    user: User,
    password_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;

    #[tokio::test]
    async fn a_taken_username_is_a_conflict_that_names_it() {
        let (store, _dir) = store().await;
        let name = Username::parse("anna").unwrap();
        let new = || NewUser {
            username: &name,
            display_name: "Anna",
            role: Role::Student,
            password_hash: "h",
        };
        let mut tx = store.begin().await.unwrap();
        tx.create_user(new()).await.unwrap();
        let err = tx.create_user(new()).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("'anna'")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn updates_change_only_what_is_given() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        let user = crate::test_support::student(&mut tx, "anna").await;
        let changed = tx
            .update_user(
                user.id,
                &UserChanges {
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(changed.disabled);
        assert_eq!(changed.display_name, "Anna");
        assert!(matches!(
            tx.update_user(999, &UserChanges::default()).await,
            Err(StoreError::NotFound(_))
        ));
        tx.commit().await.unwrap();
        assert_eq!(store.login_record("anna").await.unwrap().unwrap().1, "h");
    }
}
