//! In-memory storage: used for anonymous hosts, whose visitors' state must not outlive them.
//!
//! Everything lives in one map of accounts behind a `RwLock`; every operation is a short,
//! non-blocking critical section, so one lock for the whole store is simple and cheap enough.
//! Behaviour matches the SQLite backend (the conformance suite in `salon-store` runs against
//! both): per-account writes (roster, offline, vCard, last activity) for an account that does not
//! exist fail with [`StorageError::NotFound`], reads of such an account return nothing, rosters
//! are returned sorted by contact JID, and `delete_account` drops everything at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::{
    Credentials, LastActivity, OfflineMessage, RosterItem, Storage, StorageError, StorageResult,
    Subscription,
};

/// Everything stored for one account.
#[derive(Debug)]
struct Account {
    credentials: Credentials,
    /// Keyed by the contact's bare JID; a `BTreeMap` so rosters come out sorted.
    roster: BTreeMap<String, RosterItem>,
    /// Oldest first.
    offline: Vec<OfflineMessage>,
    vcard: Option<String>,
    last: Option<LastActivity>,
}

impl Account {
    fn new(credentials: Credentials) -> Account {
        Account {
            credentials,
            roster: BTreeMap::new(),
            offline: Vec::new(),
            vcard: None,
            last: None,
        }
    }
}

/// Domain → localpart → account. Nested so that lookups by `&str` need no allocation.
type Accounts = HashMap<String, HashMap<String, Account>>;

/// A [`Storage`] that keeps everything in process memory and forgets it on exit.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    accounts: RwLock<Accounts>,
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    // No operation panics while holding the lock, and none leaves the map half-updated, so a
    // poisoned lock (a panic elsewhere while holding it) still guards consistent data.
    fn read(&self) -> RwLockReadGuard<'_, Accounts> {
        self.accounts.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Accounts> {
        self.accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the account if it exists.
    fn with_account<T>(
        &self,
        user: &str,
        domain: &str,
        f: impl FnOnce(&Account) -> T,
    ) -> Option<T> {
        self.read()
            .get(domain)
            .and_then(|users| users.get(user))
            .map(f)
    }

    /// Runs `f` on the account, or fails with `NotFound`.
    fn with_account_mut<T>(
        &self,
        user: &str,
        domain: &str,
        f: impl FnOnce(&mut Account) -> T,
    ) -> StorageResult<T> {
        self.write()
            .get_mut(domain)
            .and_then(|users| users.get_mut(user))
            .map(f)
            .ok_or(StorageError::NotFound)
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
        let mut accounts = self.write();
        let users = accounts.entry(domain.to_owned()).or_default();
        if users.contains_key(user) {
            return Err(StorageError::AlreadyExists);
        }
        users.insert(user.to_owned(), Account::new(credentials.clone()));
        Ok(())
    }

    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        self.with_account_mut(user, domain, |account| {
            account.credentials = credentials.clone();
        })
    }

    async fn delete_account(&self, user: &str, domain: &str) -> StorageResult<()> {
        let mut accounts = self.write();
        let users = accounts.get_mut(domain).ok_or(StorageError::NotFound)?;
        users.remove(user).ok_or(StorageError::NotFound)?;
        if users.is_empty() {
            accounts.remove(domain);
        }
        Ok(())
    }

    async fn credentials(&self, user: &str, domain: &str) -> StorageResult<Option<Credentials>> {
        Ok(self.with_account(user, domain, |account| account.credentials.clone()))
    }

    async fn list_accounts(&self, domain: Option<&str>) -> StorageResult<Vec<String>> {
        let accounts = self.read();
        let mut jids: Vec<String> = accounts
            .iter()
            .filter(|(d, _)| domain.is_none_or(|wanted| wanted == d.as_str()))
            .flat_map(|(d, users)| users.keys().map(move |u| format!("{u}@{d}")))
            .collect();
        jids.sort_unstable();
        Ok(jids)
    }

    async fn roster(&self, user: &str, domain: &str) -> StorageResult<Vec<RosterItem>> {
        Ok(self
            .with_account(user, domain, |account| {
                account.roster.values().cloned().collect()
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
            .with_account(user, domain, |account| account.roster.get(contact).cloned())
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
        self.with_account_mut(user, domain, |account| {
            account.roster.insert(item.jid.clone(), item.clone());
        })
    }

    async fn remove_roster_item(
        &self,
        user: &str,
        domain: &str,
        contact: &str,
    ) -> StorageResult<()> {
        // Removing from a missing account is a no-op, as removing a missing item is.
        if let Some(account) = self
            .write()
            .get_mut(domain)
            .and_then(|users| users.get_mut(user))
        {
            account.roster.remove(contact);
        }
        Ok(())
    }

    async fn store_offline(
        &self,
        user: &str,
        domain: &str,
        message: &OfflineMessage,
    ) -> StorageResult<()> {
        self.with_account_mut(user, domain, |account| {
            account.offline.push(message.clone());
        })
    }

    async fn count_offline(&self, user: &str, domain: &str) -> StorageResult<usize> {
        Ok(self
            .with_account(user, domain, |account| account.offline.len())
            .unwrap_or(0))
    }

    async fn take_offline(&self, user: &str, domain: &str) -> StorageResult<Vec<OfflineMessage>> {
        Ok(self
            .write()
            .get_mut(domain)
            .and_then(|users| users.get_mut(user))
            .map(|account| std::mem::take(&mut account.offline))
            .unwrap_or_default())
    }

    async fn vcard(&self, user: &str, domain: &str) -> StorageResult<Option<String>> {
        Ok(self
            .with_account(user, domain, |account| account.vcard.clone())
            .flatten())
    }

    async fn set_vcard(&self, user: &str, domain: &str, vcard: &str) -> StorageResult<()> {
        self.with_account_mut(user, domain, |account| {
            account.vcard = Some(vcard.to_owned());
        })
    }

    async fn last_activity(&self, user: &str, domain: &str) -> StorageResult<Option<LastActivity>> {
        Ok(self
            .with_account(user, domain, |account| account.last.clone())
            .flatten())
    }

    async fn set_last_activity(
        &self,
        user: &str,
        domain: &str,
        activity: &LastActivity,
    ) -> StorageResult<()> {
        self.with_account_mut(user, domain, |account| {
            account.last = Some(activity.clone());
        })
    }

    async fn flush(&self) -> StorageResult<()> {
        // Nothing is meant to be durable here.
        Ok(())
    }
}
