//! Red-team findings after issue 17's fixes: each test here fails on b149f92 (the state the
//! red team attacked) and shows a hole that is still open. See the report for the analysis.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));
/// For tests in which another local user tries the store: the sandbox open to others.
const OPEN_TO_OTHERS: Tier = ROOT.open_to_others();

/// Runs `cmd`; `None` when it had not finished after `limit` (it is then killed, by its PID).
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Option<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while start.elapsed() < limit {
        if waiter.is_finished() {
            return Some(waiter.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = waiter.join();
    None
}

/// Runs `args` as uid/gid 65534 (another local user) through setpriv.
fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

// ---------------------------------------------------------------------------------------
// The build context's Dockerfile is read by path: a symlink leaves the context.

/// `Dockerfile -> /proc/self/environ` (or any host file): berth reads it on the host and shows
/// its first line in the parse error, here the value of a `--secret env=` variable. BuildKit
/// resolves the Dockerfile inside the context.
#[test]
fn a_dockerfile_symlink_in_the_context_does_not_read_host_files() {
    let Some(s) = ROOT.sandbox() else { return };
    // A host file outside the context.
    let host = s.path().join("host-file");
    std::fs::write(&host, "HOST-FILE-MARKER-4242 not for the build\n").unwrap();
    let ctx = s.context("dfl", &[]);
    std::os::unix::fs::symlink(&host, ctx.join("Dockerfile")).unwrap();
    let o = s.run(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    let t = printed(&o);
    assert!(
        !t.contains("HOST-FILE-MARKER-4242"),
        "a host file was read: {t}"
    );

    let ctx = s.context("env", &[]);
    std::os::unix::fs::symlink("/proc/self/environ", ctx.join("Dockerfile")).unwrap();
    let o = s
        .cmd()
        .env("RT_TOKEN", "env-secret-value-4242")
        .args([
            "build",
            "--secret",
            "id=t,env=RT_TOKEN",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let t = printed(&o);
    assert!(
        !t.contains("env-secret-value-4242"),
        "berth's environment (a --secret env value) was shown: {t}"
    );
}

/// A FIFO named Dockerfile in the context hangs the build forever (`std::fs::read`).
#[test]
fn a_dockerfile_fifo_in_the_context_does_not_hang_the_build() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("fifo", &[]);
    nix::unistd::mkfifo(
        &ctx.join("Dockerfile"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut cmd = s.cmd();
    cmd.args(["build", ctx.to_str().unwrap()]);
    let o = run_with_timeout(cmd, Duration::from_secs(20));
    assert!(o.is_some(), "berth build hung on a FIFO Dockerfile");
}

/// A `RUN --mount=type=bind,source=f` from the context is checked when the step is prepared
/// and then bound by path: a local user who owns the context swaps `f` for a symlink to a
/// host file in between, and the step reads it (here /etc/shadow stands for any root-only
/// file). Racy: tries up to 80 builds in at most a minute (the hole was hit after ~15 by
/// hand); `mounts_escape.rs` has the deterministic tests.
#[test]
fn a_context_bind_source_swapped_for_a_symlink_does_not_reach_the_host() {
    let Some(s) = ROOT.sandbox() else { return };
    let secret = s.path().join("root-only");
    std::fs::write(&secret, "ROOT-ONLY-MARKER-4242\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ctx = s.context("race", &[]);
    std::fs::write(ctx.join("f"), "benign\n").unwrap();
    std::fs::write(ctx.join("f.real"), "benign\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=bind,source=f,target=/x cat /x\n",
    )
    .unwrap();
    std::fs::write(ctx.join(".dockerignore"), "f.*\n").unwrap();
    // The swapper: the context's owner, renaming a symlink and a file over `f` in turn.
    let script = format!(
        "cd {ctx}; while :; do ln -sfn {secret} f.tmp && mv -T f.tmp f; cp f.real f.tmp2 && mv -T f.tmp2 f; done",
        ctx = ctx.display(),
        secret = secret.display()
    );
    let mut swapper = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let mut leaked = None;
    let start = Instant::now();
    for _ in 0..80 {
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        let o = s.run(&[
            "build",
            "--no-cache",
            "--progress",
            "plain",
            ctx.to_str().unwrap(),
        ]);
        let t = printed(&o);
        if t.contains("ROOT-ONLY-MARKER-4242") {
            leaked = Some(t);
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(swapper.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = swapper.wait();
    assert!(
        leaked.is_none(),
        "a host file was bound into the step: {leaked:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Other local users and the store (issue 17, finding 4: not fixed).

/// A setuid-root file from an image, a container's `-e` values and the locks: another user
/// reaches all of them, because the store is created 0755 and its files 0644.
#[test]
fn another_user_reaches_nothing_in_the_store() {
    let Some(s) = OPEN_TO_OTHERS.sandbox() else {
        return;
    };
    let ctx = s.context("suid", &[]);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN cp /bin/busybox /bin/suid-copy && chmod 4755 /bin/suid-copy\n",
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", "suid", ctx.to_str().unwrap()]);
    let id = s
        .ok(&[
            "run",
            "-d",
            "-e",
            "PASSWORD=container-env-4242",
            "busybox",
            "sleep",
            "30",
        ])
        .trim()
        .to_owned();
    let store = s.store();
    let mut reachable = Vec::new();
    let snapshot_file = std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin/suid-copy"))
        .find(|p| p.exists())
        .expect("the layer with the setuid file");
    let targets: Vec<PathBuf> = vec![
        snapshot_file,
        store.join("containers").join(&id).join("config.json"),
        store.join("locks/store.lock"),
        store.join("locks/index.lock"),
    ];
    for t in &targets {
        // Any open at all is enough: exec for the setuid file, read for the record, flock
        // for the locks (a shared flock on index.lock hangs every writer).
        let o = as_nobody(&[
            "sh",
            "-c",
            &format!("exec 3<'{}' && echo OPENED", t.display()),
        ]);
        if String::from_utf8_lossy(&o.stdout).contains("OPENED") {
            reachable.push(t.clone());
        }
    }
    s.ok(&["kill", &id]);
    assert!(
        reachable.is_empty(),
        "uid 65534 opened what is root's alone: {reachable:#?}"
    );
}

/// A device node a RUN step made (`mknod`, CAP_MKNOD on cgroup v1) or a layer shipped keeps
/// its mode on the host under `snapshots/`; with the store open to all, a local user opens
/// it (`b 254 0`: the host's disk, mode 0666). Shown with a harmless `c 1 3`.
#[test]
fn a_device_node_from_a_layer_cannot_be_opened_by_another_user() {
    let Some(s) = OPEN_TO_OTHERS.sandbox() else {
        return;
    };
    let ctx = s.context("mknod", &[]);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN mknod /node c 1 3 && chmod 666 /node || true\n",
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", "node", ctx.to_str().unwrap()]);
    let Some(node) = std::fs::read_dir(s.store().join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("node"))
        .find(|p| p.symlink_metadata().is_ok())
    else {
        berth_test_support::skip("CAP_MKNOD in RUN steps (not given here: cgroup v2)");
        return;
    };
    let o = as_nobody(&[
        "sh",
        "-c",
        &format!("echo x > '{}' && echo WROTE", node.display()),
    ]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("WROTE"),
        "uid 65534 opened a device node in the store: {}",
        node.display()
    );
}

// ---------------------------------------------------------------------------------------
// PID reuse (issue 17, finding 10: not fixed).

/// After berth's monitor is killed, `berth kill`/`stop` signal whatever process now has its
/// PID (and SIGKILL its first child). Uses ns_last_pid to put a process at the old PID.
#[test]
fn kill_does_not_signal_a_process_that_reused_the_pid() {
    let Some(s) = ROOT.sandbox() else { return };
    let id = s
        .ok(&["run", "-d", "busybox", "sleep", "300"])
        .trim()
        .to_owned();
    std::thread::sleep(Duration::from_millis(300));
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            s.store()
                .join("containers")
                .join(&id)
                .join("container.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = record["pid"].as_u64().expect("a pid") as i32;
    let init: i32 = std::fs::read_to_string(format!("/proc/{monitor}/task/{monitor}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for p in [monitor, init] {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let gone = |p: i32| !Path::new(&format!("/proc/{p}")).exists();
    let start = Instant::now();
    while !gone(monitor) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // An unrelated process (with a child, as the monitor has) at the monitor's old PID.
    let mut victim = None;
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (monitor - 1).to_string()).unwrap();
        let child = Command::new("sh")
            .args(["-c", "sleep 120 & wait"])
            .spawn()
            .unwrap();
        if child.id() as i32 == monitor {
            victim = Some(child);
            break;
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
    let Some(mut victim) = victim else {
        berth_test_support::skip("a process at the old PID (none could be placed there)");
        return;
    };
    std::thread::sleep(Duration::from_millis(200));
    let sleeper: i32 = std::fs::read_to_string(format!("/proc/{monitor}/task/{monitor}/children"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _ = s.run(&["kill", &id]);
    std::thread::sleep(Duration::from_millis(300));
    let sleeper_alive = !gone(sleeper)
        && !std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
            .unwrap_or_default()
            .contains(") Z");
    let _ = victim.kill();
    let _ = victim.wait();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        sleeper_alive,
        "berth kill killed an unrelated process (PID {sleeper})"
    );
}

// ---------------------------------------------------------------------------------------
// Hostile archives and layout directories.

/// A zstd frame of RLE blocks: `total` bytes of `byte` from ~4 bytes per 128 KiB.
fn zstd_rle_bomb(total: u64, byte: u8) -> Vec<u8> {
    let block: u64 = 128 * 1024;
    let n = total / block;
    let mut out = 0xFD2FB528u32.to_le_bytes().to_vec();
    out.extend([0x00, 7 << 3]); // no content size; 128 KiB window
    for i in 0..n {
        let last = u32::from(i == n - 1);
        let header = last | (1 << 1) | ((block as u32) << 3);
        out.extend(&header.to_le_bytes()[..3]);
        out.push(byte);
    }
    out
}

/// `berth load` decompresses a compressed archive into the store's tmp/ with no bound (a 1.5
/// MB file becomes 46 GB: the disk fills), and when what came out is not an archive, the
/// decompressed file is left behind in tmp/. Shown with 256 MiB.
#[test]
fn a_compressed_non_archive_leaves_nothing_in_tmp() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    let bomb = s.path().join("bomb.tar.zst");
    std::fs::write(&bomb, zstd_rle_bomb(256 << 20, 0)).unwrap();
    assert!(std::fs::metadata(&bomb).unwrap().len() < 16 << 10);
    let o = s.run(&["load", "-i", bomb.to_str().unwrap()]);
    assert!(!o.status.success());
    let left: Vec<_> = std::fs::read_dir(s.store().join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect();
    assert!(left.is_empty(), "left in tmp/: {left:?}");
}

/// An `oci:` directory whose index.json is a FIFO hangs `berth copy` (and one that links to
/// /dev/zero reads until memory runs out: the size check comes after `std::fs::read`).
#[test]
fn an_oci_dir_with_a_fifo_index_does_not_hang() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let dir = s.path().join("layout");
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    nix::unistd::mkfifo(
        &dir.join("index.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut cmd = s.cmd();
    cmd.args(["copy", &format!("oci:{}", dir.display()), "store:x"]);
    assert!(
        run_with_timeout(cmd, Duration::from_secs(20)).is_some(),
        "berth copy hung on a FIFO index.json"
    );
}

// ---------------------------------------------------------------------------------------
// Terminal escapes from an image.

/// `berth ps` prints an image's Cmd, and `berth history` its history, with the escape
/// sequences the image put there (ESC reaches the user's terminal: title, clipboard OSC 52,
/// screen clears that hide output).
#[test]
fn ps_and_history_do_not_print_escapes_from_an_image() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("esc", &[]);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN true \"\x1b]0;TITLE\x07\"\nCMD [\"sh\", \"-c\", \"\\u001b]52;c;cHduZWQ=\\u0007 true\"]\n",
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", "esc", ctx.to_str().unwrap()]);
    let id = s.ok(&["run", "-d", "esc"]).trim().to_owned();
    std::thread::sleep(Duration::from_millis(300));
    let ps = s.ok(&["ps", "-a"]);
    let history = s.ok(&["history", "esc"]);
    let _ = s.run(&["rm", "-f", &id]);
    assert!(!ps.contains('\x1b'), "ps printed an escape: {ps:?}");
    assert!(
        !history.contains('\x1b'),
        "history printed an escape: {history:?}"
    );
}

/// `run --name` takes Docker's names only: a name with an escape, a `/` or `..` is a usage
/// error before anything is created (a name is printed by `ps` and looked up by `rm`).
#[test]
fn run_refuses_a_container_name_docker_refuses() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    for name in ["a\x1b]0;TITLE\x07", "../x", "a/b", "x", ".hidden"] {
        let o = s.run(&["run", "--name", name, "busybox", "true"]);
        assert_eq!(o.status.code(), Some(2), "{name:?}: {}", printed(&o));
        assert!(
            printed(&o).contains("container name"),
            "{name:?}: {}",
            printed(&o)
        );
    }
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

/// An `oci:` directory is read inside itself: an `index.json` linked to `/dev/zero` or to a
/// host file, or a blob linked out of the layout, is never read from the host; a copy *to*
/// a layout whose `index.json` and blob names are planted symlinks replaces the links and
/// leaves their targets alone.
#[test]
fn an_oci_dir_is_read_and_written_inside_itself() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    // A layout berth made, then tampered with.
    let good = s.path().join("good");
    s.ok(&["copy", "store:busybox", &format!("oci:{}", good.display())]);
    let host = s.path().join("host-index.json");
    std::fs::copy(good.join("index.json"), &host).unwrap();
    for target in ["/dev/zero", host.to_str().unwrap()] {
        let dir = s.path().join("links");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::os::unix::fs::symlink(target, dir.join("index.json")).unwrap();
        let mut cmd = s.cmd();
        cmd.args(["copy", &format!("oci:{}", dir.display()), "store:x"]);
        let o = run_with_timeout(cmd, Duration::from_secs(20)).expect("berth copy hung");
        assert!(!o.status.success(), "{target}: {}", printed(&o));
    }
    // A blob (the manifest) that links to a host copy of itself.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(good.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blob = good
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let outside = s.path().join("manifest-outside");
    std::fs::rename(&blob, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &blob).unwrap();
    let o = s.run(&["copy", &format!("oci:{}", good.display()), "store:y"]);
    assert!(!o.status.success(), "a blob outside the layout was read");
    std::fs::remove_file(&blob).unwrap();
    std::fs::rename(&outside, &blob).unwrap();
    // A destination with planted symlinks.
    let dest = s.path().join("dest");
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    let victim = s.path().join("victim");
    std::fs::write(&victim, "VICTIM\n").unwrap();
    std::os::unix::fs::symlink(&victim, dest.join("index.json")).unwrap();
    std::os::unix::fs::symlink(&victim, dest.join(".index.json.tmp")).unwrap();
    for entry in std::fs::read_dir(good.join("blobs/sha256")).unwrap() {
        let name = entry.unwrap().file_name();
        std::os::unix::fs::symlink(&victim, dest.join("blobs/sha256").join(&name)).unwrap();
        let mut tmp = name.clone();
        tmp.push(".tmp");
        std::os::unix::fs::symlink(&victim, dest.join("blobs/sha256").join(tmp)).unwrap();
    }
    let _ = s.run(&["copy", "store:busybox", &format!("oci:{}", dest.display())]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "VICTIM\n");
}

/// `--output type=local` keeps an image's setuid files (the export is the image's tree), so
/// the directories berth makes for DEST are 0700: no other local user reaches those files.
#[test]
fn an_exported_setuid_file_is_out_of_other_users_reach() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("suid", &[]);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN cp /bin/busybox /suid && chmod 4755 /suid\n",
    )
    .unwrap();
    let out = s.path().join("out");
    let dest = out.join("sub");
    s.ok(&[
        "build",
        "-q",
        "--output",
        &format!("type=local,dest={}", dest.display()),
        ctx.to_str().unwrap(),
    ]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dest.join("suid")), 0o4755, "the image's mode is kept");
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&dest), 0o700);
}
