//! Storage, one small trait per feature, and [`Storage`], the sum of them that every backend
//! implements (SQLite by default in `salon-store`, in memory for anonymous hosts, PostgreSQL
//! later). The traits are shaped by what the feature modules need, not by tables.
//!
//! | trait | data | spec |
//! |---|---|---|
//! | [`AccountStore`] | accounts and their SCRAM credentials | RFC 5802, RFC 6120 §6 |
//! | [`RosterStore`] | rosters | RFC 6121 §2 |
//! | [`BlocklistStore`] | blocked addresses | XEP-0191 |
//! | [`PrivateStore`] | private XML | XEP-0049 |
//! | [`OfflineStore`] | offline messages | RFC 6121 §8.5.2.2 |
//! | [`VcardStore`] | vCards | XEP-0054 |
//! | [`LastActivityStore`] | last logout | XEP-0012 |
//! | [`RoomStore`] | persistent MUC rooms | XEP-0045 |
//! | [`ArchiveStore`] | message archives | XEP-0313 |
//! | [`UploadStore`] | HTTP upload records | XEP-0363 |
//! | [`PepStore`] | personal eventing nodes and items | XEP-0163, XEP-0060 |
//! | [`BanStore`] | server-wide bans | `salon ban` |
//! | [`InviteStore`] | invitations | XEP-0401, XEP-0445 |
//! | [`RoomInviteStore`] | room invite links | `salon room invite` |
//! | [`PushStore`] | push registrations of accounts and rooms | XEP-0357 |
//! | [`AdminStore`] | administrators made by an invitation | XEP-0133, `salon invite create --admin` |
//!
//! Adding a feature: a trait and its record types in a file here, added to [`Storage`] and
//! [`prelude`]; its implementation in each backend (`memory/`, `salon-store`'s `sqlite/`) with
//! a migration; its tests in the conformance suite. Rules every backend applies alike live in
//! [`rules`].
//!
//! Addresses are passed as (localpart, domain) pairs of already-validated, normalised strings.
//!
//! Persistent backends refuse roster, blocklist, private XML, offline, vCard, last-activity and PEP
//! writes for an address that has no account (`NotFound`), so data never outlives its account.
//! The in-memory backend used for anonymous hosts accepts them: anonymous visitors have no
//! account record, they exist while online, and their data is dropped with `delete_account` when
//! they leave.
//!
//! Calls on a `dyn Storage` need nothing imported (a trait object carries its supertraits'
//! methods); calls on a concrete backend (`MemoryStorage`, `SqliteStorage`) or a generic
//! `S: Storage` need the feature traits in scope: `use crate::storage::prelude::*;`. A service
//! that needs one feature's data only can be handed that store alone: an `Arc<dyn Storage>`
//! coerces to, say, `Arc<dyn ArchiveStore>` (trait upcasting, Rust 1.86).

use async_trait::async_trait;

pub mod accounts;
pub mod admins;
pub mod archive;
pub mod bans;
pub mod blocklist;
pub mod invites;
pub mod last_activity;
pub mod memory;
pub mod offline;
pub mod pep;
pub mod private;
pub mod push;
pub mod room_invites;
pub mod rooms;
pub mod roster;
pub mod rules;
pub mod uploads;
pub mod vcard;

pub use accounts::{AccountStore, Credentials, ScramKeys};
pub use admins::AdminStore;
pub use archive::{ArchivePage, ArchiveQuery, ArchiveStore, ArchivedMessage};
pub use bans::{Ban, BanStore};
pub use blocklist::BlocklistStore;
pub use invites::{Invite, InviteStore};
pub use last_activity::{LastActivity, LastActivityStore};
pub use offline::{OfflineMessage, OfflineStore};
pub use pep::{AccessModel, PepItem, PepNode, PepNodeConfig, PepStore, SendLastItem};
pub use private::PrivateStore;
pub use push::{PushRegistration, PushStore};
pub use room_invites::{RoomInvite, RoomInviteStore};
pub use rooms::RoomStore;
pub use roster::{RosterItem, RosterStore, Subscription};
pub use uploads::{UploadRecord, UploadStore};
pub use vcard::VcardStore;

/// The per-feature traits, so that their methods can be called on a `dyn Storage`.
pub mod prelude {
    pub use super::{
        AccountStore, AdminStore, ArchiveStore, BanStore, BlocklistStore, InviteStore,
        LastActivityStore, OfflineStore, PepStore, PrivateStore, PushStore, RoomInviteStore,
        RoomStore, RosterStore, Storage, UploadStore, VcardStore,
    };
}

/// Errors a backend reports. Features turn them into `<internal-server-error/>` and log them.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("account already exists")]
    AlreadyExists,
    #[error("account does not exist")]
    NotFound,
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Everything the server stores, one trait per feature; what the server holds as
/// `Arc<dyn Storage>`.
#[async_trait]
pub trait Storage:
    AccountStore
    + RosterStore
    + BlocklistStore
    + PrivateStore
    + OfflineStore
    + VcardStore
    + LastActivityStore
    + RoomStore
    + ArchiveStore
    + UploadStore
    + PepStore
    + BanStore
    + InviteStore
    + RoomInviteStore
    + PushStore
    + AdminStore
    + Send
    + Sync
    + 'static
{
    /// Makes sure everything written so far is durable; called on shutdown.
    async fn flush(&self) -> StorageResult<()>;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::memory::MemoryStorage;
    use super::prelude::*;
    use super::{ArchiveQuery, ArchivedMessage};

    /// A service given one feature's store sees what the whole storage holds.
    #[tokio::test]
    async fn a_service_can_be_given_one_features_store() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let archive: Arc<dyn ArchiveStore> = storage.clone();
        let message = ArchivedMessage {
            id: "1".to_owned(),
            timestamp: 1,
            with: "juliet@example.com".to_owned(),
            stanza: "<message/>".to_owned(),
        };
        archive
            .archive_append("romeo@example.com", &message)
            .await
            .expect("append");
        let query = ArchiveQuery {
            limit: 10,
            ..ArchiveQuery::default()
        };
        let page = storage
            .archive_query("romeo@example.com", &query)
            .await
            .expect("query");
        assert_eq!(page.messages, [message]);
    }
}
