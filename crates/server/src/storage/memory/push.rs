//! Push registrations in memory, in the account's entry (so they go with it).

use async_trait::async_trait;

use super::MemoryStorage;
use crate::storage::{PushRegistration, PushStore, StorageError, StorageResult};

#[async_trait]
impl PushStore for MemoryStorage {
    async fn put_push_registration(
        &self,
        user: &str,
        domain: &str,
        registration: &PushRegistration,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| {
            if entry.credentials.is_none() {
                return Err(StorageError::NotFound);
            }
            entry.push.retain(|r| {
                !(r.room == registration.room
                    && r.service == registration.service
                    && r.node == registration.node)
            });
            entry.push.push(registration.clone());
            Ok(())
        })
        .unwrap_or(Err(StorageError::NotFound))
    }

    async fn delete_push_registrations(
        &self,
        user: &str,
        domain: &str,
        room: Option<&str>,
        service: &str,
        node: Option<&str>,
    ) -> StorageResult<u64> {
        Ok(self
            .update_entry(user, domain, false, |entry| {
                let before = entry.push.len();
                entry.push.retain(|r| {
                    !(r.room.as_deref() == room
                        && r.service == service
                        && node.is_none_or(|n| r.node == n))
                });
                (before - entry.push.len()) as u64
            })
            .unwrap_or(0))
    }

    async fn push_registrations(
        &self,
        rooms: bool,
    ) -> StorageResult<Vec<(String, PushRegistration)>> {
        let entries = self.read();
        let mut all: Vec<(String, PushRegistration)> = entries
            .iter()
            .flat_map(|(domain, users)| {
                users.iter().flat_map(move |(user, entry)| {
                    entry
                        .push
                        .iter()
                        .filter(move |r| r.room.is_some() == rooms)
                        .map(move |r| (format!("{user}@{domain}"), r.clone()))
                })
            })
            .collect();
        all.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(&b.0)));
        Ok(all)
    }
}
