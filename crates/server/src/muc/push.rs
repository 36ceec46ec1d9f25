//! MUC push (issue 16 item 5, the sprint report's proposal; builds on XEP-0357): a client
//! registers its push service with a room, `<enable xmlns='urn:salon:muc-push:0' jid='SERVICE'
//! node='NODE'>` (with XEP-0357's optional publish-options form) sent to the room's address,
//! and gets a token back; while that client is offline or its session waits for resumption,
//! every message of the room with a body sends the service a XEP-0357 summary notification
//! (message count, sender's occupant JID; never the body), within the service's rate
//! (`crate::push::throttle`). The registration is kept under the token rather than the
//! occupant's address or nick, so it works without nick registration and in semi-anonymous
//! rooms; `<disable xmlns='urn:salon:muc-push:0' token='TOKEN'/>` removes it. Registrations
//! are stored with the account (`PushStore`), loaded on the first use after a start.

use crate::push::throttle::{Route, Throttle};
use crate::push::{Summary, Target};
use crate::service::ServiceContext;
use crate::stanza::Bare;
use crate::stanza::{Build, StanzaError};
use crate::storage::PushRegistration;
use dashmap::DashMap;
use minidom::Element;
use std::sync::Arc;

pub const NS: &str = "urn:salon:muc-push:0";
/// Registrations one room keeps, and one account may have in one room (its oldest goes).
const MAX_PER_ROOM: usize = 256;
const MAX_PER_ACCOUNT: usize = 4;
/// Registrations one account may have in all rooms together.
const MAX_PER_ACCOUNT_IN_ALL: usize = 256;

#[derive(Clone)]
struct Registration {
    token: String,
    /// The client that registered: pushed for while it is not attached.
    client: jid::FullJid,
    target: Target,
    created: i64,
    /// Messages since the client was last attached.
    count: u64,
}

/// Registrations by room (bare JID), in the server-wide extension slots.
#[derive(Default)]
struct Registrations {
    rooms: DashMap<String, Vec<Registration>>,
    loaded: tokio::sync::OnceCell<()>,
}

/// The registrations, loaded from storage on the first call after a start.
async fn registrations(context: &ServiceContext) -> Arc<Registrations> {
    let all = context.extensions().get_or_default::<Registrations>();
    all.loaded
        .get_or_init(|| async {
            let stored = match context.push_store().push_registrations(true).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::error!(error = %e, "loading MUC push registrations; none are active");
                    return;
                }
            };
            for (account, stored) in stored {
                let client = jid::FullJid::new(&format!("{account}/{}", stored.resource)).ok();
                let target =
                    Target::from_stored(&stored.service, &stored.node, stored.options.as_deref());
                let (Some(client), Some(target), Some(room)) = (client, target, stored.room) else {
                    continue;
                };
                all.rooms.entry(room).or_default().push(Registration {
                    token: stored.token,
                    client,
                    target,
                    created: stored.created,
                    count: 0,
                });
            }
        })
        .await;
    all
}

/// Forget `account`'s registrations in every room (it was deleted; storage dropped them).
pub fn forget_account(extensions: &crate::extensions::Extensions, account: &jid::BareJid) {
    if let Some(all) = extensions.get::<Registrations>() {
        for mut room in all.rooms.iter_mut() {
            room.retain(|r| &r.client.bare() != account);
        }
    }
}

/// Removes `gone` from storage.
async fn unstore(context: &ServiceContext, room: &jid::BareJid, gone: &[Registration]) {
    for registration in gone {
        let account = registration.client.bare();
        let (user, domain) = crate::im::roster::account_key(&account);
        if let Err(e) = context
            .push_store()
            .delete_push_registrations(
                &user,
                &domain,
                Some(room.as_str()),
                registration.target.service.as_str(),
                Some(&registration.target.node),
            )
            .await
        {
            tracing::error!(error = %e, %room, %account, "removing a MUC push registration");
        }
    }
}

/// An `<enable/>` or `<disable/>` to the room from `from`.
pub async fn enable_or_disable(
    context: &ServiceContext,
    room: &jid::BareJid,
    from: &jid::FullJid,
    request: &Element,
) -> Result<Option<Element>, StanzaError> {
    let all = registrations(context).await;
    let account = from.bare();
    if request.is("disable", NS) {
        let token = request.attr("token").unwrap_or_default();
        let gone: Vec<Registration> = match all.rooms.get_mut(room.as_str()) {
            Some(mut list) => {
                let (gone, kept) = list
                    .drain(..)
                    .partition(|r| r.token == token && r.client.bare() == account);
                *list = kept;
                gone
            }
            None => Vec::new(),
        };
        if gone.is_empty() {
            return Err(StanzaError::item_not_found().with_text("no such push registration"));
        }
        unstore(context, room, &gone).await;
        tracing::info!(%room, %account, "MUC push registration removed");
        return Ok(None);
    }
    if !request.is("enable", NS) {
        return Err(StanzaError::bad_request("enable or disable"));
    }
    let domain = account.domain().as_str();
    if !context.is_local_user_host(domain) || context.is_anonymous_host(domain) {
        return Err(StanzaError::not_allowed().with_text("push is for this server's accounts"));
    }
    let target = Target::from_enable(request)?;
    // Counted before the room's entry is taken: iterating the map while holding one of its
    // entries could deadlock.
    let elsewhere: usize = all
        .rooms
        .iter()
        .filter(|entry| entry.key() != room.as_str())
        .map(|entry| {
            entry
                .value()
                .iter()
                .filter(|r| r.client.bare() == account)
                .count()
        })
        .sum();
    if elsewhere >= MAX_PER_ACCOUNT_IN_ALL {
        return Err(StanzaError::resource_constraint()
            .with_text("this account has as many room push registrations as it may"));
    }
    let registration = Registration {
        token: crate::stanza::random_token(),
        client: from.clone(),
        target,
        created: crate::stanza::now_unix(),
        count: 0,
    };
    let gone: Vec<Registration> = {
        let mut list = all.rooms.entry(room.to_string()).or_default();
        // A client registering again replaces its registration, as does the same app server
        // and node from another client of the account.
        let (mut gone, mut kept): (Vec<_>, Vec<_>) = list.drain(..).partition(|r| {
            &r.client == from
                || (r.client.bare() == account
                    && r.target
                        .is(&registration.target.service, &registration.target.node))
        });
        if kept.iter().filter(|r| r.client.bare() == account).count() >= MAX_PER_ACCOUNT {
            if let Some(oldest) = kept.iter().position(|r| r.client.bare() == account) {
                gone.push(kept.remove(oldest));
            }
        }
        let full = kept.len() >= MAX_PER_ROOM;
        if full {
            kept.append(&mut gone);
        }
        *list = kept;
        if full {
            return Err(StanzaError::new(
                crate::stanza::ErrorType::Wait,
                crate::stanza::StanzaCondition::ResourceConstraint,
            )
            .with_text("this room has as many push registrations as it may"));
        }
        gone
    };
    unstore(context, room, &gone).await;
    let (user, domain) = crate::im::roster::account_key(&account);
    let stored = PushRegistration {
        room: Some(room.to_string()),
        resource: from.resource().to_string(),
        token: registration.token.clone(),
        service: registration.target.service.to_string(),
        node: registration.target.node.clone(),
        options: registration.target.options_text(),
        created: registration.created,
    };
    context
        .push_store()
        .put_push_registration(&user, &domain, &stored)
        .await
        .map_err(|e| StanzaError::storage("storing a MUC push registration", &e))?;
    let token = registration.token.clone();
    all.rooms
        .entry(room.to_string())
        .or_default()
        .push(registration);
    tracing::info!(%room, %account, "MUC push registration added");
    Ok(Some(
        Build::new("registered", NS).attr("token", token).build(),
    ))
}

/// A message with a body went out in `room` from `sender` (an occupant JID): notify the push
/// service of every registered client that is not attached.
pub async fn room_message(context: &ServiceContext, room: &jid::BareJid, sender: &str) {
    let all = registrations(context).await;
    let due: Vec<Registration> = match all.rooms.get_mut(room.as_str()) {
        Some(mut list) => list
            .iter_mut()
            .filter_map(|r| {
                let attached = context
                    .local_session(&r.client)
                    .is_some_and(|s| !s.is_detached());
                if attached {
                    r.count = 0;
                    return None;
                }
                r.count += 1;
                Some(r.clone())
            })
            .collect(),
        None => return,
    };
    let from = room.to_string();
    let throttle = context.extensions().get::<Throttle>();
    for registration in due {
        let summary = Summary {
            count: registration.count,
            sender,
            body: None,
        };
        crate::push::notify(
            throttle.as_ref(),
            &from,
            &registration.target,
            &summary,
            || route_through(context),
        )
        .await;
    }
}

/// How the throttle sends a notification it held back.
fn route_through(context: &ServiceContext) -> Route {
    let context = context.clone();
    Arc::new(move |stanza| {
        let context = context.clone();
        Box::pin(async move { context.route(stanza).await })
    })
}
