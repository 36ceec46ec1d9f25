//! What a load-generating connection receives, whatever its transport (TCP, WebSocket or
//! BOSH): shared by `conn.rs` and `bosh.rs` so that neither imports the other's types back.

use salon_xml::minidom::Element;

/// What came in.
#[derive(Debug)]
pub enum Incoming {
    /// A stream header (TCP) or `<open/>` (WebSocket, BOSH).
    Open,
    Stanza(Element),
    /// The server closed the stream.
    Close,
}
