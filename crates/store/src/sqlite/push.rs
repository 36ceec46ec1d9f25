//! Push registrations in SQLite: `push_registrations`, one row per account, room ('' for the
//! account's own XEP-0357 registrations), service and node; they go with the account.

use async_trait::async_trait;
use salon_server::storage::{PushRegistration, PushStore, StorageError, StorageResult};

use super::SqliteStorage;
use crate::errors::db_error;

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
);

#[async_trait]
impl PushStore for SqliteStorage {
    async fn put_push_registration(
        &self,
        user: &str,
        domain: &str,
        registration: &PushRegistration,
    ) -> StorageResult<()> {
        let result = sqlx::query(
            "INSERT INTO push_registrations \
             (account_id, room, service, node, resource, token, options, created) \
             SELECT id, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id, room, service, node) DO UPDATE SET \
             resource = excluded.resource, token = excluded.token, \
             options = excluded.options, created = excluded.created",
        )
        .bind(user)
        .bind(domain)
        .bind(registration.room.as_deref().unwrap_or_default())
        .bind(&registration.service)
        .bind(&registration.node)
        .bind(&registration.resource)
        .bind(&registration.token)
        .bind(&registration.options)
        .bind(registration.created)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    async fn delete_push_registrations(
        &self,
        user: &str,
        domain: &str,
        room: Option<&str>,
        service: &str,
        node: Option<&str>,
    ) -> StorageResult<u64> {
        let result = sqlx::query(
            "DELETE FROM push_registrations WHERE account_id IN \
             (SELECT id FROM accounts WHERE user = ?1 AND domain = ?2) \
             AND room = ?3 AND service = ?4 AND (?5 IS NULL OR node = ?5)",
        )
        .bind(user)
        .bind(domain)
        .bind(room.unwrap_or_default())
        .bind(service)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected())
    }

    async fn push_registrations(
        &self,
        rooms: bool,
    ) -> StorageResult<Vec<(String, PushRegistration)>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT a.user || '@' || a.domain, p.room, p.service, p.node, p.resource, p.token, \
             p.options, p.created FROM push_registrations p JOIN accounts a ON a.id = p.account_id \
             WHERE (p.room <> '') = ?1 ORDER BY p.created, 1",
        )
        .bind(rooms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(
                |(account, room, service, node, resource, token, options, created)| {
                    let registration = PushRegistration {
                        room: Some(room).filter(|r| !r.is_empty()),
                        resource,
                        token,
                        service,
                        node,
                        options,
                        created,
                    };
                    (account, registration)
                },
            )
            .collect())
    }
}
