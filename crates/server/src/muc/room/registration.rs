//! Nickname registration with the room (XEP-0045 §7.10): the form, registering, and removal;
//! and membership by invite link (`muc::invite_links`), the hook of a join.

use super::Room;
use crate::muc::config::Affiliation;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::Bare;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;

impl Room {
    /// §7.10: the registration form, or the registered nick. Someone who may not register is
    /// told so when asking for the form, not handed a form whose submission will be refused.
    pub(super) fn register_get(&self, from: &jid::FullJid) -> Result<Option<Element>, StanzaError> {
        let real = from.bare();
        if self.context.is_anonymous_host(real.domain().as_str()) {
            return Err(StanzaError::not_allowed().with_text("guests cannot register nicknames"));
        }
        if let Some(nick) = self.record.registered_nicks.get(real.as_str()) {
            return Ok(Some(
                Build::new("query", ns::REGISTER)
                    .child(Element::bare("registered", ns::REGISTER))
                    .child(
                        Build::new("username", ns::REGISTER)
                            .text(nick.clone())
                            .build(),
                    )
                    .build(),
            ));
        }
        let form = DataForm::new(FormType::Form)
            .title("Register a nickname")
            .field(Field::form_type("http://jabber.org/protocol/muc#register"))
            .field(
                Field::new("muc#register_roomnick", FieldType::TextSingle)
                    .label("Nickname")
                    .required(),
            );
        Ok(Some(
            Build::new("query", ns::REGISTER)
                .child(form.to_element())
                .build(),
        ))
    }

    pub(super) async fn register_set(
        &mut self,
        from: &jid::FullJid,
        query: &Element,
    ) -> Result<Option<Element>, StanzaError> {
        let real = from.bare();
        if self.context.is_anonymous_host(real.domain().as_str()) {
            return Err(StanzaError::not_allowed().with_text("guests cannot register nicknames"));
        }
        if query.get_child("remove", ns::REGISTER).is_some() {
            self.record.registered_nicks.remove(real.as_str());
            self.save().await;
            return Ok(None);
        }
        let form = query
            .get_child("x", ns::DATA_FORMS)
            .and_then(|x| DataForm::parse(x).ok());
        let requested = form
            .as_ref()
            .and_then(|form| form.value("muc#register_roomnick"))
            .ok_or_else(|| StanzaError::bad_request("muc#register_roomnick is required"))?;
        let own = self.occupants.iter().position(|o| o.real == real);
        let nick = self.check_nick(requested, &real, own)?;
        if self.affiliation(&real) == Affiliation::Outcast {
            return Err(StanzaError::forbidden());
        }
        if self.record.config.members_only && self.affiliation(&real) < Affiliation::Member {
            return Err(
                StanzaError::new(ErrorType::Auth, StanzaCondition::RegistrationRequired)
                    .with_text("ask an admin to make you a member first"),
            );
        }
        self.record.registered_nicks.insert(real.to_string(), nick);
        if self.affiliation(&real) == Affiliation::None {
            self.record
                .affiliations
                .insert(real.to_string(), Affiliation::Member);
        }
        self.save().await;
        Ok(None)
    }
}

impl Room {
    /// A join to a members-only room by a non-member that shows a usable invite link
    /// (`muc::invite_links`): an account becomes a member, a guest is let in this once.
    pub(super) async fn admitted_by_link(
        &mut self,
        join: &Element,
        real: &jid::BareJid,
        guest: bool,
    ) -> bool {
        let Some(token) = crate::muc::invite_links::offered(join) else {
            return false;
        };
        let store = self.context.room_invite_store();
        if !crate::muc::invite_links::redeem(&*store, self.jid.as_str(), token, real.as_str()).await
        {
            return false;
        }
        if !guest {
            self.record
                .affiliations
                .insert(real.to_string(), Affiliation::Member);
            self.save().await;
        }
        true
    }
}
