//! PEP native bookmarks (XEP-0402) with their compatibility with private XML storage (XEP-0402
//! §5 `#compat`, XEP-0049 and XEP-0048): a legacy client's `storage:bookmarks` written through
//! `jabber:iq:private` becomes items of `urn:xmpp:bookmarks:1` (one per room, so the owner's
//! other clients are notified), and reading it is answered from those items.
//!
//! This wraps the private XML handler rather than changing it: only `storage:bookmarks` of the
//! account itself takes the detour.

use super::service::{Preconditions, Service};
use crate::registry::{IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::{ns, Build};
use minidom::Element;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
const COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
const LEGACY: &str = "storage:bookmarks";

pub fn register(registry: &mut Registry<Server>) {
    for kind in [IqKind::Get, IqKind::Set] {
        if let Some(inner) = registry.handler(IqScope::Account, kind, ns::PRIVATE) {
            registry.iq(
                IqScope::Account,
                kind,
                ns::PRIVATE,
                Arc::new(PrivateBookmarks { inner }),
            );
            registry.feature(IqScope::Account, COMPAT);
        }
    }
}

/// XEP-0402 §3.1's publish-options: a private node keeping every bookmark.
fn node_options() -> Vec<(String, Vec<String>)> {
    [
        ("pubsub#persist_items", "true"),
        ("pubsub#max_items", "max"),
        ("pubsub#send_last_published_item", "never"),
        ("pubsub#access_model", "whitelist"),
    ]
    .into_iter()
    .map(|(var, value)| (var.to_owned(), vec![value.to_owned()]))
    .collect()
}

struct PrivateBookmarks {
    inner: Arc<dyn IqHandler<Server>>,
}

/// The `<storage xmlns='storage:bookmarks'/>` of a private XML request, if that is what it is.
fn legacy_storage(request: &IqRequest) -> Option<Element> {
    let query = request.payload()?;
    let mut children = query.children();
    let storage = children.next()?;
    (storage.is("storage", LEGACY) && children.next().is_none()).then(|| storage.clone())
}

#[async_trait::async_trait]
impl IqHandler<Server> for PrivateBookmarks {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let storage = legacy_storage(&request).filter(|_| request.is_own_account());
        let Some(storage) = storage else {
            return self.inner.handle(server, request).await;
        };
        let owner = request.to.clone();
        let kind = request.kind;
        let answer = self.inner.handle(server, request).await?;
        let service = Service::of(server, &owner);
        match kind {
            IqKind::Set => {
                sync_from_legacy(&service, &storage).await?;
                Ok(answer)
            }
            IqKind::Get => {
                if service.node(BOOKMARKS).await?.is_none() {
                    return Ok(answer);
                }
                let stored = answer
                    .as_ref()
                    .and_then(|q| q.get_child("storage", LEGACY))
                    .cloned()
                    .unwrap_or(storage);
                let items = service.all_items(BOOKMARKS).await?;
                let conferences = items.iter().filter_map(|item| {
                    let payload = salon_xml::parse_stored(&item.payload, ns::CLIENT)?;
                    Some(to_legacy(&item.id, &payload))
                });
                // The legacy storage's other children (`<url/>`) stay as they were stored.
                let kept = stored
                    .children()
                    .filter(|c| c.name() != "conference")
                    .cloned();
                let merged = Build::new("storage", LEGACY)
                    .children(conferences)
                    .children(kept)
                    .build();
                Ok(Some(Build::new("query", ns::PRIVATE).child(merged).build()))
            }
        }
    }
}

/// Make the PEP node hold exactly the rooms of a legacy `<storage/>`: new and changed rooms
/// are published, rooms no longer there are retracted (XEP-0402 §5.2).
async fn sync_from_legacy(
    service: &Service<'_>,
    storage: &Element,
) -> Result<(), crate::stanza::StanzaError> {
    let mut wanted = BTreeMap::new();
    for conference in storage.children().filter(|c| c.name() == "conference") {
        let Some(room) = conference
            .attr("jid")
            .and_then(|j| jid::BareJid::new(j).ok())
        else {
            continue;
        };
        wanted.insert(room.to_string(), from_legacy(conference));
    }
    let existing: BTreeMap<String, String> = service
        .all_items(BOOKMARKS)
        .await?
        .into_iter()
        .map(|item| (item.id, item.payload))
        .collect();
    let options = node_options();
    for (room, conference) in &wanted {
        let xml = salon_xml::serialize_to_string(conference);
        if existing.get(room) != Some(&xml) {
            service
                .publish_item(BOOKMARKS, room, conference, &options, Preconditions::Ignore)
                .await?;
        }
    }
    for room in existing.keys().filter(|room| !wanted.contains_key(*room)) {
        service.retract_item(BOOKMARKS, room, true).await?;
    }
    Ok(())
}

fn truthy(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true"))
}

/// A XEP-0048 `<conference jid=…/>` as XEP-0402's `<conference/>` payload.
fn from_legacy(conference: &Element) -> Element {
    let mut built = Build::new("conference", BOOKMARKS)
        .attr("autojoin", truthy(conference.attr("autojoin")).to_string());
    if let Some(name) = conference.attr("name").filter(|n| !n.is_empty()) {
        built = built.attr("name", name.to_owned());
    }
    for field in ["nick", "password"] {
        if let Some(child) = conference.children().find(|c| c.name() == field) {
            built = built.child(Build::new(field, BOOKMARKS).text(child.text()).build());
        }
    }
    built.build()
}

/// XEP-0402's item `id` (the room) and `<conference/>` payload as a XEP-0048 `<conference/>`.
fn to_legacy(room: &str, conference: &Element) -> Element {
    let mut built = Build::new("conference", LEGACY)
        .attr("jid", room.to_owned())
        .attr("autojoin", truthy(conference.attr("autojoin")).to_string());
    if let Some(name) = conference.attr("name") {
        built = built.attr("name", name.to_owned());
    }
    for field in ["nick", "password"] {
        if let Some(child) = conference.children().find(|c| c.name() == field) {
            built = built.child(Build::new(field, LEGACY).text(child.text()).build());
        }
    }
    built.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_bookmark_converts_both_ways() {
        let legacy: Element = "<conference xmlns='storage:bookmarks' jid='room@muc.example' \
             name='The room' autojoin='1'><nick>al</nick><password>pw</password></conference>"
            .parse()
            .expect("xml");
        let native = from_legacy(&legacy);
        assert_eq!(native.ns(), BOOKMARKS);
        assert_eq!(native.attr("autojoin"), Some("true"));
        assert_eq!(native.attr("name"), Some("The room"));
        assert_eq!(
            native.get_child("nick", BOOKMARKS).map(|n| n.text()),
            Some("al".into())
        );
        let back = to_legacy("room@muc.example", &native);
        assert_eq!(back.attr("jid"), Some("room@muc.example"));
        assert_eq!(back.attr("autojoin"), Some("true"));
        assert_eq!(
            back.get_child("password", LEGACY).map(|n| n.text()),
            Some("pw".into())
        );
    }
}
