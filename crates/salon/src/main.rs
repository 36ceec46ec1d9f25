//! The `salon` command: run the server, check a configuration, manage accounts and bans.
//! Every failure exits non-zero with one line saying what went wrong; configuration errors
//! exit with code 2 and name the file, line and key.

mod listeners;
mod room_cli;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use listeners::Listeners;
use salon_server::config::Config;
use salon_server::session::sasl::derive_credentials;
use salon_server::storage::prelude::*;
use salon_server::storage::StorageError;
use salon_store::SqliteStorage;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// jemalloc rather than the C library's allocator: see Cargo.toml, where it is chosen.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "salon",
    version,
    about = "Salon: an XMPP server where a chat room is a link"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without --config: a development setup on localhost.
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print the effective settings.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage accounts (works whether the server runs or not).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Ban addresses, networks and accounts from the whole server (works whether the server
    /// runs or not; a running server applies a change within seconds).
    Ban {
        #[command(subcommand)]
        action: BanAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Invite links of members-only rooms (works whether the server runs or not).
    Room {
        #[command(subcommand)]
        action: room_cli::RoomAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
    /// Invitations that make an account on `domain` (works whether the server runs or not).
    Invite {
        #[command(subcommand)]
        action: InviteAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum InviteAction {
    /// Make an invitation; prints its web page and its xmpp: URI.
    Create {
        /// Accounts it may make. Default: 1.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it works, like 30m, 12h, 7d. Default: 7d.
        #[arg(long, default_value = "7d")]
        expires: String,
        /// The accounts it makes become administrators: they may run the XEP-0133 commands
        /// (add and delete users, announcements, ...) like those in `admins`. The flag is kept
        /// with the account in the database and goes when the account is deleted.
        #[arg(long)]
        admin: bool,
    },
    /// List invitations with their uses left and expiry.
    List,
    /// Revoke an invitation.
    Revoke { token: String },
}

#[derive(Subcommand)]
enum BanAction {
    /// Refuse connections and logins from an IP address (an IPv6 address: its /64), a network
    /// (address/length), or logins of an account (user@domain) or of a whole domain.
    Add {
        target: String,
        /// How long, like 30m, 12h, 7d; without it, until removed.
        #[arg(long)]
        duration: Option<String>,
    },
    /// List the bans in force.
    List,
    /// Lift a ban.
    Remove { target: String },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account. Without --password, asks for it (or reads one line from stdin).
    Add {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Change an account's password (asks for it, or reads one line from stdin).
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and everything stored for it.
    Del { jid: String },
    /// List accounts, optionally of one domain.
    List { domain: Option<String> },
}

/// A failure with the exit code it deserves.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("salon: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(path) => Config::load(path).map_err(|e| Failure {
            code: 2,
            message: e.to_string(),
        }),
        None => Ok(Config::development()),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let runtime = |worker_threads: usize| {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if worker_threads > 0 {
            builder.worker_threads(worker_threads);
        }
        builder
            .enable_all()
            .build()
            .context("starting the async runtime")
    };
    match cli.command {
        Command::Serve { config } => {
            let config = load_config(config.as_ref())?;
            init_logging(&config.log.level);
            runtime(config.worker_threads)?.block_on(serve(config))?;
        }
        Command::Check { config } => {
            let config = load_config(config.as_ref())?;
            print!("{}", config.describe());
            // Unreadable or mismatched certificate files fail here as they would in `serve`
            // (exit code 1), before anyone restarts a server on them.
            if let Some(found) = salon_server::tls::check_configured(&config)? {
                println!("{found}");
            }
            println!("configuration OK");
        }
        Command::User { action, config } => {
            let config = load_config(config.as_ref())?;
            runtime(1)?.block_on(user(&config, action))?;
        }
        Command::Invite { action, config } => {
            let config = load_config(config.as_ref())?;
            runtime(1)?.block_on(invite(&config, action))?;
        }
        Command::Room { action, config } => {
            let config = load_config(config.as_ref())?;
            runtime(1)?.block_on(async {
                let storage = open_storage(&config).await?;
                room_cli::room(&config, &*storage, action).await
            })?;
        }
        Command::Ban { action, config } => {
            let config = load_config(config.as_ref())?;
            runtime(1)?.block_on(ban(&config, action))?;
        }
    }
    Ok(())
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn open_storage(config: &Config) -> anyhow::Result<Arc<SqliteStorage>> {
    let path = config.data_dir.join("salon.db");
    let storage = SqliteStorage::open(&path)
        .await
        .with_context(|| format!("opening the database {}", path.display()))?;
    Ok(Arc::new(storage))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let storage = open_storage(&config).await?;
    let server = salon_server::build(config, storage)?;
    tracing::info!(
        domain = %server.config.domain,
        anonymous = server.config.anonymous_domain().unwrap_or("off"),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "Salon {} starting",
        env!("CARGO_PKG_VERSION")
    );
    raise_open_file_limit();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    server.start().await;
    let listeners = Listeners::bind_all(&server).await?;
    announce_hosts(&server.config);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    server.shutdown().await;
    listeners.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// What a first-time operator looks for in the log: which host serves what, and where the
/// web client is (the listeners' addresses are logged as they are bound).
fn announce_hosts(config: &Config) {
    let or_off = |host: Option<&str>| host.unwrap_or("off").to_string();
    tracing::info!(
        accounts = %config.domain,
        guests = %or_off(config.anonymous_domain()),
        rooms = %or_off(config.muc.as_ref().map(|m| m.domain.as_str())),
        uploads = %or_off(config.upload.as_ref().map(|u| u.domain.as_str())),
        "hosts"
    );
    match config.web_base_url() {
        Some(base) if config.anonymous.is_some() && config.muc.is_some() => tracing::info!(
            "web client: open {base}/join/ROOM to chat in ROOM (any name), or {base}/ to pick one"
        ),
        Some(base) => tracing::info!(
            "web client at {base}/ needs [anonymous] and [muc] to let visitors in without an account"
        ),
        None if config.listen.https.is_some() => tracing::info!(
            "web client on the HTTPS listener at /join/ROOM (set http.public_url to see its address here)"
        ),
        None => tracing::info!("no web client: no HTTP listener (listen.http or listen.https)"),
    }
}

/// Every connection is a file descriptor, and the usual soft limit (1024) is reached long before
/// memory or CPU is: raise it to the hard limit, and say what it is.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
    tracing::info!(
        open_files = limit.rlim_cur,
        "open-file limit (each connection uses one)"
    );
}

/// Split and validate an account address for the CLI.
fn account(config: &Config, address: &str) -> Result<(String, String), Failure> {
    let bare = jid::BareJid::new(address).map_err(|e| Failure {
        code: 1,
        message: format!("`{address}` is not a valid JID: {e}"),
    })?;
    let Some(node) = bare.node() else {
        return Err(Failure {
            code: 1,
            message: format!("`{address}` has no user part; write user@{}", config.domain),
        });
    };
    if bare.domain().as_str() != config.domain {
        return Err(Failure {
            code: 1,
            message: format!(
                "accounts live on {}; `{address}` is on another host",
                config.domain
            ),
        });
    }
    Ok((
        node.as_str().to_string(),
        bare.domain().as_str().to_string(),
    ))
}

fn read_password(given: Option<String>) -> Result<String, Failure> {
    let password = match given {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("Password: ").context("reading the password")?;
            let again = rpassword::prompt_password("Again: ").context("reading the password")?;
            if first != again {
                return Err(Failure {
                    code: 1,
                    message: "the passwords differ".into(),
                });
            }
            first
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        return Err(Failure {
            code: 1,
            message: "the password must not be empty".into(),
        });
    }
    Ok(password)
}

async fn user(config: &Config, action: UserAction) -> Result<(), Failure> {
    let storage = open_storage(config).await?;
    let not_found = |jid: &str| Failure {
        code: 1,
        message: format!("no account {jid}"),
    };
    match action {
        UserAction::Add { jid, password } => {
            let (user, domain) = account(config, &jid)?;
            let password = read_password(password)?;
            let credentials = tokio::task::spawn_blocking(move || derive_credentials(&password))
                .await
                .context("hashing the password")?;
            match storage.create_account(&user, &domain, &credentials).await {
                Ok(()) => println!("created {user}@{domain}"),
                Err(StorageError::AlreadyExists) => {
                    return Err(Failure {
                        code: 1,
                        message: format!("{user}@{domain} already exists"),
                    })
                }
                Err(e) => return Err(anyhow::Error::from(e).into()),
            }
        }
        UserAction::Passwd { jid, password } => {
            let (user, domain) = account(config, &jid)?;
            let password = read_password(password)?;
            let credentials = tokio::task::spawn_blocking(move || derive_credentials(&password))
                .await
                .context("hashing the password")?;
            match storage.set_credentials(&user, &domain, &credentials).await {
                Ok(()) => println!("password changed for {user}@{domain}"),
                Err(StorageError::NotFound) => return Err(not_found(&jid)),
                Err(e) => return Err(anyhow::Error::from(e).into()),
            }
        }
        UserAction::Del { jid } => {
            let (user, domain) = account(config, &jid)?;
            match storage.delete_account(&user, &domain).await {
                Ok(()) => println!("deleted {user}@{domain}"),
                Err(StorageError::NotFound) => return Err(not_found(&jid)),
                Err(e) => return Err(anyhow::Error::from(e).into()),
            }
        }
        UserAction::List { domain } => {
            let accounts = storage
                .list_accounts(domain.as_deref())
                .await
                .map_err(anyhow::Error::from)?;
            for account in accounts {
                println!("{account}");
            }
        }
    }
    storage.flush().await.map_err(anyhow::Error::from)?;
    Ok(())
}

async fn ban(config: &Config, action: BanAction) -> Result<(), Failure> {
    use salon_server::bans::{parse_duration, BanTarget};
    let invalid = |message: String| Failure { code: 1, message };
    let storage = open_storage(config).await?;
    let now = chrono::Utc::now().timestamp();
    let date = |unix: i64| {
        chrono::DateTime::from_timestamp(unix, 0).map_or_else(
            || unix.to_string(),
            |d| d.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
    };
    match action {
        BanAction::Add { target, duration } => {
            let target = BanTarget::parse(&target).map_err(invalid)?.normalised();
            let until = match duration {
                Some(duration) => {
                    let seconds = parse_duration(&duration).map_err(invalid)?.as_secs();
                    Some(now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX)))
                }
                None => None,
            };
            let ban = salon_server::storage::Ban {
                target: target.clone(),
                created: now,
                until,
            };
            storage.add_ban(&ban).await.map_err(anyhow::Error::from)?;
            match until {
                Some(until) => println!("banned {target} until {}", date(until)),
                None => println!("banned {target} until removed"),
            }
        }
        BanAction::List => {
            let bans = storage.bans(now).await.map_err(anyhow::Error::from)?;
            for ban in bans {
                let until = ban.until.map_or_else(
                    || "until removed".to_string(),
                    |u| format!("until {}", date(u)),
                );
                println!("{}\tsince {}\t{until}", ban.target, date(ban.created));
            }
        }
        BanAction::Remove { target } => {
            let target = BanTarget::parse(&target).map_err(invalid)?.normalised();
            match storage.remove_ban(&target).await {
                Ok(()) => println!("lifted the ban on {target}"),
                Err(StorageError::NotFound) => {
                    return Err(invalid(format!("no ban on {target}")));
                }
                Err(e) => return Err(anyhow::Error::from(e).into()),
            }
        }
    }
    storage.flush().await.map_err(anyhow::Error::from)?;
    Ok(())
}

async fn invite(config: &Config, action: InviteAction) -> Result<(), Failure> {
    use salon_server::modules::invites;
    let storage = open_storage(config).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    match action {
        InviteAction::Create {
            uses,
            expires,
            admin,
        } => {
            let seconds = invites::parse_duration(&expires).ok_or_else(|| Failure {
                code: 2,
                message: format!("--expires {expires}: expected a duration like 30m, 12h, 7d"),
            })?;
            if config.registration == salon_server::config::Registration::Closed {
                eprintln!(
                    "salon: note: registration = \"closed\" in the configuration; the \
                     invitation works once it is \"invite\" or \"open\""
                );
            }
            let mut invite = invites::new_invite(&config.domain, None, uses, seconds, now);
            invite.admin = admin;
            storage
                .create_invite(&invite)
                .await
                .map_err(anyhow::Error::from)?;
            if let Some(url) = invites::landing_url(config, &invite) {
                println!("{url}");
            }
            println!("{}", invites::uri(&invite));
            println!(
                "uses: {}, expires in {}{}",
                invite.uses_left,
                human_seconds(invite.expires - now),
                if admin { ", makes administrators" } else { "" }
            );
        }
        InviteAction::List => {
            for invite in storage
                .invites(&config.domain)
                .await
                .map_err(anyhow::Error::from)?
            {
                let state = if invite.expires <= now {
                    "expired".to_string()
                } else if invite.uses_left == 0 {
                    "used up".to_string()
                } else {
                    format!(
                        "{} uses left, expires in {}",
                        invite.uses_left,
                        human_seconds(invite.expires - now)
                    )
                };
                let by = invite.inviter.as_deref().unwrap_or("operator");
                let admin = if invite.admin { "  admin" } else { "" };
                println!("{}  {state}  by {by}{admin}", invite.token);
            }
        }
        InviteAction::Revoke { token } => match storage.delete_invite(&token).await {
            Ok(()) => println!("revoked {token}"),
            Err(StorageError::NotFound) => {
                return Err(Failure {
                    code: 1,
                    message: format!("no invitation {token}"),
                })
            }
            Err(e) => return Err(anyhow::Error::from(e).into()),
        },
    }
    Ok(())
}

pub(crate) fn human_seconds(seconds: i64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}m", (s.max(0) + 59) / 60),
    }
}
