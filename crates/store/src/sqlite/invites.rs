//! Invitations in SQLite: `invites`, one row per token (the shared handling in `tokens.rs`).

use async_trait::async_trait;
use salon_server::storage::{Invite, InviteStore, StorageResult};

use super::tokens::TokenTable;
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

const TABLE: TokenTable = TokenTable {
    name: "invites",
    scope: "domain",
    columns: "token, domain, inviter, uses_left, created, expires, admin",
};

#[async_trait]
impl InviteStore for SqliteStorage {
    async fn create_invite(&self, invite: &Invite) -> StorageResult<()> {
        let invite = invite.clone();
        TABLE
            .insert(&self.pool, move |query| {
                query
                    .bind(invite.token)
                    .bind(invite.domain)
                    .bind(invite.inviter)
                    .bind(i64::from(invite.uses_left))
                    .bind(invite.created)
                    .bind(invite.expires)
                    .bind(invite.admin)
            })
            .await
    }

    async fn invite(&self, token: &str) -> StorageResult<Option<Invite>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {} FROM invites WHERE token = ?1",
            TABLE.columns
        ))
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(row.map(from_row))
    }

    async fn take_invite_use(&self, token: &str, now: i64) -> StorageResult<Option<Invite>> {
        let row: Option<Row> = TABLE.take_use(&self.pool, token, None, now).await?;
        // The row after the update; the caller wants it as it was.
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
        let rows: Vec<Row> = TABLE.list(&self.pool, domain).await?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    async fn delete_invite(&self, token: &str) -> StorageResult<()> {
        TABLE.delete(&self.pool, token, None).await
    }
}
