//! Each account's avatar hash (XEP-0084 metadata, XEP-0153 presence), cached server-wide as it
//! was last read or published; the PEP service updates it when the metadata node changes.

use crate::server::Server;
use minidom::Element;
use std::sync::Arc;

pub const METADATA: &str = "urn:xmpp:avatar:metadata";

/// Accounts whose hash is cached; past it the cache starts over (it is refilled from storage).
const MAX_CACHED_HASHES: usize = 65_536;

/// Server-wide: each account's avatar hash as last read or published (`None`: no avatar).
#[derive(Default)]
pub(super) struct Hashes(pub(super) dashmap::DashMap<String, Option<String>>);

pub(super) fn hashes(server: &Server) -> Arc<Hashes> {
    server.extensions.get_or_default::<Hashes>()
}

pub(super) fn cache(server: &Server, owner: &jid::BareJid, hash: Option<String>) {
    let hashes = hashes(server);
    if hashes.0.len() >= MAX_CACHED_HASHES {
        hashes.0.clear();
    }
    hashes.0.insert(owner.to_string(), hash);
}

/// The `<info/>` of a metadata payload that describes the image kept in the data node: the
/// first one not pointing to an external URL (XEP-0398 §3).
pub(super) fn stored_info(metadata: &Element) -> Option<&Element> {
    metadata
        .children()
        .filter(|c| c.is("info", METADATA))
        .find(|info| info.attr("url").is_none())
}

/// The hash a metadata payload announces, or none (XEP-0084 §4.2 "disabling" the avatar with
/// an empty `<metadata/>`).
pub(super) fn announced_hash(metadata: &Element) -> Option<String> {
    stored_info(metadata)
        .and_then(|info| info.attr("id"))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// Metadata was published for `owner` (by a client or by us): its hash goes in the presence.
pub fn remember_hash(server: &Server, owner: &jid::BareJid, metadata: &Element) {
    cache(server, owner, announced_hash(metadata));
}

/// The metadata node was deleted or purged: no avatar.
pub fn forget_hash(server: &Server, owner: &jid::BareJid) {
    cache(server, owner, None);
}

/// The account was deleted: nothing is cached for it, so a new account of the same name does
/// not announce the old one's avatar.
pub fn forget_account(server: &Server, owner: &jid::BareJid) {
    hashes(server).0.remove(owner.as_str());
}
