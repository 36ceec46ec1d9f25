//! Persistent MUC rooms (XEP-0045): records per service, sorted, replaced, deleted.

use salon_server::storage::prelude::*;

use crate::fixtures::*;

pub(crate) async fn rooms(s: &dyn Storage) {
    assert!(s.rooms(MUC_A).await.expect("rooms").is_empty());

    // Saved out of order, on several services; none of them is an account.
    let saved = [
        ("zed@muc.a.example", "{\"zed\":1}"),
        ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ("alpha@muc.a.example", ""),
        ("alpha@muc.b.example", "b"),
        ("beta@sub.muc.a.example", "sub"),
        ("gamma@a.example", "host"),
    ];
    for (room, record) in saved {
        s.save_room(room, record)
            .await
            .unwrap_or_else(|e| panic!("save {room}: {e}"));
    }
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(jid, record)| ((*jid).to_owned(), (*record).to_owned()))
            .collect()
    };
    // Sorted by JID in byte order ('ü' is after 'z'), only the exact service.
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("alpha@muc.a.example", ""),
            ("zed@muc.a.example", "{\"zed\":1}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );
    assert_eq!(
        s.rooms("muc.b.example").await.expect("rooms"),
        owned(&[("alpha@muc.b.example", "b")])
    );
    assert_eq!(
        s.rooms("sub.muc.a.example").await.expect("rooms"),
        owned(&[("beta@sub.muc.a.example", "sub")])
    );
    assert_eq!(
        s.rooms(A).await.expect("rooms"),
        owned(&[("gamma@a.example", "host")])
    );
    assert!(s.rooms("a.exampl").await.expect("rooms").is_empty());
    assert!(s.rooms("example").await.expect("rooms").is_empty());
    // Room records are not accounts.
    assert!(!s
        .list_accounts(None)
        .await
        .expect("list")
        .iter()
        .any(|jid| jid.contains("muc")));

    // Saving again replaces the record, without a second entry.
    s.save_room("zed@muc.a.example", "{\"zed\":2}")
        .await
        .expect("replace");
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("alpha@muc.a.example", ""),
            ("zed@muc.a.example", "{\"zed\":2}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );

    // Deleting a room leaves its archive and the other rooms (also the same name elsewhere).
    let kept = archived(0, 1, "x@a.example", "<message>kept</message>");
    s.archive_append("alpha@muc.a.example", &kept)
        .await
        .expect("append");
    s.delete_room("alpha@muc.a.example").await.expect("delete");
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("zed@muc.a.example", "{\"zed\":2}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );
    assert_eq!(
        s.rooms("muc.b.example").await.expect("rooms"),
        owned(&[("alpha@muc.b.example", "b")])
    );
    assert_eq!(
        s.archive_get("alpha@muc.a.example", &kept.id)
            .await
            .expect("get"),
        Some(kept.clone())
    );
    s.archive_delete("alpha@muc.a.example")
        .await
        .expect("archive delete");
    // Deleting what is not there is not an error.
    s.delete_room("alpha@muc.a.example")
        .await
        .expect("delete again");
    s.delete_room("nobody@muc.a.example")
        .await
        .expect("delete unknown");

    // A deleted room saved again starts afresh.
    s.save_room("alpha@muc.a.example", "new")
        .await
        .expect("save again");
    assert_eq!(
        s.rooms(MUC_A).await.expect("rooms"),
        owned(&[
            ("alpha@muc.a.example", "new"),
            ("zed@muc.a.example", "{\"zed\":2}"),
            ("ümlaut@muc.a.example", "<room name='Ü'/>"),
        ])
    );

    for (room, _) in saved {
        s.delete_room(room).await.expect("delete");
    }
    for service in [MUC_A, "muc.b.example", "sub.muc.a.example", A] {
        assert!(s.rooms(service).await.expect("rooms").is_empty());
    }
}
