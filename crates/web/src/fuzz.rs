//! Entry point for the BOSH body fuzz target in `crates/xml/fuzz` (`scripts/fuzz.sh`); the unit
//! test feeds it the committed seeds, so it builds and runs in the normal test suite too.

use salon_xml::{ParserLimits, TreeLimits};

/// A BOSH request body (XEP-0124 §7) as `/http-bind` receives it, parsed into its attributes
/// and elements with the default limits.
pub fn bosh_body(data: &[u8]) {
    let _ = crate::bosh::parse_request(data, &ParserLimits::default(), TreeLimits::default());
}

#[cfg(test)]
mod tests {
    #[test]
    fn bosh_body_seeds() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../xml/fuzz/corpus/bosh_body");
        let mut fed = 0;
        for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
            let path = entry.expect("a directory entry").path();
            super::bosh_body(&std::fs::read(&path).expect("a readable seed"));
            fed += 1;
        }
        assert!(fed > 0, "no seeds in {}", dir.display());
    }
}
