//! The one point where federation plugs into the core (RFC 6120 §10.4, "remote domain"): a
//! stanza for a domain this server does not host is handed to the [`RemoteRouter`] a feature
//! registered, or bounced with `remote-server-not-found` when there is none. The core names no
//! server-to-server code; the s2s module fills the slot.

use bytes::Bytes;
use minidom::Element;

/// Where stanzas for other servers go. Implementations never drop a stanza silently: one that
/// cannot be delivered is bounced to its sender (`remote-server-not-found`,
/// `remote-server-timeout`).
pub trait RemoteRouter: Send + Sync {
    /// Send `stanza` (its `from` on one of our domains, `from_domain`) to `to_domain`.
    fn send(&self, stanza: Element, from_domain: &str, to_domain: &str);
    /// The same for a stanza already serialised in `jabber:client` (a room's fan-out shares one
    /// serialisation among its occupants, remote ones included).
    fn send_serialized(&self, stanza: Bytes, from_domain: &str, to_domain: &str);
}
