//! PEP node configuration as data forms (XEP-0060 §8.2, §16.4.3 `pubsub#node_config`), and
//! publish-options with their preconditions (XEP-0060 §7.1.5).

use super::errors;
use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::{ErrorType, StanzaCondition, StanzaError};
use crate::storage::{AccessModel, PepNodeConfig, SendLastItem};
use minidom::Element;

pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";

const ACCESS_MODEL: &str = "pubsub#access_model";
const ROSTER_GROUPS: &str = "pubsub#roster_groups_allowed";
const PERSIST_ITEMS: &str = "pubsub#persist_items";
const MAX_ITEMS: &str = "pubsub#max_items";
const SEND_LAST: &str = "pubsub#send_last_published_item";

/// The fields of a submitted form, in order: (var, values). `FORM_TYPE` is left out.
pub fn submitted_fields(form: &Element) -> Vec<(String, Vec<String>)> {
    let Ok(form) = DataForm::parse(form) else {
        return Vec::new();
    };
    form.fields
        .into_iter()
        .filter_map(|f| Some((f.var?, f.values)))
        .filter(|(var, _)| var != "FORM_TYPE")
        .collect()
}

fn not_acceptable(text: String) -> StanzaError {
    StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable).with_text(text)
}

fn single<'a>(var: &str, values: &'a [String]) -> Result<&'a str, StanzaError> {
    match values {
        [value] => Ok(value.trim()),
        _ => Err(not_acceptable(format!("{var} takes one value"))),
    }
}

fn boolean(var: &str, values: &[String]) -> Result<bool, StanzaError> {
    match single(var, values)? {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        other => Err(not_acceptable(format!("{var}: {other:?} is not a boolean"))),
    }
}

/// `config` with the submitted `fields` applied. Values out of range are refused; fields this
/// server does not implement are ignored, as a form's unknown fields are. `max_items_limit` is
/// the most items a node may keep (`[pep] max_items_per_node`).
pub fn apply(
    config: &PepNodeConfig,
    fields: &[(String, Vec<String>)],
    max_items_limit: usize,
) -> Result<PepNodeConfig, StanzaError> {
    let mut config = config.clone();
    for (var, values) in fields {
        match var.as_str() {
            ACCESS_MODEL => {
                let value = single(var, values)?;
                config.access_model = AccessModel::parse(value).ok_or_else(|| {
                    errors::with_condition(
                        not_acceptable(format!("access model {value:?} is not supported")),
                        "unsupported-access-model",
                    )
                })?;
            }
            ROSTER_GROUPS => config.roster_groups_allowed = values.clone(),
            PERSIST_ITEMS => config.persist_items = boolean(var, values)?,
            MAX_ITEMS => {
                let value = single(var, values)?;
                config.max_items = if value == "max" {
                    None
                } else {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| not_acceptable(format!("{var}: {value:?} is not a number")))?;
                    if n as usize > max_items_limit {
                        return Err(not_acceptable(format!("{var}: at most {max_items_limit}")));
                    }
                    Some(n)
                };
            }
            SEND_LAST => {
                let value = single(var, values)?;
                config.send_last_published_item = SendLastItem::parse(value)
                    .ok_or_else(|| not_acceptable(format!("{var}: {value:?} is not supported")))?;
            }
            _ => {}
        }
    }
    Ok(config)
}

/// XEP-0060 §7.1.5: a publish-options precondition holds when every field it names has that
/// value in the node's configuration. Fields this server does not implement are ignored, as
/// when they configure a node (clients send options other servers know, such as
/// `pubsub#deliver_payloads`, and would otherwise fail to publish at all).
pub fn preconditions_met(
    config: &PepNodeConfig,
    fields: &[(String, Vec<String>)],
    max_items_limit: usize,
) -> bool {
    apply(config, fields, max_items_limit).is_ok_and(|wanted| wanted == *config)
}

/// How many items a node with `config` keeps.
pub fn items_kept(config: &PepNodeConfig, max_items_limit: usize) -> usize {
    config
        .max_items
        .map_or(max_items_limit, |n| (n as usize).min(max_items_limit))
}

/// A list field with its choices and current value.
fn choice<'a>(
    var: &str,
    label: &str,
    choices: impl IntoIterator<Item = &'a str>,
    current: &str,
) -> Field {
    choices
        .into_iter()
        .fold(
            Field::new(var, FieldType::ListSingle).label(label),
            |field, choice| field.option(choice, choice),
        )
        .value(current)
}

/// The configuration form of a node (XEP-0060 §8.2.1), with its current values.
pub fn form(config: &PepNodeConfig) -> Element {
    let max_items = config
        .max_items
        .map_or_else(|| "max".to_owned(), |n| n.to_string());
    DataForm::new(FormType::Form)
        .field(Field::form_type(NODE_CONFIG))
        .field(choice(
            ACCESS_MODEL,
            "Who may read the items",
            ["open", "presence", "roster", "whitelist"],
            config.access_model.as_str(),
        ))
        .field(
            Field::new(ROSTER_GROUPS, FieldType::ListMulti)
                .label("Roster groups that may read")
                .values(config.roster_groups_allowed.iter().cloned()),
        )
        .field(Field::boolean(PERSIST_ITEMS, config.persist_items).label("Keep the items"))
        .field(
            Field::new(MAX_ITEMS, FieldType::TextSingle)
                .label("Most items kept")
                .value(max_items),
        )
        .field(choice(
            SEND_LAST,
            "When to send the last item",
            ["never", "on_sub", "on_sub_and_presence"],
            config.send_last_published_item.as_str(),
        ))
        .to_element()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(var, value)| (var.to_string(), vec![value.to_string()]))
            .collect()
    }

    #[test]
    fn a_submitted_form_sets_the_configuration() {
        let form: Element = "<x xmlns='jabber:x:data' type='submit'>\
            <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
            <field var='pubsub#access_model'><value>whitelist</value></field>\
            <field var='pubsub#persist_items'><value>true</value></field>\
            <field var='pubsub#max_items'><value>max</value></field>\
            <field var='pubsub#send_last_published_item'><value>never</value></field>\
            <field var='pubsub#title'><value>ignored</value></field></x>"
            .parse()
            .expect("form");
        let config = apply(&PepNodeConfig::default(), &submitted_fields(&form), 10).expect("ok");
        assert_eq!(
            config,
            PepNodeConfig {
                access_model: AccessModel::Whitelist,
                roster_groups_allowed: vec![],
                persist_items: true,
                max_items: None,
                send_last_published_item: SendLastItem::Never,
                whitelist: vec![],
            }
        );
    }

    #[test]
    fn values_out_of_range_are_refused() {
        let base = PepNodeConfig::default();
        for (var, bad) in [
            (ACCESS_MODEL, "authorize"),
            (MAX_ITEMS, "11"),
            (MAX_ITEMS, "-1"),
            (PERSIST_ITEMS, "yes"),
            (SEND_LAST, "sometimes"),
        ] {
            let err = apply(&base, &fields(&[(var, bad)]), 10).expect_err(bad);
            assert_eq!(err.condition, "not-acceptable", "{var}={bad}");
        }
    }

    #[test]
    fn preconditions_hold_only_when_every_field_matches() {
        let node = PepNodeConfig {
            access_model: AccessModel::Whitelist,
            max_items: None,
            ..PepNodeConfig::default()
        };
        let same = fields(&[
            (ACCESS_MODEL, "whitelist"),
            (PERSIST_ITEMS, "1"),
            (MAX_ITEMS, "max"),
        ]);
        assert!(preconditions_met(&node, &same, 10));
        assert!(preconditions_met(&node, &[], 10));
        assert!(!preconditions_met(
            &node,
            &fields(&[(ACCESS_MODEL, "open")]),
            10
        ));
        assert!(!preconditions_met(&node, &fields(&[(MAX_ITEMS, "10")]), 10));
        assert!(!preconditions_met(
            &node,
            &fields(&[(PERSIST_ITEMS, "false")]),
            10
        ));
        assert!(preconditions_met(
            &node,
            &fields(&[("pubsub#deliver_payloads", "1")]),
            10
        ));
        assert!(!preconditions_met(&node, &fields(&[(MAX_ITEMS, "x")]), 10));
    }

    #[test]
    fn max_is_the_servers_limit() {
        let mut config = PepNodeConfig::default();
        assert_eq!(items_kept(&config, 50), 1);
        config.max_items = None;
        assert_eq!(items_kept(&config, 50), 50);
        config.max_items = Some(80);
        assert_eq!(items_kept(&config, 50), 50);
    }

    #[test]
    fn the_form_reads_back_as_the_configuration() {
        let config = PepNodeConfig {
            access_model: AccessModel::Roster,
            roster_groups_allowed: vec!["Friends".into()],
            persist_items: false,
            max_items: Some(5),
            send_last_published_item: SendLastItem::OnSub,
            whitelist: vec![],
        };
        let read = apply(
            &PepNodeConfig::default(),
            &submitted_fields(&form(&config)),
            10,
        );
        assert_eq!(read.expect("ok"), config);
    }
}
