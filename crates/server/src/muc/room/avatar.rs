//! Room avatars (XEP-0486): owners set a vCard (XEP-0054) on the room's address, anyone reads
//! it; its photo's hash (XEP-0153) is in the room's disco#info (`muc#roominfo_avatarhash`),
//! and when it changes the occupants get status 104 and a presence from the room carrying it.

use super::{status, Room};
use crate::modules::vcard::{photo, sha1_hex};
use crate::muc::config::Affiliation;
use crate::router::AddressedTemplate;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;

/// Largest room vCard kept, in bytes of XML (it is stored with the room's record).
const MAX_ROOM_VCARD_BYTES: usize = 128 * 1024;
const VCARD_UPDATE: &str = "vcard-temp:x:update";

impl Room {
    pub(super) fn vcard_get(&self) -> Result<Option<Element>, StanzaError> {
        Ok(Some(
            salon_xml::parse_stored(&self.record.vcard, ns::CLIENT)
                .unwrap_or_else(|| Element::bare("vCard", ns::VCARD)),
        ))
    }

    /// XEP-0486 §3.2: only owners set it; an empty vCard removes the avatar.
    pub(super) async fn vcard_set(
        &mut self,
        from: &jid::FullJid,
        vcard: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        if self.affiliation(&from.bare()) != Affiliation::Owner {
            return Err(
                StanzaError::forbidden().with_text("Only owners are allowed to set avatars.")
            );
        }
        if !vcard.is("vCard", ns::VCARD) {
            return Err(StanzaError::bad_request(
                "expected <vCard xmlns='vcard-temp'/>",
            ));
        }
        let xml = salon_xml::serialize_to_string(vcard);
        if xml.len() > MAX_ROOM_VCARD_BYTES {
            return Err(
                StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable).with_text(
                    format!("room vCards are limited to {MAX_ROOM_VCARD_BYTES} bytes"),
                ),
            );
        }
        let before = self.avatar_hash();
        self.record.vcard = if vcard.children().next().is_some() {
            xml
        } else {
            String::new()
        };
        self.save().await;
        let after = self.avatar_hash();
        if before != after {
            self.announce_avatar(after);
        }
        Ok(None)
    }

    /// The hash of the room's avatar, if it has one.
    pub(super) fn avatar_hash(&self) -> Option<String> {
        let vcard = salon_xml::parse_stored(&self.record.vcard, ns::CLIENT)?;
        photo(&vcard).map(|(_, bytes, _)| sha1_hex(&bytes))
    }

    /// §3.2: the configuration changed (status 104); and, as clients that show XEP-0153
    /// avatars expect, a presence from the room with the new hash (empty: no avatar).
    fn announce_avatar(&self, hash: Option<String>) {
        let notice = Build::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("from", self.jid.to_string())
            .attr("id", format!("avatar-{:x}", rand::random::<u64>()))
            .child(
                Build::new("x", ns::MUC_USER)
                    .child(
                        Build::new("status", ns::MUC_USER)
                            .attr("code", status::CONFIG_CHANGED)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let presence = Build::new("presence", ns::CLIENT)
            .attr("from", self.jid.to_string())
            .child(
                Build::new("x", VCARD_UPDATE)
                    .child(
                        Build::new("photo", VCARD_UPDATE)
                            .text(hash.unwrap_or_default())
                            .build(),
                    )
                    .build(),
            )
            .build();
        for stanza in [notice, presence] {
            let template = AddressedTemplate::new(&stanza);
            for occupant in &self.occupants {
                self.deliver_template(occupant, &template);
            }
        }
    }
}
