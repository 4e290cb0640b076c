//! The fuse-overlayfs fallback taken for real, on a kernel that refuses overlayfs.
//!
//! This machine's kernel mounts overlayfs in a user namespace, so `cli/tests/rootless.rs`
//! can only force fuse-overlayfs (`BERTH_MOUNT_PROGRAM`). Here a qemu guest
//! ([`berth_test_support::guest`]) boots Debian's kernel without the overlay module (a
//! kernel without overlayfs answers `ENODEV`, the refusal an older kernel gives in a user
//! namespace), with the fuse module, fuse-overlayfs, `newuidmap` and `newgidmap` from the
//! host. A rootless berth, run as uid 1000 with subordinate ids and no variable set, must
//! choose fuse-overlayfs by itself, say so in `berth info`, build a Dockerfile that deletes a
//! file of its base and chowns, run the result, and leave no daemon or fuse mount.
//!
//! The guest needs no root on the host. Without a guest kernel (`scripts/guest-kernel`) the
//! test skips, saying so, unless `BERTH_REQUIRE_GUEST=1` (set by `scripts/test`) makes that a
//! failure; without fuse-overlayfs on the host it skips, and `BERTH_NO_SKIP=1` makes that a
//! failure.

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::path::Path;
use std::time::Duration;

use berth_test_support::guest::{Guest, GuestKernel};

const CHECKS: &str = r#"
echo "@@ overlayfs-known $(grep -c overlay /proc/filesystems)"
chmod 666 /dev/fuse
mkdir -p /tmp/u && chown 1000:1000 /tmp/u
cp -a /rootfs /tmp/u/rootfs && chown -R 1000:1000 /tmp/u/rootfs
mkdir /tmp/u/ctx
printf 'FROM busybox\nRUN rm /bin/ls && mkdir /d && echo hi > /d/f && chown -R 1000:1000 /d\n' > /tmp/u/ctx/Dockerfile
chown -R 1000:1000 /tmp/u/ctx
echo "@@ info $(as-user berth info --format '{{.Overlay}}' 2>&1)"
as-user berth import --change 'CMD ["/bin/sh"]' /tmp/u/rootfs busybox >/dev/null 2>/tmp/err || echo "@@ import-failed $(cat /tmp/err)"
as-user berth build -q -t t /tmp/u/ctx >/dev/null 2>/tmp/err
echo "@@ build-exit $?"
echo "@@ build-says $(tr '\n' ' ' < /tmp/err)"
echo "@@ ls $(as-user berth run --rm t sh -c 'test -e /bin/ls && echo present || echo gone' 2>&1)"
echo "@@ owner $(as-user berth run --rm t stat -c %u:%g /d/f 2>&1)"
echo "@@ contents $(as-user berth run --rm t cat /d/f 2>&1)"
echo "@@ daemons $(ps -o comm | grep -c '^fuse-overlayfs')"
echo "@@ fuse-mounts $(cat /proc/[0-9]*/mountinfo 2>/dev/null | grep -c ' - fuse')"
"#;

#[test]
fn without_overlayfs_a_rootless_berth_falls_back_to_fuse_overlayfs_by_itself() {
    let Some(kernel) = GuestKernel::needed() else {
        return;
    };
    let fuse_overlayfs = Path::new("/usr/bin/fuse-overlayfs");
    if !fuse_overlayfs.exists() {
        berth_test_support::skip("fuse-overlayfs (apt-get install fuse-overlayfs)");
        return;
    }
    let mut guest = Guest::new(&kernel);
    guest
        .add_binary(env!("CARGO_BIN_EXE_berth").as_ref(), "berth")
        .add_binary(fuse_overlayfs, "fuse-overlayfs")
        .add_rootless_user()
        .add_module("fuse")
        .add_busybox_rootfs("/rootfs");
    let out = guest.boot(CHECKS, "", Duration::from_secs(400));
    let console = &out.console;
    assert_eq!(out.value("exit"), "0", "{console}");
    assert_eq!(out.value("overlayfs-known"), "0", "no overlayfs: {console}");
    assert!(
        out.value("info")
            .starts_with("fuse-overlayfs (/bin/fuse-overlayfs), since"),
        "{console}"
    );
    assert!(out.values("import-failed").next().is_none(), "{console}");
    assert_eq!(out.value("build-exit"), "0", "{console}");
    assert_eq!(
        out.value("ls"),
        "gone",
        "the deletion is in the layer: {console}"
    );
    assert_eq!(out.value("owner"), "1000:1000", "{console}");
    assert_eq!(out.value("contents"), "hi", "{console}");
    assert_eq!(out.value("daemons"), "0", "no daemon left: {console}");
    assert_eq!(
        out.value("fuse-mounts"),
        "0",
        "no fuse mount left: {console}"
    );
}
