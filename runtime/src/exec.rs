//! A process started in a running container (`berth exec`, and health checks): it ends up
//! as confined as the container's own processes. The container's spec (its bundle's
//! `config.json`) is the source of truth for what that means: the same user namespace,
//! mount, PID, UTS, IPC, network and cgroup namespaces and cgroup as PID 1, the same rlimits,
//! seccomp filter, bounding set and capability sets, the user resolved in the container's
//! own `/etc/passwd` and `/etc/group`, the container's environment plus the exec's own.
//!
//! The path:
//!
//! 1. [`ExecTarget::find`] (berth's side): the container's PID 1 from its runner (the
//!    process the record names, checked by its start time): the runner's child is the init,
//!    the init's child whose `NSpid` ends in 1 is PID 1. Each step holds the process's
//!    `/proc/PID` directory, opened before its `stat` is checked: that directory stays bound
//!    to the process it named (a reused PID gets a new one), so what is opened through it
//!    later is that process's or nothing.
//! 2. [`exec_in`] starts `berth __exec` from a sealed memfd copy of berth's binary
//!    ([`sealed_copy`], as runc since CVE-2019-5736: `/proc/PID/exe` of every process it
//!    becomes is that copy, never the host's file, which a process of the container could
//!    otherwise reopen for writing once it holds a handle to it), a fresh single-threaded
//!    process (`setns` into a mount or user namespace needs one), with three descriptors:
//!    PID 1's `/proc` directory, its pidfd, and a memfd holding the [`Plan`].
//! 3. [`main`] (`__exec`), which nothing in the container can see (it stays outside the
//!    container's PID namespace: joining one moves only the children made afterwards):
//!    non-dumpable first (`PR_SET_DUMPABLE` 0); opens PID 1's namespaces through its `/proc`
//!    directory and checks through the pidfd that PID 1 still runs; moves itself into the
//!    container's cgroup (the spec's, as PID 1 did); joins the user namespace when it is not
//!    already in it, then the others; opens the terminal (`-t`); resolves the user in the
//!    container's files, the environment, the working directory (entered, never created:
//!    Docker's exec fails on a missing one) and the command on the container's `PATH`; then
//!    drops its privileges as PID 1's were ([`crate::privileges::become_identity`]: rlimits,
//!    seccomp filter, groups, bounding set, user, capability sets), and only then forks.
//! 4. The child, the first process of this exec the container can see, so holding no more
//!    than the container's own processes: every descriptor above 2 closed at once (none of
//!    berth's reaches the command), the parent-death signal, a session of its own (the
//!    terminal as its controlling terminal with `-t`), signals reset, exec.
//! 5. The parent, with the container's credentials and filter, forwards signals (to a
//!    process of its own user), copies the terminal with `-t`, and exits with the child's
//!    code: 126/127 when the command cannot be run or is not found (126 too for a missing
//!    user or working directory), 128+N for signal N, 125 for a failed setup.
//!
//! A health check from the monitor (the container's runner itself):
//!
//! ```ignore
//! let me = std::process::id();
//! let target = ExecTarget::find(me, start_time_of(me))?;
//! let (spec, _) = init::read_bundle(&mut LinuxSys, &bundle_dir)?;
//! let io = ExecIo::Captured { stdout, stderr };
//! match exec_in(&exe, &target, &spec, &settings, io, Some(timeout))? {
//!     Some(0) => healthy,
//!     Some(_) => unhealthy,
//!     None => timed_out, // the exec'd process was killed (SIGKILL through its parent's death)
//! }
//! ```

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;
use oci_spec::runtime::Spec;

use crate::RuntimeError;
use crate::contract::{
    ANNOTATION_SECCOMP, ANNOTATION_USER, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SETUP,
};
use crate::init::ChildError;
use crate::sys::linux::LinuxSys;
use crate::sys::{Sys, cstrings};

/// What to run, and how; unset fields are the container's.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecSettings {
    pub args: Vec<String>,
    /// `KEY=VALUE` added to (and replacing in) the container's environment.
    pub env: Vec<String>,
    /// `-u`: a user (name or id, `[:group]`), else the container's.
    pub user: Option<String>,
    /// `-w`: the working directory, else the container's.
    pub cwd: Option<String>,
}

/// The exec'd process's stdio.
#[derive(Debug)]
pub enum ExecIo {
    /// Pipes copied to berth's own stdout and stderr, and with `interactive` from its stdin,
    /// else stdin is `/dev/null` ([`crate::relay`]).
    Inherit { interactive: bool },
    /// A terminal (`-t`): a pseudo-terminal of the container's own `devpts`, copied to
    /// berth's stdio (put in raw mode while the command runs when stdin is a terminal and
    /// `interactive`; stdin is copied in only with `interactive`).
    Terminal { interactive: bool },
    /// Given stdout and stderr, stdin `/dev/null` (health checks).
    Captured {
        stdout: std::process::Stdio,
        stderr: std::process::Stdio,
    },
    /// `-d`: nothing connected, not waited for.
    Detached,
}

/// The container's PID 1, held: its `/proc` directory and a pidfd.
#[derive(Debug)]
pub struct ExecTarget {
    proc_dir: OwnedFd,
    pidfd: OwnedFd,
    /// PID 1's PID as berth sees it.
    pub pid: u32,
}

/// What `__exec` reads from its memfd.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Plan {
    spec: Spec,
    settings: ExecSettings,
    terminal: bool,
    interactive: bool,
}

fn io_error(what: &str) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        what: what.to_owned(),
        source,
    }
}

fn setup(what: &str) -> impl FnOnce(nix::Error) -> RuntimeError + '_ {
    move |errno| RuntimeError::Setup {
        what: what.to_owned(),
        errno,
    }
}

/// A process's `/proc/PID` directory and what its `stat` says: `(start time, parent)`.
fn proc_dir(pid: u32) -> Option<(OwnedFd, u64, u32)> {
    let dir = nix::fcntl::open(
        format!("/proc/{pid}").as_str(),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let (start, parent) = stat_of(dir.as_fd())?;
    Some((dir, start, parent))
}

/// `(start time, parent PID)` from the `stat` file of a `/proc/PID` directory; `None` once
/// the process has gone.
fn stat_of(dir: BorrowedFd<'_>) -> Option<(u64, u32)> {
    let text = read_at(dir, "stat", 4096)?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(19)?.parse().ok()?, fields.get(1)?.parse().ok()?))
}

fn read_at(dir: BorrowedFd<'_>, name: &str, limit: u64) -> Option<String> {
    let fd =
        nix::fcntl::openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(limit)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The children of the process whose `/proc` directory is `dir` (PID `pid`).
fn children(dir: BorrowedFd<'_>, pid: u32) -> Vec<u32> {
    read_at(dir, &format!("task/{pid}/children"), 1 << 16)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether the `/proc` directory's process is PID 1 of a PID namespace below berth's
/// (`NSpid` has more than one number and ends in 1).
fn is_namespace_init(dir: BorrowedFd<'_>) -> bool {
    read_at(dir, "status", 1 << 16).is_some_and(|s| namespace_init_status(&s))
}

/// Whether a `status` text's `NSpid` line says PID 1 of a PID namespace below the reader's.
fn namespace_init_status(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() > 1 && ids.last() == Some(&"1")
        })
}

impl ExecTarget {
    /// PID 1 of the container run by `runner` (the process a container record names, or the
    /// monitor itself), which must have started at `runner_start` (field 22 of its `stat`).
    ///
    /// A container just started may not have its PID 1 yet, or PID 1 may still be setting
    /// up its rootfs: joining it then would give the exec the mount tree PID 1 started from
    /// (a copy of the runner's). So PID 1 is taken only once its root differs from the
    /// runner's (it has made its mounts and `pivot_root`ed); until then this waits, up to
    /// 5 s, while the runner runs.
    pub fn find(runner: u32, runner_start: u64) -> Result<ExecTarget, RuntimeError> {
        let not_running = || RuntimeError::Container("the container is not running".into());
        let (runner_dir, start, _) = proc_dir(runner).ok_or_else(not_running)?;
        if start != runner_start {
            return Err(not_running());
        }
        let started = Instant::now();
        loop {
            match Self::find_once(runner, runner_dir.as_fd()) {
                Found::Ready(target) => return Ok(target),
                Found::Gone => return Err(not_running()),
                Found::NotYet if started.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Found::NotYet => {
                    return Err(RuntimeError::Container(
                        "the container's PID 1 did not finish its setup within 5 s".into(),
                    ));
                }
            }
        }
    }

    fn find_once(runner: u32, runner_dir: BorrowedFd<'_>) -> Found {
        if stat_of(runner_dir).is_none() {
            return Found::Gone;
        }
        let root_of = |dir: BorrowedFd<'_>| {
            nix::sys::stat::fstatat(dir, "root", nix::fcntl::AtFlags::empty())
                .ok()
                .map(|s| (s.st_dev, s.st_ino))
        };
        // An init is there: PID 1 is coming, or setting up.
        let mut has_init = false;
        for init in children(runner_dir, runner) {
            let Some((init_dir, _, parent)) = proc_dir(init) else {
                continue;
            };
            if parent != runner {
                continue;
            }
            has_init = true;
            for pid in children(init_dir.as_fd(), init) {
                let Some((dir, started, parent)) = proc_dir(pid) else {
                    continue;
                };
                if parent != init || !is_namespace_init(dir.as_fd()) {
                    continue;
                }
                // Not yet in its own root: still on the runner's (the init's mount namespace
                // is a copy of the runner's, and `pivot_root` moves the init too).
                let (Some(theirs), Some(runners)) = (root_of(dir.as_fd()), root_of(runner_dir))
                else {
                    continue;
                };
                if theirs == runners {
                    continue;
                }
                let Ok(pidfd) = crate::sys::linux::pidfd_open(pid as i32) else {
                    continue;
                };
                // Still there through the directory opened first, with the same start: the
                // pidfd is that process's.
                if stat_of(dir.as_fd()).map(|(s, _)| s) != Some(started) {
                    continue;
                }
                // And its parents are still the ones checked (a directory of a process
                // that has gone reads nothing).
                if stat_of(init_dir.as_fd()).is_none() || stat_of(runner_dir).is_none() {
                    return Found::Gone;
                }
                return Found::Ready(ExecTarget {
                    proc_dir: dir,
                    pidfd,
                    pid,
                });
            }
        }
        if has_init { Found::NotYet } else { Found::Gone }
    }

    /// Whether PID 1 still runs.
    pub fn alive(&self) -> bool {
        crate::sys::linux::pidfd_signal(self.pidfd.as_fd(), 0).is_ok()
    }

    /// The container's root directory as PID 1 sees it (`/proc/PID/root`, opened through
    /// the held directory): every mount of the container below it, volumes included.
    /// Resolve paths in it with `RESOLVE_IN_ROOT` only.
    pub fn root(&self) -> Result<OwnedFd, RuntimeError> {
        let fd = nix::fcntl::openat(
            self.proc_dir.as_fd(),
            "root",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(setup("opening the container's root"))?;
        if !self.alive() {
            return Err(RuntimeError::Container(
                "the container is not running".into(),
            ));
        }
        Ok(fd)
    }

    /// The PIDs (as berth sees them) of every process in PID 1's PID namespace, PID 1 first:
    /// each process of `/proc` whose `ns/pid` is PID 1's (so a process `berth exec`
    /// started, which is no descendant of PID 1, too).
    pub fn processes(&self) -> Vec<u32> {
        let mut out = vec![self.pid];
        let Some(ns) = pid_ns_of(self.proc_dir.as_fd()) else {
            return out;
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return out;
        };
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            if out.len() >= 1 << 16 {
                break;
            }
            if pid != self.pid
                && let Some((dir, _, _)) = proc_dir(pid)
                && pid_ns_of(dir.as_fd()) == Some(ns)
            {
                out.push(pid);
            }
        }
        out
    }
}

/// The PID namespace (device, inode) of a `/proc/PID` directory's process.
fn pid_ns_of(dir: BorrowedFd<'_>) -> Option<(u64, u64)> {
    nix::fcntl::openat(
        dir,
        "ns/pid",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .and_then(|fd| nix::sys::stat::fstat(&fd))
    .ok()
    .map(|s| (s.st_dev, s.st_ino))
}

/// What one look for PID 1 found.
enum Found {
    Ready(ExecTarget),
    /// No PID 1 yet, or one still setting up.
    NotYet,
    /// The runner has gone.
    Gone,
}

/// The container's processes, stopped ([`ExecTarget::pause`]); they are continued when this
/// is dropped.
#[derive(Debug)]
pub struct Paused {
    stopped: Vec<OwnedFd>,
}

impl Drop for Paused {
    fn drop(&mut self) {
        for pidfd in &self.stopped {
            let _ = crate::sys::linux::pidfd_signal(pidfd.as_fd(), libc::SIGCONT);
        }
    }
}

/// The state letter of a `/proc/PID` directory's process (field 3 of `stat`).
fn state_of(dir: BorrowedFd<'_>) -> Option<char> {
    let text = read_at(dir, "stat", 4096)?;
    text[text.rfind(')')? + 1..].trim_start().chars().next()
}

impl ExecTarget {
    /// Stops every process of the container's PID namespace with SIGSTOP (each through a
    /// pidfd opened on a `/proc` entry checked to be in that namespace), scanning again
    /// until no new one appears and every one is stopped; processes already stopped are
    /// left as they are. Fails when the container keeps making processes or one does not
    /// stop within about a second (those stopped are continued).
    pub fn pause(&self) -> Result<Paused, RuntimeError> {
        let ns = pid_ns_of(self.proc_dir.as_fd())
            .ok_or_else(|| RuntimeError::Container("the container is not running".into()))?;
        let mut paused = Paused {
            stopped: Vec::new(),
        };
        let mut seen = std::collections::HashSet::new();
        for round in 0..200 {
            let mut busy = 0;
            let entries = std::fs::read_dir("/proc").map_err(io_error("listing /proc"))?;
            for pid in entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            {
                let Some((dir, start, _)) = proc_dir(pid) else {
                    continue;
                };
                if pid_ns_of(dir.as_fd()) != Some(ns) {
                    continue;
                }
                let state = state_of(dir.as_fd()).unwrap_or('X');
                if seen.contains(&(pid, start)) {
                    if !matches!(state, 'T' | 't' | 'Z' | 'X') {
                        busy += 1;
                    }
                    continue;
                }
                seen.insert((pid, start));
                if round == 0 && matches!(state, 'T' | 't') {
                    continue;
                }
                let Ok(pidfd) = crate::sys::linux::pidfd_open(pid as i32) else {
                    continue;
                };
                if stat_of(dir.as_fd()).map(|(s, _)| s) != Some(start) {
                    continue;
                }
                if crate::sys::linux::pidfd_signal(pidfd.as_fd(), libc::SIGSTOP).is_ok() {
                    paused.stopped.push(pidfd);
                }
                busy += 1;
            }
            if busy == 0 {
                return Ok(paused);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(RuntimeError::Container(
            "the container's processes did not all stop".into(),
        ))
    }
}

/// Runs `settings` in the container `target` (whose bundle's spec is `spec`) through
/// `exe __exec` (berth's binary, `/proc/self/exe`: the running one even when its file was
/// replaced since; a sealed copy of it is what runs); returns the exit code (0 at once for [`ExecIo::Detached`]). With
/// `timeout`, the process is killed when it runs longer, and the result is `Ok(None)`.
pub fn exec_in(
    exe: &Path,
    target: &ExecTarget,
    spec: &Spec,
    settings: &ExecSettings,
    io: ExecIo,
    timeout: Option<Duration>,
) -> Result<Option<i32>, RuntimeError> {
    use std::os::unix::process::CommandExt;
    let plan = Plan {
        spec: spec.clone(),
        settings: settings.clone(),
        terminal: matches!(io, ExecIo::Terminal { .. }),
        interactive: matches!(io, ExecIo::Terminal { interactive: true }),
    };
    let memfd =
        nix::sys::memfd::memfd_create(c"berth-exec", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(setup("making the exec plan"))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&serde_json::to_vec(&plan).expect("plain data"))
        .and_then(|()| file.rewind())
        .map_err(io_error("writing the exec plan"))?;
    let fds = [
        target.proc_dir.as_raw_fd(),
        target.pidfd.as_raw_fd(),
        file.as_raw_fd(),
    ];
    let image = sealed_copy(exe)?;
    let mut command = std::process::Command::new(format!("/proc/self/fd/{}", image.as_raw_fd()));
    command.arg0("berth").arg("__exec");
    for fd in fds {
        command.arg(fd.to_string());
    }
    // SAFETY: the closure runs in the child between fork and exec and only calls fcntl,
    // which is async-signal-safe, on descriptors this function holds open.
    unsafe {
        command.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let spawn_error = io_error("starting berth __exec");
    match io {
        ExecIo::Detached => {
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0);
            // Not waited for: it is reparented once berth exits.
            command.spawn().map_err(spawn_error)?;
            Ok(Some(0))
        }
        ExecIo::Captured { stdout, stderr } => {
            command
                .stdin(std::process::Stdio::null())
                .stdout(stdout)
                .stderr(stderr);
            let mut child = command.spawn().map_err(spawn_error)?;
            drop(command);
            let started = Instant::now();
            loop {
                if let Some(status) = child
                    .try_wait()
                    .map_err(io_error("waiting for berth __exec"))?
                {
                    return Ok(Some(exit_code(status)));
                }
                if timeout.is_some_and(|t| started.elapsed() >= t) {
                    // The exec'd process has SIGKILL as its parent-death signal.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        ExecIo::Inherit { interactive } => {
            // Pipes berth copies, never berth's own descriptors (relay.rs).
            let (relay, [i, o, e]) = crate::relay::Relay::new(interactive)?;
            command.stdin(i).stdout(o).stderr(e);
            let copying = relay.start()?;
            let result = crate::init::run_foreground(command).map(Some);
            copying.finish();
            result
        }
        ExecIo::Terminal { interactive } => {
            let raw = if interactive { RawMode::enter() } else { None };
            let result = crate::init::run_foreground(command).map(Some);
            drop(raw);
            result
        }
    }
}

/// A copy of the binary at `exe` in a memfd sealed against every change (`F_SEAL_WRITE`,
/// `F_SEAL_SHRINK`, `F_SEAL_GROW`, then `F_SEAL_SEAL`), close-on-exec (an ELF binary is
/// still run through `/proc/self/fd/N`: the kernel opens it before it closes those). A
/// process started from it has the memfd as its `/proc/PID/exe`, which no one can write.
/// Costs a copy of the binary per call (see SECURITY.md for the numbers).
pub fn sealed_copy(exe: &Path) -> Result<OwnedFd, RuntimeError> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let mut source = std::fs::File::open(exe).map_err(io_error("opening berth's binary"))?;
    // MFD_EXEC: executable even where `vm.memfd_noexec` makes memfds non-executable by
    // default; kernels before 6.3 do not know the flag (EINVAL) and make them executable.
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    let memfd = match memfd_create(c"berth", flags | MFdFlags::from_bits_retain(libc::MFD_EXEC)) {
        Err(nix::Error::EINVAL) => memfd_create(c"berth", flags),
        other => other,
    }
    .map_err(setup("making a memfd for berth's binary"))?;
    let mut copy = std::fs::File::from(memfd);
    std::io::copy(&mut source, &mut copy).map_err(io_error("copying berth's binary"))?;
    let memfd = OwnedFd::from(copy);
    fcntl(
        &memfd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map_err(setup("sealing the copy of berth's binary"))?;
    Ok(memfd)
}

/// The user's terminal (stdin) in raw mode until dropped; `None` when stdin is no terminal.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin().as_fd(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// `DEVPTS_SUPER_MAGIC`.
const DEVPTS_MAGIC: i64 = 0x1cd1;

/// A pseudo-terminal pair of the container's `devpts` (this process is in its mount
/// namespace): its `/dev/pts/ptmx` opened without following a last symlink and checked to
/// be a `devpts` ptmx (a container may have replaced names under its `/dev`), the slave
/// opened through the master (`TIOCGPTPEER`), never by a path.
fn container_pty() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    use std::os::fd::FromRawFd;
    let master = nix::fcntl::open(
        "/dev/pts/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(setup("opening the container's /dev/pts/ptmx"))?;
    let fs = nix::sys::statfs::fstatfs(&master).map_err(setup("checking /dev/pts/ptmx"))?;
    let st = nix::sys::stat::fstat(&master).map_err(setup("checking /dev/pts/ptmx"))?;
    if fs.filesystem_type().0 as i64 != DEVPTS_MAGIC
        || st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || (libc::major(st.st_rdev), libc::minor(st.st_rdev)) != (5, 2)
    {
        return Err(RuntimeError::Container(
            "the container's /dev/pts/ptmx is not a devpts ptmx".into(),
        ));
    }
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))
        .map_err(setup("making the terminal blocking"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which points at one.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(setup("unlocking the terminal")(nix::Error::last()));
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(setup("opening the terminal's slave")(nix::Error::last()));
    }
    // SAFETY: the descriptor was just made and nothing else owns it.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// The parent's side of `-t`, on this one thread (a process that has joined a PID namespace
/// for its children can start no thread): the user's window size on the terminal, then a
/// poll loop over the blocked signals (a signalfd: SIGCHLD reaps the command, SIGWINCH
/// resizes, the others are forwarded), the terminal's output (to stdout) and, with
/// `interactive`, stdin (to the terminal). Returns the command's exit code once it has ended
/// and the output it left is written.
fn serve_terminal(
    child: nix::unistd::Pid,
    set: &nix::sys::signal::SigSet,
    master: &OwnedFd,
    interactive: bool,
) -> Result<i32, RuntimeError> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let resize = || {
        if let Some(size) = crate::sys::linux::window_size(std::io::stdout().as_fd()) {
            crate::sys::linux::set_window_size(master.as_fd(), &size);
        }
    };
    resize();
    let signals =
        SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC).map_err(setup("making a signalfd"))?;
    let stdin = std::io::stdin();
    let mut stdin_open = interactive;
    let mut output_open = true;
    let mut buf = [0u8; 4096];
    let mut out = std::io::stdout();
    let mut code = None;
    loop {
        if let Some(code) = code
            && !output_open
        {
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if output_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && code.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the command has ended, what is left to read is read at once; a process left
        // behind holding the terminal does not keep berth waiting.
        let timeout = if code.is_some() {
            PollTimeout::from(200u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) => output_open = false,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(setup("polling the terminal")(e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, out_ready) = (ready(0), output_open && ready(1));
        let in_ready = stdin_open && code.is_none() && ready(if output_open { 2 } else { 1 });
        drop(fds);
        if sig_ready && let Ok(Some(info)) = signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => loop {
                    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(pid, c)) if pid == child => code = Some(c),
                        Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                            code = Some(128 + sig as i32)
                        }
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => continue,
                    }
                },
                Ok(Signal::SIGWINCH) => resize(),
                Ok(other) => {
                    let _ = nix::sys::signal::kill(child, other);
                }
                Err(_) => {}
            }
        }
        if out_ready {
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(_) => output_open = false,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        output_open = false;
                    }
                }
            }
        }
        if in_ready {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if nix::unistd::write(master, &buf[..n]).is_err() {
                        stdin_open = false;
                    }
                }
            }
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_SETUP)
}

/// The namespaces joined, in order; the user namespace first (when it is not berth's
/// own), so the others are joined with the capabilities it gives.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// `berth __exec PROC_DIR PIDFD PLAN` (descriptor numbers, see [`exec_in`]): returns the
/// exit code, in the parent and, when it could not exec, in the child.
pub fn main(args: &[String]) -> i32 {
    // Before anything of the container is touched.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("berth: making the exec process non-dumpable: {e}");
        return EXIT_SETUP;
    }
    match run(args) {
        Ok(code) => code,
        Err(ChildError::Setup(e)) => {
            eprintln!("berth: {}", crate::init::with_causes(&e));
            EXIT_SETUP
        }
        Err(ChildError::Exec { code, message }) => {
            eprintln!("berth: {message}");
            code
        }
    }
}

fn run(args: &[String]) -> Result<i32, ChildError> {
    let bad = || RuntimeError::Spec("berth __exec takes three descriptors".into());
    let mut fds = Vec::new();
    for a in args {
        let n: i32 = a.parse().map_err(|_| bad())?;
        fds.push(crate::sys::linux::take_inherited_fd(n).ok_or_else(bad)?);
    }
    let [proc_dir, pidfd, plan] = <[OwnedFd; 3]>::try_from(fds).map_err(|_| bad())?;
    for fd in [&proc_dir, &pidfd, &plan] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(setup("holding the inherited descriptors"))?;
    }
    let mut text = String::new();
    std::fs::File::from(plan)
        .take(64 << 20)
        .read_to_string(&mut text)
        .map_err(io_error("reading the exec plan"))?;
    let plan: Plan = serde_json::from_str(&text)
        .map_err(|e| RuntimeError::Spec(format!("the exec plan: {e}")))?;

    // The namespaces, opened through PID 1's held directory, then checked to be PID 1's:
    // it still runs, so the directory was still its own.
    let mut namespaces = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = nix::fcntl::openat(
            proc_dir.as_fd(),
            format!("ns/{name}").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(setup("opening the container's namespaces"))?;
        let ours = nix::sys::stat::stat(format!("/proc/self/ns/{name}").as_str())
            .map_err(setup("reading berth's own namespaces"))?;
        let their_stat = nix::sys::stat::fstat(&theirs).map_err(setup("reading a namespace"))?;
        if (their_stat.st_dev, their_stat.st_ino) != (ours.st_dev, ours.st_ino) {
            namespaces.push((*name, *flag, theirs));
        }
    }
    if crate::sys::linux::pidfd_signal(pidfd.as_fd(), 0).is_err() {
        return Err(RuntimeError::Container("the container is not running".into()).into());
    }
    drop(pidfd);
    drop(proc_dir);

    let sys = &mut LinuxSys;
    let spec = &plan.spec;
    // The container's cgroup, entered as PID 1 entered it (the host's cgroup files are
    // still in view); the forked child inherits it.
    if let Some(path) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) {
        let limits = crate::cgroups::Limits::from_spec(spec);
        crate::cgroups::Cgroup::for_limits(sys, &path.to_string_lossy(), &limits).enter(sys)?;
    }
    for (name, flag, fd) in &namespaces {
        nix::sched::setns(fd, *flag).map_err(|errno| RuntimeError::Setup {
            what: format!("joining the container's {name} namespace"),
            errno,
        })?;
    }
    drop(namespaces);

    let pty = if plan.terminal {
        Some(container_pty()?)
    } else {
        None
    };
    let set = crate::init::signal_set();
    sys.block_signals(&set).map_err(setup("blocking signals"))?;
    // Everything that needs berth's privileges, done here: this process is outside the PID
    // namespace it joined (`setns` of a PID namespace moves only children into it), so
    // nothing in the container can see it, signal it or trace it.
    let command = prepare(sys, &plan)?;
    crate::privileges::become_identity(sys, &command.identity())?;
    // A change of user makes the process dumpable again when `fs.suid_dumpable` says so.
    nix::sys::prctl::set_dumpable(false).map_err(setup("making the exec process non-dumpable"))?;
    // From here on this process holds the container's credentials, capabilities and
    // seccomp filter: the child it forks, the first that the container can see, never
    // holds more.
    // This process is single-threaded: a fresh exec of berth that started no thread.
    match sys.fork().map_err(setup("fork"))? {
        ForkResult::Parent { child } => {
            let Some((master, slave)) = pty else {
                return Ok(crate::init::supervise(sys, child, &set, &mut |_| true));
            };
            drop(slave);
            Ok(serve_terminal(child, &set, &master, plan.interactive)?)
        }
        ForkResult::Child => {
            if let Some((_, slave)) = &pty {
                for fd in 0..3 {
                    // SAFETY: dup2 onto 0, 1 and 2, which this process hands to the command;
                    // nothing here holds them as owned descriptors.
                    if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
                        return Err(
                            setup("giving the command its terminal")(nix::Error::last()).into()
                        );
                    }
                }
            }
            child(sys, &plan, &command)
        }
    }
}

/// Closes every descriptor above 2 (`close_range`).
fn close_above_stdio() -> Result<(), nix::Error> {
    // SAFETY: close_range takes three integers; this process holds no descriptor above 2
    // that anything still uses.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// The command, resolved before the fork.
struct Command<'a> {
    program: std::ffi::CString,
    argv: Vec<std::ffi::CString>,
    envp: Vec<std::ffi::CString>,
    user: crate::user::ResolvedUser,
    process: &'a oci_spec::runtime::Process,
    seccomp: bool,
}

impl Command<'_> {
    fn identity(&self) -> crate::privileges::Identity<'_> {
        crate::privileges::Identity {
            uid: self.user.uid,
            gid: self.user.gid,
            groups: &self.user.groups,
            capabilities: self.process.capabilities().as_ref(),
            seccomp: self.seccomp,
            rlimits: self.process.rlimits().as_deref().unwrap_or_default(),
        }
    }
}

/// In the container's namespaces, still privileged: the user resolved in the container's
/// `/etc/passwd` and `/etc/group`, the environment, the working directory entered (never
/// created: Docker's exec fails on a missing one; the child inherits it), the command found
/// on the container's `PATH`.
fn prepare<'a>(sys: &mut dyn Sys, plan: &'a Plan) -> Result<Command<'a>, ChildError> {
    let spec = &plan.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::Spec("the spec has no process".into()))?;
    let annotations = spec.annotations().clone().unwrap_or_default();
    let user_spec = plan
        .settings
        .user
        .clone()
        .or_else(|| annotations.get(ANNOTATION_USER).cloned())
        .unwrap_or_default();
    // A numeric user needs neither file: one that cannot be read (a FIFO, a device, too
    // large) is then taken as empty, as a missing one is.
    let numeric = crate::user::is_numeric(&user_spec);
    let mut image_file = |path: &str| match sys.read_image_file(Path::new(path)) {
        Ok(text) => Ok(text),
        Err(nix::Error::ENOENT) => Ok(String::new()),
        Err(_) if numeric => Ok(String::new()),
        Err(e) => Err(ChildError::Exec {
            code: EXIT_SETUP,
            message: format!("reading {path} of the container: {}", e.desc()),
        }),
    };
    let passwd = image_file("/etc/passwd")?;
    let group = image_file("/etc/group")?;
    // A user the container does not have: 126, as Docker's exec.
    let user = crate::user::resolve(&user_spec, &passwd, &group).map_err(|e| ChildError::Exec {
        code: EXIT_NOT_EXECUTABLE,
        message: e.to_string(),
    })?;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for kv in &plan.settings.env {
        let name = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = plan
        .settings
        .cwd
        .as_ref()
        .map(PathBuf::from)
        .unwrap_or_else(|| process.cwd().clone());
    sys.chdir(&cwd).map_err(|e| ChildError::Exec {
        code: EXIT_NOT_EXECUTABLE,
        message: format!("entering working directory {}: {}", cwd.display(), e.desc()),
    })?;
    let program = crate::init::find_program(sys, &plan.settings.args, &env)?;
    let argv = cstrings(&plan.settings.args).map_err(|_| ChildError::Exec {
        code: EXIT_SETUP,
        message: "an argument contains a NUL byte".into(),
    })?;
    let envp = cstrings(&env).map_err(|_| ChildError::Exec {
        code: EXIT_SETUP,
        message: "an environment value contains a NUL byte".into(),
    })?;
    Ok(Command {
        program,
        argv,
        envp,
        user,
        process,
        // As PID 1: `no_new_privs` is not set (the filter is installed with CAP_SYS_ADMIN).
        seccomp: annotations.get(ANNOTATION_SECCOMP).map(String::as_str) != Some("unconfined"),
    })
}

/// The exec'd process, forked with the container's credentials and filter already its own:
/// ends in exec, or returns the code.
fn child(sys: &mut dyn Sys, plan: &Plan, command: &Command<'_>) -> Result<i32, ChildError> {
    close_above_stdio().map_err(setup("closing descriptors"))?;
    sys.set_parent_death_signal(Signal::SIGKILL)
        .map_err(setup("setting the parent-death signal"))?;
    // The parent is outside this PID namespace (parent PID 0 here); one that died before the
    // signal was set has left this process to the container's PID 1.
    if nix::unistd::getppid().as_raw() != 0 {
        return Err(
            RuntimeError::Container("berth __exec ended before its command ran".into()).into(),
        );
    }
    if plan.terminal {
        sys.take_controlling_terminal()
            .map_err(setup("taking the terminal"))?;
    } else {
        sys.new_session().map_err(setup("starting a session"))?;
    }
    sys.finish_process()
        .map_err(setup("preparing the process"))?;
    let err = sys.execve(&command.program, &command.argv, &command.envp);
    let code = if err == nix::Error::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_NOT_EXECUTABLE
    };
    Err(ChildError::Exec {
        code,
        message: format!(
            "exec {:?}: {}",
            plan.settings.args.first().map(String::as_str).unwrap_or(""),
            err.desc()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_1_of_a_namespace_is_told_by_nspid() {
        assert!(namespace_init_status("Name:\tsleep\nNSpid:\t4242\t1\n"));
        assert!(namespace_init_status("NSpid:\t4242\t7\t1\n"));
        // The host's init, and a process of berth's own namespace, are not.
        assert!(!namespace_init_status("NSpid:\t1\n"));
        assert!(!namespace_init_status("NSpid:\t4242\t2\n"));
        assert!(!namespace_init_status("Name:\tx\n"));
    }

    /// A runner whose start time is not the recorded one (its PID reused) is no container;
    /// nor is a process without a namespace init among its grandchildren.
    #[test]
    fn a_stale_or_containerless_runner_is_not_running() {
        let me = std::process::id();
        let (dir, start, _) = proc_dir(me).unwrap();
        drop(dir);
        let err = ExecTarget::find(me, start + 1).unwrap_err();
        assert!(err.to_string().contains("not running"), "{err}");
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(ExecTarget::find(me, start).is_err());
        let _ = child.kill();
        let _ = child.wait();
    }
}
