//! The Prometheus endpoint: `GET /metrics` in the OpenMetrics text format, on `listen.metrics`,
//! a listener of its own that serves nothing else.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use salon_server::Server;
use std::sync::Arc;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(server): State<Arc<Server>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], server.metrics_text())
}

/// Serve `/metrics` until the server shuts down.
pub async fn serve(server: Arc<Server>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let mut shutdown = server.shutdown_signal();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(server);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            salon_server::server::shutdown_requested(&mut shutdown).await;
        })
        .await
}
