//! Entity capabilities (XEP-0115) of local clients, for PEP's filtered notifications
//! (XEP-0163 §4.3.2, XEP-0060 §9.2): the `<c/>` a client puts in its available presence names
//! a hash of its features; a hash seen before is looked up, an unknown one is asked of the
//! client once (disco#info) and cached only when the answer hashes to it.

use super::client_features::{Features, SessionCaps};
use crate::hooks::{priority, FromClient, StanzaHook};
use crate::modules::disco::caps_ver_of;
use crate::registry::Registry;
use crate::router::SessionHandle;
use crate::server::Server;
use crate::stanza::{ns, Build};
use minidom::Element;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Hashes remembered server-wide; past this the cache starts over (clients re-announce).
const MAX_CACHED_HASHES: usize = 4096;
/// How long a client has to answer the disco#info query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Prefix of the ids of our queries, so their answers are recognised.
const QUERY_ID_PREFIX: &str = "salon-caps-";

pub fn register(registry: &mut Registry<Server>) {
    // Before presence delivery (DELIVER) takes the presence; the answers to our queries stop
    // here.
    registry
        .hooks
        .on_from_client(priority::OBSERVE, Arc::new(CapsObserver));
}

/// Server-wide: verified features by hash, and our queries waiting for an answer.
#[derive(Default)]
struct CapsCache {
    by_ver: dashmap::DashMap<String, Features>,
    /// Query id → (the session asked, where its answer goes).
    pending: dashmap::DashMap<String, (u64, oneshot::Sender<Element>)>,
    next_id: AtomicU64,
}

/// The `<c/>` of a presence: (node, ver, hash).
fn announced(presence: &Element) -> Option<(String, String, Option<String>)> {
    let c = presence.get_child("c", ns::CAPS)?;
    Some((
        c.attr("node")?.to_owned(),
        c.attr("ver")?.to_owned(),
        c.attr("hash").map(str::to_owned),
    ))
}

/// The `var`s of a disco#info `<query/>`.
fn features_in(query: &Element) -> BTreeSet<String> {
    query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|f| f.attr("var"))
        .map(str::to_owned)
        .collect()
}

/// Whether a disco#info answer matches the hash the client announced (XEP-0115 §5.4). Only
/// SHA-1 is verified; other hashes are never cached.
fn verified(query: &Element, ver: &str, hash: Option<&str>) -> bool {
    hash == Some("sha-1") && caps_ver_of(query) == ver
}

struct CapsObserver;

#[async_trait::async_trait]
impl StanzaHook<Server, FromClient> for CapsObserver {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &FromClient,
        stanza: Element,
    ) -> Option<Element> {
        match stanza.name() {
            "presence" if point.to.is_none() => {
                presence(server, &point.session, &stanza);
                Some(stanza)
            }
            "iq" if matches!(stanza.attr("type"), Some("result" | "error")) => {
                answer(server, point, stanza)
            }
            _ => Some(stanza),
        }
    }
}

/// An answer to one of our queries goes to whoever waits for it; anything else passes.
fn answer(server: &Arc<Server>, point: &FromClient, stanza: Element) -> Option<Element> {
    let to_server = point.to.as_ref().is_none_or(|to| to.node().is_none());
    let id = stanza.attr("id").unwrap_or_default();
    if !to_server || !id.starts_with(QUERY_ID_PREFIX) {
        return Some(stanza);
    }
    let cache = server.extensions.get_or_default::<CapsCache>();
    // Only the session that was asked can answer.
    let Some((_, (_, waiter))) = cache
        .pending
        .remove_if(id, |_, (session, _)| *session == point.session.id)
    else {
        return Some(stanza);
    };
    let _ = waiter.send(stanza);
    None
}

/// An available or unavailable broadcast presence of a local session.
fn presence(server: &Arc<Server>, session: &Arc<SessionHandle>, stanza: &Element) {
    let slot = session.extensions.get_or_default::<SessionCaps>();
    let Ok(mut state) = slot.0.lock() else {
        return;
    };
    if stanza.attr("type") == Some("unavailable") {
        // Coming back later counts as coming online again: the last items are sent again.
        *state = None;
        return;
    }
    if stanza.attr("type").is_some() {
        return;
    }
    let Some((node, ver, hash)) = announced(stanza) else {
        return;
    };
    if state.as_ref().is_some_and(|(known, _)| *known == ver) {
        return; // A presence update with the same client: nothing new to send.
    }
    let cache = server.extensions.get_or_default::<CapsCache>();
    let cached = cache.by_ver.get(&ver).map(|f| f.clone());
    *state = Some((ver.clone(), cached.clone()));
    drop(state);
    let server = server.clone();
    let session = session.clone();
    tokio::spawn(async move {
        let features = match cached {
            Some(features) => features,
            None => match query(&server, &session, &node, &ver, hash.as_deref()).await {
                Some(features) => features,
                None => return,
            },
        };
        super::notify::send_last_items(&server, &session, &features).await;
    });
}

/// Ask the client for the features behind `ver`, remember them for the session, and in the
/// server-wide cache if they hash to `ver`.
async fn query(
    server: &Arc<Server>,
    session: &Arc<SessionHandle>,
    node: &str,
    ver: &str,
    hash: Option<&str>,
) -> Option<Features> {
    let cache = server.extensions.get_or_default::<CapsCache>();
    let id = format!(
        "{QUERY_ID_PREFIX}{}",
        cache.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let (sender, receiver) = oneshot::channel();
    cache.pending.insert(id.clone(), (session.id, sender));
    let request = Build::new("iq", ns::CLIENT)
        .attr("type", "get")
        .attr("id", id.clone())
        .attr("from", session.jid.domain().to_string())
        .attr("to", session.jid.to_string())
        .child(
            Build::new("query", ns::DISCO_INFO)
                .attr("node", format!("{node}#{ver}"))
                .build(),
        )
        .build();
    session.send_element(&request);
    let reply = tokio::time::timeout(QUERY_TIMEOUT, receiver).await;
    cache.pending.remove(&id);
    let reply = reply.ok()?.ok()?;
    let query = reply.get_child("query", ns::DISCO_INFO)?;
    let features: Features = Arc::new(features_in(query));
    if verified(query, ver, hash) {
        if cache.by_ver.len() >= MAX_CACHED_HASHES {
            cache.by_ver.clear();
        }
        cache.by_ver.insert(ver.to_owned(), features.clone());
    }
    // Still the client that announced it (it may have changed its features meanwhile).
    let slot = session.extensions.get_or_default::<SessionCaps>();
    let mut state = slot.0.lock().ok()?;
    match state.as_mut() {
        Some((current, known)) if current == ver => {
            *known = Some(features.clone());
            Some(features)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pep::client_features::wants_notifications;

    fn element(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    #[test]
    fn notify_features_select_nodes() {
        let features: BTreeSet<String> = [
            "http://jabber.org/protocol/geoloc+notify",
            "http://jabber.org/protocol/mood",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert!(wants_notifications(
            &features,
            "http://jabber.org/protocol/geoloc"
        ));
        assert!(!wants_notifications(
            &features,
            "http://jabber.org/protocol/mood"
        ));
        assert!(!wants_notifications(&features, "urn:xmpp:avatar:metadata"));
    }

    #[test]
    fn the_announced_hash_is_read_from_presence() {
        let presence = element(
            "<presence xmlns='jabber:client'><c xmlns='http://jabber.org/protocol/caps' \
             hash='sha-1' node='https://example.org' ver='abc='/></presence>",
        );
        assert_eq!(
            announced(&presence),
            Some((
                "https://example.org".into(),
                "abc=".into(),
                Some("sha-1".into())
            ))
        );
        assert_eq!(
            announced(&element("<presence xmlns='jabber:client'/>")),
            None
        );
    }

    /// The answer of XEP-0115 §5.2's example client verifies against its hash, and not
    /// against another or with another hash function.
    #[test]
    fn answers_are_verified_against_the_hash() {
        let query = element(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc' name='Exodus 0.9.1'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>\
             <feature var='http://jabber.org/protocol/muc'/></query>",
        );
        assert!(verified(
            &query,
            "QgayPKawpkPSDYmwT/WM94uAlu0=",
            Some("sha-1")
        ));
        assert!(!verified(
            &query,
            "QgayPKawpkPSDYmwT/WM94uAlu1=",
            Some("sha-1")
        ));
        assert!(!verified(
            &query,
            "QgayPKawpkPSDYmwT/WM94uAlu0=",
            Some("md5")
        ));
        assert!(!verified(&query, "QgayPKawpkPSDYmwT/WM94uAlu0=", None));
        assert_eq!(features_in(&query).len(), 4);
    }
}
