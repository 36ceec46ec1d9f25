//! Invitations: made once per token, read, used up one use at a time until none is left or it
//! expires, a use given back, listed by host newest first, revoked.

use salon_server::storage::prelude::*;
use salon_server::storage::{Invite, StorageError};

pub(crate) async fn invites(s: &dyn Storage) {
    let invite = Invite {
        token: "tok-a".into(),
        domain: "example.com".into(),
        inviter: Some("alice@example.com".into()),
        uses_left: 2,
        created: 10,
        expires: 100,
        admin: false,
    };
    s.create_invite(&invite).await.expect("create");
    assert!(matches!(
        s.create_invite(&invite).await,
        Err(StorageError::AlreadyExists)
    ));
    assert_eq!(s.invite("tok-a").await.expect("read"), Some(invite.clone()));
    assert_eq!(s.invite("nope").await.expect("read"), None);

    // Two uses, then none; what comes back is the invitation before the use.
    let taken = s.take_invite_use("tok-a", 50).await.expect("take");
    assert_eq!(taken.map(|i| i.uses_left), Some(2));
    s.return_invite_use("tok-a").await.expect("give back");
    assert_eq!(
        s.take_invite_use("tok-a", 50)
            .await
            .expect("take")
            .map(|i| i.uses_left),
        Some(2)
    );
    assert_eq!(
        s.take_invite_use("tok-a", 50)
            .await
            .expect("take")
            .map(|i| i.uses_left),
        Some(1)
    );
    assert_eq!(s.take_invite_use("tok-a", 50).await.expect("take"), None);
    assert_eq!(
        s.invite("tok-a").await.expect("read").map(|i| i.uses_left),
        Some(0)
    );

    // Expired: no use, whatever is left.
    let later = Invite {
        token: "tok-b".into(),
        inviter: None,
        uses_left: 5,
        created: 20,
        expires: 60,
        admin: true,
        ..invite.clone()
    };
    s.create_invite(&later).await.expect("create");
    assert_eq!(s.take_invite_use("tok-b", 60).await.expect("take"), None);
    assert_eq!(s.invite("tok-b").await.expect("read"), Some(later.clone()));
    assert_eq!(s.take_invite_use("missing", 0).await.expect("take"), None);

    let other = Invite {
        token: "tok-c".into(),
        domain: "other.example".into(),
        ..later.clone()
    };
    s.create_invite(&other).await.expect("create");
    let listed: Vec<String> = s
        .invites("example.com")
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.token)
        .collect();
    assert_eq!(listed, ["tok-b", "tok-a"]);

    s.delete_invite("tok-b").await.expect("revoke");
    assert!(matches!(
        s.delete_invite("tok-b").await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(s.invite("tok-b").await.expect("read"), None);
}
