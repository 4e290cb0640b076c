//! Image references: a parsed reference prints to a string that parses to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(r) = berth_oci::Reference::parse(&s) {
        let again = berth_oci::Reference::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(again, r);
        let _ = r.familiar();
    }
});
