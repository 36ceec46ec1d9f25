//! Fuzz target for `salon_server::fuzz::data_form` (see that function for what it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| salon_server::fuzz::data_form(data));
