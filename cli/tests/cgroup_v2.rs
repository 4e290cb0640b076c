//! cgroup v2 enforcement, for real, in a guest kernel with every controller on the unified
//! hierarchy (`cgroup_no_v1=all`).
//!
//! This machine binds memory, pids and cpu to v1 and will not release them (unmounting the
//! v1 pids hierarchy answers EBUSY with no user in sight), so `cli/tests/run.rs` shows the
//! v1 side only. Here the same checks run in a qemu guest ([`berth_test_support::guest`])
//! booted from Debian's kernel: `--memory` kills with 137 and says so, `--pids-limit` stops
//! a fork bomb, `--cpus 0.5` holds a busy loop near half a core, the v2 files hold the
//! limits while a detached container runs, and no cgroup or mount is left afterwards. And,
//! with no devices cgroup at all, a device node from an image layer cannot be opened.
//!
//! The guest needs no root on the host. Without a guest kernel (`scripts/guest-kernel`
//! fetches one; `scripts/test` runs it) the test skips, saying so, unless
//! `BERTH_REQUIRE_GUEST=1` (set by `scripts/test`) makes that a failure.

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::time::Duration;

use berth_test_support::guest::{Guest, GuestKernel};
use berth_test_support::scripts;

/// The checks, run by the guest's shell; each result is a `@@ KEY VALUE` line.
const CHECKS: &str = r#"
export BERTH_ROOT=/tmp/store
echo "@@ v1-lines $(grep -vc '^0::' /proc/self/cgroup)"
echo "@@ controllers $(cat /sys/fs/cgroup/cgroup.controllers)"
berth import --change 'CMD ["/bin/sh"]' /rootfs busybox >/dev/null 2>&1 || echo "@@ import-failed"
cut -d' ' -f2 /proc/mounts | sort > /tmp/mounts-before

berth run --rm --memory 32m busybox dd if=/dev/zero of=/dev/null bs=64M count=1 2>/tmp/err
echo "@@ oom-exit $?"
echo "@@ oom-says $(tr '\n' ' ' < /tmp/err)"
berth run --rm --memory 64m busybox dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null
echo "@@ under-limit-exit $?"

echo "@@ fork-bomb $(berth run --rm --pids-limit 20 busybox sh -c "$(cat /fork-bomb)" 2>/dev/null | tail -n1)"
echo "@@ spin-limited $(berth run --rm --cpus 0.5 busybox sh -c "$(cat /spin)")"
echo "@@ spin-free $(berth run --rm busybox sh -c "$(cat /spin)")"

berth run -d --name held --memory 48m --pids-limit 30 --cpus 0.5 busybox sleep 60 >/dev/null
for i in $(seq 1 100); do
  [ -n "$(cat /sys/fs/cgroup/berth/*/cgroup.procs 2>/dev/null)" ] && break
  sleep 0.1
done
for f in memory.max pids.max cpu.max; do echo "@@ $f $(cat /sys/fs/cgroup/berth/*/$f)"; done
echo "@@ procs $(cat /sys/fs/cgroup/berth/*/cgroup.procs | wc -l)"
berth stop -t 1 held >/dev/null
berth rm held >/dev/null

echo "@@ container-cgroups-left $(find /sys/fs/cgroup/berth -mindepth 1 -type d | wc -l)"
echo "@@ other-cgroups $(find /sys/fs/cgroup -mindepth 1 -type d ! -path '/sys/fs/cgroup/berth*' | wc -l)"
cut -d' ' -f2 /proc/mounts | sort > /tmp/mounts-after
echo "@@ mounts-same $(cmp -s /tmp/mounts-before /tmp/mounts-after && echo yes || echo no)"
diff /tmp/mounts-before /tmp/mounts-after | sed 's/^/@@ mounts-diff /'
berth system check >/dev/null 2>&1
echo "@@ store-check $?"
"#;

#[test]
fn memory_pids_and_cpu_limits_are_enforced_on_a_pure_cgroup_v2_kernel() {
    let Some(kernel) = GuestKernel::needed() else {
        return;
    };
    let mut guest = Guest::new(&kernel);
    guest
        .add_binary(env!("CARGO_BIN_EXE_berth").as_ref(), "berth")
        .add_module("overlay")
        .add_busybox_rootfs("/rootfs")
        .add_file("/fork-bomb", scripts::FORK_BOMB, 0o644)
        .add_file("/spin", scripts::SPIN, 0o644);
    let out = guest.boot(CHECKS, "cgroup_no_v1=all", Duration::from_secs(400));
    let console = &out.console;

    assert_eq!(out.value("exit"), "0", "{console}");
    assert_eq!(
        out.value("v1-lines"),
        "0",
        "only the unified hierarchy: {console}"
    );
    let controllers: Vec<&str> = out.value("controllers").split_whitespace().collect();
    for c in ["memory", "pids", "cpu"] {
        assert!(controllers.contains(&c), "{c} on v2: {controllers:?}");
    }
    assert!(out.values("import-failed").next().is_none(), "{console}");

    assert_eq!(out.value("oom-exit"), "137", "{console}");
    assert!(
        out.value("oom-says")
            .contains("ran out of memory (limit 32MiB)"),
        "{console}"
    );
    assert_eq!(out.value("under-limit-exit"), "0", "{console}");

    let count = scripts::process_count(out.value("fork-bomb").as_bytes());
    assert!(count <= 20, "{count} processes under --pids-limit 20");
    assert!(count >= 10, "the limit still allows some: {count}");

    let limited = scripts::cpu_share(out.value("spin-limited"));
    let free = scripts::cpu_share(out.value("spin-free"));
    assert!(limited <= 0.62, "--cpus 0.5 used {limited:.2} of a core");
    assert!(limited >= 0.1, "the loop made progress: {limited:.2}");
    if free > 0.8 {
        assert!(
            limited < 0.7 * free,
            "the limit made a difference: {limited:.2} against {free:.2}"
        );
    } else {
        eprintln!("guest busy ({free:.2} of a core unlimited): the comparison is skipped");
    }

    assert_eq!(out.value("memory.max"), (48u64 << 20).to_string());
    assert_eq!(out.value("pids.max"), "30");
    assert_eq!(out.value("cpu.max"), "50000 100000");
    assert_eq!(
        out.value("procs"),
        "1",
        "sleep alone in its cgroup: {console}"
    );

    assert_eq!(out.value("container-cgroups-left"), "0", "{console}");
    assert_eq!(out.value("other-cgroups"), "0", "{console}");
    assert_eq!(out.value("mounts-same"), "yes", "{console}");
    assert_eq!(out.value("store-check"), "0", "{console}");
}

/// Device nodes where no devices cgroup enforces Docker's rules (berth loads no BPF device
/// program on v2): a char node 1:5 in an image layer, outside `/dev`, cannot be opened
/// (the rootfs is `nodev`), a container cannot make one (no `CAP_MKNOD`), and `/dev`'s own
/// nodes work; `--privileged` is trusted with them.
const DEVICE_CHECKS: &str = r#"
export BERTH_ROOT=/tmp/store
echo "@@ v1-lines $(grep -vc '^0::' /proc/self/cgroup)"
cp -a /rootfs /rootfs-node && mknod /rootfs-node/node c 1 5
berth import --change 'CMD ["/bin/sh"]' /rootfs-node nodes >/dev/null 2>&1 || echo "@@ import-failed"
try='if head -c1 "$1" >/dev/null 2>/tmp/e; then echo opened; else echo "refused $(cat /tmp/e)"; fi'
echo "@@ image-node $(berth run --rm nodes sh -c "$try" sh /node 2>&1)"
echo "@@ dev-zero $(berth run --rm nodes sh -c "$try" sh /dev/zero 2>&1)"
echo "@@ mknod $(berth run --rm nodes sh -c 'mknod /made c 1 5 2>/dev/null && echo made || echo refused' 2>&1)"
echo "@@ privileged $(berth run --rm --privileged nodes sh -c "$try" sh /node 2>&1)"
"#;

#[test]
fn a_device_node_from_an_image_cannot_be_opened_without_a_devices_cgroup() {
    let Some(kernel) = GuestKernel::needed() else {
        return;
    };
    let mut guest = Guest::new(&kernel);
    guest
        .add_binary(env!("CARGO_BIN_EXE_berth").as_ref(), "berth")
        .add_module("overlay")
        .add_busybox_rootfs("/rootfs");
    let out = guest.boot(DEVICE_CHECKS, "cgroup_no_v1=all", Duration::from_secs(300));
    let console = &out.console;
    assert_eq!(out.value("exit"), "0", "{console}");
    assert_eq!(out.value("v1-lines"), "0", "{console}");
    assert!(out.values("import-failed").next().is_none(), "{console}");
    assert!(
        out.value("image-node").starts_with("refused")
            && out.value("image-node").contains("Permission denied"),
        "{console}"
    );
    assert_eq!(out.value("dev-zero"), "opened", "{console}");
    assert_eq!(out.value("mknod"), "refused", "{console}");
    assert_eq!(out.value("privileged"), "opened", "{console}");
}

/// Rootless limits in a delegated subtree, as an administrator (or systemd's
/// `Delegate=yes`) gives one: `/user`, chowned to uid 1000 with the controllers its parent
/// grants it, holding the user's shell. berth, run as that user with subordinate ids
/// (`newuidmap` from the host; `Guest::add_rootless_user`), moves the shell to `/user/init`,
/// enables the controllers in `/user` and puts each limited container under `/user/berth`.
/// From a cgroup that is not the user's, a limited run still runs, says the limits are not
/// enforced, and writes nothing.
const ROOTLESS_CHECKS: &str = r#"
echo "@@ v1-lines $(grep -vc '^0::' /proc/self/cgroup)"
echo "@@ userns-clone $(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo absent)"
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/user /sys/fs/cgroup/other
( cd /sys/fs/cgroup/user && chown 1000:1000 . cgroup.procs cgroup.subtree_control cgroup.threads )
mkdir -p /tmp/u && chown 1000:1000 /tmp/u
cp -a /rootfs /tmp/u/rootfs && chown -R 1000:1000 /tmp/u/rootfs
# Not delegated: berth in a cgroup of root's.
echo $$ > /sys/fs/cgroup/other/cgroup.procs
as-user berth import --change 'CMD ["/bin/sh"]' /tmp/u/rootfs busybox >/dev/null 2>/tmp/err || echo "@@ import-failed $(cat /tmp/err)"
echo "@@ uid-map-lines $(as-user berth unshare cat /proc/self/uid_map | wc -l)"
echo "@@ info-undelegated $(as-user berth info --format '{{.Cgroups}}' 2>&1)"
as-user berth run --rm --memory 32m busybox true 2>/tmp/err
echo "@@ undelegated-exit $?"
echo "@@ undelegated-says $(tr '\n' ' ' < /tmp/err)"
echo "@@ other-children $(find /sys/fs/cgroup/other -mindepth 1 -type d | wc -l)"

echo $$ > /sys/fs/cgroup/user/cgroup.procs
echo "@@ info $(as-user berth info --format '{{.Cgroups}}' 2>&1)"
as-user berth run --rm --memory 32m busybox dd if=/dev/zero of=/dev/null bs=64M count=1 2>/tmp/err
echo "@@ oom-exit $?"
echo "@@ oom-says $(tr '\n' ' ' < /tmp/err)"
echo "@@ user-procs $(cat /sys/fs/cgroup/user/cgroup.procs | wc -l)"
echo "@@ init-has-shell $(grep -cx $$ /sys/fs/cgroup/user/init/cgroup.procs)"
echo "@@ fork-bomb $(as-user berth run --rm --pids-limit 20 busybox sh -c "$(cat /fork-bomb)" 2>/dev/null | tail -n1)"
echo "@@ spin-limited $(as-user berth run --rm --cpus 0.5 busybox sh -c "$(cat /spin)" 2>/dev/null)"
echo "@@ spin-free $(as-user berth run --rm busybox sh -c "$(cat /spin)" 2>/dev/null)"

as-user berth run -d --name held --memory 48m --pids-limit 30 --cpus 0.5 busybox sleep 60 >/dev/null 2>/tmp/err || echo "@@ held-failed $(cat /tmp/err)"
for i in $(seq 1 100); do
  [ -n "$(cat /sys/fs/cgroup/user/berth/*/cgroup.procs 2>/dev/null)" ] && break
  sleep 0.1
done
for f in memory.max pids.max cpu.max; do echo "@@ $f $(cat /sys/fs/cgroup/user/berth/*/$f)"; done
echo "@@ subtree $(cat /sys/fs/cgroup/user/cgroup.subtree_control)"
echo "@@ owner $(stat -c %u /sys/fs/cgroup/user/berth/*/)"
as-user berth stop -t 1 held >/dev/null 2>&1
as-user berth rm held >/dev/null 2>&1
echo "@@ container-cgroups-left $(find /sys/fs/cgroup/user/berth -mindepth 1 -type d | wc -l)"
echo "@@ outside-user $(find /sys/fs/cgroup -mindepth 1 -type d ! -path '/sys/fs/cgroup/user*' ! -path /sys/fs/cgroup/other | wc -l)"
"#;

#[test]
fn rootless_limits_are_enforced_in_a_delegated_subtree() {
    let Some(kernel) = GuestKernel::needed() else {
        return;
    };
    let mut guest = Guest::new(&kernel);
    guest
        .add_binary(env!("CARGO_BIN_EXE_berth").as_ref(), "berth")
        .add_rootless_user()
        .add_module("overlay")
        .add_busybox_rootfs("/rootfs")
        .add_file("/fork-bomb", scripts::FORK_BOMB, 0o644)
        .add_file("/spin", scripts::SPIN, 0o644);
    let out = guest.boot(
        ROOTLESS_CHECKS,
        "cgroup_no_v1=all",
        Duration::from_secs(400),
    );
    let console = &out.console;
    assert_eq!(out.value("exit"), "0", "{console}");
    assert_eq!(out.value("v1-lines"), "0", "{console}");
    assert!(out.values("import-failed").next().is_none(), "{console}");
    // The user's subordinate ids are mapped (uid 0 → the user, 1.. → the range).
    assert_eq!(out.value("uid-map-lines"), "2", "{console}");

    // Outside a delegation: the run goes on, says so, and makes no cgroup.
    assert!(
        out.value("info-undelegated").starts_with("none delegated"),
        "{console}"
    );
    assert_eq!(out.value("undelegated-exit"), "0", "{console}");
    assert!(
        out.value("undelegated-says")
            .contains("no cgroup is delegated to berth here")
            && out.value("undelegated-says").contains("--memory"),
        "{console}"
    );
    assert_eq!(out.value("other-children"), "0", "{console}");

    assert_eq!(
        out.value("info"),
        "delegated: /user (memory pids cpu)",
        "{console}"
    );
    assert_eq!(out.value("oom-exit"), "137", "{console}");
    assert!(
        out.value("oom-says")
            .contains("ran out of memory (limit 32MiB)"),
        "{console}"
    );
    // The shell was moved out, so /user could enable its controllers.
    assert_eq!(out.value("user-procs"), "0", "{console}");
    assert_eq!(out.value("init-has-shell"), "1", "{console}");
    for c in ["memory", "pids", "cpu"] {
        assert!(out.value("subtree").contains(c), "{console}");
    }
    let count = scripts::process_count(out.value("fork-bomb").as_bytes());
    assert!(
        (10..=20).contains(&count),
        "{count} processes under --pids-limit 20: {console}"
    );
    // The guest runs under software emulation, whose timing a busy host skews: the bound is
    // looser than the root test's, and the limit must also show against a free run.
    let limited = scripts::cpu_share(out.value("spin-limited"));
    let free = scripts::cpu_share(out.value("spin-free"));
    assert!(limited <= 0.7, "--cpus 0.5 used {limited:.2} of a core");
    assert!(limited >= 0.1, "the loop made progress: {limited:.2}");
    if free > 0.8 {
        assert!(
            limited < 0.8 * free,
            "the limit made a difference: {limited:.2} against {free:.2}"
        );
    } else {
        eprintln!("guest busy ({free:.2} of a core unlimited): the comparison is skipped");
    }

    assert!(out.values("held-failed").next().is_none(), "{console}");
    assert_eq!(out.value("memory.max"), (48u64 << 20).to_string());
    assert_eq!(out.value("pids.max"), "30");
    assert_eq!(out.value("cpu.max"), "50000 100000");
    assert_eq!(out.value("owner"), "1000", "made by the user: {console}");
    assert_eq!(out.value("container-cgroups-left"), "0", "{console}");
    // berth wrote nothing outside the delegated subtree.
    assert_eq!(out.value("outside-user"), "0", "{console}");
}
