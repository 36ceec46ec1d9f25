//! XEP-0157 Contact Addresses: the `[contact]` addresses from the configuration, published as
//! an extended disco#info form (XEP-0128) of the server.

use crate::config::Config;
use crate::registry::Registry;
use crate::server::Server;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::ns;

pub fn register(registry: &mut Registry<Server>, config: &Config) {
    let contact = &config.contact;
    let fields = [
        ("abuse-addresses", &contact.abuse),
        ("admin-addresses", &contact.admin),
        ("feedback-addresses", &contact.feedback),
        ("sales-addresses", &contact.sales),
        ("security-addresses", &contact.security),
        ("support-addresses", &contact.support),
    ];
    if fields.iter().all(|(_, values)| values.is_empty()) {
        return;
    }
    let form = DataForm::new(FormType::Result)
        .field(Field::form_type(ns::SERVER_INFO))
        .fields(
            fields
                .into_iter()
                .filter(|(_, values)| !values.is_empty())
                .map(|(var, values)| {
                    Field::new(var, FieldType::ListMulti).values(values.iter().cloned())
                }),
        );
    registry.server_form(form.to_element());
}
