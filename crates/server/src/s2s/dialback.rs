//! Server Dialback (XEP-0220): the keys we hand out as the originating server and check as the
//! authoritative one, and asking a peer's authoritative server whether a key it was given on
//! our incoming stream is genuine.

use super::outgoing;
use super::stream::DIALBACK;
use super::S2s;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// XEP-0220 §4.1: HMAC-SHA256 keyed with the hex SHA-256 of the secret, over
/// "Receiving Server | Originating Server | Stream ID", in hex. Only we check our keys, and
/// only in this process (the secret is new at every start).
pub fn key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed = hex(&Sha256::digest(secret));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hashed.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the authoritative server said of a key (XEP-0220 §2.2), or why it said nothing (the
/// dialback error condition of §2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    Failed(&'static str),
}

/// As the receiving server: ask `remote`'s authoritative server, on a stream of its own,
/// whether `key` is what it gave for `local` on our stream `stream_id` (XEP-0220 §2.2).
pub async fn verify_with_authority(
    s2s: Arc<S2s>,
    local: String,
    remote: String,
    stream_id: String,
    key: String,
) -> Verdict {
    let timeout = std::time::Duration::from_secs(s2s.config.connect_timeout_seconds);
    let asked = async {
        let mut connected = match outgoing::connect(&s2s, &local, &remote).await {
            Ok(connected) => connected,
            Err(outgoing::Failure::NotFound(why)) => {
                tracing::info!(%remote, reason = %why, "s2s: dialback verification: its server cannot be reached");
                return Err("remote-connection-failed");
            }
            Err(outgoing::Failure::Timeout(_)) => return Err("remote-server-timeout"),
        };
        let verify = format!(
            "<db:verify from='{}' to='{}' id='{}'>{}</db:verify>",
            salon_xml::escape(&local),
            salon_xml::escape(&remote),
            salon_xml::escape(&stream_id),
            salon_xml::escape(&key)
        );
        let lost = "remote-server-timeout";
        connected
            .stream
            .send(verify.as_bytes())
            .await
            .map_err(|_| lost)?;
        loop {
            let salon_xml::StreamEvent::Stanza(answer) =
                connected.stream.next().await.map_err(|_| lost)?
            else {
                continue;
            };
            if answer.is("verify", DIALBACK) && answer.attr("id") == Some(stream_id.as_str()) {
                connected.stream.close(None).await;
                return Ok(answer.attr("type") == Some("valid"));
            }
        }
    };
    match tokio::time::timeout(timeout, asked).await {
        Ok(Ok(true)) => Verdict::Valid,
        Ok(Ok(false)) => Verdict::Invalid,
        Ok(Err(condition)) => {
            tracing::info!(%remote, %condition, "s2s: dialback verification failed: no answer from its server");
            Verdict::Failed(condition)
        }
        Err(_) => {
            tracing::info!(%remote, "s2s: dialback verification timed out");
            Verdict::Failed("remote-server-timeout")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_part_and_match_the_xep_example() {
        // XEP-0220 §2.1.1, the key capulet.example sends to montague.example.
        assert_eq!(
            key(
                b"s3cr3tf0rd14lb4ck",
                "montague.example",
                "capulet.example",
                "D60000229F"
            ),
            "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"
        );
        let base = key(b"secret", "a.test", "b.test", "1");
        assert_ne!(base, key(b"secret", "b.test", "a.test", "1"));
        assert_ne!(base, key(b"secret", "a.test", "b.test", "2"));
        assert_ne!(base, key(b"other", "a.test", "b.test", "1"));
    }
}
