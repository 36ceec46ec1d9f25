//! IQs before authentication (RFC 6120 §6 leaves them to extensions): handed to the modules'
//! [`PreAuthHook`](crate::hooks::PreAuthHook)s, such as XEP-0077 in-band registration. The
//! session only decides when they may be sent at all.

use super::{Session, Stop};
use crate::hooks::PreAuthStream;
use crate::stanza::StreamCondition;
use minidom::Element;

impl Session {
    /// Only where SASL itself is offered: after TLS when encryption is required.
    pub(super) fn allows_pre_auth(&self) -> bool {
        self.authenticated.is_none()
            && self.sasl.is_none()
            && (self.transport.is_secure() || !self.server.config.c2s.require_encryption)
    }

    pub(super) async fn pre_auth_iq(&mut self, element: Element) -> Result<(), Stop> {
        let stream = PreAuthStream {
            host: &self.host,
            anonymous_host: self.server.is_anonymous_host(&self.host),
            peer_ip: self.transport.peer_ip(),
        };
        let hooks = &self.server.modules.hooks;
        let answer = hooks
            .pre_auth_iq(&self.server, &stream, &mut self.local, &element)
            .await;
        match answer {
            Some(answer) => self.send(&answer).await,
            None => Err(Stop::StreamError(
                StreamCondition::NotAuthorized,
                "authenticate before sending stanzas".into(),
            )),
        }
    }
}
