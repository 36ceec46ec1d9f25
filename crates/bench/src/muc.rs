//! Joining a room (XEP-0045 §7.2), shared by the `muc`/`ws`/`bosh` scenarios and the arrival
//! scenarios: the join presence, the self-presence (status 110) and, when the join created the
//! room (status 201), the instant-room form that unlocks it (§10.1.2).

use crate::conn::{describe_error, stanza_error, Conn, Incoming, NS_STREAMS};
use anyhow::{bail, Result};
use salon_xml::minidom::Element;

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// Events that arrive during a join and are not part of it, kept for the caller; more than
/// this many means the join is lost in traffic.
const MAX_DEFERRED: usize = 100_000;

/// Join `room_jid` as `nick`; unlock the room if this join created it. Returns once the
/// self-presence arrived (and, for a new room, the unlock was accepted). Whatever else
/// arrives meanwhile is appended to `others`, in order, for the caller to account for.
pub async fn join(
    conn: &mut Conn,
    room_jid: &str,
    nick: &str,
    others: &mut Vec<Incoming>,
) -> Result<()> {
    let occupant = format!("{room_jid}/{nick}");
    conn.send(&format!(
        "<presence xmlns='jabber:client' to='{occupant}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>"
    ))
    .await?;
    let created = loop {
        let el = next_stanza(conn, others).await?;
        let from = el.attr("from").unwrap_or("");
        if el.name() == "presence" && from.eq_ignore_ascii_case(&occupant) {
            if el.attr("type") == Some("error") {
                bail!("joining {occupant} refused: {}", stanza_error(&el));
            }
            let codes = status_codes(&el);
            if codes.iter().any(|c| c == "110") || el.attr("type").is_none() {
                break codes.iter().any(|c| c == "201");
            }
        }
        defer(others, Incoming::Stanza(el))?;
    };
    if created {
        conn.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='unlock' to='{room_jid}'><query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await?;
        loop {
            let el = next_stanza(conn, others).await?;
            if el.name() == "iq" && el.attr("id") == Some("unlock") {
                if el.attr("type") != Some("result") {
                    bail!(
                        "unlocking new room {room_jid} refused: {}",
                        stanza_error(&el)
                    );
                }
                break;
            }
            defer(others, Incoming::Stanza(el))?;
        }
    }
    Ok(())
}

fn defer(others: &mut Vec<Incoming>, event: Incoming) -> Result<()> {
    if others.len() >= MAX_DEFERRED {
        bail!("more than {MAX_DEFERRED} stanzas arrived while joining a room");
    }
    others.push(event);
    Ok(())
}

/// The next stanza; a stream error or close ends the join.
async fn next_stanza(conn: &mut Conn, others: &mut Vec<Incoming>) -> Result<Element> {
    loop {
        match conn.recv().await? {
            Incoming::Stanza(el) if el.name() == "error" && el.ns() == NS_STREAMS => {
                bail!("stream error while joining: {}", describe_error(&el))
            }
            Incoming::Stanza(el) => return Ok(el),
            Incoming::Close => bail!("server closed the stream while joining"),
            Incoming::Open => defer(others, Incoming::Open)?,
        }
    }
}

/// The status codes of a MUC presence (XEP-0045 §15.6).
fn status_codes(presence: &Element) -> Vec<String> {
    presence
        .get_child("x", NS_MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
