//! The unprivileged user that root's tests run `berth` as, to compare rootless with root:
//! `berth-rootless` (or `BERTH_ROOTLESS_USER`), with subordinate ids, made by
//! `scripts/test-rootless --setup`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An unprivileged user with a directory of its own for stores and contexts (removed, through
/// `berth unshare`, on drop).
#[derive(Debug)]
pub struct RootlessUser {
    pub name: String,
    pub uid: u32,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl RootlessUser {
    /// The user, when the tests run as root and it exists with ranges in `/etc/subuid`;
    /// otherwise `None`, after the test said it skips (a failure under `BERTH_NO_SKIP=1`).
    #[track_caller]
    pub fn get(bin: &str) -> Option<RootlessUser> {
        if !crate::needs_root("runs berth as another user") {
            return None;
        }
        let name = std::env::var("BERTH_ROOTLESS_USER").unwrap_or_else(|_| "berth-rootless".into());
        let user = std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 3 && f[0] == name)
                    .then(|| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)))
                    .flatten()
            });
        let ranges = std::fs::read_to_string("/etc/subuid")
            .is_ok_and(|t| t.lines().any(|l| l.starts_with(&format!("{name}:"))));
        let Some((uid, gid)) = user.filter(|_| ranges) else {
            crate::skip(&format!(
                "user {name} with subordinate ids (scripts/test-rootless --setup makes it)"
            ));
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("berth-rootless-")
            .tempdir_in(
                std::env::var_os("BERTH_TEST_TMP").map_or_else(std::env::temp_dir, PathBuf::from),
            )
            .expect("a directory for the user");
        rustix::fs::chown(
            dir.path(),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .expect("chown");
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("a runtime directory for the user");
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        rustix::fs::chown(
            &run,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .expect("chown");
        Some(RootlessUser {
            name,
            uid,
            bin: bin.into(),
            dir,
        })
    }

    /// The user's directory (0700, the user's own).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The user's runtime directory (`XDG_RUNTIME_DIR`, 0700, the user's own): the pause
    /// process's pidfile is in `berth/` there, so each test's commands share one.
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `berth` as the user, with a store at `<dir>/store`, the runtime directory
    /// [`RootlessUser::runtime_dir`] and a clean environment but `env`.
    pub fn berth(&self, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.name, "--", "env", "-i"])
            .arg(format!("HOME={}", self.dir.path().display()))
            .arg(format!("USER={}", self.name))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime_dir().display()))
            .arg(format!(
                "BERTH_ROOT={}",
                self.dir.path().join("store").display()
            ))
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(&self.bin)
            .current_dir(self.dir.path());
        c
    }

    /// Gives the user a tree root made (`chown -R`), so that it can read it as a context.
    pub fn give(&self, path: &Path) {
        let status = Command::new("chown")
            .args(["-R", &self.name])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success());
    }
}

impl Drop for RootlessUser {
    /// Removes the store, then stops the pause process the test's commands shared.
    fn drop(&mut self) {
        let _ = self
            .berth(&[])
            .args(["unshare", "rm", "-rf", "--"])
            .arg(self.dir.path().join("store"))
            .output();
        let _ = self.berth(&[]).args(["system", "migrate"]).output();
    }
}
