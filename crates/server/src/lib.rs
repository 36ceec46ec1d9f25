//! The Salon XMPP server: the core (configuration, sessions, router, hooks, storage traits)
//! and the feature modules and services that register on it. See docs/ARCHITECTURE.md for the
//! layers and the path of a stanza through them.

// The core: knows no feature.
pub mod bans;
pub mod config;
pub mod durable;
pub mod extensions;
pub mod fuzz;
pub mod hooks;
pub mod jid_memo;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod remote;
pub mod router;
pub mod secret_file;
pub mod server;
pub mod service;
pub mod session;
pub mod session_handle;
pub mod stanza;
pub mod storage;
pub mod tls;

// Features and services, registered by `builtin`.
pub mod archive;
pub mod component;
pub mod im;
pub mod modules;
pub mod muc;
pub mod pep;
pub mod push;
pub mod s2s;
pub mod upload;

mod builtin;

pub use builtin::build;
pub use config::Config;
pub use server::Server;
