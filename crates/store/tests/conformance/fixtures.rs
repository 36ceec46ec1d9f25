//! Records and constants the conformance tests of several features share.

use salon_server::storage::prelude::*;
use salon_server::storage::{
    ArchivePage, ArchiveQuery, ArchivedMessage, Credentials, LastActivity, OfflineMessage,
    RosterItem, ScramKeys,
};

pub(crate) const A: &str = "a.example";
pub(crate) const B: &str = "b.example";

/// Distinct credentials per `seed`, with keys covering every byte value so BLOBs round-trip.
pub(crate) fn creds(seed: u8) -> Credentials {
    let bytes = |offset: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| {
                (i as u8)
                    .wrapping_mul(7)
                    .wrapping_add(seed)
                    .wrapping_add(offset)
            })
            .collect()
    };
    Credentials {
        iterations: 4096 + u32::from(seed),
        salt: bytes(0, 16),
        sha1: ScramKeys {
            stored_key: bytes(1, 20),
            server_key: bytes(2, 20),
        },
        sha256: ScramKeys {
            stored_key: bytes(3, 256),
            server_key: bytes(4, 32),
        },
    }
}

pub(crate) fn item(jid: &str) -> RosterItem {
    RosterItem {
        jid: jid.to_owned(),
        ..RosterItem::default()
    }
}

pub(crate) fn offline(stanza: &str, received_at: i64) -> OfflineMessage {
    OfflineMessage {
        stanza: stanza.to_owned(),
        received_at,
    }
}

pub(crate) fn last(at: i64, status: &str) -> LastActivity {
    LastActivity {
        at,
        status: status.to_owned(),
    }
}

pub(crate) const MUC_A: &str = "muc.a.example";
/// Microseconds; a realistic epoch time.
pub(crate) const T0: i64 = 1_700_000_000_000_000;
pub(crate) const SECOND: i64 = 1_000_000;

pub(crate) fn archived(id: usize, timestamp: i64, with: &str, stanza: &str) -> ArchivedMessage {
    ArchivedMessage {
        id: format!("id-{id:02}"),
        timestamp,
        with: with.to_owned(),
        stanza: stanza.to_owned(),
    }
}

pub(crate) const ROOM: &str = "room@muc.a.example";
pub(crate) const ROMEO: &str = "room@muc.a.example/romeo";
pub(crate) const JULIET: &str = "room@muc.a.example/juliet";

pub(crate) fn limit(limit: usize) -> ArchiveQuery {
    ArchiveQuery {
        limit,
        ..ArchiveQuery::default()
    }
}

pub(crate) async fn query(s: &dyn Storage, archive: &str, q: &ArchiveQuery) -> ArchivePage {
    s.archive_query(archive, q)
        .await
        .unwrap_or_else(|e| panic!("query {archive} {q:?}: {e}"))
}

pub(crate) fn page(messages: Vec<ArchivedMessage>, complete: bool, count: usize) -> ArchivePage {
    ArchivePage {
        messages,
        complete,
        count,
    }
}
