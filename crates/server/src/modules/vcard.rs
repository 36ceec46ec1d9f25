//! XEP-0054 vcard-temp: each account stores one `<vCard/>`, which anyone may read and only the
//! owner may write.

use crate::im::roster;
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, ErrorType, StanzaCondition, StanzaError};
use base64::Engine as _;
use minidom::Element;
use sha1::{Digest, Sha1};
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
                let text = salon_xml::serialize_to_string(vcard);
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

/// The photo of a vCard (XEP-0054 `<PHOTO><BINVAL/>`), for avatars (XEP-0153, XEP-0398,
/// XEP-0486): (base64 without whitespace, decoded bytes, MIME type).
pub fn photo(vcard: &Element) -> Option<(String, Vec<u8>, String)> {
    let photo = vcard.get_child("PHOTO", ns::VCARD)?;
    let encoded: String = photo
        .get_child("BINVAL", ns::VCARD)?
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&encoded)
        .ok()
        .filter(|b| !b.is_empty())?;
    let mime = photo
        .get_child("TYPE", ns::VCARD)
        .map(|t| t.text())
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "image/png".to_owned());
    Some((encoded, bytes, mime.trim().to_owned()))
}

/// The hash avatars are known by (XEP-0153 §4.1, XEP-0084 §4.2): SHA-1 in hex.
pub fn sha1_hex(bytes: &[u8]) -> String {
    Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vcard_photo_is_read_and_hashed() {
        let vcard: Element = "<vCard xmlns='vcard-temp'><FN>A</FN><PHOTO><TYPE>image/gif</TYPE>\
            <BINVAL>aGVs\n bG8=</BINVAL></PHOTO></vCard>"
            .parse()
            .expect("xml");
        let (encoded, bytes, mime) = photo(&vcard).expect("photo");
        assert_eq!(
            (encoded.as_str(), bytes.as_slice(), mime.as_str()),
            ("aGVsbG8=", &b"hello"[..], "image/gif")
        );
        assert_eq!(sha1_hex(&bytes), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        let bad: Element = "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>!!</BINVAL></PHOTO></vCard>"
            .parse()
            .expect("xml");
        assert!(photo(&bad).is_none());
    }
}
