//! vCard-temp (XEP-0054): one vCard per account, replaced whole.

use salon_server::storage::prelude::*;

use crate::fixtures::*;

pub(crate) async fn vcards(s: &dyn Storage) {
    assert_eq!(s.vcard("alice", A).await.expect("vcard"), None);
    let first = "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>";
    let second =
        "<vCard xmlns='vcard-temp'><FN>Alice Ä. Example</FN><NICKNAME>al</NICKNAME></vCard>";
    s.set_vcard("alice", A, first).await.expect("set");
    assert_eq!(
        s.vcard("alice", A).await.expect("vcard").as_deref(),
        Some(first)
    );
    assert_eq!(s.vcard("alice", B).await.expect("vcard"), None);
    assert_eq!(s.vcard("bob", A).await.expect("vcard"), None);
    s.set_vcard("alice", A, second).await.expect("replace");
    assert_eq!(
        s.vcard("alice", A).await.expect("vcard").as_deref(),
        Some(second)
    );

    assert_eq!(s.vcard("carol", A).await.expect("vcard"), None);
}
