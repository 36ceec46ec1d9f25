//! XEP-0050 ad-hoc commands on the server: the commands node in disco#items (only the commands
//! the requester may run), each command's disco#info, and the execute / next / complete /
//! cancel exchange with sessions that are bounded in number and expire. The commands
//! themselves live beside this file (XEP-0133 administration in `admin.rs`) and elsewhere
//! (XEP-0401 invitations), each implementing [`Command`].

pub mod admin;

use crate::registry::{DiscoNodes, IqHandler, IqKind, IqRequest, IqResponse, IqScope, Registry};
use crate::server::Server;
use crate::stanza::forms::DataForm;
use crate::stanza::Bare;
use crate::stanza::{ns, Build, ErrorType, StanzaCondition, StanzaError};
use dashmap::DashMap;
use minidom::Element;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
/// A command session not continued within this time is forgotten (XEP-0050 §4.6
/// `<session-expired/>`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// Open command sessions per requester, and in all; more are refused with `<resource-constraint/>`.
const SESSIONS_PER_REQUESTER: usize = 8;
const SESSIONS_IN_ALL: usize = 1024;

/// What a command answers at a stage.
pub enum Step {
    /// A form to fill in; the exchange goes on with its submission.
    Form(DataForm),
    /// The command is done, with a note for the user and maybe a result form.
    Done {
        note: Option<String>,
        form: Option<DataForm>,
    },
}

impl Step {
    pub fn done(note: impl Into<String>) -> Step {
        Step::Done {
            note: Some(note.into()),
            form: None,
        }
    }
}

/// One ad-hoc command.
#[async_trait::async_trait]
pub trait Command: Send + Sync {
    fn node(&self) -> &'static str;
    fn name(&self) -> &'static str;
    /// Whether `requester` may see and run it; `admin`: whether it is an administrator
    /// ([`is_admin`]).
    fn allowed(&self, server: &Server, requester: &jid::FullJid, admin: bool) -> bool;
    /// The first stage: usually a form to fill in.
    async fn start(
        &self,
        server: &Arc<Server>,
        requester: &jid::FullJid,
    ) -> Result<Step, StanzaError>;
    /// The submitted form of a session this command started.
    async fn submit(
        &self,
        server: &Arc<Server>,
        requester: &jid::FullJid,
        form: &DataForm,
    ) -> Result<Step, StanzaError>;
}

/// Whether `who` is an administrator (XEP-0133 is theirs alone): listed in the configuration's
/// `admins`, or made one by an invitation (`salon invite create --admin`, a flag on the account
/// in storage, which goes with the account).
pub async fn is_admin(server: &Server, who: &jid::BareJid) -> bool {
    let listed = server
        .config
        .admins
        .iter()
        .any(|a| jid::BareJid::new(a).is_ok_and(|admin| &admin == who));
    if listed {
        return true;
    }
    let (user, domain) = crate::im::roster::account_key(who);
    if !server.is_local_user_host(&domain) || server.is_anonymous_host(&domain) {
        return false;
    }
    match server
        .storage_for(&domain)
        .is_stored_admin(&user, &domain)
        .await
    {
        Ok(admin) => admin,
        Err(e) => {
            tracing::error!(error = %e, account = %who, "reading an administrator flag");
            false
        }
    }
}

/// Whether the sender of `request`, a local session, is an administrator.
async fn requester_is_admin(server: &Server, request: &IqRequest) -> bool {
    match request.from_full() {
        Some(requester) => is_admin(server, &requester.bare()).await,
        None => false,
    }
}

struct Open {
    node: &'static str,
    requester: jid::FullJid,
    started: Instant,
}

struct Commands {
    list: Vec<Arc<dyn Command>>,
    sessions: DashMap<String, Open>,
}

pub fn register(registry: &mut Registry<Server>, list: Vec<Arc<dyn Command>>) {
    let commands = Arc::new(Commands {
        list,
        sessions: DashMap::new(),
    });
    registry.feature(IqScope::Server, NS_COMMANDS);
    registry.iq(
        IqScope::Server,
        IqKind::Set,
        NS_COMMANDS,
        Arc::new(Execute(commands.clone())),
    );
    registry.disco_nodes(IqScope::Server, Arc::new(CommandNodes(commands)));
}

impl Commands {
    fn find(
        &self,
        node: &str,
        requester: &jid::FullJid,
        admin: bool,
        server: &Server,
    ) -> Option<&Arc<dyn Command>> {
        self.list
            .iter()
            .find(|c| c.node() == node && c.allowed(server, requester, admin))
    }

    fn forget_expired(&self) {
        self.sessions
            .retain(|_, open| open.started.elapsed() < SESSION_TIMEOUT);
    }
}

struct CommandNodes(Arc<Commands>);

#[async_trait::async_trait]
impl DiscoNodes<Server> for CommandNodes {
    fn owns(&self, node: &str) -> bool {
        node == NS_COMMANDS || self.0.list.iter().any(|c| c.node() == node)
    }

    async fn info(&self, server: &Arc<Server>, request: &IqRequest, node: &str) -> IqResponse {
        let query = Build::new("query", ns::DISCO_INFO).attr("node", node);
        if node == NS_COMMANDS {
            return Ok(Some(
                query
                    .child(
                        Build::new("identity", ns::DISCO_INFO)
                            .attr("category", "automation")
                            .attr("type", "command-list")
                            .build(),
                    )
                    .build(),
            ));
        }
        // XEP-0050 §2.3: a command's node is a command-node with commands and data forms.
        let admin = requester_is_admin(server, request).await;
        let command = request
            .from_full()
            .and_then(|requester| self.0.find(node, requester, admin, server))
            .ok_or_else(StanzaError::item_not_found)?;
        Ok(Some(
            query
                .child(
                    Build::new("identity", ns::DISCO_INFO)
                        .attr("category", "automation")
                        .attr("type", "command-node")
                        .attr("name", command.name())
                        .build(),
                )
                .child(
                    Build::new("feature", ns::DISCO_INFO)
                        .attr("var", NS_COMMANDS)
                        .build(),
                )
                .child(
                    Build::new("feature", ns::DISCO_INFO)
                        .attr("var", ns::DATA_FORMS)
                        .build(),
                )
                .build(),
        ))
    }

    async fn items(&self, server: &Arc<Server>, request: &IqRequest, node: &str) -> IqResponse {
        if node != NS_COMMANDS {
            return Ok(Some(
                Build::new("query", ns::DISCO_ITEMS)
                    .attr("node", node)
                    .build(),
            ));
        }
        // XEP-0050 §2.2: only what this requester may run, each with the server's address.
        let admin = requester_is_admin(server, request).await;
        let items = self
            .0
            .list
            .iter()
            .filter(|c| {
                request
                    .from_full()
                    .is_some_and(|requester| c.allowed(server, requester, admin))
            })
            .map(|c| {
                Build::new("item", ns::DISCO_ITEMS)
                    .attr("jid", request.to.to_string())
                    .attr("node", c.node())
                    .attr("name", c.name())
                    .build()
            });
        Ok(Some(
            Build::new("query", ns::DISCO_ITEMS)
                .attr("node", NS_COMMANDS)
                .children(items)
                .build(),
        ))
    }
}

struct Execute(Arc<Commands>);

/// The session running a command (found through `find`, so always a full JID by then).
fn requester(request: &IqRequest) -> Result<&jid::FullJid, StanzaError> {
    request.from_full().ok_or_else(StanzaError::item_not_found)
}

fn command_error(
    condition: StanzaCondition,
    kind: ErrorType,
    specific: &str,
    text: &str,
) -> StanzaError {
    let mut error = StanzaError::new(kind, condition).with_text(text);
    error.extra = Some(Box::new(Element::bare(specific, NS_COMMANDS)));
    error
}

#[async_trait::async_trait]
impl IqHandler<Server> for Execute {
    async fn handle(&self, server: &Arc<Server>, request: IqRequest) -> IqResponse {
        let command = request
            .payload()
            .filter(|c| c.name() == "command")
            .ok_or_else(|| StanzaError::bad_request("expected <command/>"))?;
        let node = command
            .attr("node")
            .ok_or_else(|| StanzaError::bad_request("a command needs a node"))?;
        // Commands are run by a local session; another server's entity finds none.
        let admin = requester_is_admin(server, &request).await;
        let handler = request
            .from_full()
            .and_then(|requester| self.0.find(node, requester, admin, server))
            .ok_or_else(|| {
                // Unknown, or not this requester's: the same answer, so nothing is revealed.
                StanzaError::item_not_found().with_text("no such command")
            })?
            .clone();
        let action = command.attr("action").unwrap_or("execute");
        if !matches!(action, "execute" | "next" | "complete" | "cancel" | "prev") {
            return Err(command_error(
                StanzaCondition::BadRequest,
                ErrorType::Modify,
                "malformed-action",
                "unknown action",
            ));
        }
        self.0.forget_expired();
        let Some(session_id) = command.attr("sessionid") else {
            if action == "cancel" {
                return Err(command_error(
                    StanzaCondition::BadRequest,
                    ErrorType::Modify,
                    "bad-sessionid",
                    "nothing to cancel",
                ));
            }
            return self.start(server, &request, handler).await;
        };
        let Some((_, open)) = self.0.sessions.remove_if(session_id, |_, open| {
            request.from_full() == Some(&open.requester) && open.node == node
        }) else {
            return Err(command_error(
                StanzaCondition::BadRequest,
                ErrorType::Modify,
                "bad-sessionid",
                "no such session (it may have expired)",
            ));
        };
        drop(open);
        if action == "cancel" {
            return Ok(Some(reply(node, session_id, "canceled", None, None)));
        }
        if action == "prev" {
            return Err(command_error(
                StanzaCondition::BadRequest,
                ErrorType::Modify,
                "bad-action",
                "these commands have one stage",
            ));
        }
        let form = command
            .get_child("x", ns::DATA_FORMS)
            .map(DataForm::parse)
            .transpose()
            .map_err(|e| StanzaError::bad_request(e.to_string()))?
            .ok_or_else(|| {
                command_error(
                    StanzaCondition::BadRequest,
                    ErrorType::Modify,
                    "bad-payload",
                    "the filled-in form is missing",
                )
            })?;
        let step = handler.submit(server, requester(&request)?, &form).await?;
        Ok(Some(self.answer(
            &request,
            handler.as_ref(),
            session_id,
            step,
        )))
    }
}

impl Execute {
    async fn start(
        &self,
        server: &Arc<Server>,
        request: &IqRequest,
        handler: Arc<dyn Command>,
    ) -> IqResponse {
        let mine = self
            .0
            .sessions
            .iter()
            .filter(|open| request.from_full() == Some(&open.requester))
            .count();
        if mine >= SESSIONS_PER_REQUESTER || self.0.sessions.len() >= SESSIONS_IN_ALL {
            return Err(
                StanzaError::resource_constraint().with_text("too many open command sessions")
            );
        }
        let session_id = format!("{:016x}", rand::random::<u64>());
        let step = handler.start(server, requester(request)?).await?;
        Ok(Some(self.answer(
            request,
            handler.as_ref(),
            &session_id,
            step,
        )))
    }

    /// The `<command/>` answer; a form keeps the session open.
    fn answer(
        &self,
        request: &IqRequest,
        handler: &dyn Command,
        session_id: &str,
        step: Step,
    ) -> Element {
        let node = handler.node();
        match step {
            Step::Form(form) => {
                // A step is only reached by a session (`find` took a full JID).
                if let Some(requester) = request.from_full() {
                    self.0.sessions.insert(
                        session_id.to_string(),
                        Open {
                            node,
                            requester: requester.clone(),
                            started: Instant::now(),
                        },
                    );
                }
                let actions = Build::new("actions", NS_COMMANDS)
                    .attr("execute", "complete")
                    .child(Element::bare("complete", NS_COMMANDS))
                    .build();
                reply(
                    node,
                    session_id,
                    "executing",
                    Some(actions),
                    Some(form.to_element()),
                )
            }
            Step::Done { note, form } => {
                let note = note.map(|text| {
                    Build::new("note", NS_COMMANDS)
                        .attr("type", "info")
                        .text(text)
                        .build()
                });
                let form = form.map(|f| f.to_element());
                reply(node, session_id, "completed", note, form)
            }
        }
    }
}

fn reply(
    node: &str,
    session_id: &str,
    status: &str,
    first: Option<Element>,
    form: Option<Element>,
) -> Element {
    let mut command = Build::new("command", NS_COMMANDS)
        .attr("node", node)
        .attr("sessionid", session_id)
        .attr("status", status);
    if let Some(first) = first {
        command = command.child(first);
    }
    if let Some(form) = form {
        command = command.child(form);
    }
    command.build()
}
