#![no_main]
//! See moescope::fuzzing::tokenize: prompt bytes through the Mixtral fixture's tokenizer.

use moescope::model::checkpoint::Checkpoint;
use std::sync::OnceLock;

fn checkpoint() -> &'static Checkpoint {
    static CHECKPOINT: OnceLock<Checkpoint> = OnceLock::new();
    CHECKPOINT.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mixtral");
        Checkpoint::open(std::path::Path::new(dir)).expect("the Mixtral fixture opens")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| moescope::fuzzing::tokenize(checkpoint(), data));
