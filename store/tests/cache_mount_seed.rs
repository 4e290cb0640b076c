//! A cache mount seeded from a remote cache's blob (`--cache-from` with `mounts=true`): the
//! blob is someone else's tar, unpacked as a layer is (nothing lands outside the mount), and
//! it makes no device node even as root: a cache mount is bound into RUN steps, and a node
//! there would be a door to the host's devices.

use std::io::Write;

use berth_store::{CacheSharing, Store};
use berth_test_support::RawTar;

#[test]
fn a_seeded_cache_mount_gets_its_files_and_no_device_node() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let tar = RawTar::new()
        .dir("pkgs")
        .file("pkgs/a.deb", b"deb")
        .char_device("pkgs/disk", 8, 0)
        .symlink("out", "/etc")
        .file("out/passwd", b"planted")
        .file("../../escaped", b"x")
        .finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let blob = store
        .put_bytes("application/octet-stream", &gz.finish().unwrap())
        .unwrap();
    let (data, _lock) = store
        .cache_mount(
            "pkgs",
            (0o755, 0, 0),
            CacheSharing::Shared,
            Some(&blob.digest),
        )
        .unwrap()
        .expect("a free cache mount");
    assert_eq!(std::fs::read(data.join("pkgs/a.deb")).unwrap(), b"deb");
    assert!(
        std::fs::symlink_metadata(data.join("pkgs/disk")).is_err(),
        "a device node was made"
    );
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    assert!(!dir.path().join("escaped").exists() && !dir.path().join("store/escaped").exists());
    // A mount that exists already is never seeded again.
    assert!(store.has_cache_mount("pkgs"));
}
