//! The container runtime: an OCI runtime spec and a rootfs in, an isolated process and its
//! exit code out. Knows nothing of images (DESIGN.md): `cli` turns an image config and
//! `run` flags into [`spec::ProcessSettings`] and a [`RootfsSource`].
//!
//! | module | in → out |
//! |---|---|
//! | [`spec`] | process settings → an OCI [`Spec`] with Docker's defaults |
//! | [`rootfs`] | spec + rootfs source → the mount plan (a value) → applied through [`sys::Sys`] |
//! | [`init`] | `berth __init BUNDLE`: namespaces, PID 1, signal forwarding, exit codes |
//! | [`exec`] | a process started in a running container (`berth exec`, health checks): PID 1 found through pidfds, its namespaces, cgroup and privileges joined |
//! | [`contract`] | what the spec tells the init beyond OCI (annotations) and what the init answers (exit codes); the signals it forwards |
//! | [`user`] | `USER` + the container's passwd/group → ids, groups, home |
//! | [`privileges`] | user, groups, capabilities, seccomp → applied in a tested order |
//! | [`caps`] | the spec's capability sets → the process's |
//! | [`seccomp`] | the default profile → BPF programs |
//! | [`cgroups`] | `linux.resources` → a v1 or v2 cgroup holding the container; cleanup |
//! | [`sys`] | every call the init and PID 1 make (namespaces, mounts, pivot, hostname, network, seccomp, ids, capabilities, rlimits, fds, fork, the sync pipe, signals, reaping, exec, the parent-death signal, the controlling terminal, cgroup files, the container's passwd and PATH lookups), behind one trait; [`sys::linux`] makes them, [`sys::recording`] records them for tests; on berth's own side, the pseudo-terminal's master (tty) calls nix directly |
//! | [`fuse`] | fuse-overlayfs: which program mounts overlays (`BERTH_MOUNT_PROGRAM`), the rootless fallback where the kernel refuses overlayfs |
//! | [`net`] | bridge networks as root: the bridge, a veth pair per container, nftables rules in berth's table (`ip`, `nft`) |
//! | [`slirp`] | a private network without root: slirp4netns started on the container's network namespace |
//! | [`userns`] | rootless: the user namespace berth enters at start, its id mapping from `/etc/subuid` |
//! | [`pause`] | rootless: the pause process that holds that namespace between commands; its pidfile, checked before it is joined |
//! | [`tty`] | `run -t`: the pseudo-terminal between the user and the container |
//! | [`relay`] | without a terminal: the pipes that are the container's stdio (`run`, `exec`), copied to and from berth's own |
//! | [`views`] | overlay views mounted in a thread's private mount namespace (the builder's COPY) |
//! | [`Bundle`] | a container's directory: `config.json`, `rootfs.json`, the init process |
//!
//! The init is `berth` re-executed through `/proc/self/exe` with the hidden `__init`
//! subcommand: a fresh single-threaded process, so it can fork safely. The one exception is
//! `berth run` in the foreground without a terminal: when it runs a single thread it forks
//! the init directly ([`init::run_foreground_forked`]), saving a process start-up; the
//! builder, which runs threads, and `-t`, which copies the terminal on threads, always exec. With `--init`, PID 1 runs [`pid1`] (non-dumpable) with the command as its child.

pub mod caps;
pub mod cgroups;
pub mod contract;
pub mod exec;
pub mod fuse;
pub mod init;
pub mod net;
pub mod pause;
pub mod pid1;
pub mod privileges;
pub mod relay;
pub mod rootfs;
pub mod seccomp;
pub mod slirp;
pub mod spec;
pub mod sys;
pub mod tty;
pub mod user;
pub mod userns;
pub mod views;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use oci_spec::runtime::Spec;
pub use rootfs::RootfsSource;

/// `PATH` when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime spec: {0}")]
    Spec(String),
    #[error("{what}: {errno}")]
    Setup { what: String, errno: nix::Error },
    #[error("capabilities: {0}")]
    Capabilities(String),
    #[error("network: {0}")]
    Network(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// `exec` and the tools that reach into a running container: it is not (any longer), or
    /// not yet, there to join.
    #[error("{0}")]
    Container(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// The container's stdio: pipes copied to berth's own stdout and stderr ([`relay`]), and
/// with `interactive` from its stdin (else `/dev/null`); with a terminal, stdio is that
/// terminal.
#[derive(Debug, Default)]
pub struct RunIo {
    pub interactive: bool,
    pub terminal: Option<tty::Terminal>,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
    pub oom_killed: bool,
}

/// A container's directory: the spec, the rootfs source, and the mount point.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    /// Writes `config.json` and `rootfs.json` into `dir` (which must exist), readable by
    /// the user running berth alone: the spec holds the container's environment (`-e`
    /// values, often secrets). The store's rule for its files (berth-store's `files`).
    pub fn write(dir: &Path, spec: &Spec, source: &RootfsSource) -> Result<Bundle, RuntimeError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| RuntimeError::Io { what, source }
        };
        let config = serde_json::to_vec(spec).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        write_private(&dir.join("config.json"), &config).map_err(io("writing config.json"))?;
        write_private(
            &dir.join("rootfs.json"),
            &serde_json::to_vec(source).expect("plain data"),
        )
        .map_err(io("writing rootfs.json"))?;
        if let Some(root) = spec.root() {
            // Covered by the container's root once mounted: its own mode is never seen.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root.path())
                .map_err(io("creating the rootfs mount point"))?;
        }
        Ok(Bundle {
            dir: dir.to_owned(),
        })
    }

    /// Sets (or, with `None`, removes) the container's bridge attachment in its
    /// `config.json`: the caller takes an address at each start and hands it to the init
    /// this way.
    pub fn set_attachment(&self, attachment: Option<&net::Attachment>) -> Result<(), RuntimeError> {
        let (mut spec, _) = init::read_bundle(&mut sys::linux::LinuxSys, &self.dir)?;
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        match attachment {
            Some(a) => {
                a.check()?;
                annotations.insert(
                    contract::ANNOTATION_NETWORK.to_owned(),
                    serde_json::to_string(a).expect("plain data"),
                );
            }
            None => {
                annotations.remove(contract::ANNOTATION_NETWORK);
            }
        }
        spec.set_annotations(Some(annotations));
        let config = serde_json::to_vec(&spec).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        write_private(&self.dir.join("config.json"), &config).map_err(|source| RuntimeError::Io {
            what: "writing config.json".into(),
            source,
        })
    }

    /// The container's cgroup, when its spec asks for one.
    fn cgroup(&self) -> Result<Option<cgroups::Cgroup>, RuntimeError> {
        let (spec, _) = init::read_bundle(&mut sys::linux::LinuxSys, &self.dir)?;
        Ok(spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| {
                cgroups::Cgroup::for_limits(
                    &mut sys::linux::LinuxSys,
                    &p.to_string_lossy(),
                    &cgroups::Limits::from_spec(&spec),
                )
            }))
    }

    /// Runs the container in the foreground (signals forwarded), then kills whatever is left in
    /// its cgroup and removes the cgroup; says whether the OOM killer struck.
    pub fn run(&self, exe: &Path, io: RunIo) -> Result<Outcome, RuntimeError> {
        let cgroup = self.cgroup()?;
        let mut command = self.init_command(exe);
        let result = match io.terminal {
            None => {
                // Pipes berth copies, never berth's own descriptors (relay.rs).
                let (relay, stdio) = relay::Relay::new(io.interactive)?;
                if sys::linux::single_threaded() {
                    init::run_foreground_forked(&self.dir, stdio, relay)
                } else {
                    let [i, o, e] = stdio;
                    command.stdin(i).stdout(o).stderr(e);
                    let copying = relay.start()?;
                    let result = init::run_foreground(command);
                    copying.finish();
                    result
                }
            }
            Some(mut terminal) => {
                // Signals blocked before the copy threads start, so only the supervisor
                // receives them.
                init::block_signals()?;
                let [i, o, e] = terminal.slave_stdio()?;
                command.stdin(i).stdout(o).stderr(e);
                terminal.raw_mode()?;
                let output = terminal.start_copying(io.interactive)?;
                let master = terminal.close_slave();
                let result = init::run_foreground_with(command, &mut |signal| {
                    if signal == nix::sys::signal::Signal::SIGWINCH {
                        master.resize();
                        false
                    } else {
                        true
                    }
                });
                drop(master);
                let _ = output.join();
                result
            }
        };
        Bundle::finish(cgroup, result)
    }

    /// Runs the container with the given stdout and stderr (stdin is `/dev/null`) and waits
    /// for it without touching the process's signal mask, so several may run at once from
    /// different threads (the builder's parallel stages). Then, as [`Bundle::run`], cleans up
    /// its cgroup.
    ///
    /// `inherit`: descriptors the init receives under the same numbers, for mount sources
    /// named `/proc/thread-self/fd/N` in the spec ([`fd_source`], [`detached_tree`]): the init
    /// mounts what each descriptor was opened on, whatever its path names by then. They stay close-on-exec in
    /// this process (a container started meanwhile by another thread never gets them) and are
    /// closed, with every descriptor above 2, before the container's command runs.
    pub fn run_captured(
        &self,
        exe: &Path,
        stdout: std::process::Stdio,
        stderr: std::process::Stdio,
        inherit: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<Outcome, RuntimeError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let cgroup = self.cgroup()?;
        let mut command = self.init_command(exe);
        command
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if !inherit.is_empty() {
            let fds: Vec<i32> = inherit.iter().map(|fd| fd.as_raw_fd()).collect();
            // SAFETY: the closure runs in the child between fork and exec; it only reads a
            // vector built before the fork and calls fcntl, which is async-signal-safe. The
            // descriptors are open: `inherit` borrows them for the length of this call.
            unsafe {
                command.pre_exec(move || {
                    for &fd in &fds {
                        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let io = |source| RuntimeError::Io {
            what: "running the container init".into(),
            source,
        };
        let mut child = command.spawn().map_err(io)?;
        drop(command);
        let status = child.wait().map_err(io)?;
        let exit_code = {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(contract::EXIT_SETUP)
        };
        Bundle::finish(cgroup, Ok(exit_code))
    }

    /// The outcome of a container that ended with `exit_code`: whether the OOM killer struck
    /// in its cgroup, which is then removed with whatever is left in it.
    fn finish(
        cgroup: Option<cgroups::Cgroup>,
        exit_code: Result<i32, RuntimeError>,
    ) -> Result<Outcome, RuntimeError> {
        let oom_killed = cgroup
            .as_ref()
            .is_some_and(|c| c.oom_killed(&mut sys::linux::LinuxSys));
        if let Some(c) = &cgroup {
            c.destroy(&mut sys::linux::LinuxSys)?;
        }
        Ok(Outcome {
            exit_code: exit_code?,
            oom_killed,
        })
    }

    /// The init command for this bundle: `<exe> __init <dir>`; the caller spawns it with the
    /// stdio it wants and waits for its exit code.
    pub fn init_command(&self, exe: &Path) -> Command {
        let mut c = Command::new(exe);
        c.arg("__init").arg(&self.dir);
        c
    }
}

/// A copy of the mount tree at `fd` (a file or directory, with the mounts below it),
/// detached: not in any mount namespace, so nothing can reach it by a path, and fixed to what
/// `fd` was opened on. Made by the caller in its own mount namespace (`open_tree` with
/// `OPEN_TREE_CLONE | AT_RECURSIVE`) and handed to a container's init as a mount source
/// named by [`fd_source`]: a bind of it is attached as it is (a mount of another namespace
/// cannot be cloned again from inside a new one), an overlay takes it as a lower layer
/// (`lowerdir=/proc/self/fd/N`).
pub fn detached_tree(
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<std::os::fd::OwnedFd, RuntimeError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_RECURSIVE as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: `fd` is open for the length of the call and the path is a NUL-terminated
    // literal; open_tree returns a new descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if rc < 0 {
        return Err(RuntimeError::Setup {
            what: "cloning a mount source".into(),
            errno: nix::Error::last(),
        });
    }
    // SAFETY: open_tree returned a fresh descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(rc as i32) })
}

/// The mount source that names handed-down descriptor `fd` in the init:
/// `/proc/thread-self/fd/N` (the init is single-threaded, so this is its `/proc/self/fd/N`).
/// The form is reserved for trees handed down: the init's own held paths are
/// `/proc/self/fd/N`. Pass the descriptor (a [`detached_tree`]) in [`Bundle::run_captured`]'s
/// `inherit`.
pub fn fd_source(fd: std::os::fd::BorrowedFd<'_>) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("{FD_SOURCE_PREFIX}{}", fd.as_raw_fd()))
}

const FD_SOURCE_PREFIX: &str = "/proc/thread-self/fd/";

/// The descriptor a bind source names when it is a handed-down tree ([`fd_source`]).
pub(crate) fn handed_down_tree(source: &Path) -> Option<i32> {
    source
        .to_str()?
        .strip_prefix(FD_SOURCE_PREFIX)?
        .parse()
        .ok()
        .filter(|&fd: &i32| fd > 2)
}

/// Writes a file only its owner can read (`0600` whatever the umask), never through a
/// symlink at `path`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the form [`fd_source`] writes names a handed-down tree: the init's own held
    /// paths (`/proc/self/fd/N`), stdio and anything else are bound as paths.
    #[test]
    fn only_fd_sources_are_handed_down_trees() {
        let fd = std::fs::File::open("/").unwrap();
        let source = fd_source(std::os::fd::AsFd::as_fd(&fd));
        assert_eq!(
            handed_down_tree(&source),
            Some(std::os::fd::AsRawFd::as_raw_fd(&fd))
        );
        for other in [
            "/proc/self/fd/7",
            "/proc/thread-self/fd/1",
            "/proc/thread-self/fd/7/x",
            "/proc/thread-self/fd/-7",
            "/data",
        ] {
            assert_eq!(handed_down_tree(Path::new(other)), None, "{other}");
        }
    }
}
