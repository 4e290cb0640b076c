//! A container's network without root: slirp4netns (Debian's `slirp4netns`) joins the
//! container's network namespace to make `tap0` (10.0.2.100/24, gateway 10.0.2.2, DNS
//! 10.0.2.3), then carries its traffic out through sockets of its own in the host's network
//! namespace: outbound connections work as they would for the user, and `10.0.2.2` does not
//! lead to the host's loopback (`--disable-host-loopback`).
//!
//! The init unshares its namespaces before it forks PID 1, so slirp4netns must be started
//! from a process left in the host's network namespace: [`Launcher::fork`], called before the
//! unshare, forks one that waits; [`Launcher::start`], after it, lets it exec slirp4netns on
//! the init's namespace and waits until `tap0` is up. slirp4netns ends when the init does
//! (its `--exit-fd` is a pipe whose other end only the init holds).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;

use crate::RuntimeError;

/// The launcher forked before the unshare, waiting for [`Launcher::start`].
#[derive(Debug)]
pub struct Launcher {
    go: std::fs::File,
    ready: std::fs::File,
    /// The write end of slirp4netns's `--exit-fd`: held for the init's life.
    _exit: OwnedFd,
}

fn setup(what: &str) -> impl FnOnce(nix::Error) -> RuntimeError + '_ {
    move |errno| RuntimeError::Setup {
        what: what.to_owned(),
        errno,
    }
}

impl Launcher {
    /// Forks the launcher; the caller (the init) runs a single thread.
    pub fn fork() -> Result<Launcher, RuntimeError> {
        let (exit_read, exit_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(setup("making slirp4netns's exit pipe"))?;
        let (go, ready, _pid) = crate::sys::linux::fork_helper(move |mut go, ready| {
            let mut byte = [0u8];
            if go.read(&mut byte).ok() != Some(1) {
                return;
            }
            // slirp4netns inherits these two: the end it reports readiness on, and the end
            // whose closing (the init gone) ends it.
            let inherit = || nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
            if nix::fcntl::fcntl(&ready, inherit()).is_err()
                || nix::fcntl::fcntl(&exit_read, inherit()).is_err()
            {
                return;
            }
            let init = nix::unistd::getppid().as_raw().to_string();
            let err = std::process::Command::new("slirp4netns")
                .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
                .arg(format!("--ready-fd={}", ready.as_raw_fd()))
                .arg(format!("--exit-fd={}", exit_read.as_raw_fd()))
                .args([init.as_str(), "tap0"])
                // It reports every step on stderr; a failure shows as tap0 never coming up.
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .exec();
            eprintln!("berth: starting slirp4netns: {err}");
        })
        .map_err(setup("forking slirp4netns's launcher"))?;
        Ok(Launcher {
            go,
            ready,
            _exit: exit_write,
        })
    }

    /// Starts slirp4netns on this process's network namespace (made since [`Launcher::fork`])
    /// and waits until `tap0` is configured.
    pub fn start(&mut self) -> Result<(), RuntimeError> {
        self.go.write_all(b"g").map_err(|e| {
            setup("starting slirp4netns")(nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))
        })?;
        let mut byte = [0u8];
        match self.ready.read(&mut byte) {
            Ok(1) if byte[0] == b'1' => Ok(()),
            // The launcher, or slirp4netns, ended without configuring tap0 (it said why).
            _ => Err(RuntimeError::Setup {
                what: "configuring the network through slirp4netns (is it installed, and \
                       /dev/net/tun open to this user?)"
                    .into(),
                errno: nix::Error::EIO,
            }),
        }
    }
}
