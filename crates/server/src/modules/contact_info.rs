//! XEP-0157 Contact Addresses: the `[contact]` addresses from the configuration, published as
//! an extended disco#info form (XEP-0128) of the server.

use crate::config::Config;
use crate::registry::Registry;
use crate::server::Server;
use crate::stanza::{ns, Build};

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
    let mut form = Build::new("x", ns::DATA_FORMS)
        .attr("type", "result")
        .child(
            Build::new("field", ns::DATA_FORMS)
                .attr("var", "FORM_TYPE")
                .attr("type", "hidden")
                .child(
                    Build::new("value", ns::DATA_FORMS)
                        .text(ns::SERVER_INFO)
                        .build(),
                )
                .build(),
        );
    for (var, values) in fields {
        if values.is_empty() {
            continue;
        }
        form = form.child(
            Build::new("field", ns::DATA_FORMS)
                .attr("var", var)
                .attr("type", "list-multi")
                .children(
                    values
                        .iter()
                        .map(|v| Build::new("value", ns::DATA_FORMS).text(v.clone()).build()),
                )
                .build(),
        );
    }
    registry.server_form(form.build());
}
