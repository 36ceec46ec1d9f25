//! SCRAM with channel binding over direct TLS (XEP-0368), checked with a SCRAM client written
//! here from RFC 5802/RFC 9266/RFC 5929, independent of the library the server uses.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::TestServer;
use hmac::{Hmac, Mac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Accepts the test server's self-signed certificate and remembers it.
#[derive(Debug, Default)]
struct AcceptAny {
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

struct Connection {
    tls: TlsStream<TcpStream>,
    certificate: Vec<u8>,
}

async fn connect(server: &TestServer) -> Connection {
    let verifier = Arc::new(AcceptAny::default());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(verifier.clone())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    let tcp = TcpStream::connect(server.c2s_tls).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let certificate = verifier.seen.lock().unwrap().clone().unwrap();
    Connection { tls, certificate }
}

impl Connection {
    async fn send(&mut self, text: &str) {
        self.tls.write_all(text.as_bytes()).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// Read until `marker` has arrived; returns everything read.
    async fn read_until(&mut self, marker: &str) -> String {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(10), async {
            while !text.contains(marker) {
                let n = self.tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed; got so far: {text}");
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {marker}; got: {text}"));
        text
    }

    fn exporter(&self) -> Vec<u8> {
        let mut out = vec![0u8; 32];
        self.tls
            .get_ref()
            .1
            .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
            .unwrap();
        out
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).map(|i| i + start.len()).unwrap();
    let rest = &text[from..];
    let content_start = rest.find('>').map(|i| i + 1).unwrap();
    let rest = &rest[content_start..];
    &rest[..rest.find(end).unwrap()]
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
}

/// Run one SCRAM-*-PLUS exchange; returns the server's final answer.
async fn scram_plus(
    connection: &mut Connection,
    hash: Hash,
    binding: &str,
    cbdata: Vec<u8>,
    password: &str,
) -> String {
    connection
        .send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        .await;
    let features = connection.read_until("</stream:features>").await;
    let mechanism = match hash {
        Hash::Sha1 => "SCRAM-SHA-1-PLUS",
        Hash::Sha256 => "SCRAM-SHA-256-PLUS",
    };
    assert!(
        features.contains(mechanism),
        "{mechanism} offered: {features}"
    );
    assert!(
        features.contains(&format!("type='{binding}'")),
        "XEP-0440 lists {binding}: {features}"
    );
    let nonce = format!("{:x}", rand::random::<u64>());
    let gs2 = format!("p={binding},,");
    let client_first_bare = format!("n=carol,r={nonce}");
    connection
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{}</auth>",
            B64.encode(format!("{gs2}{client_first_bare}"))
        ))
        .await;
    let challenge = connection.read_until("</challenge>").await;
    let server_first = String::from_utf8(
        B64.decode(between(&challenge, "<challenge", "</challenge>"))
            .unwrap(),
    )
    .unwrap();
    let field = |name: &str| {
        server_first
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    let (combined_nonce, salt, iterations) = (
        field("r"),
        B64.decode(field("s")).unwrap(),
        field("i").parse::<u32>().unwrap(),
    );
    assert!(combined_nonce.starts_with(&nonce));
    let mut channel = gs2.into_bytes();
    channel.extend_from_slice(&cbdata);
    let without_proof = format!("c={},r={combined_nonce}", B64.encode(&channel));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let (proof, server_signature) = match hash {
        Hash::Sha256 => {
            let mut salted = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
            let client_key = hmac256(&salted, b"Client Key");
            let stored_key = Sha256::digest(&client_key);
            let signature = hmac256(&stored_key, auth_message.as_bytes());
            let server_key = hmac256(&salted, b"Server Key");
            (
                client_key
                    .iter()
                    .zip(signature)
                    .map(|(a, b)| a ^ b)
                    .collect::<Vec<u8>>(),
                hmac256(&server_key, auth_message.as_bytes()),
            )
        }
        Hash::Sha1 => {
            let mut salted = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password.as_bytes(), &salt, iterations, &mut salted);
            let client_key = hmac1(&salted, b"Client Key");
            let stored_key = sha1::Sha1::digest(&client_key);
            let signature = hmac1(&stored_key, auth_message.as_bytes());
            let server_key = hmac1(&salted, b"Server Key");
            (
                client_key
                    .iter()
                    .zip(signature)
                    .map(|(a, b)| a ^ b)
                    .collect::<Vec<u8>>(),
                hmac1(&server_key, auth_message.as_bytes()),
            )
        }
    };
    connection
        .send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            B64.encode(format!("{without_proof},p={}", B64.encode(proof)))
        ))
        .await;
    let outcome = connection.read_until("</").await;
    let outcome = if outcome.contains("<success") && !outcome.contains("</success>") {
        outcome + &connection.read_until("</success>").await
    } else {
        outcome
    };
    if outcome.contains("<success") {
        let additional = String::from_utf8(
            B64.decode(between(&outcome, "<success", "</success>"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            additional,
            format!("v={}", B64.encode(server_signature)),
            "the server proves it knows the password"
        );
    }
    outcome
}

fn server_end_point(certificate: &[u8]) -> Vec<u8> {
    // rcgen signs with ECDSA P-256/SHA-256, so RFC 5929 uses SHA-256.
    Sha256::digest(certificate).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_plus_with_each_binding_and_hash() {
    let server = TestServer::start("");
    server.add_user("carol@localhost", "correct horse");
    for (hash, binding) in [
        (Hash::Sha256, "tls-exporter"),
        (Hash::Sha1, "tls-exporter"),
        (Hash::Sha256, "tls-server-end-point"),
    ] {
        let mut connection = connect(&server).await;
        let cbdata = if binding == "tls-exporter" {
            connection.exporter()
        } else {
            server_end_point(&connection.certificate)
        };
        let outcome = scram_plus(&mut connection, hash, binding, cbdata, "correct horse").await;
        assert!(outcome.contains("<success"), "{binding}: {outcome}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_plus_refuses_wrong_channel_binding_or_password() {
    let server = TestServer::start("");
    server.add_user("carol@localhost", "correct horse");
    // Binding data of another channel (a man in the middle would have different data).
    let mut connection = connect(&server).await;
    let mut cbdata = connection.exporter();
    cbdata[0] ^= 0xff;
    let outcome = scram_plus(
        &mut connection,
        Hash::Sha256,
        "tls-exporter",
        cbdata,
        "correct horse",
    )
    .await;
    assert!(
        outcome.contains("<failure") && outcome.contains("not-authorized"),
        "{outcome}"
    );

    let mut connection = connect(&server).await;
    let cbdata = connection.exporter();
    let outcome = scram_plus(
        &mut connection,
        Hash::Sha256,
        "tls-exporter",
        cbdata,
        "wrong",
    )
    .await;
    assert!(
        outcome.contains("<failure") && outcome.contains("not-authorized"),
        "{outcome}"
    );
}
