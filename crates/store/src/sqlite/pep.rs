//! Personal eventing (XEP-0163) in SQLite: `pep_nodes` per account with their configuration,
//! `pep_items` per node ordered by `seq`.

use async_trait::async_trait;
use salon_server::storage::{
    AccessModel, PepItem, PepNode, PepNodeConfig, PepStore, SendLastItem, StorageError,
    StorageResult,
};
use sqlx::sqlite::SqliteRow;
use sqlx::Row as _;

use super::SqliteStorage;
use crate::errors::{corrupt, db_error, require_row};

const NODE_COLUMNS: &str = "n.node, n.access_model, n.roster_groups_allowed, n.persist_items, \
                            n.max_items, n.send_last_published_item, n.whitelist";

fn node_from_row(row: &SqliteRow) -> StorageResult<PepNode> {
    let access: String = row.try_get("access_model").map_err(db_error)?;
    let send_last: String = row.try_get("send_last_published_item").map_err(db_error)?;
    let groups: String = row.try_get("roster_groups_allowed").map_err(db_error)?;
    let max_items: Option<i64> = row.try_get("max_items").map_err(db_error)?;
    let whitelist: String = row.try_get("whitelist").map_err(db_error)?;
    Ok(PepNode {
        name: row.try_get("node").map_err(db_error)?,
        config: PepNodeConfig {
            access_model: AccessModel::parse(&access)
                .ok_or_else(|| corrupt("PEP access model", &access))?,
            roster_groups_allowed: groups
                .split('\n')
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            persist_items: row.try_get("persist_items").map_err(db_error)?,
            max_items: max_items
                .map(u32::try_from)
                .transpose()
                .map_err(|e| corrupt("PEP max_items", e))?,
            send_last_published_item: SendLastItem::parse(&send_last)
                .ok_or_else(|| corrupt("PEP send_last_published_item", &send_last))?,
            whitelist: whitelist
                .split('\n')
                .filter(|j| !j.is_empty())
                .map(str::to_owned)
                .collect(),
        },
    })
}

fn item_from_row(row: &SqliteRow) -> StorageResult<PepItem> {
    Ok(PepItem {
        id: row.try_get("item_id").map_err(db_error)?,
        published: row.try_get("published").map_err(db_error)?,
        payload: row.try_get("payload").map_err(db_error)?,
    })
}

fn as_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The node's row id, resolved from the account and name.
const NODE_ID: &str = "SELECT n.id FROM accounts a JOIN pep_nodes n ON n.account_id = a.id \
                       WHERE a.user = ?1 AND a.domain = ?2 AND n.node = ?3";

/// Keeps the newest `?2` items of node `?1`.
const TRIM: &str = "DELETE FROM pep_items WHERE node_id = ?1 AND seq NOT IN \
                    (SELECT seq FROM pep_items WHERE node_id = ?1 ORDER BY seq DESC LIMIT ?2)";

#[async_trait]
impl PepStore for SqliteStorage {
    async fn pep_nodes(&self, user: &str, domain: &str) -> StorageResult<Vec<PepNode>> {
        let rows = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM accounts a JOIN pep_nodes n ON n.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2 ORDER BY n.node"
        ))
        .bind(user)
        .bind(domain)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(node_from_row).collect()
    }

    async fn pep_node(
        &self,
        user: &str,
        domain: &str,
        node: &str,
    ) -> StorageResult<Option<PepNode>> {
        let row = sqlx::query(&format!(
            "SELECT {NODE_COLUMNS} FROM accounts a JOIN pep_nodes n ON n.account_id = a.id \
             WHERE a.user = ?1 AND a.domain = ?2 AND n.node = ?3"
        ))
        .bind(user)
        .bind(domain)
        .bind(node)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(node_from_row).transpose()
    }

    async fn put_pep_node(
        &self,
        user: &str,
        domain: &str,
        node: &PepNode,
        keep: usize,
    ) -> StorageResult<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let config = &node.config;
        let result = sqlx::query(
            "INSERT INTO pep_nodes (account_id, node, access_model, roster_groups_allowed, \
             persist_items, max_items, send_last_published_item, whitelist) \
             SELECT id, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM accounts WHERE user = ?1 AND domain = ?2 \
             ON CONFLICT (account_id, node) DO UPDATE SET \
             access_model = excluded.access_model, \
             roster_groups_allowed = excluded.roster_groups_allowed, \
             persist_items = excluded.persist_items, max_items = excluded.max_items, \
             send_last_published_item = excluded.send_last_published_item, \
             whitelist = excluded.whitelist",
        )
        .bind(user)
        .bind(domain)
        .bind(&node.name)
        .bind(config.access_model.as_str())
        .bind(config.roster_groups_allowed.join("\n"))
        .bind(config.persist_items)
        .bind(config.max_items.map(i64::from))
        .bind(config.send_last_published_item.as_str())
        .bind(config.whitelist.join("\n"))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        require_row(result.rows_affected())?;
        let id: i64 = sqlx::query_scalar(NODE_ID)
            .bind(user)
            .bind(domain)
            .bind(&node.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(TRIM)
            .bind(id)
            .bind(as_limit(keep))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_pep_node(&self, user: &str, domain: &str, node: &str) -> StorageResult<bool> {
        let result = sqlx::query(&format!("DELETE FROM pep_nodes WHERE id IN ({NODE_ID})"))
            .bind(user)
            .bind(domain)
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn publish_pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        item: &PepItem,
        keep: usize,
    ) -> StorageResult<()> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let id: i64 = sqlx::query_scalar(NODE_ID)
            .bind(user)
            .bind(domain)
            .bind(node)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(StorageError::NotFound)?;
        // Replaced, not updated: the new version is the newest, with a new `seq`.
        sqlx::query("DELETE FROM pep_items WHERE node_id = ?1 AND item_id = ?2")
            .bind(id)
            .bind(&item.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO pep_items (node_id, item_id, published, payload) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(id)
        .bind(&item.id)
        .bind(item.published)
        .bind(&item.payload)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(TRIM)
            .bind(id)
            .bind(as_limit(keep))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn pep_items(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<PepItem>> {
        let rows = sqlx::query(&format!(
            "SELECT item_id, published, payload FROM (SELECT i.seq, i.item_id, i.published, \
             i.payload FROM pep_items i WHERE i.node_id IN ({NODE_ID}) \
             ORDER BY i.seq DESC LIMIT ?4) ORDER BY seq"
        ))
        .bind(user)
        .bind(domain)
        .bind(node)
        .bind(limit.map_or(-1, as_limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(item_from_row).collect()
    }

    async fn pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        id: &str,
    ) -> StorageResult<Option<PepItem>> {
        let row = sqlx::query(&format!(
            "SELECT item_id, published, payload FROM pep_items \
             WHERE node_id IN ({NODE_ID}) AND item_id = ?4"
        ))
        .bind(user)
        .bind(domain)
        .bind(node)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(item_from_row).transpose()
    }

    async fn retract_pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        id: &str,
    ) -> StorageResult<bool> {
        let result = sqlx::query(&format!(
            "DELETE FROM pep_items WHERE node_id IN ({NODE_ID}) AND item_id = ?4"
        ))
        .bind(user)
        .bind(domain)
        .bind(node)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn purge_pep_node(&self, user: &str, domain: &str, node: &str) -> StorageResult<()> {
        sqlx::query(&format!(
            "DELETE FROM pep_items WHERE node_id IN ({NODE_ID})"
        ))
        .bind(user)
        .bind(domain)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
