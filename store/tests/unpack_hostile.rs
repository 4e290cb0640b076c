//! Hostile layers: each tar tries to write outside the snapshot directory; each test checks
//! the host side afterwards (nothing appeared or changed outside `dest`).

use std::path::{Path, PathBuf};

use berth_store::StoreError;
use berth_store::layer::unpack::{UnpackOptions, unpack};
use berth_test_support::RawTar;

struct Scene {
    _tmp: tempfile::TempDir,
    /// `<tmp>/outside`: a directory next to the snapshot that must stay empty.
    outside: PathBuf,
    /// `<tmp>/a/b/dest`: the snapshot directory.
    dest: PathBuf,
}

fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let dest = tmp.path().join("a/b/dest");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    Scene {
        outside,
        dest,
        _tmp: tmp,
    }
}

fn options() -> UnpackOptions {
    UnpackOptions {
        max_bytes: 1 << 30,
        privileged: berth_test_support::is_root(),
        ..Default::default()
    }
}

/// Every path under `root` except those under `dest`.
fn files_outside(root: &Path, dest: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .map(|e| e.path().to_owned())
        .filter(|p| !p.starts_with(dest) && p.is_file())
        .collect()
}

fn apply(s: &Scene, tar: &RawTar) -> Result<berth_store::layer::unpack::UnpackReport, StoreError> {
    unpack(&tar.finish()[..], &s.dest, &options())
}

fn assert_host_untouched(s: &Scene) {
    let root = s.dest.parent().unwrap().parent().unwrap().parent().unwrap();
    assert_eq!(
        files_outside(root, &s.dest),
        Vec::<PathBuf>::new(),
        "something was written outside the snapshot"
    );
    assert!(!Path::new("/pwned").exists() && !Path::new("/tmp/pwned-by-berth-test").exists());
}

#[test]
fn dotdot_names_stay_inside() {
    let s = scene();
    apply(
        &s,
        RawTar::new()
            .file("../../../pwned", b"x")
            .file("a/../../..//../outside/pwned", b"x"),
    )
    .unwrap();
    assert_host_untouched(&s);
    assert!(s.dest.join("pwned").is_file());
    assert!(s.dest.join("outside/pwned").is_file());
}

#[test]
fn absolute_names_stay_inside() {
    let s = scene();
    let abs = format!("{}/pwned", s.outside.display());
    apply(
        &s,
        RawTar::new()
            .file(&abs, b"x")
            .file("/tmp/pwned-by-berth-test", b"x"),
    )
    .unwrap();
    assert_host_untouched(&s);
    assert!(s.dest.join(abs.trim_start_matches('/')).is_file());
}

#[test]
fn symlink_parent_to_outside_is_resolved_inside() {
    let s = scene();
    let target = s.outside.display().to_string();
    let result = apply(
        &s,
        RawTar::new()
            .symlink("link", &target)
            .file("link/pwned", b"x"),
    );
    assert_host_untouched(&s);
    // Either refused or written under dest/<outside path>; never into the real outside dir.
    if result.is_ok() {
        assert!(
            s.dest
                .join(target.trim_start_matches('/'))
                .join("pwned")
                .is_file()
        );
    }
}

#[test]
fn relative_symlink_climbing_out_is_clamped() {
    let s = scene();
    apply(
        &s,
        RawTar::new()
            .symlink("up", "../../../../../../../..")
            .dir("up/outside")
            .file("up/outside/pwned", b"x"),
    )
    .unwrap();
    assert_host_untouched(&s);
    assert!(s.dest.join("outside/pwned").is_file());
}

#[test]
fn symlink_to_etc_then_passwd_does_not_touch_host_etc() {
    let s = scene();
    let before = std::fs::read("/etc/passwd").unwrap();
    // Inside the root, `etc -> /etc` points at itself: the write is refused (a loop).
    let result = apply(
        &s,
        RawTar::new()
            .symlink("etc", "/etc")
            .file("etc/passwd", b"pwned::0:0::/:/bin/sh\n"),
    );
    assert!(result.is_err());
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), before);
    assert!(
        std::fs::symlink_metadata(s.dest.join("etc"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // With a real etc directory behind it, the write lands inside the layer.
    let s = scene();
    apply(
        &s,
        RawTar::new()
            .dir("real")
            .symlink("etc", "/real")
            .file("etc/passwd", b"pwned\n"),
    )
    .unwrap();
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), before);
    assert_eq!(
        std::fs::read(s.dest.join("real/passwd")).unwrap(),
        b"pwned\n"
    );
}

#[test]
fn symlink_written_through_in_a_later_layer_stays_inside() {
    // The GNU tar CVE-2025-45582 shape: layer 1 makes the link, layer 2 writes through it.
    // Layers unpack into their own snapshots, and even replaying both into one directory
    // resolves the link inside it.
    let s = scene();
    let target = s.outside.display().to_string();
    apply(&s, RawTar::new().symlink("dir", &target)).unwrap();
    let _ = apply(&s, RawTar::new().file("dir/pwned", b"x"));
    assert_host_untouched(&s);
}

#[test]
fn hard_link_to_host_passwd_is_refused() {
    let s = scene();
    let nlink = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata("/etc/passwd").unwrap());
    let err = apply(&s, RawTar::new().hardlink("passwd", "/etc/passwd")).unwrap_err();
    assert!(matches!(err, StoreError::HostileLayer { .. }), "{err}");
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata("/etc/passwd").unwrap()),
        nlink
    );
    assert_host_untouched(&s);
}

#[test]
fn hard_link_via_dotdot_resolves_inside() {
    let s = scene();
    std::fs::write(s.outside.join("secret"), b"host secret").unwrap();
    let err = apply(&s, RawTar::new().hardlink("h", "../../../outside/secret")).unwrap_err();
    assert!(matches!(err, StoreError::HostileLayer { .. }), "{err}");
    assert!(!s.dest.join("h").exists());
}

#[test]
fn hard_link_through_symlinked_parent_stays_inside() {
    let s = scene();
    std::fs::write(s.outside.join("secret"), b"host secret").unwrap();
    let target = s.outside.display().to_string();
    let result = apply(
        &s,
        RawTar::new()
            .symlink("l", &target)
            .hardlink("h", "l/secret"),
    );
    assert!(
        result.is_err(),
        "a hard link through a symlink out must not reach the host file"
    );
    assert!(!s.dest.join("h").exists());
}

#[test]
fn hard_link_to_a_symlink_links_the_symlink_itself() {
    let s = scene();
    apply(
        &s,
        RawTar::new().symlink("s", "/etc/passwd").hardlink("h", "s"),
    )
    .unwrap();
    let meta = std::fs::symlink_metadata(s.dest.join("h")).unwrap();
    assert!(meta.file_type().is_symlink());
}

#[test]
fn directory_replaced_by_symlink_to_root() {
    let s = scene();
    let result = apply(
        &s,
        RawTar::new()
            .dir("d")
            .file("d/ok", b"1")
            .symlink("d", "/")
            .file("d/tmp/pwned-by-berth-test", b"x"),
    );
    assert_host_untouched(&s);
    if result.is_ok() {
        assert!(
            std::fs::symlink_metadata(s.dest.join("d"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(s.dest.join("tmp/pwned-by-berth-test").is_file());
    }
}

#[test]
fn duplicate_entries_last_one_wins() {
    let s = scene();
    apply(
        &s,
        RawTar::new()
            .file("f", b"first")
            .file("f", b"second")
            .dir("d")
            .file("d/x", b"1")
            .file("d", b"now a file")
            .dir("e")
            .dir("e"),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.dest.join("f")).unwrap(), b"second");
    assert_eq!(std::fs::read(s.dest.join("d")).unwrap(), b"now a file");
    assert!(s.dest.join("e").is_dir());
}

#[test]
fn whiteout_naming_dotdot_is_refused() {
    for name in ["x/.wh...", "x/.wh..", ".wh."] {
        let s = scene();
        let err = apply(&s, RawTar::new().file(name, b"")).unwrap_err();
        assert!(
            matches!(err, StoreError::HostileLayer { .. }),
            "{name}: {err}"
        );
        assert_host_untouched(&s);
    }
}

#[test]
fn gzip_bomb_is_bounded() {
    let s = scene();
    let big = vec![0u8; 8 << 20];
    let tar = RawTar::new().file("zeros", &big).finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 64 << 10);
    let reader =
        berth_store::layer::decompress(&gz[..], berth_oci::media_type::Compression::Gzip).unwrap();
    let err = unpack(
        reader,
        &s.dest,
        &UnpackOptions {
            max_bytes: 1 << 20,
            ..options()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::LayerTooLarge { limit } if limit == 1 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("BERTH_MAX_LAYER_SIZE"));
}

#[test]
fn huge_header_size_fails_cleanly() {
    let s = scene();
    let err = unpack(
        &RawTar::new().lying_size("big", 1 << 40).finish()[..],
        &s.dest,
        &options(),
    )
    .unwrap_err();
    // A stream that ends inside an entry is an error naming the entry, not a silent short
    // file (the tar reader ends the entry quietly; the unpacker checks the count).
    assert!(
        err.to_string().contains("\"big\"") && err.to_string().contains("truncated"),
        "{err}"
    );
    assert_host_untouched(&s);
}

#[test]
fn truncated_entry_followed_by_nothing_names_the_entry() {
    let s = scene();
    let mut tar = RawTar::new().file("whole", b"complete").finish();
    tar.truncate(tar.len() - 1024);
    let mut cut = RawTar::new().file("cut", &[7u8; 2048]).finish();
    cut.truncate(512 + 1000);
    tar.extend_from_slice(&cut);
    let err = unpack(&tar[..], &s.dest, &options()).unwrap_err();
    assert!(err.to_string().contains("\"cut\""), "{err}");
}

#[test]
fn dangling_symlink_parent_is_created_inside_the_root() {
    let s = scene();
    let outside = s.outside.display().to_string();
    apply(
        &s,
        RawTar::new()
            .symlink("abs", &outside)
            .file("abs/f", b"x")
            .symlink("rel", "../../../../../../opt/y")
            .file("rel/g", b"y"),
    )
    .unwrap();
    assert_host_untouched(&s);
    // As containerd: the missing target is made where the link points, inside the root.
    assert!(
        s.dest
            .join(outside.trim_start_matches('/'))
            .join("f")
            .is_file()
    );
    assert!(s.dest.join("opt/y/g").is_file());
}

#[test]
fn symlink_loop_as_a_parent_is_refused() {
    let s = scene();
    let err = apply(
        &s,
        RawTar::new()
            .symlink("l1", "l2")
            .symlink("l2", "l1")
            .file("l1/x", b""),
    )
    .unwrap_err();
    assert!(err.to_string().contains("l1"), "{err}");
    assert_host_untouched(&s);
}

#[test]
fn names_with_newlines_and_invalid_utf8_are_kept_inside() {
    let s = scene();
    apply(
        &s,
        RawTar::new()
            .file_bytes(b"line\nbreak", b"1")
            .file_bytes(b"bad\xff\xfe", b"2"),
    )
    .unwrap();
    assert!(s.dest.join("line\nbreak").is_file());
    assert!(
        s.dest
            .join(
                std::os::unix::ffi::OsStrExt::from_bytes(b"bad\xff\xfe" as &[u8])
                    as &std::ffi::OsStr
            )
            .is_file()
    );
    assert_eq!(std::fs::read_dir(&s.dest).unwrap().count(), 2);
    assert_host_untouched(&s);
}

fn context_options() -> UnpackOptions {
    UnpackOptions {
        build_context: true,
        max_entries: 50,
        ..options()
    }
}

/// A build context's tar: `..` that climbs out is refused (names and hard-link targets),
/// `..` that stays inside is fine, `.wh.` names are plain files, and the entry count is
/// bounded; nothing lands outside either way.
#[test]
fn a_build_context_refuses_climbing_names_and_keeps_wh_names() {
    let s = scene();
    let unpack_context = |tar: &mut RawTar| unpack(&tar.finish()[..], &s.dest, &context_options());
    for tar in [
        RawTar::new().file("../pwned", b"x"),
        RawTar::new().file("a/../../pwned", b"x"),
        RawTar::new().file("f", b"x").hardlink("h", "../outside/x"),
    ] {
        let err = unpack_context(tar).unwrap_err();
        assert!(err.to_string().contains("climbs out"), "{err}");
        assert_host_untouched(&s);
    }
    unpack_context(
        RawTar::new()
            .file("a/../kept", b"k")
            .file(".wh.kept", b"not a whiteout")
            .file("d/.wh..wh..opq", b"plain"),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.dest.join("kept")).unwrap(), b"k");
    assert_eq!(
        std::fs::read(s.dest.join(".wh.kept")).unwrap(),
        b"not a whiteout"
    );
    assert!(s.dest.join("d/.wh..wh..opq").is_file());
    let mut many = RawTar::new();
    for i in 0..60 {
        many.file(&format!("n{i}"), b"");
    }
    let err = unpack_context(&mut many).unwrap_err();
    assert!(
        format!("{err:?}").contains("more than 50 entries"),
        "{err:?}"
    );
    assert_host_untouched(&s);
}
