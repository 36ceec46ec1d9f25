//! Message archives (XEP-0313) with XEP-0059 paging: the page is taken from the messages
//! matching `with`/`start`/`end` strictly between `after_id` and `before_id`, oldest first;
//! `complete` means the page was not cut short by `limit`; `count` ignores `after_id`,
//! `before_id` and `limit`.

use salon_server::storage::prelude::*;
use salon_server::storage::{ArchivePage, ArchiveQuery, ArchivedMessage, StorageError};

use crate::fixtures::*;

/// `archive_append_many` appends in the order given, after what was already there.
pub(crate) async fn batched_archive_writes(s: &dyn Storage) {
    const BATCH_ROOM: &str = "batch@muc.a.example";
    s.archive_append(BATCH_ROOM, &archived(90, 1, ROMEO, "<m>first</m>"))
        .await
        .expect("append");
    // Two archives in one batch: each message lands in its own, in order.
    let batch: Vec<(String, ArchivedMessage)> = (91..96)
        .map(|i| {
            (
                BATCH_ROOM.to_string(),
                archived(i, 2, JULIET, &format!("<m>{i}</m>")),
            )
        })
        .chain([(
            "other@muc.a.example".to_string(),
            archived(99, 2, JULIET, "<m/>"),
        )])
        .collect();
    s.archive_append_many(&batch).await.expect("append many");
    let other = query(s, "other@muc.a.example", &limit(10)).await;
    assert_eq!(other.messages.len(), 1);
    s.archive_delete("other@muc.a.example")
        .await
        .expect("delete");
    let page = query(s, BATCH_ROOM, &limit(10)).await;
    let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["id-90", "id-91", "id-92", "id-93", "id-94", "id-95"]);
    assert!(page.complete);
    s.archive_delete(BATCH_ROOM).await.expect("delete");
}

/// `archive_trim` keeps the newest `keep` messages in append order, none older than `before`,
/// and leaves other archives alone.
pub(crate) async fn trimmed_archives(s: &dyn Storage) {
    const TRIM_ROOM: &str = "trim@muc.a.example";
    const OTHER_ROOM: &str = "untrimmed@muc.a.example";
    // Timestamps out of append order: the count cut follows the order, not the clock.
    for (i, at) in [(1, 5), (2, 1), (3, 4), (4, 2), (5, 3)] {
        s.archive_append(TRIM_ROOM, &archived(i, at, ROMEO, "<m/>"))
            .await
            .expect("append");
    }
    s.archive_append(OTHER_ROOM, &archived(9, 0, ROMEO, "<m/>"))
        .await
        .expect("append");
    let ids = |page: ArchivePage| page.messages.into_iter().map(|m| m.id).collect::<Vec<_>>();
    // No age limit (what a room without guests' retention asks): by count alone.
    assert_eq!(
        s.archive_trim(TRIM_ROOM, 4, i64::MIN).await.expect("trim"),
        1
    );
    assert_eq!(
        ids(query(s, TRIM_ROOM, &limit(10)).await),
        ["id-02", "id-03", "id-04", "id-05"]
    );
    assert_eq!(s.archive_trim(TRIM_ROOM, 3, 0).await.expect("trim"), 1);
    assert_eq!(
        ids(query(s, TRIM_ROOM, &limit(10)).await),
        ["id-03", "id-04", "id-05"]
    );
    // By age: id-4 (at 2) goes, id-5 (at 3) and id-3 (at 4) stay.
    assert_eq!(s.archive_trim(TRIM_ROOM, 10, 3).await.expect("trim"), 1);
    assert_eq!(
        ids(query(s, TRIM_ROOM, &limit(10)).await),
        ["id-03", "id-05"]
    );
    assert_eq!(s.archive_trim(TRIM_ROOM, 0, 0).await.expect("trim"), 2);
    assert_eq!(query(s, TRIM_ROOM, &limit(10)).await.count, 0);
    assert_eq!(
        s.archive_trim("none@muc.a.example", 0, 0)
            .await
            .expect("trim"),
        0
    );
    assert_eq!(query(s, OTHER_ROOM, &limit(10)).await.count, 1);
    s.archive_delete(OTHER_ROOM).await.expect("delete");

    // Far past the cap: all the excess goes at once, the newest stay, and a trim within the
    // cap deletes nothing.
    const FULL_ROOM: &str = "full@muc.a.example";
    for i in 1..=50 {
        s.archive_append(FULL_ROOM, &archived(i, i as i64, ROMEO, "<m/>"))
            .await
            .expect("append");
    }
    assert_eq!(
        s.archive_trim(FULL_ROOM, 20, i64::MIN).await.expect("trim"),
        30
    );
    let page = query(s, FULL_ROOM, &limit(50)).await;
    assert_eq!(page.count, 20);
    assert_eq!(page.messages.first().map(|m| m.id.as_str()), Some("id-31"));
    assert_eq!(page.messages.last().map(|m| m.id.as_str()), Some("id-50"));
    assert_eq!(
        s.archive_trim(FULL_ROOM, 20, i64::MIN).await.expect("trim"),
        0
    );
    assert_eq!(
        s.archive_trim(FULL_ROOM, 25, i64::MIN).await.expect("trim"),
        0
    );
    assert_eq!(
        s.archive_trim(FULL_ROOM, 19, i64::MIN).await.expect("trim"),
        1
    );
    assert_eq!(
        query(s, FULL_ROOM, &limit(50)).await.messages[0].id,
        "id-32"
    );
    s.archive_delete(FULL_ROOM).await.expect("delete");
}

/// `archive_trim_bytes` keeps the newest messages whose stanzas add up to at most the cap
/// (UTF-8 bytes, in append order), and leaves other archives alone.
pub(crate) async fn byte_trimmed_archives(s: &dyn Storage) {
    const TRIM_ROOM: &str = "bytes@muc.a.example";
    const OTHER_ROOM: &str = "unbounded@muc.a.example";
    // 12, 12, 12, 14 (two 2-byte characters) and 12 bytes; timestamps out of order.
    for (i, at, stanza) in [
        (1, 5, "<m>12345</m>"),
        (2, 1, "<m>12345</m>"),
        (3, 4, "<m>12345</m>"),
        (4, 2, "<m>éé345</m>"),
        (5, 3, "<m>12345</m>"),
    ] {
        s.archive_append(TRIM_ROOM, &archived(i, at, ROMEO, stanza))
            .await
            .expect("append");
    }
    s.archive_append(OTHER_ROOM, &archived(9, 0, ROMEO, "<m>12345</m>"))
        .await
        .expect("append");
    let ids = |page: ArchivePage| page.messages.into_iter().map(|m| m.id).collect::<Vec<_>>();
    // 12 + 14 + 12 = 38 fit in 40; the next would make 50.
    assert_eq!(s.archive_trim_bytes(TRIM_ROOM, 40).await.expect("trim"), 2);
    assert_eq!(
        ids(query(s, TRIM_ROOM, &limit(10)).await),
        ["id-03", "id-04", "id-05"]
    );
    // 25 bytes: 12 fit, 12 + 14 do not (bytes: in characters it would be 24).
    assert_eq!(s.archive_trim_bytes(TRIM_ROOM, 25).await.expect("trim"), 2);
    assert_eq!(ids(query(s, TRIM_ROOM, &limit(10)).await), ["id-05"]);
    assert_eq!(
        s.archive_trim_bytes(TRIM_ROOM, 1000).await.expect("trim"),
        0
    );
    assert_eq!(s.archive_trim_bytes(TRIM_ROOM, 0).await.expect("trim"), 1);
    assert_eq!(query(s, TRIM_ROOM, &limit(10)).await.count, 0);
    assert_eq!(query(s, OTHER_ROOM, &limit(10)).await.count, 1);
    s.archive_delete(OTHER_ROOM).await.expect("delete");
}

/// The 25 messages of [`ROOM`], in append order. Neither ids nor timestamps follow that order:
/// message `i` has id `id-{(13 i) mod 25}` and timestamp `T0 + ((7 i) mod 25)` seconds. Every
/// third message (i = 0, 3, …, 24) is from Romeo, the others from Juliet.
fn room_messages() -> Vec<ArchivedMessage> {
    (0..25)
        .map(|i| {
            let with = if i % 3 == 0 { ROMEO } else { JULIET };
            archived(
                (i * 13) % 25,
                T0 + ((i as i64 * 7) % 25) * SECOND,
                with,
                &format!("<message from='{with}' type='groupchat'><body>{i} ✓</body></message>"),
            )
        })
        .collect()
}

fn pick(all: &[ArchivedMessage], indices: impl IntoIterator<Item = usize>) -> Vec<ArchivedMessage> {
    indices.into_iter().map(|i| all[i].clone()).collect()
}

pub(crate) async fn archives(s: &dyn Storage) {
    let all = room_messages();
    let id = |i: usize| Some(all[i].id.clone());

    // Nothing yet.
    assert_eq!(query(s, ROOM, &limit(10)).await, page(vec![], true, 0));
    assert_eq!(s.archive_get(ROOM, &all[0].id).await.expect("get"), None);
    let q = ArchiveQuery {
        after_id: id(0),
        ..limit(10)
    };
    let err = s.archive_query(ROOM, &q).await.expect_err("empty archive");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");

    // Appended interleaved with other archives: another room, and an account's (alice@a has an
    // account, nobody@a does not; archives need none).
    let other = "other@muc.a.example";
    for (i, message) in all.iter().enumerate() {
        s.archive_append(ROOM, message)
            .await
            .unwrap_or_else(|e| panic!("append {i}: {e}"));
        if i % 5 == 0 {
            let theirs = archived(i, T0 + i as i64, "x@b.example", &format!("<o>{i}</o>"));
            s.archive_append(other, &theirs).await.expect("append");
            s.archive_append("alice@a.example", &theirs)
                .await
                .expect("append");
        }
    }
    s.archive_append("nobody@a.example", &archived(99, T0, "x@b.example", "<n/>"))
        .await
        .expect("append, no account");

    // The same id again in the same archive is refused and changes nothing; in another archive
    // it is fine.
    let duplicate = archived(13, T0 + 100 * SECOND, ROMEO, "<dup/>");
    assert_eq!(duplicate.id, all[1].id);
    let err = s
        .archive_append(ROOM, &duplicate)
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StorageError::AlreadyExists), "{err:?}");
    assert_eq!(
        s.archive_get(ROOM, &duplicate.id).await.expect("get"),
        Some(all[1].clone())
    );
    s.archive_append("third@muc.a.example", &duplicate)
        .await
        .expect("same id, other archive");

    // Everything, in append order (not by id, not by timestamp), every field intact.
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(all.clone(), true, 25)
    );
    assert_eq!(
        query(s, ROOM, &limit(25)).await,
        page(all.clone(), true, 25),
        "exactly the limit: nothing beyond"
    );
    assert_eq!(
        query(s, ROOM, &limit(usize::MAX)).await,
        page(all.clone(), true, 25)
    );
    assert_eq!(
        query(s, other, &limit(100)).await.messages.len(),
        5,
        "archives are separate"
    );

    // Paging forwards in pages of 10: 10, 10, 5, complete only on the last.
    let first = query(s, ROOM, &limit(10)).await;
    assert_eq!(first, page(pick(&all, 0..10), false, 25));
    let second = query(
        s,
        ROOM,
        &ArchiveQuery {
            after_id: Some(first.messages[9].id.clone()),
            ..limit(10)
        },
    )
    .await;
    assert_eq!(second, page(pick(&all, 10..20), false, 25));
    let third = query(
        s,
        ROOM,
        &ArchiveQuery {
            after_id: Some(second.messages[9].id.clone()),
            ..limit(10)
        },
    )
    .await;
    assert_eq!(third, page(pick(&all, 20..25), true, 25));
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(24),
                ..limit(10)
            }
        )
        .await,
        page(vec![], true, 25),
        "after the last message"
    );

    // Paging backwards from the end: pages still oldest first.
    let back = |before_id: Option<String>| ArchiveQuery {
        before_id,
        from_end: true,
        ..limit(10)
    };
    let last = query(s, ROOM, &back(None)).await;
    assert_eq!(last, page(pick(&all, 15..25), false, 25));
    let middle = query(s, ROOM, &back(Some(last.messages[0].id.clone()))).await;
    assert_eq!(middle, page(pick(&all, 5..15), false, 25));
    let oldest = query(s, ROOM, &back(Some(middle.messages[0].id.clone()))).await;
    assert_eq!(oldest, page(pick(&all, 0..5), true, 25));
    assert_eq!(
        query(s, ROOM, &back(id(0))).await,
        page(vec![], true, 25),
        "before the first message"
    );
    assert_eq!(
        query(s, ROOM, &back(id(10))).await,
        page(pick(&all, 0..10), true, 25),
        "exactly a page left"
    );

    // A before bound paged from the start, and an after bound paged from the end.
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                before_id: id(12),
                ..limit(5)
            }
        )
        .await,
        page(pick(&all, 0..5), false, 25)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(20),
                from_end: true,
                ..limit(10)
            }
        )
        .await,
        page(pick(&all, 21..25), true, 25)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(3),
                from_end: true,
                ..limit(2)
            }
        )
        .await,
        page(pick(&all, 23..25), false, 25)
    );

    // Both bounds: the messages strictly between.
    let between = |after: usize, before: usize, n: usize, from_end: bool| ArchiveQuery {
        after_id: id(after),
        before_id: id(before),
        from_end,
        ..limit(n)
    };
    assert_eq!(
        query(s, ROOM, &between(5, 9, 10, false)).await,
        page(pick(&all, 6..9), true, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(5, 9, 2, false)).await,
        page(pick(&all, 6..8), false, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(5, 9, 2, true)).await,
        page(pick(&all, 7..9), false, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(5, 6, 10, false)).await,
        page(vec![], true, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(7, 7, 10, false)).await,
        page(vec![], true, 25)
    );
    assert_eq!(
        query(s, ROOM, &between(9, 5, 10, true)).await,
        page(vec![], true, 25)
    );

    // Limit 0: no messages, but the count and whether any lie beyond.
    assert_eq!(query(s, ROOM, &limit(0)).await, page(vec![], false, 25));
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                from_end: true,
                ..limit(0)
            }
        )
        .await,
        page(vec![], false, 25)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(24),
                ..limit(0)
            }
        )
        .await,
        page(vec![], true, 25)
    );
    assert_eq!(
        query(s, "empty@muc.a.example", &limit(0)).await,
        page(vec![], true, 0)
    );

    // The `with` filter: exact match only.
    let romeo: Vec<usize> = (0..25).step_by(3).collect();
    assert_eq!(romeo.len(), 9);
    let with = |who: &str| ArchiveQuery {
        with: Some(who.to_owned()),
        ..limit(100)
    };
    assert_eq!(
        query(s, ROOM, &with(ROMEO)).await,
        page(pick(&all, romeo.iter().copied()), true, 9)
    );
    assert_eq!(query(s, ROOM, &with(JULIET)).await.count, 16);
    assert_eq!(
        query(s, ROOM, &with("room@muc.a.example")).await,
        page(vec![], true, 0)
    );
    assert_eq!(
        query(s, ROOM, &with("room@muc.a.example/Romeo")).await,
        page(vec![], true, 0)
    );
    // Paged, with a position that itself does not match the filter.
    let romeo_page = |after: usize| ArchiveQuery {
        after_id: id(after),
        ..ArchiveQuery {
            limit: 4,
            ..with(ROMEO)
        }
    };
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                limit: 4,
                ..with(ROMEO)
            }
        )
        .await,
        page(pick(&all, [0, 3, 6, 9]), false, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(9)).await,
        page(pick(&all, [12, 15, 18, 21]), false, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(10)).await,
        page(pick(&all, [12, 15, 18, 21]), false, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(21)).await,
        page(pick(&all, [24]), true, 9)
    );
    assert_eq!(
        query(s, ROOM, &romeo_page(22)).await,
        page(pick(&all, [24]), true, 9)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                before_id: id(23),
                from_end: true,
                limit: 3,
                ..with(ROMEO)
            }
        )
        .await,
        page(pick(&all, [15, 18, 21]), false, 9)
    );

    // Start and end are inclusive and select by timestamp; results stay in append order.
    let in_range = |lo: i64, hi: i64| -> Vec<usize> {
        (0..25)
            .filter(|&i| (lo..=hi).contains(&all[i].timestamp))
            .collect()
    };
    let range = ArchiveQuery {
        start: Some(T0 + 5 * SECOND),
        end: Some(T0 + 9 * SECOND),
        ..limit(100)
    };
    let expected = in_range(T0 + 5 * SECOND, T0 + 9 * SECOND);
    // (7 i) mod 25 in 5..=9: i = 15, 1, 8, 19, 12, in append order 1, 8, 12, 15, 19.
    assert_eq!(expected, [1, 8, 12, 15, 19]);
    assert_eq!(
        query(s, ROOM, &range).await,
        page(pick(&all, expected.iter().copied()), true, 5)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                limit: 2,
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [1, 8]), false, 5)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(8),
                limit: 2,
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [12, 15]), false, 5)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                from_end: true,
                limit: 2,
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [15, 19]), false, 5)
    );
    let start_only = ArchiveQuery {
        start: Some(T0 + 20 * SECOND),
        ..limit(100)
    };
    assert_eq!(
        query(s, ROOM, &start_only).await,
        page(pick(&all, in_range(T0 + 20 * SECOND, i64::MAX)), true, 5)
    );
    let end_only = ArchiveQuery {
        end: Some(T0),
        ..limit(100)
    };
    assert_eq!(
        query(s, ROOM, &end_only).await,
        page(pick(&all, [0]), true, 1)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                start: Some(T0 + 25 * SECOND),
                ..limit(100)
            }
        )
        .await,
        page(vec![], true, 0)
    );
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                start: Some(T0 + 9 * SECOND),
                end: Some(T0 + 5 * SECOND),
                ..limit(100)
            }
        )
        .await,
        page(vec![], true, 0),
        "start after end"
    );
    // All three filters: Romeo's among 1, 8, 12, 15, 19 are 12 and 15.
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                with: Some(ROMEO.to_owned()),
                ..range.clone()
            }
        )
        .await,
        page(pick(&all, [12, 15]), true, 2)
    );

    // An unknown position is NotFound, also one that exists only in another archive.
    for (after_id, before_id) in [
        (Some("nope".to_owned()), None),
        (None, Some("nope".to_owned())),
        (id(0), Some("nope".to_owned())),
        (Some("nope".to_owned()), id(0)),
        (Some("id-99".to_owned()), None),
    ] {
        let q = ArchiveQuery {
            after_id,
            before_id,
            ..limit(10)
        };
        let err = s.archive_query(ROOM, &q).await.expect_err("unknown id");
        assert!(matches!(err, StorageError::NotFound), "{q:?}: {err:?}");
    }

    // Lookup by id.
    for message in &all {
        assert_eq!(
            s.archive_get(ROOM, &message.id).await.expect("get"),
            Some(message.clone())
        );
    }
    assert_eq!(s.archive_get(ROOM, "nope").await.expect("get"), None);
    assert_eq!(s.archive_get(ROOM, "id-99").await.expect("get"), None);
    assert_eq!(
        s.archive_get("nothing@muc.a.example", "id-00")
            .await
            .expect("get"),
        None
    );

    // Replacing the stanza (a tombstone) keeps everything else, including the position.
    let tombstone = "<message><retracted xmlns='urn:xmpp:message-retract:1'/></message>";
    s.archive_replace(ROOM, &all[7].id, tombstone)
        .await
        .expect("replace");
    let mut retracted = all.clone();
    retracted[7].stanza = tombstone.to_owned();
    assert_eq!(
        s.archive_get(ROOM, &all[7].id).await.expect("get"),
        Some(retracted[7].clone())
    );
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(retracted.clone(), true, 25)
    );
    assert_eq!(
        s.archive_get(other, &all[7].id).await.expect("get"),
        None,
        "other archives untouched"
    );
    for (archive, id) in [
        (ROOM, "nope"),
        ("nothing@muc.a.example", all[7].id.as_str()),
        (other, all[7].id.as_str()),
    ] {
        let err = s
            .archive_replace(archive, id, "<x/>")
            .await
            .expect_err("absent");
        assert!(
            matches!(err, StorageError::NotFound),
            "{archive} {id}: {err:?}"
        );
    }

    // Expiry: strictly older than `before`, in the archives of one domain. On the MUC domain:
    // in ROOM, timestamps T0 + 0, 1 and 2 s (i = 0, 18, 11); in `other`, everything (all at
    // most T0 + 20 µs); third's duplicate-id message at T0 + 100 s stays. The accounts'
    // archives on a.example (a suffix of muc.a.example) wait for their own domain's expiry.
    assert_eq!(in_range(i64::MIN, T0 + 2 * SECOND), [0, 11, 18]);
    let expire = |domain: &'static str| s.archive_expire(domain, T0 + 3 * SECOND);
    assert_eq!(expire("muc.a.example").await.expect("expire"), 3 + 5);
    assert_eq!(expire("muc.a.example").await.expect("expire"), 0);
    assert_eq!(query(s, "alice@a.example", &limit(100)).await.count, 5);
    assert_eq!(expire("a.example").await.expect("expire"), 5 + 1);
    assert_eq!(expire("a.example").await.expect("expire"), 0);
    let survivors: Vec<usize> = (0..25).filter(|i| ![0, 11, 18].contains(i)).collect();
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(pick(&retracted, survivors.iter().copied()), true, 22)
    );
    assert_eq!(query(s, other, &limit(100)).await, page(vec![], true, 0));
    assert_eq!(query(s, "alice@a.example", &limit(100)).await.count, 0);
    assert_eq!(
        query(s, "third@muc.a.example", &limit(100)).await,
        page(vec![duplicate.clone()], true, 1)
    );
    assert_eq!(s.archive_get(ROOM, &all[0].id).await.expect("get"), None);
    let err = s
        .archive_query(
            ROOM,
            &ArchiveQuery {
                after_id: id(11),
                ..limit(10)
            },
        )
        .await
        .expect_err("expired position");
    assert!(matches!(err, StorageError::NotFound), "{err:?}");
    // Paging still works around the gaps.
    assert_eq!(
        query(
            s,
            ROOM,
            &ArchiveQuery {
                after_id: id(10),
                ..limit(3)
            }
        )
        .await,
        page(pick(&retracted, [12, 13, 14]), false, 22)
    );

    // An expired id can be used again, and new messages go last whatever their timestamp.
    s.archive_append(ROOM, &all[0]).await.expect("append again");
    let mut expected = pick(&retracted, survivors.iter().copied());
    expected.push(all[0].clone());
    assert_eq!(query(s, ROOM, &limit(100)).await, page(expected, true, 23));

    // Deleting an archive deletes only that archive.
    s.archive_delete(ROOM).await.expect("delete");
    assert_eq!(query(s, ROOM, &limit(100)).await, page(vec![], true, 0));
    assert_eq!(s.archive_get(ROOM, &all[1].id).await.expect("get"), None);
    assert_eq!(query(s, "third@muc.a.example", &limit(100)).await.count, 1);
    s.archive_delete(ROOM).await.expect("delete again");
    s.archive_delete("third@muc.a.example")
        .await
        .expect("delete");
    assert_eq!(query(s, "third@muc.a.example", &limit(100)).await.count, 0);

    // A deleted archive starts afresh.
    s.archive_append(ROOM, &all[1]).await.expect("append");
    assert_eq!(
        query(s, ROOM, &limit(100)).await,
        page(vec![all[1].clone()], true, 1)
    );
    s.archive_delete(ROOM).await.expect("delete");
}
