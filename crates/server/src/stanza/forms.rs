//! XEP-0004 data forms: one builder for every form the server sends (room configuration,
//! registration, archive query, XEP-0128 service information) and one reader for the forms
//! clients submit, with the field accessors of XEP-0004 §3.3.

use super::{ns, Build};
use minidom::Element;

/// The `type` of a form (XEP-0004 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormType {
    Cancel,
    Form,
    Result,
    Submit,
}

impl FormType {
    pub fn as_str(self) -> &'static str {
        match self {
            FormType::Cancel => "cancel",
            FormType::Form => "form",
            FormType::Result => "result",
            FormType::Submit => "submit",
        }
    }

    fn parse(value: &str) -> Option<FormType> {
        Some(match value {
            "cancel" => FormType::Cancel,
            "form" => FormType::Form,
            "result" => FormType::Result,
            "submit" => FormType::Submit,
            _ => return None,
        })
    }
}

/// The `type` of a field (XEP-0004 §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Boolean,
    Fixed,
    Hidden,
    JidMulti,
    JidSingle,
    ListMulti,
    ListSingle,
    TextMulti,
    TextPrivate,
    TextSingle,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Fixed => "fixed",
            FieldType::Hidden => "hidden",
            FieldType::JidMulti => "jid-multi",
            FieldType::JidSingle => "jid-single",
            FieldType::ListMulti => "list-multi",
            FieldType::ListSingle => "list-single",
            FieldType::TextMulti => "text-multi",
            FieldType::TextPrivate => "text-private",
            FieldType::TextSingle => "text-single",
        }
    }

    fn parse(value: &str) -> Option<FieldType> {
        Some(match value {
            "boolean" => FieldType::Boolean,
            "fixed" => FieldType::Fixed,
            "hidden" => FieldType::Hidden,
            "jid-multi" => FieldType::JidMulti,
            "jid-single" => FieldType::JidSingle,
            "list-multi" => FieldType::ListMulti,
            "list-single" => FieldType::ListSingle,
            "text-multi" => FieldType::TextMulti,
            "text-private" => FieldType::TextPrivate,
            "text-single" => FieldType::TextSingle,
            _ => return None,
        })
    }
}

/// What a form or one of its fields got wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("not a jabber:x:data form")]
    NotAForm,
    #[error("{var}: `{value}` is not a boolean")]
    NotABoolean { var: String, value: String },
}

/// One `<option/>` of a list field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldOption {
    pub label: Option<String>,
    pub value: String,
}

/// One `<field/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Field {
    /// Absent only on `fixed` fields.
    pub var: Option<String>,
    /// `None` leaves the attribute out: XEP-0004 then reads `text-single`, and a submitted form
    /// may omit it altogether (XEP-0068 §5).
    pub kind: Option<FieldType>,
    pub label: Option<String>,
    pub required: bool,
    pub values: Vec<String>,
    pub options: Vec<FieldOption>,
}

impl Field {
    /// A field of this name and type, with no value yet.
    pub fn new(var: &str, kind: FieldType) -> Field {
        Field {
            var: Some(var.to_string()),
            kind: Some(kind),
            ..Field::default()
        }
    }

    /// A field without a `type` attribute (text-single by default).
    pub fn untyped(var: &str) -> Field {
        Field {
            var: Some(var.to_string()),
            ..Field::default()
        }
    }

    /// The hidden `FORM_TYPE` field naming the form's namespace (XEP-0068).
    pub fn form_type(namespace: &str) -> Field {
        Field::new("FORM_TYPE", FieldType::Hidden).value(namespace)
    }

    /// A boolean field, written `1` or `0`.
    pub fn boolean(var: &str, value: bool) -> Field {
        Field::new(var, FieldType::Boolean).value(if value { "1" } else { "0" })
    }

    pub fn label(mut self, label: impl Into<String>) -> Field {
        self.label = Some(label.into());
        self
    }

    pub fn required(mut self) -> Field {
        self.required = true;
        self
    }

    /// Add a value (fields of the `-multi` types take several).
    pub fn value(mut self, value: impl Into<String>) -> Field {
        self.values.push(value.into());
        self
    }

    pub fn values(mut self, values: impl IntoIterator<Item = impl Into<String>>) -> Field {
        self.values.extend(values.into_iter().map(Into::into));
        self
    }

    /// Add an option to a list field.
    pub fn option(mut self, label: impl Into<String>, value: impl Into<String>) -> Field {
        self.options.push(FieldOption {
            label: Some(label.into()),
            value: value.into(),
        });
        self
    }

    /// The first value, if any.
    pub fn first_value(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }

    /// The first value read as a boolean (XEP-0004 §3.3: `1` or `true`, `0` or `false`). A
    /// field with no value, or an empty one, reads as false: that is how clients send an
    /// unticked box.
    pub fn as_bool(&self) -> Result<bool, FormError> {
        match self.first_value().unwrap_or_default() {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            other => Err(FormError::NotABoolean {
                var: self.var.clone().unwrap_or_default(),
                value: other.to_string(),
            }),
        }
    }

    /// The `<field/>` element: `<required/>`, the values, then the options, in the order of the
    /// XEP-0004 schema.
    pub fn to_element(&self) -> Element {
        let value = |text: &str| {
            Build::new("value", ns::DATA_FORMS)
                .text(text.to_string())
                .build()
        };
        Build::new("field", ns::DATA_FORMS)
            .attr_opt("var", self.var.clone())
            .attr_opt("type", self.kind.map(FieldType::as_str))
            .attr_opt("label", self.label.clone())
            .children(
                self.required
                    .then(|| Element::bare("required", ns::DATA_FORMS)),
            )
            .children(self.values.iter().map(|v| value(v)))
            .children(self.options.iter().map(|option| {
                Build::new("option", ns::DATA_FORMS)
                    .attr_opt("label", option.label.clone())
                    .child(value(&option.value))
                    .build()
            }))
            .build()
    }

    fn parse(element: &Element) -> Field {
        let values = |parent: &Element| -> Vec<String> {
            parent
                .children()
                .filter(|c| c.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect()
        };
        Field {
            var: element.attr("var").map(str::to_string),
            kind: element.attr("type").and_then(FieldType::parse),
            label: element.attr("label").map(str::to_string),
            required: element.get_child("required", ns::DATA_FORMS).is_some(),
            values: values(element),
            options: element
                .children()
                .filter(|c| c.is("option", ns::DATA_FORMS))
                .map(|option| FieldOption {
                    label: option.attr("label").map(str::to_string),
                    value: values(option).into_iter().next().unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A data form (`<x xmlns='jabber:x:data'/>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataForm {
    /// Required by XEP-0004; `None` only on a received form that had no (known) type, which
    /// each reader judges for itself.
    pub kind: Option<FormType>,
    pub title: Option<String>,
    pub instructions: Option<String>,
    /// In order, the `FORM_TYPE` field included (first, by XEP-0068 convention).
    pub fields: Vec<Field>,
}

impl DataForm {
    /// An empty form of this type.
    pub fn new(kind: FormType) -> DataForm {
        DataForm {
            kind: Some(kind),
            title: None,
            instructions: None,
            fields: Vec::new(),
        }
    }

    pub fn title(mut self, title: impl Into<String>) -> DataForm {
        self.title = Some(title.into());
        self
    }

    pub fn instructions(mut self, instructions: impl Into<String>) -> DataForm {
        self.instructions = Some(instructions.into());
        self
    }

    pub fn field(mut self, field: Field) -> DataForm {
        self.fields.push(field);
        self
    }

    pub fn fields(mut self, fields: impl IntoIterator<Item = Field>) -> DataForm {
        self.fields.extend(fields);
        self
    }

    /// The `<x/>` element.
    pub fn to_element(&self) -> Element {
        let text = |name: &str, text: &Option<String>| {
            text.as_ref()
                .map(|t| Build::new(name, ns::DATA_FORMS).text(t.clone()).build())
        };
        Build::new("x", ns::DATA_FORMS)
            .attr_opt("type", self.kind.map(FormType::as_str))
            .children(text("title", &self.title))
            .children(text("instructions", &self.instructions))
            .children(self.fields.iter().map(Field::to_element))
            .build()
    }

    /// Read a received form. Lenient as XEP-0004 asks of receivers: unknown field types and
    /// elements are ignored, and nothing is checked against a form definition.
    pub fn parse(element: &Element) -> Result<DataForm, FormError> {
        if !element.is("x", ns::DATA_FORMS) {
            return Err(FormError::NotAForm);
        }
        let text = |name: &str| element.get_child(name, ns::DATA_FORMS).map(Element::text);
        Ok(DataForm {
            kind: element.attr("type").and_then(FormType::parse),
            title: text("title"),
            instructions: text("instructions"),
            fields: element
                .children()
                .filter(|c| c.is("field", ns::DATA_FORMS))
                .map(Field::parse)
                .collect(),
        })
    }

    /// The value of the `FORM_TYPE` field: the namespace the form belongs to.
    pub fn form_type(&self) -> Option<&str> {
        self.value("FORM_TYPE")
    }

    /// The first field of this name.
    pub fn get(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var.as_deref() == Some(var))
    }

    /// The first value of a field.
    pub fn value(&self, var: &str) -> Option<&str> {
        self.get(var).and_then(Field::first_value)
    }

    /// All values of a field (none if it is absent).
    pub fn values(&self, var: &str) -> &[String] {
        self.get(var)
            .map(|f| f.values.as_slice())
            .unwrap_or_default()
    }

    /// A boolean field: `None` if absent, as [`Field::as_bool`] otherwise.
    pub fn boolean(&self, var: &str) -> Result<Option<bool>, FormError> {
        self.get(var).map(Field::as_bool).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salon_xml::serialize;

    fn xml(text: &str) -> Element {
        text.parse().expect("test XML parses")
    }

    #[test]
    fn builds_fields_in_schema_order() {
        let form = DataForm::new(FormType::Form)
            .title("Pick")
            .field(Field::form_type("urn:example"))
            .field(
                Field::new("colour", FieldType::ListSingle)
                    .label("Colour")
                    .required()
                    .value("red")
                    .option("Red", "red"),
            )
            .field(Field::untyped("note").value(""));
        assert_eq!(
            String::from_utf8(serialize(&form.to_element())).unwrap(),
            "<x xmlns='jabber:x:data' type='form'><title>Pick</title>\
             <field type='hidden' var='FORM_TYPE'><value>urn:example</value></field>\
             <field label='Colour' type='list-single' var='colour'><required/><value>red</value>\
             <option label='Red'><value>red</value></option></field>\
             <field var='note'><value></value></field></x>"
        );
    }

    #[test]
    fn a_built_form_reads_back() {
        let form = DataForm::new(FormType::Result)
            .field(Field::form_type("urn:example"))
            .field(Field::new("jids", FieldType::JidMulti).values(["a@x", "b@x"]))
            .field(Field::boolean("on", true));
        assert_eq!(DataForm::parse(&form.to_element()), Ok(form));
    }

    #[test]
    fn reads_a_submitted_form() {
        let form = DataForm::parse(&xml("<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>urn:example</value></field>\
             <field var='a'><value>true</value></field>\
             <field var='b'><value>0</value></field>\
             <field var='c'/>\
             <field var='d'><value>maybe</value></field>\
             <field var='m'><value>1</value><value>2</value></field></x>"))
        .unwrap();
        assert_eq!(form.kind, Some(FormType::Submit));
        assert_eq!(form.form_type(), Some("urn:example"));
        assert_eq!(form.boolean("a"), Ok(Some(true)));
        assert_eq!(form.boolean("b"), Ok(Some(false)));
        assert_eq!(form.boolean("c"), Ok(Some(false)));
        assert_eq!(form.boolean("absent"), Ok(None));
        assert_eq!(
            form.boolean("d").unwrap_err().to_string(),
            "d: `maybe` is not a boolean"
        );
        assert_eq!(form.values("m"), ["1", "2"]);
        assert_eq!(form.value("m"), Some("1"));
        assert!(form.values("absent").is_empty());
    }

    #[test]
    fn a_form_without_a_known_type_still_reads() {
        let form = DataForm::parse(&xml("<x xmlns='jabber:x:data' type='other'/>")).unwrap();
        assert_eq!(form.kind, None);
        assert_eq!(
            DataForm::parse(&xml("<x xmlns='urn:other'/>")),
            Err(FormError::NotAForm)
        );
    }
}
