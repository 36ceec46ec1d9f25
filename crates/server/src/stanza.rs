//! Namespaces and small stanza builders shared by every module: error replies (RFC 6120 §8.3),
//! IQ results, and attribute access on `minidom` elements.

use minidom::rxml::{Namespace, NcName};
use minidom::Element;

mod bare;
mod condition;
pub mod forms;

pub use bare::Bare;
pub use condition::{StanzaCondition, StreamCondition};

pub mod ns {
    pub const CLIENT: &str = "jabber:client";
    pub const STREAM: &str = "http://etherx.jabber.org/streams";
    pub const STREAMS_ERROR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    pub const STANZAS_ERROR: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
    pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
    pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
    pub const CAPS: &str = "http://jabber.org/protocol/caps";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    pub const DATA_FORMS: &str = "jabber:x:data";
    pub const ROSTER: &str = "jabber:iq:roster";
    pub const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
    pub const PING: &str = "urn:xmpp:ping";
    pub const VERSION: &str = "jabber:iq:version";
    pub const TIME: &str = "urn:xmpp:time";
    pub const LAST: &str = "jabber:iq:last";
    pub const VCARD: &str = "vcard-temp";
    pub const DELAY: &str = "urn:xmpp:delay";
    pub const SERVER_INFO: &str = "http://jabber.org/network/serverinfo";
    pub const CARBONS: &str = "urn:xmpp:carbons:2";
    pub const REGISTER: &str = "jabber:iq:register";
    pub const PRIVATE: &str = "jabber:iq:private";
    pub const MAM: &str = "urn:xmpp:mam:2";
    pub const RSM: &str = "http://jabber.org/protocol/rsm";
    pub const FORWARD: &str = "urn:xmpp:forward:0";
    pub const HINTS: &str = "urn:xmpp:hints";
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    pub const CSI: &str = "urn:xmpp:csi:0";
    pub const SID: &str = "urn:xmpp:sid:0";
    pub const BLOCKING: &str = "urn:xmpp:blocking";
    pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
    pub const SM: &str = "urn:xmpp:sm:3";
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
    pub const ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
    pub const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
    pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
    pub const MODERATE: &str = "urn:xmpp:message-moderate:1";
    pub const RETRACT: &str = "urn:xmpp:message-retract:1";
    pub const CONFERENCE: &str = "jabber:x:conference";
    pub const UPLOAD: &str = "urn:xmpp:http:upload:0";
    /// Salon's extension of room bans: a duration in a ban request, and in the outcast list
    /// when a ban ends and what it covers besides the JID (docs/configuration.md, `[muc]`).
    pub const SALON_BAN: &str = "urn:salon:ban:0";
    /// The built-in web client's browser secret for returning guests.
    pub const SALON_VISITOR: &str = "urn:salon:visitor:0";
}

/// A JID from the network (RFC 7622), refused unless its prepared form is stable: the `jid`
/// crate prepares with today's Unicode normalisation but case-folds with stringprep's Unicode
/// 3.2 tables, so a character unassigned in 3.2 that normalises to capitals (U+32CC SQUARE HG
/// becomes "Hg") gives a JID whose own string form parses to another JID ("hg"). Such a JID
/// would be one address where it was parsed and another wherever its string is parsed again;
/// stringprep's profiles for stored strings prohibit unassigned code points anyway. Found by
/// fuzzing (`fuzz::jid`).
pub fn parse_jid(text: &str) -> Result<jid::Jid, jid::Error> {
    let parsed = crate::jid_memo::parse(text)?;
    if parsed.as_str() != text {
        match crate::jid_memo::parse(parsed.as_str()) {
            Ok(again) if again == parsed => {}
            _ => return Err(jid::Error::NamePrep),
        }
    }
    Ok(parsed)
}

/// Parse an attribute name known at compile time. Only called with literals, so the
/// conversion cannot fail on input from the network.
fn name(attribute: &'static str) -> NcName {
    NcName::try_from(attribute).unwrap_or_else(|_| panic!("invalid attribute name {attribute}"))
}

/// Set (or replace) an unqualified attribute.
pub fn set_attr(element: &mut Element, attribute: &'static str, value: impl Into<String>) {
    element
        .attrs_mut()
        .insert(Namespace::NONE, name(attribute), value.into());
}

/// Remove an unqualified attribute if present.
pub fn remove_attr(element: &mut Element, attribute: &'static str) {
    element
        .attrs_mut()
        .remove(&Namespace::NONE, &name(attribute));
}

/// An element builder that takes plain `&str` attribute names.
pub struct Build(Element);

impl Build {
    pub fn new(element: &str, namespace: &str) -> Build {
        Build(Element::bare(element, namespace))
    }
    pub fn attr(mut self, attribute: &'static str, value: impl Into<String>) -> Build {
        set_attr(&mut self.0, attribute, value);
        self
    }
    pub fn attr_opt(self, attribute: &'static str, value: Option<impl Into<String>>) -> Build {
        match value {
            Some(v) => self.attr(attribute, v),
            None => self,
        }
    }
    pub fn child(mut self, child: Element) -> Build {
        self.0.append_child(child);
        self
    }
    pub fn children(mut self, children: impl IntoIterator<Item = Element>) -> Build {
        for child in children {
            self.0.append_child(child);
        }
        self
    }
    pub fn text(mut self, text: impl Into<String>) -> Build {
        self.0.append_text_node(text);
        self
    }
    pub fn build(self) -> Element {
        self.0
    }
}

/// An empty `<stream:features/>` (RFC 6120 §4.3.2) with the `stream` prefix bound on the element
/// itself, as the stream header binds it: loudmouth and Perl's XML::Stream match the prefixed
/// name, and a WebSocket message must declare what it uses (RFC 7395 §3.3.2).
pub fn stream_features() -> Build {
    Build(
        Element::builder("features", ns::STREAM)
            .prefix(Some("stream".to_string()), ns::STREAM)
            .map(|builder| builder.build())
            .unwrap_or_else(|_| Element::bare("features", ns::STREAM)),
    )
}

impl From<Build> for Element {
    fn from(b: Build) -> Element {
        b.0
    }
}

/// RFC 6120 §8.3.2 error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error: the defined condition of RFC 6120 §8.3.3, its type and an optional text.
#[derive(Clone, Debug)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: StanzaCondition,
    pub text: Option<String>,
    /// An application-specific condition element to add (e.g. XEP-0363 `<file-too-large/>`).
    pub extra: Option<Box<Element>>,
}

impl StanzaError {
    pub fn new(kind: ErrorType, condition: StanzaCondition) -> StanzaError {
        StanzaError {
            kind,
            condition,
            text: None,
            extra: None,
        }
    }
    pub fn with_text(mut self, text: impl Into<String>) -> StanzaError {
        self.text = Some(text.into());
        self
    }
    pub fn service_unavailable() -> StanzaError {
        StanzaError::new(ErrorType::Cancel, StanzaCondition::ServiceUnavailable)
    }
    pub fn bad_request(text: impl Into<String>) -> StanzaError {
        StanzaError::new(ErrorType::Modify, StanzaCondition::BadRequest).with_text(text)
    }
    pub fn not_allowed() -> StanzaError {
        StanzaError::new(ErrorType::Cancel, StanzaCondition::NotAllowed)
    }
    pub fn forbidden() -> StanzaError {
        StanzaError::new(ErrorType::Auth, StanzaCondition::Forbidden)
    }
    pub fn item_not_found() -> StanzaError {
        StanzaError::new(ErrorType::Cancel, StanzaCondition::ItemNotFound)
    }
    pub fn jid_malformed() -> StanzaError {
        StanzaError::new(ErrorType::Modify, StanzaCondition::JidMalformed)
    }
    pub fn internal() -> StanzaError {
        StanzaError::new(ErrorType::Wait, StanzaCondition::InternalServerError)
    }
    pub fn feature_not_implemented() -> StanzaError {
        StanzaError::new(ErrorType::Cancel, StanzaCondition::FeatureNotImplemented)
    }
    pub fn policy_violation(text: impl Into<String>) -> StanzaError {
        StanzaError::new(ErrorType::Modify, StanzaCondition::PolicyViolation).with_text(text)
    }
    /// `<internal-server-error/>` for a storage failure, logged with what was being done, so
    /// the client learns nothing of the backend and the operator learns everything.
    pub fn storage(doing: &str, error: &crate::storage::StorageError) -> StanzaError {
        tracing::error!(error = %error, "{doing}");
        StanzaError::internal()
    }
    pub fn resource_constraint() -> StanzaError {
        StanzaError::new(ErrorType::Wait, StanzaCondition::ResourceConstraint)
    }

    /// The `<error/>` child element.
    pub fn to_element(&self) -> Element {
        let mut error = Build::new("error", ns::CLIENT)
            .attr("type", self.kind.as_str())
            .child(Element::bare(self.condition.name(), ns::STANZAS_ERROR));
        if let Some(text) = &self.text {
            error = error.child(
                Build::new("text", ns::STANZAS_ERROR)
                    .text(text.clone())
                    .build(),
            );
        }
        if let Some(extra) = &self.extra {
            error = error.child((**extra).clone());
        }
        error.build()
    }
}

/// A condition with the error type it usually travels with (RFC 6120 §8.3.3).
impl From<StanzaCondition> for StanzaError {
    fn from(condition: StanzaCondition) -> StanzaError {
        StanzaError::new(condition.default_type(), condition)
    }
}

/// Turn a received stanza into its error bounce (RFC 6120 §8.3.1): swap addresses, set
/// `type='error'`, keep the payload, add the error element.
pub fn error_reply(stanza: &Element, error: &StanzaError) -> Element {
    let mut reply = Element::bare(stanza.name(), ns::CLIENT);
    for node in stanza.nodes() {
        if let Some(child) = node.as_element() {
            if child.name() != "error" {
                reply.append_child(child.clone());
            }
        }
    }
    if let Some(id) = stanza.attr("id") {
        set_attr(&mut reply, "id", id);
    }
    if let Some(from) = stanza.attr("from") {
        set_attr(&mut reply, "to", from);
    }
    if let Some(to) = stanza.attr("to") {
        set_attr(&mut reply, "from", to);
    }
    set_attr(&mut reply, "type", "error");
    reply.append_child(error.to_element());
    reply
}

/// An IQ result answering `request`, with an optional payload.
pub fn iq_result(request: &Element, payload: Option<Element>) -> Element {
    let mut reply = Build::new("iq", ns::CLIENT)
        .attr("type", "result")
        .attr_opt("id", request.attr("id"))
        .attr_opt("to", request.attr("from"))
        .attr_opt("from", request.attr("to"))
        .build();
    if let Some(payload) = payload {
        reply.append_child(payload);
    }
    reply
}

/// Whether a stanza is of type error; errors are never answered with errors (RFC 6120 §8.3.1).
pub fn is_error(stanza: &Element) -> bool {
    stanza.attr("type") == Some("error")
}

/// The first child element, the payload of an IQ.
pub fn first_child(element: &Element) -> Option<&Element> {
    element.children().next()
}

/// XEP-0082 timestamp for a Unix time in seconds.
pub fn xep82_datetime(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A new random secret for a link or a registration: 24 characters of a-z0-9, about 124 bits,
/// safe in URLs and attributes.
pub fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod jid_tests {
    /// Fuzzing regression (crates/xml/fuzz/corpus/jid/regression-unstable-prep).
    #[test]
    fn a_jid_whose_prepared_form_is_not_stable_is_refused() {
        // U+3203 and U+32CC: the crate alone turns this into "(ᄅ)2Hg/…", which parses to
        // "(ᄅ)2hg/…".
        let unstable = "\u{3203}2\u{32cc}/\u{30ea}\u{30d2}\u{30f0}\u{112c}";
        let first = jid::Jid::new(unstable).expect("the crate accepts it");
        assert_ne!(jid::Jid::new(first.as_str()).ok(), Some(first));
        assert!(super::parse_jid(unstable).is_err());
        // Ordinary JIDs, and ones the preparation changes once for good, pass.
        for (text, prepared) in [
            ("juliet@example.com/balcony", "juliet@example.com/balcony"),
            ("Juliet@Example.COM/Balcony", "juliet@example.com/Balcony"),
            ("room@rooms.example", "room@rooms.example"),
        ] {
            assert_eq!(super::parse_jid(text).expect(text).as_str(), prepared);
        }
    }
}
