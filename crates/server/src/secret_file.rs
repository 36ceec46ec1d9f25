//! Server secrets kept in `data_dir` (the upload slots' signing key, the guests' browser-id
//! key): made once from the OS's random source, written with mode 0600, read at every start so
//! that what was signed before a restart still verifies.

use std::path::Path;

/// Bytes of a secret made here.
const SECRET_LEN: usize = 32;

/// The secret in `path`, or a new one written there if there is none.
pub fn load_or_create(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    match std::fs::read(path) {
        Ok(secret) if secret.len() >= SECRET_LEN => return Ok(secret),
        Ok(_) => anyhow::bail!(
            "{} is shorter than {SECRET_LEN} bytes; delete it to have a new one made",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut secret = vec![0u8; SECRET_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, &secret)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}
