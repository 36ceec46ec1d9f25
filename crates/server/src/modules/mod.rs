//! Modules about the server and accounts themselves (discovery, ping, version, time, last
//! activity, vCard, registration, private storage, contact addresses): each registers what it
//! handles in the [`Registry<Server>`], so the router and session code never grow a branch per XEP.

use crate::server::Server;

pub use crate::registry::{Identity, IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};

pub mod accounts;
pub mod adhoc;
pub mod contact_info;
pub mod disco;
pub mod invites;
pub mod last;
pub mod ping;
pub mod private;
pub mod register;
pub mod signup;
pub mod time;
pub mod vcard;
pub mod version;

/// Register every built-in module. Adding a XEP means adding a line here and a file beside
/// this one.
pub fn register_all(registry: &mut Registry<Server>, config: &crate::config::Config) {
    disco::register(registry);
    ping::register(registry);
    version::register(registry);
    time::register(registry);
    last::register(registry);
    vcard::register(registry);
    register::register(registry);
    signup::register(registry);
    invites::register(registry);
    let mut commands = adhoc::admin::commands();
    commands.extend(invites::commands::commands());
    adhoc::register(registry, commands);
    private::register(registry);
    contact_info::register(registry, config);
}
