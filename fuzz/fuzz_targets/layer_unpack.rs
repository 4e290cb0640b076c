//! The layer unpacker on a fuzzed tar stream: whatever it holds, nothing lands outside the
//! scratch directory (a sibling directory is checked to stay empty).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/dest");
    let outside = tmp.path().join("a/outside");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let options = berth_store::layer::unpack::UnpackOptions { max_bytes: 16 << 20, privileged: false, ..Default::default() };
    let _ = berth_store::layer::unpack::unpack(data, &dest, &options);
    for entry in walkdir::WalkDir::new(tmp.path()).into_iter().flatten() {
        let p = entry.path();
        assert!(p.starts_with(&dest) || dest.starts_with(p) || p == outside, "wrote outside: {}", p.display());
    }
});
