//! `salon room invite|invites|revoke`: the operator's side of room invite links
//! (`salon_server::muc::invite_links`), straight on the database like `salon invite`.

use crate::{human_seconds, Failure};
use clap::Subcommand;
use salon_server::config::Config;
use salon_server::muc::invite_links;
use salon_server::storage::StorageError;

#[derive(Subcommand)]
pub enum RoomAction {
    /// Make a link that admits people to a members-only room; prints its web address and its
    /// xmpp: URI.
    Invite {
        /// The room: its name, or its full address (name@rooms.example.org).
        room: String,
        /// People it may admit. Default: 1.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it works, like 30m, 12h, 7d. Default: 7d.
        #[arg(long, default_value = "7d")]
        expires: String,
    },
    /// List a room's links with their uses left and expiry.
    Invites { room: String },
    /// Revoke one of a room's links.
    Revoke { room: String, token: String },
}

fn room_jid(config: &Config, room: &str) -> Result<jid::BareJid, Failure> {
    let fail = |message: String| Failure { code: 2, message };
    let full = if room.contains('@') {
        room.to_string()
    } else {
        let service = config
            .muc
            .as_ref()
            .ok_or_else(|| fail("rooms are off in this configuration ([muc])".into()))?;
        format!("{room}@{}", service.domain)
    };
    jid::BareJid::new(&full.to_lowercase()).map_err(|e| fail(format!("{room}: {e}")))
}

pub async fn room(
    config: &Config,
    storage: &dyn salon_server::storage::Storage,
    action: RoomAction,
) -> Result<(), Failure> {
    let now = salon_server::stanza::now_unix();
    let backend = |e: StorageError| Failure {
        code: 1,
        message: e.to_string(),
    };
    match action {
        RoomAction::Invite {
            room,
            uses,
            expires,
        } => {
            let room = room_jid(config, &room)?;
            let seconds =
                salon_server::modules::invites::parse_duration(&expires).ok_or_else(|| {
                    Failure {
                        code: 2,
                        message: format!(
                            "--expires {expires}: expected a duration like 30m, 12h, 7d"
                        ),
                    }
                })?;
            let link = invite_links::create(storage, room.as_str(), None, uses, seconds, now)
                .await
                .map_err(|e| Failure {
                    code: 1,
                    message: format!("{e:?}"),
                })?;
            if let Some(base) = config.web_base_url() {
                println!("{}", invite_links::web_link(&base, &room, &link.token));
            }
            println!("{}", invite_links::uri(&room, &link.token));
            println!(
                "uses: {}, expires in {}",
                link.uses_left,
                human_seconds(link.expires - now)
            );
        }
        RoomAction::Invites { room } => {
            let room = room_jid(config, &room)?;
            for link in storage.room_invites(room.as_str()).await.map_err(backend)? {
                let state = if link.expires <= now {
                    "expired".to_string()
                } else if link.uses_left == 0 {
                    "used up".to_string()
                } else {
                    format!(
                        "{} uses left, expires in {}",
                        link.uses_left,
                        human_seconds(link.expires - now)
                    )
                };
                let by = link.created_by.as_deref().unwrap_or("operator");
                println!("{}  {state}  by {by}", link.token);
            }
        }
        RoomAction::Revoke { room, token } => {
            let room = room_jid(config, &room)?;
            match storage.delete_room_invite(room.as_str(), &token).await {
                Ok(()) => println!("revoked {token}"),
                Err(StorageError::NotFound) => {
                    return Err(Failure {
                        code: 1,
                        message: format!("{room} has no link {token}"),
                    })
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }
    Ok(())
}
