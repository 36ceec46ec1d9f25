//! vCard-temp (XEP-0054): each account's vCard, stored as the serialised `<vCard/>` element.

use async_trait::async_trait;

use super::StorageResult;

#[async_trait]
pub trait VcardStore: Send + Sync {
    async fn vcard(&self, user: &str, domain: &str) -> StorageResult<Option<String>>;
    async fn set_vcard(&self, user: &str, domain: &str, vcard: &str) -> StorageResult<()>;
}
