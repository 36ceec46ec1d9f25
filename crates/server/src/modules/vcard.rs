//! XEP-0054 vcard-temp: each account stores one `<vCard/>`, which anyone may read and only the
//! owner may write.

use crate::im::roster;
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, ErrorType, StanzaCondition, StanzaError};
use std::sync::Arc;

/// Largest vCard accepted, in bytes of XML; avatars belong in XEP-0084 or uploads.
const MAX_VCARD_BYTES: usize = 128 * 1024;

pub fn register(registry: &mut Registry<Server>) {
    registry.feature(IqScope::Server, ns::VCARD);
    registry.feature(IqScope::Account, ns::VCARD);
    let handler = Arc::new(VCard);
    registry.iq(IqScope::Account, IqKind::Get, ns::VCARD, handler.clone());
    registry.iq(IqScope::Account, IqKind::Set, ns::VCARD, handler);
}

struct VCard;

#[async_trait::async_trait]
impl IqHandler<Server> for VCard {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let (user, domain) = roster::account_key(&request.to);
        let storage = server.storage_for(&domain);
        match request.kind {
            IqKind::Get => {
                let stored = storage.vcard(&user, &domain).await.map_err(|e| {
                    StanzaError::storage(&format!("reading the vCard of {}", request.to), &e)
                })?;
                match stored.and_then(|text| parse_vcard(&text)) {
                    Some(vcard) => Ok(Some(vcard)),
                    // XEP-0054 §3.1: an empty vCard when none is stored... or item-not-found;
                    // clients handle an empty one best.
                    None => Ok(Some(minidom::Element::bare("vCard", ns::VCARD))),
                }
            }
            IqKind::Set => {
                if !request.is_own_account() {
                    return Err(StanzaError::forbidden());
                }
                let vcard = request
                    .payload()
                    .ok_or_else(|| StanzaError::bad_request("missing vCard"))?;
                let text = String::from_utf8_lossy(&salon_xml::serialize(vcard)).into_owned();
                if text.len() > MAX_VCARD_BYTES {
                    return Err(StanzaError::new(
                        ErrorType::Modify,
                        StanzaCondition::NotAcceptable,
                    )
                    .with_text(format!("vCards are limited to {MAX_VCARD_BYTES} bytes")));
                }
                storage
                    .set_vcard(&user, &domain, &text)
                    .await
                    .map_err(|e| {
                        StanzaError::storage(&format!("storing the vCard of {}", request.to), &e)
                    })?;
                Ok(None)
            }
        }
    }
}

fn parse_vcard(text: &str) -> Option<minidom::Element> {
    salon_xml::parse_stored(text, ns::CLIENT)
}
