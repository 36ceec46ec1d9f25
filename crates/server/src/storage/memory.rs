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
//!
//! MUC rooms and message archives are not per-account data and live in maps of their own, each
//! behind its own lock (no operation needs two at once). `delete_account` also drops the archive
//! named `user@domain`, whether or not there was an account, as the SQLite backend does. Upload
//! records (XEP-0363) have a map of their own too.
//!
//! Archives (XEP-0313) keep messages in append order under a sequence number shared by all
//! archives; timestamps only filter. A query's page is taken from the "window": the messages
//! matching `with`/`start`/`end` that lie strictly after `after_id` and strictly before
//! `before_id` (both optional, both allowed at once). `complete` is true when the window holds
//! no message beyond the page, i.e. the page was not cut short by `limit`; with only one of
//! `after_id`/`before_id` given that is exactly "nothing further in the paging direction".
//! `count` ignores `after_id`, `before_id` and `limit`. An `after_id` or `before_id` that is not
//! in the archive (even if the archive does not exist) is [`StorageError::NotFound`]; one that is
//! in the archive but does not match the filters still marks a position. `delete_room` of a room
//! that is not stored is not an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::{
    ArchivePage, ArchiveQuery, ArchivedMessage, Credentials, LastActivity, OfflineMessage,
    RosterItem, Storage, StorageError, StorageResult, Subscription, UploadRecord,
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
    /// Blocked addresses (XEP-0191), sorted.
    blocklist: BTreeSet<String>,
    /// Private XML (XEP-0049) by namespace.
    private: BTreeMap<String, String>,
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
    }
}

/// Domain → localpart → entry. Nested so that lookups by `&str` need no allocation.
type Entries = HashMap<String, HashMap<String, Entry>>;

/// Service domain → room bare JID → record; the inner `BTreeMap` lists rooms sorted.
type Rooms = HashMap<String, BTreeMap<String, String>>;

/// One archive: messages by sequence number (append order), and the stanza-id index.
#[derive(Debug, Default)]
struct Archive {
    messages: BTreeMap<u64, ArchivedMessage>,
    seq_by_id: HashMap<String, u64>,
}

/// All archives by bare JID. Archives left empty are forgotten.
#[derive(Debug, Default)]
struct Archives {
    /// The next sequence number; shared by all archives, never reused.
    next_seq: u64,
    by_jid: HashMap<String, Archive>,
}

/// A [`Storage`] that keeps everything in process memory and forgets it on exit.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: RwLock<Entries>,
    rooms: RwLock<Rooms>,
    archives: RwLock<Archives>,
    /// Upload records by slot id.
    uploads: RwLock<HashMap<String, UploadRecord>>,
}

// No operation panics while holding a lock, and none leaves a map half-updated, so a poisoned
// lock (a panic elsewhere while holding it) still guards consistent data.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The domain of a bare JID (everything after the `@`, or all of it for a domain JID).
fn jid_domain(jid: &str) -> &str {
    jid.split_once('@').map_or(jid, |(_, domain)| domain)
}

/// Whether a message passes the query's `with`, `start` and `end` filters.
fn matches(query: &ArchiveQuery, message: &ArchivedMessage) -> bool {
    query
        .with
        .as_deref()
        .is_none_or(|with| with == message.with)
        && query.start.is_none_or(|start| message.timestamp >= start)
        && query.end.is_none_or(|end| message.timestamp <= end)
}

impl Archive {
    /// The sequence number of the message with stanza-id `id`, `NotFound` if there is none.
    fn position(archive: Option<&Archive>, id: Option<&str>) -> StorageResult<Option<u64>> {
        id.map(|id| {
            archive
                .and_then(|archive| archive.seq_by_id.get(id).copied())
                .ok_or(StorageError::NotFound)
        })
        .transpose()
    }

    fn query(&self, query: &ArchiveQuery, after: Option<u64>, before: Option<u64>) -> ArchivePage {
        let count = self.messages.values().filter(|m| matches(query, m)).count();
        // `BTreeMap::range` panics on an inverted range; such a window is empty.
        if let (Some(after), Some(before)) = (after, before) {
            if after >= before {
                return ArchivePage {
                    messages: Vec::new(),
                    complete: true,
                    count,
                };
            }
        }
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
        let window = self
            .messages
            .range((lower, upper))
            .map(|(_, message)| message)
            .filter(|m| matches(query, m));
        // One more than the page, to learn whether the page is the last.
        let wanted = query.limit.saturating_add(1);
        let mut messages: Vec<ArchivedMessage> = if query.from_end {
            window.rev().take(wanted).cloned().collect()
        } else {
            window.take(wanted).cloned().collect()
        };
        let complete = messages.len() <= query.limit;
        messages.truncate(query.limit);
        if query.from_end {
            messages.reverse();
        }
        ArchivePage {
            messages,
            complete,
            count,
        }
    }
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
        // The account's archive goes too, even if there was no account (a visitor's).
        write(&self.archives)
            .by_jid
            .remove(&format!("{user}@{domain}"));
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

    async fn private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
    ) -> StorageResult<Option<String>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.private.get(namespace).cloned())
            .flatten())
    }

    async fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, true, |entry| {
            entry.private.insert(namespace.to_owned(), xml.to_owned());
        });
        Ok(())
    }

    async fn count_private_xml(&self, user: &str, domain: &str) -> StorageResult<usize> {
        Ok(self
            .with_entry(user, domain, |entry| entry.private.len())
            .unwrap_or(0))
    }

    async fn blocklist(&self, user: &str, domain: &str) -> StorageResult<Vec<String>> {
        Ok(self
            .with_entry(user, domain, |entry| {
                entry.blocklist.iter().cloned().collect()
            })
            .unwrap_or_default())
    }

    async fn block(&self, user: &str, domain: &str, jids: &[String]) -> StorageResult<()> {
        // Like the other per-address data here, a visitor's blocklist needs no account.
        self.update_entry(user, domain, true, |entry| {
            entry.blocklist.extend(jids.iter().cloned());
        });
        Ok(())
    }

    async fn unblock(
        &self,
        user: &str,
        domain: &str,
        jids: Option<&[String]>,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| match jids {
            Some(jids) => {
                for jid in jids {
                    entry.blocklist.remove(jid);
                }
            }
            None => entry.blocklist.clear(),
        });
        Ok(())
    }

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

    async fn archive_append(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<()> {
        let mut archives = write(&self.archives);
        let seq = archives.next_seq;
        let entry = archives.by_jid.entry(archive.to_owned()).or_default();
        if entry.seq_by_id.contains_key(&message.id) {
            return Err(StorageError::AlreadyExists);
        }
        entry.seq_by_id.insert(message.id.clone(), seq);
        entry.messages.insert(seq, message.clone());
        archives.next_seq += 1;
        Ok(())
    }

    async fn archive_query(
        &self,
        archive: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<ArchivePage> {
        let archives = read(&self.archives);
        let stored = archives.by_jid.get(archive);
        let after = Archive::position(stored, query.after_id.as_deref())?;
        let before = Archive::position(stored, query.before_id.as_deref())?;
        Ok(match stored {
            Some(stored) => stored.query(query, after, before),
            None => ArchivePage {
                messages: Vec::new(),
                complete: true,
                count: 0,
            },
        })
    }

    async fn archive_get(&self, archive: &str, id: &str) -> StorageResult<Option<ArchivedMessage>> {
        let archives = read(&self.archives);
        Ok(archives.by_jid.get(archive).and_then(|stored| {
            let seq = stored.seq_by_id.get(id)?;
            stored.messages.get(seq).cloned()
        }))
    }

    async fn archive_replace(&self, archive: &str, id: &str, stanza: &str) -> StorageResult<()> {
        let mut archives = write(&self.archives);
        let message = archives
            .by_jid
            .get_mut(archive)
            .and_then(|stored| {
                let seq = stored.seq_by_id.get(id)?;
                stored.messages.get_mut(seq)
            })
            .ok_or(StorageError::NotFound)?;
        stanza.clone_into(&mut message.stanza);
        Ok(())
    }

    async fn archive_expire(&self, domain: &str, before: i64) -> StorageResult<usize> {
        let mut archives = write(&self.archives);
        let mut expired = 0;
        archives.by_jid.retain(|jid, stored| {
            let on_domain = jid
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('@'));
            if !on_domain {
                return true;
            }
            let Archive {
                messages,
                seq_by_id,
            } = stored;
            messages.retain(|_, message| {
                let keep = message.timestamp >= before;
                if !keep {
                    seq_by_id.remove(&message.id);
                    expired += 1;
                }
                keep
            });
            !messages.is_empty()
        });
        Ok(expired)
    }

    async fn archive_delete(&self, archive: &str) -> StorageResult<()> {
        write(&self.archives).by_jid.remove(archive);
        Ok(())
    }

    async fn upload_add(&self, record: &UploadRecord) -> StorageResult<()> {
        let mut uploads = write(&self.uploads);
        if uploads.contains_key(&record.id) {
            return Err(StorageError::AlreadyExists);
        }
        uploads.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn upload_get(&self, id: &str) -> StorageResult<Option<UploadRecord>> {
        Ok(read(&self.uploads).get(id).cloned())
    }

    async fn upload_usage(&self, quota_key: &str, since: i64) -> StorageResult<u64> {
        Ok(read(&self.uploads)
            .values()
            .filter(|r| r.quota_key == quota_key && r.created_at >= since)
            .map(|r| r.size)
            .sum())
    }

    async fn upload_total(&self) -> StorageResult<u64> {
        Ok(read(&self.uploads).values().map(|r| r.size).sum())
    }

    async fn upload_expired(&self, now: i64, limit: usize) -> StorageResult<Vec<UploadRecord>> {
        let mut expired: Vec<UploadRecord> = read(&self.uploads)
            .values()
            .filter(|r| r.expires_at.is_some_and(|at| at <= now))
            .cloned()
            .collect();
        expired.sort_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id)));
        expired.truncate(limit);
        Ok(expired)
    }

    async fn upload_delete(&self, id: &str) -> StorageResult<()> {
        write(&self.uploads).remove(id);
        Ok(())
    }

    async fn flush(&self) -> StorageResult<()> {
        // Nothing is meant to be durable here.
        Ok(())
    }
}
