//! Accounts and their SCRAM credentials (RFC 5802) in memory; an entry without credentials is
//! an anonymous visitor's data, not an account.

use async_trait::async_trait;

use super::{write, MemoryStorage};
use crate::storage::rules::account_archive;
use crate::storage::{AccountStore, Credentials, StorageError, StorageResult};

#[async_trait]
impl AccountStore for MemoryStorage {
    async fn create_account(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        // Data already written for the address (an anonymous visitor's) is kept.
        self.update_entry(user, domain, true, |entry| {
            if entry.credentials.is_some() {
                return Err(StorageError::AlreadyExists);
            }
            entry.credentials = Some(credentials.clone());
            Ok(())
        })
        .unwrap_or(Err(StorageError::NotFound))?;
        // Archive entries left under the name are not the new account's history (SQLite's).
        write(&self.archives).delete(&account_archive(user, domain));
        Ok(())
    }

    async fn set_credentials(
        &self,
        user: &str,
        domain: &str,
        credentials: &Credentials,
    ) -> StorageResult<()> {
        self.update_entry(user, domain, false, |entry| match &mut entry.credentials {
            Some(stored) => {
                *stored = credentials.clone();
                Ok(())
            }
            None => Err(StorageError::NotFound),
        })
        .unwrap_or(Err(StorageError::NotFound))
    }

    async fn delete_account(&self, user: &str, domain: &str) -> StorageResult<()> {
        // The account's archive goes too, even if there was no account (a visitor's).
        write(&self.archives).delete(&account_archive(user, domain));
        let mut entries = self.write();
        let users = entries.get_mut(domain).ok_or(StorageError::NotFound)?;
        let entry = users.remove(user).ok_or(StorageError::NotFound)?;
        if users.is_empty() {
            entries.remove(domain);
        }
        // Data without an account is dropped all the same; the account was still not there.
        match entry.credentials {
            Some(_) => Ok(()),
            None => Err(StorageError::NotFound),
        }
    }

    async fn credentials(&self, user: &str, domain: &str) -> StorageResult<Option<Credentials>> {
        Ok(self
            .with_entry(user, domain, |entry| entry.credentials.clone())
            .flatten())
    }

    async fn list_accounts(&self, domain: Option<&str>) -> StorageResult<Vec<String>> {
        let entries = self.read();
        let mut jids: Vec<String> = entries
            .iter()
            .filter(|(d, _)| domain.is_none_or(|wanted| wanted == d.as_str()))
            .flat_map(|(d, users)| {
                users
                    .iter()
                    .filter(|(_, entry)| entry.credentials.is_some())
                    .map(move |(u, _)| format!("{u}@{d}"))
            })
            .collect();
        jids.sort_unstable();
        Ok(jids)
    }
}
