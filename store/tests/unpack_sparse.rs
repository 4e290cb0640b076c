//! Whole 4 KiB blocks of zeros in a layer's files are left as holes: the files read back
//! byte for byte, take less disk, and the layer's diff-id is that of the stream as it came.

use std::os::unix::fs::MetadataExt;

use berth_store::layer::unpack::{UnpackOptions, unpack};
use berth_test_support::RawTar;

/// Unpacks `tar` into `dest` (made here); the diff-id must be the stream's digest.
fn unpack_checked(tar: &RawTar, dest: &std::path::Path) {
    std::fs::create_dir(dest).unwrap();
    let stream = tar.finish();
    let report = unpack(
        &stream[..],
        dest,
        &UnpackOptions {
            max_bytes: 1 << 30,
            privileged: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.diff_id, berth_oci::Digest::of(&stream));
}

#[test]
fn zero_blocks_become_holes_and_files_read_back_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
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
    unpack_checked(&tar, &dest);
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

/// Pages of `path` in the page cache (mincore over a mapping of the file).
fn cached_pages(path: &std::path::Path) -> usize {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    // SAFETY: a read-only shared mapping of a file we opened, unmapped below; mincore
    // writes one byte per page into `vec`, which has room for every page.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        let mut vec = vec![0u8; len.div_ceil(4096)];
        assert_eq!(libc::mincore(map, len, vec.as_mut_ptr()), 0);
        libc::munmap(map, len);
        vec.iter().filter(|b| **b & 1 == 1).count()
    }
}

/// Files of 8 MiB and more go to the disk past the page cache, still with holes for zero
/// blocks, and read back the same whatever their size (a last partial block is written
/// padded and the file cut back to its size).
#[test]
fn big_files_are_written_past_the_cache_and_read_back_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let random = |seed, n| berth_test_support::pseudo_random_bytes(seed, n);
    let mut mixed = random(1, 3 << 20);
    mixed.extend(vec![0u8; 3 << 20]);
    mixed.extend(random(2, (2 << 20) + 777));
    let mut zeros_at_end = random(3, 8 << 20);
    zeros_at_end.extend(vec![0u8; 8192 + 5]);
    let exact = random(4, 8 << 20);
    let small = random(5, 100_000);
    let mut tar = RawTar::new();
    tar.file("mixed", &mixed)
        .file("zeros-at-end", &zeros_at_end)
        .file("exact", &exact)
        .file("small", &small);
    unpack_checked(&tar, &dest);
    for (name, content) in [
        ("mixed", &mixed),
        ("zeros-at-end", &zeros_at_end),
        ("exact", &exact),
        ("small", &small),
    ] {
        let path = dest.join(name);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            content.len() as u64,
            "{name}"
        );
        // Before reading it back: what is in the cache is what the unpack left there.
        let cached = cached_pages(&path);
        if name == "small" {
            assert!(cached > 0, "a small file is written through the cache");
        } else {
            // The last, padded block may be read back into the cache by the truncation.
            assert!(cached <= 2, "{name}: {cached} pages in the cache");
        }
        assert_eq!(&std::fs::read(&path).unwrap(), content, "{name}");
    }
    let blocks = std::fs::metadata(dest.join("mixed")).unwrap().blocks();
    assert!(
        blocks * 512 < mixed.len() as u64 - (2 << 20),
        "mixed: {blocks} blocks for {} bytes",
        mixed.len()
    );
}
