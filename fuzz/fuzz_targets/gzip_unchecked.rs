//! berth's gzip framing (the pull path's CRC-free decoder) on fuzzed bytes: no panic, and
//! whatever it decodes from a stream flate2 also accepts is what flate2 decodes.
#![no_main]
use std::io::Read;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut ours = Vec::new();
    let r = berth_store::layer::gzip::UncheckedGzDecoder::new(data)
        .take(8 << 20)
        .read_to_end(&mut ours);
    let mut theirs = Vec::new();
    let t = flate2::read::MultiGzDecoder::new(data)
        .take(8 << 20)
        .read_to_end(&mut theirs);
    if t.is_ok() && !data.is_empty() {
        assert!(r.is_ok(), "flate2 accepts what berth refuses: {r:?}");
        assert_eq!(ours, theirs);
    }
});
