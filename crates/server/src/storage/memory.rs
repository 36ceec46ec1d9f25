//! In-memory storage: used for anonymous hosts, whose visitors' state must not outlive them.
//!
//! Everything lives in one map behind a `RwLock`; every operation is a short, non-blocking
//! critical section, so one lock for the whole store is simple and cheap enough. Behaviour
//! matches the SQLite backend (the conformance suite in `salon-store` runs against both), with
//! one deliberate difference: anonymous visitors never get an account (the server treats them as
//! existing while online), so per-address data (roster, offline messages, vCard, last activity)
//! can be written for an address without an account, where SQLite answers
//! [`StorageError::NotFound`]. Such an address is still not an account: `credentials` is `None`,
//! `list_accounts` leaves it out, `set_credentials` is `NotFound`. `delete_account` drops the
//! data (answering `NotFound` if there was no account), and an address left with neither
//! account nor data is forgotten, so departed visitors leave nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::{
    Credentials, LastActivity, OfflineMessage, RosterItem, Storage, StorageError, StorageResult,
    Subscription,
};

/// Everything stored for one address.
#[derive(Debug, Default)]
struct Entry {
    /// `None`: not an account, only data written for the address (anonymous visitors).
    credentials: Option<Credentials>,
    /// Keyed by the contact's bare JID; a `BTreeMap` so rosters come out sorted.
    roster: BTreeMap<String, RosterItem>,
    /// Oldest first.
    offline: Vec<OfflineMessage>,
    vcard: Option<String>,
    last: Option<LastActivity>,
}

impl Entry {
    /// Neither an account nor any data: nothing worth keeping.
    fn is_vacant(&self) -> bool {
        self.credentials.is_none()
            && self.roster.is_empty()
            && self.offline.is_empty()
            && self.vcard.is_none()
            && self.last.is_none()
    }
}

/// Domain → localpart → entry. Nested so that lookups by `&str` need no allocation.
type Entries = HashMap<String, HashMap<String, Entry>>;

/// A [`Storage`] that keeps everything in process memory and forgets it on exit.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: RwLock<Entries>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    // No operation panics while holding the lock, and none leaves the map half-updated, so a
    // poisoned lock (a panic elsewhere while holding it) still guards consistent data.
    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the address's entry if there is one.
    fn with_entry<T>(&self, user: &str, domain: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        self.read()
            .get(domain)
            .and_then(|users| users.get(user))
            .map(f)
    }

    /// Runs `f` on the address's entry, creating it if missing (and `create` says so), and
    /// forgets the entry afterwards if it was left vacant. `None` if there was no entry to use.
    fn update_entry<T>(
        &self,
        user: &str,
        domain: &str,
        create: bool,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> Option<T> {
        let mut entries = self.write();
        let users = if create {
            entries.entry(domain.to_owned()).or_default()
        } else {
            entries.get_mut(domain)?
        };
        let entry = if create {
            users.entry(user.to_owned()).or_default()
        } else {
            users.get_mut(user)?
        };
        let result = f(entry);
        if entry.is_vacant() {
            users.remove(user);
            if users.is_empty() {
                entries.remove(domain);
            }
        }
        Some(result)
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        // Data already written for the address (an anonymous visitor's) is kept.
        self.update_entry(user, domain, true, |entry| {
            if entry.credentials.is_some() {
                return Err(StorageError::AlreadyExists);
            }
            entry.credentials = Some(credentials.clone());
            Ok(())
        })
        .unwrap_or(Err(StorageError::NotFound))
    }

    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| match &mut entry.credentials {
            Some(stored) => {
                *stored = credentials.clone();
                Ok(())
            }
            None => Err(StorageError::NotFound),
        })
        .unwrap_or(Err(StorageError::NotFound))
    }

    async fn delete_account(&self, user: &str, domain: &str) -> StorageResult<()> {
        let mut entries = self.write();
        let users = entries.get_mut(domain).ok_or(StorageError::NotFound)?;
        let entry = users.remove(user).ok_or(StorageError::NotFound)?;
        if users.is_empty() {
            entries.remove(domain);
        }
        // Data without an account is dropped all the same; the account was still not there.
        match entry.credentials {
            Some(_) => Ok(()),
            None => Err(StorageError::NotFound),
        }
    }

    async fn credentials(&self, user: &str, domain: &str) -> StorageResult<Option<Credentials>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.credentials.clone())
            .flatten())
    }

    async fn list_accounts(&self, domain: Option<&str>) -> StorageResult<Vec<String>> {
        let entries = self.read();
        let mut jids: Vec<String> = entries
            .iter()
            .filter(|(d, _)| domain.is_none_or(|wanted| wanted == d.as_str()))
            .flat_map(|(d, users)| {
                users
                    .iter()
                    .filter(|(_, entry)| entry.credentials.is_some())
                    .map(move |(u, _)| format!("{u}@{d}"))
            })
            .collect();
        jids.sort_unstable();
        Ok(jids)
    }

    async fn roster(&self, user: &str, domain: &str) -> StorageResult<Vec<RosterItem>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry.roster.values().cloned().collect()
            })
            .unwrap_or_default())
    }

    async fn roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<Option<RosterItem>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.roster.get(contact).cloned())
            .flatten())
    }

    async fn put_roster_item(
        &self,
        user: &str,
        domain: &str,
        item: &RosterItem,
    ) -> StorageResult<()> {
        if item.subscription == Subscription::Remove {
            return Err(StorageError::Backend(
                "subscription \"remove\" is never stored".to_owned(),
            ));
        }
        self.update_entry(user, domain, true, |entry| {
            entry.roster.insert(item.jid.clone(), item.clone());
        });
        Ok(())
    }

    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<()> {
        // Removing what is not there is not an error.
        self.update_entry(user, domain, false, |entry| {
            entry.roster.remove(contact);
        });
        Ok(())
    }

    async fn store_offline(
        &self,
        user: &str,
        domain: &str,
        message: &OfflineMessage,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.offline.push(message.clone());
        });
        Ok(())
    }

    async fn count_offline(&self, user: &str, domain: &str) -> StorageResult<usize> {
        Ok(self
            .with_entry(user, domain, |entry| entry.offline.len())
            .unwrap_or(0))
    }

    async fn take_offline(&self, user: &str, domain: &str) -> StorageResult<Vec<OfflineMessage>> {
        Ok(self
            .update_entry(user, domain, false, |entry| {
                std::mem::take(&mut entry.offline)
            })
            .unwrap_or_default())
    }

    async fn vcard(&self, user: &str, domain: &str) -> StorageResult<Option<String>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.vcard.clone())
            .flatten())
    }

    async fn set_vcard(&self, user: &str, domain: &str, vcard: &str) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.vcard = Some(vcard.to_owned());
        });
        Ok(())
    }

    async fn last_activity(&self, user: &str, domain: &str) -> StorageResult<Option<LastActivity>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.last.clone())
            .flatten())
    }

    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        activity: &LastActivity,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.last = Some(activity.clone());
        });
        Ok(())
    }

    async fn flush(&self) -> StorageResult<()> {
        // Nothing is meant to be durable here.
        Ok(())
    }
}
