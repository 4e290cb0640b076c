//! A full disk: the store on a small tmpfs (root only), an import that does not fit. The
//! command fails with a clear "no space" error; the store stays clean, keeps what it had,
//! frees the partial write, and works afterwards.

use berth_test_support::Sandbox;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_keeps_the_store() {
    if !berth_test_support::needs_root("mounts a tmpfs") {
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

/// An ext4 filesystem in a file, loop-mounted; unmounted (and the loop device freed) on drop.
struct LoopFs(std::path::PathBuf);

impl LoopFs {
    fn new(image: &std::path::Path, at: &std::path::Path, mib: u64) -> Option<LoopFs> {
        let f = std::fs::File::create(image).unwrap();
        f.set_len(mib << 20).unwrap();
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(image)
            .status()
            .ok()?;
        std::fs::create_dir_all(at).unwrap();
        let mount = std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(at)
            .status()
            .ok()?;
        (mkfs.success() && mount.success()).then(|| LoopFs(at.to_owned()))
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk in a build (a RUN whose layer does not fit, a COPY that does not fit) and in a
/// pull, with the store on a small loop-mounted ext4: a clear error naming the disk, a clean
/// store, nothing left in tmp/, and a small build that still works.
#[test]
fn a_full_disk_during_build_and_pull_keeps_the_store() {
    if !berth_test_support::needs_root("loop mounts") {
        return;
    }
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let Some(fs) = LoopFs::new(&s.path().join("disk.img"), &s.path().join("disk"), 64) else {
        berth_test_support::skip("mkfs.ext4 and a loop mount");
        return;
    };
    let store = fs.0.join("store");
    let run = |args: &[&str]| {
        s.cmd()
            .env("BERTH_ROOT", &store)
            .args(args)
            .output()
            .unwrap()
    };
    let must = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let intact = |what: &str| {
        let check = run(&["system", "check"]);
        assert!(
            check.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        assert_eq!(
            std::fs::read_dir(store.join("tmp")).unwrap().count(),
            0,
            "{what}: tmp/ keeps a partial file"
        );
        must(run(&["inspect", "busybox"]), what);
    };
    let rootfs = s.path().join("rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    must(
        run(&["import", rootfs.to_str().unwrap(), "busybox"]),
        "import",
    );
    let ctx = |name: &str, dockerfile: &str| {
        let dir = s.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
        dir
    };
    // The RUN's writes fit in the upper dir; its layer blob does not fit beside them.
    let c = ctx(
        "run-ctx",
        "FROM busybox\nRUN head -c 36000000 /dev/urandom > /big\n",
    );
    let out = run(&["build", "-t", "big:1", c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no space left"), "{err}");
    intact("RUN");
    // A COPY larger than the disk.
    let c = ctx("copy-ctx", "FROM busybox\nCOPY big /big\n");
    std::fs::write(
        c.join("big"),
        berth_test_support::pseudo_random_bytes(3, 80 << 20),
    )
    .unwrap();
    let out = run(&["build", "-t", "big:2", c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no space left"), "{err}");
    intact("COPY");
    // A pull of an image larger than the disk, pushed from a roomy store.
    let reg = berth_test_support::TestRegistry::start(Default::default());
    let roomy = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    must(
        roomy
            .cmd()
            .args(["import", rootfs.to_str().unwrap(), "busybox"])
            .output()
            .unwrap(),
        "roomy import",
    );
    let c = ctx(
        "pull-ctx",
        "FROM busybox\nRUN head -c 50000000 /dev/urandom > /a && head -c 30000000 /dev/urandom > /b\n",
    );
    must(
        roomy
            .cmd()
            .args(["build", "-q", "-t", "huge:1", c.to_str().unwrap()])
            .output()
            .unwrap(),
        "roomy build",
    );
    let remote = format!("{}/full/huge:1", reg.host);
    must(
        roomy
            .cmd()
            .args(["push", "huge:1", &remote])
            .output()
            .unwrap(),
        "push",
    );
    let out = run(&["pull", &remote]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no space left"), "{err}");
    intact("pull");
    // Still usable: a small build.
    let c = ctx("small-ctx", "FROM busybox\nRUN echo fits > /f\n");
    must(
        run(&["build", "-t", "small:1", c.to_str().unwrap()]),
        "small build",
    );
    intact("after");
}
