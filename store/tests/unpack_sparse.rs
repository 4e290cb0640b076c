//! Whole 4 KiB blocks of zeros in a layer's files are left as holes: the files read back
//! byte for byte, take less disk, and the layer's diff-id is that of the stream as it came.

use std::os::unix::fs::MetadataExt;

use berth_store::layer::unpack::{UnpackOptions, unpack};
use berth_test_support::RawTar;

#[test]
fn zero_blocks_become_holes_and_files_read_back_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let data = berth_test_support::pseudo_random_bytes(7, 5000);
    // Data, 1 MiB of zeros, data, then zeros to the end (a hole at the end needs the size
    // set explicitly); zeros that do not fill an aligned block are written as data.
    let mut mixed = data.clone();
    mixed.extend(vec![0u8; 1 << 20]);
    mixed.extend(b"tail");
    mixed.extend(vec![0u8; 3 * 4096 + 17]);
    let zeros = vec![0u8; 2 << 20];
    let short_zeros = vec![0u8; 4095];
    let mut tar = RawTar::new();
    tar.file("mixed", &mixed)
        .file("zeros", &zeros)
        .file("short", &short_zeros)
        .file("data", &data);
    let stream = tar.finish();
    let report = unpack(
        &stream[..],
        &dest,
        &UnpackOptions {
            max_bytes: 1 << 30,
            privileged: false,
        },
    )
    .unwrap();
    assert_eq!(report.diff_id, berth_oci::Digest::of(&stream));
    for (name, content) in [
        ("mixed", &mixed),
        ("zeros", &zeros),
        ("short", &short_zeros),
        ("data", &data),
    ] {
        assert_eq!(&std::fs::read(dest.join(name)).unwrap(), content, "{name}");
    }
    // Allocated 512-byte units: the 2 MiB of zeros take next to none (a block where a read
    // ended mid-block is written), the mixed file far less than its size. (A filesystem without holes would allocate them: then this
    // machine's would be the odd one out, and the test says so.)
    let blocks = |name: &str| std::fs::metadata(dest.join(name)).unwrap().blocks();
    assert!(blocks("zeros") <= 64, "zeros: {} blocks", blocks("zeros"));
    assert!(
        blocks("mixed") * 512 < mixed.len() as u64 / 4,
        "mixed: {} blocks for {} bytes",
        blocks("mixed"),
        mixed.len()
    );
}
