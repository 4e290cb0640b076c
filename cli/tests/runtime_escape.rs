//! The runtime as a way out: device nodes that an image layer, a RUN step or a bound host
//! directory brings (opening one must fail, whatever the devices cgroup enforces), the
//! per-mount `nodev` that guards them (on `/`, not with `--privileged`), and files of the
//! image that the runtime reads before the command starts (`/etc/passwd` as a FIFO must not
//! hang the start). Root only (they run containers). The same device check on a pure
//! cgroup v2 kernel, where no devices cgroup exists, is in `cgroup_v2.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

fn mknod(path: &Path, major: u64, minor: u64) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

/// An image `nodes` whose layer holds `/node`, a char device 1:5 (zero: one of the nodes
/// Docker's device rules let a container open, so only `nodev` stops it), outside `/dev`.
fn image_with_a_node(s: &Sandbox) {
    let rootfs = s.path().join("rootfs-nodes");
    berth_test_support::busybox_rootfs(&rootfs);
    mknod(&rootfs.join("node"), 1, 5);
    s.ok(&["import", rootfs.to_str().unwrap(), "nodes"]);
}

/// What a shell in the container prints when it tries to read one byte of `path`.
/// (The words are split by empty quotes, so that a build's progress, which shows the command,
/// does not show them.)
const TRY_OPEN: &str = "if head -c1 \"$1\" >/dev/null 2>/tmp/e; then echo OPEN\"\"ED; \
                        else echo \"REFUS\"\"ED $(cat /tmp/e)\"; fi";

#[test]
fn a_device_node_from_an_image_layer_cannot_be_opened() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::needs_root("mknod of a device node on the host") {
        return;
    }
    image_with_a_node(&s);
    let o = s.run(&["run", "--rm", "nodes", "sh", "-c", TRY_OPEN, "sh", "/node"]);
    let text = printed(&o);
    assert!(text.contains("REFUSED"), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    // /dev's own nodes stay usable.
    let o = s.run(&[
        "run",
        "--rm",
        "nodes",
        "sh",
        "-c",
        TRY_OPEN,
        "sh",
        "/dev/zero",
    ]);
    assert!(printed(&o).contains("OPENED"), "{}", printed(&o));
    // --privileged is trusted with every device, as under Docker.
    let o = s.run(&[
        "run",
        "--rm",
        "--privileged",
        "nodes",
        "sh",
        "-c",
        TRY_OPEN,
        "sh",
        "/node",
    ]);
    assert!(printed(&o).contains("OPENED"), "{}", printed(&o));
}

#[test]
fn a_device_node_in_a_bound_directory_cannot_be_opened() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::needs_root("mknod of a device node on the host") {
        return;
    }
    let dir = s.path().join("hostdir");
    std::fs::create_dir_all(&dir).unwrap();
    mknod(&dir.join("node"), 1, 5);
    let bind = format!("{}:/v", dir.display());
    let o = s.run(&[
        "run", "--rm", "-v", &bind, "busybox", "sh", "-c", TRY_OPEN, "sh", "/v/node",
    ]);
    assert!(printed(&o).contains("REFUSED"), "{}", printed(&o));
    // A named volume too.
    let o = s.run(&[
        "run",
        "--rm",
        "-v",
        "vol:/v",
        "busybox",
        "sh",
        "-c",
        "mknod /v/made c 1 5 2>/dev/null; [ -c /v/made ] || echo NOT-MADE; \
         head -c1 /v/made >/dev/null 2>&1 && echo OPENED; true",
    ]);
    assert!(!printed(&o).contains("OPENED"), "{}", printed(&o));
}

#[test]
fn a_run_step_cannot_open_a_device_node_from_its_image_or_its_own() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::needs_root("mknod of a device node on the host") {
        return;
    }
    image_with_a_node(&s);
    let dockerfile = format!(
        "FROM nodes\n\
         RUN sh -c '{TRY_OPEN}' sh /node\n\
         RUN mknod /made c 1 5 && echo MA\"\"DE || echo NOT-MA\"\"DE; \
             if [ -c /made ]; then sh -c '{TRY_OPEN}' sh /made; fi\n\
         RUN sh -c '{TRY_OPEN}' sh /dev/zero\n"
    );
    let ctx = s.context("ctx", &[("Dockerfile", &dockerfile)]);
    let o = s.run(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "-t",
        "made",
        ctx.to_str().unwrap(),
    ]);
    let text = printed(&o);
    assert!(o.status.success(), "{text}");
    assert_eq!(text.matches("OPENED").count(), 1, "only /dev/zero: {text}");
    assert!(text.matches("REFUSED").count() >= 1, "{text}");
    // Where the devices cgroup (v1) enforces Docker's rules, a step has CAP_MKNOD and the node
    // it makes lands in its layer, as under BuildKit; opening it fails all the same.
    if Path::new("/sys/fs/cgroup/devices/devices.allow").exists() {
        assert!(
            text.contains("MADE") && !text.contains("NOT-MADE"),
            "{text}"
        );
        assert_eq!(text.matches("REFUSED").count(), 2, "{text}");
        let o = s.run(&["run", "--rm", "made", "sh", "-c", TRY_OPEN, "sh", "/made"]);
        assert!(printed(&o).contains("REFUSED"), "{}", printed(&o));
    }
}

/// The per-mount options of `/` in a container's mountinfo.
fn root_options(mountinfo: &str) -> String {
    mountinfo
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.get(4) == Some(&"/"))
        .map(|f| f[5].to_owned())
        .unwrap_or_else(|| panic!("no / in:\n{mountinfo}"))
}

#[test]
fn the_rootfs_is_nodev_unless_privileged() {
    let Some(s) = ROOT.sandbox() else { return };
    let plain = s.ok(&["run", "--rm", "busybox", "cat", "/proc/self/mountinfo"]);
    assert!(
        root_options(&plain).split(',').any(|o| o == "nodev"),
        "{plain}"
    );
    let ro = s.ok(&[
        "run",
        "--rm",
        "--read-only",
        "busybox",
        "cat",
        "/proc/self/mountinfo",
    ]);
    let opts = root_options(&ro);
    assert!(
        opts.split(',').any(|o| o == "nodev"),
        "--read-only kept nodev: {ro}"
    );
    assert!(opts.split(',').any(|o| o == "ro"), "{ro}");
    let privileged = s.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "cat",
        "/proc/self/mountinfo",
    ]);
    assert!(
        !root_options(&privileged).split(',').any(|o| o == "nodev"),
        "{privileged}"
    );
}

/// An image whose `/etc/passwd` is a FIFO: the runtime reads it to resolve `USER` before
/// the command starts, and must neither hang on it nor follow it anywhere.
#[test]
fn a_fifo_as_etc_passwd_does_not_hang_the_start() {
    let Some(s) = ROOT.sandbox() else { return };
    let rootfs = s.path().join("rootfs-fifo");
    berth_test_support::busybox_rootfs(&rootfs);
    std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
    nix::unistd::mkfifo(
        &rootfs.join("etc/passwd"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    s.ok(&["import", rootfs.to_str().unwrap(), "fifo"]);
    let mut child = s
        .cmd()
        .args(["run", "--rm", "-u", "nobody", "fifo", "true"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth run hung on a FIFO at /etc/passwd");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", printed(&o));
    assert!(printed(&o).contains("/etc/passwd"), "{}", printed(&o));
}

/// Started from a terminal, a container without `-t` and a RUN step have no controlling
/// terminal: the user's terminal stays out of reach (`/dev/tty` cannot be opened, so nothing
/// reads the keys typed there or pushes input into it with TIOCSTI, which the kernel allows
/// only on the caller's own controlling terminal).
#[test]
fn the_users_terminal_is_not_the_controlling_terminal_of_a_container() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::Tmux::needed() {
        return;
    }
    // The words are split by empty quotes, so that the screen's echo of the command line
    // does not show them.
    let probe =
        "if echo ON\"\"TTY > /dev/tty; then echo \"tty=open\"; else echo \"tty=clo\"\"sed\"; fi";
    let ctx = s.context(
        "tty-ctx",
        &[("Dockerfile", &format!("FROM busybox\nRUN {probe}\n"))],
    );
    let bin = env!("CARGO_BIN_EXE_berth");
    for (name, command) in [
        (
            "run",
            format!("{bin} run --rm --pull never busybox sh -c '{probe}'"),
        ),
        (
            "build",
            format!("{bin} build --progress plain --no-cache {}", ctx.display()),
        ),
    ] {
        let out = s.path().join(format!("tty-{name}.out"));
        let done = s.path().join(format!("tty-{name}.rc"));
        let term = berth_test_support::Tmux::start(
            &format!("tty-{name}"),
            &format!(
                "BERTH_ROOT={} {command} > {} 2>&1; echo $? > {}; sleep 60",
                s.store().display(),
                out.display(),
                done.display()
            ),
            120,
            30,
        );
        term.wait(Duration::from_secs(30), |_| done.exists());
        let screen = term.wait(Duration::from_millis(300), |_| false);
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(
            std::fs::read_to_string(&done).unwrap_or_default().trim(),
            "0",
            "{name}: {text}"
        );
        assert!(text.contains("tty=closed"), "{name}: {text}");
        assert!(
            !screen.contains("ONTTY"),
            "{name} wrote to the terminal:\n{screen}"
        );
    }
}
