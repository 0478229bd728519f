#![no_main]
//! See moescope::fuzzing::config_json.

libfuzzer_sys::fuzz_target!(|data: &[u8]| moescope::fuzzing::config_json(data));
