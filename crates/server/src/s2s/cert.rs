//! Checking a peer server's certificate (RFC 6120 §13.7.2, RFC 6125, XEP-0178): the chain must
//! reach a trusted root (Mozilla's set from `webpki-roots` plus `s2s.ca_file`), and the
//! certificate must name the domain as a DNS-ID (wildcards one label deep), an SRV-ID
//! (`_xmpp-server.domain`) or an xmppAddr. Also the TLS settings of s2s streams: both sides
//! present our certificate and accept any from the peer during the handshake, because an
//! unverified peer may still authenticate by dialback; the check is made afterwards, here.

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

/// OID of the xmppAddr otherName (RFC 6120 §13.7.1.4).
const ID_ON_XMPPADDR: &str = "1.3.6.1.5.5.7.8.5";
/// OID of the SRVName otherName (RFC 4985).
const ID_ON_DNSSRV: &str = "1.3.6.1.5.5.7.8.7";

/// The trust anchors and the TLS settings for server-to-server streams.
pub struct Certificates {
    roots: Vec<rustls::pki_types::TrustAnchor<'static>>,
    provider: Arc<CryptoProvider>,
    /// For accepting streams: asks for (but does not require) the peer's certificate.
    pub server: Arc<rustls::ServerConfig>,
    /// The same with ALPN `xmpp-server`, for XEP-0368 direct TLS.
    pub server_direct: Arc<rustls::ServerConfig>,
    /// For opening streams: presents our certificate for SASL EXTERNAL.
    pub client: Arc<rustls::ClientConfig>,
    /// The same with ALPN `xmpp-server`, for XEP-0368 direct TLS.
    pub client_direct: Arc<rustls::ClientConfig>,
}

impl Certificates {
    pub fn new(
        tls: &crate::tls::TlsSetup,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Certificates> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots: Vec<_> = webpki_roots::TLS_SERVER_ROOTS.to_vec();
        if let Some(path) = ca_file {
            use rustls::pki_types::pem::PemObject;
            let mut store = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("s2s.ca_file: cannot read {}", path.display()))?
            {
                let cert = cert.with_context(|| format!("s2s.ca_file: {}", path.display()))?;
                store
                    .add(cert)
                    .with_context(|| format!("s2s.ca_file: a certificate in {}", path.display()))?;
            }
            roots.extend(store.roots);
        }
        let accept_any = Arc::new(AcceptAny(provider.clone()));
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let server = |alpn: Vec<Vec<u8>>| -> anyhow::Result<Arc<rustls::ServerConfig>> {
            let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .with_client_cert_verifier(accept_any.clone())
                .with_single_cert(tls.chain.clone(), tls.key.clone_key())
                .context("s2s: certificate and key")?;
            config.alpn_protocols = alpn;
            Ok(Arc::new(config))
        };
        let client = |alpn: Vec<Vec<u8>>| -> anyhow::Result<Arc<rustls::ClientConfig>> {
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .dangerous()
                .with_custom_certificate_verifier(accept_any.clone())
                .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())
                .context("s2s: certificate and key")?;
            config.alpn_protocols = alpn;
            Ok(Arc::new(config))
        };
        Ok(Certificates {
            server: server(Vec::new())?,
            server_direct: server(vec![b"xmpp-server".to_vec()])?,
            client: client(Vec::new())?,
            client_direct: client(vec![b"xmpp-server".to_vec()])?,
            roots,
            provider,
        })
    }

    /// Whether `chain` (leaf first) is trusted and names `domain`; the error says why not.
    pub fn verify(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        let Some(leaf) = chain.first() else {
            return Err("no certificate".into());
        };
        let end_entity = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        let now = UnixTime::now();
        // Certificates made for servers carry serverAuth; some peers' only clientAuth when they
        // present them as clients. Either proves the name.
        let trusted = [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ]
        .into_iter()
        .map(|usage| {
            end_entity.verify_for_usage(
                algorithms,
                &self.roots,
                &chain[1..],
                now,
                usage,
                None,
                None,
            )
        })
        .find(Result::is_ok);
        match trusted {
            Some(Ok(_)) => {}
            _ => {
                let error = end_entity
                    .verify_for_usage(
                        algorithms,
                        &self.roots,
                        &chain[1..],
                        now,
                        webpki::KeyUsage::server_auth(),
                        None,
                        None,
                    )
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                return Err(format!("untrusted certificate: {error}"));
            }
        }
        if names_domain(leaf.as_ref(), domain) {
            Ok(())
        } else {
            Err(format!("the certificate does not name {domain}"))
        }
    }
}

/// Whether the certificate (DER) names `domain` (RFC 6125 §6, XEP-0178 §3): a DNS-ID (with a
/// wildcard only as the whole left-most label), an SRV-ID for `_xmpp-server` or
/// `_xmpps-server`, or an xmppAddr. The subject's common name counts only when there is no
/// subjectAltName at all (RFC 6125 §6.4.4).
pub fn names_domain(der: &[u8], domain: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let san = match cert.subject_alternative_name() {
        Ok(Some(san)) => san,
        Ok(None) => {
            return cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .any(|cn| dns_id_matches(cn, &domain));
        }
        Err(_) => return false,
    };
    san.value.general_names.iter().any(|name| match name {
        GeneralName::DNSName(dns) => dns_id_matches(dns, &domain),
        GeneralName::OtherName(oid, value) => {
            let oid = oid.to_id_string();
            let Some(text) = other_name_text(value) else {
                return false;
            };
            if oid == ID_ON_XMPPADDR {
                text.eq_ignore_ascii_case(&domain)
            } else if oid == ID_ON_DNSSRV {
                srv_id_matches(&text, &domain)
            } else {
                false
            }
        }
        _ => false,
    })
}

/// A DNS-ID against the domain: equal ignoring case, or `*.rest` matching one label.
fn dns_id_matches(id: &str, domain: &str) -> bool {
    let id = id.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = id.strip_prefix("*.") {
        return domain
            .split_once('.')
            .is_some_and(|(label, parent)| !label.is_empty() && parent == rest);
    }
    id == domain
}

/// An SRV-ID (`_service.domain`) for XMPP server-to-server.
fn srv_id_matches(id: &str, domain: &str) -> bool {
    let id = id.trim_end_matches('.').to_ascii_lowercase();
    ["_xmpp-server.", "_xmpps-server."]
        .iter()
        .any(|service| id.strip_prefix(service) == Some(domain))
}

/// The string inside an otherName value: `[0] EXPLICIT` wrapping a UTF8String or IA5String.
fn other_name_text(value: &[u8]) -> Option<String> {
    use x509_parser::der_parser::ber::BerObjectContent;
    let (_, outer) = x509_parser::der_parser::der::parse_der(value).ok()?;
    // Some parsers hand the explicit tag, some its content.
    let inner = match &outer.content {
        BerObjectContent::Unknown(any) => x509_parser::der_parser::der::parse_der(any.data)
            .ok()
            .map(|(_, o)| o)?,
        _ => outer,
    };
    match inner.content {
        BerObjectContent::UTF8String(s) | BerObjectContent::IA5String(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Accepts any certificate during the handshake (signatures still checked); [`Certificates::
/// verify`] decides afterwards what the certificate proves.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for AcceptAny {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn dns(name: &str) -> rcgen::SanType {
        rcgen::SanType::DnsName(name.try_into().unwrap())
    }

    fn other(oid: &[u64], text: &str) -> rcgen::SanType {
        rcgen::SanType::OtherName((oid.to_vec(), rcgen::OtherNameValue::Utf8String(text.into())))
    }

    #[test]
    fn dns_ids_match_exactly_or_by_one_wildcard_label() {
        let der = cert_with(vec![dns("salon.test"), dns("*.salon.test")]);
        assert!(names_domain(&der, "salon.test"));
        assert!(names_domain(&der, "Rooms.Salon.Test"));
        assert!(!names_domain(&der, "a.rooms.salon.test"));
        assert!(!names_domain(&der, "evil.test"));
        assert!(!names_domain(&der, "salon.test.evil"));
    }

    #[test]
    fn xmpp_addr_and_srv_ids_name_the_domain() {
        let der = cert_with(vec![
            other(&[1, 3, 6, 1, 5, 5, 7, 8, 5], "chat.example"),
            other(&[1, 3, 6, 1, 5, 5, 7, 8, 7], "_xmpp-server.srv.example"),
            other(
                &[1, 3, 6, 1, 5, 5, 7, 8, 7],
                "_xmpp-client.client-only.example",
            ),
        ]);
        assert!(names_domain(&der, "chat.example"));
        assert!(names_domain(&der, "srv.example"));
        assert!(!names_domain(&der, "client-only.example"));
        assert!(!names_domain(&der, "other.example"));
    }

    #[test]
    fn self_signed_certificates_are_not_trusted() {
        let certified = rcgen::generate_simple_self_signed(vec!["salon.test".into()]).unwrap();
        let tls = crate::tls::TlsSetup::for_tests(&certified);
        let certificates = Certificates::new(&tls, None).unwrap();
        let chain = vec![certified.cert.der().clone()];
        let error = certificates.verify(&chain, "salon.test").unwrap_err();
        assert!(error.contains("untrusted"), "{error}");
    }
}
