//! The tar guard on a fuzzed stream, read in uneven pieces: it never panics, passes every
//! byte it accepts through unchanged, and the tar crate reading through it never panics.
#![no_main]
use std::io::Read;

use berth_store::layer::guard::{Limits, TarGuard};
use libfuzzer_sys::fuzz_target;

/// Hands out `data` a few bytes at a time (sizes taken from the data itself).
struct Uneven<'a>(&'a [u8], usize);

impl Read for Uneven<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.1 = self.1.wrapping_mul(31).wrapping_add(7);
        let n = self.0.len().min(buf.len()).min(self.1 % 1500 + 1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits { extension: 4096, entries: 64 };
    let mut out = Vec::new();
    if TarGuard::new(Uneven(data, data.len()), limits).read_to_end(&mut out).is_ok() {
        assert_eq!(out, data);
    } else {
        assert!(data.starts_with(&out));
    }
    let mut archive = tar::Archive::new(TarGuard::new(data, limits));
    if let Ok(entries) = archive.entries() {
        for entry in entries.take(128) {
            let Ok(mut entry) = entry else { break };
            let _ = std::io::copy(&mut entry, &mut std::io::sink());
        }
    }
});
