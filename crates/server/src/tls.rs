//! TLS for client connections (RFC 7590, RFC 6120 §5): loading the operator's certificate or
//! making a self-signed one for development, and the channel-binding data SCRAM-PLUS needs
//! (RFC 9266 tls-exporter, RFC 5929 tls-server-end-point).

use crate::config::Config;
use anyhow::{anyhow, Context as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::path::Path;
use std::sync::Arc;

/// Everything the listeners need to offer TLS.
pub struct TlsSetup {
    /// For STARTTLS on the c2s port.
    pub starttls: Arc<rustls::ServerConfig>,
    /// For XEP-0368 direct TLS: same certificate, ALPN `xmpp-client`.
    pub direct: Arc<rustls::ServerConfig>,
    /// For the HTTPS listener: same certificate, ALPN `http/1.1`.
    pub https: Arc<rustls::ServerConfig>,
    /// RFC 5929 tls-server-end-point: hash of our certificate, fixed for the process.
    pub server_end_point: Vec<u8>,
    /// The certificate chain and key themselves, for listeners that build their own TLS
    /// settings (server-to-server streams ask for the peer's certificate and present ours).
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
}

impl TlsSetup {
    pub fn from_config(config: &Config) -> anyhow::Result<TlsSetup> {
        let (chain, key) = match &config.tls {
            Some(tls) => load_pem(&tls.cert, &tls.key)?,
            None => self_signed(config)?,
        };
        let server_end_point = end_point_hash(&chain[0]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |alpn: Vec<Vec<u8>>| -> anyhow::Result<Arc<rustls::ServerConfig>> {
            let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .context("TLS protocol versions")?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .context("certificate and key do not match or are unsupported")?;
            server.alpn_protocols = alpn;
            Ok(Arc::new(server))
        };
        Ok(TlsSetup {
            starttls: build(Vec::new())?,
            direct: build(vec![b"xmpp-client".to_vec()])?,
            https: build(vec![b"http/1.1".to_vec()])?,
            server_end_point,
            key: Arc::new(key.clone_key()),
            chain,
        })
    }
}

#[cfg(test)]
impl TlsSetup {
    /// The settings for one certificate made in a test.
    pub fn for_tests(certified: &rcgen::CertifiedKey) -> TlsSetup {
        let chain = vec![certified.cert.der().clone()];
        let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .unwrap(),
        );
        TlsSetup {
            starttls: config.clone(),
            direct: config.clone(),
            https: config,
            server_end_point: Vec::new(),
            chain,
            key: Arc::new(key),
        }
    }
}

/// For `salon check`: read the configured certificate chain and key and make sure rustls takes
/// them together, as `salon serve` will. Returns what was found; `None` without `[tls]` (the
/// self-signed certificate is made by `serve`, and `check` writes nothing).
pub fn check_configured(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let (chain, key) = load_pem(&tls.cert, &tls.key)?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key)
        .with_context(|| {
            format!(
                "tls: the key in {} does not match the certificate in {} or is unsupported",
                tls.key.display(),
                tls.cert.display()
            )
        })?;
    Ok(Some(format!(
        "tls: {} certificate(s) in {}, key in {} matches",
        chain.len(),
        tls.cert.display(),
        tls.key.display()
    )))
}

fn load_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls.cert: cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "tls.cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(anyhow!("tls.cert: no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls.key: no usable private key in {}", key.display()))?;
    Ok((chain, key))
}

/// A certificate for every configured host, made once and kept in `data_dir` so that clients
/// which pinned it on first use keep trusting it across restarts.
fn self_signed(
    config: &Config,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_path = config.data_dir.join("self-signed-cert.pem");
    let key_path = config.data_dir.join("self-signed-key.pem");
    // The names the certificate was made for, one a line, so that a change of host names
    // gets a new certificate rather than one that names the old hosts.
    let names_path = config.data_dir.join("self-signed-names");
    let mut names = vec![config.domain.clone()];
    if let Some(anon) = config.anonymous_domain() {
        names.push(anon.to_string());
    }
    if let Some(muc) = &config.muc {
        names.push(muc.domain.clone());
    }
    let listed = names.join("\n") + "\n";
    if cert_path.exists() && key_path.exists() {
        match std::fs::read_to_string(&names_path) {
            Ok(made_for) if made_for == listed => return load_pem(&cert_path, &key_path),
            Ok(made_for) => tracing::warn!(
                old = %made_for.trim().replace('\n', ", "),
                new = %names.join(", "),
                "host names changed: making a new self-signed certificate"
            ),
            // Made before the names were recorded: keep it, and record what it is used for.
            Err(_) => {
                std::fs::write(&names_path, &listed)
                    .with_context(|| format!("writing {}", names_path.display()))?;
                return load_pem(&cert_path, &key_path);
            }
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .context("generating a self-signed certificate")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    std::fs::write(&cert_path, certified.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    write_private(&key_path, certified.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&names_path, &listed)
        .with_context(|| format!("writing {}", names_path.display()))?;
    tracing::warn!(
        cert = %cert_path.display(),
        "no [tls] section: using a self-signed certificate; clients will not trust it"
    );
    load_pem(&cert_path, &key_path)
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// RFC 5929 §4.1: the certificate hashed with its signature's hash, SHA-256 for MD5 and SHA-1.
fn end_point_hash(cert: &CertificateDer<'_>) -> Vec<u8> {
    const SHA384_OIDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
    ];
    const SHA512_OIDS: [&[u8]; 2] = [
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
    ];
    let der = cert.as_ref();
    let contains = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if SHA512_OIDS.iter().any(|o| contains(o)) {
        Sha512::digest(der).to_vec()
    } else if SHA384_OIDS.iter().any(|o| contains(o)) {
        Sha384::digest(der).to_vec()
    } else {
        Sha256::digest(der).to_vec()
    }
}

/// RFC 9266 tls-exporter channel binding for an established connection.
pub fn exporter_binding<D>(connection: &rustls::ConnectionCommon<D>) -> Option<Vec<u8>> {
    let mut out = vec![0u8; 32];
    connection
        .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
        .ok()?;
    Some(out)
}
