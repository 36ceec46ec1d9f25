//! Room configuration (XEP-0045 §10.2, the `muc#roomconfig` form) and the record persisted for
//! a room: configuration, affiliations, registered nicks and subject.

use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use minidom::Element;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who may send private messages inside the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    #[default]
    Anyone,
    Participants,
    Moderators,
    None,
}

impl AllowPm {
    fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }
    fn parse(s: &str) -> Option<AllowPm> {
        Some(match s {
            "anyone" => AllowPm::Anyone,
            "participants" => AllowPm::Participants,
            "moderators" => AllowPm::Moderators,
            "none" => AllowPm::None,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// Empty: no password.
    pub password: String,
    /// Real JIDs visible to everyone (non-anonymous) rather than to moderators only.
    pub whois_anyone: bool,
    /// 0: no limit.
    pub max_occupants: usize,
    pub history_length: usize,
    /// Participants (not only moderators) may change the subject.
    pub change_subject: bool,
    pub allow_pm: AllowPm,
    /// Members may invite others into a members-only room.
    pub allow_invites: bool,
    /// Messages are archived (XEP-0313).
    pub archive: bool,
    /// Guests (visitors of the anonymous host) may send private messages to other guests.
    pub guest_pm: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: String::new(),
            whois_anyone: false,
            max_occupants: 0,
            history_length: 20,
            change_subject: false,
            allow_pm: AllowPm::Anyone,
            allow_invites: false,
            archive: true,
            guest_pm: false,
        }
    }
}

/// Affiliations (XEP-0045 §5.2), ordered from least to most privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// Roles (XEP-0045 §5.1), ordered from least to most privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// What is stored for a persistent room.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomRecord {
    pub config: RoomConfig,
    /// Bare JID → affiliation (entries with `None` are not kept).
    pub affiliations: BTreeMap<String, Affiliation>,
    /// Bare JID → registered nick (§7.10).
    pub registered_nicks: BTreeMap<String, String>,
    pub subject: String,
    /// Occupant nick that set the subject.
    pub subject_by: String,
    /// Secret for XEP-0421 occupant ids, stable for the room's life.
    pub occupant_id_secret: String,
}

fn field(
    var: &'static str,
    kind: &'static str,
    label: &'static str,
    values: Vec<String>,
) -> Element {
    Build::new("field", ns::DATA_FORMS)
        .attr("var", var)
        .attr("type", kind)
        .attr("label", label)
        .children(
            values
                .into_iter()
                .map(|v| Build::new("value", ns::DATA_FORMS).text(v).build()),
        )
        .build()
}

fn boolean(value: bool) -> Vec<String> {
    vec![if value { "1" } else { "0" }.to_string()]
}

fn option(label: &str, value: &str) -> Element {
    Build::new("option", ns::DATA_FORMS)
        .attr("label", label.to_string())
        .child(
            Build::new("value", ns::DATA_FORMS)
                .text(value.to_string())
                .build(),
        )
        .build()
}

/// The configuration form sent to an owner (§10.2), filled with the current values.
pub fn form(config: &RoomConfig, owners: Vec<String>, admins: Vec<String>) -> Element {
    let mut whois = field(
        "muc#roomconfig_whois",
        "list-single",
        "Who may discover real JIDs?",
        vec![if config.whois_anyone {
            "anyone"
        } else {
            "moderators"
        }
        .to_string()],
    );
    whois.append_child(option("Moderators only", "moderators"));
    whois.append_child(option("Anyone", "anyone"));
    let mut allow_pm = field(
        "muc#roomconfig_allowpm",
        "list-single",
        "Who may send private messages?",
        vec![config.allow_pm.as_str().to_string()],
    );
    for value in ["anyone", "participants", "moderators", "none"] {
        allow_pm.append_child(option(value, value));
    }
    Build::new("x", ns::DATA_FORMS)
        .attr("type", "form")
        .child(
            Build::new("title", ns::DATA_FORMS)
                .text("Room configuration")
                .build(),
        )
        .child(field(
            "FORM_TYPE",
            "hidden",
            "",
            vec![ns::ROOMCONFIG.to_string()],
        ))
        .child(field(
            "muc#roomconfig_roomname",
            "text-single",
            "Name",
            vec![config.name.clone()],
        ))
        .child(field(
            "muc#roomconfig_roomdesc",
            "text-single",
            "Description",
            vec![config.description.clone()],
        ))
        .child(field(
            "muc#roomconfig_persistentroom",
            "boolean",
            "Persistent",
            boolean(config.persistent),
        ))
        .child(field(
            "muc#roomconfig_publicroom",
            "boolean",
            "Listed in the directory",
            boolean(config.public),
        ))
        .child(field(
            "muc#roomconfig_membersonly",
            "boolean",
            "Members only",
            boolean(config.members_only),
        ))
        .child(field(
            "muc#roomconfig_moderatedroom",
            "boolean",
            "Moderated (only participants with voice may speak)",
            boolean(config.moderated),
        ))
        .child(field(
            "muc#roomconfig_passwordprotectedroom",
            "boolean",
            "Password required",
            boolean(!config.password.is_empty()),
        ))
        .child(field(
            "muc#roomconfig_roomsecret",
            "text-private",
            "Password",
            vec![config.password.clone()],
        ))
        .child(whois)
        .child(field(
            "muc#roomconfig_maxusers",
            "text-single",
            "Maximum occupants (0: no limit)",
            vec![config.max_occupants.to_string()],
        ))
        .child(field(
            "muc#roomconfig_historylength",
            "text-single",
            "Messages shown on joining",
            vec![config.history_length.to_string()],
        ))
        .child(field(
            "muc#roomconfig_changesubject",
            "boolean",
            "Participants may change the subject",
            boolean(config.change_subject),
        ))
        .child(allow_pm)
        .child(field(
            "muc#roomconfig_allowinvites",
            "boolean",
            "Members may invite",
            boolean(config.allow_invites),
        ))
        .child(field(
            "salon#roomconfig_guestpm",
            "boolean",
            "Guests may send private messages to other guests",
            boolean(config.guest_pm),
        ))
        .child(field(
            "muc#roomconfig_enablearchiving",
            "boolean",
            "Archive messages",
            boolean(config.archive),
        ))
        .child(field(
            "muc#roomconfig_roomowners",
            "jid-multi",
            "Owners",
            owners,
        ))
        .child(field(
            "muc#roomconfig_roomadmins",
            "jid-multi",
            "Admins",
            admins,
        ))
        .build()
}

/// A submitted form, applied on top of the current configuration. Owner and admin lists are
/// returned separately since they change affiliations.
pub struct Submitted {
    pub config: RoomConfig,
    pub owners: Option<Vec<String>>,
    pub admins: Option<Vec<String>>,
}

pub fn apply(
    form: &Element,
    current: &RoomConfig,
    limit_history: usize,
) -> Result<Submitted, StanzaError> {
    let bad = |what: String| {
        StanzaError::new(ErrorType::Modify, StanzaCondition::NotAcceptable).with_text(what)
    };
    let mut config = current.clone();
    let mut owners = None;
    let mut admins = None;
    let mut password_protected = None;
    for field in form.children().filter(|c| c.name() == "field") {
        let var = field.attr("var").unwrap_or_default();
        let values: Vec<String> = field
            .children()
            .filter(|v| v.name() == "value")
            .map(|v| v.text())
            .collect();
        let first = values.first().cloned().unwrap_or_default();
        let as_bool = || -> Result<bool, StanzaError> {
            match first.as_str() {
                "1" | "true" => Ok(true),
                "0" | "false" | "" => Ok(false),
                other => Err(bad(format!("{var}: `{other}` is not a boolean"))),
            }
        };
        let as_number = || -> Result<usize, StanzaError> {
            if first.is_empty() {
                return Ok(0);
            }
            first
                .trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("{var}: `{first}` is not a number")))
        };
        match var {
            "FORM_TYPE" if first != ns::ROOMCONFIG => {
                return Err(bad(format!("unknown form type {first}")));
            }
            "muc#roomconfig_roomname" => config.name = first,
            "muc#roomconfig_roomdesc" => config.description = first,
            "muc#roomconfig_persistentroom" => config.persistent = as_bool()?,
            "muc#roomconfig_publicroom" => config.public = as_bool()?,
            "muc#roomconfig_membersonly" => config.members_only = as_bool()?,
            "muc#roomconfig_moderatedroom" => config.moderated = as_bool()?,
            "muc#roomconfig_passwordprotectedroom" => password_protected = Some(as_bool()?),
            "muc#roomconfig_roomsecret" => config.password = first,
            "muc#roomconfig_whois" => {
                config.whois_anyone = match first.as_str() {
                    "anyone" => true,
                    "moderators" | "" => false,
                    other => return Err(bad(format!("{var}: `{other}` is not an option"))),
                }
            }
            "muc#roomconfig_maxusers" => config.max_occupants = as_number()?,
            "muc#roomconfig_historylength" => {
                config.history_length = as_number()?.min(limit_history)
            }
            "muc#roomconfig_changesubject" => config.change_subject = as_bool()?,
            "muc#roomconfig_allowpm" => {
                config.allow_pm = AllowPm::parse(&first)
                    .ok_or_else(|| bad(format!("{var}: `{first}` is not an option")))?
            }
            "muc#roomconfig_allowinvites" => config.allow_invites = as_bool()?,
            "salon#roomconfig_guestpm" => config.guest_pm = as_bool()?,
            "muc#roomconfig_enablearchiving" | "muc#roomconfig_enablelogging" => {
                config.archive = as_bool()?
            }
            "muc#roomconfig_roomowners" => owners = Some(values),
            "muc#roomconfig_roomadmins" => admins = Some(values),
            // Fields we do not offer are ignored, as XEP-0004 allows.
            _ => {}
        }
    }
    if password_protected == Some(false) {
        config.password.clear();
    } else if password_protected == Some(true) && config.password.is_empty() {
        return Err(bad("a password-protected room needs a password".into()));
    }
    Ok(Submitted {
        config,
        owners,
        admins,
    })
}
