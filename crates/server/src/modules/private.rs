//! Private XML storage (XEP-0049): a client keeps arbitrary XML on its own account, one
//! element per namespace, readable and writable by that account only (older clients keep
//! their bookmarks here, XEP-0048).

use crate::im::roster;
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;
use std::sync::Arc;

/// Largest element stored for one namespace, in bytes of XML.
const MAX_ELEMENT_BYTES: usize = 64 * 1024;
/// Most namespaces one account may keep.
const MAX_NAMESPACES: usize = 64;

pub fn register(registry: &mut Registry<Server>) {
    let handler = Arc::new(PrivateStorage);
    registry.iq(IqScope::Account, IqKind::Get, ns::PRIVATE, handler.clone());
    registry.iq(IqScope::Account, IqKind::Set, ns::PRIVATE, handler);
}

struct PrivateStorage;

/// XEP-0049 §3: namespaces that are XMPP's own, or this protocol's, cannot be used as keys.
fn reserved(namespace: &str) -> bool {
    matches!(namespace, ns::CLIENT | "jabber:server" | ns::PRIVATE) || namespace.is_empty()
}

fn not_acceptable(text: &str) -> StanzaError {
    StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable).with_text(text)
}

#[async_trait::async_trait]
impl IqHandler<Server> for PrivateStorage {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        // §3: only the account itself; anyone else is refused without learning anything.
        if !request.is_own_account() {
            return Err(StanzaError::forbidden());
        }
        let query = request
            .payload()
            .ok_or_else(|| StanzaError::bad_request("missing query"))?;
        let (user, domain) = roster::account_key(&request.to);
        let storage = server.storage_for(&domain);
        let children: Vec<&Element> = query.children().collect();
        match request.kind {
            IqKind::Get => {
                let [wanted] = children.as_slice() else {
                    return Err(not_acceptable("a get names exactly one element"));
                };
                let namespace = wanted.ns();
                if reserved(&namespace) {
                    return Err(not_acceptable("that namespace cannot be stored"));
                }
                let stored = storage
                    .private_xml(&user, &domain, &namespace)
                    .await
                    .map_err(|e| StanzaError::storage("private XML storage", &e))?
                    .and_then(|xml| salon_xml::parse_stored(&xml, &namespace));
                // Nothing stored: the empty element that was asked for (§3.2).
                let element = stored.unwrap_or_else(|| (*wanted).clone());
                Ok(Some(
                    Build::new("query", ns::PRIVATE).child(element).build(),
                ))
            }
            IqKind::Set => {
                if children.is_empty() {
                    return Err(not_acceptable("nothing to store"));
                }
                let mut writes = Vec::new();
                for child in &children {
                    let namespace = child.ns();
                    if reserved(&namespace) {
                        return Err(not_acceptable("that namespace cannot be stored"));
                    }
                    let xml = salon_xml::serialize_to_string(child);
                    if xml.len() > MAX_ELEMENT_BYTES {
                        return Err(not_acceptable(&format!(
                            "at most {MAX_ELEMENT_BYTES} bytes per element"
                        )));
                    }
                    writes.push((namespace, xml));
                }
                let stored = storage
                    .count_private_xml(&user, &domain)
                    .await
                    .map_err(|e| StanzaError::storage("private XML storage", &e))?;
                if stored + writes.len() > MAX_NAMESPACES {
                    let mut new = 0;
                    for (namespace, _) in &writes {
                        let known = storage
                            .private_xml(&user, &domain, namespace)
                            .await
                            .map_err(|e| StanzaError::storage("private XML storage", &e))?;
                        new += usize::from(known.is_none());
                    }
                    if stored + new > MAX_NAMESPACES {
                        return Err(StanzaError::resource_constraint().with_text(format!(
                            "at most {MAX_NAMESPACES} namespaces per account"
                        )));
                    }
                }
                for (namespace, xml) in writes {
                    storage
                        .set_private_xml(&user, &domain, &namespace, &xml)
                        .await
                        .map_err(|e| StanzaError::storage("private XML storage", &e))?;
                }
                Ok(None)
            }
        }
    }
}
