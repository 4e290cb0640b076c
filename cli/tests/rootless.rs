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
            .berth(&[EPOCH])
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
        if a != b {
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
    assert!(differ.is_empty(), "digests differ:\n{}", differ.join("\n"));
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
