//! What every backend checks and computes alike, written once: the refusal of records that must
//! never be stored, how an archive's JID relates to the account and domain it belongs to, and
//! how a XEP-0313 page is cut from the messages a backend fetched (XEP-0059 paging). Backends
//! call these instead of repeating them, so a PostgreSQL backend gets the same answers.
//!
//! Limits a client may hit (vCard size, private XML namespaces, blocklist length, offline cap)
//! are the feature modules' to enforce, before they call a store.

use super::Subscription;
use super::{ArchivePage, ArchiveQuery, ArchivedMessage, RosterItem, StorageError, StorageResult};

/// RFC 6121 §2.1.2.5: `remove` only appears in roster pushes for a removed item; an item with
/// it is refused rather than stored.
pub fn check_roster_item(item: &RosterItem) -> StorageResult<()> {
    if item.subscription == Subscription::Remove {
        return Err(StorageError::Backend(
            "subscription \"remove\" is never stored".to_owned(),
        ));
    }
    Ok(())
}

/// The domain of a bare JID (everything after the `@`, or all of it for a domain JID): a room's
/// MUC service, an archive's host.
pub fn jid_domain(jid: &str) -> &str {
    jid.split_once('@').map_or(jid, |(_, domain)| domain)
}

/// The archive of an account (XEP-0313 §5.1), deleted with the account even when there was no
/// account (an anonymous visitor's).
pub fn account_archive(user: &str, domain: &str) -> String {
    format!("{user}@{domain}")
}

/// Whether `archive` is on `domain` for [`ArchiveStore::archive_expire`]: the JID ends with
/// `@domain`, compared exactly (a domain JID or another domain ending the same way is not).
///
/// [`ArchiveStore::archive_expire`]: super::ArchiveStore::archive_expire
pub fn archive_on_domain(archive: &str, domain: &str) -> bool {
    archive
        .strip_suffix(domain)
        .is_some_and(|rest| rest.ends_with('@'))
}

/// How many messages a backend fetches from the window for `query`: one more than the page, to
/// learn whether the page is the last.
pub fn page_fetch_size(query: &ArchiveQuery) -> usize {
    query.limit.saturating_add(1)
}

/// The page of `query` from `fetched`: at most [`page_fetch_size`] messages of the window, in
/// the paging direction (newest first when `query.from_end`). The page is complete when the
/// window held no more than `limit`; it is returned oldest first. `count` is the number of
/// messages matching the filters, whatever the window.
pub fn archive_page(
    query: &ArchiveQuery,
    mut fetched: Vec<ArchivedMessage>,
    count: usize,
) -> ArchivePage {
    let complete = fetched.len() <= query.limit;
    fetched.truncate(query.limit);
    if query.from_end {
        fetched.reverse();
    }
    ArchivePage {
        messages: fetched,
        complete,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_on_their_exact_domain() {
        assert!(archive_on_domain("room@muc.example", "muc.example"));
        assert!(!archive_on_domain("room@xmuc.example", "muc.example"));
        assert!(!archive_on_domain("muc.example", "muc.example"));
        assert!(!archive_on_domain("room@muc.example.org", "muc.example"));
    }

    #[test]
    fn a_removed_item_is_never_stored() {
        let mut item = RosterItem {
            jid: "juliet@example.com".to_owned(),
            ..RosterItem::default()
        };
        assert!(check_roster_item(&item).is_ok());
        item.subscription = Subscription::Remove;
        assert!(matches!(
            check_roster_item(&item),
            Err(StorageError::Backend(_))
        ));
    }
}
