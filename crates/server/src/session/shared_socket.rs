//! A client's TCP socket shared between its session's task and the tasks that write to it
//! directly while the session waits (`session/lend.rs`): async reads and writes for the session
//! through `&TcpStream`, and the one-system-call writes a delivering task makes.

use std::io::{self, IoSlice, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
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
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            let mut short = None;
            // A read shorter than the room given took all the kernel had: the closure says
            // WouldBlock then, which makes tokio clear the socket's readiness, so the session's
            // next poll waits for epoll rather than making a read that can only fail (one
            // system call per message saved; tokio's own `TcpStream::poll_read` does the same).
            // Data arriving after the read sets readiness again with a newer tick, which the
            // clearing leaves alone (edge-triggered epoll reports it).
            let read = self.0.try_io(Interest::READABLE, || {
                let n = (&*socket2::SockRef::from(&*self.0)).read(unfilled)?;
                if n > 0 && n < room {
                    short = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match (read, short) {
                (_, Some(n)) | (Ok(n), None) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (Err(e), None) => return Poll::Ready(Err(e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback connection: the server's socket, and the peer's.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        (socket, peer)
    }

    #[tokio::test]
    async fn a_short_read_waits_for_more_and_gets_it() {
        let (socket, mut peer) = connected().await;
        let mut shared = SharedTcp(Arc::new(socket));
        let mut buffer = [0u8; 64];
        peer.write_all(b"<a/>").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), shared.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buffer[..n], b"<a/>");
        // The short read cleared the socket's readiness: no read is tried until epoll says so.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(shared.0.poll_read_ready(&mut cx).is_pending());
        // Nothing to read is a wait, not an error.
        let waiting = tokio::time::timeout(Duration::from_millis(50), shared.read(&mut buffer));
        assert!(waiting.await.is_err());
        // What comes later wakes the reader (no wakeup lost to the clearing), several times.
        for text in [&b"<b/>"[..], b"<c>d</c>", b"<e/>"] {
            peer.write_all(text).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), shared.read(&mut buffer))
                .await
                .expect("a later write wakes the reader")
                .unwrap();
            assert_eq!(&buffer[..n], text);
        }
        // A read that fills the room leaves readiness alone: the rest follows at once.
        peer.write_all(&[b'x'; 100]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let first = shared.read(&mut buffer).await.unwrap();
        let second = tokio::time::timeout(Duration::from_secs(5), shared.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first, second), (64, 36));
        // The peer's close is an end of file.
        drop(peer);
        let end = tokio::time::timeout(Duration::from_secs(5), shared.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(end, 0);
    }

    /// Stanzas small and large arrive whole and in order, and what a full socket does not take
    /// is kept, in order, in `rest`.
    #[tokio::test]
    async fn parts_arrive_whole_and_a_full_socket_leaves_the_rest() {
        let (socket, mut peer) = connected().await;
        let large = vec![b'l'; 6000];
        let mut expected = Vec::new();
        let mut rest = Vec::new();
        for parts in [
            [
                &b"<message to='"[..],
                b"a@b/c",
                b"'><body>hi</body></message>",
            ],
            [&b"<x>"[..], &large, b"</x>"],
            [&b""[..], b"<y/>", b""],
        ] {
            send_parts(&socket, &parts, &mut rest).unwrap();
            assert!(rest.is_empty(), "an idle socket takes a small write whole");
            expected.extend(parts.concat());
        }
        let mut received = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut received))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(received, expected);

        // Fill the socket until it takes only part of a stanza (the peer does not read).
        let sent_before = expected.len();
        let mut sent = Vec::new();
        let stanza = [&b"<m>"[..], &[b'z'; 1500][..], b"</m>"];
        let whole = stanza.concat();
        loop {
            match send_parts(&socket, &stanza, &mut rest) {
                Ok(()) if rest.is_empty() => sent.extend_from_slice(&whole),
                Ok(()) => {
                    let taken = whole.len() - rest.len();
                    assert_eq!(&rest[..], &whole[taken..], "the rest is the stanza's tail");
                    sent.extend_from_slice(&whole[..taken]);
                    break;
                }
                // The socket was full at a stanza's boundary: nothing of it was sent.
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    assert!(rest.is_empty());
                    break;
                }
            }
        }
        let mut received = vec![0u8; sent.len()];
        tokio::time::timeout(Duration::from_secs(5), peer.read_exact(&mut received))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            received, sent,
            "{sent_before} bytes before, then what the socket took"
        );
    }
}
