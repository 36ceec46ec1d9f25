//! XEP-0156 discovery: `/.well-known/host-meta` (XRD) and `host-meta.json` (JRD) name the
//! WebSocket and BOSH endpoints, so clients given only a domain find how to connect.

use crate::{ClientAddress, WebState};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;

const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";
const REL_BOSH: &str = "urn:xmpp:alt-connections:xbosh";

/// The web side's base URL as the client can reach it: `http.public_url`, or else the scheme
/// the client used and its `Host` header.
fn base_url(state: &WebState, headers: &HeaderMap, client: &ClientAddress) -> String {
    if let Some(public) = &state.server.config.http.public_url {
        return public.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if client.secure { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// The (rel, href) pairs to announce.
fn links(
    state: &WebState,
    headers: &HeaderMap,
    client: &ClientAddress,
) -> [(&'static str, String); 2] {
    let base = base_url(state, headers, client);
    let ws = base
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            base.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| base.clone());
    [
        (REL_WEBSOCKET, format!("{ws}/xmpp-websocket")),
        (REL_BOSH, format!("{base}/http-bind")),
    ]
}

pub async fn xrd(
    State(state): State<WebState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> impl IntoResponse {
    let links: String = links(&state, &headers, &client)
        .iter()
        .map(|(rel, href)| format!("  <Link rel='{rel}' href='{}'/>\n", salon_xml::escape(href)))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/xrd+xml; charset=utf-8")],
        format!(
            "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n{links}</XRD>\n"
        ),
    )
}

pub async fn jrd(
    State(state): State<WebState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> impl IntoResponse {
    let links: Vec<serde_json::Value> = links(&state, &headers, &client)
        .into_iter()
        .map(|(rel, href)| serde_json::json!({ "rel": rel, "href": href }))
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "links": links }).to_string(),
    )
}
