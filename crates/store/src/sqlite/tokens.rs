//! What the two tables of invitation tokens share, `invites` (accounts) and `room_invites`
//! (rooms): one row per token with its scope (the host, or the room), uses left, and when it
//! was made and expires. A row is made once per token; a use is taken with one conditional
//! UPDATE, so two sign-ups or joins cannot share the last use; rows are listed per scope newest
//! first, and deleted.

use salon_server::storage::{StorageError, StorageResult};
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::Sqlite;

use crate::errors::db_error;

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// One of the token tables.
pub(super) struct TokenTable {
    pub name: &'static str,
    /// The column a token belongs to: the host, or the room.
    pub scope: &'static str,
    /// The columns a row is written and read with, `token` first.
    pub columns: &'static str,
}

impl TokenTable {
    /// Stores a new row, its values bound by `bind` in the order of `columns`;
    /// `AlreadyExists` if the token is taken.
    pub async fn insert(
        &self,
        pool: &SqlitePool,
        bind: impl for<'q> FnOnce(Query<'q>) -> Query<'q>,
    ) -> StorageResult<()> {
        let placeholders: Vec<String> = (1..=self.columns.split(',').count())
            .map(|i| format!("?{i}"))
            .collect();
        let sql = format!(
            "INSERT OR IGNORE INTO {} ({}) VALUES ({})",
            self.name,
            self.columns,
            placeholders.join(", ")
        );
        let result = bind(sqlx::query(&sql))
            .execute(pool)
            .await
            .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(StorageError::AlreadyExists);
        }
        Ok(())
    }

    /// Takes one use of `token` (only if it belongs to `scope`, when given) if it is usable at
    /// `now`; the row after the use.
    pub async fn take_use<R>(
        &self,
        pool: &SqlitePool,
        token: &str,
        scope: Option<&str>,
        now: i64,
    ) -> StorageResult<Option<R>>
    where
        R: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
    {
        sqlx::query_as(&format!(
            "UPDATE {} SET uses_left = uses_left - 1 \
             WHERE token = ?1 AND (?2 IS NULL OR {} = ?2) AND uses_left > 0 AND expires > ?3 \
             RETURNING {}",
            self.name, self.scope, self.columns
        ))
        .bind(token)
        .bind(scope)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(db_error)
    }

    /// The rows of `scope`, newest first.
    pub async fn list<R>(&self, pool: &SqlitePool, scope: &str) -> StorageResult<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
    {
        sqlx::query_as(&format!(
            "SELECT {} FROM {} WHERE {} = ?1 ORDER BY created DESC, token",
            self.columns, self.name, self.scope
        ))
        .bind(scope)
        .fetch_all(pool)
        .await
        .map_err(db_error)
    }

    /// Deletes `token` (only if it belongs to `scope`, when given); `NotFound` if there was
    /// none.
    pub async fn delete(
        &self,
        pool: &SqlitePool,
        token: &str,
        scope: Option<&str>,
    ) -> StorageResult<()> {
        let removed = sqlx::query(&format!(
            "DELETE FROM {} WHERE token = ?1 AND (?2 IS NULL OR {} = ?2)",
            self.name, self.scope
        ))
        .bind(token)
        .bind(scope)
        .execute(pool)
        .await
        .map_err(db_error)?;
        if removed.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }
}
