//! External components (XEP-0114, Jabber Component Protocol): a gateway or bot (an IRC gateway
//! such as Biboumi, a bridge) connects to `listen.component`, proves the shared secret of its
//! domain with the handshake, and then serves that domain: stanzas for it go down its stream,
//! and it may send stanzas from its domain (and its subdomains' JIDs) anywhere the server
//! routes, other servers included.

use crate::s2s::stream::{self, XmlStream};
use crate::server::Server;
use crate::service::{ServiceContext, ServiceHost};
use crate::stanza::{ns, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;
use salon_xml::StreamEvent;
use sha1::{Digest, Sha1};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const ACCEPT: &str = "jabber:component:accept";
/// Stanzas waiting to be written to a component; beyond, senders get `resource-constraint`.
const QUEUE: usize = 1024;

/// One configured component, registered as the service of its domain.
pub struct Component {
    domain: String,
    secret: String,
    /// The stream of the connected component, if one is.
    connected: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
}

/// The configured components, in the server's extension slots (for the listener).
#[derive(Default)]
pub struct Components(pub Vec<Arc<Component>>);

/// Register every configured component as the service of its domain.
pub fn install(server: &Arc<Server>) {
    let mut all = Vec::new();
    for (domain, config) in &server.config.components {
        let component = Arc::new(Component {
            domain: domain.clone(),
            secret: config.secret.clone(),
            connected: Mutex::new(None),
        });
        server.router.register_service(domain, component.clone());
        all.push(component);
    }
    server.extensions.insert(Components(all));
}

#[async_trait::async_trait]
impl ServiceHost for Component {
    async fn handle(&self, context: &ServiceContext, stanza: Element) {
        let sender = self.connected.lock().ok().and_then(|c| c.clone());
        let wire = salon_xml::serialize(&stream::renamespace(&stanza, ns::CLIENT, ACCEPT));
        let error = match sender.map(|s| s.try_send(wire)) {
            Some(Ok(())) => return,
            Some(Err(mpsc::error::TrySendError::Full(_))) => {
                StanzaError::new(ErrorType::Wait, StanzaCondition::ResourceConstraint)
            }
            _ => StanzaError::service_unavailable(),
        };
        context.bounce(&stanza, error);
    }
}

/// XEP-0114 §3: the handshake is the hex SHA-1 of the stream id followed by the secret.
pub fn handshake(stream_id: &str, secret: &str) -> String {
    Sha1::digest(format!("{stream_id}{secret}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Accept component connections until the task is aborted.
pub async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "component: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let max = server.config.limits.max_stanza_bytes;
            let stream = XmlStream::new(socket, peer, max);
            serve(server, stream).await;
        });
    }
}

async fn serve(server: Arc<Server>, mut stream: XmlStream) {
    let peer = stream.peer;
    let opened = tokio::time::timeout(Duration::from_secs(10), async {
        let StreamEvent::StreamOpen {
            attributes,
            default_namespace,
            ..
        } = stream.next().await.ok()?
        else {
            return None;
        };
        let domain = stream::attribute(&attributes, "to")?.to_lowercase();
        (default_namespace.as_deref() == Some(ACCEPT)).then_some(domain)
    })
    .await;
    let Ok(Some(domain)) = opened else {
        stream
            .close(Some(&stream::stream_error(
                "invalid-namespace",
                "not a component stream",
            )))
            .await;
        return;
    };
    let components = server.extensions.get::<Components>().unwrap_or_default();
    let Some(component) = components.0.iter().find(|c| c.domain == domain).cloned() else {
        tracing::info!(%peer, %domain, "component: unknown domain");
        let header = format!("<?xml version='1.0'?><stream:stream xmlns='{ACCEPT}' xmlns:stream='http://etherx.jabber.org/streams' from='{}' id='x'>", salon_xml::escape(&domain));
        let _ = stream.send(header.as_bytes()).await;
        stream
            .close(Some(&stream::stream_error(
                "host-unknown",
                "no such component",
            )))
            .await;
        return;
    };
    let id = format!("{:016x}", rand::random::<u64>());
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{ACCEPT}' xmlns:stream='http://etherx.jabber.org/streams' from='{}' id='{id}'>",
        salon_xml::escape(&domain)
    );
    if stream.send(header.as_bytes()).await.is_err() {
        return;
    }
    let proof = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    let valid = matches!(&proof, Ok(Ok(StreamEvent::Stanza(e)))
        if e.name() == "handshake" && e.text().trim() == handshake(&id, &component.secret));
    if !valid {
        tracing::warn!(%peer, %domain, "component: handshake failed");
        stream
            .close(Some(&stream::stream_error(
                "not-authorized",
                "wrong handshake",
            )))
            .await;
        return;
    }
    let (sender, mut outgoing) = mpsc::channel(QUEUE);
    let taken = match component.connected.lock() {
        Ok(mut connected) if connected.as_ref().is_none_or(|s| s.is_closed()) => {
            *connected = Some(sender);
            false
        }
        _ => true,
    };
    if taken {
        let error = stream::stream_error("conflict", "the component is connected already");
        stream.close(Some(&error)).await;
        return;
    }
    if stream.send(b"<handshake/>").await.is_err() {
        return;
    }
    tracing::info!(%peer, %domain, "component connected");
    let mut shutdown = server.shutdown_signal();
    loop {
        tokio::select! {
            bytes = outgoing.recv() => {
                let Some(bytes) = bytes else { break };
                if stream.send(&bytes).await.is_err() { break; }
            }
            event = stream.next() => match event {
                Ok(StreamEvent::Stanza(stanza)) => {
                    if !from_component(&stanza, &domain) {
                        stream.close(Some(&stream::stream_error("invalid-from", "stanzas must come from the component's domain"))).await;
                        break;
                    }
                    let stanza = stream::renamespace(&stanza, ACCEPT, ns::CLIENT);
                    server.route(stanza).await;
                }
                Ok(StreamEvent::StreamOpen { .. }) => {}
                Ok(StreamEvent::StreamClose) | Err(_) => break,
            },
            _ = crate::service::shutdown_requested(&mut shutdown) => break,
        }
    }
    if let Ok(mut connected) = component.connected.lock() {
        *connected = None;
    }
    stream.close(None).await;
    tracing::info!(%peer, %domain, "component disconnected");
}

/// A stanza (message, presence, iq in the component namespace) whose `from` is on `domain`.
fn from_component(stanza: &Element, domain: &str) -> bool {
    matches!(stanza.name(), "message" | "presence" | "iq")
        && stanza.ns() == ACCEPT
        && stanza
            .attr("from")
            .and_then(|f| jid::Jid::new(f).ok())
            .is_some_and(|from| from.domain().as_str() == domain)
}

#[cfg(test)]
mod tests {
    #[test]
    fn handshake_is_the_hex_sha1_of_id_and_secret() {
        // sha1("3BF96D32" + "secret"), as the component computes it (XEP-0114 §3).
        assert_eq!(
            super::handshake("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
    }
}
