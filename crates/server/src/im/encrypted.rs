//! End-to-end encrypted payloads (XEP-0384 OMEMO, both namespaces, and XEP-0373 OpenPGP for
//! XMPP): which messages carry one, for the features that treat such a message as one a person
//! wrote even without a body (offline storage, XEP-0357 push). Some OMEMO clients send no
//! fallback body and no XEP-0334 `<store/>` hint.

use minidom::Element;

/// The payloads, by element name and namespace.
const PAYLOADS: &[(&str, &str)] = &[
    ("encrypted", "eu.siacs.conversations.axolotl"),
    ("encrypted", "urn:xmpp:omemo:2"),
    ("openpgp", "urn:xmpp:openpgp:0"),
];

/// Whether `message` carries an end-to-end encrypted payload.
pub fn is_encrypted(message: &Element) -> bool {
    PAYLOADS
        .iter()
        .any(|(name, namespace)| message.get_child(name, *namespace).is_some())
}
