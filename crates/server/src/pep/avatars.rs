//! User avatars (XEP-0084) kept in step with the vCard photo (XEP-0398 on XEP-0054), and the
//! avatar's hash in the presence Salon sends for the account (XEP-0153): clients that know
//! only vCard avatars and clients that know only PEP ones see the same picture.
//!
//! A client publishing avatar metadata gets its vCard's `<PHOTO/>` rewritten (directly in
//! storage, so nothing loops back); a client storing a vCard with a photo gets the avatar
//! published on its behalf (wrapping the vCard handler, which stays unaware of PEP).

use super::avatar_hash::{announced_hash, cache, hashes, stored_info, METADATA};
use super::service::{Preconditions, Service};
use crate::hooks::{priority, FromClient, StanzaHook};
use crate::modules::vcard::{photo as vcard_photo, sha1_hex};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::Bare;
use crate::stanza::{ns, Build};
use crate::storage::AccessModel;
use base64::Engine as _;
use minidom::Element;
use std::sync::Arc;

pub const DATA: &str = "urn:xmpp:avatar:data";
const CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";
const VCARD_UPDATE: &str = "vcard-temp:x:update";

pub fn register(registry: &mut Registry<Server>) {
    if let Some(inner) = registry.handler(IqScope::Account, IqKind::Set, ns::VCARD) {
        registry.iq(
            IqScope::Account,
            IqKind::Set,
            ns::VCARD,
            Arc::new(VCardToAvatar { inner }),
        );
        registry.feature(IqScope::Account, CONVERSION);
    }
    // Before presence delivery (DELIVER) takes the presence, after blocking (POLICY).
    registry
        .hooks
        .on_from_client(priority::DELIVER + 10, Arc::new(PhotoHash));
}

async fn current_hash(server: &Arc<Server>, owner: &jid::BareJid) -> Option<String> {
    if let Some(known) = hashes(server).0.get(owner.as_str()) {
        return known.clone();
    }
    let service = Service::of(server, owner);
    let last = service
        .storage
        .pep_items(&service.user, &service.domain, METADATA, Some(1))
        .await
        .ok()?;
    let hash = last
        .last()
        .and_then(|item| salon_xml::parse_stored(&item.payload, ns::CLIENT))
        .and_then(|metadata| announced_hash(&metadata));
    cache(server, owner, hash.clone());
    hash
}

/// XEP-0398 §3: the avatar published by a client, `metadata` naming an item of the data
/// node, becomes the vCard's photo; an empty `<metadata/>` removes it. Only an avatar anyone
/// may read (data node `open`) is copied, as §7 advises: the vCard is world-readable, and a
/// picture shown to contacts only must not leak through it.
pub async fn to_vcard(service: &Service<'_>, metadata: &Element) {
    let (user, domain, storage) = (&service.user, &service.domain, service.storage);
    let photo = match stored_info(metadata) {
        Some(info) => {
            let Some(id) = info.attr("id") else { return };
            let open = matches!(
                service.node(DATA).await,
                Ok(Some(node)) if node.config.access_model == AccessModel::Open
            );
            if !open {
                tracing::debug!(account = %service.owner, "avatar not open: the vCard keeps its photo");
                return;
            }
            let Ok(Some(item)) = storage.pep_item(user, domain, DATA, id).await else {
                return; // The data item is not there: no photo to copy.
            };
            let Some(data) = salon_xml::parse_stored(&item.payload, ns::CLIENT) else {
                return;
            };
            let encoded: String = data
                .text()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            // §3: the image must be the one the id names.
            let matches = base64::engine::general_purpose::STANDARD
                .decode(&encoded)
                .is_ok_and(|bytes| sha1_hex(&bytes) == id.to_ascii_lowercase());
            if !matches {
                tracing::info!(account = %service.owner, "avatar data does not hash to its id: not copied to the vCard");
                return;
            }
            let mime = info.attr("type").unwrap_or("image/png").to_owned();
            Some(
                Build::new("PHOTO", ns::VCARD)
                    .child(Build::new("TYPE", ns::VCARD).text(mime).build())
                    .child(Build::new("BINVAL", ns::VCARD).text(encoded).build())
                    .build(),
            )
        }
        None => None,
    };
    let mut vcard = match storage.vcard(user, domain).await {
        Ok(stored) => stored
            .and_then(|xml| salon_xml::parse_stored(&xml, ns::CLIENT))
            .unwrap_or_else(|| Element::bare("vCard", ns::VCARD)),
        Err(e) => {
            tracing::warn!(account = %service.owner, error = %e, "avatar to vCard: reading the vCard");
            return;
        }
    };
    while vcard.remove_child("PHOTO", ns::VCARD).is_some() {}
    if let Some(photo) = photo {
        vcard.append_child(photo);
    }
    let xml = salon_xml::serialize_to_string(&vcard);
    if let Err(e) = storage.set_vcard(user, domain, &xml).await {
        tracing::warn!(account = %service.owner, error = %e, "avatar to vCard: storing the vCard");
    }
}

struct VCardToAvatar {
    inner: Arc<dyn IqHandler<Server>>,
}

#[async_trait::async_trait]
impl IqHandler<Server> for VCardToAvatar {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let photo = request
            .is_own_account()
            .then(|| request.payload().and_then(vcard_photo))
            .flatten();
        let owner = request.to.clone();
        let answer = self.inner.handle(server, request).await?;
        let Some((encoded, bytes, mime)) = photo else {
            return Ok(answer);
        };
        let hash = sha1_hex(&bytes);
        if current_hash(server, &owner).await.as_deref() == Some(hash.as_str()) {
            return Ok(answer);
        }
        // XEP-0398 §4: the vCard's photo published as the PEP avatar, readable by whoever can
        // read the vCard (anyone) when the nodes are new.
        let service = Service::of(server, &owner);
        let options = vec![("pubsub#access_model".to_owned(), vec!["open".to_owned()])];
        let data = Build::new("data", DATA).text(encoded).build();
        let metadata = Build::new("metadata", METADATA)
            .child(
                Build::new("info", METADATA)
                    .attr("id", hash.clone())
                    .attr("bytes", bytes.len().to_string())
                    .attr("type", mime)
                    .build(),
            )
            .build();
        for (node, payload) in [(DATA, data), (METADATA, metadata)] {
            if let Err(e) = service
                .publish_item(node, &hash, &payload, &options, Preconditions::Ignore)
                .await
            {
                tracing::warn!(account = %owner, node, error = ?e.condition, "vCard to avatar");
                break;
            }
        }
        Ok(answer)
    }
}

/// XEP-0153 §3.2 and XEP-0398 §5: the account's available presences (directed ones too, such
/// as room joins) carry its avatar's hash, unless the client says it has none (an empty
/// `<photo/>`, XEP-0153 §3.2).
struct PhotoHash;

#[async_trait::async_trait]
impl StanzaHook<Server, FromClient> for PhotoHash {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &FromClient,
        mut stanza: Element,
    ) -> Option<Element> {
        if stanza.name() != "presence" || stanza.attr("type").is_some() {
            return Some(stanza);
        }
        let says_none = stanza
            .get_child("x", VCARD_UPDATE)
            .and_then(|x| x.get_child("photo", VCARD_UPDATE))
            .is_some_and(|photo| photo.text().trim().is_empty());
        if says_none {
            return Some(stanza);
        }
        let Some(hash) = current_hash(server, &point.session.jid.bare()).await else {
            return Some(stanza);
        };
        while stanza.remove_child("x", VCARD_UPDATE).is_some() {}
        stanza.append_child(
            Build::new("x", VCARD_UPDATE)
                .child(Build::new("photo", VCARD_UPDATE).text(hash).build())
                .build(),
        );
        Some(stanza)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_names_the_hash() {
        let metadata: Element = "<metadata xmlns='urn:xmpp:avatar:metadata'>\
            <info id='abc' bytes='5' type='image/png'/></metadata>"
            .parse()
            .expect("xml");
        assert_eq!(announced_hash(&metadata).as_deref(), Some("abc"));
        assert_eq!(announced_hash(&Element::bare("metadata", METADATA)), None);
        // The image kept here, not one elsewhere (XEP-0398 §3).
        let both: Element = "<metadata xmlns='urn:xmpp:avatar:metadata'>\
            <info id='far' bytes='5' type='image/png' url='https://example.org/a.png'/>\
            <info id='near' bytes='5' type='image/png'/></metadata>"
            .parse()
            .expect("xml");
        assert_eq!(announced_hash(&both).as_deref(), Some("near"));
    }
}
