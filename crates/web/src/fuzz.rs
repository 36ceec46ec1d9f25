//! Entry points for the BOSH body and WebSocket frame fuzz targets in `crates/xml/fuzz`
//! (`scripts/fuzz.sh`); the unit tests feed them the committed seeds, so they build and run in
//! the normal test suite too.

use salon_xml::{ParserLimits, TreeLimits};

/// A BOSH request body (XEP-0124 §7) as `/http-bind` receives it, parsed into its attributes
/// and elements with the default limits.
pub fn bosh_body(data: &[u8]) {
    let _ = crate::bosh::parse_request(data, &ParserLimits::default(), TreeLimits::default());
}

/// Client bytes as the WebSocket transport reads them (RFC 6455 §5): frames taken one by one
/// from the front, messages of at most 64 KiB, until the input runs out or a frame is refused.
/// Each frame must consume bytes and stay inside the input.
pub fn ws_frames(data: &[u8]) {
    let mut input = data.to_vec();
    let mut reader = crate::ws_frame::Reader::default();
    let mut at = 0;
    while at < input.len() {
        match reader.next(&mut input[at..], 64 * 1024) {
            Ok(Some((used, received))) => {
                assert!(
                    used > 0 && at + used <= data.len(),
                    "frame outside the input"
                );
                if matches!(received, crate::ws_frame::Received::Text(_)) {
                    reader.message_done();
                }
                at += used;
            }
            Ok(None) | Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ws_frames_seeds() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../xml/fuzz/corpus/ws_frames");
        let mut fed = 0;
        for entry in std::fs::read_dir(&dir).expect("the seed directory exists") {
            let path = entry.expect("a directory entry").path();
            super::ws_frames(&std::fs::read(&path).expect("a readable seed"));
            fed += 1;
        }
        assert!(fed > 0, "no seeds in {}", dir.display());
    }

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
