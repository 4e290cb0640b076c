//! Volumes, the prune family (`system`, `image`, `container`, `volume prune`), their
//! confirmation prompt, `attach`, and what `copy` to an archive leaves in the store. Every
//! removal is checked by what remains, and `system check` after it.

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, Tier, assert_success, output_with_stdin, printed};

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const ROOT: Tier = Tier::containers(BIN);

fn plain() -> Sandbox {
    Sandbox::new(BIN).with_busybox()
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The `images` table's rows (no header): REPOSITORY, TAG and IMAGE ID (not the age,
/// which changes as the test runs).
fn image_rows(s: &Sandbox) -> Vec<String> {
    s.ok(&["images"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

fn volume_names(s: &Sandbox) -> Vec<String> {
    s.ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// An unnamed (`<none>`) image with `label`: a labelled import, written to an archive
/// without a name, removed, and loaded back.
fn dangling(s: &Sandbox, label: &str) {
    let rootfs = s.path().join("busybox-rootfs");
    s.ok(&[
        "import",
        "-c",
        &format!("LABEL {label}"),
        rootfs.to_str().unwrap(),
        "tmp-dangling",
    ]);
    let archive = s.path().join("dangling.tar");
    s.ok(&["save", "-o", archive.to_str().unwrap(), "tmp-dangling"]);
    // `save` names the image in the archive; an OCI archive written by copy without a
    // reference does not.
    let unnamed = s.path().join("unnamed.tar");
    s.ok(&[
        "copy",
        &format!("oci-archive:{}", archive.display()),
        &format!("oci-archive:{}", unnamed.display()),
    ]);
    s.ok(&["rmi", "tmp-dangling"]);
    s.ok(&["load", "-i", unnamed.to_str().unwrap()]);
    assert!(
        image_rows(s).iter().any(|r| r.starts_with("<none>")),
        "{:?}",
        image_rows(s)
    );
}

#[test]
fn copy_to_an_archive_leaves_no_unnamed_image_in_the_store() {
    let s = plain();
    let before = image_rows(&s);
    for (i, dst) in ["oci-archive", "docker-archive"].iter().enumerate() {
        let file = s.path().join(format!("out{i}.tar"));
        s.ok(&["copy", "busybox", &format!("{dst}:{}", file.display())]);
        assert!(file.metadata().unwrap().len() > 0);
    }
    // From an OCI layout, through the store, into an archive.
    let layout = s.path().join("layout");
    s.ok(&["copy", "busybox", &format!("oci:{}:bb", layout.display())]);
    let file = s.path().join("from-layout.tar");
    s.ok(&[
        "copy",
        &format!("oci:{}:bb", layout.display()),
        &format!("oci-archive:{}:bb:1", file.display()),
    ]);
    assert_eq!(image_rows(&s), before);
    s.assert_clean();
    // The archive still holds the image: it loads and is named.
    let fresh = Sandbox::new(BIN);
    let out = fresh.ok(&["load", "-i", file.to_str().unwrap()]);
    assert!(out.contains("bb:1"), "{out}");
    // An image the store already had without a name keeps its entry.
    dangling(&s, "x=1");
    let rows = image_rows(&s);
    let none_id = rows
        .iter()
        .find(|r| r.starts_with("<none>"))
        .and_then(|r| r.split_whitespace().nth(2))
        .unwrap()
        .to_owned();
    let out_file = s.path().join("again.tar");
    s.ok(&[
        "copy",
        &none_id,
        &format!("oci-archive:{}", out_file.display()),
    ]);
    assert!(image_rows(&s).iter().any(|r| r.starts_with("<none>")));
    s.assert_clean();
}

#[test]
fn volumes_are_created_listed_inspected_and_removed_as_in_docker() {
    let s = Sandbox::new(BIN);
    assert_eq!(s.ok(&["volume", "ls"]), "DRIVER   VOLUME NAME\n");
    assert_eq!(
        s.ok(&[
            "volume", "create", "--label", "app=web", "-l", "tier", "data"
        ])
        .trim(),
        "data"
    );
    // Again: the same volume, not an error.
    assert_eq!(s.ok(&["volume", "create", "data"]).trim(), "data");
    let random = s.ok(&["volume", "create"]).trim().to_owned();
    assert_eq!(random.len(), 64, "{random}");
    assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut names = vec![random.clone(), "data".to_owned()];
    names.sort();
    let table = s.ok(&["volume", "ls"]);
    let expected: Vec<String> = std::iter::once("DRIVER   VOLUME NAME".to_owned())
        .chain(names.iter().map(|n| format!("local    {n}")))
        .collect();
    assert_eq!(table.lines().collect::<Vec<_>>(), expected);
    assert_eq!(volume_names(&s), names);

    let ls = |f: &[&str]| -> Vec<String> {
        let mut args = vec!["volume", "ls", "-q"];
        for f in f {
            args.extend(["--filter", f]);
        }
        s.ok(&args).lines().map(str::to_owned).collect()
    };
    assert_eq!(ls(&["label=app"]), ["data"]);
    assert_eq!(ls(&["label=app=web", "label=tier"]), ["data"]);
    assert!(ls(&["label=app=db"]).is_empty());
    assert_eq!(ls(&["name=at"]), ["data"]);
    assert_eq!(ls(&["dangling=true", "driver=local"]), names);
    assert!(ls(&["dangling=false"]).is_empty());
    let out = s.run(&["volume", "ls", "--filter", "size=1"]);
    assert_eq!(code(&out), 2, "{}", printed(&out));
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["volume", "inspect", "data"])).unwrap();
    let v = &v[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["app"], "web");
    assert_eq!(v["Labels"]["tier"], "");
    assert!(v["Options"].is_null());
    let mountpoint = v["Mountpoint"].as_str().unwrap();
    assert_eq!(
        std::path::Path::new(mountpoint),
        s.store().join("volumes/data/_data")
    );
    assert!(std::path::Path::new(mountpoint).is_dir());
    assert!(
        humantime_like(v["CreatedAt"].as_str().unwrap()),
        "{}",
        v["CreatedAt"]
    );
    // One missing of two: the found one printed, exit 1.
    let out = s.run(&["volume", "inspect", "data", "nope"]);
    assert_eq!(code(&out), 1, "{}", printed(&out));
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert!(printed(&out).contains("no such volume: nope"));

    // Names are Docker's and never a path.
    for bad in ["../x", "a/b", ".hidden", "x", "-v2", "/abs", "a b"] {
        let out = s.run(&["volume", "create", "--", bad]);
        assert_eq!(code(&out), 1, "{bad}: {}", printed(&out));
        assert!(
            printed(&out).contains("invalid volume name"),
            "{}",
            printed(&out)
        );
        let out = s.run(&["volume", "rm", "--", bad]);
        assert_eq!(code(&out), 1, "{bad}: {}", printed(&out));
    }
    assert!(!s.path().join("x").exists() && !s.store().join("x").exists());
    assert_eq!(volume_names(&s), names);

    // rm: a missing name fails unless -f; the others are still removed.
    let out = s.run(&["volume", "rm", "nope", &random]);
    assert_eq!(code(&out), 1, "{}", printed(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), random);
    assert_eq!(volume_names(&s), ["data"]);
    let out = s.run(&["volume", "rm", "-f", "nope"]);
    assert_eq!(code(&out), 0, "{}", printed(&out));

    // prune: without -a only anonymous volumes (there are none), with -a every unused one,
    // under its label filter.
    std::fs::write(s.store().join("volumes/data/_data/f"), vec![7u8; 4096]).unwrap();
    s.ok(&["volume", "create", "other"]);
    let out = s.ok(&["volume", "prune", "-f"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
    assert_eq!(volume_names(&s), ["data", "other"]);
    let out = s.ok(&["volume", "prune", "-a", "-f", "--filter", "label=app=web"]);
    assert_eq!(
        out,
        "Deleted Volumes:\ndata\n\nTotal reclaimed space: 4.1kB\n"
    );
    assert_eq!(volume_names(&s), ["other"]);
    let out = s.run(&["volume", "prune", "-f", "--filter", "until=1h"]);
    assert_eq!(code(&out), 2, "{}", printed(&out));
    s.ok(&["volume", "prune", "-a", "-f"]);
    assert!(volume_names(&s).is_empty());
    s.assert_clean();
}

#[test]
fn removing_a_volume_never_follows_the_symlinks_in_it() {
    // What a container left in a volume is hostile: links to the host's files.
    let s = Sandbox::new(BIN);
    let canary = s.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), vec![0u8; 100_000]).unwrap();
    s.ok(&["volume", "create", "trap"]);
    let data = s.store().join("volumes/trap/_data");
    std::os::unix::fs::symlink(&canary, data.join("dir-link")).unwrap();
    std::os::unix::fs::symlink(canary.join("keep"), data.join("file-link")).unwrap();
    std::fs::create_dir(data.join("sub")).unwrap();
    std::os::unix::fs::symlink(&canary, data.join("sub/up")).unwrap();
    let df = s.ok(&["system", "df"]);
    assert_eq!(df_row(&df, "Local Volumes")[2], "0B", "{df}");
    let out = s.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.ends_with("Total reclaimed space: 0B\n"), "{out}");
    assert!(volume_names(&s).is_empty());
    assert_eq!(std::fs::read(canary.join("keep")).unwrap().len(), 100_000);
    s.assert_clean();
}

/// A row of `system df` by its TYPE: the other cells.
fn df_row(df: &str, name: &str) -> Vec<String> {
    let line = df.lines().find(|l| l.starts_with(name)).unwrap();
    line[name.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `2026-12-07T18:00:00Z`-shaped.
fn humantime_like(t: &str) -> bool {
    t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T'
}

#[test]
fn a_volume_a_container_uses_is_kept_until_the_container_is_removed() {
    let Some(s) = ROOT.sandbox() else { return };
    s.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/d",
        "busybox",
        "sh",
        "-c",
        "echo kept > /d/f",
    ]);
    let out = s.run(&["volume", "rm", "data"]);
    assert_eq!(code(&out), 1, "{}", printed(&out));
    let text = printed(&out);
    let id = s.ok(&["ps", "-a", "-q"]).trim().to_owned();
    assert!(
        text.contains("volume data is in use") && text.contains(&id[..12]),
        "{text}"
    );
    // Neither prune takes it while the stopped container exists.
    s.ok(&["volume", "prune", "-a", "-f"]);
    s.ok(&["system", "prune", "-f", "--volumes"]);
    // system prune removed the stopped container; now the volume is free.
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
    assert_eq!(
        std::fs::read_to_string(s.store().join("volumes/data/_data/f")).unwrap(),
        "kept\n"
    );
    // A running container's volume is never removed, by rm or prune.
    let id = s
        .ok(&[
            "run", "-d", "-v", "data:/d", "-v", "/anon", "busybox", "sleep", "30",
        ])
        .trim()
        .to_owned();
    let vols = volume_names(&s);
    assert_eq!(vols.len(), 2, "{vols:?}");
    let anon = vols.iter().find(|v| *v != "data").unwrap().clone();
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["volume", "inspect", &anon])).unwrap();
    assert_eq!(v[0]["Labels"]["com.docker.volume.anonymous"], "");
    // `system df`: two volumes, both in use, nothing reclaimable; one container, running.
    std::fs::write(s.store().join("volumes/data/_data/g"), vec![1u8; 2000]).unwrap();
    let df = s.ok(&["system", "df"]);
    assert_eq!(
        df_row(&df, "Local Volumes"),
        ["2", "2", "2kB", "0B (0%)"],
        "{df}"
    );
    assert_eq!(df_row(&df, "Containers")[..2], ["1", "1"], "{df}");
    assert_eq!(df_row(&df, "Containers")[3], "0B (0%)", "{df}");
    let used = s.ok(&["volume", "ls", "-q", "--filter", "dangling=false"]);
    assert_eq!(used.lines().count(), 2, "{used}");
    let out = s.run(&["volume", "rm", "-f", "data", &anon]);
    assert_eq!(code(&out), 1, "{}", printed(&out));
    s.ok(&["volume", "prune", "-a", "-f"]);
    s.ok(&["container", "prune", "-f"]);
    assert_eq!(volume_names(&s).len(), 2);
    s.ok(&["kill", &id]);
    s.ok(&["wait", &id]);
    // Stopped: still in use until the container goes.
    s.ok(&["volume", "prune", "-f"]);
    assert_eq!(volume_names(&s).len(), 2);
    let df = s.ok(&["system", "df"]);
    let row = df_row(&df, "Containers");
    assert_eq!(row[..2], ["1", "0"], "{df}");
    assert!(row[3].ends_with("(100%)"), "{df}");
    s.ok(&["rm", &id]);
    // Without -a only the anonymous volume goes; with -a the named one too.
    let out = s.ok(&["volume", "prune", "-f"]);
    assert!(
        out.starts_with(&format!("Deleted Volumes:\n{anon}\n")),
        "{out}"
    );
    assert_eq!(volume_names(&s), ["data"]);
    assert_eq!(s.ok(&["volume", "rm", "data"]).trim(), "data");
    assert!(volume_names(&s).is_empty());
    s.assert_clean();
}

#[test]
fn run_rm_and_rm_v_take_anonymous_volumes_with_the_container() {
    let Some(s) = ROOT.sandbox() else { return };
    s.ok(&[
        "run", "--rm", "-v", "/anon", "-v", "kept:/k", "busybox", "touch", "/anon/f",
    ]);
    assert_eq!(volume_names(&s), ["kept"]);
    s.ok(&[
        "run", "--name", "cc", "-v", "/anon", "-v", "kept:/k", "busybox", "true",
    ]);
    assert_eq!(volume_names(&s).len(), 2);
    // Without -v the anonymous volume stays (for `volume prune`).
    s.ok(&["run", "--name", "dd", "-v", "/anon", "busybox", "true"]);
    s.ok(&["rm", "dd"]);
    assert_eq!(volume_names(&s).len(), 3);
    s.ok(&["rm", "-v", "cc"]);
    let left = volume_names(&s);
    assert_eq!(left.len(), 2);
    let anon = left.iter().find(|v| *v != "kept").unwrap();
    // `system prune` leaves volumes alone unless --volumes, which takes anonymous ones only.
    s.ok(&["system", "prune", "-f"]);
    assert_eq!(volume_names(&s).len(), 2);
    // Made just now: not before an hour ago.
    s.ok(&["system", "prune", "-f", "--volumes", "--filter", "until=1h"]);
    assert_eq!(volume_names(&s).len(), 2);
    let out = s.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(
        out.starts_with(&format!("Deleted Volumes:\n{anon}\n")),
        "{out}"
    );
    assert_eq!(volume_names(&s), ["kept"]);
    s.assert_clean();
}

#[test]
fn container_prune_removes_stopped_containers_only() {
    let Some(s) = ROOT.sandbox() else { return };
    s.ok(&["run", "--name", "done1", "busybox", "true"]);
    let out = s.run(&["run", "--name", "done2", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(code(&out), 4, "{}", printed(&out));
    let running = s
        .ok(&["run", "-d", "--name", "live", "busybox", "sleep", "30"])
        .trim()
        .to_owned();
    let all = |s: &Sandbox| {
        let mut v: Vec<String> = s
            .ok(&["ps", "-a", "-q"])
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(all(&s).len(), 3);
    // Created just now: not before an hour ago, nor with a label busybox lacks.
    let out = s.ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
    let out = s.ok(&["container", "prune", "-f", "--filter", "label=nope"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
    assert_eq!(all(&s).len(), 3);
    let out = s.ok(&["container", "prune", "-f", "--filter", "until=2099-01-01"]);
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert_eq!(out.lines().filter(|l| l.len() == 64).count(), 2, "{out}");
    assert!(!out.contains(&running), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(all(&s), [running[..12].to_owned()]);
    s.ok(&["kill", &running]);
    s.ok(&["wait", &running]);
    s.ok(&["container", "prune", "-f"]);
    assert!(all(&s).is_empty());
    s.assert_clean();
}

#[test]
fn image_prune_removes_dangling_images_or_with_all_every_unused_one() {
    let s = plain();
    s.import_busybox("named:1");
    dangling(&s, "stage=old");
    assert_eq!(image_rows(&s).len(), 3);
    // Filters that select nothing.
    for f in [
        "until=1h",
        "until=2000-01-01T00:00:00Z",
        "label=stage=new",
        "label!=stage",
    ] {
        let out = s.ok(&["image", "prune", "-f", "--filter", f]);
        assert_eq!(out.trim(), "Total reclaimed space: 0B", "{f}");
    }
    assert_eq!(image_rows(&s).len(), 3);
    let out = s.run(&["image", "prune", "-f", "--filter", "dangling=false"]);
    assert_eq!(code(&out), 2, "{}", printed(&out));
    let out = s.ok(&["image", "prune", "-f", "--filter", "label=stage=old"]);
    assert!(
        out.starts_with("Deleted Images:\ndeleted: sha256:"),
        "{out}"
    );
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    let rows = image_rows(&s);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| !r.starts_with("<none>")));
    s.assert_clean();
    // -a: every image no container uses; its names are untagged.
    let out = s.ok(&["image", "prune", "-a", "-f", "--filter", "until=2099-01-01"]);
    assert!(out.contains("untagged: busybox:latest"), "{out}");
    assert!(out.contains("untagged: named:1"), "{out}");
    assert!(image_rows(&s).is_empty());
    s.assert_clean();
}

#[test]
fn image_prune_all_keeps_what_a_container_uses() {
    let Some(s) = ROOT.sandbox() else { return };
    // Another image: the same rootfs with a label.
    let rootfs = s.path().join("busybox-rootfs");
    s.ok(&[
        "import",
        "-c",
        "LABEL spare=1",
        rootfs.to_str().unwrap(),
        "spare",
    ]);
    s.ok(&["tag", "busybox", "alias"]);
    s.ok(&["run", "--name", "user", "busybox", "true"]);
    let out = s.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: spare:latest"), "{out}");
    assert!(!out.contains("busybox") && !out.contains("alias"), "{out}");
    let rows = image_rows(&s);
    assert_eq!(rows.len(), 2, "{rows:?}");
    s.ok(&["run", "--rm", "busybox", "true"]);
    s.ok(&["rm", "user"]);
    s.ok(&["image", "prune", "-a", "-f"]);
    assert!(image_rows(&s).is_empty());
    s.assert_clean();
}

#[test]
fn prune_prompts_read_stdin_even_when_it_is_not_a_terminal() {
    let s = plain();
    dangling(&s, "a=1");
    for (cmd, warning) in [
        (
            &["system", "prune"][..],
            "WARNING! This will remove:\n  - all stopped containers\n  - all dangling images\n  - all build cache\nAre you sure you want to continue? [y/N] ",
        ),
        (
            &["image", "prune"][..],
            "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] ",
        ),
        (
            &["image", "prune", "-a"][..],
            "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] ",
        ),
        (
            &["container", "prune"][..],
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ",
        ),
        (
            &["volume", "prune"][..],
            "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ",
        ),
        (
            &["volume", "prune", "-a"][..],
            "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ",
        ),
    ] {
        for input in [&b""[..], b"n\n", b"no\n", b"yes please\n", b"\n"] {
            let out = output_with_stdin(s.cmd().args(cmd), input);
            assert_eq!(code(&out), 0, "{cmd:?}: {}", printed(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.starts_with(warning), "{cmd:?} {input:?}: {stdout}");
            assert!(!stdout.contains("Total reclaimed"), "{stdout}");
        }
        assert_eq!(image_rows(&s).len(), 2, "{cmd:?} removed something");
    }
    let out = output_with_stdin(s.cmd().args(["image", "prune"]), b"y\n");
    assert_eq!(code(&out), 0, "{}", printed(&out));
    assert!(
        printed(&out).contains("deleted: sha256:"),
        "{}",
        printed(&out)
    );
    assert_eq!(image_rows(&s).len(), 1);
    s.assert_clean();
}

/// A tmux server of the test's own (its own socket), killed by that socket when dropped.
struct OwnTmux {
    socket: String,
    /// The socket's file, which the server may leave behind.
    path: Option<std::path::PathBuf>,
}

impl OwnTmux {
    fn start(name: &str, command: &str) -> OwnTmux {
        let socket = format!("berth-{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
                command,
            ])
            .status()
            .expect("running tmux");
        assert!(status.success());
        let out = Command::new("tmux")
            .args(["-L", &socket, "display-message", "-p", "#{socket_path}"])
            .output()
            .expect("running tmux");
        let path = Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|p| p.ends_with(&socket))
            .map(std::path::PathBuf::from);
        OwnTmux { socket, path }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .expect("running tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waited for {text:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        Command::new("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(keys)
            .status()
            .expect("running tmux");
    }
}

impl Drop for OwnTmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn system_prune_asks_on_a_terminal() {
    if !berth_test_support::Tmux::needed() {
        return;
    }
    let s = plain();
    dangling(&s, "a=1");
    let line = format!(
        "BERTH_ROOT={} {BIN} system prune; echo exit=$?; sleep 60",
        s.store().display()
    );
    for (answer, rows) in [("n", 2), ("y", 1)] {
        let t = OwnTmux::start(&format!("prompt-{answer}"), &line);
        t.wait_for("Are you sure you want to continue? [y/N]");
        assert_eq!(image_rows(&s).len(), 2, "removed before the answer");
        t.keys(&[answer, "Enter"]);
        let screen = t.wait_for("exit=");
        assert!(screen.contains("exit=0"), "{screen}");
        assert_eq!(
            screen.contains("Total reclaimed space"),
            answer == "y",
            "{screen}"
        );
        assert_eq!(image_rows(&s).len(), rows, "{screen}");
    }
    s.assert_clean();
}

const TICKS: &str =
    "i=0; while [ $i -lt 15 ]; do echo line$i; i=$((i+1)); sleep 0.2; done; echo err >&2; exit 3";

#[test]
fn attach_follows_the_output_and_exits_with_the_containers_code() {
    let Some(s) = ROOT.sandbox() else { return };
    let id = s
        .ok(&[
            "run", "-d", "--name", "ticker", "busybox", "sh", "-c", TICKS,
        ])
        .trim()
        .to_owned();
    let out = s.run(&["attach", "--no-stdin", "ticker"]);
    assert_eq!(code(&out), 3, "{}", printed(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // From now on: the last lines and the end, not necessarily the first.
    assert!(text.contains("line14\nerr\n"), "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("line") || l == "err"),
        "{text}"
    );
    // A stopped container cannot be attached.
    let out = s.run(&["attach", &id]);
    assert_eq!(code(&out), 1, "{}", printed(&out));
    assert!(
        printed(&out).contains("stopped container"),
        "{}",
        printed(&out)
    );
    // Nor one that is not detached (its output goes to its own `berth run`).
    let mut fg = s
        .cmd()
        .args(["run", "--name", "fg", "busybox", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !s
        .ok(&["ps", "-q"])
        .contains(|c: char| c.is_ascii_hexdigit())
    {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = s.run(&["attach", "fg"]);
    assert_eq!(code(&out), 1, "{}", printed(&out));
    assert!(printed(&out).contains("not detached"), "{}", printed(&out));
    s.ok(&["kill", "fg"]);
    fg.wait().unwrap();
    s.ok(&["rm", "fg", "ticker"]);
    s.assert_clean();
}

/// A container that says `got-int` and exits 7 on SIGINT, ticking meanwhile.
const TRAPS: &str = "trap 'echo got-int; exit 7' INT; while :; do echo tick; sleep 0.2; done";

/// Starts `berth attach ARGS` and waits until it has printed a tick.
fn attach_ticking(s: &Sandbox, args: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = s.cmd();
    // The test sends attach SIGINT: it must not inherit it ignored (as a shell's background
    // job does, e.g. when the suite itself was started with `&`).
    // SAFETY: between fork and exec only signal(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::SigHandler::SigDfl,
            )
            .map(|_| ())
            .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .arg("attach")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("tick\n") {
        use std::io::Read;
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "attach ended: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdout = Some(stdout);
    child
}

#[test]
fn attach_passes_ctrl_c_to_the_container_unless_sig_proxy_is_off() {
    let Some(s) = ROOT.sandbox() else { return };
    s.ok(&[
        "run", "-d", "--name", "trapper", "busybox", "sh", "-c", TRAPS,
    ]);
    // --sig-proxy=false: SIGINT ends attach; the container goes on.
    let child = attach_ticking(&s, &["--sig-proxy=false", "trapper"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(2),
        "{}",
        printed(&out)
    );
    assert!(
        !s.ok(&["ps", "-q"]).trim().is_empty(),
        "the container stopped"
    );
    // The default: the container gets it, and attach exits with its code.
    let child = attach_ticking(&s, &["trapper"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 7, "{}", printed(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("got-int"),
        "{}",
        printed(&out)
    );
    assert_eq!(s.ok(&["wait", "trapper"]).trim(), "7");
    s.ok(&["rm", "trapper"]);
    s.assert_clean();
}

#[test]
fn attach_help_says_stdin_is_not_connected() {
    let s = Sandbox::new(BIN);
    for cmd in [
        &["volume", "--help"][..],
        &["volume", "prune", "--help"],
        &["image", "prune", "--help"],
        &["container", "prune", "--help"],
        &["system", "prune", "--help"],
        &["attach", "--help"],
    ] {
        let out = assert_success(&s.run(cmd), &format!("{cmd:?}"));
        assert!(out.contains("Examples:\n  berth "), "{cmd:?}: {out}");
    }
    let out = assert_success(&s.run(&["attach", "--help"]), "attach --help");
    assert!(out.contains("Stdin is not connected"), "{out}");
    // `--sig-proxy` alone is `--sig-proxy=true`, as Docker's boolean flags.
    let out = s.run(&["attach", "--sig-proxy", "nosuch"]);
    assert_eq!(code(&out), 1, "{}", printed(&out));
    assert!(
        printed(&out).contains("no such container: nosuch"),
        "{}",
        printed(&out)
    );
    let out = s.run(&["attach", "--stdin", "x"]);
    assert_eq!(code(&out), 2, "{}", printed(&out));
}

#[test]
fn attach_ends_quietly_when_its_reader_goes_away() {
    let Some(s) = ROOT.sandbox() else { return };
    let id = s
        .ok(&["run", "-d", "busybox", "sh", "-c", "sleep 30; exit 5"])
        .trim()
        .to_owned();
    let start = Instant::now();
    let mut child = s
        .cmd()
        .args(["attach", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", printed(&out));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(printed(&out).is_empty(), "{}", printed(&out));
    // The container goes on.
    assert!(s.ok(&["ps", "-q"]).contains(&id[..12]));
    s.ok(&["rm", "-f", &id]);
    s.assert_clean();
}
