//! Offline messages (RFC 6121 §8.5.2.2): stored in order, counted, taken once.

use salon_server::storage::prelude::*;

use crate::fixtures::*;

pub(crate) async fn offline_messages(s: &dyn Storage) {
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 0);
    assert!(s.take_offline("alice", A).await.expect("take").is_empty());

    // Ordered by arrival, not by timestamp.
    let messages = [
        offline("<message id='1'>first</message>", 1_700_000_100),
        offline("<message id='2'>second</message>", 1_700_000_000),
        offline("<message id='3'>third</message>", 1_700_000_000),
        offline("<message id='4'>fourth ✓</message>", 1_700_000_200),
    ];
    for m in &messages[..3] {
        s.store_offline("alice", A, m).await.expect("store");
    }
    s.store_offline("alice", B, &offline("<message id='b'/>", 5))
        .await
        .expect("store");
    s.store_offline("alice", A, &messages[3])
        .await
        .expect("store");
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 4);
    assert_eq!(s.count_offline("alice", B).await.expect("count"), 1);
    assert_eq!(s.count_offline("bob", A).await.expect("count"), 0);

    assert_eq!(s.count_offline("carol", A).await.expect("count"), 0);
    assert!(s.take_offline("carol", A).await.expect("take").is_empty());

    assert_eq!(s.take_offline("alice", A).await.expect("take"), messages);
    // Taking deletes.
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 0);
    assert!(s
        .take_offline("alice", A)
        .await
        .expect("take again")
        .is_empty());
    // Others' queues are untouched.
    assert_eq!(s.count_offline("alice", B).await.expect("count"), 1);

    // The queue keeps working after being emptied.
    s.store_offline("alice", A, &messages[1])
        .await
        .expect("store");
    s.store_offline("alice", A, &messages[0])
        .await
        .expect("store");
    assert_eq!(s.count_offline("alice", A).await.expect("count"), 2);
    assert_eq!(
        s.take_offline("alice", A).await.expect("take"),
        [messages[1].clone(), messages[0].clone()]
    );
    assert_eq!(
        s.take_offline("alice", B).await.expect("take"),
        [offline("<message id='b'/>", 5)]
    );
}
