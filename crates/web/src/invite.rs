//! The invitation landing page, `/invite/TOKEN` (as Snikket and Prosody's mod_invites_page
//! serve it): what this server is, the `xmpp:` link and its QR code for an app, apps to get per
//! platform, and a sign-up form for the browser. Expired, used-up and unknown links say so.
//! Small and server-rendered: no script, one inline stylesheet.

use crate::{ClientAddress, WebState};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use salon_server::modules::invites;
use salon_server::storage::Invite;
use salon_xml::escape;

/// Apps that open `xmpp:` invitations, by platform (the ones Snikket and XMPP.org suggest).
const APPS: &[(&str, &[(&str, &str)])] = &[
    (
        "Android",
        &[
            ("Conversations", "https://conversations.im/"),
            ("Cheogram", "https://cheogram.com/"),
        ],
    ),
    (
        "iPhone and iPad",
        &[
            ("Monal", "https://monal-im.org/"),
            ("Siskin IM", "https://siskin.im/"),
        ],
    ),
    (
        "Windows and Linux",
        &[
            ("Gajim", "https://gajim.org/"),
            ("Dino (Linux)", "https://dino.im/"),
        ],
    ),
    (
        "macOS",
        &[
            ("Monal", "https://monal-im.org/"),
            ("Beagle IM", "https://beagle.im/"),
        ],
    ),
];

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.6rem}section{margin:1.5rem 0}.qr svg{width:12rem;height:12rem}\
a.button,button{display:inline-block;background:#2b6cb0;color:#fff;padding:.5rem 1rem;border:0;border-radius:.3rem;text-decoration:none;font-size:1rem}\
label{display:block;margin:.5rem 0}input{font-size:1rem;padding:.3rem;width:100%;max-width:20rem}\
.error{color:#a00}.note{color:#555}code{word-break:break-all}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\
         <body>{body}</body></html>",
        escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

fn now() -> i64 {
    salon_server::stanza::now_unix()
}

/// The invitation, or the page that says why there is none to use.
async fn usable(state: &WebState, token: &str) -> Result<Invite, Response> {
    let domain = &state.server.config.domain;
    let found = if token.len() > 64 {
        None
    } else {
        match state.server.storage_for(domain).invite(token).await {
            Ok(found) => found.filter(|i| &i.domain == domain),
            Err(e) => {
                tracing::error!(error = %e, "reading an invitation");
                return Err(page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    "<h1>Something went wrong</h1><p>Please try again later.</p>",
                ));
            }
        }
    };
    let closed = !invites::enabled(&state.server);
    let (title, text) = match found {
        None => ("Invitation not found", "This invitation link is not valid. Check that you copied all of it, or ask for a new one."),
        Some(_) if closed => ("Invitations are closed", "This server does not take new accounts from invitations at the moment."),
        Some(i) if i.expires <= now() => ("Invitation expired", "This invitation has expired. Ask the person who sent it for a new one."),
        Some(i) if i.uses_left == 0 => ("Invitation used up", "This invitation has already been used. Ask the person who sent it for a new one."),
        Some(i) => return Ok(i),
    };
    let status = if text.contains("not valid") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::GONE
    };
    Err(page(
        status,
        title,
        &format!("<h1>{title}</h1><p>{text}</p>"),
    ))
}

fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(192, 192)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

fn invitation_page(invite: &Invite, error: Option<&str>, username: &str) -> Response {
    let domain = escape(&invite.domain);
    let uri = invites::uri(invite);
    let who = match &invite.inviter {
        Some(inviter) => format!(
            "<p><strong>{}</strong> invited you, and will be in your contacts.</p>",
            escape(inviter)
        ),
        None => String::new(),
    };
    let apps: String = APPS
        .iter()
        .map(|(platform, apps)| {
            let links: Vec<String> = apps
                .iter()
                .map(|(name, url)| format!("<a href=\"{url}\">{name}</a>"))
                .collect();
            format!("<li>{platform}: {}</li>", links.join(", "))
        })
        .collect();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let expires = salon_server::stanza::xep82_datetime(invite.expires);
    let body = format!(
        "<h1>You are invited to {domain}</h1>\
         <p>{domain} is a chat server (XMPP, the open standard for messaging): with an account \
         here you can chat with people on this server and on any other XMPP server, from an app \
         on your phone or computer, or in the browser.</p>{who}\
         <section><h2>With an app</h2>\
         <p>Install an app, then open this link on the same device, or scan the code:</p>\
         <p><a class=\"button\" href=\"{uri_attr}\">Open the invitation in your app</a></p>\
         <div class=\"qr\">{qr}</div>\
         <ul>{apps}</ul>\
         <p class=\"note\">The link: <code>{uri_text}</code></p></section>\
         <section><h2>Or here in the browser</h2>\
         <form method=\"post\">{error}\
         <label>Username <input name=\"username\" value=\"{username}\" required maxlength=\"32\" autocomplete=\"username\" pattern=\"[A-Za-z0-9._\\-]+\"></label>\
         <label>Password <input name=\"password\" type=\"password\" required autocomplete=\"new-password\"></label>\
         <button type=\"submit\">Create my account</button></form>\
         <p class=\"note\">Your address will be <em>username</em>@{domain}. This invitation works until {expires}.</p></section>",
        uri_attr = escape(&uri),
        uri_text = escape(&uri),
        qr = qr_svg(&uri),
        username = escape(username),
    );
    page(
        StatusCode::OK,
        &format!("Invitation to {}", invite.domain),
        &body,
    )
}

/// `GET /invite/{token}`.
pub async fn show(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    match usable(&state, &token).await {
        Ok(invite) => invitation_page(&invite, None, ""),
        Err(page) => page,
    }
}

#[derive(serde::Deserialize)]
pub struct SignUp {
    username: String,
    password: String,
}

/// `POST /invite/{token}`: the browser's sign-up.
pub async fn sign_up(
    State(state): State<WebState>,
    client: ClientAddress,
    Path(token): Path<String>,
    Form(form): Form<SignUp>,
) -> Response {
    let invite = match usable(&state, &token).await {
        Ok(invite) => invite,
        Err(page) => return page,
    };
    let from = format!("web sign-up from {}", client.ip);
    match invites::redeem(&state.server, &token, &form.username, &form.password, &from).await {
        Ok(account) => {
            let jid = escape(account.as_str());
            let body = format!(
                "<h1>Welcome!</h1><p>Your account <strong>{jid}</strong> is ready.</p>\
                 <p>Log in with it in an app (see the <a href=\"/invite/{t}\">invitation</a> for \
                 suggestions), or <a href=\"/\">chat in the browser</a>.</p>",
                t = escape(&token)
            );
            page(StatusCode::OK, "Account created", &body)
        }
        Err(error) => {
            let text = error
                .text
                .clone()
                .unwrap_or_else(|| "the account could not be made".into());
            let mut response = invitation_page(&invite, Some(&text), &form.username);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}
