//! WebSocket connections on plain TCP (behind a reverse proxy, most often) write each stanza
//! as one text frame straight from the task delivering it, while the session waits with
//! nothing to write (RFC 6455 §5.2 framing; `salon_server::session` lends the socket).

use crate::connections::IdleTimeout;
use crate::ws_frame;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use salon_server::session::shared_socket::{send_parts, SharedTcp};
use salon_server::session_handle::DirectWrite;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// An upgraded WebSocket connection: hyper's, or, on plain TCP, the socket itself (shared).
pub enum WsIo {
    Upgraded(TokioIo<Upgraded>),
    Shared {
        /// Bytes the HTTP layer read past the upgrade request: read first.
        unread: Bytes,
        io: IdleTimeout<SharedTcp>,
    },
}

/// The upgraded connection, with its TCP socket shared when it is a plain one; a TLS
/// connection (HTTPS served by Salon itself) stays as it was, and is never lent.
pub fn share_plain_socket(upgraded: Upgraded) -> (WsIo, Option<Arc<TcpStream>>) {
    match upgraded.downcast::<TokioIo<IdleTimeout<TcpStream>>>() {
        Ok(parts) => {
            let (socket, idle) = parts.io.into_inner().into_parts();
            let socket = Arc::new(socket);
            let io = IdleTimeout::new(SharedTcp(socket.clone()), idle);
            // Copied out (mostly nothing): the `Bytes` hyper hands over keep its whole read
            // buffer alive, kilobytes per idle visitor.
            let unread = Bytes::copy_from_slice(&parts.read_buf);
            (WsIo::Shared { unread, io }, Some(socket))
        }
        Err(upgraded) => (WsIo::Upgraded(TokioIo::new(upgraded)), None),
    }
}

impl AsyncRead for WsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
            WsIo::Shared { unread, .. } if !unread.is_empty() => {
                let n = unread.len().min(buf.remaining());
                buf.put_slice(&unread.split_to(n));
                if unread.is_empty() {
                    *unread = Bytes::new();
                }
                Poll::Ready(Ok(()))
            }
            WsIo::Shared { io, .. } => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsIo::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
            WsIo::Shared { io, .. } => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Upgraded(io) => Pin::new(io).poll_flush(cx),
            WsIo::Shared { io, .. } => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
            WsIo::Shared { io, .. } => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// Writes each stanza as one unmasked text frame: header and parts in one `sendmsg`.
pub struct FrameWriter(pub Arc<TcpStream>);

impl DirectWrite for FrameWriter {
    fn try_write(&self, parts: [&[u8]; 3], rest: &mut Vec<u8>) -> io::Result<()> {
        let length = parts.iter().map(|part| part.len()).sum();
        let (header, size) = ws_frame::text_frame_header(length);
        send_parts(
            &self.0,
            &[&header[..size], parts[0], parts[1], parts[2]],
            rest,
        )
    }
}
