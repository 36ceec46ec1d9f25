//! Room invite links (issue 16 item 3; Salon's own, no XEP): an owner of a members-only room
//! makes a link that admits people a number of times until an expiry. A client shows the token
//! in its join presence, `<invite xmlns='urn:salon:room-invite:0' token='…'/>` inside the MUC
//! `<x/>`; an account that joins with it becomes a member, a guest of the built-in page is let
//! in for that visit. Owners make, list and revoke links with XEP-0050 ad-hoc commands on the
//! room's address; the operator with `salon room invite`.

use crate::service::ServiceContext;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use crate::storage::{RoomInvite, RoomInviteStore, StorageError};
use minidom::Element;

/// The namespace of the token in a join presence, and the prefix of the commands' nodes.
pub const NS: &str = "urn:salon:room-invite:0";
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// Ad-hoc command nodes on the room's address.
pub const NODE_CREATE: &str = "urn:salon:room-invite:0#create";
pub const NODE_LIST: &str = "urn:salon:room-invite:0#list";
pub const NODE_REVOKE: &str = "urn:salon:room-invite:0#revoke";
/// Longest token looked up (ours are 24 characters); anything longer is not ours.
const MAX_TOKEN: usize = 64;
/// Most uses one link may have, and the longest it may last (a year).
pub const MAX_USES: u32 = 1000;
pub const MAX_SECONDS: i64 = 365 * 86_400;
/// Most links one room lists, so an owner cannot grow an answer without bound.
pub const MAX_LINKS_PER_ROOM: usize = 100;

/// The token a join presence shows, if it has a plausible one.
pub fn offered(join: &Element) -> Option<&str> {
    let token = join
        .get_child("x", ns::MUC)?
        .get_child("invite", NS)?
        .attr("token")?;
    (!token.is_empty() && token.len() <= MAX_TOKEN).then_some(token)
}

/// Delete every link of `room`: a room that ends takes its links with it, so that whoever
/// creates the same name next does not inherit a way in that an earlier owner handed out.
pub async fn forget_all(store: &dyn RoomInviteStore, room: &str) {
    let links = match store.room_invites(room).await {
        Ok(links) => links,
        Err(e) => {
            tracing::error!(room, error = %e, "listing room invite links to delete");
            return;
        }
    };
    for link in links {
        if let Err(e) = store.delete_room_invite(room, &link.token).await {
            tracing::error!(room, error = %e, "deleting a room invite link");
        }
    }
}

/// Takes one use of `room`'s link `token`; whether it admits the joiner.
pub async fn redeem(store: &dyn RoomInviteStore, room: &str, token: &str, who: &str) -> bool {
    match store
        .take_room_invite_use(room, token, crate::stanza::now_unix())
        .await
    {
        Ok(Some(link)) => {
            tracing::info!(%room, joiner = %who, uses_left = link.uses_left - 1, "room invite link used");
            true
        }
        Ok(None) => {
            tracing::info!(%room, joiner = %who, "room invite link refused: unknown, expired or used up");
            false
        }
        Err(e) => {
            tracing::error!(%room, error = %e, "reading a room invite link");
            false
        }
    }
}

/// Make and store a link to `room` (bare JID) by `created_by` (`None`: the operator).
pub async fn create(
    store: &dyn RoomInviteStore,
    room: &str,
    created_by: Option<&str>,
    uses: u32,
    seconds: i64,
    now: i64,
) -> Result<RoomInvite, StanzaError> {
    let existing = store
        .room_invites(room)
        .await
        .map_err(|e| StanzaError::storage("listing room invite links", &e))?;
    if existing.iter().filter(|l| l.usable(now)).count() >= MAX_LINKS_PER_ROOM {
        return Err(
            StanzaError::new(ErrorType::Wait, StanzaCondition::ResourceConstraint)
                .with_text("this room has as many links as it may have; revoke some"),
        );
    }
    let link = RoomInvite {
        token: crate::stanza::random_token(),
        room: room.to_string(),
        created_by: created_by.map(str::to_string),
        uses_left: uses.clamp(1, MAX_USES),
        created: now,
        expires: now.saturating_add(seconds.clamp(60, MAX_SECONDS)),
    };
    store
        .create_room_invite(&link)
        .await
        .map_err(|e| StanzaError::storage("storing a room invite link", &e))?;
    tracing::info!(%room, by = created_by.unwrap_or("operator"), uses = link.uses_left, "room invite link made");
    Ok(link)
}

/// Where a browser opens the link: the built-in page of the room, with the token.
pub fn web_link(base: &str, room: &jid::BareJid, token: &str) -> String {
    let name = room.node().map(|n| n.as_str()).unwrap_or_default();
    format!("{base}/join/{name}?invite={token}")
}

/// The `xmpp:` URI a client opens (XEP-0147 `join`), with the token for clients that know it.
pub fn uri(room: &jid::BareJid, token: &str) -> String {
    format!("xmpp:{room}?join;invite={token}")
}

/// disco#items of the commands node on the room: the three commands, for owners only.
pub fn command_items(room: &str, is_owner: bool) -> Element {
    let commands = [
        (NODE_CREATE, "Make an invite link"),
        (NODE_LIST, "List invite links"),
        (NODE_REVOKE, "Revoke an invite link"),
    ];
    Build::new("query", ns::DISCO_ITEMS)
        .attr("node", NS_COMMANDS)
        .children(
            commands
                .into_iter()
                .filter(|_| is_owner)
                .map(|(node, name)| {
                    Build::new("item", ns::DISCO_ITEMS)
                        .attr("jid", room)
                        .attr("node", node)
                        .attr("name", name)
                        .build()
                }),
        )
        .build()
}

/// A `<command/>` reply (XEP-0050 §3.4): `executing` with a form to fill, or `completed`.
fn reply(node: &str, completed: bool, form: Option<Element>, note: Option<&str>) -> Element {
    Build::new("command", NS_COMMANDS)
        .attr("node", node)
        .attr("sessionid", node.rsplit('#').next().unwrap_or("link"))
        .attr("status", if completed { "completed" } else { "executing" })
        .children(note.map(|n| {
            Build::new("note", NS_COMMANDS)
                .attr("type", "info")
                .text(n.to_string())
                .build()
        }))
        .children(form)
        .build()
}

fn field(form: &Element, var: &str) -> Option<String> {
    form.children()
        .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .map(|v| v.text().trim().to_string())
}

/// Everything the command handler needs of the room.
pub struct CommandContext<'a> {
    pub context: &'a ServiceContext,
    pub room: &'a jid::BareJid,
    pub requester: &'a jid::BareJid,
    pub is_owner: bool,
}

/// One `<command/>` to the room (XEP-0050): each command answers its form at once when asked
/// without one, and does its work when the form comes back. The form carries all the state,
/// so there are no sessions to keep.
pub async fn command(
    at: CommandContext<'_>,
    command: &Element,
) -> Result<Option<Element>, StanzaError> {
    let node = command.attr("node").unwrap_or_default();
    if ![NODE_CREATE, NODE_LIST, NODE_REVOKE].contains(&node) {
        return Err(StanzaError::item_not_found());
    }
    if !at.is_owner {
        return Err(StanzaError::forbidden().with_text("only the room's owners manage its links"));
    }
    if command.attr("action") == Some("cancel") {
        return Ok(Some(
            Build::new("command", NS_COMMANDS)
                .attr("node", node)
                .attr("sessionid", command.attr("sessionid").unwrap_or_default())
                .attr("status", "canceled")
                .build(),
        ));
    }
    let store = at.context.room_invite_store();
    let room = at.room.as_str();
    let submitted = command
        .get_child("x", ns::DATA_FORMS)
        .filter(|x| x.attr("type") == Some("submit"));
    let now = crate::stanza::now_unix();
    match (node, submitted) {
        (NODE_CREATE, None) => {
            let form = DataForm::new(FormType::Form)
                .field(Field::form_type(NS))
                .title("Make an invite link")
                .field(
                    Field::new("uses", FieldType::TextSingle)
                        .label("How many people")
                        .value("1"),
                )
                .field(
                    Field::new("expires", FieldType::ListSingle)
                        .label("Works for")
                        .option("One hour", "3600")
                        .option("One day", "86400")
                        .option("One week", "604800")
                        .option("30 days", "2592000")
                        .value("604800"),
                );
            Ok(Some(reply(node, false, Some(form.to_element()), None)))
        }
        (NODE_CREATE, Some(form)) => {
            let bad = || StanzaError::bad_request("uses and expires are whole numbers");
            let uses: u32 = field(form, "uses")
                .unwrap_or_else(|| "1".into())
                .parse()
                .map_err(|_| bad())?;
            let seconds: i64 = field(form, "expires")
                .unwrap_or_else(|| "604800".into())
                .parse()
                .map_err(|_| bad())?;
            let link = create(
                &*store,
                room,
                Some(at.requester.as_str()),
                uses,
                seconds,
                now,
            )
            .await?;
            let mut result = DataForm::new(FormType::Result)
                .field(Field::form_type(NS))
                .title("Invite link")
                .field(
                    Field::new("token", FieldType::TextSingle)
                        .label("Token")
                        .value(link.token.clone()),
                )
                .field(
                    Field::new("uri", FieldType::TextSingle)
                        .label("For XMPP clients")
                        .value(uri(at.room, &link.token)),
                )
                .field(
                    Field::new("uses", FieldType::TextSingle)
                        .label("Uses")
                        .value(link.uses_left.to_string()),
                )
                .field(
                    Field::new("expires", FieldType::TextSingle)
                        .label("Expires (Unix time)")
                        .value(link.expires.to_string()),
                );
            if let Some(base) = at.context.web_base_url() {
                result = result.field(
                    Field::new("url", FieldType::TextSingle)
                        .label("Link")
                        .value(web_link(&base, at.room, &link.token)),
                );
            }
            Ok(Some(reply(node, true, Some(result.to_element()), None)))
        }
        (NODE_LIST, _) => {
            let links = store
                .room_invites(room)
                .await
                .map_err(|e| StanzaError::storage("listing room invite links", &e))?;
            let lines: Vec<String> = links
                .iter()
                .map(|l| {
                    let state = if l.expires <= now {
                        "expired".to_string()
                    } else if l.uses_left == 0 {
                        "used up".to_string()
                    } else {
                        format!("{} uses left, expires {}", l.uses_left, l.expires)
                    };
                    format!("{} {state}", l.token)
                })
                .collect();
            let list = Field::new("links", FieldType::TextMulti)
                .label("Links")
                .values(lines);
            let form = DataForm::new(FormType::Result)
                .field(Field::form_type(NS))
                .title("Invite links")
                .field(list);
            Ok(Some(reply(node, true, Some(form.to_element()), None)))
        }
        (NODE_REVOKE, None) => {
            let links = store
                .room_invites(room)
                .await
                .map_err(|e| StanzaError::storage("listing room invite links", &e))?;
            let mut choice = Field::new("token", FieldType::ListSingle).label("Link to revoke");
            for l in &links {
                choice = choice.option(l.token.clone(), l.token.clone());
            }
            let form = DataForm::new(FormType::Form)
                .field(Field::form_type(NS))
                .title("Revoke an invite link")
                .field(choice);
            Ok(Some(reply(node, false, Some(form.to_element()), None)))
        }
        (NODE_REVOKE, Some(form)) => {
            let token = field(form, "token").unwrap_or_default();
            match store.delete_room_invite(room, &token).await {
                Ok(()) => {
                    tracing::info!(%room, by = %at.requester, "room invite link revoked");
                    Ok(Some(reply(
                        node,
                        true,
                        None,
                        Some("The link no longer works."),
                    )))
                }
                Err(StorageError::NotFound) => {
                    Err(StanzaError::item_not_found().with_text("this room has no such link"))
                }
                Err(e) => Err(StanzaError::storage("revoking a room invite link", &e)),
            }
        }
        _ => Err(StanzaError::item_not_found()),
    }
}
