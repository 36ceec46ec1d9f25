//! The archive's journal (XEP-0313 storage, durability of XEP-0313 §2.1 and XEP-0198 §4): an
//! append-only file next to the database where each archived message is recorded on the
//! appending thread, before anyone is shown it. The archive writer then puts the messages into
//! SQLite in large transactions, long after; a process killed in between loses nothing, since
//! the journal's records are applied again on the next open.
//!
//! Why: one SQLite transaction per message (the writer is idle between most messages of a chat)
//! costs 50–60 µs and two thread wake-ups, and every delivery had to wait for it. The journal
//! gives the same guarantee SQLite's WAL gives with `synchronous = NORMAL`: a killed process
//! loses nothing, a power loss may lose the last moments (a torn or zeroed tail is found by its
//! checksum and ignored).
//!
//! The active file is reserved on disk in one piece (`posix_fallocate`, [`SEAL_AT`]) and mapped
//! into memory: a record is copied into the mapping, with no system call, and the pages belong
//! to the kernel's page cache from then on, so a killed process loses none of it (a `write(2)`
//! per record was about 7 % of a 1:1 message's CPU, two per message, bench/RESULTS.md). Space
//! is reserved before anything is mapped, so a full disk turns the journal off when a file is
//! started rather than faulting on a write; archiving then waits for SQLite's commits.
//!
//! Records are numbered; the database remembers the number of the last record it holds
//! (`archive_journal_applied`, updated in the same transaction as the messages), so applying
//! the journal again after a crash skips what was already in. Once everything written is
//! applied, the file is emptied. The file is locked by the process that writes it: another
//! process opening the same database (the `salon` command line beside a running server) keeps
//! no journal and leaves this one alone. Nothing else may shorten the active file while the
//! server runs (the mapping would fault).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use salon_server::storage::{ArchivedMessage, StorageError, StorageResult};

/// The size each active file is reserved with; once the next record does not fit it is sealed
/// (renamed with `.old`) and a new one started, and the sealed one is deleted once everything
/// in it is in the database. While a sealed file waits to be applied the active one grows
/// instead, by doubling.
const SEAL_AT: usize = 8 << 20;
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
    /// The active file; `None` after a failure (the journal is off from then on).
    active: Option<Active>,
    /// The number of the last record written.
    last: u64,
    /// The last record of the sealed file, while there is one.
    sealed: Option<u64>,
}

/// The active file, reserved and mapped.
#[derive(Debug)]
struct Active {
    map: memmap2::MmapMut,
    /// Bytes in use: the header and the records; zeros follow.
    len: usize,
}

impl Active {
    /// Starts the file at `path` afresh: `size` bytes reserved (at least), `header` first.
    fn fresh(path: &Path, header: &[u8], size: usize) -> std::io::Result<Active> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut active = Active::map(&file, size.max(header.len()), 0)?;
        active.map[..header.len()].copy_from_slice(header);
        active.len = header.len();
        Ok(active)
    }

    /// Reserves `size` bytes of `file` (more if it is longer) and maps them, `len` in use.
    fn map(file: &File, size: usize, len: usize) -> std::io::Result<Active> {
        let size = size.max(file.metadata()?.len() as usize);
        reserve(file, size)?;
        // SAFETY: the file is this process's (the journal's lock says so) and is only ever
        // lengthened while mapped; the mapping is the only way it is written.
        let map = unsafe { memmap2::MmapMut::map_mut(file)? };
        Ok(Active { map, len })
    }

    fn room(&self) -> usize {
        self.map.len() - self.len
    }
}

/// Allocates the file's blocks up to `size` bytes (zeros), so that writing through the mapping
/// never needs space the disk no longer has.
fn reserve(file: &File, size: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let size = libc::off_t::try_from(size)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a plain system call on a descriptor this function borrows.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size) } {
        0 => Ok(()),
        code => Err(std::io::Error::from_raw_os_error(code)),
    }
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

/// What a journal file holds.
struct Contents {
    /// Its whole records (none if it does not exist, or belongs to another database).
    records: Vec<Record>,
    /// Where the whole records end (the header's length if there are none).
    whole: usize,
    /// It belongs to another database, or is empty or missing.
    start_afresh: bool,
}

/// Reads the file at `path`: its whole records, up to the first damaged one.
fn read_records(path: &Path, header: &[u8]) -> anyhow::Result<Contents> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error.into()),
    };
    let afresh = Contents {
        records: Vec::new(),
        whole: header.len(),
        start_afresh: true,
    };
    if bytes.is_empty() {
        return Ok(afresh);
    }
    let Some(body) = bytes.strip_prefix(header) else {
        tracing::warn!(
            journal = %path.display(),
            bytes = bytes.len(),
            "the archive journal does not belong to this database (was the database replaced?); \
             it is not applied"
        );
        return Ok(afresh);
    };
    let (records, whole) = decode_all(body);
    // The reserved space after the last record is zeros; anything else is a damaged record.
    if body[whole..].iter().any(|&byte| byte != 0) {
        tracing::warn!(
            journal = %path.display(),
            ignored_bytes = body.len() - whole,
            "the archive journal ends in a damaged record (a power loss?); it is ignored"
        );
    }
    Ok(Contents {
        records,
        whole: header.len() + whole,
        start_afresh: false,
    })
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
        let mut records = read_records(&sealed_path, &header)?.records;
        let active = read_records(&path, &header)?;
        let sealed = records.last().map(|r| r.0);
        // Numbers only grow from the sealed file to the active one.
        records.extend(
            active
                .records
                .into_iter()
                .filter(|r| sealed.is_none_or(|s| r.0 > s)),
        );
        let mapped = if active.start_afresh {
            // New, or another database's: it starts afresh with this one's header.
            Active::fresh(&path, &header, SEAL_AT)
        } else {
            // Records go on after the whole ones (until `clear`, once they are applied).
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .and_then(|file| Active::map(&file, SEAL_AT, active.whole))
        };
        // A disk too full for the reservation still starts the server (the records read are
        // applied all the same), without a journal.
        let mapped = mapped.map_err(|error| off(&path, &error)).ok();
        let last = records.last().map_or(0, |r| r.0).max(applied);
        let journal = Journal {
            path,
            sealed_path,
            header,
            state: Mutex::new(State {
                active: mapped,
                last,
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

    /// Records one message for `archive`; returns its record number once the operating
    /// system's page cache has it. An error turns the journal off (the caller falls back to
    /// waiting for SQLite).
    pub(super) fn write(&self, archive: &str, message: &ArchivedMessage) -> StorageResult<u64> {
        let mut state = self.lock();
        let number = state.last + 1;
        let size = encoded_len(archive, message);
        if state
            .active
            .as_ref()
            .is_some_and(|active| active.room() < size)
        {
            self.make_room(&mut state, size);
        }
        let Some(active) = state.active.as_mut() else {
            return Err(StorageError::Backend("the archive journal is off".into()));
        };
        let at = active.len;
        encode_into(&mut active.map[at..at + size], number, archive, message);
        active.len += size;
        state.last = number;
        Ok(number)
    }

    /// Makes room for a record of `size` bytes: seals the active file and starts another, or,
    /// while a sealed one waits to be applied, doubles the active one. A failure turns the
    /// journal off (archiving goes on, waiting for SQLite's commits).
    fn make_room(&self, state: &mut State, size: usize) {
        let Some(active) = state.active.take() else {
            return;
        };
        let wanted = (self.header.len() + size).max(SEAL_AT);
        let result = if state.sealed.is_none() {
            drop(active);
            std::fs::rename(&self.path, &self.sealed_path).and_then(|()| {
                state.sealed = Some(state.last);
                Active::fresh(&self.path, &self.header, wanted)
            })
        } else {
            let len = active.len;
            let grown = (active.map.len() * 2).max(len + size);
            drop(active);
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .and_then(|file| Active::map(&file, grown, len))
        };
        state.active = result.map_err(|error| off(&self.path, &error)).ok();
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
        if state.active.take().is_some() {
            state.active = Active::fresh(&self.path, &self.header, SEAL_AT)
                .map_err(|error| off(&self.path, &error))
                .ok();
        }
        Ok(())
    }
}

/// Logs why the journal at `path` is turning off: archiving goes on without it, each message
/// waiting for the database's commit.
fn off(path: &Path, error: &std::io::Error) {
    tracing::error!(
        journal = %path.display(),
        %error,
        "reserving room for the archive journal (is the disk full?); archiving goes on \
         without it, waiting for the database's commits"
    );
}

/// The bytes [`encode_into`] writes for this message.
fn encoded_len(archive: &str, message: &ArchivedMessage) -> usize {
    let strings = archive.len() + message.id.len() + message.with.len() + message.stanza.len();
    HEADER + 16 + 16 + strings
}

/// Copies `value`, length first, to the front of `out`; returns what follows it.
fn put<'a>(out: &'a mut [u8], value: &[u8]) -> &'a mut [u8] {
    let (field, rest) = out.split_at_mut(value.len());
    field.copy_from_slice(value);
    rest
}

fn put_str<'a>(out: &'a mut [u8], value: &str) -> &'a mut [u8] {
    let out = put(out, &(value.len() as u32).to_le_bytes());
    put(out, value.as_bytes())
}

/// `[len u32][crc32 of payload u32][payload]`, the payload being the record number, the
/// timestamp and four length-prefixed strings (archive, id, with, stanza), into `out`, which
/// is [`encoded_len`] long.
fn encode_into(out: &mut [u8], number: u64, archive: &str, message: &ArchivedMessage) {
    let (head, payload) = out.split_at_mut(HEADER);
    let rest = put(payload, &number.to_le_bytes());
    let rest = put(rest, &message.timestamp.to_le_bytes());
    let rest = put_str(rest, archive);
    let rest = put_str(rest, &message.id);
    let rest = put_str(rest, &message.with);
    let rest = put_str(rest, &message.stanza);
    debug_assert!(rest.is_empty());
    let crc = crc32fast::hash(payload);
    head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[4..].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
fn encode(number: u64, archive: &str, message: &ArchivedMessage) -> Vec<u8> {
    let mut out = vec![0; encoded_len(archive, message)];
    encode_into(&mut out, number, archive, message);
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

    /// A 64 KiB message: a few hundred fill a file.
    fn big_message() -> ArchivedMessage {
        ArchivedMessage {
            stanza: "x".repeat(64 << 10),
            ..message(0)
        }
    }

    /// A directory for a database, and the database's path in it.
    fn new_database() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("salon.db");
        (dir, database)
    }

    fn numbers(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.0).collect()
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
        let (_dir, database) = new_database();
        let (journal, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert!(records.is_empty());
        assert_eq!(journal.write("a@x", &message(1)).unwrap(), 1);
        assert_eq!(journal.write("b@x", &message(2)).unwrap(), 2);
        // Another opener (a command beside the server) gets no journal.
        assert!(Journal::open(&database, 0, "db1").unwrap().is_none());
        drop(journal);
        let (journal, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert_eq!(numbers(&records), vec![1, 2]);
        journal.clear().unwrap();
        // Emptied, the numbers still go on after what the database holds.
        drop(journal);
        let (journal, records) = Journal::open(&database, 2, "db1").unwrap().unwrap();
        assert!(records.is_empty());
        assert_eq!(journal.write("a@x", &message(3)).unwrap(), 3);
    }

    #[test]
    fn a_full_file_is_sealed_and_the_sealed_one_goes_once_applied() {
        let (_dir, database) = new_database();
        let sealed_path = beside(&database, ".archive-journal.old");
        let (journal, _) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        let big = big_message();
        let mut written = 0;
        while !sealed_path.exists() {
            written = journal.write("a@x", &big).unwrap();
            assert!(written < 1000, "never sealed");
        }
        // The record that did not fit went into the new file.
        let sealed_at = written - 1;
        let after = journal.write("a@x", &message(1)).unwrap();
        assert_eq!(after, written + 1);
        // Not all of the sealed file is applied: it stays, and a restart reads both files.
        journal.applied(sealed_at - 1);
        assert!(sealed_path.exists());
        drop(journal);
        let (journal, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert_eq!(numbers(&records), (1..=after).collect::<Vec<_>>());
        // Once applied up to its last record, the sealed file is deleted.
        journal.applied(sealed_at);
        assert!(!sealed_path.exists());
    }

    #[test]
    fn the_active_file_is_reserved_and_records_go_on_after_the_whole_ones() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, database) = new_database();
        let path = beside(&database, ".archive-journal");
        let (journal, _) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        // Blocks allocated, not a sparse file: writing through the mapping needs no space.
        let metadata = std::fs::metadata(&path).unwrap();
        assert_eq!(metadata.len(), SEAL_AT as u64);
        assert!(metadata.blocks() * 512 >= SEAL_AT as u64);
        journal.write("a@x", &message(1)).unwrap();
        journal.write("a@x", &message(2)).unwrap();
        drop(journal);
        // Reopened without clearing (as between opening and applying): the next record goes
        // right after the whole ones, not after the reserved zeros.
        let (journal, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(journal.write("a@x", &message(3)).unwrap(), 3);
        drop(journal);
        let (_, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert_eq!(numbers(&records), vec![1, 2, 3]);
        assert_eq!(records[2].2, message(3));
    }

    #[test]
    fn while_a_sealed_file_waits_the_active_one_grows() {
        let (_dir, database) = new_database();
        let path = beside(&database, ".archive-journal");
        let (journal, _) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        let big = big_message();
        // Two files' worth without anything applied: one sealed, the active one doubled.
        let mut last = 0;
        for _ in 0..(2 * SEAL_AT / big.stanza.len() + 8) {
            last = journal.write("a@x", &big).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() >= 2 * SEAL_AT as u64);
        drop(journal);
        let (_, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert_eq!(numbers(&records), (1..=last).collect::<Vec<_>>());
    }

    #[test]
    fn a_file_that_cannot_be_started_turns_the_journal_off() {
        let (_dir, database) = new_database();
        let (journal, _) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        // Sealing cannot rename the full file (a directory is in the way), as when a new
        // file cannot be reserved: the journal turns off, nothing is written half.
        let blocker = beside(&database, ".archive-journal.old");
        std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
        let big = big_message();
        let mut written = Vec::new();
        let refused = loop {
            match journal.write("a@x", &big) {
                Ok(number) => written.push(number),
                Err(error) => break error,
            }
            assert!(written.len() < 1000, "never full");
        };
        assert!(matches!(refused, StorageError::Backend(_)));
        assert!(journal.write("a@x", &message(1)).is_err());
        drop(journal);
        std::fs::remove_dir_all(&blocker).unwrap();
        let (_, records) = Journal::open(&database, 0, "db1").unwrap().unwrap();
        assert_eq!(numbers(&records), written);
    }

    #[test]
    fn a_journal_of_another_database_is_not_applied() {
        let (_dir, database) = new_database();
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
