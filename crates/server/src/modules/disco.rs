//! XEP-0030 Service Discovery for the server and for accounts, built from what the modules
//! registered, and the XEP-0115 verification string advertised in stream features.

use crate::hooks::{priority, StreamHook, StreamInfo};
use crate::registry::{Identity, IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::forms::DataForm;
use crate::stanza::{ns, Build, StanzaError};
use base64::Engine as _;
use minidom::Element;
use sha1::{Digest, Sha1};
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    for scope in [IqScope::Server, IqScope::Account] {
        registry.feature(scope, ns::DISCO_INFO);
        registry.iq(
            scope,
            IqKind::Get,
            ns::DISCO_INFO,
            Arc::new(DiscoInfo(scope)),
        );
        registry.iq(
            scope,
            IqKind::Get,
            ns::DISCO_ITEMS,
            Arc::new(DiscoItems(scope)),
        );
    }
    registry.feature(IqScope::Server, ns::DISCO_ITEMS);
    registry
        .hooks
        .on_stream(priority::DELIVER, Arc::new(CapsFeature));
    registry.identity(
        IqScope::Server,
        Identity {
            category: "server",
            kind: "im",
            name: Some("Salon"),
        },
    );
    registry.identity(
        IqScope::Account,
        Identity {
            category: "account",
            kind: "registered",
            name: None,
        },
    );
}

/// The disco#info `<query/>` for a scope.
pub fn info_query(registry: &Registry<Server>, scope: IqScope, node: Option<&str>) -> Element {
    let identities = registry.identities(scope).map(|identity| {
        Build::new("identity", ns::DISCO_INFO)
            .attr("category", identity.category)
            .attr("type", identity.kind)
            .attr_opt("name", identity.name)
            .build()
    });
    let features = registry
        .features(scope)
        .map(|f| Build::new("feature", ns::DISCO_INFO).attr("var", f).build());
    let mut query = Build::new("query", ns::DISCO_INFO)
        .attr_opt("node", node)
        .children(identities)
        .children(features);
    if scope == IqScope::Server {
        query = query.children(registry.server_forms().iter().cloned());
    }
    query.build()
}

/// Features the anonymous host does not offer though the server registers them: guests have
/// no account to manage (XEP-0077 is refused them).
const NOT_FOR_GUESTS: &[&str] = &[ns::REGISTER];

/// The server's disco#info as `host` answers it: the anonymous host leaves out what guests
/// are refused.
fn host_info_query(server: &Server, host: &str, node: Option<&str>) -> Element {
    let query = info_query(&server.modules, IqScope::Server, node);
    if !server.is_anonymous_host(host) {
        return query;
    }
    let refused = |c: &Element| {
        c.name() == "feature" && c.attr("var").is_some_and(|v| NOT_FOR_GUESTS.contains(&v))
    };
    Build::new("query", ns::DISCO_INFO)
        .attr_opt("node", node)
        .children(query.children().filter(|c| !refused(c)).cloned())
        .build()
}

/// The XEP-0115 verification string `host` advertises in its stream features.
pub fn caps_ver_for(server: &Server, host: &str) -> String {
    if server.is_anonymous_host(host) {
        caps_ver_of(&host_info_query(server, host, None))
    } else {
        server_caps_ver(server)
    }
}

struct DiscoInfo(IqScope);

#[async_trait::async_trait]
impl IqHandler<Server> for DiscoInfo {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let node = request.payload().and_then(|q| q.attr("node"));
        let host = request.to.domain().as_str();
        if let Some(owner) = node.and_then(|n| server.modules.disco_node(self.0, n)) {
            return owner.info(server, &request, node.unwrap_or_default()).await;
        }
        if let Some(node) = node {
            // The only node we answer for is our own caps node (XEP-0115 §6.2).
            if node != format!("{CAPS_NODE}#{}", caps_ver_for(server, host)) {
                return Err(StanzaError::item_not_found());
            }
        }
        if self.0 == IqScope::Server {
            return Ok(Some(host_info_query(server, host, node)));
        }
        if server.is_anonymous_host(host) {
            let mut query = info_query(&server.modules, self.0, node);
            for identity in query.children_mut() {
                // The account is a guest's; what else it is (a PEP service) stays as it is.
                if identity.name() == "identity" && identity.attr("category") == Some("account") {
                    crate::stanza::set_attr(identity, "type", "anonymous");
                }
            }
            return Ok(Some(query));
        }
        Ok(Some(info_query(&server.modules, self.0, node)))
    }
}

struct DiscoItems(IqScope);

#[async_trait::async_trait]
impl IqHandler<Server> for DiscoItems {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        // A node is a module's (the commands node), or none (XEP-0030 §4.3).
        if let Some(node) = request.payload().and_then(|q| q.attr("node")) {
            return match server.modules.disco_node(self.0, node) {
                Some(owner) => owner.items(server, &request, node).await,
                None => Err(StanzaError::item_not_found()),
            };
        }
        let mut query = Build::new("query", ns::DISCO_ITEMS);
        // Guests see the services too: they join rooms and share files like everyone.
        if self.0 == IqScope::Server {
            for domain in server.router.service_domains() {
                query = query.child(
                    Build::new("item", ns::DISCO_ITEMS)
                        .attr("jid", domain)
                        .build(),
                );
            }
        }
        Ok(Some(query.build()))
    }
}

pub const CAPS_NODE: &str = "https://salon.chat";

/// The server's verification string, computed once from the frozen registry.
#[derive(Default)]
struct CapsVer(std::sync::OnceLock<String>);

pub fn server_caps_ver(server: &Server) -> String {
    server
        .extensions
        .get_or_default::<CapsVer>()
        .0
        .get_or_init(|| caps_ver(&server.modules))
        .clone()
}

/// XEP-0115 §6.3: the server's capabilities in every stream's features, so clients can skip
/// the disco#info query when they know the hash.
struct CapsFeature;

impl StreamHook<Server> for CapsFeature {
    fn features(&self, server: &Server, stream: &StreamInfo<'_>) -> Vec<Element> {
        vec![Build::new("c", ns::CAPS)
            .attr("hash", "sha-1")
            .attr("node", CAPS_NODE)
            .attr("ver", caps_ver_for(server, stream.host))
            .build()]
    }
}

/// XEP-0115 §5.1 verification string of the server's disco#info.
pub fn caps_ver(registry: &Registry<Server>) -> String {
    caps_ver_of(&info_query(registry, IqScope::Server, None))
}

/// XEP-0115 §5.1 verification string of a disco#info `<query/>` (the server's, or a client's
/// when its announced capabilities are checked).
pub fn caps_ver_of(query: &Element) -> String {
    let mut input = String::new();
    let mut identities: Vec<String> = query
        .children()
        .filter(|c| c.name() == "identity")
        .map(|i| {
            let attr = |name| i.attr(name).unwrap_or_default();
            // category/type/lang/name; we never set xml:lang.
            format!("{}/{}//{}<", attr("category"), attr("type"), attr("name"))
        })
        .collect();
    identities.sort();
    input.extend(identities);
    let mut features: Vec<&str> = query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|f| f.attr("var"))
        .collect();
    features.sort_unstable();
    for feature in features {
        input.push_str(feature);
        input.push('<');
    }
    for form in query.children().filter_map(|c| DataForm::parse(c).ok()) {
        let mut fields: Vec<(String, Vec<String>)> = form
            .fields
            .into_iter()
            .map(|f| {
                let mut values = f.values;
                values.sort();
                (f.var.unwrap_or_default(), values)
            })
            .collect();
        fields.sort();
        if let Some((_, form_type)) = fields.iter().find(|(var, _)| var == "FORM_TYPE") {
            input.push_str(&form_type.join("<"));
            input.push('<');
        }
        for (var, values) in fields.iter().filter(|(var, _)| var != "FORM_TYPE") {
            input.push_str(var);
            input.push('<');
            for value in values {
                input.push_str(value);
                input.push('<');
            }
        }
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of XEP-0115 §5.2.
    #[test]
    fn caps_ver_matches_xep_example() {
        let mut registry = Registry::default();
        registry.identity(
            IqScope::Server,
            Identity {
                category: "client",
                kind: "pc",
                name: Some("Exodus 0.9.1"),
            },
        );
        for feature in [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ] {
            registry.feature(IqScope::Server, feature);
        }
        assert_eq!(caps_ver(&registry), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    /// XEP-0115 §5.1 step 3: an extended form adds its FORM_TYPE, then each field and its
    /// values, both sorted.
    #[test]
    fn caps_ver_covers_extended_forms() {
        let query: Element = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity category='server' type='im'/><feature var='urn:a'/>\
            <x xmlns='jabber:x:data' type='result'>\
            <field var='z'><value>2</value><value>1</value></field>\
            <field var='FORM_TYPE' type='hidden'><value>urn:form</value></field>\
            <field var='a'><value>x</value></field></x></query>"
            .parse()
            .expect("test XML parses");
        let input = "server/im//<urn:a<urn:form<a<x<z<1<2<";
        let expected =
            base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input.as_bytes()));
        assert_eq!(caps_ver_of(&query), expected);
    }
}
