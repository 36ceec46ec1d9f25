//! XEP-0156 discovery: `/.well-known/host-meta` (XRD) and `host-meta.json` (JRD) name the
//! WebSocket endpoint, so clients given only a domain find how to connect.

use crate::{ClientAddress, WebState};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;

/// The WebSocket URL as the client can reach it.
fn websocket_url(state: &WebState, headers: &HeaderMap, client: &ClientAddress) -> String {
    if let Some(public) = &state.server.config.http.public_url {
        let base = public.trim_end_matches('/');
        let ws = base
            .strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| {
                base.strip_prefix("http://")
                    .map(|rest| format!("ws://{rest}"))
            })
            .unwrap_or_else(|| base.to_string());
        return format!("{ws}/xmpp-websocket");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if client.secure { "wss" } else { "ws" };
    format!("{scheme}://{host}/xmpp-websocket")
}

pub async fn xrd(
    State(state): State<WebState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> impl IntoResponse {
    let url = salon_xml::escape(&websocket_url(&state, &headers, &client));
    (
        [(header::CONTENT_TYPE, "application/xrd+xml; charset=utf-8")],
        format!(
            "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  <Link rel='urn:xmpp:alt-connections:websocket' href='{url}'/>\n</XRD>\n"
        ),
    )
}

pub async fn jrd(
    State(state): State<WebState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> impl IntoResponse {
    let url = websocket_url(&state, &headers, &client);
    let body = serde_json::json!({
        "links": [
            { "rel": "urn:xmpp:alt-connections:websocket", "href": url },
        ]
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
