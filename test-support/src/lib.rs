//! Test support (dev-only): per-test sandboxes with their own store root, the test tiers
//! (what a test needs, and what it says when that is missing), a tiny base image made from
//! Debian's busybox-static (imported, never downloaded), a runner for the `berth` binary,
//! hand-made tar streams and images for hostile-input tests, and snapshot comparison with
//! digests, IDs, paths and times redacted.
//!
//! | item | for |
//! |---|---|
//! | [`Sandbox`] | a temp dir with `store/`; runs `berth --root <store>` |
//! | [`Tier`], [`needs_root`], [`needs`], [`skip`] | the tiers: a test that cannot run here says `skipped: needs …` (see [`tier`]) |
//! | [`busybox_rootfs`] | a rootfs directory with `/bin/busybox` and its applet links |
//! | [`RawTar`] | tar streams with any names and link targets (`../x`, `/etc/passwd`) |
//! | [`TallImage`] | an image of many layers, as blobs and as an OCI archive |
//! | [`redact`], [`assert_snapshot`] | stable CLI output comparisons (`BERTH_BLESS=1` rewrites) |
//! | [`printed`], [`assert_success`], [`tool`] | a command's output as text, or a failure; running skopeo, umoci |
//! | [`TestRegistry`] | a real `docker-registry` on a free 127.0.0.1 port: htpasswd, TLS, token auth |
//! | [`ScriptedServer`] | an HTTP server on 127.0.0.1 whose every [`Answer`] the test writes |
//! | [`guest::Guest`] | a Linux guest under qemu (pure cgroup v2), booted from Debian's kernel |
//!
//! No test reaches beyond 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod certs;
pub mod corpus;
pub mod dockerd;
pub mod guest;
pub mod host_stdio;
mod images;
pub mod netns;
pub mod proxy;
mod raw_tar;
pub mod registry;
pub mod rootless;
pub mod scripted;
pub mod tier;
pub mod tmux;
pub use images::TallImage;
pub use proxy::{Fault, FaultProxy, Recorder, Rewrite, RewritingProxy};
pub use raw_tar::RawTar;
pub use registry::{RegistryConfig, Served, TestRegistry};
pub use scripted::{Answer, ScriptedServer};
pub use tier::{Tier, is_root, needs, needs_root, rootless_capable, skip};
pub use tmux::Tmux;

/// The busybox-static binary from Debian.
pub const BUSYBOX: &str = "/bin/busybox";

/// A per-test directory holding a store root and scratch space; removed on drop.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Sandbox {
    /// A sandbox that runs the given `berth` binary (`env!("CARGO_BIN_EXE_berth")`).
    pub fn new(bin: impl Into<PathBuf>) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir_in(scratch_base())
            .expect("creating sandbox");
        Sandbox {
            dir,
            bin: bin.into(),
        }
    }

    /// This sandbox with the busybox image imported as `busybox`.
    pub fn with_busybox(self) -> Sandbox {
        self.import_busybox("busybox");
        self
    }

    /// This sandbox with its own directory open to every user (0755; tempfile makes it
    /// 0700, where a real store sits under /var/lib, 0755), so that only the store's own
    /// modes stand between another user and the store. `None` when a directory above it
    /// is closed to others, after [`skip`] said so: what another user cannot reach would
    /// prove nothing.
    #[track_caller]
    pub fn open_to_others(self) -> Option<Sandbox> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.path(), std::fs::Permissions::from_mode(0o755))
            .expect("opening the sandbox");
        let closed = self
            .path()
            .ancestors()
            .skip(1)
            .find(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 == 0));
        match closed {
            Some(d) => {
                skip(&format!(
                    "every directory above the sandbox searchable by others ({} is not)",
                    d.display()
                ));
                None
            }
            None => Some(self),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A `berth` command with `--root` set to this sandbox's store.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("BERTH_ROOT", self.store())
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.dir.path());
        c
    }

    /// A command for another tool (skopeo, umoci) that reads what berth wrote: rootless, run
    /// through `berth unshare`, in berth's user namespace, where the files' owners are the
    /// image's (as `podman unshare` serves rootless Podman's users).
    pub fn tool_cmd(&self, name: &str) -> Command {
        if is_root() {
            return Command::new(name);
        }
        let mut c = Command::new(&self.bin);
        c.args(["unshare", name]);
        c
    }

    /// Runs a tool through [`Sandbox::tool_cmd`] in the sandbox's directory, panicking unless
    /// it exits 0; returns its stdout.
    pub fn tool(&self, name: &str, args: &[&str]) -> String {
        let out = self
            .tool_cmd(name)
            .args(args)
            .current_dir(self.path())
            .output()
            .unwrap_or_else(|e| panic!("{name} is required ({e}); scripts/test installs it"));
        assert_success(&out, &format!("{name} {args:?}"))
    }

    /// Runs `berth ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running berth")
    }

    /// Runs `berth ARGS`, panicking with its output unless it exits 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        assert_success(&self.run(args), &format!("berth {args:?}"))
    }

    /// A build context, `<sandbox>/ctx-<name>`, holding `files` (path, contents), parent
    /// directories made; an empty directory when there are none. Returns its path.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join(format!("ctx-{name}"));
        std::fs::create_dir_all(&dir).expect("making the context");
        for (path, contents) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("a path in the context"))
                .expect("making the context");
            std::fs::write(p, contents).expect("writing the context");
        }
        dir
    }

    /// Imports the busybox rootfs as `name` and returns the image ID line.
    pub fn import_busybox(&self, name: &str) -> String {
        let rootfs = self.dir.path().join("busybox-rootfs");
        if !rootfs.exists() {
            busybox_rootfs(&rootfs);
        }
        self.ok(&[
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            rootfs.to_str().unwrap(),
            name,
        ])
        .trim()
        .to_owned()
    }

    /// The image ID (`Id` of `berth inspect`) of `name`.
    pub fn image_id(&self, name: &str) -> String {
        let out: serde_json::Value =
            serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect prints JSON");
        out[0]["Id"].as_str().expect("an Id").to_owned()
    }

    /// `berth system check` must report a clean store.
    pub fn assert_clean(&self) {
        let out = self.run(&["system", "check"]);
        assert!(
            out.status.success(),
            "store not clean:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Sandbox {
    /// Run rootless, the store holds files of subordinate owners that only berth's user
    /// namespace can remove: `berth unshare rm -rf` goes first, then the directory itself.
    fn drop(&mut self) {
        if !is_root() {
            let _ = Command::new(&self.bin)
                .args(["unshare", "rm", "-rf", "--"])
                .arg(self.dir.path())
                .env_remove("BERTH_ROOT")
                .output();
        }
    }
}

/// What a command printed: its stdout, then its stderr (for messages and searches).
pub fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics with `what` and everything the command printed unless it exited 0; returns its
/// stdout.
pub fn assert_success(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        printed(out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a tool `scripts/test` installs (skopeo, umoci) in `dir`, panicking unless it exits 0;
/// returns its stdout.
pub fn tool(name: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(name)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{name} is required ({e}); scripts/test installs it"));
    assert_success(&out, &format!("{name} {args:?}"))
}

/// Runs `cmd` with `input` on its stdin (stdout and stderr captured).
///
/// A command may exit before reading all of its stdin (it refused its arguments, or hit a
/// limit): the broken pipe that follows is not an error of the test's; what the command
/// printed and its exit status are what the caller checks.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning the command");
    let written = child.stdin.take().expect("piped").write_all(input);
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        panic!("writing stdin: {e}");
    }
    child.wait_with_output().expect("waiting for the command")
}

/// Container scripts shared by the cgroup tests, with what reads their output.
pub mod scripts {
    use super::Sandbox;

    /// Starts 60 background sleeps, then prints how many processes the container has.
    pub const FORK_BOMB: &str = "sh -c 'for i in $(seq 1 60); do sleep 3 & done' 2>/dev/null; \
         n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n";

    /// Spins about 3 s on shell builtins (no child processes), then prints the shell's own
    /// CPU ticks (utime, stime) and the wall time before and after from /proc/uptime.
    pub const SPIN: &str = "read a _ < /proc/uptime; end=$(( ${a%.*} + 3 )); while :; do \
         read u _ < /proc/uptime; [ ${u%.*} -ge $end ] && break; done; read b _ < /proc/uptime; \
         set -- $(cut -d' ' -f14,15 /proc/$$/stat); echo $1 $2 $a $b";

    /// Runs [`FORK_BOMB`] in `berth run --pids-limit LIMIT` on the sandbox's busybox image;
    /// returns the processes it counted.
    pub fn fork_bomb_under(s: &Sandbox, limit: &str) -> usize {
        let out = s.run(&[
            "run",
            "--rm",
            "--pids-limit",
            limit,
            "busybox",
            "sh",
            "-c",
            FORK_BOMB,
        ]);
        process_count(&out.stdout)
    }

    /// The number [`FORK_BOMB`] printed last.
    pub fn process_count(stdout: &[u8]) -> usize {
        String::from_utf8_lossy(stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or("0")
            .trim()
            .parse()
            .expect("a count")
    }

    /// The share of a core [`SPIN`] used: CPU seconds over wall seconds.
    pub fn cpu_share(stdout: &str) -> f64 {
        let v: Vec<f64> = stdout
            .split_whitespace()
            .map(|t| t.parse().expect("numbers"))
            .collect();
        ((v[0] + v[1]) / 100.0) / (v[3] - v[2])
    }
}

/// Where sandboxes live: `BERTH_TEST_TMP` or the system temp dir.
fn scratch_base() -> PathBuf {
    std::env::var_os("BERTH_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Makes a minimal rootfs at `dir`: busybox-static with a link per applet, `/etc/passwd`,
/// `/etc/group`, and the usual empty directories.
pub fn busybox_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
    for d in [
        "bin", "etc", "tmp", "root", "proc", "sys", "dev", "home", "var",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
}

/// Replaces what changes between runs: digests, image IDs, RFC 3339 times, ages, the
/// sandbox path; and collapses table padding, which follows the widths of those values.
pub fn redact(text: &str, sandbox: &Path) -> String {
    let mut s = text.replace(&sandbox.display().to_string(), "[SANDBOX]");
    let rules = [
        (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
        (r"\b[0-9a-f]{64}\b", "[HEX]"),
        (r"\b[0-9a-f]{12}\b", "[ID]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]"),
        (
            r"(Less than a second|About a minute|About an hour|\d+ (seconds?|minutes?|hours?|days?|weeks?|months?|years?)) ago",
            "[AGE]",
        ),
        // Column padding follows the widths of the values redacted above: collapse it.
        (r" {2,}", "  "),
    ];
    for (pattern, with) in rules {
        s = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&s, with)
            .into_owned();
    }
    s
}

/// Compares `actual` with `testdata/snapshots/<name>.txt` at the workspace root; with
/// `BERTH_BLESS=1` writes it instead.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = workspace_root()
        .join("testdata/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with BERTH_BLESS=1 to write it",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "snapshot {name} differs (BERTH_BLESS=1 rewrites it)"
    );
}

/// The workspace root (the directory holding the top Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Deterministic incompressible bytes (xorshift64), for big test files and benchmarks.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Serves each connection `listener` accepts on a thread of its own, with `handle`, until
/// the test process ends.
fn serve_each(
    listener: std::net::TcpListener,
    handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
) {
    let handle = std::sync::Arc::new(handle);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || handle(conn));
        }
    });
}
