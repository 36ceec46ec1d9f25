//! In-memory storage: used for anonymous hosts, whose visitors' state must not outlive them.
//!
//! Per-address data lives in one map behind a `RwLock`; every operation is a short,
//! non-blocking critical section, so one lock for the whole map is simple and cheap enough.
//! Behaviour matches the SQLite backend (the conformance suite in `salon-store` runs against
//! both), with one deliberate difference: anonymous visitors never get an account (the server
//! treats them as existing while online), so per-address data (roster, blocklist, private XML,
//! offline messages, vCard, last activity, PEP) can be written for an address without an account,
//! where SQLite answers [`NotFound`](super::StorageError::NotFound). Such an address is still not an account:
//! `credentials` is `None`, `list_accounts` leaves it out, `set_credentials` is `NotFound`.
//! `delete_account` drops the data (answering `NotFound` if there was no account), and an
//! address left with neither account nor data is forgotten, so departed visitors leave nothing
//! behind.
//!
//! MUC rooms, message archives and upload records are not per-account data and live in maps of
//! their own, each behind its own lock (no operation needs two at once, `delete_account` takes
//! them one after the other). Each feature's trait is implemented in the file named after it; a
//! new per-address feature adds its field to [`Entry`] (and to [`Entry::is_vacant`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::{
    Credentials, LastActivity, OfflineMessage, RosterItem, Storage, StorageResult, UploadRecord,
};

mod accounts;
mod admins;
mod archive;
mod bans;
mod blocklist;
mod invites;
mod last_activity;
mod offline;
mod pep;
mod private;
mod push;
mod room_invites;
mod rooms;
mod roster;
mod uploads;
mod vcard;

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
    /// Blocked addresses (XEP-0191), sorted.
    blocklist: BTreeSet<String>,
    /// Private XML (XEP-0049) by namespace.
    private: BTreeMap<String, String>,
    /// PEP nodes (XEP-0163) by name.
    pep: BTreeMap<String, pep::Node>,
    /// Push registrations (XEP-0357, MUC push), oldest first; only for accounts.
    push: Vec<super::PushRegistration>,
    /// Made an administrator by an invitation; only for accounts.
    admin: bool,
}

impl Entry {
    /// Neither an account nor any data: nothing worth keeping.
    fn is_vacant(&self) -> bool {
        self.credentials.is_none()
            && self.roster.is_empty()
            && self.offline.is_empty()
            && self.vcard.is_none()
            && self.last.is_none()
            && self.blocklist.is_empty()
            && self.private.is_empty()
            && self.pep.is_empty()
            && self.push.is_empty()
            && !self.admin
    }
}

/// Domain → localpart → entry. Nested so that lookups by `&str` need no allocation.
type Entries = HashMap<String, HashMap<String, Entry>>;

/// A [`Storage`] that keeps everything in process memory and forgets it on exit.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: RwLock<Entries>,
    rooms: RwLock<rooms::Rooms>,
    archives: RwLock<archive::Archives>,
    /// Upload records by slot id.
    uploads: RwLock<HashMap<String, UploadRecord>>,
    /// Server-wide bans by target.
    bans: RwLock<BTreeMap<String, super::Ban>>,
    /// Invitations by token.
    invites: RwLock<HashMap<String, super::Invite>>,
    /// Room invite links by token.
    room_invites: RwLock<HashMap<String, super::RoomInvite>>,
}

// No operation panics while holding a lock, and none leaves a map half-updated, so a poisoned
// lock (a panic elsewhere while holding it) still guards consistent data.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        read(&self.entries)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        write(&self.entries)
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
    async fn flush(&self) -> StorageResult<()> {
        // Nothing is meant to be durable here.
        Ok(())
    }
}
