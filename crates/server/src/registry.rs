//! The module registry: what each feature module handles (IQ payloads by type and
//! namespace, disco features and identities, stream features) and the hooks it subscribed to.
//! Built once at startup, read-only afterwards; the core consults it instead of knowing any XEP.

use crate::hooks::Hooks;
use crate::stanza::Bare;
use crate::stanza::StanzaError;
use minidom::Element;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Who an IQ is addressed to, from the handler's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqScope {
    /// The server itself (`to` is a local domain).
    Server,
    /// An account on this server, handled by the server on its behalf (`to` is a local bare JID
    /// or absent), RFC 6120 §10.3.3 and RFC 6121 §8.5.1.
    Account,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqKind {
    Get,
    Set,
}

/// An IQ request for a handler, with addresses already validated and stamped.
pub struct IqRequest {
    /// The requester: a full JID for a client's session, a bare JID or a bare domain for a
    /// remote server or one of its users (RFC 6120 §8.2.3 lets any entity ask).
    pub from: jid::Jid,
    /// The addressed entity: a local domain, or the bare JID of a local account.
    pub to: jid::BareJid,
    pub kind: IqKind,
    /// The whole `<iq/>`; the payload is its first child.
    pub stanza: Element,
}

impl IqRequest {
    pub fn payload(&self) -> Option<&Element> {
        self.stanza.children().next()
    }

    /// The requester's session address, when it is one (a full JID).
    pub fn from_full(&self) -> Option<&jid::FullJid> {
        self.from.try_as_full().ok()
    }

    /// Whether the requester is asking about its own account.
    pub fn is_own_account(&self) -> bool {
        self.from.bare() == self.to
    }
}

/// A handler's answer: the payload of the result (or none), or a stanza error.
pub type IqResponse = Result<Option<Element>, StanzaError>;

#[async_trait::async_trait]
pub trait IqHandler<S: Send + Sync + 'static>: Send + Sync {
    async fn handle(&self, server: &Arc<S>, request: IqRequest) -> IqResponse;
}

/// A disco identity (XEP-0030 §3.1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Identity {
    pub category: &'static str,
    pub kind: &'static str,
    pub name: Option<&'static str>,
}

/// A module that answers disco#info and disco#items for nodes of its own (XEP-0030 §3.2, §4.2),
/// such as the ad-hoc commands node (XEP-0050 §2.2) and each command's node.
#[async_trait::async_trait]
pub trait DiscoNodes<S: Send + Sync + 'static>: Send + Sync {
    /// Whether `node` is this module's.
    fn owns(&self, node: &str) -> bool;
    /// The disco#info `<query/>` for `node`, as `request`'s sender may see it.
    async fn info(&self, server: &Arc<S>, request: &IqRequest, node: &str) -> IqResponse;
    /// The disco#items `<query/>` for `node`, as `request`'s sender may see it.
    async fn items(&self, server: &Arc<S>, request: &IqRequest, node: &str) -> IqResponse;
}

type HandlersByNamespace<S> = HashMap<&'static str, Arc<dyn IqHandler<S>>>;

/// What the modules registered. Built once at startup, read-only afterwards. Generic over the
/// server type that handlers receive, so that this file (below the server) never names it.
pub struct Registry<S> {
    iq: HashMap<(IqScope, IqKind), HandlersByNamespace<S>>,
    features: HashMap<IqScope, BTreeSet<&'static str>>,
    identities: HashMap<IqScope, BTreeSet<Identity>>,
    /// XEP-0128 extended info forms for the server's disco#info.
    server_forms: Vec<Element>,
    disco_nodes: HashMap<IqScope, Vec<Arc<dyn DiscoNodes<S>>>>,
    /// The typed events modules subscribed to.
    pub hooks: Hooks<S>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            iq: HashMap::new(),
            features: HashMap::new(),
            identities: HashMap::new(),
            server_forms: Vec::new(),
            disco_nodes: HashMap::new(),
            hooks: Hooks::default(),
        }
    }
}

impl<S: Send + Sync + 'static> Registry<S> {
    pub fn iq(
        &mut self,
        scope: IqScope,
        kind: IqKind,
        namespace: &'static str,
        handler: Arc<dyn IqHandler<S>>,
    ) {
        self.iq
            .entry((scope, kind))
            .or_default()
            .insert(namespace, handler);
    }

    pub fn feature(&mut self, scope: IqScope, feature: &'static str) {
        self.features.entry(scope).or_default().insert(feature);
    }

    pub fn identity(&mut self, scope: IqScope, identity: Identity) {
        self.identities.entry(scope).or_default().insert(identity);
    }

    pub fn server_form(&mut self, form: Element) {
        self.server_forms.push(form);
    }

    pub fn disco_nodes(&mut self, scope: IqScope, nodes: Arc<dyn DiscoNodes<S>>) {
        self.disco_nodes.entry(scope).or_default().push(nodes);
    }

    /// The module that owns `node` in `scope`, if one does.
    pub fn disco_node(&self, scope: IqScope, node: &str) -> Option<Arc<dyn DiscoNodes<S>>> {
        self.disco_nodes
            .get(&scope)?
            .iter()
            .find(|nodes| nodes.owns(node))
            .cloned()
    }

    pub fn handler(
        &self,
        scope: IqScope,
        kind: IqKind,
        namespace: &str,
    ) -> Option<Arc<dyn IqHandler<S>>> {
        self.iq.get(&(scope, kind))?.get(namespace).cloned()
    }

    pub fn features(&self, scope: IqScope) -> impl Iterator<Item = &'static str> + '_ {
        self.features.get(&scope).into_iter().flatten().copied()
    }

    pub fn identities(&self, scope: IqScope) -> impl Iterator<Item = &Identity> + '_ {
        self.identities.get(&scope).into_iter().flatten()
    }

    pub fn server_forms(&self) -> &[Element] {
        &self.server_forms
    }
}
