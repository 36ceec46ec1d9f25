//! The archive's journal (XEP-0313 storage, durability of XEP-0313 §2.1 and XEP-0198 §4): an
//! append-only file next to the database where each archived message is written, with one
//! `write` on the appending thread, before anyone is shown it. The archive writer then puts the
//! messages into SQLite in large transactions, long after; a process killed in between loses
//! nothing, since the journal's records are applied again on the next open.
//!
//! Why: one SQLite transaction per message (the writer is idle between most messages of a chat)
//! costs 50–60 µs and two thread wake-ups, and every delivery had to wait for it. A journal
//! write is one system call into the page cache, the same guarantee SQLite's WAL gives with
//! `synchronous = NORMAL`: a killed process loses nothing, a power loss may lose the last
//! moments (a torn or zeroed tail is found by its checksum and ignored).
//!
//! Records are numbered; the database remembers the number of the last record it holds
//! (`archive_journal_applied`, updated in the same transaction as the messages), so applying
//! the journal again after a crash skips what was already in. Once everything written is
//! applied, the file is emptied. The file is locked by the process that writes it: another
//! process opening the same database (the `salon` command line beside a running server) keeps
//! no journal and leaves this one alone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use salon_server::storage::{ArchivedMessage, StorageError, StorageResult};

/// The active file is sealed (renamed with `.old`) and a new one started once it is this long;
/// the sealed one is deleted once everything in it is in the database.
const SEAL_AT: u64 = 8 << 20;
/// Largest record read back: a longer length field is a damaged tail, not a record.
const MAX_RECORD: usize = 64 << 20;
/// Bytes before a record's payload: its length and its CRC-32.
const HEADER: usize = 8;

/// A journal held by this process.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    sealed_path: PathBuf,
    /// What each of its files starts with.
    header: Vec<u8>,
    state: Mutex<State>,
    /// Held (locked) for as long as the journal lives.
    _lock: File,
}

#[derive(Debug)]
struct State {
    /// The active file, opened for appending; `None` after a write failed (the journal is off
    /// from then on).
    file: Option<File>,
    /// The number of the last record written.
    last: u64,
    /// Bytes in the active file.
    len: u64,
    /// The last record of the sealed file, while there is one.
    sealed: Option<u64>,
}

/// A record read back: its number, its archive and the message.
pub(super) type Record = (u64, String, ArchivedMessage);

fn beside(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What every journal file starts with: it names the database it belongs to (`owner`, kept
/// in that database), so that a journal left beside another database (the old one deleted
/// and a new one created) is not applied to it.
fn header(owner: &str) -> Vec<u8> {
    format!("salon archive journal {owner}\n").into_bytes()
}

/// The whole records of the file at `path` (none if it does not exist, or if it belongs to
/// another database), the file's length, and whether it belongs to another database.
fn read_records(path: &Path, header: &[u8]) -> anyhow::Result<(Vec<Record>, u64, bool)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    if bytes.is_empty() {
        return Ok((Vec::new(), 0, false));
    }
    let Some(body) = bytes.strip_prefix(header) else {
        tracing::warn!(
            journal = %path.display(),
            bytes = bytes.len(),
            "the archive journal does not belong to this database (was the database replaced?); \
             it is not applied"
        );
        return Ok((Vec::new(), bytes.len() as u64, true));
    };
    let (records, whole) = decode_all(body);
    if whole < body.len() {
        tracing::warn!(
            journal = %path.display(),
            ignored_bytes = body.len() - whole,
            "the archive journal ends in a damaged record (a power loss?); it is ignored"
        );
    }
    Ok((records, bytes.len() as u64, false))
}

impl Journal {
    /// The journal beside the database at `database`: `None` if another process holds it.
    /// Returns the records in it (whole ones, up to the first damaged one) for the caller to
    /// apply, then [`clear`](Self::clear); numbering goes on after `applied` or the last
    /// record, whichever is greater. `owner` is the database's name for its journal.
    pub(super) fn open(
        database: &Path,
        applied: u64,
        owner: &str,
    ) -> anyhow::Result<Option<(Journal, Vec<Record>)>> {
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(beside(database, ".archive-journal.lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(error)) => return Err(error.into()),
        }
        let path = beside(database, ".archive-journal");
        let sealed_path = beside(database, ".archive-journal.old");
        let header = header(owner);
        let (mut records, _, _) = read_records(&sealed_path, &header)?;
        let (active, len, active_is_foreign) = read_records(&path, &header)?;
        let sealed = records.last().map(|r| r.0);
        // Numbers only grow from the sealed file to the active one.
        records.extend(
            active
                .into_iter()
                .filter(|r| sealed.is_none_or(|s| r.0 > s)),
        );
        let mut file = OpenOptions::new().append(true).create(true).open(&path)?;
        let mut len = len;
        if active_is_foreign || len == 0 {
            // New, or another database's: it starts afresh with this one's header.
            file.set_len(0)?;
            file.write_all(&header)?;
            len = header.len() as u64;
        }
        let last = records.last().map_or(0, |r| r.0).max(applied);
        let journal = Journal {
            path,
            sealed_path,
            header,
            state: Mutex::new(State {
                file: Some(file),
                last,
                len,
                sealed,
            }),
            _lock: lock,
        };
        Ok(Some((journal, records)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes one message for `archive`; returns its record number once the operating system
    /// has it. An error turns the journal off (the caller falls back to waiting for SQLite).
    pub(super) fn write(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<u64> {
        let mut state = self.lock();
        let number = state.last + 1;
        let record = encode(number, archive, message);
        let Some(file) = state.file.as_mut() else {
            return Err(StorageError::Backend("the archive journal is off".into()));
        };
        if let Err(error) = file.write_all(&record) {
            tracing::error!(
                journal = %self.path.display(),
                %error,
                "writing the archive journal; archiving goes on without it"
            );
            // A partial record may be left at the end: it is found damaged on the next open,
            // and nothing after it will be written.
            state.file = None;
            return Err(StorageError::Backend(error.to_string()));
        }
        state.last = number;
        state.len += record.len() as u64;
        if state.len >= SEAL_AT && state.sealed.is_none() {
            self.seal(&mut state);
        }
        Ok(number)
    }

    /// Renames the active file and starts a new one (the writer deletes the old one once it
    /// has applied it). If the rename fails nothing changed and the active file just grows; if
    /// the new file cannot be started the journal turns off (archiving goes on, waiting for
    /// SQLite's commits), since the old handle now writes into the sealed file.
    fn seal(&self, state: &mut State) {
        if let Err(error) = std::fs::rename(&self.path, &self.sealed_path) {
            tracing::warn!(journal = %self.path.display(), %error, "sealing the archive journal");
            return;
        }
        state.sealed = Some(state.last);
        let started = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .and_then(|mut file| file.write_all(&self.header).map(|()| file));
        match started {
            Ok(file) => {
                state.file = Some(file);
                state.len = self.header.len() as u64;
            }
            Err(error) => {
                tracing::error!(
                    journal = %self.path.display(),
                    %error,
                    "starting a new archive journal file; archiving goes on without it"
                );
                state.file = None;
            }
        }
    }

    /// Everything up to record `applied` is in the database: the sealed file goes once it is
    /// all applied.
    pub(super) fn applied(&self, applied: u64) {
        let mut state = self.lock();
        if state.sealed.is_some_and(|sealed| applied >= sealed) {
            match std::fs::remove_file(&self.sealed_path) {
                Ok(()) => state.sealed = None,
                Err(error) => {
                    tracing::warn!(journal = %self.sealed_path.display(), %error, "deleting the applied archive journal")
                }
            }
        }
    }

    /// Empties the journal once the records [`open`](Self::open) returned are applied.
    pub(super) fn clear(&self) -> std::io::Result<()> {
        let mut state = self.lock();
        if state.sealed.take().is_some() {
            std::fs::remove_file(&self.sealed_path)?;
        }
        if let Some(file) = state.file.as_mut() {
            file.set_len(0)?;
            file.write_all(&self.header)?;
            state.len = self.header.len() as u64;
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// `[len u32][crc32 of payload u32][payload]`, the payload being the record number, the
/// timestamp and four length-prefixed strings (archive, id, with, stanza).
fn encode(number: u64, archive: &str, message: &ArchivedMessage) -> Vec<u8> {
    let strings = archive.len() + message.id.len() + message.with.len() + message.stanza.len();
    let mut out = Vec::with_capacity(HEADER + 16 + 16 + strings);
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(&message.timestamp.to_le_bytes());
    put_str(&mut out, archive);
    put_str(&mut out, &message.id);
    put_str(&mut out, &message.with);
    put_str(&mut out, &message.stanza);
    let payload_len = (out.len() - HEADER) as u32;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[..4].copy_from_slice(&payload_len.to_le_bytes());
    out[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads the front of `bytes`: `None` if it is not a whole, intact record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn decode(payload: &[u8]) -> Option<Record> {
    let mut reader = Reader(payload);
    let number = reader.u64()?;
    let timestamp = reader.u64()? as i64;
    let archive = reader.string()?;
    let id = reader.string()?;
    let with = reader.string()?;
    let stanza = reader.string()?;
    reader.0.is_empty().then_some(())?;
    Some((
        number,
        archive,
        ArchivedMessage {
            id,
            timestamp,
            with,
            stanza,
        },
    ))
}

/// The whole records at the start of `bytes`, and how many bytes they take; stops at the
/// first record that is cut short, fails its checksum or does not decode.
fn decode_all(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        let mut reader = Reader(&bytes[at..]);
        let (Some(len), Some(crc)) = (reader.u32(), reader.u32()) else {
            break;
        };
        let len = len as usize;
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = reader.take(len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(record) = decode(payload) else {
            break;
        };
        // Numbers only grow; anything else is not a record of this file.
        if records
            .last()
            .is_some_and(|last: &Record| last.0 >= record.0)
        {
            break;
        }
        records.push(record);
        at += HEADER + len;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u64) -> ArchivedMessage {
        ArchivedMessage {
            id: format!("id{n}"),
            timestamp: 1_765_000_000_000_000 + n as i64,
            with: "bob@example.org".into(),
            stanza: format!("<message xmlns='jabber:client'><body>{n} é</body></message>"),
        }
    }

    #[test]
    fn records_read_back_and_a_damaged_tail_is_ignored() {
        let mut bytes = Vec::new();
        for n in 1..=3 {
            bytes.extend(encode(n, "alice@example.org", &message(n)));
        }
        let (records, whole) = decode_all(&bytes);
        assert_eq!(whole, bytes.len());
        assert_eq!(records.len(), 3);
        assert_eq!(records[2], (3, "alice@example.org".to_string(), message(3)));
        // Cut short, flipped or zeroed tails: the whole records before them still count.
        let one = encode(4, "alice@example.org", &message(4));
        for damaged in [
            one[..one.len() - 1].to_vec(),
            {
                let mut flipped = one.clone();
                let last = flipped.len() - 1;
                flipped[last] ^= 1;
                flipped
            },
            vec![0; one.len()],
            vec![0xff; 3],
        ] {
            let mut with_tail = bytes.clone();
            with_tail.extend(&damaged);
            let (records, whole) = decode_all(&with_tail);
            assert_eq!((records.len(), whole), (3, bytes.len()));
        }
    }

    #[test]
    fn the_file_is_held_by_one_process_and_numbering_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("salon.db");
        let (journal, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert!(records.is_empty());
        assert_eq!(journal.write("a@x", &message(1)).unwrap(), 1);
        assert_eq!(journal.write("b@x", &message(2)).unwrap(), 2);
        // Another opener (a command beside the server) gets no journal.
        assert!(Journal::open(&database, 0, "db1").unwrap().is_none());
        drop(journal);
        let (journal, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
        journal.clear().unwrap();
        // Emptied, the numbers still go on after what the database holds.
        drop(journal);
        let (journal, records) = Journal::open(&database, 2, "db1").unwrap().unwrap();
        assert!(records.is_empty());
        assert_eq!(journal.write("a@x", &message(3)).unwrap(), 3);
    }

    #[test]
    fn a_full_file_is_sealed_and_the_sealed_one_goes_once_applied() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("salon.db");
        let sealed_path = beside(&database, ".archive-journal.old");
        let (journal, _) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        let mut big = message(0);
        big.stanza = "x".repeat(64 << 10);
        let mut written = 0;
        while !sealed_path.exists() {
            written = journal.write("a@x", &big).unwrap();
            assert!(written < 1000, "never sealed");
        }
        let sealed_at = written;
        let after = journal.write("a@x", &message(1)).unwrap();
        assert_eq!(after, sealed_at + 1);
        // Not all of the sealed file is applied: it stays, and a restart reads both files.
        journal.applied(sealed_at - 1);
        assert!(sealed_path.exists());
        drop(journal);
        let (journal, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        let numbers: Vec<u64> = records.iter().map(|r| r.0).collect();
        assert_eq!(numbers, (1..=after).collect::<Vec<_>>());
        // Once applied up to its last record, the sealed file is deleted.
        journal.applied(sealed_at);
        assert!(!sealed_path.exists());
    }

    #[test]
    fn a_journal_of_another_database_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("salon.db");
        let (journal, _) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        journal.clear().unwrap();
        journal.write("a@x", &message(1)).unwrap();
        drop(journal);
        // The database was replaced by a new one (another name): the old journal is not
        // applied, and once cleared it belongs to the new one.
        let (journal, records) = Journal::open(&database, 0, "db2").unwrap().unwrap();
        assert!(records.is_empty());
        journal.clear().unwrap();
        journal.write("a@x", &message(2)).unwrap();
        drop(journal);
        let (_, records) = Journal::open(&database, 0, "db2").unwrap().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].2, message(2));
    }
}
