#![no_main]
//! See moescope::fuzzing::trace_json.

libfuzzer_sys::fuzz_target!(|data: &[u8]| moescope::fuzzing::trace_json(data));
