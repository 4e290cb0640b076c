//! A network namespace of the test's own (`ip netns add berth-t-<pid>-<n>`), deleted when
//! dropped: berth runs in it (`ip netns exec`), so its bridges, nftables rules and
//! containers never touch the host's network namespace, and the test's clients talk to
//! them inside it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A network namespace made for one test, with `lo` up.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl NetNs {
    /// Makes the namespace; panics when `ip netns add` fails.
    pub fn new() -> NetNs {
        let name = format!(
            "berth-t-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = NetNs { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` in the host's namespace, panicking on failure; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("running ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `program` run inside the namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// `berth` (at `bin`, on the store `root`) run inside the namespace, with its own
    /// default networks (the workspace's `.cargo/config.toml` pins others for the suites
    /// that run in the host's namespace).
    pub fn berth(&self, bin: &Path, root: &Path) -> Command {
        let mut c = self.cmd(bin);
        c.env("BERTH_ROOT", root)
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("BERTH_DEFAULT_NETWORK")
            .env_remove("BERTH_DEFAULT_BUILD_NETWORK");
        c
    }

    /// Runs `program ARGS` inside the namespace.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.cmd(program)
            .args(args)
            .output()
            .expect("running in the namespace")
    }

    /// The namespace's links, one per line (`ip -o link`).
    pub fn links(&self) -> String {
        self.ip(&["-n", &self.name, "-o", "link"])
    }

    /// `nft list ruleset` inside the namespace.
    pub fn ruleset(&self) -> String {
        String::from_utf8_lossy(&self.run("nft", &["list", "ruleset"]).stdout).into_owned()
    }
}

impl Default for NetNs {
    fn default() -> Self {
        NetNs::new()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
