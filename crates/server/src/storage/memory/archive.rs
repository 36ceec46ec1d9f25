//! Message archives (XEP-0313) in memory. Messages are kept in append order under a sequence
//! number shared by all archives; the paging rules are those of [`crate::storage::archive`],
//! with the page cut by [`archive_page`].

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use async_trait::async_trait;

use super::{read, write, MemoryStorage};
use crate::storage::rules::{archive_on_domain, archive_page, page_fetch_size};
use crate::storage::{
    ArchivePage, ArchiveQuery, ArchiveStore, ArchivedMessage, StorageError, StorageResult,
};

/// One archive: messages by sequence number (append order), and the stanza-id index.
#[derive(Debug, Default)]
struct Archive {
    messages: BTreeMap<u64, ArchivedMessage>,
    seq_by_id: HashMap<String, u64>,
}

/// All archives by bare JID. Archives left empty are forgotten.
#[derive(Debug, Default)]
pub(super) struct Archives {
    /// The next sequence number; shared by all archives, never reused.
    next_seq: u64,
    by_jid: HashMap<String, Archive>,
}

impl Archives {
    /// Deletes a whole archive; deleting one that is not there is not an error.
    pub(super) fn delete(&mut self, archive: &str) {
        self.by_jid.remove(archive);
    }
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
        let wanted = page_fetch_size(query);
        let fetched: Vec<ArchivedMessage> = if query.from_end {
            window.rev().take(wanted).cloned().collect()
        } else {
            window.take(wanted).cloned().collect()
        };
        archive_page(query, fetched, count)
    }
}

impl MemoryStorage {
    fn append_one(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<()> {
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
}

#[async_trait]
impl ArchiveStore for MemoryStorage {
    async fn archive_append(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<()> {
        self.append_one(archive, message)
    }

    fn archive_append_blocking(
        &self,
        messages: &[(String, ArchivedMessage)],
        _journaled: Option<u64>,
    ) -> StorageResult<()> {
        // Like SQLite's: the others are stored, the first refusal reported.
        let mut first_error = Ok(());
        for (archive, message) in messages {
            if let Err(e) = self.append_one(archive, message) {
                first_error = first_error.and(Err(e));
            }
        }
        first_error
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
            if !archive_on_domain(jid, domain) {
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

    async fn archive_trim(&self, archive: &str, keep: usize, before: i64) -> StorageResult<usize> {
        let mut archives = write(&self.archives);
        let Some(stored) = archives.by_jid.get_mut(archive) else {
            return Ok(0);
        };
        let excess = stored.messages.len().saturating_sub(keep);
        let doomed: Vec<u64> = stored
            .messages
            .iter()
            .enumerate()
            .filter(|(n, (_, message))| *n < excess || message.timestamp < before)
            .map(|(_, (seq, _))| *seq)
            .collect();
        for seq in &doomed {
            if let Some(message) = stored.messages.remove(seq) {
                stored.seq_by_id.remove(&message.id);
            }
        }
        if stored.messages.is_empty() {
            archives.delete(archive);
        }
        Ok(doomed.len())
    }

    async fn archive_trim_bytes(&self, archive: &str, max_bytes: u64) -> StorageResult<usize> {
        let mut archives = write(&self.archives);
        let Some(stored) = archives.by_jid.get_mut(archive) else {
            return Ok(0);
        };
        // Newest first: everything from the message that passes the cap on is too old.
        let mut total = 0u64;
        let doomed: Vec<u64> = stored
            .messages
            .iter()
            .rev()
            .filter(|(_, message)| {
                total = total.saturating_add(message.stanza.len() as u64);
                total > max_bytes
            })
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &doomed {
            if let Some(message) = stored.messages.remove(seq) {
                stored.seq_by_id.remove(&message.id);
            }
        }
        if stored.messages.is_empty() {
            archives.delete(archive);
        }
        Ok(doomed.len())
    }

    async fn archive_delete(&self, archive: &str) -> StorageResult<()> {
        write(&self.archives).delete(archive);
        Ok(())
    }
}
