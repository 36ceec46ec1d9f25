//! How sqlx errors and unexpected column values become [`StorageError`]s, for every sqlx
//! backend; the cause is kept in the message, so the log line that reports it says what failed.

use std::fmt::Display;

use salon_server::storage::{StorageError, StorageResult};

/// Maps a sqlx error: unique-constraint violations mean the record (account, archive id,
/// upload id) exists already, anything else is a backend failure.
pub(crate) fn db_error(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::AlreadyExists,
        _ => StorageError::Backend(error.to_string()),
    }
}

/// A value read from the database that does not fit its Rust type, with why.
pub(crate) fn corrupt(what: &str, cause: impl Display) -> StorageError {
    StorageError::Backend(format!("corrupt data in database: {what}: {cause}"))
}

/// A value to be written that does not fit its column, with why.
pub(crate) fn out_of_range(what: &str, cause: impl Display) -> StorageError {
    StorageError::Backend(format!("{what} out of range: {cause}"))
}

/// `NotFound` when a statement that should have touched the account's row touched nothing.
pub(crate) fn require_row(rows_affected: u64) -> StorageResult<()> {
    if rows_affected == 0 {
        Err(StorageError::NotFound)
    } else {
        Ok(())
    }
}
