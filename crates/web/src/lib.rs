//! Salon's HTTP listener: XMPP over WebSocket (RFC 7395), host-meta discovery (XEP-0156), CORS
//! for embedding, and the client address behind trusted reverse proxies. Routes are declared
//! here; each handler lives in the module named after what it serves.

mod bosh;
mod client;
mod client_address;
mod connections;
pub mod fuzz;
mod host_meta;
mod https;
mod invite;
pub mod metrics;
mod upload;
mod websocket;
mod ws_direct;
mod ws_frame;

use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use salon_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use client_address::ClientAddress;

/// Shared state handed to every handler.
#[derive(Clone)]
pub struct WebState {
    pub server: Arc<Server>,
    trusted_proxies: Arc<Vec<salon_server::config::IpRange>>,
    bosh: Arc<bosh::BoshSessions>,
}

/// All routes, with their layers.
pub fn router(server: Arc<Server>) -> Router {
    let state = WebState {
        trusted_proxies: Arc::new(server.config.http.trusted_proxy_ranges()),
        bosh: Arc::new(bosh::BoshSessions::default()),
        server: server.clone(),
    };
    Router::new()
        .route("/xmpp-websocket", get(websocket::upgrade))
        .route(
            "/http-bind",
            axum::routing::post(bosh::request)
                .get(|| async { "XMPP over BOSH (XEP-0206): POST <body/> requests here\n" })
                .layer(axum::extract::DefaultBodyLimit::max(
                    server.config.http.max_websocket_message,
                )),
        )
        .route("/.well-known/host-meta", get(host_meta::xrd))
        .route("/.well-known/host-meta.json", get(host_meta::jrd))
        .route("/", get(client::index))
        .route("/join/{room}", get(client::join))
        .route(
            "/invite/{token}",
            get(invite::show)
                .post(invite::sign_up)
                .layer(axum::extract::DefaultBodyLimit::max(8 * 1024)),
        )
        .route("/assets/{*path}", get(client::asset))
        .route("/config.json", get(client::config))
        .route("/converse", get(client::converse_redirect))
        .route("/converse/", get(client::converse_page))
        .route("/converse/dist/{*path}", get(client::converse_dist))
        .layer(cors(&server.config.http.cors_origins))
        // After the general CORS layer, which does not apply to it: uploads have their own.
        .merge(upload::routes(&server.config.http.cors_origins))
        .with_state(state)
}

/// CORS for the endpoints other sites use when they embed the chat.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(86400))
}

/// Serve HTTPS with the server's certificate until the server shuts down.
pub async fn serve_https(
    server: Arc<Server>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let tls = https::TlsListener::new(listener, server.tls.https.clone())?;
    let shutdown = server.shutdown_signal();
    let limits = connections::ConnectionLimits::from_config(&server.config.http);
    connections::serve(tls, router(server), limits, shutdown, https::HttpsPeer).await;
    Ok(())
}

/// Bind the HTTP listener (separately, so that a port in use is reported at start).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "HTTP (WebSocket /xmpp-websocket, host-meta)");
    Ok(listener)
}

/// Serve HTTP until the server shuts down.
pub async fn serve(server: Arc<Server>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let shutdown = server.shutdown_signal();
    let limits = connections::ConnectionLimits::from_config(&server.config.http);
    // Without TCP_NODELAY, a small WebSocket or BOSH write that follows one not yet acknowledged
    // waits for the peer's delayed ACK (Nagle): tens of milliseconds per chat message.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    connections::serve(listener, router(server), limits, shutdown, |peer| peer).await;
    Ok(())
}
