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
    /// Forks the launcher; the caller (the init) runs a single thread. With `api`, slirp4netns
    /// listens for API requests there ([`publish`]).
    pub fn fork(api: Option<&std::path::Path>) -> Result<Launcher, RuntimeError> {
        let api = api.map(|p| format!("--api-socket={}", p.display()));
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
            // The init blocks the signals it forwards; slirp4netns must not inherit that mask
            // (a blocked SIGCHLD keeps it from ever reaching its API socket's setup).
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            let init = nix::unistd::getppid().as_raw().to_string();
            let err = std::process::Command::new("slirp4netns")
                .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
                .args(api.iter())
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

/// A private directory (`mkdtemp`, 0700) for slirp4netns's API socket, held by descriptors:
/// once PID 1 has called `pivot_root` in the mount namespace it shares with the init, the
/// init's `/` is the container's, where the directory's path leads nowhere.
#[derive(Debug)]
pub struct ApiDir {
    parent: OwnedFd,
    dir: OwnedFd,
    name: std::ffi::OsString,
    path: std::path::PathBuf,
}

const API_SOCKET: &str = "api.sock";

impl ApiDir {
    /// Makes the directory under the temporary directory.
    pub fn create() -> Result<ApiDir, RuntimeError> {
        let open = |p: &std::path::Path| {
            nix::fcntl::open(
                p,
                nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC
                    | nix::fcntl::OFlag::O_NOFOLLOW,
                nix::sys::stat::Mode::empty(),
            )
        };
        let path = nix::unistd::mkdtemp(&std::env::temp_dir().join("berth-slirp-XXXXXX"))
            .map_err(setup("making slirp4netns's API directory"))?;
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(setup("making slirp4netns's API directory")(
                nix::Error::EINVAL,
            ));
        };
        Ok(ApiDir {
            parent: open(parent).map_err(setup("opening the temporary directory"))?,
            dir: open(&path).map_err(setup("opening slirp4netns's API directory"))?,
            name: name.to_owned(),
            path,
        })
    }

    /// The socket's path, for slirp4netns (started in the host's mount namespace).
    pub fn socket(&self) -> std::path::PathBuf {
        self.path.join(API_SOCKET)
    }

    /// A connection to the socket, through the directory's descriptor (the working
    /// directory is moved there for the `connect` and back).
    fn connect(&self) -> std::io::Result<std::os::unix::net::UnixStream> {
        let here = nix::fcntl::open(
            ".",
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        nix::unistd::fchdir(&self.dir)?;
        let stream = std::os::unix::net::UnixStream::connect(API_SOCKET);
        nix::unistd::fchdir(&here)?;
        stream
    }
}

impl Drop for ApiDir {
    fn drop(&mut self) {
        let _ = nix::unistd::unlinkat(
            &self.dir,
            API_SOCKET,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        let _ = nix::unistd::unlinkat(
            &self.parent,
            self.name.as_os_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        );
    }
}

/// Asks slirp4netns (listening in `api`) to forward each port from the host to the
/// container's `tap0` (`add_hostfwd`); its error, such as a host port in use, fails the start.
pub fn publish(api: &ApiDir, ports: &[crate::net::Port]) -> Result<(), RuntimeError> {
    for p in ports {
        let request = serde_json::json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": p.proto.as_str(),
                "host_addr": p.host_ip.map_or("0.0.0.0".to_owned(), |i| i.to_string()),
                "host_port": p.host_port,
                "guest_port": p.container_port,
            }
        });
        let failed = |what: String| RuntimeError::Network(format!("-p {}: {what}", p.host_port));
        // slirp4netns listens only once it has said tap0 is ready: a short wait covers it.
        let mut stream = None;
        for _ in 0..50 {
            match api.connect() {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        let mut stream =
            stream.ok_or_else(|| failed("slirp4netns's API socket does not answer".into()))?;
        stream
            .write_all(request.to_string().as_bytes())
            .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
            .map_err(|e| failed(e.to_string()))?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(64 << 10)
            .read_to_end(&mut answer)
            .map_err(|e| failed(e.to_string()))?;
        let answer: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| failed(format!("slirp4netns's answer: {e}")))?;
        if let Some(e) = answer.get("error") {
            let desc = e["desc"].as_str().unwrap_or("refused").to_owned();
            return Err(failed(desc));
        }
    }
    Ok(())
}
