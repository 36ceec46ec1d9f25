//! XEP-0379 pre-authenticated roster subscription for accounts that exist already: someone who
//! opens an inviter's `xmpp:…?roster;preauth=TOKEN` link with an account sends a subscription
//! request carrying the token; it is approved for the inviter (RFC 6121 §3.4 pre-approval) and
//! the inviter subscribes back, so both are contacts without the inviter having to answer.
//! Seen as the request leaves the invitee's client (both accounts are local until federation):
//! the outbound subscription is rebuilt on its way, without the token.

use super::NS_PARS;
use crate::hooks::{priority, FromClient, StanzaHook};
use crate::im::roster;
use crate::registry::Registry;
use crate::server::Server;
use crate::stanza;
use crate::stanza::Bare;
use minidom::Element;
use std::sync::Arc;

pub fn register(registry: &mut Registry<Server>) {
    registry
        .hooks
        .on_from_client(priority::POLICY - 1, Arc::new(PreAuthSubscribe));
}

struct PreAuthSubscribe;

#[async_trait::async_trait]
impl StanzaHook<Server, FromClient> for PreAuthSubscribe {
    async fn handle(
        &self,
        server: &Arc<Server>,
        point: &FromClient,
        stanza: Element,
    ) -> Option<Element> {
        if stanza.name() != "presence" || stanza.attr("type") != Some("subscribe") {
            return Some(stanza);
        }
        let Some(token) = stanza
            .get_child("preauth", NS_PARS)
            .and_then(|p| p.attr("token"))
            .map(str::to_owned)
        else {
            return Some(stanza);
        };
        let from = point.session.jid.bare();
        let Some(inviter) = point.to.as_ref().map(|to| to.bare()) else {
            return Some(stanza);
        };
        if !server.is_local_user_host(inviter.domain().as_str()) || inviter == from {
            return Some(stanza);
        }
        let inviter = &inviter;
        let domain = inviter.domain().as_str();
        // Only the inviter's own token counts, and it is spent like an account's.
        let known = server
            .storage_for(domain)
            .invite(&token)
            .await
            .ok()
            .flatten();
        if known.as_ref().and_then(|i| i.inviter.as_deref()) != Some(inviter.as_str()) {
            return Some(stanza);
        }
        match server
            .storage_for(domain)
            .take_invite_use(&token, stanza::now_unix())
            .await
        {
            Ok(Some(_)) => {}
            _ => {
                tracing::info!(%inviter, contact = %from, "roster pre-authentication refused: expired or used-up token");
                return Some(stanza);
            }
        }
        let contact = from.to_string();
        roster::update_item(server, inviter, &contact, |item| item.approved = true).await;
        let already = roster::update_item(server, inviter, &contact, |item| {
            if !item.subscription.has_to() {
                item.ask_out = true;
            }
        })
        .await;
        if already.is_some_and(|i| i.ask_out) {
            roster::send_subscription(server, inviter.as_str(), &from, "subscribe").await;
        }
        tracing::info!(%inviter, %contact, "invitation approved a subscription (XEP-0379)");
        Some(stanza)
    }
}
