//! The Salon XMPP server: configuration, sessions, router and feature modules.
//! See ARCHITECTURE.md for the path of a stanza through these modules.

pub mod archive;
pub mod config;
pub mod im;
pub mod metrics;
pub mod modules;
pub mod muc;
pub mod router;
pub mod server;
pub mod session;
pub mod stanza;
pub mod storage;
pub mod tls;
pub mod upload;

pub use config::Config;
pub use server::Server;
