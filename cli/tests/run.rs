//! `berth run` on real namespaces and overlayfs (the root tier; CI runs as root). Each test
//! checks the container from inside and the host afterwards.

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::process::Stdio;
use std::time::Duration;

use berth_test_support::{Sandbox, Tier, assert_success, scripts};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

fn sh(s: &Sandbox, script: &str) -> (i32, String, String) {
    let out = s.run(&["run", "--rm", "busybox", "sh", "-c", script]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn overlay_mounts() -> usize {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains("berth-test-"))
        .count()
}

#[test]
fn the_command_starts_with_no_signal_ignored_or_blocked() {
    // berth ignores SIGPIPE (every Rust program does) and glibc's posix_spawn leaves its two
    // internal signals ignored: none of that may reach the container, with or without --init.
    let Some(s) = ROOT.sandbox() else { return };
    for init in [&[][..], &["--init"][..]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(init);
        args.extend_from_slice(&[
            "busybox",
            "grep",
            "-E",
            "^Sig(Ign|Blk)",
            "/proc/self/status",
        ]);
        let out = s.run(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_success(&out, "berth run");
        assert_eq!(
            text, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
            "{init:?}"
        );
    }
    // What that means: a pipe's writer dies of SIGPIPE when its reader goes (with SIGPIPE
    // ignored, busybox's yes reports "Broken pipe" instead).
    let (code, out, err) = sh(&s, "yes | head -n 1 >/dev/null; echo done");
    assert_eq!((code, out.as_str()), (0, "done\n"), "{err}");
    assert!(err.is_empty(), "yes should die of SIGPIPE: {err}");
}

#[test]
fn pid_hostname_network_and_fds_are_the_containers() {
    let Some(s) = ROOT.sandbox() else { return };
    let (code, out, err) = sh(
        &s,
        "echo $$; hostname; ls /sys/class/net; ls /proc/self/fd; ps -o pid | tail -n +2 | wc -l",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "the command is PID 1");
    assert_ne!(
        lines[1],
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
    );
    assert_eq!(lines[2], "lo", "--network none shows only lo");
    assert_eq!(&lines[3..6], ["0", "1", "2"]);
    assert!(
        lines.len() <= 8,
        "ls's own fd at most beyond 0-2: {lines:?}"
    );
    let (_, out, _) = sh(
        &s,
        "cat /sys/class/net/lo/operstate; cat /proc/self/status | grep CapAmb",
    );
    assert!(out.contains("unknown") || out.contains("up"), "{out}");
}

#[test]
fn ps_sees_only_the_containers_processes() {
    let Some(s) = ROOT.sandbox() else { return };
    let (_, out, _) = sh(&s, "sleep 5 & ps -o pid,comm");
    let pids: Vec<&str> = out.lines().skip(1).collect();
    assert!(pids.len() <= 3, "{out}");
}

#[test]
fn dangerous_operations_fail_and_the_host_is_untouched() {
    let Some(s) = ROOT.sandbox() else { return };
    let (_, out, err) = sh(
        &s,
        "mkdir -p /mnt; mount -t tmpfs x /mnt && echo MOUNTED; \
         echo 1 > /proc/sys/kernel/sysrq && echo SYSRQ; \
         mknod /sda b 8 0 2>/dev/null; head -c 1 /sda > /dev/null 2>&1 && echo READ_DISK; \
         mknod /kmem c 1 2 2>/dev/null; head -c 1 /kmem > /dev/null 2>&1 && echo READ_KMEM; \
         touch /sys/x && echo SYS; \
         cat /proc/kcore | head -c 1 | wc -c; \
         echo garbage > /tmp/m.ko; insmod /tmp/m.ko 2>&1 | grep -q 'not permitted' && echo MODULE_REFUSED; \
         [ $(umask) = 0022 ] && echo UMASK_OK; \
         unshare -U true && echo UNSHARED; \
         unshare -m true && echo UNSHARE_MNT; \
         grep -q 'Seccomp:.*2' /proc/self/status && echo FILTERED; \
         grep -q 'NoNewPrivs:.*0' /proc/self/status && echo NNP_OFF; \
         echo inside > /made-in-container",
    );
    assert!(
        out.contains("FILTERED") && out.contains("NNP_OFF"),
        "the seccomp filter is on, without no_new_privs: {out}"
    );
    assert!(
        out.contains("MODULE_REFUSED"),
        "loading a kernel module is refused: {out}"
    );
    assert!(out.contains("UMASK_OK"), "Docker's umask: {out}");
    for bad in [
        "MOUNTED",
        "SYSRQ",
        "READ_DISK",
        "READ_KMEM",
        "SYS\n",
        "UNSHARED",
        "UNSHARE_MNT",
    ] {
        assert!(!out.contains(bad), "{bad} succeeded:\n{out}\n{err}");
    }
    assert!(
        out.contains("\n0\n") || out.starts_with("0\n"),
        "/proc/kcore must read empty or be absent: {out}"
    );
    assert!(!std::path::Path::new("/made-in-container").exists());
}

#[test]
fn exit_codes_follow_docker() {
    let Some(s) = ROOT.sandbox() else { return };
    assert_eq!(sh(&s, "exit 7").0, 7);
    let out = s.run(&["run", "--rm", "busybox", "nosuchcommand"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found"));
    let out = s.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    // PID 1 ignores signals sent from inside its namespace (as in Docker); a child killed
    // by a signal reports 128+N through the shell.
    assert_eq!(sh(&s, "sh -c 'kill -9 $$'; exit $?").0, 137);
    let out = s.run(&["run", "--rm", "--pull", "never", "nosuchimage"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn run_pulls_an_image_the_store_does_not_have() {
    let Some(one) = ROOT.sandbox() else { return };
    let Some(two) = ROOT.sandbox() else { return };
    let reg = berth_test_support::TestRegistry::start(Default::default());
    let name = format!("{}/tools/busybox:1", reg.host);
    one.ok(&["tag", "busybox", &name]);
    one.ok(&["push", "-q", &name]);
    // --pull never: the store's or nothing.
    let out = two.run(&["run", "--rm", "--pull", "never", &name, "true"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such image"),
        "{out:?}"
    );
    // Missing (the default): pulled, named, run.
    let out = two.run(&["run", "--rm", &name, "echo", "pulled"]);
    assert_success(&out, "run of an image only the registry has");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unable to find image"),
        "{out:?}"
    );
    assert!(two.ok(&["images"]).contains("tools/busybox"));
    let manifests = |reg: &berth_test_support::TestRegistry| {
        reg.requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && r.contains("/manifests/"))
            .count()
    };
    // Now in the store: not asked for again, unless --pull always.
    let before = manifests(&reg);
    two.ok(&["run", "--rm", &name, "true"]);
    assert_eq!(manifests(&reg), before);
    two.ok(&["run", "--rm", "--pull", "always", &name, "true"]);
    assert!(manifests(&reg) > before);
    // A registry that does not have it: 125, and the registry's answer.
    let out = two.run(&["run", "--rm", &format!("{}/nothing:1", reg.host)]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
}

#[test]
fn sigterm_to_berth_run_reaches_pid_1() {
    let Some(s) = ROOT.sandbox() else { return };
    let mut child = s
        .cmd()
        .args([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(rest.contains("got-term"));
}

#[test]
fn env_workdir_user_and_entrypoint() {
    let Some(s) = ROOT.sandbox() else { return };
    let out = s.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/srv/app",
        "-u",
        "nobody",
        "--hostname",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u) $(hostname) $HOSTNAME $HOME; echo $PATH",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1 /srv/app 65534 web web /nonexistent");
    assert_eq!(
        lines[1],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let out = s.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/echo",
        "busybox",
        "hello",
    ]);
    assert_eq!(out.trim(), "hello");
    let out = s.run(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn containers_leave_no_mounts_and_keep_their_image() {
    let Some(s) = ROOT.sandbox() else { return };
    let before = overlay_mounts();
    s.ok(&["run", "--name", "kept", "busybox", "true"]);
    assert_eq!(overlay_mounts(), before, "no mount left on the host");
    let ps = s.ok(&["ps", "-a"]);
    assert!(ps.contains("kept") && ps.contains("Exited (0)"), "{ps}");
    let out = s.run(&["rmi", "busybox"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an image a container uses is not removed"
    );
    s.ok(&["rm", "kept"]);
    assert!(!s.ok(&["ps", "-a"]).contains("kept"));
    s.ok(&["run", "--rm", "busybox", "true"]);
    assert_eq!(
        std::fs::read_dir(s.store().join("containers"))
            .unwrap()
            .count(),
        0,
        "--rm removes the container"
    );
    s.ok(&["rmi", "busybox"]);
    s.assert_clean();
}

#[test]
fn pid_1_killed_from_the_host_gives_128_plus_signal() {
    let Some(s) = ROOT.sandbox() else { return };
    let mut child = s
        .cmd()
        .args(["run", "--rm", "busybox", "sleep", "31337"])
        .spawn()
        .unwrap();
    let pid = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                (cmdline == b"sleep\x0031337\x00")
                    .then(|| e.file_name().to_str()?.parse::<i32>().ok())
                    .flatten()
            })
        })
        .expect("the container's sleep appears");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

#[test]
fn privileged_lifts_the_defaults() {
    let Some(s) = ROOT.sandbox() else { return };
    let out = s.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; mkdir -p /mnt && mount -t tmpfs x /mnt && echo MOUNTED",
    ]);
    assert!(
        out.contains("Seccomp:\t0") && out.contains("MOUNTED"),
        "{out}"
    );
}

/// The per-container cgroup directories that exist now (v1: under each controller; v2: one).
fn berth_cgroups() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for base in [
        "/sys/fs/cgroup/berth",
        "/sys/fs/cgroup/memory/berth",
        "/sys/fs/cgroup/pids/berth",
        "/sys/fs/cgroup/cpu/berth",
        "/sys/fs/cgroup/cpu,cpuacct/berth",
    ] {
        if let Ok(d) = std::fs::read_dir(base) {
            out.extend(d.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
    }
    out
}

/// Rootless, with no cgroup delegated to berth (this machine keeps its controllers on v1,
/// which is never delegated): a run with `limit` goes on without it and says why; the test
/// then skips. `false` when that was the case. Rootless limits in a delegated cgroup v2
/// subtree are tested in the qemu guest (`cli/tests/cgroup_v2.rs`).
fn limits_enforced(s: &Sandbox, limit: &[&str]) -> bool {
    if berth_test_support::is_root() {
        return true;
    }
    let mut args = vec!["run", "--rm", "--pull", "never"];
    args.extend_from_slice(limit);
    args.extend_from_slice(&["busybox", "true"]);
    let out = s.run(&args);
    let printed = berth_test_support::printed(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("are not enforced") && printed.contains("no cgroup is delegated"),
        "{printed}"
    );
    berth_test_support::needs_root(
        "a cgroup to enforce the limit; rootless, a delegated cgroup v2 subtree, which \
         cgroup_v2.rs checks in the qemu guest",
    );
    false
}

#[test]
fn memory_limit_kills_with_137_and_says_so() {
    let Some(s) = ROOT.sandbox() else { return };
    if !limits_enforced(&s, &["-m", "64m"]) {
        return;
    }
    let out = s.run(&[
        "run",
        "--rm",
        "--memory",
        "32m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(out.status.code(), Some(137));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ran out of memory (limit 32MiB)"));
    // Under the limit it runs.
    s.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=8M",
        "count=1",
    ]);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(s) = ROOT.sandbox() else { return };
    if !limits_enforced(&s, &["--pids-limit", "20"]) {
        return;
    }
    let count = scripts::fork_bomb_under(&s, "20");
    assert!(count <= 20, "{count} processes under --pids-limit 20");
    assert!(count >= 10, "the limit still allows some: {count}");
}

#[test]
fn cpus_holds_a_busy_loop_near_the_quota() {
    let Some(s) = ROOT.sandbox() else { return };
    if !limits_enforced(&s, &["--cpus", "0.5"]) {
        return;
    }
    let ratio = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["busybox", "sh", "-c", scripts::SPIN]);
        scripts::cpu_share(&s.ok(&all))
    };
    // The limit is an upper bound whatever else runs; contention can only lower the share.
    let limited = ratio(&["--cpus", "0.5"]);
    assert!(limited <= 0.62, "--cpus 0.5 used {limited:.2} of a core");
    assert!(limited >= 0.1, "the loop made progress: {limited:.2}");
    let free = ratio(&[]);
    if free > 0.8 {
        assert!(
            limited < 0.7 * free,
            "the limit made a difference: {limited:.2} against {free:.2}"
        );
    } else {
        eprintln!("machine busy ({free:.2} of a core unlimited): the comparison is skipped");
    }
}

#[test]
fn cgroups_are_removed_after_the_container() {
    let Some(s) = ROOT.sandbox() else { return };
    let before = berth_cgroups();
    s.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "1",
        "busybox",
        "sh",
        "-c",
        "sleep 30 & sleep 30 & true",
    ]);
    assert_eq!(berth_cgroups(), before, "no cgroup left behind");
}

#[test]
fn image_symlinks_cannot_steer_mounts_onto_the_host() {
    // Regression: mount targets were created with host path calls, so an image whose /etc
    // pointed at a host directory made the runtime create hosts, hostname and resolv.conf
    // there (a /dev link would be covered by the /dev tmpfs, hence a directory each).
    let Some(s) = ROOT.sandbox() else { return };
    let rootfs = s.path().join("evil");
    berth_test_support::busybox_rootfs(&rootfs);
    let mut host_dirs = Vec::new();
    for link in ["etc", "dev"] {
        let host = s.path().join(format!("host-{link}"));
        std::fs::create_dir(&host).unwrap();
        std::fs::remove_dir_all(rootfs.join(link)).unwrap();
        std::os::unix::fs::symlink(&host, rootfs.join(link)).unwrap();
        host_dirs.push(host);
    }
    s.ok(&["import", rootfs.to_str().unwrap(), "evil"]);
    let _ = s.run(&["run", "--rm", "evil", "true"]);
    for host in host_dirs {
        let made: Vec<_> = std::fs::read_dir(&host)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            made.is_empty(),
            "created on the host in {}: {made:?}",
            host.display()
        );
    }
}

#[test]
fn bind_mounts_and_named_volumes() {
    let Some(s) = ROOT.sandbox() else { return };
    let host = s.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "from the host").unwrap();
    let bind = format!("{}:/data:ro", host.display());
    let out = s.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "-v",
        "cache:/cache",
        "busybox",
        "sh",
        "-c",
        "cat /data/f; touch /data/x 2>/dev/null || echo RO; echo kept > /cache/file",
    ]);
    assert_eq!(out, "from the hostRO\n");
    assert!(!host.join("x").exists());
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "-v",
            "cache:/again",
            "busybox",
            "cat",
            "/again/file"
        ]),
        "kept\n",
        "a named volume outlives its container"
    );
    assert!(s.store().join("volumes/cache/_data/file").is_file());
    let rw = format!("{}:/data", host.display());
    s.ok(&[
        "run",
        "--rm",
        "-v",
        &rw,
        "busybox",
        "sh",
        "-c",
        "echo written > /data/out",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "written\n"
    );
    assert_eq!(
        s.run(&["run", "--rm", "-v", "bad name:/x", "busybox", "true"])
            .status
            .code(),
        Some(125)
    );
}

#[test]
fn detached_containers_logs_stop_kill_wait_rm() {
    let Some(s) = ROOT.sandbox() else { return };
    let before = overlay_mounts();
    let id = s
        .ok(&[
            "run",
            "-d",
            "--name",
            "bg",
            "busybox",
            "sh",
            "-c",
            "echo started; trap 'echo bye; exit 3' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.ok(&["ps"]).contains("bg"), "listed while running");
    s.ok(&["stop", "-t", "5", "bg"]);
    assert_eq!(
        s.ok(&["wait", "bg"]).trim(),
        "3",
        "SIGTERM reached PID 1, which exited 3"
    );
    assert_eq!(s.ok(&["logs", "bg"]), "started\nbye\n");
    assert!(s.ok(&["ps", "-a"]).contains("Exited (3)"));
    s.ok(&["rm", "bg"]);

    // kill (SIGKILL) ends it with 137; stop of a process ignoring SIGTERM falls back to SIGKILL.
    s.ok(&["run", "-d", "--name", "kk", "busybox", "sleep", "100"]);
    s.ok(&["kill", "kk"]);
    assert_eq!(s.ok(&["wait", "kk"]).trim(), "137");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; sleep 100",
    ]);
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    s.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(t.elapsed() < Duration::from_secs(8));
    assert_eq!(s.ok(&["wait", "stubborn"]).trim(), "137");
    // rm -f of a running one; --rm with -d removes itself.
    s.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "100"]);
    s.ok(&["rm", "-f", "busy"]);
    s.ok(&["run", "-d", "--rm", "--name", "gone", "busybox", "true"]);
    std::thread::sleep(Duration::from_millis(500));
    s.ok(&["rm", "kk", "stubborn"]);
    assert!(!s.ok(&["ps", "-a"]).contains("gone"));
    assert_eq!(
        std::fs::read_dir(s.store().join("containers"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(overlay_mounts(), before);
}

#[test]
fn stdin_is_passed_only_with_i() {
    let Some(s) = ROOT.sandbox() else { return };
    let with = |args: &[&str]| {
        let mut c = s.cmd();
        c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"typed\n").unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    assert_eq!(with(&["run", "--rm", "-i", "busybox", "cat"]), "typed\n");
    assert_eq!(
        with(&["run", "--rm", "busybox", "cat"]),
        "",
        "without -i stdin is /dev/null"
    );
}

#[test]
fn a_terminal_under_tmux_types_resizes_and_interrupts() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::Tmux::needed() {
        return;
    }
    let rc = s.path().join("rc");
    let term = berth_test_support::Tmux::start(
        "run",
        &format!(
            "BERTH_ROOT={} {} run --rm -it busybox sh; echo $? > {}",
            s.store().display(),
            env!("CARGO_BIN_EXE_berth"),
            rc.display()
        ),
        100,
        30,
    );
    let wait_for = |needle: &str| {
        let screen = term.wait(Duration::from_secs(5), |screen| screen.contains(needle));
        assert!(
            screen.contains(needle),
            "{needle:?} on the screen:\n{screen}"
        );
    };
    wait_for("/ #");
    term.keys(&[
        "echo typed-$((40+2)); stty size; tty; echo term-$TERM",
        "Enter",
    ]);
    wait_for("typed-42");
    wait_for("term-xterm");
    wait_for("30 100");
    wait_for("/dev/console");
    term.resize(120, 40);
    std::thread::sleep(Duration::from_millis(300));
    term.keys(&["stty size", "Enter"]);
    wait_for("40 120");
    term.keys(&["sleep 100", "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    term.keys(&["C-c"]);
    term.keys(&["echo after-$?", "Enter"]);
    wait_for("after-130");
    term.keys(&["exit 5", "Enter"]);
    for _ in 0..100 {
        if rc.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(term);
    assert_eq!(std::fs::read_to_string(&rc).unwrap().trim(), "5");
}

#[test]
fn init_reaps_forwards_and_hides_its_binary() {
    let Some(s) = ROOT.sandbox() else { return };
    let out = s.run(&["run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/comm; readlink /proc/1/exe || echo EXE_HIDDEN; (sleep 0.1 &); sleep 0.6; ps -o stat | grep -c Z; exit 4"]);
    assert_eq!(out.status.code(), Some(4), "the command's exit code");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "berth", "PID 1 is the init");
    assert!(
        text.contains("EXE_HIDDEN"),
        "/proc/1/exe is refused: {text}"
    );
    assert_eq!(lines.last().copied(), Some("0"), "no zombie left: {text}");
    // SIGTERM to `berth run` goes through the init to the command.
    let mut child = s
        .cmd()
        .args([
            "run",
            "--rm",
            "--init",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut buf).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn ulimits_are_set_for_the_command_and_bad_ones_refused() {
    let Some(s) = ROOT.sandbox() else { return };
    let out = s.ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "core=0",
        "--ulimit",
        "stack=unlimited",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -c; ulimit -s",
    ]);
    assert_eq!(out, "1024\n2048\n0\nunlimited\n");
    // A non-root user gets them too (set before the user is switched), and cannot raise
    // the hard limit.
    let out = s.run(&[
        "run",
        "--rm",
        "-u",
        "65534",
        "--ulimit",
        "nofile=100:200",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -Hn 300 2>/dev/null && echo RAISED; true",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "100\n200\n");
    // In a build's RUN steps as well.
    let ctx = s.context(
        "ulimit-ctx",
        &[("Dockerfile", "FROM busybox\nRUN test $(ulimit -n) = 777\n")],
    );
    s.ok(&["build", "--ulimit", "nofile=777", ctx.to_str().unwrap()]);
    for bad in ["nofile", "nofile=2:1", "as=10", "bogus=1", "nofile=x"] {
        let out = s.run(&["run", "--rm", "--ulimit", bad, "busybox", "true"]);
        assert_ne!(out.status.code(), Some(0), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--ulimit"),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn detached_with_a_terminal_logs_its_output_and_stops() {
    let Some(s) = ROOT.sandbox() else { return };
    let id = s
        .ok(&[
            "run",
            "-dt",
            "--name",
            "dt",
            "busybox",
            "sh",
            "-c",
            "echo started; test -t 0 && test -t 1 && echo on-a-terminal; stty size; \
             trap 'echo got-term; exit 5' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64, "{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = s.ok(&["logs", "dt"]);
        if logs.contains("24 80") || std::time::Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Terminal output: CRLF line ends, as Docker's log of a -t container.
    assert!(logs.contains("started\r\n"), "{logs:?}");
    assert!(logs.contains("on-a-terminal"), "{logs:?}");
    assert!(
        logs.contains("24 80"),
        "a detached terminal is 24x80: {logs:?}"
    );
    assert!(s.ok(&["ps"]).contains("dt"));
    s.ok(&["stop", "-t", "5", "dt"]);
    let code = s.ok(&["wait", "dt"]);
    assert_eq!(
        code.trim(),
        "5",
        "SIGTERM reached the shell through the terminal's monitor"
    );
    assert!(s.ok(&["logs", "dt"]).contains("got-term"));
    s.ok(&["rm", "dt"]);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&s.path().display().to_string()),
        "nothing of the container is left mounted"
    );
}

#[test]
fn device_nodes_can_be_made_but_only_the_usual_ones_opened() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::needs_root("CAP_MKNOD: no device node can be made in a user namespace")
    {
        return;
    }
    if !berth_runtime_devices() {
        berth_test_support::skip("a v1 devices controller (without one, RUN has no CAP_MKNOD)");
        return;
    }
    // As Docker: CAP_MKNOD, and the devices cgroup stops opening anything but null, zero,
    // full, random, urandom, tty, console, ptmx and the pts: in /dev's tmpfs, the cgroup
    // decides. Outside /dev the rootfs is nodev besides, so no node there opens at all.
    let out = s.ok(&[
        "run", "--rm", "busybox", "sh", "-c",
        "mknod /dev/null2 c 1 3 && echo made; echo x > /dev/null2 && echo null-opened; \
         mknod /dev/sda b 8 0 && echo made-disk; head -c 1 /dev/sda 2>&1 | grep -q 'not permitted' && echo disk-refused; \
         mknod /null3 c 1 3 && echo made-outside; echo x 2>&1 > /null3 | grep -q 'Permission denied' && echo nodev-refused",
    ]);
    assert_eq!(
        out,
        "made\nnull-opened\nmade-disk\ndisk-refused\nmade-outside\nnodev-refused\n"
    );
    // In a build too: the node is kept in the layer.
    let ctx = s.context(
        "mknod-ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mknod /dev-null-copy c 1 3\n",
        )],
    );
    s.ok(&["build", "-t", "nodes:1", ctx.to_str().unwrap()]);
    let out = s.ok(&[
        "run",
        "--rm",
        "nodes:1",
        "stat",
        "-c",
        "%F %t:%T",
        "/dev-null-copy",
    ]);
    assert_eq!(out.trim(), "character special file 1:3");
}

fn berth_runtime_devices() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - cgroup ") && l.split(',').any(|o| o.trim() == "devices"))
}

/// Without `-t`, the container's stdin, stdout and stderr are pipes berth copies, never its
/// own descriptors: through `/proc/self/fd/1` a container could otherwise read the host file
/// berth's output is appended to, or truncate it, and through `/proc/self/fd/0` write the
/// file berth's input comes from (security review F2).
#[test]
fn the_containers_stdio_are_pipes_not_berths_own_descriptors() {
    let Some(s) = ROOT.sandbox() else { return };
    berth_test_support::host_stdio::assert_out_of_reach(&s, &["run", "--rm", "-i", "busybox"]);
    // Without -i, stdin is /dev/null.
    let (code, out, err) = sh(&s, "readlink /proc/$$/fd/0; readlink /proc/$$/fd/1");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/dev/null");
    assert!(lines[1].starts_with("pipe:"), "{out}");
}

/// The relay keeps each stream's order and separation, passes stdin with `-i` up to its end,
/// copies everything written before the container ended, and an exit code is the container's.
#[test]
fn the_relay_keeps_streams_apart_in_order_and_complete() {
    let Some(s) = ROOT.sandbox() else { return };
    let (code, out, err) = sh(
        &s,
        "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; \
         head -c 300000 /dev/zero | tr '\\0' x; exit 7",
    );
    assert_eq!(code, 7, "{err}");
    let want_out: String = (0..2000).map(|i| format!("out{i}\n")).collect();
    let want_err: String = (0..2000).map(|i| format!("err{i}\n")).collect();
    assert_eq!(out.len(), want_out.len() + 300000);
    assert!(out.starts_with(&want_out) && out.ends_with('x'));
    assert_eq!(err, want_err);
    let mut cmd = s.cmd();
    cmd.args(["run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo end"]);
    let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = input.clone();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &sent));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_success(&out, "run -i cat");
    assert_eq!(out.stdout.len(), input.len() + 4);
    assert!(out.stdout.starts_with(&input) && out.stdout.ends_with(b"end\n"));
}
