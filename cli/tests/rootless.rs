//! Rootless berth against root's: the same Dockerfiles give the same image digests, root in a
//! container (all a setuid program in an image can gain) is the user on the host, and a user without subordinate ids is told
//! what will not work. Run as root, which runs `berth` as the unprivileged user
//! `berth-rootless` (`scripts/test-rootless --setup` makes it); the container suites
//! themselves run a second time as that user in `scripts/test-rootless`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use berth_test_support::corpus::{self, Kind};
use berth_test_support::rootless::RootlessUser;
use berth_test_support::{Sandbox, Tier, assert_success, printed};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const ROOT: Tier = Tier::containers(BIN);

/// Builds the same contexts are built with.
const EPOCH: (&str, &str) = ("SOURCE_DATE_EPOCH", "1700000000");

/// Root's busybox, saved and loaded into the user's store: both build on the same image.
fn share_busybox(s: &Sandbox, user: &RootlessUser) {
    let archive = user.path().join("busybox.tar");
    s.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    user.give(&archive);
    let out = user
        .berth(&[])
        .args(["load", "-i", "busybox.tar"])
        .output()
        .unwrap();
    assert_success(&out, "rootless load");
}

fn image_id(out: &std::process::Output, what: &str) -> String {
    let text = assert_success(out, what);
    text.lines().last().unwrap_or_default().trim().to_owned()
}

/// The examples, and the corpus cases that set owners, modes, users or whiteouts (where a
/// rootless store could differ), built as root and rootless: one digest each.
#[test]
fn the_same_dockerfiles_give_the_same_digests_rootless_and_as_root() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    share_busybox(&s, &user);
    same_digests(&s, &user, &[], &[]);
}

/// The examples and the corpus cases of owners, modes and whiteouts, built as root and
/// rootless with `env` besides SOURCE_DATE_EPOCH: the same digest each, but the cases of
/// `known`, which must differ.
fn same_digests(
    s: &berth_test_support::Sandbox,
    user: &RootlessUser,
    env: &[(&str, &str)],
    known: &[&str],
) {
    let mut rootless_env = vec![EPOCH];
    rootless_env.extend_from_slice(env);
    let mut contexts: Vec<(String, std::path::PathBuf)> = ["hello", "multistage"]
        .iter()
        .map(|n| {
            let ctx = user.path().join(format!("example-{n}"));
            let src = berth_test_support::workspace_root()
                .join("testdata/examples")
                .join(n);
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&ctx)
                .status()
                .unwrap();
            assert!(status.success());
            (format!("example {n}"), ctx)
        })
        .collect();
    for case in corpus::cases(&[]) {
        let dockerfile = std::fs::read_to_string(case.dir.join("Dockerfile")).unwrap();
        let owners = ["chown", "USER", "ADD", "chmod", "whiteout", "rm -"]
            .iter()
            .any(|w| dockerfile.contains(w));
        if case.kind == Kind::Builds && owners {
            contexts.push((case.name.clone(), case.prepare(&user.path().join("corpus"))));
        }
    }
    user.give(user.path());
    let mut compared = 0;
    let mut differ = Vec::new();
    let mut unmapped = Vec::new();
    for (name, ctx) in &contexts {
        let root = s
            .cmd()
            .env(EPOCH.0, EPOCH.1)
            .args(["build", "-q", "--no-cache"])
            .arg(ctx)
            .output()
            .unwrap();
        // A case that needs a base this sandbox lacks (a registry's) is not compared.
        if !root.status.success() {
            continue;
        }
        let rootless = user
            .berth(&rootless_env)
            .args(["build", "-q", "--no-cache"])
            .arg(ctx)
            .output()
            .unwrap();
        // An owner past the user's subordinate ids cannot be given rootless: berth says so
        // plainly (COPY --chown), a step's own chown gets EINVAL.
        let text = printed(&rootless);
        if text.contains("has no id in berth's user namespace")
            || text.contains("chown: /o/c: Invalid argument")
        {
            unmapped.push(name.clone());
            continue;
        }
        let (a, b) = (
            image_id(&root, &format!("root build of {name}")),
            image_id(&rootless, &format!("rootless build of {name}")),
        );
        if (a != b) != known.contains(&name.as_str()) {
            differ.push(format!("{name}: root {a}, rootless {b}"));
        }
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} contexts built as root");
    // The cases whose owners (2^31 - 1, 2^32 - 2) no subordinate range reaches.
    assert_eq!(
        unmapped,
        ["copy-chown-huge-id", "modes-owners"],
        "refused rootless for their owners"
    );
    assert!(
        differ.is_empty(),
        "digests differ (or do not, where known to: {known:?}):\n{}",
        differ.join("\n")
    );
}

/// Root inside a rootless container, which is the most a setuid-root program in an image can
/// make itself, is the user on the host: what it writes to a bound directory belongs to the
/// user, and a root-only host file there stays unreadable.
#[test]
fn root_in_a_rootless_container_is_the_user_on_the_host() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    share_busybox(&s, &user);
    let shared = user.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret = shared.join("root-only");
    std::fs::write(&secret, "host secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bind = format!("{}:/shared", shared.display());
    let out = user
        .berth(&[])
        .args(["run", "--rm", "--pull", "never", "-v", &bind, "busybox", "sh", "-c"])
        .arg("id -u; touch /shared/made; chmod 4755 /shared/made; cat /shared/root-only; echo cat=$?")
        .output()
        .unwrap();
    let text = printed(&out);
    assert!(text.starts_with("0\n"), "root inside: {text}");
    assert!(!text.contains("host secret"), "{text}");
    assert!(text.contains("cat=1"), "{text}");
    let made = std::fs::metadata(shared.join("made")).expect("the file root inside made");
    assert_eq!(
        made.uid(),
        user.uid,
        "made as the user on the host, not root"
    );
    assert_eq!(made.mode() & 0o4000, 0o4000, "setuid, but to the user");
}

/// Without subordinate ids, berth maps the user alone and says what will not work; builds
/// that keep to root's files still run.
#[test]
fn a_user_without_subordinate_ids_is_warned_and_builds_what_it_can() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    share_busybox(&s, &user);
    let ctx = user.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo ok > /ok\n").unwrap();
    user.give(&ctx);
    // A PATH without newuidmap stands for a machine without subordinate ids: berth maps
    // only the user (the ranges need the helper).
    let mut cmd = user.berth(&[("PATH", "/nonexistent")]);
    cmd.args(["build", "-t", "single", "ctx"]);
    let out = cmd.output().unwrap();
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("newuidmap and newgidmap are not installed")
            && text.contains("a chown to another id fails"),
        "{text}"
    );
}

/// A network namespace the test makes, with a server on an address of its own (10.210.0.1:8080,
/// standing for the outside) and one on its loopback (127.0.0.1:8081, standing for the
/// host's): rootless berth runs inside it, so slirp4netns's outbound traffic stays there.
struct TestNet {
    name: String,
    servers: Vec<std::process::Child>,
}

impl TestNet {
    fn start(www: &std::path::Path) -> TestNet {
        // One per test: tests of one process run at once.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "berth-slirp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .unwrap();
            assert_success(&out, &format!("ip {args:?}"));
        };
        ip(&["netns", "add", &name]);
        let net = TestNet {
            name: name.clone(),
            servers: Vec::new(),
        };
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.210.0.1/32", "dev", "lo"],
        ] {
            ip(&[&["-n", &name][..], args].concat());
        }
        let mut net = net;
        for at in ["10.210.0.1:8080", "127.0.0.1:8081"] {
            let child = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &name, "busybox", "httpd", "-f", "-p", at, "-h",
                ])
                .arg(www)
                .spawn()
                .unwrap();
            net.servers.push(child);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        net
    }

    /// `cmd` (berth as the user) run inside the namespace.
    fn inside(&self, cmd: &std::process::Command) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.name])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        c
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Rootless, `run --network slirp4netns` and a build's RUN steps (slirp4netns is their
/// default rootless) reach a server outside, and never the host's loopback through the
/// gateway.
#[test]
fn slirp4netns_reaches_out_but_never_the_hosts_loopback() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    if !berth_test_support::needs(
        "slirp4netns (scripts/test installs it)",
        std::path::Path::new("/usr/bin/slirp4netns").exists(),
    ) {
        return;
    }
    share_busybox(&s, &user);
    let www = user.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("outside.txt"), "from outside\n").unwrap();
    user.give(&www);
    let net = TestNet::start(&www);
    // busybox's nc (its static wget crashes on a refused connection).
    let fetch = "printf 'GET /outside.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.210.0.1 8080 | tail -n 1; \
                 nc -w 3 10.0.2.2 8081 </dev/null && echo reached-host-loopback || echo no-host-loopback";
    let mut run = user.berth(&[]);
    run.args([
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "slirp4netns",
        "busybox",
        "sh",
        "-c",
        fetch,
    ]);
    let out = net.inside(&run).output().unwrap();
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from outside\nno-host-loopback\n",
        "{text}"
    );
    // A build's RUN step, with the build's default network.
    let ctx = user.path().join("netctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nRUN ({fetch}) > /fetched\n"),
    )
    .unwrap();
    user.give(&ctx);
    let mut build = user.berth(&[]);
    build.args(["build", "-t", "net", "netctx"]);
    let out = net.inside(&build).output().unwrap();
    assert_success(&out, "rootless build with a network");
    let mut cat = user.berth(&[]);
    cat.args(["run", "--rm", "--pull", "never", "net", "cat", "/fetched"]);
    let out = cat.output().unwrap();
    assert_eq!(
        assert_success(&out, "run"),
        "from outside\nno-host-loopback\n"
    );
}

/// Rootless, `-p` is published through slirp4netns's API (`add_hostfwd`): a detached httpd
/// answers on the host's port; a second container asking for the same port is refused with
/// slirp4netns's error; a bridge network is refused with what to use instead.
#[test]
fn rootless_publishes_ports_through_slirp4netns() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    if !berth_test_support::needs(
        "slirp4netns and curl (scripts/test installs them)",
        std::path::Path::new("/usr/bin/slirp4netns").exists()
            && std::path::Path::new("/usr/bin/curl").exists(),
    ) {
        return;
    }
    share_busybox(&s, &user);
    let www = user.path().join("www-p");
    std::fs::create_dir_all(&www).unwrap();
    let net = TestNet::start(&www);
    let berth = |args: &[&str]| {
        let mut c = user.berth(&[]);
        c.args(args);
        net.inside(&c).output().unwrap()
    };
    let out = berth(&[
        "run",
        "-d",
        "--pull",
        "never",
        "--name",
        "pub",
        "--network",
        "slirp4netns",
        "-p",
        "127.0.0.1:18090:80",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo hello-rootless > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    assert_success(&out, "rootless run -d -p");
    let mut page = String::new();
    for _ in 0..50 {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &net.name, "curl", "-s", "--max-time", "2"])
            .arg("http://127.0.0.1:18090/")
            .output()
            .unwrap();
        page = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(page, "hello-rootless\n");
    let clash = berth(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "slirp4netns",
        "-p",
        "127.0.0.1:18090:80",
        "busybox",
        "true",
    ]);
    assert!(!clash.status.success(), "{}", printed(&clash));
    assert!(printed(&clash).contains("18090"), "{}", printed(&clash));
    let bridge = berth(&[
        "run", "--rm", "--pull", "never", "-p", "8080:80", "busybox", "true",
    ]);
    assert!(!bridge.status.success());
    assert!(
        printed(&bridge).contains("slirp4netns"),
        "{}",
        printed(&bridge)
    );
    assert_success(&berth(&["rm", "-f", "pub"]), "rm -f");
}

/// `berth info` tells a rootless user what the machine gives it, and what is missing.
#[test]
fn info_shows_the_rootless_mapping_and_what_is_missing() {
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    let info = |env: &[(&str, &str)]| -> serde_json::Value {
        let out = user
            .berth(env)
            .args(["info", "--format", "json"])
            .output()
            .unwrap();
        serde_json::from_str(&assert_success(&out, "info")).expect("JSON")
    };
    let v = info(&[]);
    assert_eq!(v["Rootless"], true, "{v}");
    let mapping = v["IDMapping"].as_str().unwrap();
    assert!(
        mapping.starts_with(&format!("uids 0 → {} (1), 1 → ", user.uid)),
        "{mapping}"
    );
    assert_eq!(v["Newuidmap"], "/usr/bin/newuidmap");
    assert!(v["Cgroups"].as_str().unwrap().starts_with("none"), "{v}");
    assert!(v["Overlay"].as_str().unwrap().starts_with("native"), "{v}");
    assert!(v["Proc"].as_str().unwrap().starts_with("unmasked"), "{v}");
    // Without the helpers on PATH: the user alone, and what to install.
    let v = info(&[("PATH", "/nonexistent")]);
    assert!(
        v["IDMapping"].as_str().unwrap().starts_with("single id"),
        "{v}"
    );
    assert_eq!(v["Newuidmap"], "missing: install uidmap");
    assert!(
        v["Network"]
            .as_str()
            .unwrap()
            .contains("install slirp4netns"),
        "{v}"
    );
}

/// The variable a rootless berth sets once inside its user namespace means nothing outside
/// one: root with it set by hand is still root (its limits enforced, its store
/// `/var/lib/berth`), and a user with it set still enters the namespace.
#[test]
fn the_rootless_marker_is_not_trusted_outside_a_user_namespace() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    let out = s
        .cmd()
        .env("_BERTH_USERNS", "1000:1000")
        .args([
            "run", "--rm", "--pull", "never", "--memory", "64m", "busybox", "true",
        ])
        .output()
        .unwrap();
    let text = printed(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("not enforced"),
        "root's limits stay enforced: {text}"
    );
    // Nor does root describe itself as rootless (whose store would be under HOME).
    let out = s
        .cmd()
        .env("_BERTH_USERNS", "1000:1000")
        .args(["info", "--format", "{{.Rootless}}"])
        .output()
        .unwrap();
    assert_eq!(printed(&out).trim(), "false", "{}", printed(&out));
    // A user who sets it still enters the namespace: root inside.
    share_busybox(&s, &user);
    let out = user
        .berth(&[("_BERTH_USERNS", "0:0")])
        .args(["run", "--rm", "--pull", "never", "busybox", "id", "-u"])
        .output()
        .unwrap();
    assert_eq!(
        assert_success(&out, "rootless run with the marker set"),
        "0\n"
    );
}

/// A RUN step that writes overlayfs's own xattrs (`user.overlay.opaque`, `.redirect`) in a
/// rootless build, where overlays are mounted with `userxattr` and read those names: the
/// kernel stores them escaped in the step's upper directory, so neither the next step (over
/// that directory as a lower) nor the layer (no opaque whiteout) hides the lower files.
#[test]
fn a_rootless_run_step_cannot_steer_overlayfs_with_user_overlay_xattrs() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    share_busybox(&s, &user);
    let ctx = user.path().join("xattr-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let src = berth_test_support::workspace_root().join("testdata/probes/xattr.rs");
    let o = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(ctx.join("xattr"))
        .arg(&src)
        .output()
        .expect("rustc");
    assert!(o.status.success(), "{}", printed(&o));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\n\
         RUN mkdir -p /d/sub && echo lower > /d/keep && echo lower > /d/sub/keep\n\
         COPY xattr /xattr\n\
         RUN for n in opaque redirect; do /xattr set /d user.overlay.$n y; \
             /xattr set /d/sub user.overlay.$n y; done; echo set\n\
         RUN cat /d/keep /d/sub/keep > /seen\n\
         RUN cat /seen\n",
    )
    .unwrap();
    user.give(&ctx);
    let out = user
        .berth(&[])
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "-t",
            "steer",
            "xattr-ctx",
        ])
        .output()
        .unwrap();
    let text = assert_success(&out, "rootless build");
    assert!(
        text.contains("lower\n") || printed(&out).contains("lower"),
        "{}",
        printed(&out)
    );
    let archive = user.path().join("steer.tar");
    let out = user
        .berth(&[])
        .args(["save", "-o", "steer.tar", "steer"])
        .output()
        .unwrap();
    assert_success(&out, "rootless save");
    let mut names = Vec::new();
    let mut outer = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        // Layers leave the store gzip-compressed.
        if data.starts_with(&[0x1f, 0x8b]) {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut raw)
                .unwrap();
            data = raw;
        }
        let mut inner = tar::Archive::new(&data[..]);
        let Ok(entries) = inner.entries() else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(p) = e.path() {
                names.push(p.display().to_string());
            }
        }
    }
    assert!(names.iter().any(|n| n == "d/keep"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains(".wh.")),
        "no whiteout in any layer: {names:?}"
    );
}

/// fuse-overlayfs, when installed: the program `BERTH_MOUNT_PROGRAM` forces in the tests
/// below (this kernel mounts overlayfs in a user namespace, so the fallback is never taken on
/// its own here).
fn fuse_overlayfs() -> Option<&'static str> {
    const PROGRAM: &str = "/usr/bin/fuse-overlayfs";
    berth_test_support::needs("fuse-overlayfs", std::path::Path::new(PROGRAM).exists())
        .then_some(PROGRAM)
}

/// Held by the tests that count the user's fuse-overlayfs daemons and every fuse-overlayfs
/// mount, which would see each other's.
static FUSE_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The fuse-overlayfs daemons running as `uid` (on the host), by PID.
fn fuse_daemons(uid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let name = status.lines().next().unwrap_or_default();
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if name.ends_with("fuse-overlayfs") && owner == Some(uid) {
            found.push(pid);
        }
    }
    found
}

/// fuse-overlayfs mounts in any process's mount namespace on the machine.
fn fuse_mounts() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let info = std::fs::read_to_string(entry.path().join("mountinfo")).unwrap_or_default();
        found.extend(
            info.lines()
                .filter(|l| l.contains(" fuse.fuse-overlayfs "))
                .map(str::to_owned),
        );
    }
    found.sort();
    found.dedup();
    found
}

/// Waits up to 10 s for the user's fuse-overlayfs daemons and mounts to be gone.
fn assert_nothing_left(uid: u32, after: &str) {
    let start = std::time::Instant::now();
    loop {
        let (daemons, mounts) = (fuse_daemons(uid), fuse_mounts());
        if daemons.is_empty() && mounts.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "after {after}: fuse-overlayfs daemons {daemons:?}, mounts {mounts:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The user's id on the host, from a file the user made.
fn uid_of(user: &RootlessUser) -> u32 {
    std::fs::metadata(user.path()).unwrap().uid()
}

/// A context of RUN steps that delete a file of a lower layer, replace a directory (opaque),
/// make new directories and chown files, with a COPY between them (a view).
const FUSE_CONTEXT: &str = "FROM busybox\n\
     RUN mkdir -p /d/sub /e /o && echo a > /d/a && echo b > /d/sub/b && echo x > /e/x \
         && echo y > /e/y && echo o > /o/f && chown 1000:1000 /o/f\n\
     RUN rm /e/x && rm -rf /d && mkdir /d && echo new > /d/n && chown 1000:1000 /d/n \
         && chown -R 1001:1002 /o && mkdir -p /new/deep && echo n > /new/deep/f\n\
     COPY f /e/f\n\
     RUN test ! -e /e/x && test ! -e /d/a && test ! -e /d/sub && cat /e/f /d/n \
         && stat -c %u:%g /o/f\n";

/// With fuse-overlayfs forced, rootless builds of the examples and of a context that
/// deletes, replaces a directory and chowns give the digests root's native overlays give;
/// `berth run` works on the result; no daemon and no mount is left after either.
#[test]
fn fuse_overlayfs_builds_give_roots_digests_and_leave_nothing_behind() {
    let _serial = FUSE_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    let Some(fuse) = fuse_overlayfs() else { return };
    share_busybox(&s, &user);
    let uid = uid_of(&user);
    // `layers` writes a file that an earlier step hard-linked: fuse-overlayfs 1.10 copies it
    // up under one of its names, not always the one written, the kernel's overlayfs under
    // the name written alone (README, Rootless), so the layers differ.
    same_digests(&s, &user, &[("BERTH_MOUNT_PROGRAM", fuse)], &["layers"]);
    assert_nothing_left(uid, "the corpus's builds");
    let mut contexts = Vec::new();
    for n in ["hello", "multistage"] {
        let ctx = user.path().join(format!("fuse-example-{n}"));
        let src = berth_test_support::workspace_root()
            .join("testdata/examples")
            .join(n);
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&ctx)
            .status()
            .unwrap();
        assert!(status.success());
        contexts.push(ctx);
    }
    let ctx = user.path().join("fuse-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), FUSE_CONTEXT).unwrap();
    std::fs::write(ctx.join("f"), "copied\n").unwrap();
    contexts.push(ctx);
    user.give(user.path());
    let forced = [EPOCH, ("BERTH_MOUNT_PROGRAM", fuse)];
    for ctx in &contexts {
        let root = s
            .cmd()
            .env(EPOCH.0, EPOCH.1)
            .args(["build", "-q", "--no-cache"])
            .arg(ctx)
            .output()
            .unwrap();
        let rootless = user
            .berth(&forced)
            .args([
                "build",
                "--no-cache",
                "--progress",
                "plain",
                "--iidfile",
                "iid",
            ])
            .arg(ctx)
            .output()
            .unwrap();
        assert_success(&rootless, "rootless build with fuse-overlayfs");
        let text = printed(&rootless);
        if ctx.ends_with("fuse-ctx") {
            for line in ["copied", "new", "1001:1002"] {
                assert!(text.contains(line), "{text}");
            }
        }
        let rootless_id = std::fs::read_to_string(user.path().join("iid")).unwrap();
        assert_eq!(
            image_id(&root, "root build"),
            rootless_id.trim(),
            "{}",
            ctx.display()
        );
        assert_nothing_left(uid, &format!("building {}", ctx.display()));
    }
    let built = std::fs::read_to_string(user.path().join("iid")).unwrap();
    for args in [&["run", "--rm"][..], &["run"][..]] {
        let out = user
            .berth(&[("BERTH_MOUNT_PROGRAM", fuse)])
            .args(args)
            .args([
                built.trim(),
                "sh",
                "-c",
                "cat /d/n && echo w > /d/w && cat /d/w",
            ])
            .output()
            .unwrap();
        assert_eq!(
            assert_success(&out, "rootless run with fuse-overlayfs"),
            "new\nw\n"
        );
        assert_nothing_left(uid, &format!("berth {}", args.join(" ")));
    }
    let out = user
        .berth(&[("BERTH_MOUNT_PROGRAM", fuse)])
        .args(["info", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&assert_success(&out, "rootless info")).unwrap();
    let overlay = v["Overlay"].as_str().unwrap();
    assert!(
        overlay
            .starts_with("fuse-overlayfs (/usr/bin/fuse-overlayfs, forced by BERTH_MOUNT_PROGRAM)"),
        "{overlay}"
    );
}

/// Rootless berth killed with SIGKILL while fuse-overlayfs serves a container's rootfs, a
/// RUN step's and a COPY's view: each daemon gets SIGKILL with its parent (the init, or the
/// view's thread), the connection is aborted, and the mount namespaces holding the mounts go
/// with their last process.
#[test]
fn killing_berth_leaves_no_fuse_overlayfs_daemon_or_mount() {
    let _serial = FUSE_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    let Some(fuse) = fuse_overlayfs() else { return };
    share_busybox(&s, &user);
    let uid = uid_of(&user);
    let ctx = user.path().join("sleep-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 600\n").unwrap();
    // A COPY long enough to be caught in its view (256 MiB through FUSE).
    let copy = user.path().join("copy-ctx");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::write(copy.join("Dockerfile"), "FROM busybox\nCOPY big /big\n").unwrap();
    let mut big = std::io::BufWriter::new(std::fs::File::create(copy.join("big")).unwrap());
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8 + 1).collect();
    for _ in 0..256 {
        std::io::Write::write_all(&mut big, &chunk).unwrap();
    }
    drop(big);
    user.give(user.path());
    let forced = [("BERTH_MOUNT_PROGRAM", fuse)];
    for args in [
        &["run", "--rm", "busybox", "sleep", "600"][..],
        &["build", "--no-cache", "sleep-ctx"][..],
        &["build", "--no-cache", "copy-ctx"][..],
    ] {
        assert_nothing_left(uid, "the tests before");
        let mut runner = user
            .berth(&forced)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while fuse_daemons(uid).is_empty() {
            if start.elapsed() > std::time::Duration::from_secs(30) {
                let _ = runner.kill();
                panic!("no fuse-overlayfs daemon for berth {}", args.join(" "));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // runuser's child is berth (env execs it).
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", runner.id())).unwrap();
        let Some(berth) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            let _ = runner.kill();
            panic!("no child of runuser: {children:?}");
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(berth),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = runner.wait();
        assert_nothing_left(uid, &format!("SIGKILL of berth {}", args.join(" ")));
    }
}

/// The pause process's PID, from the user's pidfile.
fn pause_pid(user: &RootlessUser) -> u32 {
    let file = user.runtime_dir().join("berth/pause.pid");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.trim().parse().expect("a PID in the pidfile")
}

/// `readlink /proc/self/ns/user` in berth's namespace, as the user with `env`.
fn user_ns_of_a_command(user: &RootlessUser, env: &[(&str, &str)]) -> String {
    let out = user
        .berth(env)
        .args(["unshare", "readlink", "/proc/self/ns/user"])
        .output()
        .unwrap();
    assert_success(&out, "berth unshare readlink")
        .trim()
        .to_owned()
}

fn readlink(path: impl AsRef<std::path::Path>) -> String {
    std::fs::read_link(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
        .display()
        .to_string()
}

/// Waits up to 5 s for process `pid` to be gone (or a zombie, left to whoever reaps it).
fn gone(pid: u32) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) if stat[stat.rfind(')').unwrap_or(0)..].starts_with(") Z") => return true,
            Ok(_) => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Every command of the user joins the user namespace one pause process holds: a process
/// that sleeps with nothing of the store open, its PID in a pidfile of the user's 0700 runtime
/// directory; `berth system migrate` ends it and the next command starts another.
#[test]
fn commands_share_the_user_namespace_of_one_pause_process() {
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    // The first command opens the store.
    let out = user.berth(&[]).args(["images"]).output().unwrap();
    assert_success(&out, "rootless images");
    let pid = pause_pid(&user);
    let first = user_ns_of_a_command(&user, &[]);
    let second = user_ns_of_a_command(&user, &[]);
    assert_eq!(first, second, "two commands, one user namespace");
    assert_eq!(pause_pid(&user), pid, "the same pause process");
    assert_eq!(readlink(format!("/proc/{pid}/ns/user")), first);
    assert_ne!(readlink("/proc/self/ns/user"), first, "not the host's");
    // A mount namespace of each command's own, not the pause process's.
    let out = user
        .berth(&[])
        .args(["unshare", "readlink", "/proc/self/ns/mnt"])
        .output()
        .unwrap();
    let mnt = assert_success(&out, "berth unshare readlink mnt")
        .trim()
        .to_owned();
    assert_ne!(mnt, readlink(format!("/proc/{pid}/ns/mnt")));
    // What the pause process is: named, in /, its stdio /dev/null and nothing else open.
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert_eq!(
        std::fs::read_to_string(proc.join("comm")).unwrap(),
        "berth-pause\n"
    );
    assert_eq!(readlink(proc.join("cwd")), "/");
    let fds: Vec<String> = std::fs::read_dir(proc.join("fd"))
        .unwrap()
        .map(|e| readlink(e.unwrap().path()))
        .collect();
    assert_eq!(fds, ["/dev/null"; 3], "the pause process's open files");
    let status = std::fs::read_to_string(proc.join("status")).unwrap();
    let uid = user.uid.to_string();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["Uid:", &uid, &uid, &uid, &uid])),
        "the user's process: {status}"
    );
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let session = fields[3];
    let our_session = std::fs::read_to_string("/proc/self/stat").unwrap();
    let our_fields: Vec<&str> = our_session[our_session.rfind(')').unwrap() + 2..]
        .split(' ')
        .collect();
    assert_ne!(session, our_fields[3], "a session of its own");
    assert_eq!(fields[4], "0", "no controlling terminal");
    // Files the user alone reaches.
    let dir = std::fs::metadata(user.runtime_dir().join("berth")).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o777), (user.uid, 0o700));
    let file = std::fs::metadata(user.runtime_dir().join("berth/pause.pid")).unwrap();
    assert_eq!((file.uid(), file.mode() & 0o777), (user.uid, 0o600));
    // `system migrate` ends it; the next command starts another.
    let out = user
        .berth(&[])
        .args(["system", "migrate"])
        .output()
        .unwrap();
    assert_success(&out, "berth system migrate");
    assert!(gone(pid), "the pause process ended");
    assert!(!user.runtime_dir().join("berth/pause.pid").exists());
    user_ns_of_a_command(&user, &[]);
    assert_ne!(pause_pid(&user), pid);
}

/// A pidfile that names a PID not of a pause process of the user's (a dead one, root's init,
/// a process of the user's in the host's namespace named as the pause process is) is never
/// joined, and the process it names is left alone: a new pause process replaces it. A pause
/// process with another mapping than the one berth sets up now is replaced, and berth says so.
#[test]
fn a_stale_pidfile_is_not_joined_and_a_new_pause_process_replaces_it() {
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    let pidfile = user.runtime_dir().join("berth/pause.pid");
    user_ns_of_a_command(&user, &[]);
    let host_ns = readlink("/proc/self/ns/user");
    // A process of the user's named berth-pause, in the host's user namespace.
    let fake = user.path().join("berth-pause");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    user.give(&fake);
    let gid = std::fs::metadata(user.path()).unwrap().gid();
    let mut impostor = std::process::Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg(&fake)
        .arg("60")
        .spawn()
        .unwrap();
    let impostor_pid = impostor.id();
    let start = std::time::Instant::now();
    while std::fs::read_to_string(format!("/proc/{impostor_pid}/comm")).unwrap_or_default()
        != "berth-pause\n"
    {
        assert!(start.elapsed().as_secs() < 5, "the impostor did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let mut left = Vec::new();
    for (what, stale) in [
        ("a dead PID", dead),
        ("root's init", 1),
        ("the user's process named berth-pause", impostor_pid),
    ] {
        // The pause process the pidfile named: left running, as nothing names it now.
        left.push(pause_pid(&user));
        std::fs::write(&pidfile, format!("{stale}\n")).unwrap();
        let ns = user_ns_of_a_command(&user, &[]);
        let pid = pause_pid(&user);
        assert_ne!(pid, stale, "{what}: replaced");
        assert_ne!(ns, host_ns, "{what}");
        assert_eq!(readlink(format!("/proc/{pid}/ns/user")), ns, "{what}");
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap(),
            "berth-pause\n"
        );
    }
    assert!(
        std::path::Path::new(&format!("/proc/{impostor_pid}")).exists(),
        "a process that is not berth's pause process is never signalled"
    );
    let _ = impostor.kill();
    let _ = impostor.wait();
    for pid in left {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    // Another mapping (only the user's own id, without newuidmap on PATH): replaced, said.
    let before = pause_pid(&user);
    let out = user
        .berth(&[("PATH", "/nonexistent")])
        .args(["unshare", "/bin/cat", "/proc/self/uid_map"])
        .output()
        .unwrap();
    let text = assert_success(&out, "berth unshare cat uid_map");
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["0", &user.uid.to_string(), "1"]
    );
    assert!(printed(&out).contains("changed"), "{}", printed(&out));
    assert!(gone(before), "the old pause process was stopped");
    assert_ne!(pause_pid(&user), before);
}

/// A detached container whose process runs as a user other than root (a subordinate id on
/// the host): a later command, which joins the same user namespace, may signal it, and
/// `stop` and `kill` end such containers.
#[test]
fn a_later_command_reaches_a_detached_containers_non_root_process() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    share_busybox(&s, &user);
    let mark = format!("7{}", std::process::id());
    let run = |name: &str| {
        let out = user
            .berth(&[])
            .args([
                "run", "-d", "--pull", "never", "--name", name, "--user", "1000",
            ])
            .args(["busybox", "sleep", &mark])
            .output()
            .unwrap();
        assert_success(&out, "rootless run -d --user 1000");
    };
    run("stopped");
    // The container's sleep, on the host: the subordinate id of 1000 inside.
    let find = || {
        let want = format!("sleep\0{mark}\0");
        let start = std::time::Instant::now();
        loop {
            let found: Vec<u32> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want.as_bytes())
                })
                .collect();
            if let Some(&p) = found.first() {
                return p;
            }
            assert!(
                start.elapsed().as_secs() < 10,
                "the container's sleep did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let sleep = find();
    let base: u32 = std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{}:", user.name))?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{sleep}/status")).unwrap();
    let host_uid = (base + 999).to_string();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&host_uid)),
        "runs as {host_uid} on the host: {status}"
    );
    // Root in the namespace the container was made in (CAP_KILL there), from a new command.
    let out = user
        .berth(&[])
        .args(["unshare", "kill", "-0", &sleep.to_string()])
        .output()
        .unwrap();
    assert_success(&out, "a later command signals the container's process");
    let out = user
        .berth(&[])
        .args(["stop", "-t", "1", "stopped"])
        .output()
        .unwrap();
    assert_success(&out, "berth stop");
    assert!(gone(sleep), "stop ended the container's process");
    run("killed");
    let sleep = find();
    let out = user.berth(&[]).args(["kill", "killed"]).output().unwrap();
    assert_success(&out, "berth kill");
    assert!(gone(sleep), "kill ended the container's process");
    let out = user
        .berth(&[])
        .args(["rm", "-f", "stopped", "killed"])
        .output()
        .unwrap();
    assert_success(&out, "berth rm");
}

/// PID 1 sets up its rootfs while slirp4netns starts, but runs the command only once `tap0`
/// is up: when slirp4netns cannot start (not on PATH here), the container ends with the
/// setup code and says why, and the command never ran.
#[test]
fn a_container_whose_slirp4netns_fails_never_runs_its_command() {
    let Some(s) = ROOT.sandbox() else { return };
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    if !berth_test_support::needs(
        "newuidmap in /usr/bin (Debian's uidmap)",
        std::path::Path::new("/usr/bin/newuidmap").exists(),
    ) {
        return;
    }
    share_busybox(&s, &user);
    // The mapping helpers alone on PATH: the same mapping, no slirp4netns.
    let bin = user.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for helper in ["newuidmap", "newgidmap"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{helper}"), bin.join(helper)).unwrap();
    }
    let out = user
        .berth(&[("PATH", bin.to_str().unwrap())])
        .args([
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "slirp4netns",
            "busybox",
        ])
        .args(["sh", "-c", "echo the command ran"])
        .output()
        .unwrap();
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(125), "{text}");
    assert!(text.contains("slirp4netns"), "{text}");
    assert!(!text.contains("the command ran"), "{text}");
}

/// Commands started at once with no pause process running start one between them (the
/// first takes `pause.lock`, the others find its pause process once they have it).
#[test]
fn concurrent_first_commands_start_one_pause_process() {
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    let children: Vec<_> = (0..6)
        .map(|_| {
            user.berth(&[])
                .args(["unshare", "readlink", "/proc/self/ns/user"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let namespaces: std::collections::BTreeSet<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert_success(&out, "berth unshare readlink")
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(namespaces.len(), 1, "one namespace: {namespaces:?}");
    let pid = pause_pid(&user);
    assert_eq!(
        Some(&readlink(format!("/proc/{pid}/ns/user"))),
        namespaces.first()
    );
}

/// Without `XDG_RUNTIME_DIR` (and no `/run/user/UID`), the pause process's pidfile goes to
/// the user's own `~/.local/share/berth-run`, never to a shared `/tmp` where another user
/// could take the name first; and a `pause.lock` someone else holds makes a command wait at
/// most 10 s, then go on in a user namespace of its own, saying so, instead of hanging.
#[test]
fn the_pause_process_needs_no_shared_tmp_and_a_held_lock_never_hangs_a_command() {
    let Some(user) = RootlessUser::get(BIN) else {
        return;
    };
    if std::path::Path::new(&format!("/run/user/{}", user.uid)).exists() {
        berth_test_support::skip("no /run/user/UID for the test user (it would be used first)");
        return;
    }
    let unset = [("XDG_RUNTIME_DIR", "")];
    let out = user.berth(&unset).args(["images"]).output().unwrap();
    assert_success(&out, "rootless images without XDG_RUNTIME_DIR");
    assert!(
        !printed(&out).contains("cannot be used"),
        "{}",
        printed(&out)
    );
    let dir = user.path().join(".local/share/berth-run");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.uid(), user.uid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    let pid: u32 = std::fs::read_to_string(dir.join("pause.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = user
        .berth(&unset)
        .args(["system", "migrate"])
        .output()
        .unwrap();
    assert_success(&out, "system migrate");
    assert!(gone(pid), "the pause process {pid} was stopped");

    // The usual runtime directory, its pause process stopped, its lock held by root.
    let out = user.berth(&[]).args(["images"]).output().unwrap();
    assert_success(&out, "rootless images");
    let out = user
        .berth(&[])
        .args(["system", "migrate"])
        .output()
        .unwrap();
    assert_success(&out, "system migrate");
    let lock = std::fs::File::open(user.runtime_dir().join("berth/pause.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("the lock is free");
    let start = std::time::Instant::now();
    let out = user.berth(&[]).args(["images"]).output().unwrap();
    let waited = start.elapsed();
    drop(held);
    assert_success(&out, "rootless images with the lock held");
    assert!(
        printed(&out).contains("pause process cannot be used"),
        "{}",
        printed(&out)
    );
    assert!(
        waited >= std::time::Duration::from_secs(9) && waited < std::time::Duration::from_secs(30),
        "waited {waited:?}"
    );
}
