//! The client's real address: the TCP peer, unless the peer is a configured trusted proxy, in
//! which case `X-Forwarded-For` is read from the right, skipping trusted proxies, so a client
//! cannot forge its address by sending the header itself.

use crate::WebState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use std::net::{IpAddr, SocketAddr};

/// Who is really on the other end, and whether they reached us over HTTPS.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress {
    pub ip: IpAddr,
    /// The request came in over TLS (at a trusted proxy that said so).
    pub secure: bool,
}

impl FromRequestParts<WebState> for ClientAddress {
    type Rejection = StatusCode;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        let (peer, encrypted) = match (
            parts.extensions.get::<ConnectInfo<SocketAddr>>(),
            parts
                .extensions
                .get::<ConnectInfo<crate::https::HttpsPeer>>(),
        ) {
            (Some(plain), _) => (plain.0.ip(), false),
            (None, Some(tls)) => (tls.0 .0.ip(), true),
            (None, None) => return Err(StatusCode::INTERNAL_SERVER_ERROR),
        };
        let trusted = |ip: IpAddr| state.trusted_proxies.iter().any(|r| r.contains(ip));
        if !trusted(peer) {
            return Ok(ClientAddress {
                ip: peer,
                secure: encrypted,
            });
        }
        let forwarded: Vec<IpAddr> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .collect();
        let ip = forwarded
            .iter()
            .rev()
            .copied()
            .find(|ip| !trusted(*ip))
            .or_else(|| forwarded.first().copied())
            .unwrap_or(peer);
        let secure = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
            || encrypted;
        Ok(ClientAddress { ip, secure })
    }
}
