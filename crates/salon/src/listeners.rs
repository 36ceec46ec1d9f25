//! Every listener Salon opens, bound in one place: client streams over TCP (RFC 6120, STARTTLS)
//! and direct TLS (XEP-0368), server-to-server streams (RFC 6120, XEP-0368), the web side over HTTP and HTTPS (WebSocket, BOSH, uploads, the
//! web client), and Prometheus metrics. Each is bound before anything is served, so a port in
//! use is reported at start-up with the configuration key that names it.

use anyhow::Context as _;
use salon_server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The serving tasks; each ends when the server shuts down.
pub struct Listeners {
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Bind every configured listener and start serving on it.
    pub async fn bind_all(server: &Arc<Server>) -> anyhow::Result<Listeners> {
        let listen = server.config.listen.clone();
        let mut tasks = Vec::new();
        if let Some(addr) = listen.c2s {
            let listener = bind("listen.c2s", addr).await?;
            tracing::info!(%addr, "client connections (STARTTLS)");
            tasks.push(spawn_c2s(server, listener, false));
        }
        if let Some(addr) = listen.c2s_direct_tls {
            let listener = bind("listen.c2s_direct_tls", addr).await?;
            tracing::info!(%addr, "client connections (direct TLS, XEP-0368)");
            tasks.push(spawn_c2s(server, listener, true));
        }
        if let Some(addr) = listen.http {
            let listener = bind("listen.http", addr).await?;
            tracing::info!(%addr, "HTTP (WebSocket /xmpp-websocket, BOSH /http-bind, host-meta)");
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = salon_web::serve(server, listener).await {
                    tracing::error!(error = %e, "HTTP listener failed");
                }
            }));
        }
        if let Some(addr) = listen.https {
            let listener = bind("listen.https", addr).await?;
            tracing::info!(%addr, "HTTPS");
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = salon_web::serve_https(server, listener).await {
                    tracing::error!(error = %e, "HTTPS listener failed");
                }
            }));
        }
        if let Some(addr) = listen.s2s {
            let listener = bind("listen.s2s", addr).await?;
            tracing::info!(%addr, "server-to-server connections (STARTTLS)");
            tasks.push(spawn_s2s(server, listener, false));
        }
        if let Some(addr) = listen.s2s_direct_tls {
            let listener = bind("listen.s2s_direct_tls", addr).await?;
            tracing::info!(%addr, "server-to-server connections (direct TLS, XEP-0368)");
            tasks.push(spawn_s2s(server, listener, true));
        }
        if let Some(addr) = listen.component {
            let listener = bind("listen.component", addr).await?;
            tracing::info!(%addr, "external components (XEP-0114)");
            tasks.push(tokio::spawn(salon_server::component::accept_loop(
                server.clone(),
                listener,
            )));
        }
        if let Some(addr) = listen.metrics {
            let listener = bind("listen.metrics", addr).await?;
            tracing::info!(%addr, "Prometheus metrics (/metrics)");
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = salon_web::metrics::serve(server, listener).await {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            }));
        }
        Ok(Listeners { tasks })
    }

    /// Stop accepting (the web listeners stop by themselves at shutdown; the client accept
    /// loops are ended here).
    pub async fn close(self) {
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn bind(key: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))
}

fn spawn_c2s(server: &Arc<Server>, listener: TcpListener, direct_tls: bool) -> JoinHandle<()> {
    tokio::spawn(salon_server::session::tcp::accept_loop(
        server.clone(),
        listener,
        direct_tls,
    ))
}

fn spawn_s2s(server: &Arc<Server>, listener: TcpListener, direct_tls: bool) -> JoinHandle<()> {
    tokio::spawn(salon_server::s2s::accept_loop(
        server.clone(),
        listener,
        direct_tls,
    ))
}
