#![no_main]
//! See moescope::fuzzing::safetensors_index.

libfuzzer_sys::fuzz_target!(|data: &[u8]| moescope::fuzzing::safetensors_index(data));
