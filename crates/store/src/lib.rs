//! Persistent storage backends for Salon, implementing the server's per-feature storage traits
//! (`salon_server::storage`). The default is SQLite ([`SqliteStorage`], in `sqlite/`); a
//! PostgreSQL backend will sit beside it in a folder of its own, with its migrations in
//! `migrations/postgres/`, sharing [`errors`]' mapping of sqlx errors, and run the same
//! conformance suite (`tests/conformance/`).

mod errors;
mod sqlite;

pub use sqlite::SqliteStorage;
