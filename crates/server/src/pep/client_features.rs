//! What a client's entity capabilities (XEP-0115) say it wants: the features behind its
//! announced hash, kept per session, and the `NODE+notify` filter of XEP-0163 §4.3.1. The
//! caps discovery (`caps.rs`) fills it; notifications (`notify.rs`) read it.

use crate::router::SessionHandle;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// A client's features, as its disco#info listed them.
pub type Features = Arc<BTreeSet<String>>;

/// Whether a client with `features` wants notifications of `node` (XEP-0163 §4.3.1).
pub fn wants_notifications(features: &BTreeSet<String>, node: &str) -> bool {
    features.contains(&format!("{node}+notify"))
}

/// Per session, in the session handle's slots: the hash it announced and, once known, its
/// features.
#[derive(Default)]
pub(super) struct SessionCaps(pub(super) Mutex<Option<(String, Option<Features>)>>);

/// The features of a session's client, if it announced them and they are known.
pub fn features_of(session: &SessionHandle) -> Option<Features> {
    let caps = session.extensions.get::<SessionCaps>()?;
    let state = caps.0.lock().ok()?;
    state.as_ref().and_then(|(_, features)| features.clone())
}
