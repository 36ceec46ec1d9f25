//! The defined error conditions of RFC 6120: stanza errors (§8.3.3), each with the error type
//! it usually travels with, and stream errors (§4.9.3, defined beside the stream parser).

use super::ErrorType;
use std::fmt;

pub use salon_xml::StreamCondition;

/// A defined stanza error condition (RFC 6120 §8.3.3), an element of the
/// `urn:ietf:params:xml:ns:xmpp-stanzas` namespace inside `<error/>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StanzaCondition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl StanzaCondition {
    /// The condition's element name, as written on the wire.
    pub fn name(self) -> &'static str {
        match self {
            StanzaCondition::BadRequest => "bad-request",
            StanzaCondition::Conflict => "conflict",
            StanzaCondition::FeatureNotImplemented => "feature-not-implemented",
            StanzaCondition::Forbidden => "forbidden",
            StanzaCondition::Gone => "gone",
            StanzaCondition::InternalServerError => "internal-server-error",
            StanzaCondition::ItemNotFound => "item-not-found",
            StanzaCondition::JidMalformed => "jid-malformed",
            StanzaCondition::NotAcceptable => "not-acceptable",
            StanzaCondition::NotAllowed => "not-allowed",
            StanzaCondition::NotAuthorized => "not-authorized",
            StanzaCondition::PolicyViolation => "policy-violation",
            StanzaCondition::RecipientUnavailable => "recipient-unavailable",
            StanzaCondition::Redirect => "redirect",
            StanzaCondition::RegistrationRequired => "registration-required",
            StanzaCondition::RemoteServerNotFound => "remote-server-not-found",
            StanzaCondition::RemoteServerTimeout => "remote-server-timeout",
            StanzaCondition::ResourceConstraint => "resource-constraint",
            StanzaCondition::ServiceUnavailable => "service-unavailable",
            StanzaCondition::SubscriptionRequired => "subscription-required",
            StanzaCondition::UndefinedCondition => "undefined-condition",
            StanzaCondition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type the condition usually travels with: the one of the RFC's example for it
    /// (§8.3.3). A sender may choose another where it fits better, e.g. `wait` for an internal
    /// error that a retry may get past.
    pub fn default_type(self) -> ErrorType {
        match self {
            StanzaCondition::BadRequest
            | StanzaCondition::JidMalformed
            | StanzaCondition::NotAcceptable
            | StanzaCondition::PolicyViolation
            | StanzaCondition::Redirect
            | StanzaCondition::UndefinedCondition => ErrorType::Modify,
            StanzaCondition::Forbidden
            | StanzaCondition::NotAuthorized
            | StanzaCondition::RegistrationRequired
            | StanzaCondition::SubscriptionRequired => ErrorType::Auth,
            StanzaCondition::RecipientUnavailable
            | StanzaCondition::RemoteServerTimeout
            | StanzaCondition::ResourceConstraint
            | StanzaCondition::UnexpectedRequest => ErrorType::Wait,
            StanzaCondition::Conflict
            | StanzaCondition::FeatureNotImplemented
            | StanzaCondition::Gone
            | StanzaCondition::InternalServerError
            | StanzaCondition::ItemNotFound
            | StanzaCondition::NotAllowed
            | StanzaCondition::RemoteServerNotFound
            | StanzaCondition::ServiceUnavailable => ErrorType::Cancel,
        }
    }
}

impl fmt::Display for StanzaCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Compare with an element name, so a test can say `condition == "forbidden"`.
impl PartialEq<&str> for StanzaCondition {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_default_types_follow_rfc_6120() {
        assert_eq!(StanzaCondition::ItemNotFound.name(), "item-not-found");
        assert_eq!(
            StanzaCondition::FeatureNotImplemented.to_string(),
            "feature-not-implemented"
        );
        assert_eq!(
            StanzaCondition::BadRequest.default_type(),
            ErrorType::Modify
        );
        assert_eq!(StanzaCondition::Forbidden.default_type(), ErrorType::Auth);
        assert_eq!(
            StanzaCondition::ResourceConstraint.default_type(),
            ErrorType::Wait
        );
        assert_eq!(
            StanzaCondition::ServiceUnavailable.default_type(),
            ErrorType::Cancel
        );
    }
}
