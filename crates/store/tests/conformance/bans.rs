//! Server-wide bans: added, replaced, listed while in force, lifted.

use salon_server::storage::prelude::*;
use salon_server::storage::{Ban, StorageError};

pub(crate) async fn bans(s: &dyn Storage) {
    assert_eq!(s.bans(100).await.expect("bans"), []);
    let forever = Ban {
        target: "192.0.2.7".into(),
        created: 10,
        until: None,
    };
    let brief = Ban {
        target: "2001:db8::/64".into(),
        created: 10,
        until: Some(200),
    };
    let account = Ban {
        target: "mallory@a.example".into(),
        created: 10,
        until: Some(50),
    };
    for ban in [&forever, &brief, &account] {
        s.add_ban(ban).await.expect("add");
    }
    // Sorted by target; the one that ended is left out.
    assert_eq!(
        s.bans(100).await.expect("bans"),
        [forever.clone(), brief.clone()]
    );
    assert_eq!(
        s.bans(200).await.expect("bans"),
        std::slice::from_ref(&forever)
    );
    // Banning again replaces.
    let longer = Ban {
        until: Some(1000),
        ..account.clone()
    };
    s.add_ban(&longer).await.expect("replace");
    assert_eq!(
        s.bans(100).await.expect("bans"),
        [forever.clone(), brief.clone(), longer]
    );
    s.remove_ban("mallory@a.example").await.expect("lift");
    assert!(matches!(
        s.remove_ban("mallory@a.example").await,
        Err(StorageError::NotFound)
    ));
    s.remove_ban("192.0.2.7").await.expect("lift");
    s.remove_ban("2001:db8::/64").await.expect("lift");
    assert_eq!(s.bans(0).await.expect("bans"), []);
}
