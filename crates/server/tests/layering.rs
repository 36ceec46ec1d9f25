//! The shape docs/ARCHITECTURE.md promises, checked on the source: the core never imports a
//! feature or service (features register through hooks and the registry instead), and no
//! source file grows past 800 lines.

use std::path::{Path, PathBuf};

/// Files and folders of the core, relative to `src/`.
const CORE: &[&str] = &[
    "bans.rs",
    "config",
    "durable.rs",
    "extensions.rs",
    "hooks.rs",
    "limits.rs",
    "metrics.rs",
    "registry.rs",
    "remote.rs",
    "router.rs",
    "server.rs",
    "service.rs",
    "session",
    "session_handle.rs",
    "stanza",
    "stanza.rs",
    "storage",
    "tls.rs",
];

/// Module paths of features and services, which the core must not name.
const FEATURES: &[&str] = &[
    "crate::im",
    "crate::modules",
    "crate::muc",
    "crate::upload",
    "crate::pep",
    "crate::push",
    "crate::archive",
    "crate::s2s",
    "crate::component",
    "crate::builtin",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("readable source folder") {
            rust_files(&entry.expect("a directory entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn the_core_never_imports_a_feature() {
    let mut files = Vec::new();
    for part in CORE {
        rust_files(&src().join(part), &mut files);
    }
    assert!(files.len() > 20, "the core's files were found: {files:?}");
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for feature in FEATURES {
                if code.contains(&format!("{feature}::")) || code.contains(&format!("{feature};")) {
                    offences.push(format!(
                        "{}:{}: {}",
                        file.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "the core names a feature:\n{}",
        offences.join("\n")
    );
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("tests.rs"))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > 800).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by concern: {long:?}");
}
