//! Paths on a step's or a container's tree stay inside that tree: real builds, as root, in
//! which a RUN step or an image plants symlinks to a host directory (a sentinel beside the
//! store) where berth later creates, removes or writes files. After each build the sentinel
//! must be exactly as it was. Also: a FIFO in the build context never blocks a build (it is
//! not part of the context).

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// Every entry under `dir` (relative path → kind and contents), not following symlinks.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                format!("file {:?}", std::fs::read_to_string(&p).unwrap_or_default())
            } else {
                "other".to_owned()
            };
            out.insert(rel, what);
        }
    }
    out
}

/// `<sandbox>/host`: a file with contents, empty files and empty directories named like the
/// stubs and mount points the tests use, so that a removal that leaves the tree shows.
fn sentinel(s: &Sandbox) -> (PathBuf, BTreeMap<String, String>) {
    let dir = s.path().join("host");
    for d in ["x", "y/z", "sub", "proc", "dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("keep"), "host-secret\n").unwrap();
    for f in ["f", "hosts", "hostname", "resolv.conf", "s"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    let before = tree(&dir);
    (dir, before)
}

/// Runs `berth ARGS`, killed after `limit` (a hang fails the test instead of hanging it).
fn run_with_timeout(s: &Sandbox, args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = s
        .cmd()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running berth");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "berth {args:?} still running after {limit:?} (killed):\n{}",
                printed(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A RUN step moves away the directories that hold its mount points and puts symlinks to a
/// host directory in their place; the cleanup of the mount stubs after the step must not
/// follow them (it removed the host's empty files and directories named like the stubs).
#[test]
fn mount_stub_cleanup_does_not_follow_symlinks_the_step_made() {
    let Some(s) = ROOT.sandbox() else { return };
    let (host, before) = sentinel(&s);
    let h = host.display();
    let dockerfile = format!(
        "FROM busybox\n\
         RUN --mount=type=tmpfs,target=/q/x --mount=type=secret,id=s,target=/r/s/t true\n\
         RUN test ! -e /q && test ! -e /r\n\
         RUN --mount=type=tmpfs,target=/d/x --mount=type=bind,source=f,target=/d/f \
         --mount=type=secret,id=s,target=/d/s --mount=type=tmpfs,target=/e/y/z \
         mv /d /d.moved && ln -s {h} /d && mv /e /e.moved && ln -s {h} /e\n"
    );
    let ctx = s.context(
        "stubs",
        &[("Dockerfile", &dockerfile), ("f", "context-file\n")],
    );
    let secret = s.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let o = s.run(&[
        "build",
        "--progress",
        "plain",
        "--secret",
        &format!("id=s,src={}", secret.display()),
        "-t",
        "paths:stubs",
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    assert_eq!(
        tree(&host),
        before,
        "the stub cleanup changed the host directory"
    );
    s.assert_clean();
}

/// The same with the stubs the runtime itself makes (`/etc/hosts`, ... in an image without
/// `/etc`): the step replaces `/etc` with a symlink to the host.
#[test]
fn runtime_stub_cleanup_does_not_follow_a_replaced_etc() {
    let Some(s) = ROOT.sandbox() else { return };
    let (host, before) = sentinel(&s);
    let h = host.display();
    let dockerfile = format!(
        "FROM busybox AS b\n\
         FROM scratch\n\
         COPY --from=b /bin /bin\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mv /etc /etc.moved && /bin/busybox ln -s {h} /etc\"]\n"
    );
    let ctx = s.context("etc", &[("Dockerfile", &dockerfile)]);
    let o = s.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "paths:etc",
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    assert_eq!(
        tree(&host),
        before,
        "the stub cleanup changed the host directory"
    );
    s.assert_clean();
}

/// A RUN step replaces the parent of a WORKDIR or a COPY destination with a symlink to a host
/// directory: WORKDIR and COPY then write inside the image (at the host path's name), never
/// on the host.
#[test]
fn workdir_and_copy_through_a_symlinked_parent_stay_in_the_image() {
    let Some(s) = ROOT.sandbox() else { return };
    let (host, before) = sentinel(&s);
    let h = host.display();
    let dockerfile = format!(
        "FROM busybox\n\
         RUN mkdir -p /app /dst && rm -rf /app /dst && ln -s {h} /app && ln -s {h}/sub /dst \
         && ln -s ../../../../../../../../..{h}/new /rel\n\
         WORKDIR /app/made-by-workdir\n\
         COPY f /app/\n\
         COPY f /dst/f2\n\
         COPY f rel-in-workdir\n\
         ADD f /rel/f3\n\
         COPY dir/ /app/sub/\n\
         RUN ls -la {h} {h}/sub {h}/new\n"
    );
    let ctx = s.context(
        "workdir",
        &[
            ("Dockerfile", &dockerfile),
            ("f", "from-context\n"),
            ("dir/g", "g\n"),
        ],
    );
    let o = s.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "paths:workdir",
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    assert_eq!(tree(&host), before, "WORKDIR or COPY wrote on the host");
    // Inside the image, everything landed under the host path's name.
    let listing = s.ok(&[
        "run",
        "--rm",
        "paths:workdir",
        "sh",
        "-c",
        &format!("cat {h}/f {h}/sub/f2 {h}/made-by-workdir/rel-in-workdir {h}/new/f3 {h}/sub/g"),
    ]);
    assert_eq!(listing, "from-context\n".repeat(4) + "g\n");
    s.assert_clean();
}

/// `--output type=local`: an image whose symlinks point at a host directory (absolute,
/// relative and climbing), exported into a DEST that already holds symlinks out of it. The
/// export writes the links as links and never through them.
#[test]
fn local_output_never_writes_through_symlinks() {
    let Some(s) = ROOT.sandbox() else { return };
    let (host, before) = sentinel(&s);
    let h = host.display();
    let dockerfile = format!(
        "FROM busybox\n\
         RUN ln -s {h} /abs && ln -s ../../../../../../../..{h} /climb && mkdir /d \
         && ln -s {h}/keep /d/keep && echo image > /x\n"
    );
    let ctx = s.context("export", &[("Dockerfile", &dockerfile)]);
    let dest = s.path().join("dest");
    std::fs::create_dir_all(dest.join("d")).unwrap();
    // Already in DEST: symlinks to the host where the image has a directory and files.
    std::os::unix::fs::symlink(&host, dest.join("bin")).unwrap();
    std::os::unix::fs::symlink(host.join("keep"), dest.join("x")).unwrap();
    std::os::unix::fs::symlink(&host, dest.join("abs")).unwrap();
    std::os::unix::fs::symlink(host.join("keep"), dest.join("d/keep")).unwrap();
    let o = s.run(&[
        "build",
        "--progress",
        "plain",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    assert_eq!(tree(&host), before, "the export wrote on the host");
    let got = tree(&dest);
    assert_eq!(got["abs"], format!("link {h}"));
    assert_eq!(got["d/keep"], format!("link {h}/keep"));
    assert_eq!(got["x"], "file \"image\\n\"");
    assert_eq!(got["bin"], "dir");
    assert!(got.contains_key("bin/busybox"));
}

/// A FIFO in the context is not part of the context (BuildKit's transfer never sends one):
/// `ADD` (which sniffs files for archives) and `COPY` of a directory holding one finish at
/// once without it, and naming it fails at once as not found; nothing ever opens it.
#[test]
fn a_fifo_in_the_context_never_blocks_add_or_copy() {
    let Some(s) = ROOT.sandbox() else { return };
    let dockerfile = "FROM busybox\nADD dir/ /dir/\nCOPY dir/ /dir2/\nCOPY . /ctx/\nRUN test -f /dir/f && test -f /dir2/f && ! test -e /dir/p && ! test -e /dir2/p && ! test -e /ctx/x.tar && ! test -e /ctx/dir/p\n";
    let ctx = s.context("fifo", &[("Dockerfile", dockerfile), ("dir/f", "f\n")]);
    for p in [ctx.join("x.tar"), ctx.join("dir/p")] {
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    }
    let o = run_with_timeout(
        &s,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "paths:fifo",
            ctx.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", printed(&o));
    for step in ["ADD x.tar /", "COPY x.tar /copied", "COPY dir/p /p"] {
        std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\n{step}\n")).unwrap();
        let o = run_with_timeout(
            &s,
            &["build", "--progress", "plain", ctx.to_str().unwrap()],
            Duration::from_secs(60),
        );
        assert!(!o.status.success(), "{step}: {}", printed(&o));
        assert!(printed(&o).contains("not found"), "{step}: {}", printed(&o));
    }
    // An image whose /etc/passwd is a FIFO: `--chown=NAME` reads it to find the user, and
    // fails at once instead of waiting on it.
    let dockerfile =
        "FROM busybox\nRUN rm /etc/passwd && mkfifo /etc/passwd\nCOPY --chown=nobody f /f\n";
    let ctx = s.context("fifo-passwd", &[("Dockerfile", dockerfile), ("f", "f\n")]);
    let o = run_with_timeout(
        &s,
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(!o.status.success(), "{}", printed(&o));
    assert!(
        std::fs::symlink_metadata(s.path().join("ctx-fifo/x.tar"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    s.assert_clean();
}

/// A stage (or an image) with a tree nested about 1,900 levels deep (paths still under
/// PATH_MAX): `COPY --from` copies it instead of overflowing the builder's stack.
#[test]
fn copy_from_a_very_deep_tree_does_not_crash() {
    let Some(s) = ROOT.sandbox() else { return };
    let dockerfile = "FROM busybox AS st\n\
         RUN mkdir /deep && cd /deep && i=0; while [ $i -lt 1900 ]; do mkdir d && cd d; i=$((i+1)); done; touch f\n\
         FROM busybox\n\
         COPY --from=st /deep /deep\n\
         RUN find /deep -name f | grep -c /f\n";
    let ctx = s.context("deep", &[("Dockerfile", dockerfile)]);
    let o = run_with_timeout(
        &s,
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
        Duration::from_secs(120),
    );
    assert!(o.status.success(), "{}", printed(&o));
    s.assert_clean();
}
