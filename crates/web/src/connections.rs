//! Serving HTTP connections with the limits a public listener needs: a cap on simultaneous
//! connections per TCP peer, a deadline for each request's header (which also ends idle
//! keep-alive connections), and an idle timeout once a request is under way. `axum::serve`
//! exposes none of these, so connections are served with hyper directly; the routes stay axum's.

use axum::extract::connect_info::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use dashmap::DashMap;
use hyper_util::rt::{TokioIo, TokioTimer};
use salon_server::config::IpRange;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::Service;

/// The limits of one HTTP listener, from `[http]` in the configuration.
#[derive(Clone)]
pub struct ConnectionLimits {
    /// Longest wait for a request's complete header, from the end of the previous response
    /// (or the connection's start).
    pub header_read_timeout: Duration,
    /// Longest a connection may go without a byte read or written while it is being served.
    pub idle_timeout: Duration,
    /// Simultaneous connections from one TCP peer.
    pub connections_per_ip: usize,
    /// Peers the cap does not apply to: trusted reverse proxies carry many clients.
    pub exempt: Arc<Vec<IpRange>>,
}

impl ConnectionLimits {
    pub fn from_config(config: &salon_server::config::HttpConfig) -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout),
            idle_timeout: Duration::from_secs(config.idle_timeout),
            connections_per_ip: config.connections_per_ip,
            exempt: Arc::new(config.trusted_proxy_ranges()),
        }
    }
}

/// Open connections per TCP peer (an IPv6 /64 counts as one); a [`PeerSlot`] holds one.
#[derive(Default)]
struct PeerCounts(DashMap<IpAddr, usize>);

struct PeerSlot {
    counts: Arc<PeerCounts>,
    ip: IpAddr,
}

impl PeerCounts {
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let ip = salon_server::limits::address_key(ip);
        let mut count = self.0.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.counts.0.remove_if_mut(&self.ip, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

/// Accept connections from `listener` and serve `router` on each until `shutdown` says so.
/// `connect_info` turns the peer address into what handlers read (`ConnectInfo<C>`).
pub async fn serve<L, C>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    connect_info: fn(SocketAddr) -> C,
) where
    L: Listener<Addr = SocketAddr>,
    L::Io: Unpin,
    C: Clone + Send + Sync + 'static,
{
    let counts = Arc::new(PeerCounts::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = salon_server::server::shutdown_requested(&mut shutdown) => return,
        };
        let slot = if limits.exempt.iter().any(|range| range.contains(peer.ip())) {
            None
        } else {
            match counts.admit(peer.ip(), limits.connections_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::warn!(%peer, "too many HTTP connections from this address; refused");
                    continue;
                }
            }
        };
        let info = connect_info(peer);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request| {
            request.extensions_mut().insert(ConnectInfo(info.clone()));
            router.clone().call(request)
        });
        let io = TokioIo::new(IdleTimeout::new(io, limits.idle_timeout));
        let connection = builder.serve_connection(io, service).with_upgrades();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended");
                    }
                }
                () = salon_server::server::shutdown_requested(&mut shutdown) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// A connection that fails with `TimedOut` when a read or write it waits on has made no
/// progress for `idle`: a request body trickled byte by byte, a response nobody reads.
pub(crate) struct IdleTimeout<T> {
    io: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> IdleTimeout<T> {
    pub(crate) fn new(io: T, idle: Duration) -> Self {
        IdleTimeout {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// The connection and its idle bound, for a WebSocket that shares its socket.
    pub(crate) fn into_parts(self) -> (T, Duration) {
        (self.io, self.idle)
    }

    fn progressed(&mut self) {
        let idle = self.idle;
        self.deadline.as_mut().reset(Instant::now() + idle);
    }

    fn waiting<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP connection idle for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.waiting(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.waiting(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.waiting(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending => this.waiting(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = IdleTimeout::new(server, Duration::from_millis(300));
        let mut client = client;
        let mut byte = [0u8; 1];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut byte).await.unwrap();
        }
        let error = server.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn the_per_peer_cap_counts_and_releases() {
        let counts = Arc::new(PeerCounts::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counts.admit(ip, 2).unwrap();
        let _second = counts.admit(ip, 2).unwrap();
        assert!(counts.admit(ip, 2).is_none());
        assert!(counts.admit("192.0.2.2".parse().unwrap(), 2).is_some());
        drop(first);
        assert!(counts.admit(ip, 2).is_some());
    }
}
