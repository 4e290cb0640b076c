//! `WWW-Authenticate` headers: any bytes parse without a panic, and every challenge has a
//! non-empty scheme made of token characters.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    for c in berth_registry_client::auth::parse_challenges(&s) {
        assert!(!c.scheme.is_empty());
        assert!(c.scheme.chars().all(|ch| ch.is_ascii_graphic()));
    }
});
