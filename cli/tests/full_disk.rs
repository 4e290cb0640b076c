//! A full disk: the store on a small tmpfs (root only), an import that does not fit. The
//! command fails with a clear "no space" error; the store stays clean, keeps what it had,
//! frees the partial write, and works afterwards.

use berth_test_support::{Sandbox, is_root};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_keeps_the_store() {
    if !is_root() {
        eprintln!("skipped: mounting a small filesystem needs root");
        return;
    }
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let small = s.path().join("small");
    std::fs::create_dir(&small).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=24m"),
    )
    .unwrap();
    let _guard = Mount(small.clone());
    let run = |args: &[&str]| {
        s.cmd()
            .env("BERTH_ROOT", small.join("store"))
            .args(args)
            .output()
            .unwrap()
    };

    let rootfs = s.path().join("rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    assert!(
        run(&["import", rootfs.to_str().unwrap(), "fits"])
            .status
            .success()
    );

    let big = s.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let data = berth_test_support::pseudo_random_bytes(7, 30_000_000);
    std::fs::write(big.join("blob"), data).unwrap();
    let out = run(&["import", big.to_str().unwrap(), "too-big"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no space left on the device holding the store"),
        "{err}"
    );

    let check = run(&["system", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert_eq!(
        std::fs::read_dir(small.join("store/tmp")).unwrap().count(),
        0,
        "the partial blob is gone"
    );
    assert!(
        run(&["inspect", "fits"]).status.success(),
        "the earlier image is intact"
    );
    let usage = nix::sys::statvfs::statvfs(&small).unwrap();
    assert!(
        usage.blocks_available() * usage.fragment_size() > 15 << 20,
        "the space was freed"
    );
    assert!(run(&["tag", "fits", "still-works"]).status.success());
}
