//! A client's TCP socket shared between its session's task and the tasks that write to it
//! directly while the session waits (`session/lend.rs`): async reads and writes for the session
//! through `&TcpStream`, and the one-system-call writes a delivering task makes.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The session's side of a shared socket.
#[derive(Clone)]
pub struct SharedTcp(pub Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

/// Send `parts` (one stanza, perhaps framed) in one system call, as far as the socket takes
/// them now; what it did not take is appended to `rest`. `Err` only when nothing was sent.
///
/// Straight to the socket rather than through tokio's readiness (`try_write_vectored`): a full
/// socket answers `WouldBlock` either way, and the session's own write, which then takes over,
/// learns it from the kernel. Skipping it saves a cache miss per recipient of a fan-out;
/// `sendmsg` rather than `writev` also spares the file-position lock.
pub fn send_parts(socket: &TcpStream, parts: &[&[u8]], rest: &mut Vec<u8>) -> io::Result<()> {
    let mut slices = [IoSlice::new(&[]); 4];
    for (slice, part) in slices.iter_mut().zip(parts) {
        *slice = IoSlice::new(part);
    }
    let written = socket2::SockRef::from(socket).send_vectored(&slices[..parts.len().min(4)])?;
    let mut skip = written;
    for part in parts {
        rest.extend_from_slice(&part[skip.min(part.len())..]);
        skip = skip.saturating_sub(part.len());
    }
    Ok(())
}
