//! Room configuration (XEP-0045 §10.2, the `muc#roomconfig` form) and the record persisted for
//! a room: configuration, affiliations, registered nicks and subject.

use crate::stanza::forms::{DataForm, Field, FieldType, FormType};
use crate::stanza::{ns, ErrorType, StanzaCondition, StanzaError};
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
    /// XEP-0500 slow mode: seconds an occupant waits between two messages (0: off). Admins
    /// and owners are not limited.
    pub slow_mode_duration: u64,
    /// Seconds a ban lasts when the moderator names no duration (0: until lifted; `None`: the
    /// service's `muc.ban_duration_seconds`).
    pub ban_duration: Option<u64>,
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
            slow_mode_duration: 0,
            ban_duration: None,
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
    /// The room was created by a guest: its archive keeps messages for a shorter time
    /// (`muc.guest_room_archive_retention_hours`).
    pub created_by_guest: bool,
    /// Banned guest's bare JID → the address banned with it (IPv4, or IPv6 `…::/64`).
    pub banned_addresses: BTreeMap<String, String>,
    /// Banned guest's bare JID → the id of its browser (`urn:salon:visitor:0`) banned with it.
    pub banned_browsers: BTreeMap<String, String>,
    /// Banned bare JID → when its ban ends (Unix seconds); absent: until lifted.
    pub ban_expires: BTreeMap<String, i64>,
    /// The room's vCard (XEP-0486 avatars), serialised; empty when none is set.
    pub vcard: String,
}

/// The configuration form sent to an owner (§10.2), filled with the current values.
pub fn form(config: &RoomConfig, owners: Vec<String>, admins: Vec<String>) -> Element {
    let field = |var: &str, kind: FieldType, label: &str| Field::new(var, kind).label(label);
    let text = |var: &str, label: &str, value: String| {
        field(var, FieldType::TextSingle, label).value(value)
    };
    let boolean = |var: &str, label: &str, value: bool| Field::boolean(var, value).label(label);
    let whois = field(
        "muc#roomconfig_whois",
        FieldType::ListSingle,
        "Who may discover real JIDs?",
    )
    .value(if config.whois_anyone {
        "anyone"
    } else {
        "moderators"
    })
    .option("Moderators only", "moderators")
    .option("Anyone", "anyone");
    let mut allow_pm = field(
        "muc#roomconfig_allowpm",
        FieldType::ListSingle,
        "Who may send private messages?",
    )
    .value(config.allow_pm.as_str());
    for value in ["anyone", "participants", "moderators", "none"] {
        allow_pm = allow_pm.option(value, value);
    }
    DataForm::new(FormType::Form)
        .title("Room configuration")
        // The empty label is what this form has always carried.
        .field(Field::form_type(ns::ROOMCONFIG).label(""))
        .field(text("muc#roomconfig_roomname", "Name", config.name.clone()))
        .field(text(
            "muc#roomconfig_roomdesc",
            "Description",
            config.description.clone(),
        ))
        .field(boolean(
            "muc#roomconfig_persistentroom",
            "Persistent",
            config.persistent,
        ))
        .field(boolean(
            "muc#roomconfig_publicroom",
            "Listed in the directory",
            config.public,
        ))
        .field(boolean(
            "muc#roomconfig_membersonly",
            "Members only",
            config.members_only,
        ))
        .field(boolean(
            "muc#roomconfig_moderatedroom",
            "Moderated (only participants with voice may speak)",
            config.moderated,
        ))
        .field(boolean(
            "muc#roomconfig_passwordprotectedroom",
            "Password required",
            !config.password.is_empty(),
        ))
        .field(
            field(
                "muc#roomconfig_roomsecret",
                FieldType::TextPrivate,
                "Password",
            )
            .value(config.password.clone()),
        )
        .field(whois)
        .field(text(
            "muc#roomconfig_maxusers",
            "Maximum occupants (0: no limit)",
            config.max_occupants.to_string(),
        ))
        .field(text(
            "muc#roomconfig_historylength",
            "Messages shown on joining",
            config.history_length.to_string(),
        ))
        .field(boolean(
            "muc#roomconfig_changesubject",
            "Participants may change the subject",
            config.change_subject,
        ))
        .field(allow_pm)
        .field(boolean(
            "muc#roomconfig_allowinvites",
            "Members may invite",
            config.allow_invites,
        ))
        .field(boolean(
            "salon#roomconfig_guestpm",
            "Guests may send private messages to other guests",
            config.guest_pm,
        ))
        .field(text(
            "muc#roomconfig_slow_mode_duration",
            "Slow mode: seconds between two messages of an occupant (0: off)",
            config.slow_mode_duration.to_string(),
        ))
        .field(text(
            "salon#roomconfig_banduration",
            "Ban duration: seconds a ban lasts unless the moderator says (empty: the server's \
             default; 0: until lifted)",
            config
                .ban_duration
                .map(|seconds| seconds.to_string())
                .unwrap_or_default(),
        ))
        .field(boolean(
            "muc#roomconfig_enablearchiving",
            "Archive messages",
            config.archive,
        ))
        .field(field("muc#roomconfig_roomowners", FieldType::JidMulti, "Owners").values(owners))
        .field(field("muc#roomconfig_roomadmins", FieldType::JidMulti, "Admins").values(admins))
        .to_element()
}

/// A submitted form, applied on top of the current configuration. Owner and admin lists are
/// returned separately since they change affiliations.
pub struct Submitted {
    pub config: RoomConfig,
    pub owners: Option<Vec<String>>,
    pub admins: Option<Vec<String>>,
}

pub fn apply(
    form: &DataForm,
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
    for field in &form.fields {
        let var = field.var.as_deref().unwrap_or_default();
        let values = field.values.clone();
        let first = field.first_value().unwrap_or_default().to_string();
        let as_bool = || field.as_bool().map_err(|e| bad(e.to_string()));
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
            "muc#roomconfig_slow_mode_duration" => config.slow_mode_duration = as_number()? as u64,
            "salon#roomconfig_banduration" => {
                config.ban_duration = match first.trim() {
                    "" => None,
                    _ => Some(as_number()? as u64),
                }
            }
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
