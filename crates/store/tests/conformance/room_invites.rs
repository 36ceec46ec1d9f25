//! Room invite links: made once per token, used up one join at a time for their own room only,
//! until none is left or they expire; listed per room newest first; revoked by the room.

use salon_server::storage::prelude::*;
use salon_server::storage::{RoomInvite, StorageError};

pub(crate) async fn room_invites(s: &dyn Storage) {
    let room = "club@rooms.example.com";
    let link = RoomInvite {
        token: "link-a".into(),
        room: room.into(),
        created_by: Some("owner@example.com".into()),
        uses_left: 2,
        created: 10,
        expires: 100,
    };
    s.create_room_invite(&link).await.expect("create");
    assert!(matches!(
        s.create_room_invite(&link).await,
        Err(StorageError::AlreadyExists)
    ));
    let other = "other@rooms.example.com";
    assert_eq!(
        s.take_room_invite_use(other, "link-a", 50)
            .await
            .expect("take"),
        None
    );
    assert_eq!(
        s.take_room_invite_use(room, "link-a", 100)
            .await
            .expect("take"),
        None
    );
    let taken = s
        .take_room_invite_use(room, "link-a", 50)
        .await
        .expect("take");
    assert_eq!(taken.map(|l| l.uses_left), Some(2));
    assert!(s
        .take_room_invite_use(room, "link-a", 50)
        .await
        .expect("take")
        .is_some());
    assert_eq!(
        s.take_room_invite_use(room, "link-a", 50)
            .await
            .expect("take"),
        None
    );
    let newer = RoomInvite {
        token: "link-b".into(),
        created: 20,
        created_by: None,
        ..link.clone()
    };
    s.create_room_invite(&newer).await.expect("create");
    let listed: Vec<String> = s
        .room_invites(room)
        .await
        .expect("list")
        .into_iter()
        .map(|l| l.token)
        .collect();
    assert_eq!(listed, ["link-b", "link-a"]);
    assert!(s.room_invites(other).await.expect("list").is_empty());
    assert!(matches!(
        s.delete_room_invite(other, "link-b").await,
        Err(StorageError::NotFound)
    ));
    s.delete_room_invite(room, "link-b").await.expect("revoke");
    assert!(matches!(
        s.delete_room_invite(room, "link-b").await,
        Err(StorageError::NotFound)
    ));
    s.delete_room_invite(room, "link-a").await.expect("revoke");
}
