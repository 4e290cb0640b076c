//! Container escapes, one test per class that runc and BuildKit have had a CVE for, through
//! `berth run` and through RUN steps of `berth build`. Each attempt must fail (or land inside
//! the container) and leave the host as it was: a sentinel directory with a file in it, the
//! berth binary itself, and the host's `/etc`.

use std::path::{Path, PathBuf};

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// `<sandbox>/host` holding `keep`: escapes aim at it.
fn sentinel(s: &Sandbox) -> PathBuf {
    let dir = s.path().join("host");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep"), "host-secret\n").unwrap();
    dir
}

fn assert_sentinel(dir: &Path, what: &str) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["keep"], "{what}: the host directory changed");
    assert_eq!(
        std::fs::read_to_string(dir.join("keep")).unwrap(),
        "host-secret\n",
        "{what}"
    );
}

fn build(
    s: &Sandbox,
    name: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
) -> std::process::Output {
    let mut all = vec![("Dockerfile", dockerfile)];
    all.extend_from_slice(files);
    let ctx = s.context(name, &all);
    s.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        &format!("esc:{name}"),
        ctx.to_str().unwrap(),
    ])
}

fn sha(path: &str) -> String {
    berth_oci::Digest::of(&std::fs::read(path).unwrap()).to_string()
}

/// CVE-2024-21626: a working directory of `/proc/self/fd/N` reaching a descriptor the runtime
/// leaked, from which `..` climbs to the host's root.
#[test]
fn workdir_through_a_leaked_fd_cannot_reach_the_host() {
    let Some(s) = ROOT.sandbox() else { return };
    let host = sentinel(&s);
    let climb = format!("../../../../../../..{}/keep", host.display());
    for fd in 3..=12 {
        let o = s.run(&[
            "run",
            "--rm",
            "-w",
            &format!("/proc/self/fd/{fd}"),
            "busybox",
            "sh",
            "-c",
            &format!("cat {climb} 2>/dev/null; ls /proc/self/fd"),
        ]);
        let text = printed(&o);
        assert!(
            !text.contains("host-secret"),
            "fd {fd}: the host was read:\n{text}"
        );
        if o.status.success() {
            // Only 0, 1, 2 and ls's own directory descriptor.
            let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
            let fds: Vec<&str> = stdout
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            assert!(fds.len() <= 4, "fd {fd}: leaked descriptors {fds:?}");
        } else {
            assert_eq!(o.status.code(), Some(125), "fd {fd}: {text}");
        }
    }
    // The same through a build: WORKDIR then RUN.
    let o = build(
        &s,
        "workdir-fd",
        &format!("FROM busybox\nWORKDIR /proc/self/fd/7\nRUN cat {climb} || true\n"),
        &[],
    );
    assert!(!printed(&o).contains("host-secret"), "{}", printed(&o));
    let o = build(
        &s,
        "run-fds",
        "FROM busybox\nRUN test $(ls /proc/self/fd | wc -l) -le 4 && ls -l /proc/self/fd\n",
        &[],
    );
    assert!(
        o.status.success(),
        "a RUN step sees only its own descriptors:\n{}",
        printed(&o)
    );
    assert_sentinel(&host, "workdir /proc/self/fd");
    s.assert_clean();
}

/// CVE-2019-5736: the container reaching the runtime's binary through `/proc/self/exe` (an
/// entrypoint `#!/proc/self/exe` makes the runtime exec itself inside the container) and
/// writing to it.
#[test]
fn the_runtime_binary_cannot_be_overwritten_from_inside() {
    let Some(s) = ROOT.sandbox() else { return };
    let berth = env!("CARGO_BIN_EXE_berth");
    let before = sha(berth);
    let rootfs = s.path().join("evil");
    berth_test_support::busybox_rootfs(&rootfs);
    std::fs::write(rootfs.join("evil"), "#!/proc/self/exe\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(rootfs.join("evil"))
            .unwrap()
            .permissions(),
        0o755,
    );
    std::fs::set_permissions(
        rootfs.join("evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    s.ok(&["import", rootfs.to_str().unwrap(), "evil"]);
    // The runtime execs the entrypoint; whatever runs, it cannot write the binary.
    let _ = s.run(&["run", "--rm", "evil", "/evil"]);
    // A process beside the init tries every /proc/N/exe for writing, and by fd reopen.
    let o = s.run(&[
        "run",
        "--rm",
        "--init",
        "evil",
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do (echo pwn >> $p/exe) 2>/dev/null && echo WROTE $p; \
         done; (cat /proc/1/exe > /dev/null) 2>/dev/null && echo READ_INIT; echo done",
    ]);
    let text = printed(&o);
    assert!(text.contains("done"), "{text}");
    assert!(
        !text.contains("WROTE") && !text.contains("READ_INIT"),
        "{text}"
    );
    // A RUN step with the same entry trick.
    let _ = build(&s, "self-exe", "FROM evil\nRUN [\"/evil\"]\n", &[]);
    assert_eq!(sha(berth), before, "the berth binary changed");
}

/// CVE-2025-31133 class: the image plants symlinks where the runtime mounts (`/dev/null`
/// pointing at a procfs file, `/proc` or `/sys` pointing at host paths) to make a masked or
/// read-only path writable or to mount onto the host.
#[test]
fn planted_symlinks_do_not_unmask_procfs_or_steer_mounts() {
    let Some(s) = ROOT.sandbox() else { return };
    let host = sentinel(&s);
    let rootfs = s.path().join("planted");
    berth_test_support::busybox_rootfs(&rootfs);
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", rootfs.join("dev/null")).unwrap();
    std::os::unix::fs::symlink("/proc/sysrq-trigger", rootfs.join("dev/console")).unwrap();
    std::fs::remove_dir_all(rootfs.join("sys")).unwrap();
    std::os::unix::fs::symlink(&host, rootfs.join("sys")).unwrap();
    std::fs::remove_dir_all(rootfs.join("proc")).unwrap();
    std::os::unix::fs::symlink(&host, rootfs.join("proc")).unwrap();
    s.ok(&["import", rootfs.to_str().unwrap(), "planted"]);
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let o = s.run(&[
        "run",
        "--rm",
        "planted",
        "sh",
        "-c",
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern && echo CORE; \
         echo '|/tmp/x' > /dev/null; \
         cat /proc/kcore | wc -c; cat /proc/keys 2>/dev/null | wc -c; \
         echo 1 > /proc/sysrq-trigger && echo SYSRQ; \
         touch /sys/pwned && echo SYSW; \
         test -c /dev/null && echo NULL_IS_DEV",
    ]);
    let text = printed(&o);
    assert!(
        !text.contains("CORE") && !text.contains("SYSRQ") && !text.contains("SYSW"),
        "{text}"
    );
    assert!(
        text.contains("NULL_IS_DEV"),
        "/dev is the runtime's own: {text}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
    assert_sentinel(&host, "planted /proc and /sys symlinks");
    // With a terminal: /dev/console is bound to the pty, never through the planted link.
    let script = format!(
        "{} run --rm -t planted sh -c 'test -c /dev/console && echo CONSOLE_OK; echo 1 > /dev/console'",
        env!("CARGO_BIN_EXE_berth")
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .env("BERTH_ROOT", s.store())
        .output()
        .unwrap();
    let text = printed(&o);
    assert!(text.contains("CONSOLE_OK"), "{text}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
}

/// `/sys` in a RUN step (on the host's network) is read-only through and through: rootless,
/// where sysfs cannot be mounted outside a network namespace of its own, it is the host's
/// `/sys` bound with every mount below it (the cgroup tree, where a user's delegated cgroup
/// is theirs to write), and each of those must be read-only too.
#[test]
fn every_mount_under_sys_in_a_run_step_is_read_only() {
    let Some(s) = ROOT.sandbox() else { return };
    let o = build(
        &s,
        "sys-ro",
        "FROM busybox\nRUN grep -E ' /sys(/| )' /proc/self/mountinfo | sed \"s/^/MOUNT\"\"LINE /\"\n",
        &[],
    );
    let text = printed(&o);
    assert!(o.status.success(), "{text}");
    let mounts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("MOUNTLINE ").map(|(_, m)| m))
        .collect();
    assert!(!mounts.is_empty(), "{text}");
    for m in mounts {
        // Field 6: the mount's own options.
        let options = m.split_whitespace().nth(5).unwrap_or_default();
        assert!(
            options.split(',').any(|o| o == "ro"),
            "writable under /sys: {m}"
        );
    }
}

/// What a RUN step may not do: mount, new user namespaces, ptrace or signal host processes,
/// write /proc/sys or /sys, load modules, make devices. The step runs them all and fails if
/// any succeeds.
#[test]
fn run_steps_cannot_mount_unshare_ptrace_or_touch_the_kernel() {
    let Some(s) = ROOT.sandbox() else { return };
    let me = std::process::id();
    let host = sentinel(&s);
    let h = host.display();
    let script = format!(
        "mkdir -p /mnt; \
         ! mount -t tmpfs x /mnt 2>/dev/null && \
         ! unshare -U true 2>/dev/null && ! unshare -m true 2>/dev/null && \
         ! kill -0 {me} 2>/dev/null && ! cat /proc/{me}/environ 2>/dev/null && \
         ! nsenter -t 1 -m -U true 2>/dev/null && \
         ! sh -c 'echo 1 > /proc/sys/kernel/sysrq' 2>/dev/null && \
         ! touch /sys/kernel/pwned 2>/dev/null && \
         ! sh -c 'echo x > /tmp/m.ko && insmod /tmp/m.ko' 2>/dev/null && \
         {{ mknod /sda b 8 0 2>/dev/null; ! head -c 1 /sda > /dev/null 2>&1; }} && \
         ! mount --bind / /mnt 2>/dev/null && \
         ! cat /proc/1/root/../../../..{h}/keep 2>/dev/null && \
         ! chroot /proc/1/root/.. cat ../../../..{h}/keep 2>/dev/null; \
         echo ATTEMPTS_DONE"
    );
    // As one RUN line; the step must complete (every attempt failed), with ATTEMPTS_DONE.
    let o = build(
        &s,
        "kernel",
        &format!(
            "FROM busybox\nRUN {} && echo ALL_REFUSED\n",
            script.replace("; echo ATTEMPTS_DONE", "")
        ),
        &[],
    );
    let text = printed(&o);
    assert!(
        o.status.success() && text.contains("ALL_REFUSED"),
        "an attempt succeeded:\n{text}"
    );
    assert!(!Path::new("/sda").exists());
    assert_sentinel(&host, "RUN attempts");
    s.assert_clean();
}

/// CVE-2024-23651/23652 class: RUN --mount sources that are symlinks out of their tree, mount
/// targets behind symlinks the image made, cache ids that climb, and the cleanup of mount
/// stubs after the step, none of which may touch the host.
#[test]
fn run_mount_sources_and_targets_stay_inside() {
    let Some(s) = ROOT.sandbox() else { return };
    let host = sentinel(&s);
    let h = host.display().to_string();
    // A bind source that is a symlink out of the context: resolved inside it.
    let ctx_files = [("f", "context-file\n")];
    let o = build(
        &s,
        "bind-link",
        "FROM busybox\nRUN --mount=type=bind,source=link,target=/m cat /m/keep\n",
        &ctx_files,
    );
    // (the link is made below, after `build` wrote the context: rebuild with it)
    drop(o);
    let ctx = s.path().join("ctx-bind-link");
    std::os::unix::fs::symlink(&host, ctx.join("link")).unwrap();
    let o = s.run(&["build", "-t", "esc:bind-link", ctx.to_str().unwrap()]);
    assert!(
        !printed(&o).contains("host-secret"),
        "the bind followed a link out of the context:\n{}",
        printed(&o)
    );
    assert!(!o.status.success());
    // A climbing bind source.
    let o = build(
        &s,
        "bind-climb",
        &format!(
            "FROM busybox\nRUN --mount=type=bind,source=../../../../../../..{h},target=/m cat /m/keep\n"
        ),
        &ctx_files,
    );
    assert!(!printed(&o).contains("host-secret"), "{}", printed(&o));
    // A bind from a stage whose source is a symlink to an absolute path: inside the stage.
    let o = build(
        &s,
        "bind-stage-link",
        &format!(
            "FROM busybox AS st\nRUN ln -s {h} /out\nFROM busybox\nRUN --mount=type=bind,from=st,source=/out,target=/m cat /m/keep\n"
        ),
        &[],
    );
    assert!(!printed(&o).contains("host-secret"), "{}", printed(&o));
    // Mount targets behind a symlink the image made: the mounts land inside the rootfs, and
    // removing the stubs afterwards does not remove the host's file.
    let o = build(
        &s,
        "targets",
        &format!(
            "FROM busybox\nRUN ln -s {h} /t\n\
             RUN --mount=type=bind,source=f,target=/t/keep --mount=type=tmpfs,target=/t/tmp \
             --mount=type=cache,target=/t/cache --mount=type=secret,id=s,target=/t/secret,required=false \
             cat /t/keep && touch /t/tmp/x /t/cache/y\n\
             RUN test ! -e {h}/keep || ! grep -q host-sec''ret {h}/keep\n"
        ),
        &ctx_files,
    );
    assert!(o.status.success(), "{}", printed(&o));
    assert!(!printed(&o).contains("host-secret"), "{}", printed(&o));
    // A cache id that climbs stays a name under the store's cache directory.
    let o = build(
        &s,
        "cache-id",
        &format!(
            "FROM busybox\nRUN --mount=type=cache,id=../../../../../../..{h},target=/c touch /c/pwned && ls /c\n"
        ),
        &[],
    );
    assert!(o.status.success(), "{}", printed(&o));
    assert_sentinel(&host, "RUN --mount");
    s.assert_clean();
}

/// Compiles `testdata/probes/syscalls.rs` as a static binary into `dir` (rustc is there
/// wherever these tests are built), or copies the one `BERTH_SYSCALL_PROBE` names.
fn syscall_probe(dir: &Path) -> PathBuf {
    // Built beforehand where this user has no compiler (scripts/test-rootless).
    if let Some(built) = std::env::var_os("BERTH_SYSCALL_PROBE") {
        let bin = dir.join("probe");
        std::fs::copy(built, &bin).expect("copying the prebuilt probe");
        return bin;
    }
    let src = berth_test_support::workspace_root().join("testdata/probes/syscalls.rs");
    let bin = dir.join("probe");
    let o = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("rustc");
    assert!(o.status.success(), "{}", printed(&o));
    bin
}

fn probe_answers(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The seccomp filter is an allowlist in the shape of Docker's default profile: what it
/// refuses gets EPERM, `clone3` and calls newer than the profile get ENOSYS (so libc falls
/// back), argument conditions hold (namespace flags on clone, AF_VSOCK, personas), and
/// `--privileged` installs nothing. The same for a RUN step. Each probe uses arguments the
/// kernel alone would answer differently, so the answers show the filter's decisions.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_seccomp_filter_is_dockers_allowlist_with_enosys_for_newer_calls() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.path().join("ctx-probe");
    std::fs::create_dir_all(&ctx).unwrap();
    syscall_probe(&ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY probe /probe\nRUN /probe > /in-build.txt\n",
    )
    .unwrap();
    s.import_busybox("busybox");
    s.ok(&["build", "-q", "-t", "probe", ctx.to_str().unwrap()]);

    let expected = [
        ("getpid", "ok"),
        ("clone3", "38"),
        ("clone_newuser", "1"),
        ("clone_newns", "1"),
        ("unshare_newuser", "1"),
        ("socket_vsock", "1"),
        ("socket_unix", "ok"),
        ("personality_exec", "1"),
        ("personality_query", "ok"),
        ("io_uring_setup", "1"),
        ("keyctl", "1"),
        ("mseal", "38"),
        ("file_setattr", "38"),
        ("nr_1000", "38"),
        // Answered by the filesystem (EOPNOTSUPP on overlayfs, EFAULT elsewhere): let through.
        ("name_to_handle_at", "allowed"),
        ("ptrace_peek", "3"),
        ("mount", "1"),
    ];
    for (how, text) in [
        ("berth run", s.ok(&["run", "--rm", "probe", "/probe"])),
        (
            "a RUN step",
            s.ok(&["run", "--rm", "probe", "cat", "/in-build.txt"]),
        ),
    ] {
        let answers = probe_answers(&text);
        for (call, answer) in expected {
            let got = answers.get(call).map(String::as_str);
            if answer == "allowed" {
                assert!(
                    got.is_some_and(|g| g != "1" && g != "38"),
                    "{how}: {call} refused\n{text}"
                );
            } else {
                assert_eq!(got, Some(answer), "{how}: {call}\n{text}");
            }
        }
    }

    // --privileged: no filter, so the kernel answers.
    let text = s.ok(&["run", "--rm", "--privileged", "probe", "/probe"]);
    let answers = probe_answers(&text);
    for (call, answer) in [
        ("clone3", "22"),
        ("file_setattr", "22"),
        ("personality_exec", "ok"),
        ("io_uring_setup", "14"),
    ] {
        assert_eq!(
            answers.get(call).map(String::as_str),
            Some(answer),
            "--privileged: {call}\n{text}"
        );
    }
    s.assert_clean();
}
