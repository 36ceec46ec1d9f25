//! Fuzz target for `salon_web::fuzz::ws_frames` (see that function for what it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| salon_web::fuzz::ws_frames(data));
