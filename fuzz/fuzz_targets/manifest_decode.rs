//! Manifest, index and config JSON: any bytes decode or fail cleanly; a decoded document's
//! digest is the digest of exactly the bytes given (never of a re-serialisation).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for declared in [
        None,
        Some(berth_oci::media_type::OCI_MANIFEST),
        Some(berth_oci::media_type::OCI_INDEX),
        Some(berth_oci::media_type::DOCKER_MANIFEST),
    ] {
        if let Ok(p) = berth_oci::Parsed::parse(data.to_vec(), declared) {
            assert_eq!(p.digest, berth_oci::Digest::of(data));
            assert_eq!(p.bytes, data);
        }
    }
    let _ = berth_oci::ImageConfig::parse(data);
});
