//! Instant messaging on local hosts (RFC 6121): delivery rules for stanzas addressed to local
//! accounts (§8.5), offline storage (§8.5.2.2), rosters (§2) and presence (§3, §4); and the
//! XEPs that live on those paths (carbons, archives, blocking, client state indication).

use crate::modules::Registry;
use crate::server::Server;

pub mod blocking;
pub mod blocklist;
pub mod carbons;
pub mod csi;
pub mod delivery;
pub mod encrypted;
pub mod mam;
pub mod offline;
pub mod presence;
pub mod push;
pub mod roster;

/// Register instant messaging and the XEPs on its paths.
pub fn register_all(registry: &mut Registry<Server>, config: &crate::config::Config) {
    delivery::register(registry);
    presence::register(registry);
    roster::register(registry);
    carbons::register(registry);
    blocking::register(registry);
    mam::register(registry, config);
    csi::register(registry);
    push::register(registry);
}
