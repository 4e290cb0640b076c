//! Mounts as a way out: read-only binds that leave a submount writable (`run -v DIR:/r:ro`,
//! `-v /:/host:ro`, a read-only cache mount, a context with a mount inside), bind mounts from
//! the context that show what `.dockerignore` excludes or let a step write the user's files,
//! and a build secret that other local users can read while the step runs. Each attempt must
//! fail and leave the host as it was. They run containers, as root or rootless; the submount
//! tests mount on the host, as root only.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// A tmpfs mounted on the host for the test's length (detached on drop).
struct HostMount(PathBuf);

impl HostMount {
    /// `None` when not root (the test returns after saying it needs root for this mount).
    fn tmpfs(at: &Path) -> Option<HostMount> {
        if !berth_test_support::needs_root("a tmpfs mounted on the host inside a bound directory") {
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        Some(HostMount(at.to_owned()))
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn build_in(s: &Sandbox, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build", "--progress", "plain", "--no-cache"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    s.run(&args)
}

/// `run -v DIR:/r:ro` where DIR holds a mount: the mount below is read-only too (Docker's
/// `-v` is a recursive bind; the read-only flag must be recursive with it).
#[test]
fn a_read_only_volume_is_read_only_in_its_submounts() {
    let Some(s) = ROOT.sandbox() else { return };
    let dir = s.path().join("vol");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("top"), "top\n").unwrap();
    let Some(sub) = HostMount::tmpfs(&dir.join("sub")) else {
        return;
    };
    std::fs::write(sub.0.join("seen"), "below\n").unwrap();
    let o = s.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/r:ro", dir.display()),
        "busybox",
        "sh",
        "-c",
        "cat /r/sub/seen; touch /r/new; touch /r/sub/new; echo x >> /r/sub/seen; \
         mkdir /r/sub/d; rm /r/sub/seen; echo end",
    ]);
    let text = printed(&o);
    assert!(text.contains("below"), "the submount is visible:\n{text}");
    assert!(text.contains("end"), "{text}");
    assert_eq!(
        text.matches("Read-only file system").count(),
        5,
        "every write refused:\n{text}"
    );
    assert!(!dir.join("new").exists());
    assert!(!sub.0.join("new").exists(), "written below the submount");
    assert!(!sub.0.join("d").exists());
    assert_eq!(
        std::fs::read_to_string(sub.0.join("seen")).unwrap(),
        "below\n"
    );
}

/// `-v /:/host:ro`: the host's procfs and sysfs below it are read-only too (on a writable
/// `/host/proc`, `/host/proc/sys/kernel/core_pattern` is root on the host). The probe writes
/// `/proc/sys/kernel/hostname` through the host's procfs, which only names the writer's own
/// UTS namespace (the container's), so even a failure of this test leaves the host alone.
#[test]
fn a_read_only_bind_of_the_host_root_leaves_host_proc_read_only() {
    let Some(s) = ROOT.sandbox() else { return };
    let o = s.run(&[
        "run",
        "--rm",
        "-v",
        "/:/host:ro",
        "busybox",
        "sh",
        "-c",
        "echo probe > /host/proc/sys/kernel/hostname; echo; hostname; \
         echo 1 > /host/sys/kernel/mm/ksm/run; echo end",
    ]);
    let text = printed(&o);
    assert!(text.contains("end"), "{text}");
    assert!(
        !text.contains("\nprobe"),
        "the host's procfs was written:\n{text}"
    );
    assert!(
        text.matches("Read-only file system").count() >= 1,
        "the write was refused as read-only:\n{text}"
    );
    if Path::new("/sys/kernel/mm/ksm/run").exists() {
        assert_eq!(
            text.matches("Read-only file system").count(),
            2,
            "sysfs below the bind is read-only too:\n{text}"
        );
    }
}

/// A read-only cache mount whose directory holds a mount (the store is the user's disk; a
/// mount under it is unusual, but read-only must hold for the whole tree).
#[test]
fn a_read_only_cache_mount_is_read_only_in_its_submounts() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "cache",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,id=c1,target=/c mkdir -p /c/sub\n",
        )],
    );
    let o = build_in(&s, &ctx, &[]);
    assert!(o.status.success(), "{}", printed(&o));
    let data = s
        .store()
        .join("cache-mounts")
        .join(berth_oci::Digest::of(b"c1").hex())
        .join("data");
    let Some(sub) = HostMount::tmpfs(&data.join("sub")) else {
        return;
    };
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=cache,id=c1,target=/c,ro touch /c/sub/x\n",
    )
    .unwrap();
    let o = build_in(&s, &ctx, &[]);
    let text = printed(&o);
    assert!(
        !o.status.success(),
        "the write below the cache mount worked:\n{text}"
    );
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(!sub.0.join("x").exists());
}

/// A context directory with a mount inside it, bound read-only: nothing below can be written.
#[test]
fn a_read_only_context_bind_is_read_only_in_its_submounts() {
    let Some(s) = ROOT.sandbox() else { return };
    let dockerfile =
        "FROM busybox\nRUN --mount=type=bind,target=/ctx sh -c 'touch /ctx/sub/x; touch /ctx/y'\n";
    let ctx = s.context("ctxsub", &[("Dockerfile", dockerfile), ("keep", "k\n")]);
    let Some(sub) = HostMount::tmpfs(&ctx.join("sub")) else {
        return;
    };
    let o = build_in(&s, &ctx, &[]);
    let text = printed(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    assert!(
        !sub.0.join("x").exists(),
        "written below the context's submount"
    );
    assert!(!ctx.join("y").exists());
}

const IGNORED: &str = "ignored-value-Pq81";

fn ignore_context(s: &Sandbox, name: &str, dockerfile: &str) -> PathBuf {
    let ctx = s.context(
        name,
        &[
            ("Dockerfile", dockerfile),
            (
                ".dockerignore",
                "secret.txt\n.git\ndir\n!dir/keep\n**/*.key\n",
            ),
            ("secret.txt", IGNORED),
            (".git/config", IGNORED),
            ("dir/keep", "kept\n"),
            ("dir/drop", IGNORED),
            ("sub/a.key", IGNORED),
            ("sub/a.txt", "a\n"),
            ("keep.txt", "kept\n"),
        ],
    );
    std::os::unix::fs::symlink("secret.txt", ctx.join("link.txt")).unwrap();
    ctx
}

/// `.dockerignore`d files do not exist for a bind mount from the context, read-only or not,
/// as under BuildKit: not in a listing, not as a source, not through a symlink.
#[test]
fn a_context_bind_shows_only_what_dockerignore_lets_in() {
    let Some(s) = ROOT.sandbox() else { return };
    let script = "set -e; ls -laR /ctx; cat /ctx/keep.txt /ctx/dir/keep /ctx/sub/a.txt; \
                  for p in secret.txt .git dir/drop sub/a.key; do \
                  if test -e /ctx/$p; then echo LEAK $p; cat /ctx/$p; exit 1; fi; done; \
                  if cat /ctx/link.txt; then exit 1; fi; grep -r . /ctx || true";
    for opts in ["", ",rw"] {
        let ctx = ignore_context(
            &s,
            &format!("ignore{}", opts.len()),
            &format!("FROM busybox\nRUN --mount=type=bind,target=/ctx{opts} sh -c '{script}'\n"),
        );
        let o = build_in(&s, &ctx, &[]);
        let text = printed(&o);
        assert!(o.status.success(), "{opts}: {text}");
        assert!(
            !text.contains(IGNORED),
            "{opts}: an ignored file was read:\n{text}"
        );
        assert!(text.contains("kept"), "{opts}: {text}");
    }
    for (i, source) in [
        "secret.txt",
        ".git/config",
        ".git",
        "dir/drop",
        "sub/a.key",
        "link.txt",
    ]
    .iter()
    .enumerate()
    {
        for opts in ["", ",rw"] {
            let ctx = ignore_context(
                &s,
                &format!("src{i}{}", opts.len()),
                &format!(
                    "FROM busybox\nRUN --mount=type=bind,source={source},target=/s{opts} \
                     sh -c 'cat /s || ls -la /s'\n"
                ),
            );
            let o = build_in(&s, &ctx, &[]);
            let text = printed(&o);
            assert!(
                !o.status.success(),
                "{source}{opts}: the mount worked:\n{text}"
            );
            assert!(!text.contains(IGNORED), "{source}{opts}: read:\n{text}");
            assert!(
                text.contains("not found"),
                "{source}{opts}: fails as a missing file does:\n{text}"
            );
        }
    }
    // What is not ignored still binds, a file and a directory kept by an exception.
    let ctx = ignore_context(
        &s,
        "kept",
        "FROM busybox\nRUN --mount=type=bind,source=dir,target=/d \
         --mount=type=bind,source=keep.txt,target=/k sh -c 'ls /d; cat /d/keep /k; test ! -e /d/drop'\n",
    );
    let o = build_in(&s, &ctx, &[]);
    assert!(o.status.success(), "{}", printed(&o));
    assert!(!printed(&o).contains(IGNORED), "{}", printed(&o));
}

/// A step's writes through a context bind never reach the user's files: read-only binds
/// refuse them, `rw` binds keep them for the step only (write, chmod, chown, truncate,
/// remove, a hard link to the file).
#[test]
fn a_context_bind_cannot_modify_the_users_files() {
    let Some(s) = ROOT.sandbox() else { return };
    let script = "echo evil > /ctx/data.txt; chmod 4777 /ctx/data.txt; chown 1:1 /ctx/data.txt; \
                  truncate -s 0 /ctx/data.txt; touch -d 2001-01-01 /ctx/data.txt; \
                  ln /ctx/data.txt /ctx/hard; echo more >> /ctx/hard; rm -f /ctx/rm.txt; \
                  echo new > /ctx/new.txt; chmod 777 /ctx/dir; echo in > /ctx/dir/f; true";
    for (i, opts) in ["", ",rw"].iter().enumerate() {
        let ctx = s.context(
            &format!("write{i}"),
            &[
                (
                    "Dockerfile",
                    &format!(
                        "FROM busybox\nRUN --mount=type=bind,target=/ctx{opts} sh -c '{script}'\n"
                    ),
                ),
                ("data.txt", "original\n"),
                ("rm.txt", "x\n"),
                ("dir/g", "g\n"),
            ],
        );
        std::fs::set_permissions(ctx.join("data.txt"), PermissionsExt::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(ctx.join("data.txt")).unwrap();
        let dir_before = std::fs::metadata(ctx.join("dir")).unwrap();
        let o = build_in(&s, &ctx, &[]);
        assert!(o.status.success(), "{opts}: {}", printed(&o));
        let after = std::fs::metadata(ctx.join("data.txt")).unwrap();
        assert_eq!(
            std::fs::read_to_string(ctx.join("data.txt")).unwrap(),
            "original\n",
            "{opts}"
        );
        assert_eq!(
            (
                after.mode(),
                after.uid(),
                after.gid(),
                after.mtime(),
                after.nlink()
            ),
            (
                before.mode(),
                before.uid(),
                before.gid(),
                before.mtime(),
                before.nlink()
            ),
            "{opts}: the user's file changed"
        );
        assert_eq!(
            std::fs::metadata(ctx.join("dir")).unwrap().mode(),
            dir_before.mode(),
            "{opts}"
        );
        assert!(ctx.join("rm.txt").exists(), "{opts}");
        for p in ["new.txt", "hard", "dir/f"] {
            assert!(!ctx.join(p).exists(), "{opts}: {p} created in the context");
        }
    }
}

const SECRET: &str = "mount-secret-Xr7w3Kq5";

/// Files under `dir` (not following links, at most `depth` levels) that hold `needle`.
fn files_holding(dir: &Path, needle: &[u8], depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() && depth > 0 {
            files_holding(&e.path(), needle, depth - 1, found);
        } else if meta.is_file()
            && meta.len() < 4096
            && std::fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            found.push(e.path());
        }
    }
}

/// Whether uid/gid 65534 can read `path` on the host.
fn nobody_reads(path: &Path) -> bool {
    std::process::Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            berth_test_support::BUSYBOX,
            "cat",
        ])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && o.stdout
                    .windows(SECRET.len())
                    .any(|w| w == SECRET.as_bytes())
        })
}

/// A secret mounted `mode=0444` is readable inside the step by any user, and by no other
/// user on the host while the step runs: wherever berth keeps it, uid 65534 cannot reach it.
#[test]
fn a_secret_is_out_of_reach_of_other_users_while_the_step_runs() {
    let Some(s) = ROOT.sandbox() else { return };
    let file = s.path().join("secret-src");
    std::fs::write(&file, SECRET).unwrap();
    let ctx = s.context(
        "secret",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=tok,mode=0444 \
         sh -c 'su -s /bin/sh -c \"cat /run/secrets/tok\" nobody >/dev/null \
         && echo readable-inside-$((40+2)); sleep 4'\n",
        )],
    );
    let mut child = s
        .cmd()
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--secret",
            &format!("id=tok,src={}", file.display()),
            ctx.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let mut found = Vec::new();
        files_holding(Path::new("/dev/shm"), SECRET.as_bytes(), 4, &mut found);
        files_holding(&s.store(), SECRET.as_bytes(), 8, &mut found);
        files_holding(Path::new("/tmp"), SECRET.as_bytes(), 3, &mut found);
        found.retain(|p| p != &file);
        for p in &found {
            assert!(
                !nobody_reads(p),
                "uid 65534 reads the secret at {} while the step runs",
                p.display()
            );
        }
        seen.extend(found);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", printed(&o));
    assert!(
        printed(&o).contains("readable-inside-42"),
        "{}",
        printed(&o)
    );
    assert!(!printed(&o).contains(SECRET), "{}", printed(&o));
    assert!(!seen.is_empty(), "the scan never found the secret's file");
    assert!(
        seen.iter().all(|p| !p.exists()),
        "the secret's file outlived the step: {seen:?}"
    );
}

/// The cache key of a step with a context bind covers exactly what the bind shows: a source
/// reached through a symlink is keyed by what the link points at, and an ignored file
/// changing does not re-run the step.
#[test]
fn a_context_bind_is_keyed_by_the_files_it_shows() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "key",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN --mount=type=bind,source=link,target=/d cat /d/f\n",
            ),
            (".dockerignore", "real/ignored\n"),
            ("real/f", "one\n"),
            ("real/ignored", "x\n"),
        ],
    );
    std::os::unix::fs::symlink("real", ctx.join("link")).unwrap();
    let build = || {
        let o = s.run(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
        assert!(o.status.success(), "{}", printed(&o));
        printed(&o)
    };
    let first = build();
    assert!(first.contains("one"), "{first}");
    std::fs::write(ctx.join("real/ignored"), "y\n").unwrap();
    assert!(
        build().contains("CACHED"),
        "an ignored file is not an input"
    );
    std::fs::write(ctx.join("real/f"), "two\n").unwrap();
    let third = build();
    assert!(
        !third.contains("CACHED") && third.contains("two"),
        "a changed file behind the link re-runs the step:\n{third}"
    );
}

/// Blocks a build in the middle of preparing its RUN step's mounts: a `--secret` whose source
/// is a FIFO (as `--secret src=<(command)` is) is read when its mount is prepared, so the
/// build waits there until `swap` has run. Mounts listed before the secret are prepared (their
/// sources resolved and checked) before the swap, mounts after it after the swap.
fn build_swapping_in_between(
    s: &Sandbox,
    ctx: &Path,
    swap: impl FnOnce() + Send + 'static,
) -> std::process::Output {
    let fifo = s.path().join(format!(
        "secret-fifo-{}",
        ctx.file_name().unwrap().to_string_lossy()
    ));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            // Opening for writing waits for the build to open it for reading.
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            swap();
            w.write_all(b"gate").unwrap();
        })
    };
    let secret = format!("id=gate,src={}", fifo.display());
    let o = build_in(s, ctx, &["--secret", &secret]);
    writer.join().unwrap();
    o
}

/// Replaces `path` with a symlink to `to` in one rename, as a local user who owns the
/// context does (`mv -T`).
fn swap_for_symlink(path: &Path, to: &Path) {
    let tmp = path.with_extension("swap");
    std::os::unix::fs::symlink(to, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const HOST_ONLY: &str = "HOST-ONLY-MARKER-7171";

/// How a step whose live context bind changed under it fails.
const CONTEXT_CHANGED: &str = "the build context changed while the step could read it";

/// A host file and directory no build may show (root-only, outside the context).
fn host_secrets(s: &Sandbox) -> (PathBuf, PathBuf) {
    let dir = s.path().join("host-only");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("shadow");
    std::fs::write(&file, format!("{HOST_ONLY}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (file, dir)
}

/// A context file bind's source is swapped for a symlink to a host file after it was checked
/// and before the step runs (red-team finding 3, made deterministic): the step sees the file
/// that was checked, or fails when that file no longer exists; never the host's.
#[test]
fn a_context_file_swapped_for_a_symlink_after_its_check_is_not_bound() {
    let Some(s) = ROOT.sandbox() else { return };
    let (host_file, _) = host_secrets(&s);
    let ctx = s.context(
        "swap-file",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN --mount=type=bind,source=f,target=/x \
         --mount=type=secret,id=gate,target=/gate cat /x\n",
            ),
            ("f", "benign-file\n"),
        ],
    );
    let f = ctx.join("f");
    let o = build_swapping_in_between(&s, &ctx, move || swap_for_symlink(&f, &host_file));
    let text = printed(&o);
    assert!(!text.contains(HOST_ONLY), "a host file was bound:\n{text}");
    // The file that was checked is gone from the context (replaced): the kernel binds no
    // removed file, so the step fails, saying so.
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("removed or replaced since it was opened"),
        "{text}"
    );
    // Renamed away but still there, the file that was checked is what the step sees.
    let ctx = s.context(
        "swap-file-kept",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN --mount=type=bind,source=f,target=/x \
         --mount=type=secret,id=gate,target=/gate \
         sh -c 'cat /x; echo FDS $(ls /proc/self/fd | tr \"\\n\" \" \")'\n",
            ),
            ("f", "benign-file\n"),
        ],
    );
    let (f, host_file) = (ctx.join("f"), s.path().join("host-only/shadow"));
    let o = build_swapping_in_between(&s, &ctx, move || {
        std::fs::rename(&f, f.with_extension("moved")).unwrap();
        swap_for_symlink(&f, &host_file);
    });
    let text = printed(&o);
    assert!(!text.contains(HOST_ONLY), "a host file was bound:\n{text}");
    assert!(text.contains("benign-file"), "{text}");
    // The step saw what was checked; the context changed under it all the same, so its
    // result is not kept.
    assert!(
        o.status.code() == Some(1) && text.contains(CONTEXT_CHANGED),
        "{text}"
    );
    // The descriptors handed to the step's init are not the step's: `ls` sees its stdio and
    // the directory it lists.
    assert!(
        text.lines().any(|l| l.trim_end().ends_with("FDS 0 1 2 3")),
        "{text}"
    );
}

/// The same for a read-only directory bind (an overlay whose lower layer is the context
/// directory): swapped for a symlink to a host directory after its check, the step still
/// sees the directory that was checked.
#[test]
fn a_context_directory_swapped_for_a_symlink_after_its_check_is_not_shown() {
    let Some(s) = ROOT.sandbox() else { return };
    let (_, host_dir) = host_secrets(&s);
    let ctx = s.context(
        "swap-dir",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN --mount=type=bind,source=d,target=/x \
         --mount=type=secret,id=gate,target=/gate sh -c 'ls -la /x; cat /x/*'\n",
            ),
            ("d/inside", "benign-dir\n"),
        ],
    );
    let d = ctx.join("d");
    let o = build_swapping_in_between(&s, &ctx, move || {
        std::fs::rename(&d, d.with_extension("moved")).unwrap();
        swap_for_symlink(&d, &host_dir);
    });
    let text = printed(&o);
    assert!(
        !text.contains(HOST_ONLY),
        "a host directory was shown:\n{text}"
    );
    assert!(text.contains("benign-dir"), "{text}");
    assert!(
        o.status.code() == Some(1) && text.contains(CONTEXT_CHANGED),
        "{text}"
    );
}

/// The whole context directory swapped for a symlink to a host directory after the context
/// was scanned (its owner may own the directory above it, as in a CI workspace): binds and
/// COPY still read the context that was scanned.
#[test]
fn a_context_root_swapped_for_a_symlink_after_the_scan_is_not_read() {
    let Some(s) = ROOT.sandbox() else { return };
    let (_, host_dir) = host_secrets(&s);
    let ctx = s.context(
        "swap-root",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN --mount=type=secret,id=gate,target=/gate \
         --mount=type=bind,source=shadow,target=/y cat /y\nCOPY shadow /copied\nRUN cat /copied\n",
            ),
            ("shadow", "benign-root\n"),
        ],
    );
    let moved = ctx.with_extension("moved");
    let c = ctx.clone();
    let o = build_swapping_in_between(&s, &ctx, move || {
        std::fs::rename(&c, &moved).unwrap();
        swap_for_symlink(&c, &host_dir);
    });
    let text = printed(&o);
    assert!(
        !text.contains(HOST_ONLY),
        "the host directory was read:\n{text}"
    );
    assert!(o.status.success(), "{text}");
    assert!(text.contains("benign-root"), "{text}");
}

/// A context file changed after the scan took its digest and before COPY reads it: the layer
/// would hold content its cache key does not describe, and a later build of the same key (by
/// another user of a shared build host, say) would be given it. The build fails instead, and
/// nothing is recorded under the key; the next build copies what the file now holds.
#[test]
fn a_context_file_changed_after_the_scan_never_enters_a_layer() {
    let Some(s) = ROOT.sandbox() else { return };
    for (n, changed) in ["f", "dir/g"].into_iter().enumerate() {
        let dockerfile = "FROM busybox\nRUN --mount=type=secret,id=gate,target=/gate true\nCOPY f dir /copied/\nRUN cat /copied/f /copied/g\n";
        let ctx = s.context(
            &format!("changed-after-scan-{n}"),
            &[
                ("Dockerfile", dockerfile),
                ("f", "scanned\n"),
                ("dir/g", "scanned-g\n"),
            ],
        );
        let path = ctx.join(changed);
        let o =
            build_swapping_in_between(&s, &ctx, move || std::fs::write(&path, "POISON\n").unwrap());
        let text = printed(&o);
        assert_eq!(o.status.code(), Some(1), "{text}");
        assert!(
            text.contains("changed in the build context while the build ran")
                && !text.contains("POISON\n"),
            "{text}"
        );
        // The next build scans the file as it is now and copies exactly that.
        let o = build_in(&s, &ctx, &["--secret", "id=gate,env=PATH"]);
        let text = printed(&o);
        assert!(o.status.success() && text.contains("POISON"), "{text}");
    }
}

/// A context directory bound into a RUN step shows the live context: a file written (or
/// replaced) after the scan took its digest is seen by the step, whose cache key describes
/// the scanned content. The step fails rather than leave a layer under that key; the next
/// build scans and keys what the context now holds.
#[test]
fn a_context_file_changed_under_a_live_bind_fails_the_step() {
    let Some(s) = ROOT.sandbox() else { return };
    for (n, how) in ["write", "replace"].into_iter().enumerate() {
        let ctx = s.context(
            &format!("live-bind-{n}"),
            &[
                (
                    "Dockerfile",
                    "FROM busybox\nRUN --mount=type=bind,source=d,target=/d \
             --mount=type=secret,id=gate,target=/gate cat /d/f > /seen\nRUN cat /seen\n",
                ),
                ("d/f", "scanned\n"),
            ],
        );
        let path = ctx.join("d/f");
        let o = build_swapping_in_between(&s, &ctx, move || match how {
            "write" => std::fs::write(&path, "POISON\n").unwrap(),
            _ => {
                let new = path.with_extension("new");
                std::fs::write(&new, "POISON\n").unwrap();
                std::fs::rename(&new, &path).unwrap();
            }
        });
        let text = printed(&o);
        assert_eq!(o.status.code(), Some(1), "{how}: {text}");
        assert!(text.contains(CONTEXT_CHANGED), "{how}: {text}");
        let o = build_in(&s, &ctx, &["--secret", "id=gate,env=PATH"]);
        assert!(
            o.status.success() && printed(&o).contains("POISON"),
            "{}",
            printed(&o)
        );
    }
}
