//! Red-team round 2: each test here fails on 9923fe7 (main when attacked) and shows a hole
//! that is still open after issue 17's fixes and the first red-team round. One test per
//! finding; the report names the line at fault and a fix.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

// ---------------------------------------------------------------------------------------
// `.dockerignore` is bypassed by a symlink named as a COPY/ADD source.

/// A file `.dockerignore` excludes does not exist for the build (SECURITY.md, "The build
/// context is exactly what `.dockerignore` leaves"). A symlink that *is* included and points
/// at it (`e -> .env`, `g -> .git/config`, committed by a pull request) makes COPY resolve
/// the source to the ignored file and copy it: `Src::Path` canonicalises the source and
/// `copy_entry` never asks whether the resolved path is included. In BuildKit the ignored
/// file is never sent, so the symlink dangles and COPY fails. Here `.git/config` stands
/// for the token `actions/checkout` leaves there.
#[test]
fn a_symlink_source_does_not_copy_a_file_dockerignore_excludes() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ignored", &[]);
    std::fs::create_dir_all(ctx.join(".git")).unwrap();
    std::fs::write(
        ctx.join(".git/config"),
        "[http] extraheader = AUTHORIZATION: basic GIT-TOKEN-4242\n",
    )
    .unwrap();
    std::fs::write(ctx.join(".env"), "API_KEY=DOTENV-SECRET-4242\n").unwrap();
    std::fs::write(ctx.join(".dockerignore"), ".git\n.env\n").unwrap();
    std::os::unix::fs::symlink(".env", ctx.join("e")).unwrap();
    std::os::unix::fs::symlink(".git/config", ctx.join("g")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY e /e\nADD g /g\nRUN cat /e /g || true\n",
    )
    .unwrap();
    let o = s.run(&[
        "build",
        "--no-cache",
        "--progress",
        "plain",
        "-t",
        "ign",
        ctx.to_str().unwrap(),
    ]);
    let t = printed(&o);
    assert!(
        !t.contains("DOTENV-SECRET-4242") && !t.contains("GIT-TOKEN-4242"),
        "a file .dockerignore excludes entered the build through a symlink:\n{t}"
    );
}

// ---------------------------------------------------------------------------------------
// The cache key of COPY describes a symlink, the layer holds what it points at.

/// `COPY src/ /app/` with `src -> real` (and `COPY lf /lf` with `lf -> realfile`): the key
/// is the digest of the entries the *pattern* selects (`plan::select`), which is the symlink
/// alone, while the copy follows it. Changing `real/f` does not change the key, so the
/// layer is reused with the old content. On a shared CI builder, a pull request's build
/// (with its own `real/f`) records the layer first and the next trusted build of the same
/// Dockerfile ships the pull request's files: the cache-poisoning class the context-scan
/// fix closed for files changed during a build. BuildKit keys a COPY source by the content
/// it resolves to.
#[test]
fn the_cache_key_of_a_symlinked_copy_source_covers_what_it_points_at() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("cache", &[]);
    std::fs::create_dir_all(ctx.join("real")).unwrap();
    std::fs::write(ctx.join("real/f"), "PR-CONTENT\n").unwrap();
    std::fs::write(ctx.join("realfile"), "PR-CONTENT\n").unwrap();
    std::os::unix::fs::symlink("real", ctx.join("src")).unwrap();
    std::os::unix::fs::symlink("realfile", ctx.join("lf")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY src/ /app/\nCOPY lf /lf\n",
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", "pr", ctx.to_str().unwrap()]);
    // The trusted build: same Dockerfile, same symlinks, its own files.
    std::fs::write(ctx.join("real/f"), "TRUSTED\n").unwrap();
    std::fs::write(ctx.join("realfile"), "TRUSTED\n").unwrap();
    s.ok(&["build", "-q", "-t", "main", ctx.to_str().unwrap()]);
    let o = s.ok(&["run", "--rm", "main", "cat", "/app/f", "/lf"]);
    assert_eq!(
        o, "TRUSTED\nTRUSTED\n",
        "the trusted build reused the layers of the earlier build (cache key covers the symlink only)"
    );
}

// ---------------------------------------------------------------------------------------
// Output archives are written through a predictable temporary name.

/// `--output type=oci,dest=DIR/out.tar` (and `save -o`) writes `DIR/.out.tar.berth-tmp`
/// with `File::create` (follows symlinks, truncates, reuses another user's file) and then
/// renames it over the destination. Another local user who can write DIR (`/tmp`, a shared
/// CI workspace) plants that name as a symlink to any file: root truncates it and writes
/// the archive into it (here a 0600 root file outside DIR). Planted as a regular file of
/// theirs instead, they own the final archive and can change it after the build. Docker
/// writes through a random `os.CreateTemp` name.
#[test]
fn an_output_archive_is_not_written_through_a_planted_temporary_name() {
    let Some(s) = ROOT.sandbox() else { return };
    let shared = s.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    // A directory another user may write (no sticky bit: as a group-shared workspace).
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let victim = s.path().join("victim");
    std::fs::write(&victim, "root's file\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let planted = shared.join(".out.tar.berth-tmp");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    let ctx = s.context("out", &[]);
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo x > /x\n").unwrap();
    let dest = shared.join("out.tar");
    let _ = s.run(&[
        "build",
        "-q",
        "-o",
        &format!("type=oci,dest={}", dest.display()),
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap_or_default(),
        "root's file\n",
        "berth wrote the archive through another user's symlink"
    );

    // `save -o`: a regular file planted by the other user becomes the archive, theirs.
    let planted = shared.join(".saved.tar.berth-tmp");
    std::fs::write(&planted, "").unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let saved = shared.join("saved.tar");
    let _ = s.run(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    let meta = std::fs::symlink_metadata(&saved).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        meta.uid(),
        0,
        "the saved archive is a file another user owns (and may rewrite)"
    );
}

// ---------------------------------------------------------------------------------------
// ADD of an .xz file is decompressed to disk without bound.

/// `ADD bomb.xz /b`: `is_archive` (and `extract`) decode an xz stream entirely into a
/// scratch file (`unpacked_stream`, `lzma_rs::xz_decompress` into `xz-decoded`) before
/// looking at its first 512 bytes; no bound applies (`BERTH_MAX_LAYER_SIZE` is ignored). xz
/// packs zeros about 6,700:1 (3 GiB in 470 KB), so a 10 MB context file fills ~64 GiB of
/// the store's disk. Here: 200 MiB of zeros under a 10 MB layer limit, with berth's file
/// size limited to 64 MiB (a bounded berth never writes a file that large for this build).
#[test]
fn an_xz_bomb_in_add_is_bounded() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("xz", &[]);
    let status = Command::new("sh")
        .arg("-c")
        .arg("head -c 209715200 /dev/zero | xz -1 -T1 > bomb.xz")
        .current_dir(&ctx)
        .status()
        .expect("xz");
    assert!(status.success());
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD bomb.xz /b\n").unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--fsize={}", 64 << 20))
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["build", "--no-cache", "--progress", "plain"])
        .arg(&ctx)
        .env("BERTH_ROOT", s.store())
        .env("BERTH_MAX_LAYER_SIZE", "10000000");
    let o = cmd.output().expect("prlimit (util-linux)");
    use std::os::unix::process::ExitStatusExt;
    assert_ne!(
        o.status.signal(),
        Some(libc_sigxfsz()),
        "berth wrote a file over 64 MiB for a 10 MB layer limit (xz decoded to disk without bound):\n{}",
        printed(&o)
    );
}

/// The same bomb as a tar (`ADD bomb.tar.xz /b/`): unpacking reads the decoder as it goes,
/// so it stops at the layer limit with an error naming it, having written no file near
/// the bomb's size.
#[test]
fn an_xz_tar_bomb_in_add_stops_at_the_layer_limit() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("xztar", &[]);
    let status = Command::new("sh")
        .arg("-c")
        .arg(
            "mkdir d && head -c 209715200 /dev/zero > d/zeros && tar -cf - d | xz -1 -T1 > bomb.tar.xz && rm -r d",
        )
        .current_dir(&ctx)
        .status()
        .expect("xz");
    assert!(status.success());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nADD bomb.tar.xz /b/\n",
    )
    .unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--fsize={}", 64 << 20))
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["build", "--no-cache", "--progress", "plain"])
        .arg(&ctx)
        .env("BERTH_ROOT", s.store())
        .env("BERTH_MAX_LAYER_SIZE", "10000000");
    let o = cmd.output().expect("prlimit (util-linux)");
    use std::os::unix::process::ExitStatusExt;
    assert_ne!(o.status.signal(), Some(libc_sigxfsz()), "{}", printed(&o));
    assert!(!o.status.success(), "{}", printed(&o));
    assert!(printed(&o).contains("10000000"), "{}", printed(&o));
}

fn libc_sigxfsz() -> i32 {
    nix::sys::signal::Signal::SIGXFSZ as i32
}

// ---------------------------------------------------------------------------------------
// A RUN step's output line is held whole in berth's memory.

/// The builder splits a step's output on `\n` (`BufReader::split`), so a step that writes
/// without a newline makes berth hold the whole line, then copy it three times (lossy UTF-8,
/// the tail, the event): 400 MB of output took berth to 1.58 GB resident. A step printing
/// a few GB without a newline gets berth itself OOM-killed. BuildKit clips a step's log at
/// 2 MiB. Here 128 MiB of output must not make berth grow by more than 64 MiB.
#[test]
fn a_step_output_line_without_newline_is_not_held_in_memory() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("line", &[]);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN head -c 134217728 /dev/zero | tr '\\0' a\n",
    )
    .unwrap();
    let mut child = s
        .cmd()
        .args(["build", "--no-cache", "--progress", "plain"])
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kb = 0u64;
    let start = Instant::now();
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        peak_kb < 192 * 1024,
        "berth reached {} MiB resident for a 128 MiB output line",
        peak_kb / 1024
    );
}

// ---------------------------------------------------------------------------------------
// A token server's `expires_in` panics berth.

/// A registry (any `FROM` names one) whose token service answers `expires_in:
/// 18446744073709551615`: `Instant::now() + Duration::from_secs(secs - secs / 10)`
/// (registry-client/src/client.rs, `fetch_token`) overflows and berth panics (exit 101)
/// instead of failing with an error.
#[test]
fn a_huge_token_lifetime_does_not_panic() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(20) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut auth = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                auth |= h.to_ascii_lowercase().starts_with("authorization:");
            }
            let (status, headers, body) = if request.contains("/token") {
                (
                    "200 OK",
                    String::new(),
                    r#"{"token":"t","expires_in":18446744073709551615}"#.to_owned(),
                )
            } else if !auth {
                (
                    "401 Unauthorized",
                    format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"x\"\r\n"
                    ),
                    "{}".to_owned(),
                )
            } else {
                ("404 Not Found", String::new(), "{}".to_owned())
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let o = s.run(&["pull", &format!("127.0.0.1:{port}/x:1")]);
    assert_ne!(
        o.status.code(),
        Some(101),
        "berth panicked on a token response:\n{}",
        printed(&o)
    );
    assert!(!printed(&o).contains("panicked"), "{}", printed(&o));
}

// ---------------------------------------------------------------------------------------
// A RUN step's terminal escapes reach the terminal in plain progress and -q failures.

/// The tty view passes each output line through `terminal_safe`; `--progress plain`
/// (`Plain::event`, `Event::Output`) and the tail printed when a `-q` build fails do not:
/// a step's ESC sequences (window title, screen clear, OSC 52 clipboard writes) reach the
/// user's terminal.
#[test]
fn a_step_cannot_send_escapes_to_the_terminal() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("esc", &[]);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN printf 'A\\033]0;PWNED\\007\\033[2J\\n'; exit 3\n",
    )
    .unwrap();
    for progress in [&["--progress", "plain"][..], &["-q"][..]] {
        let mut args = vec!["build", "--no-cache"];
        args.extend_from_slice(progress);
        args.push(ctx.to_str().unwrap());
        let o = s.run(&args);
        let mut all = o.stdout.clone();
        all.extend_from_slice(&o.stderr);
        assert!(
            !all.contains(&0x1b) && !all.contains(&0x07),
            "{progress:?}: a step's escape sequences were printed raw: {:?}",
            String::from_utf8_lossy(&all)
        );
    }
}
