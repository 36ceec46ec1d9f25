//! Invitations in SQLite: `invites`, one row per token; a use is taken with one conditional
//! UPDATE, so two sign-ups cannot share the last use.

use async_trait::async_trait;
use salon_server::storage::{Invite, InviteStore, StorageError, StorageResult};

use super::SqliteStorage;
use crate::errors::db_error;

type Row = (String, String, Option<String>, i64, i64, i64, bool);

fn from_row((token, domain, inviter, uses_left, created, expires, admin): Row) -> Invite {
    Invite {
        token,
        domain,
        inviter,
        uses_left: u32::try_from(uses_left).unwrap_or(0),
        created,
        expires,
        admin,
    }
}

const COLUMNS: &str = "token, domain, inviter, uses_left, created, expires, admin";

#[async_trait]
impl InviteStore for SqliteStorage {
    async fn create_invite(&self, invite: &Invite) -> StorageResult<()> {
        let result = sqlx::query(&format!(
            "INSERT OR IGNORE INTO invites ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))
        .bind(&invite.token)
        .bind(&invite.domain)
        .bind(&invite.inviter)
        .bind(i64::from(invite.uses_left))
        .bind(invite.created)
        .bind(invite.expires)
        .bind(invite.admin)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(StorageError::AlreadyExists);
        }
        Ok(())
    }

    async fn invite(&self, token: &str) -> StorageResult<Option<Invite>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM invites WHERE token = ?1"))
                .bind(token)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(row.map(from_row))
    }

    async fn take_invite_use(&self, token: &str, now: i64) -> StorageResult<Option<Invite>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "UPDATE invites SET uses_left = uses_left - 1 \
             WHERE token = ?1 AND uses_left > 0 AND expires > ?2 RETURNING {COLUMNS}"
        ))
        .bind(token)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        // RETURNING gives the row after the update; the caller wants it as it was.
        Ok(row.map(from_row).map(|mut invite| {
            invite.uses_left += 1;
            invite
        }))
    }

    async fn return_invite_use(&self, token: &str) -> StorageResult<()> {
        sqlx::query("UPDATE invites SET uses_left = uses_left + 1 WHERE token = ?1")
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn invites(&self, domain: &str) -> StorageResult<Vec<Invite>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM invites WHERE domain = ?1 ORDER BY created DESC, token"
        ))
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    async fn delete_invite(&self, token: &str) -> StorageResult<()> {
        let removed = sqlx::query("DELETE FROM invites WHERE token = ?1")
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if removed.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }
}
