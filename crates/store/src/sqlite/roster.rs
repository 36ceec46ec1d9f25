//! Rosters (RFC 6121 §2) in SQLite: `roster_items` with their groups in `roster_groups`, in
//! the order the client gave them.

use async_trait::async_trait;
use salon_server::storage::rules::check_roster_item;
use salon_server::storage::{RosterItem, RosterStore, StorageError, StorageResult, Subscription};
use sqlx::sqlite::SqliteRow;
use sqlx::Row as _;

use super::SqliteStorage;
use crate::errors::{corrupt, db_error};

/// Columns selected by the roster queries: one row per (item, group), items without groups once
/// with a NULL group, ordered by contact and then group position.
const ROSTER_SELECT: &str = "SELECT r.id, r.contact, r.name, r.subscription, r.ask_out, \
     r.pending_in, r.approved, g.name AS group_name \
     FROM accounts a \
     JOIN roster_items r ON r.account_id = a.id \
     LEFT JOIN roster_groups g ON g.item_id = r.id \
     WHERE a.user = ?1 AND a.domain = ?2";

/// Folds the rows of a [`ROSTER_SELECT`] query into items.
fn roster_from_rows(rows: &[SqliteRow]) -> StorageResult<Vec<RosterItem>> {
    let mut items: Vec<RosterItem> = Vec::new();
    let mut current_id: Option<i64> = None;
    for row in rows {
        let id: i64 = row.try_get("id").map_err(db_error)?;
        if current_id != Some(id) {
            current_id = Some(id);
            let stored: String = row.try_get("subscription").map_err(db_error)?;
            let subscription = Subscription::parse(&stored)
                .filter(|s| *s != Subscription::Remove)
                .ok_or_else(|| corrupt("roster subscription", format!("{stored:?}")))?;
            items.push(RosterItem {
                jid: row.try_get("contact").map_err(db_error)?,
                name: row.try_get("name").map_err(db_error)?,
                subscription,
                ask_out: row.try_get("ask_out").map_err(db_error)?,
                pending_in: row.try_get("pending_in").map_err(db_error)?,
                approved: row.try_get("approved").map_err(db_error)?,
                groups: Vec::new(),
            });
        }
        let group: Option<String> = row.try_get("group_name").map_err(db_error)?;
        if let (Some(group), Some(item)) = (group, items.last_mut()) {
            item.groups.push(group);
        }
    }
    Ok(items)
}

#[async_trait]
impl RosterStore for SqliteStorage {
    async fn roster(&self, user: &str, domain: &str) -> StorageResult<Vec<RosterItem>> {
        let rows = sqlx::query(&format!("{ROSTER_SELECT} ORDER BY r.contact, g.position"))
            .bind(user)
            .bind(domain)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        roster_from_rows(&rows)
    }

    async fn roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>> {
        let rows = sqlx::query(&format!(
            "{ROSTER_SELECT} AND r.contact = ?3 ORDER BY g.position"
        ))
        .bind(user)
        .bind(domain)
        .bind(contact)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(roster_from_rows(&rows)?.into_iter().next())
    }

    async fn put_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> StorageResult<()> {
        check_roster_item(item)?;
        // IMMEDIATE: take the write lock now, so the busy timeout applies to acquiring it rather
        // than failing on a lock upgrade halfway through.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let item_id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO roster_items (account_id, contact, name, subscription, ask_out, \
             pending_in, approved) \
             SELECT id, ?3, ?4, ?5, ?6, ?7, ?8 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id, contact) DO UPDATE SET name = excluded.name, \
             subscription = excluded.subscription, ask_out = excluded.ask_out, \
             pending_in = excluded.pending_in, approved = excluded.approved \
             RETURNING id",
        )
        .bind(user)
        .bind(domain)
        .bind(&item.jid)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(item.ask_out)
        .bind(item.pending_in)
        .bind(item.approved)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        // No account: nothing was written; dropping the transaction rolls it back.
        let item_id = item_id.ok_or(StorageError::NotFound)?;
        sqlx::query("DELETE FROM roster_groups WHERE item_id = ?1")
            .bind(item_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for (position, group) in item.groups.iter().enumerate() {
            let position = i64::try_from(position).map_err(|e| corrupt("group position", e))?;
            sqlx::query("INSERT INTO roster_groups (item_id, position, name) VALUES (?1, ?2, ?3)")
                .bind(item_id)
                .bind(position)
                .bind(group)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<()> {
        // Groups go with the item through ON DELETE CASCADE.
        sqlx::query(
            "DELETE FROM roster_items WHERE contact = ?3 \
             AND account_id = (SELECT id FROM accounts WHERE user = ?1 AND domain = ?2)",
        )
        .bind(user)
        .bind(domain)
        .bind(contact)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
