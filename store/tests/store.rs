//! The store: verified writes, tags, gc, check, and layer fidelity through pack → unpack.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use berth_oci::media_type;
use berth_oci::{Descriptor, Digest, ImageConfig, Reference, RootFs};
use berth_store::layer::pack::{PackOptions, pack};
use berth_store::layer::unpack::{UnpackOptions, unpack};
use berth_store::{Expect, Store, StoreError};
use berth_test_support::RawTar;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn tmp_is_empty(store: &Store) -> bool {
    std::fs::read_dir(store.tmp_dir()).unwrap().count() == 0
}

#[test]
fn blob_with_wrong_digest_is_not_kept() {
    let (_d, store) = store();
    let want = Descriptor::of(media_type::OCI_LAYER_TAR, b"right");
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"wrong").unwrap();
    let err = w.commit(Expect::Descriptor(&want)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch { .. } | StoreError::DigestMismatch { .. }
        ),
        "{err}"
    );
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"wrung").unwrap();
    let err = w.commit(Expect::Descriptor(&want)).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&want.digest));
    assert!(!store.has_blob(&Digest::of(b"wrung")));
    assert!(tmp_is_empty(&store));
}

/// Big blobs go past their first 8 MiB with O_DIRECT through an aligned staging buffer
/// (buffered where the filesystem refuses it: /dev/shm is tmpfs): whatever the sizes of the
/// writes, the blob committed is byte for byte what was written, with the right digest,
/// for plain writes and for shared chunks alike, and ends at its real size (the last direct
/// write is padded, then the file cut back).
#[test]
fn big_blobs_are_written_whole_past_the_direct_threshold() {
    let data = berth_test_support::pseudo_random_bytes(11, (20 << 20) + 12_345);
    let shm = std::path::Path::new("/dev/shm");
    let dirs: Vec<tempfile::TempDir> = std::iter::once(tempfile::tempdir().unwrap())
        .chain(shm.is_dir().then(|| tempfile::tempdir_in(shm).unwrap()))
        .collect();
    for dir in &dirs {
        let store = Store::open(dir.path().join("store")).unwrap();
        // Plain writes of odd sizes, one of them across the threshold.
        let mut w = store.blob_writer().unwrap();
        let mut at = 0;
        for (i, size) in [4095usize, (8 << 20) - 3, 1, 777_777, 3 << 20]
            .iter()
            .cycle()
            .enumerate()
        {
            if at == data.len() {
                break;
            }
            let n = (*size).min(data.len() - at);
            w.write_all(&data[at..at + n]).unwrap();
            at += n;
            assert!(i < 100);
        }
        let (digest, size) = w.commit(Expect::Any).unwrap();
        assert_eq!(
            (digest.clone(), size),
            (Digest::of(&data), data.len() as u64)
        );
        let path = store.root().join("blobs/sha256").join(digest.hex());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            data,
            "{}",
            dir.path().display()
        );
        std::fs::remove_file(&path).unwrap();
        // Shared 1 MiB chunks, as a pull writes them.
        let mut w = store.blob_writer().unwrap();
        for chunk in data.chunks(1 << 20) {
            w.write_shared(&std::sync::Arc::new(chunk.to_vec()))
                .unwrap();
        }
        let desc = Descriptor::of(media_type::OCI_LAYER_GZIP, &data);
        w.commit(Expect::Descriptor(&desc)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(tmp_is_empty(&store));
    }
}

/// A blob read past the cache comes back byte for byte, whatever its size, on a filesystem
/// that takes O_DIRECT and on one that may not (tmpfs, where the reads turn buffered).
#[test]
fn big_blobs_read_past_the_cache_come_back_the_same() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let shm = std::path::Path::new("/dev/shm")
        .is_dir()
        .then(|| tempfile::tempdir_in("/dev/shm").unwrap());
    let content = berth_test_support::pseudo_random_bytes(11, (9 << 20) + 123);
    for dir in std::iter::once(tmp.path()).chain(shm.as_ref().map(|d| d.path())) {
        let path = dir.join("blob");
        std::fs::write(&path, &content).unwrap();
        let mut reader = berth_store::blobs::DirectReader::new(std::fs::File::open(&path).unwrap());
        // Odd-sized reads, as a BufReader or gzip's chunking would make them.
        let mut back = Vec::new();
        let mut buf = vec![0u8; 1_000_003];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert!(
            back == content,
            "{}: {} bytes back",
            dir.display(),
            back.len()
        );
    }
}

#[test]
fn store_root_is_an_oci_layout() {
    let (_d, store) = store();
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.root().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.root().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
}

fn tiny_image(store: &Store, content: &[u8]) -> Descriptor {
    let tar = RawTar::new().file("hello", content).finish();
    let (diff_id, size) = store.put_reader(&tar[..], Expect::Any).unwrap();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs::layers(vec![diff_id.clone()]),
        ..Default::default()
    };
    store
        .write_image(
            &config,
            vec![Descriptor::new(media_type::OCI_LAYER_TAR, diff_id, size)],
        )
        .unwrap()
        .descriptor()
}

#[test]
fn same_image_same_manifest_digest() {
    let (_d, a) = store();
    let (_e, b) = store();
    assert_eq!(tiny_image(&a, b"x").digest, tiny_image(&b, b"x").digest);
}

#[test]
fn tags_resolve_and_gc_keeps_only_referenced() {
    let (_d, store) = store();
    let one = tiny_image(&store, b"one");
    let two = tiny_image(&store, b"two");
    let r1 = Reference::parse("app:1").unwrap();
    store.set_tag(&r1, &one).unwrap();
    store
        .set_tag(&Reference::parse("app:2").unwrap(), &two)
        .unwrap();
    let image = store.resolve("app:1").unwrap();
    store.ensure_snapshots(&image).unwrap();
    assert_eq!(
        store.resolve(image.id().short()).unwrap().root.digest,
        one.digest
    );
    assert_eq!(
        store
            .resolve(&format!("app@{}", one.digest))
            .unwrap()
            .root
            .digest,
        one.digest
    );
    assert!(matches!(
        store.resolve("nope"),
        Err(StoreError::NoSuchImage(_))
    ));

    store
        .remove_tag(&Reference::parse("app:2").unwrap())
        .unwrap();
    let report = store.gc().unwrap();
    assert_eq!(
        report.blobs_removed, 3,
        "manifest, config and layer of app:2"
    );
    assert!(store.resolve("app:1").is_ok());
    assert!(store.check().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(store.snapshots_dir()).unwrap().count(), 1);
}

#[test]
fn check_finds_corruption_and_missing_blobs() {
    let (_d, store) = store();
    let desc = tiny_image(&store, b"payload");
    store
        .set_tag(&Reference::parse("app").unwrap(), &desc)
        .unwrap();
    assert!(store.check().unwrap().is_empty());
    let image = store.resolve("app").unwrap();
    let layer = image.manifest_value.layers[0].digest.clone();
    let path = store.blob_path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[600] ^= 0xff;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let faults = store.check().unwrap();
    assert!(
        faults
            .iter()
            .any(|f| f.object == format!("blob {layer}") && f.problem.contains("hashes to")),
        "{faults:?}"
    );
    std::fs::remove_file(store.blob_path(&image.manifest_value.config.digest)).unwrap();
    let faults = store.check().unwrap();
    assert!(
        faults.iter().any(|f| f.problem.contains("is missing")),
        "{faults:?}"
    );
}

#[test]
fn tags_from_many_threads_are_all_kept() {
    let (_d, store) = store();
    let desc = tiny_image(&store, b"x");
    std::thread::scope(|s| {
        for t in 0..8 {
            let (store, desc) = (&store, &desc);
            s.spawn(move || {
                for i in 0..10 {
                    store
                        .set_tag(&Reference::parse(&format!("app{t}:{i}")).unwrap(), desc)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(store.tags().unwrap().len(), 80);
}

#[test]
fn a_layer_with_the_wrong_diff_id_makes_no_snapshot() {
    let (_d, store) = store();
    let tar = RawTar::new().file("f", b"1").finish();
    let (digest, size) = store.put_reader(&tar[..], Expect::Any).unwrap();
    let layer = Descriptor::new(media_type::OCI_LAYER_TAR, digest, size);
    let wrong = Digest::of(b"not the diff id");
    let err = store
        .unpack_snapshot(&layer, &wrong, &wrong, &UnpackOptions::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }));
    assert_eq!(std::fs::read_dir(store.snapshots_dir()).unwrap().count(), 0);
    assert!(tmp_is_empty(&store));
}

#[test]
fn pack_then_unpack_keeps_what_a_rootfs_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir/sub")).unwrap();
    std::fs::write(src.join("dir/file"), b"content").unwrap();
    std::fs::set_permissions(
        src.join("dir/file"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::hard_link(src.join("dir/file"), src.join("hardlink")).unwrap();
    std::os::unix::fs::symlink("/dir/file", src.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("dir/missing", src.join("dangling")).unwrap();
    std::fs::set_permissions(src.join("dir/sub"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let long = "n".repeat(150);
    std::fs::write(src.join(&long), b"long name").unwrap();
    let _ = rustix::fs::setxattr(
        src.join("dir/file").as_path(),
        "user.berth",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    );
    // Ownership and device nodes need root; without it the rest of the test still runs.
    let root = berth_test_support::needs_root("ownership and a device node, in part of the test");
    if root {
        std::os::unix::fs::chown(src.join("dir/file"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::chown(src.join("dir/file"), Some(1234), Some(5678)).unwrap();
        std::fs::set_permissions(
            src.join("dir/file"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("null").as_path(),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo").as_path(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();

    let mut tar = Vec::new();
    pack(&src, &mut tar, &PackOptions::default()).unwrap();
    let mut again = Vec::new();
    pack(&src, &mut again, &PackOptions::default()).unwrap();
    assert_eq!(
        Digest::of(&tar),
        Digest::of(&again),
        "packing is deterministic"
    );

    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let report = unpack(&tar[..], &dest, &UnpackOptions::default()).unwrap();
    assert_eq!(report.diff_id, Digest::of(&tar));

    let file = std::fs::metadata(dest.join("dir/file")).unwrap();
    assert_eq!(file.mode() & 0o7777, 0o4755);
    assert_eq!(std::fs::read(dest.join("dir/file")).unwrap(), b"content");
    assert_eq!(
        file.mtime(),
        std::fs::metadata(src.join("dir/file")).unwrap().mtime()
    );
    assert_eq!(
        std::fs::metadata(dest.join("hardlink")).unwrap().ino(),
        file.ino()
    );
    assert_eq!(
        std::fs::read_link(dest.join("abs-link")).unwrap().to_str(),
        Some("/dir/file")
    );
    assert_eq!(
        std::fs::read_link(dest.join("dangling")).unwrap().to_str(),
        Some("dir/missing")
    );
    assert_eq!(
        std::fs::metadata(dest.join("dir/sub")).unwrap().mode() & 0o7777,
        0o555
    );
    assert_eq!(std::fs::read(dest.join(&long)).unwrap(), b"long name");
    assert!(
        std::fs::symlink_metadata(dest.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let mut value = [0u8; 16];
    if let Ok(n) = rustix::fs::getxattr(src.join("dir/file").as_path(), "user.berth", &mut value) {
        assert_eq!(&value[..n], b"kept");
        let n = rustix::fs::getxattr(dest.join("dir/file").as_path(), "user.berth", &mut value)
            .unwrap();
        assert_eq!(&value[..n], b"kept");
    }
    if root {
        assert_eq!((file.uid(), file.gid()), (1234, 5678));
        let null = std::fs::metadata(dest.join("null")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &null.file_type()
        ));
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts_and_back() {
    if !berth_test_support::needs_root("overlay whiteouts") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let tar = RawTar::new()
        .dir("etc")
        .file("etc/.wh.gone", b"")
        .dir("opaque")
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/new", b"n")
        .finish();
    unpack(&tar[..], &dest, &UnpackOptions::default()).unwrap();
    let gone = std::fs::symlink_metadata(dest.join("etc/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &gone.file_type()
    ));
    assert_eq!(gone.rdev(), 0);
    let mut v = [0u8; 4];
    let n = rustix::fs::getxattr(
        dest.join("opaque").as_path(),
        "trusted.overlay.opaque",
        &mut v,
    )
    .unwrap();
    assert_eq!(&v[..n], b"y");
    // And an overlay upper dir packs back into OCI whiteouts.
    let mut out = Vec::new();
    pack(
        &dest,
        &mut out,
        &PackOptions {
            overlay_whiteouts: true,
            clamp_mtime: None,
        },
    )
    .unwrap();
    let names: Vec<String> = tar::Archive::new(&out[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"etc/.wh.gone".to_owned()), "{names:?}");
    assert!(
        names.contains(&"opaque/.wh..wh..opq".to_owned()),
        "{names:?}"
    );
}

/// An upper directory in fuse-overlayfs's forms (a `.wh.NAME` file, a `.wh..wh..opq` file,
/// `user.fuseoverlayfs.opaque`, a whiteout of `.wh..opq`, the origin xattr of a copy-up)
/// packs into the very tar the kernel's forms give (a char device 0:0, the opaque xattr).
#[test]
fn fuse_overlayfs_forms_pack_as_the_kernels_do() {
    if !berth_test_support::needs_root("overlay whiteouts and trusted xattrs") {
        return;
    }
    use rustix::fs::{FileType, Mode, XattrFlags, mknodat, setxattr};
    let tmp = tempfile::tempdir().unwrap();
    let (fuse, kernel) = (tmp.path().join("fuse"), tmp.path().join("kernel"));
    for root in [&fuse, &kernel] {
        for d in ["c", "d", "e"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("a"), "a").unwrap();
        std::fs::write(root.join("-z"), "z").unwrap();
        std::fs::write(root.join("c/-x"), "x").unwrap();
        std::fs::write(root.join("e/f"), "f").unwrap();
    }
    // The kernel's: a whiteout node, the opaque xattr.
    let root_dir = rustix::fs::open(&kernel, rustix::fs::OFlags::PATH, Mode::empty()).unwrap();
    mknodat(&root_dir, "b", FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    for d in ["c", "d"] {
        let p = kernel.join(d);
        setxattr(
            p.as_path(),
            berth_store::layer::opaque_xattr(),
            b"y",
            XattrFlags::empty(),
        )
        .unwrap();
    }
    // fuse-overlayfs's: a `.wh.` file (mode 0700, as it makes them), its opaque file (and the
    // whiteout of `.wh..opq` beside it), its own xattr, and the origin of a copied-up file.
    let wh = fuse.join(".wh.b");
    std::fs::write(&wh, "").unwrap();
    std::fs::set_permissions(&wh, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(fuse.join("c/.wh..wh..opq"), "").unwrap();
    let c = rustix::fs::open(fuse.join("c"), rustix::fs::OFlags::PATH, Mode::empty()).unwrap();
    mknodat(&c, ".wh..opq", FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    let d = fuse.join("d");
    setxattr(
        d.as_path(),
        "user.fuseoverlayfs.opaque",
        b"y",
        XattrFlags::empty(),
    )
    .unwrap();
    let f = fuse.join("e/f");
    setxattr(
        f.as_path(),
        "user.fuseoverlayfs.origin",
        b"/e/f",
        XattrFlags::empty(),
    )
    .unwrap();
    let packed = |dir: &std::path::Path| {
        let mut out = Vec::new();
        pack(
            dir,
            &mut out,
            &PackOptions {
                overlay_whiteouts: true,
                clamp_mtime: Some(0),
            },
        )
        .unwrap();
        out
    };
    let (from_fuse, from_kernel) = (packed(&fuse), packed(&kernel));
    let names: Vec<String> = tar::Archive::new(&from_fuse[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "-z",
            "a",
            ".wh.b",
            "c/",
            "c/.wh..wh..opq",
            "c/-x",
            "d/",
            "d/.wh..wh..opq",
            "e/",
            "e/f"
        ]
    );
    assert!(from_fuse == from_kernel, "the two tars differ");
}

/// overlayfs's own xattrs (`trusted.overlay.*`, and the `user.overlay.*` it reads under
/// `userxattr`, rootless) would steer the overlay a layer is mounted in (opaque directories,
/// redirects, xattr whiteouts, metacopy): a layer's are dropped at unpack, and a directory's
/// are never packed, whatever the process's user namespace; other `user.` xattrs pass.
#[test]
fn overlay_xattrs_never_come_from_a_layer_nor_go_into_one() {
    let tmp = tempfile::tempdir().unwrap();
    let steering: [(&str, &[u8]); 8] = [
        ("SCHILY.xattr.user.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.fuseoverlayfs.opaque", b"y"),
        ("SCHILY.xattr.user.fuseoverlayfs.origin", b"/etc"),
        ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.user.overlay.whiteout", b""),
        ("SCHILY.xattr.user.overlay.metacopy", b""),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.kept", b"k"),
    ];
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind) in [
        ("d/", tar::EntryType::Directory),
        ("d/f", tar::EntryType::Regular),
    ] {
        b.append_pax_extensions(steering.iter().copied()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_cksum();
        b.append_data(&mut h, name, &[][..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let report = unpack(&tar[..], &dest, &UnpackOptions::default()).unwrap();
    let mut names = vec![0u8; 4096];
    for path in [dest.join("d"), dest.join("d/f")] {
        let n = rustix::fs::llistxattr(path.as_path(), &mut names).unwrap_or(0);
        let listed: Vec<&[u8]> = names[..n]
            .split(|&c| c == 0)
            .filter(|k| !k.is_empty())
            .collect();
        assert!(
            !listed.iter().any(|k| k.starts_with(b"user.overlay.")
                || k.starts_with(b"trusted.overlay.")
                || k.starts_with(b"user.fuseoverlayfs.")),
            "{}: {:?}",
            path.display(),
            listed
                .iter()
                .map(|k| String::from_utf8_lossy(k))
                .collect::<Vec<_>>()
        );
    }
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains("user.overlay.opaque")),
        "the dropped xattrs are reported: {:?}",
        report.skipped
    );
    // The filesystem may take user xattrs (tmpfs since 6.6, ext4): then a directory carrying
    // overlay xattrs, as an upper dir does, packs without them and with the others.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    let d = src.join("d");
    if rustix::fs::setxattr(
        d.as_path(),
        "user.kept",
        b"k",
        rustix::fs::XattrFlags::empty(),
    )
    .is_err()
    {
        return;
    }
    rustix::fs::setxattr(
        d.as_path(),
        "user.overlay.redirect",
        b"/etc",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut out = Vec::new();
    pack(&src, &mut out, &PackOptions::default()).unwrap();
    let mut archive = tar::Archive::new(&out[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if let Some(ext) = entry.pax_extensions().unwrap() {
            for e in ext {
                seen.push(e.unwrap().key().unwrap().to_owned());
            }
        }
    }
    assert!(
        seen.iter().any(|k| k == "SCHILY.xattr.user.kept"),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|k| k.contains(".overlay.")), "{seen:?}");
}

#[test]
fn failed_lock_upgrade_keeps_the_shared_lock() {
    // Regression: a failed non-blocking flock upgrade used to leave the store unlocked, so
    // another process's start-up cleaning deleted this one's temp files mid-write.
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let b = Store::open(dir.path()).unwrap(); // its start-up upgrade fails: `a` holds the lock
    assert!(
        a.try_gc().unwrap().is_none(),
        "b must still hold its shared lock"
    );
    drop(b);
    assert!(a.try_gc().unwrap().is_some());
}

/// A pulled layer is unpacked while it arrives: with half of the blob sent, the first file is
/// already on disk (and the blob not yet in the store); the commit then renames the
/// directory into the snapshot, leaving `tmp/` empty. (The unpacker runs at most about
/// 2 MiB behind the network: 1 MiB chunks from the download, 1 MiB chunks for its hasher;
/// the blob is 8 MiB so that half of it is well past that.)
#[test]
fn layers_unpack_while_they_download() {
    use berth_oci::{ImageDestination, ImageManifest, Parsed};
    use tokio::io::AsyncWriteExt;
    let (_d, store) = store();
    let store = std::sync::Arc::new(store);
    let big = berth_test_support::pseudo_random_bytes(3, 8 << 20);
    let tar = RawTar::new()
        .file("first", b"arrives early")
        .file("second", &big)
        .finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer = Descriptor::of(media_type::OCI_LAYER_GZIP, &gz);
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs::layers(vec![Digest::of(&tar)]),
        ..Default::default()
    };
    let config_bytes = berth_oci::manifest::to_canonical_json(&config);
    let config_desc = store
        .put_bytes(media_type::OCI_CONFIG, &config_bytes)
        .unwrap();
    let manifest = Parsed::from_manifest(&ImageManifest::new_oci(config_desc, vec![layer.clone()]));
    let dst = berth_store::StoreDestination::new(
        store.clone(),
        vec![Reference::parse("early:1").unwrap()],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut w, r) = tokio::io::duplex(64 << 10);
        let put = {
            let (dst, layer) = (dst.clone(), layer.clone());
            tokio::spawn(async move { dst.put_blob(&layer, Box::pin(r)).await })
        };
        let half = gz.len() / 2;
        w.write_all(&gz[..half]).await.unwrap();
        let mut seen = false;
        for _ in 0..200 {
            seen = std::fs::read_dir(store.tmp_dir())
                .unwrap()
                .flatten()
                .any(|e| {
                    e.file_name().to_string_lossy().starts_with("early-")
                        && e.path().join("first").is_file()
                });
            if seen {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(seen, "the first file was unpacked before the blob ended");
        assert!(!store.has_blob(&layer.digest));
        w.write_all(&gz[half..]).await.unwrap();
        drop(w);
        put.await.unwrap().unwrap();
        dst.commit(&manifest).await.unwrap();
    });
    let chain = berth_oci::config::chain_ids(&config.rootfs.diff_ids)[0].clone();
    let snapshot = store.snapshot_path(&chain);
    assert_eq!(
        std::fs::read(snapshot.join("first")).unwrap(),
        b"arrives early"
    );
    assert_eq!(std::fs::read(snapshot.join("second")).unwrap(), big);
    assert!(tmp_is_empty(&store));
    assert!(store.check().unwrap().is_empty());
}
