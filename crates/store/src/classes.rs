//! Classes and their members.

use crate::{Result, Store, StoreError, WriteTx, now_s};
use serde::Serialize;
use voxhub_core::role::ClassRole;

/// A class with its member counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Class {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// First day, `YYYY-MM-DD`.
    pub starts_on: String,
    /// Last day, `YYYY-MM-DD`.
    pub ends_on: String,
    pub created_by: i64,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    pub teacher_count: i64,
    pub student_count: i64,
}

const CLASS_SELECT: &str = "SELECT c.id, c.name, c.description, c.starts_on, c.ends_on, c.created_by, c.created_at,
    (SELECT COUNT(*) FROM class_members m WHERE m.class_id = c.id AND m.role = 'teacher') AS teacher_count,
    (SELECT COUNT(*) FROM class_members m WHERE m.class_id = c.id AND m.role = 'student') AS student_count
    FROM classes c";

/// A class as one of the caller's classes, with the caller's role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MyClass {
    pub id: i64,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: ClassRole,
}

/// One person in a class, with how they got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Member {
    pub user_id: i64,
    pub username: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: ClassRole,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: i64,
    /// The invite code they registered with, if they joined that way.
    pub invite_code: Option<String>,
    /// The username of whoever added them, if they were added by hand.
    pub added_by: Option<String>,
    pub disabled: bool,
}

pub struct ClassFields<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub starts_on: &'a str,
    pub ends_on: &'a str,
}

fn class_not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "there is no class with id {id}; check the id in your class list"
    ))
}

impl WriteTx {
    pub async fn create_class(&mut self, fields: &ClassFields<'_>, created_by: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO classes (name, description, starts_on, ends_on, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(fields.name)
        .bind(fields.description)
        .bind(fields.starts_on)
        .bind(fields.ends_on)
        .bind(created_by)
        .bind(now_s())
        .fetch_one(self.conn())
        .await?)
    }

    pub async fn update_class(&mut self, id: i64, fields: &ClassFields<'_>) -> Result<()> {
        let done = sqlx::query("UPDATE classes SET name = $2, description = $3, starts_on = $4, ends_on = $5 WHERE id = $1")
            .bind(id)
            .bind(fields.name)
            .bind(fields.description)
            .bind(fields.starts_on)
            .bind(fields.ends_on)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(class_not_found(id));
        }
        Ok(())
    }

    /// Adds someone to a class, or changes their role if they are in it already.
    /// Returns their previous role.
    pub async fn put_member(
        &mut self,
        class_id: i64,
        user_id: i64,
        role: ClassRole,
        added_by: Option<i64>,
        invite_id: Option<i64>,
    ) -> Result<Option<ClassRole>> {
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT role FROM class_members WHERE class_id = $1 AND user_id = $2",
        )
        .bind(class_id)
        .bind(user_id)
        .fetch_optional(self.conn())
        .await?;
        if previous.is_some() {
            sqlx::query("UPDATE class_members SET role = $3 WHERE class_id = $1 AND user_id = $2")
                .bind(class_id)
                .bind(user_id)
                .bind(role.as_str())
                .execute(self.conn())
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO class_members (class_id, user_id, role, joined_at, invite_id, added_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(class_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now_s())
            .bind(invite_id)
            .bind(added_by)
            .execute(self.conn())
            .await?;
        }
        Ok(previous.and_then(|r| ClassRole::parse(&r)))
    }

    pub async fn remove_member(&mut self, class_id: i64, user_id: i64) -> Result<ClassRole> {
        let role: Option<String> = sqlx::query_scalar(
            "DELETE FROM class_members WHERE class_id = $1 AND user_id = $2 RETURNING role",
        )
        .bind(class_id)
        .bind(user_id)
        .fetch_optional(self.conn())
        .await?;
        role.and_then(|r| ClassRole::parse(&r)).ok_or_else(|| {
            StoreError::NotFound(format!(
                "user {user_id} is not a member of class {class_id}; nothing was removed"
            ))
        })
    }
}

impl Store {
    pub async fn class(&self, id: i64) -> Result<Class> {
        sqlx::query_as::<_, Class>(sqlx::AssertSqlSafe(format!(
            "{CLASS_SELECT} WHERE c.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| class_not_found(id))
    }

    pub async fn all_classes(&self) -> Result<Vec<Class>> {
        Ok(sqlx::query_as::<_, Class>(sqlx::AssertSqlSafe(format!(
            "{CLASS_SELECT} ORDER BY c.starts_on DESC, c.name"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The classes someone is a member of, in full.
    pub async fn classes_of(&self, user_id: i64) -> Result<Vec<Class>> {
        Ok(sqlx::query_as::<_, Class>(sqlx::AssertSqlSafe(format!(
            "{CLASS_SELECT} WHERE c.id IN (SELECT class_id FROM class_members WHERE user_id = $1)
             ORDER BY c.starts_on DESC, c.name"
        )))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The classes someone is in and their role in each.
    pub async fn memberships_of(&self, user_id: i64) -> Result<Vec<MyClass>> {
        Ok(sqlx::query_as::<_, MyClass>(
            "SELECT c.id, c.name, m.role FROM class_members m JOIN classes c ON c.id = m.class_id
             WHERE m.user_id = $1 ORDER BY c.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The caller's role in a class, or `None` when they are not in it.
    pub async fn membership(&self, class_id: i64, user_id: i64) -> Result<Option<ClassRole>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM class_members WHERE class_id = $1 AND user_id = $2",
        )
        .bind(class_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(role.and_then(|r| ClassRole::parse(&r)))
    }

    /// Members of a class, teachers first; `only_teachers` leaves students out.
    pub async fn members(&self, class_id: i64, only_teachers: bool) -> Result<Vec<Member>> {
        Ok(sqlx::query_as::<_, Member>(
            "SELECT m.user_id, u.username, u.display_name, m.role, m.joined_at, i.code AS invite_code,
                    a.username AS added_by, u.disabled
             FROM class_members m
             JOIN users u ON u.id = m.user_id
             LEFT JOIN invites i ON i.id = m.invite_id
             LEFT JOIN users a ON a.id = m.added_by
             WHERE m.class_id = $1 AND ($2 = FALSE OR m.role = 'teacher')
             ORDER BY m.role DESC, u.username",
        )
        .bind(class_id)
        .bind(only_teachers)
        .fetch_all(&self.pool)
        .await?)
    }
}
