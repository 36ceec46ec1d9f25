//! Personal eventing (XEP-0163) in memory: each node's configuration and its items, oldest
//! first.

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{PepItem, PepNode, PepNodeConfig, PepStore, StorageError, StorageResult};

/// One node of an address.
#[derive(Debug)]
pub(super) struct Node {
    config: PepNodeConfig,
    /// Oldest first.
    items: Vec<PepItem>,
}

fn keep_newest(items: &mut Vec<PepItem>, keep: usize) {
    let excess = items.len().saturating_sub(keep);
    items.drain(..excess);
}

#[async_trait]
impl PepStore for MemoryStorage {
    async fn pep_nodes(&self, user: &str, domain: &str) -> StorageResult<Vec<PepNode>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry
                    .pep
                    .iter()
                    .map(|(name, node)| PepNode {
                        name: name.clone(),
                        config: node.config.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn pep_node(
        &self,
        user: &str,
        domain: &str,
        node: &str,
    ) -> StorageResult<Option<PepNode>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry.pep.get(node).map(|n| PepNode {
                    name: node.to_owned(),
                    config: n.config.clone(),
                })
            })
            .flatten())
    }

    async fn put_pep_node(
        &self,
        user: &str,
        domain: &str,
        node: &PepNode,
        keep: usize,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            let stored = entry.pep.entry(node.name.clone()).or_insert_with(|| Node {
                config: node.config.clone(),
                items: Vec::new(),
            });
            stored.config = node.config.clone();
            keep_newest(&mut stored.items, keep);
        });
        Ok(())
    }

    async fn delete_pep_node(&self, user: &str, domain: &str, node: &str) -> StorageResult<bool> {
        Ok(self
            .update_entry(user, domain, false, |entry| {
                entry.pep.remove(node).is_some()
            })
            .unwrap_or(false))
    }

    async fn publish_pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        item: &PepItem,
        keep: usize,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| {
            let stored = entry.pep.get_mut(node).ok_or(StorageError::NotFound)?;
            stored.items.retain(|i| i.id != item.id);
            stored.items.push(item.clone());
            keep_newest(&mut stored.items, keep);
            Ok(())
        })
        .unwrap_or(Err(StorageError::NotFound))
    }

    async fn pep_items(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        limit: Option<usize>,
    ) -> StorageResult<Vec<PepItem>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry.pep.get(node).map(|n| {
                    let skip = limit.map_or(0, |l| n.items.len().saturating_sub(l));
                    n.items[skip..].to_vec()
                })
            })
            .flatten()
            .unwrap_or_default())
    }

    async fn pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        id: &str,
    ) -> StorageResult<Option<PepItem>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry
                    .pep
                    .get(node)
                    .and_then(|n| n.items.iter().find(|i| i.id == id).cloned())
            })
            .flatten())
    }

    async fn retract_pep_item(
        &self,
        user: &str,
        domain: &str,
        node: &str,
        id: &str,
    ) -> StorageResult<bool> {
        Ok(self
            .update_entry(user, domain, false, |entry| {
                entry.pep.get_mut(node).is_some_and(|n| {
                    let before = n.items.len();
                    n.items.retain(|i| i.id != id);
                    n.items.len() != before
                })
            })
            .unwrap_or(false))
    }

    async fn purge_pep_node(&self, user: &str, domain: &str, node: &str) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| {
            if let Some(n) = entry.pep.get_mut(node) {
                n.items.clear();
            }
        });
        Ok(())
    }
}
