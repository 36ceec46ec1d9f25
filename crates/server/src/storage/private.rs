//! Private XML storage (XEP-0049): one serialised element per namespace and account.

use async_trait::async_trait;

use super::StorageResult;

#[async_trait]
pub trait PrivateStore: Send + Sync {
    async fn private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
    ) -> StorageResult<Option<String>>;
    /// Stores or replaces the element for `namespace`. NotFound without an account.
    async fn set_private_xml(
        &self,
        user: &str,
        domain: &str,
        namespace: &str,
        xml: &str,
    ) -> StorageResult<()>;
    /// How many namespaces the user has stored (to bound it).
    async fn count_private_xml(&self, user: &str, domain: &str) -> StorageResult<usize>;
}
