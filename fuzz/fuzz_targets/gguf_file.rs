#![no_main]
//! See moescope::fuzzing::gguf_file.

libfuzzer_sys::fuzz_target!(|data: &[u8]| moescope::fuzzing::gguf_file(data));
