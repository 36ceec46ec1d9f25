//! Push registrations and administrators made by an invitation: kept for accounts only,
//! replaced by (room, service, node), removed by service (and node), listed oldest first by
//! kind, and gone with their account.

use salon_server::storage::prelude::*;
use salon_server::storage::{PushRegistration, StorageError};

use crate::fixtures::{creds, A};

fn registration(room: Option<&str>, node: &str, created: i64) -> PushRegistration {
    PushRegistration {
        room: room.map(str::to_owned),
        resource: if room.is_some() {
            "phone".into()
        } else {
            String::new()
        },
        token: if room.is_some() {
            format!("tok-{node}")
        } else {
            String::new()
        },
        service: "push.example.net".into(),
        node: node.into(),
        options: Some("<x xmlns='jabber:x:data' type='submit'/>".into()),
        created,
    }
}

pub(crate) async fn push_registrations(s: &dyn Storage) {
    let room = "club@rooms.a.example";
    assert!(matches!(
        s.put_push_registration("pushy", A, &registration(None, "n1", 1))
            .await,
        Err(StorageError::NotFound)
    ));
    s.create_account("pushy", A, &creds(40))
        .await
        .expect("create");
    s.create_account("other", A, &creds(41))
        .await
        .expect("create");
    s.put_push_registration("pushy", A, &registration(None, "n1", 1))
        .await
        .expect("put");
    s.put_push_registration("pushy", A, &registration(None, "n2", 2))
        .await
        .expect("put");
    s.put_push_registration("pushy", A, &registration(Some(room), "r1", 3))
        .await
        .expect("put");
    // The same service and node again replaces it.
    let mut again = registration(None, "n1", 4);
    again.options = None;
    s.put_push_registration("pushy", A, &again)
        .await
        .expect("put");
    s.put_push_registration("other", A, &registration(None, "o1", 0))
        .await
        .expect("put");

    let own = s.push_registrations(false).await.expect("list");
    let listed: Vec<(&str, &str)> = own
        .iter()
        .map(|(a, r)| (a.as_str(), r.node.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("other@a.example", "o1"),
            ("pushy@a.example", "n2"),
            ("pushy@a.example", "n1")
        ]
    );
    assert_eq!(own[2].1, again);
    let rooms = s.push_registrations(true).await.expect("list");
    assert_eq!(
        rooms,
        [(
            "pushy@a.example".to_owned(),
            registration(Some(room), "r1", 3)
        )]
    );

    // A room's registration is not the account's own, and the other way round.
    assert_eq!(
        s.delete_push_registrations("pushy", A, None, "push.example.net", Some("r1"))
            .await
            .expect("delete"),
        0
    );
    assert_eq!(
        s.delete_push_registrations("pushy", A, Some(room), "push.example.net", Some("r1"))
            .await
            .expect("delete"),
        1
    );
    // Without a node: every node of the service.
    assert_eq!(
        s.delete_push_registrations("pushy", A, None, "push.example.net", None)
            .await
            .expect("delete"),
        2
    );
    assert!(s.push_registrations(true).await.expect("list").is_empty());

    // Administrators made by an invitation.
    assert!(matches!(
        s.set_admin("nobody", A, true).await,
        Err(StorageError::NotFound)
    ));
    assert!(!s.is_stored_admin("pushy", A).await.expect("read"));
    s.set_admin("pushy", A, true).await.expect("flag");
    s.set_admin("pushy", A, true).await.expect("flag twice");
    assert!(s.is_stored_admin("pushy", A).await.expect("read"));
    assert!(!s.is_stored_admin("other", A).await.expect("read"));
    s.set_admin("pushy", A, false).await.expect("unflag");
    assert!(!s.is_stored_admin("pushy", A).await.expect("read"));

    // Both go with the account: a new account of the same name starts without them.
    s.set_admin("other", A, true).await.expect("flag");
    s.delete_account("other", A).await.expect("delete");
    s.create_account("other", A, &creds(42))
        .await
        .expect("create");
    assert!(!s.is_stored_admin("other", A).await.expect("read"));
    assert!(s.push_registrations(false).await.expect("list").is_empty());
    s.delete_account("other", A).await.expect("delete");
    s.delete_account("pushy", A).await.expect("delete");
}
