//! The store against other local users, and container records against PID reuse.
//!
//! After an import, a kept container, a detached one, a named volume and a build with a cache
//! mount, a process running as uid 65534 can neither look into the store, nor exec a setuid
//! file from a snapshot, a container's upper dir, a volume or a cache mount, nor open a lock
//! file (an open descriptor is all `flock` needs to hang every berth command). A store made
//! with open modes by an older berth is closed by the next command. A container record whose
//! PID now belongs to an unrelated process never gets that process signalled. Volume names
//! cannot climb out of `volumes/`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_test_support::{Sandbox, Tier};

const NOBODY: u32 = 65534;

/// A root sandbox whose own directory any user may traverse, so that only the store's modes
/// stand between another user and the store.
const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth")).open_to_others();

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `program args` as uid/gid 65534 with no supplementary groups; `Err` when it cannot
/// even start (the exec itself was refused).
fn as_nobody(program: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .current_dir("/")
        .output()
}

/// Whether uid 65534 can `stat` the path.
fn nobody_can_stat(path: &Path) -> bool {
    as_nobody(
        Path::new(berth_test_support::BUSYBOX),
        &["stat", path.to_str().unwrap()],
    )
    .unwrap()
    .status
    .success()
}

/// Whether uid 65534 can open the path for reading.
fn nobody_can_open(path: &Path) -> bool {
    as_nobody(
        Path::new(berth_test_support::BUSYBOX),
        &["cat", path.to_str().unwrap()],
    )
    .unwrap()
    .status
    .success()
}

/// Whether uid 65534 can exec the file (a busybox named `id`: prints the uid it runs as).
fn nobody_can_exec(path: &Path) -> Option<String> {
    match as_nobody(path, &["-u"]) {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        _ => None,
    }
}

fn only_dir(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "{}: {entries:?}", dir.display());
    entries.into_iter().next().unwrap()
}

fn container_dir(s: &Sandbox, name: &str) -> PathBuf {
    for entry in std::fs::read_dir(s.store().join("containers")).unwrap() {
        let dir = entry.unwrap().path();
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("container.json")).unwrap()).unwrap();
        if record["name"] == name {
            return dir;
        }
    }
    panic!("no container named {name}");
}

fn setuid_image(s: &Sandbox) {
    let rootfs = s.path().join("suid-rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    std::fs::create_dir(rootfs.join("suid")).unwrap();
    let id = rootfs.join("suid/id");
    std::fs::copy(berth_test_support::BUSYBOX, &id).unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755)).unwrap();
    s.ok(&["import", rootfs.to_str().unwrap(), "suid"]);
}

#[test]
fn other_users_cannot_enter_the_store_exec_its_setuid_files_or_take_its_locks() {
    let Some(s) = ROOT.sandbox() else { return };
    let store = s.store();
    assert!(
        nobody_can_stat(s.path()),
        "precondition: uid {NOBODY} reaches the sandbox"
    );
    setuid_image(&s);
    s.ok(&[
        "run",
        "--name",
        "kept",
        "-v",
        "vol1:/data",
        "suid",
        "sh",
        "-c",
        "mkdir /up && cp /bin/busybox /up/id && chmod 4755 /up/id /data && cp /up/id /data/id && chmod 4755 /data/id",
    ]);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "-e",
        "PASSWORD=hunter2",
        "suid",
        "sh",
        "-c",
        "echo started; sleep 1000",
    ]);
    let _bg = Removed(&s, "bg");
    let ctx = s.context("ctx", &[("Dockerfile", "FROM suid\nRUN --mount=type=cache,id=c1,target=/c cp /bin/busybox /c/id && chmod 4755 /c/id\n")]);
    s.ok(&["build", "-q", "-t", "built", ctx.to_str().unwrap()]);

    // Setuid files where an image, a container, a volume and a cache mount keep them.
    let snapshot = std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("suid/id"))
        .find(|p| p.exists())
        .expect("the setuid file in a snapshot");
    let kept = container_dir(&s, "kept");
    let bg = container_dir(&s, "bg");
    let cache_mount = only_dir(&store.join("cache-mounts"));
    let setuid = [
        snapshot,
        kept.join("upper/up/id"),
        store.join("volumes/vol1/_data/id"),
        cache_mount.join("data/id"),
    ];
    for file in &setuid {
        assert_eq!(mode(file), 0o4755, "{}", file.display());
        assert_eq!(
            nobody_can_exec(file),
            None,
            "uid {NOBODY} ran the setuid file {}",
            file.display()
        );
        assert!(!nobody_can_stat(file), "{}", file.display());
    }
    assert!(
        !as_nobody(
            Path::new(berth_test_support::BUSYBOX),
            &["ls", store.to_str().unwrap()]
        )
        .unwrap()
        .status
        .success(),
        "uid {NOBODY} lists the store"
    );
    for path in [
        store.join("index.json"),
        store.join("blobs/sha256"),
        store.join("snapshots"),
        store.join("containers"),
        kept.join("upper"),
        bg.join("config.json"),
        bg.join("log"),
        store.join("volumes/vol1/_data"),
        store.join("cache-mounts"),
        store.join("tmp"),
    ] {
        assert!(
            !nobody_can_stat(&path),
            "uid {NOBODY} reaches {}",
            path.display()
        );
    }
    // Locks: any descriptor is enough to flock them.
    let locks = [
        store.join("locks/store.lock"),
        store.join("locks/index.lock"),
        cache_mount.join("lock"),
    ];
    for lock in &locks {
        assert!(lock.is_file(), "{}", lock.display());
        assert!(
            !nobody_can_open(lock),
            "uid {NOBODY} opened {}",
            lock.display()
        );
        assert_eq!(mode(lock), 0o600, "{}", lock.display());
    }
    // Modes, whatever the path above them.
    assert_eq!(mode(&store), 0o700);
    for dir in [
        "snapshots",
        "containers",
        "volumes",
        "cache-mounts",
        "locks",
        "tmp",
    ] {
        assert_eq!(mode(&store.join(dir)), 0o700, "{dir}");
    }
    for file in ["config.json", "log", "container.json", "rootfs.json"] {
        assert_eq!(mode(&bg.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&kept), 0o700);
    // The container still sees its own root as the image made it, and reads its /etc files.
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "-u",
            "65534",
            "suid",
            "sh",
            "-c",
            "cat /etc/hostname >/dev/null && ls / >/dev/null && echo ok"
        ]),
        "ok\n"
    );
    assert_eq!(s.ok(&["logs", "bg"]), "started\n");
    s.ok(&["rm", "-f", "bg"]);
    s.assert_clean();
}

#[test]
fn an_old_open_store_is_closed_by_the_next_command() {
    let Some(s) = ROOT.sandbox() else { return };
    let store = s.store();
    s.ok(&["run", "--name", "cc", "-v", "v1:/v", "busybox", "true"]);
    // What an older berth left: everything open to every user.
    let open_dirs = [
        "",
        "blobs",
        "blobs/sha256",
        "snapshots",
        "containers",
        "locks",
        "tmp",
        "volumes",
        "cache",
        "cache-mounts",
        "contexts",
    ];
    for dir in open_dirs {
        std::fs::set_permissions(store.join(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for lock in ["locks/store.lock", "locks/index.lock"] {
        std::fs::set_permissions(store.join(lock), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert!(nobody_can_stat(&store.join("snapshots")));
    s.ok(&["images"]);
    for dir in open_dirs {
        assert_eq!(mode(&store.join(dir)) & 0o077, 0, "{dir:?} still open");
    }
    for lock in ["locks/store.lock", "locks/index.lock"] {
        assert_eq!(mode(&store.join(lock)), 0o600, "{lock}");
    }
    assert!(!nobody_can_stat(&store.join("snapshots")));
    s.assert_clean();
}

#[test]
fn a_lock_that_is_a_symlink_or_not_ours_is_refused() {
    let Some(s) = ROOT.sandbox() else { return };
    let store = s.store();
    let target = s.path().join("elsewhere");
    std::fs::write(&target, "untouched").unwrap();
    let lock = store.join("locks/index.lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let out = s.run(&["tag", "busybox", "other"]);
    assert!(!out.status.success(), "a symlinked lock was followed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("index.lock"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    assert_eq!(mode(&target), 0o644, "the symlink's target was changed");

    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, "").unwrap();
    std::os::unix::fs::chown(&lock, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = s.run(&["tag", "busybox", "other"]);
    assert!(
        !out.status.success(),
        "a lock owned by another user was used"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("index.lock") && err.contains("owned"), "{err}");
}

/// A non-root user's own store works under the same rules.
#[test]
fn a_rootless_store_still_works() {
    let Some(s) = ROOT.sandbox() else { return };
    let home = s.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    // The user's own files, as a rootless user imports them: inside berth's user namespace
    // they are root's (the host's root would show as the unmapped `nobody`).
    let rootfs = s.path().join("busybox-rootfs");
    let status = Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(status.success());
    let berth = Path::new(env!("CARGO_BIN_EXE_berth"));
    if !nobody_can_stat(berth) {
        berth_test_support::skip(&format!(
            "uid {NOBODY} to reach {} (a rootless run of the binary)",
            berth.display()
        ));
        return;
    }
    // A runtime directory of the user's own, for the pause process that holds berth's user
    // namespace: stopped when the test ends, however it ends.
    let runtime = home.join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&runtime, Some(NOBODY), Some(NOBODY)).unwrap();
    let run = |args: &[&str]| {
        Command::new(berth)
            .args(args)
            .env_remove("BERTH_ROOT")
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("XDG_DATA_HOME")
            .uid(NOBODY)
            .gid(NOBODY)
            .current_dir(&home)
            .output()
            .unwrap()
    };
    struct Migrated<F: Fn(&[&str]) -> std::process::Output>(F);
    impl<F: Fn(&[&str]) -> std::process::Output> Drop for Migrated<F> {
        fn drop(&mut self) {
            (self.0)(&["system", "migrate"]);
        }
    }
    let run = Migrated(run);
    let run = |args: &[&str]| (run.0)(args);
    let out = run(&["import", rootfs.to_str().unwrap(), "mine"]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&["images", "-q"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let root = home.join(".local/share/berth");
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("locks/store.lock")), 0o600);
}

/// A process group ended when the test ends, however it ends.
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}

/// Removes a container when the test ends, however it ends.
struct Removed<'a>(&'a Sandbox, &'a str);

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", self.1]);
    }
}

/// `sh -c 'sleep 1000; true'`: an unrelated process with a child, as a runner would have.
fn unrelated_process() -> Victim {
    let child = Command::new(berth_test_support::BUSYBOX)
        .args(["sh", "-c", "/bin/busybox sleep 1000; true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Until its child exists.
    for _ in 0..200 {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
            .unwrap_or_default();
        if !children.trim().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Victim(child)
}

fn fake_record(s: &Sandbox, name: &str, pid: u32) {
    let id = berth_oci::Digest::of(name.as_bytes()).hex().to_owned();
    let dir = s.store().join("containers").join(&id);
    std::fs::create_dir(&dir).unwrap();
    let image: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "busybox"])).unwrap();
    let digest = image[0]["Descriptor"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = serde_json::json!({
        "id": id,
        "name": name,
        "image": digest,
        "image_name": "busybox",
        "command": ["sleep", "1000"],
        "created": "2024-01-01T00:00:00Z",
        "status": "running",
        "pid": pid,
        // Not the start time of the process that holds this PID now.
        "pid_start": 1,
    });
    std::fs::write(
        dir.join("container.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_reused_pid_is_never_signalled() {
    let Some(s) = ROOT.sandbox() else { return };
    let mut victim = unrelated_process();
    let pid = victim.0.id();
    fake_record(&s, "stale", pid);
    let ps = s.ok(&["ps", "-q"]);
    assert!(ps.trim().is_empty(), "a reused PID shows as running: {ps}");
    let _ = s.run(&["stop", "-t", "1", "stale"]);
    let _ = s.run(&["kill", "stale"]);
    let _ = s.run(&["kill", "-s", "TERM", "stale"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        victim.0.try_wait().unwrap().is_none(),
        "stop/kill signalled an unrelated process"
    );
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert!(
        !children.trim().is_empty(),
        "kill signalled the child of an unrelated process"
    );
    s.ok(&["rm", "-f", "stale"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        victim.0.try_wait().unwrap().is_none(),
        "rm -f signalled an unrelated process"
    );
    assert!(s.ok(&["ps", "-a", "-q"]).trim().is_empty());
}

/// The real thing still works: a detached container is stopped and killed through its record.
#[test]
fn stop_and_kill_still_reach_a_real_container() {
    let Some(s) = ROOT.sandbox() else { return };
    let _guards = [
        Removed(&s, "real"),
        Removed(&s, "real2"),
        Removed(&s, "real3"),
    ];
    s.ok(&["run", "-d", "--name", "real", "busybox", "sleep", "1000"]);
    assert_eq!(s.ok(&["ps", "-q"]).lines().count(), 1);
    s.ok(&["stop", "-t", "1", "real"]);
    assert!(s.ok(&["ps", "-q"]).trim().is_empty());
    s.ok(&["run", "-d", "--name", "real2", "busybox", "sleep", "1000"]);
    s.ok(&["kill", "real2"]);
    assert_eq!(s.ok(&["wait", "real2"]).trim(), "137");
    s.ok(&["run", "-d", "--name", "real3", "busybox", "sleep", "1000"]);
    s.ok(&["rm", "-f", "real3"]);
    assert!(s.ok(&["ps", "-a", "-q"]).lines().count() == 2);
}

#[test]
fn volume_names_cannot_climb_out_of_volumes() {
    let Some(s) = ROOT.sandbox() else { return };
    for bad in ["..", ".", "a/b", "../x", ".hidden", "a:b"] {
        let spec = format!("{bad}:/x");
        let out = s.run(&["run", "--rm", "-v", &spec, "busybox", "true"]);
        assert_eq!(out.status.code(), Some(125), "-v {spec}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid volume"), "-v {spec}: {err}");
    }
    let store = s.store();
    assert!(!store.join("_data").exists(), "`..` made the store's _data");
    let names: Vec<_> = std::fs::read_dir(store.join("volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // Docker's names still work.
    s.ok(&["run", "--rm", "-v", "my_vol-1.0:/x", "busybox", "true"]);
    assert!(store.join("volumes/my_vol-1.0/_data").is_dir());
}
