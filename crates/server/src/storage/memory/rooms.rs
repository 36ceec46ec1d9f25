//! Persistent MUC rooms (XEP-0045) in memory, by service domain. Deleting a room that is not
//! stored is not an error.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use super::{read, write, MemoryStorage};
use crate::storage::rules::jid_domain;
use crate::storage::{RoomStore, StorageResult};

/// Service domain → room bare JID → record; the inner `BTreeMap` lists rooms sorted.
pub(super) type Rooms = HashMap<String, BTreeMap<String, String>>;

#[async_trait]
impl RoomStore for MemoryStorage {
    async fn save_room(&self, room: &str, record: &str) -> StorageResult<()> {
        write(&self.rooms)
            .entry(jid_domain(room).to_owned())
            .or_default()
            .insert(room.to_owned(), record.to_owned());
        Ok(())
    }

    async fn delete_room(&self, room: &str) -> StorageResult<()> {
        let mut rooms = write(&self.rooms);
        let service = jid_domain(room);
        if let Some(service_rooms) = rooms.get_mut(service) {
            service_rooms.remove(room);
            if service_rooms.is_empty() {
                rooms.remove(service);
            }
        }
        Ok(())
    }

    async fn rooms(&self, service: &str) -> StorageResult<Vec<(String, String)>> {
        Ok(read(&self.rooms)
            .get(service)
            .map(|rooms| {
                rooms
                    .iter()
                    .map(|(jid, record)| (jid.clone(), record.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }
}
