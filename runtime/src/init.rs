//! The container's init: `berth __init BUNDLE` (re-executed through `/proc/self/exe`, so it
//! is a fresh single-threaded process) reads `BUNDLE/config.json` and `BUNDLE/rootfs.json`,
//! creates the namespaces, forks the container's PID 1, and then forwards signals to it and
//! waits. Its exit code is the container's, Docker's way: the command's own code, 128+N for
//! a signal, 125 when setup failed, 126 when the command cannot be executed, 127 when it is
//! not found.
//!
//! The PID 1 child: dies with the init (`PR_SET_PDEATHSIG`), applies the rootfs plan
//! (rootfs.rs), sets the hostname, brings `lo` up in a new network namespace, resolves the
//! user in the container's files, creates and enters the working directory, closes every
//! file descriptor above 2, drops capabilities to the spec's sets, unblocks signals, execs.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::RuntimeError;
use crate::contract::{
    ANNOTATION_ENV_FDS, ANNOTATION_INIT, ANNOTATION_NETWORK, ANNOTATION_NODEV, ANNOTATION_SECCOMP,
    ANNOTATION_SLIRP4NETNS, ANNOTATION_USER, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SETUP,
    FORWARDED, MAX_ENV_FD_VALUE,
};
use crate::fuse::{FuseMount, MountProgram};
use crate::rootfs::{Op, RootfsSource, apply, plan};
use crate::sys::linux::LinuxSys;
use crate::sys::{Sys, cstrings};

/// Sets the variables [`ANNOTATION_ENV_FDS`] names from the descriptors it names (replacing
/// a variable of the same name), before the descriptors are closed.
fn env_from_fds(sys: &mut dyn Sys, spec: &Spec, env: &mut Vec<String>) -> Result<(), ChildError> {
    let Some(list) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ENV_FDS))
    else {
        return Ok(());
    };
    let setup = |message: String| ChildError::Exec {
        code: EXIT_SETUP,
        message,
    };
    let pairs: Vec<(String, i32)> =
        serde_json::from_str(list).map_err(|e| setup(format!("{ANNOTATION_ENV_FDS}: {e}")))?;
    for (name, fd) in pairs {
        let value = sys
            .read_fd(fd, MAX_ENV_FD_VALUE)
            .map_err(|e| setup(format!("reading the value of {name}: {}", e.desc())))?;
        let value = String::from_utf8(value)
            .map_err(|_| setup(format!("the value of {name} is not UTF-8")))?;
        let prefix = format!("{name}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{prefix}{value}"));
    }
    Ok(())
}

/// The container's bridge attachment, when its spec has one.
fn attachment(spec: &Spec) -> Result<Option<crate::net::Attachment>, RuntimeError> {
    let Some(json) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_NETWORK))
    else {
        return Ok(None);
    };
    let a: crate::net::Attachment = serde_json::from_str(json)
        .map_err(|e| RuntimeError::Spec(format!("{ANNOTATION_NETWORK}: {e}")))?;
    a.check()?;
    Ok(Some(a))
}

/// Reads a bundle written by [`crate::Bundle::write`].
pub fn read_bundle(sys: &mut dyn Sys, bundle: &Path) -> Result<(Spec, RootfsSource), RuntimeError> {
    let read = |sys: &mut dyn Sys, name: &str| {
        sys.read_file(&bundle.join(name))
            .map_err(|errno| RuntimeError::Io {
                what: format!("reading {name}"),
                source: errno.into(),
            })
    };
    let spec = serde_json::from_str(&read(sys, "config.json")?)
        .map_err(|e| RuntimeError::Spec(format!("config.json: {e}")))?;
    let source = serde_json::from_str(&read(sys, "rootfs.json")?)
        .map_err(|e| RuntimeError::Spec(format!("rootfs.json: {e}")))?;
    Ok((spec, source))
}

pub(crate) fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// The namespaces the spec asks for, as `unshare` flags for the init, and whether PID 1 must
/// unshare a cgroup namespace itself (after it has been moved into its cgroup, so that it sees
/// that cgroup as `/`).
pub fn namespace_flags(spec: &Spec) -> (CloneFlags, bool) {
    let mut flags = CloneFlags::empty();
    let mut cgroup = false;
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        flags |= match ns.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Cgroup => {
                cgroup = true;
                CloneFlags::empty()
            }
            _ => CloneFlags::empty(),
        };
    }
    (flags, cgroup)
}

/// The init's whole life; returns the exit code (in the forked PID 1 too, when it could not
/// exec: the caller exits with it at once).
pub fn main(bundle: &Path) -> i32 {
    let sys = &mut LinuxSys;
    let result = read_bundle(sys, bundle).and_then(|(spec, source)| run(sys, &spec, &source));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {}", with_causes(&e));
            EXIT_SETUP
        }
    }
}

/// The init: namespaces, the cgroup, PID 1 forked and released once it is in its cgroup,
/// then signals forwarded until it ends. Returns the exit code, in both processes.
fn run(sys: &mut dyn Sys, spec: &Spec, source: &RootfsSource) -> Result<i32, RuntimeError> {
    // The init dies with `berth run`, and the container's PID 1 with the init.
    sys.set_parent_death_signal(Signal::SIGKILL)
        .map_err(setup("setting the parent-death signal"))?;
    let set = signal_set();
    sys.block_signals(&set).map_err(setup("blocking signals"))?;
    let (flags, cgroup_ns) = namespace_flags(spec);
    let limits = crate::cgroups::Limits::from_spec(spec);
    let cgroup = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| crate::cgroups::Cgroup::for_limits(sys, &p.to_string_lossy(), &limits));
    if let Some(c) = &cgroup {
        c.create(sys, &limits)?;
    }
    // slirp4netns is started from the host's network namespace: its launcher is forked
    // before the unshare; PID 1 sets up its rootfs meanwhile and waits on `release` until
    // tap0 is configured just before it drops privileges and execs.
    // Ports to publish through slirp4netns's API socket, in a private directory of the
    // init's own (removed once they are published).
    let slirp_ports: Vec<crate::net::Port> = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SLIRP4NETNS))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let api = match slirp_ports.is_empty() {
        true => None,
        false => Some(crate::slirp::ApiDir::create()?),
    };
    let mut slirp = match spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_SLIRP4NETNS))
    {
        true => Some(crate::slirp::Launcher::fork(
            api.as_ref().map(|a| a.socket()).as_deref(),
        )?),
        false => None,
    };
    // Rootless, or with a mount program asked for, the init mounts the overlay rootfs itself
    // before the container's namespaces exist (see `premount`).
    let ops = plan(spec, source)?;
    let premounted = premount(sys, &ops, source)?;
    // A bridge network: the host's side (bridge, rules, published ports) from the host's
    // network namespace, kept open to make the veth pair from once the container's exists.
    let network = attachment(spec)?;
    let host_net = match &network {
        Some(a) => {
            a.prepare_host()?;
            Some(
                nix::fcntl::open(
                    "/proc/self/ns/net",
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(setup("opening the host's network namespace"))?,
            )
        }
        None => None,
    };
    let unpublish = |host: &Option<std::os::fd::OwnedFd>| {
        if let (Some(a), Some(ns)) = (&network, host) {
            let _ = a.unpublish(Some(std::os::fd::AsFd::as_fd(ns)));
        }
    };
    // The network namespace first, alone: `ip` makes the veth pair from a child process,
    // which must not become PID 1 of the container's PID namespace (the first child forked
    // after that one is unshared is).
    let mut flags = flags;
    if let (Some(a), Some(ns)) = (&network, &host_net) {
        let connected = sys
            .unshare(CloneFlags::CLONE_NEWNET)
            .map_err(setup("creating the network namespace"))
            .and_then(|()| a.connect(std::os::fd::AsFd::as_fd(ns)));
        if let Err(e) = connected {
            unpublish(&host_net);
            return Err(e);
        }
        flags.remove(CloneFlags::CLONE_NEWNET);
    }
    if let Err(e) = sys.unshare(flags) {
        unpublish(&host_net);
        return Err(setup("creating namespaces")(e));
    }
    let release = match slirp {
        Some(_) => Some(
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(setup("making PID 1's release pipe"))?,
        ),
        None => None,
    };
    // This process is single-threaded (a fresh exec of berth that started no threads, or a
    // fork of a single-threaded `berth run`), as `Sys::fork` requires.
    match sys.fork().map_err(setup("fork"))? {
        ForkResult::Child => {
            // The parent unmounts and waits for the daemon; here they are only shared.
            let skip_overlay = premounted.is_some();
            if let Some(p) = premounted {
                p.forget();
            }
            drop(slirp);
            if let Some(a) = api {
                // The parent removes the directory.
                std::mem::forget(a);
            }
            let network_up = release.map(|(wait, released)| {
                drop(released);
                std::fs::File::from(wait)
            });
            // PID 1 moves itself into its cgroup before it does anything else (the quick
            // way, see `Cgroup::enter`).
            if let Some(c) = &cgroup
                && let Err(e) = c.enter(sys)
            {
                eprintln!("berth: {}", with_causes(&e));
                return Ok(EXIT_SETUP);
            }
            if cgroup_ns && let Err(e) = sys.unshare(CloneFlags::CLONE_NEWCGROUP) {
                eprintln!("berth: creating the cgroup namespace: {e}");
                return Ok(EXIT_SETUP);
            }
            let new_net = flags.contains(CloneFlags::CLONE_NEWNET) || network.is_some();
            let child = container_child(sys, spec, &ops, skip_overlay, new_net, network_up);
            Ok(match child {
                Ok(code) => code,
                Err(ChildError::Setup(e)) => {
                    eprintln!("berth: {}", with_causes(&e));
                    EXIT_SETUP
                }
                Err(ChildError::Exec { code, message }) => {
                    eprintln!("berth: {message}");
                    code
                }
            })
        }
        ForkResult::Parent { child } => {
            if let (Some(launcher), Some((wait, released))) = (slirp.as_mut(), release) {
                drop(wait);
                let started = launcher.start().and_then(|()| match &api {
                    Some(api) => crate::slirp::publish(api, &slirp_ports),
                    None => Ok(()),
                });
                drop(api);
                if let Err(e) = started {
                    eprintln!("berth: {}", with_causes(&e));
                    let _ = sys.kill(child, Signal::SIGKILL);
                    supervise(sys, child, &set, &mut |_| false);
                    if let Some(p) = premounted {
                        let _ = p.finish();
                    }
                    return Ok(EXIT_SETUP);
                }
                let _ = std::io::Write::write_all(&mut std::fs::File::from(released), b"1");
            }
            let code = supervise(sys, child, &set, &mut |_| true);
            if let (Some(a), Some(ns)) = (&network, &host_net) {
                a.disconnect(Some(std::os::fd::AsFd::as_fd(ns)));
            }
            if let Some(p) = premounted
                && let Err(e) = p.finish()
            {
                eprintln!("berth: returning to the rootfs's mount namespace to unmount it: {e}");
                return Ok(EXIT_SETUP);
            }
            Ok(code)
        }
    }
}

/// The overlay rootfs as the init mounted it, before the container's namespaces.
struct Premounted {
    /// fuse-overlayfs's mount, the mount namespace it was made in (where the daemon lives and
    /// the init returns to unmount it), and the upper directory to sync once the daemon has
    /// gone (`None`: volatile).
    fuse: Option<(FuseMount, std::os::fd::OwnedFd, Option<std::path::PathBuf>)>,
}

impl Premounted {
    /// In PID 1: the parent cleans up.
    fn forget(self) {
        if let Some((mount, ns, _)) = self.fuse {
            mount.forget();
            drop(ns);
        }
    }

    /// Once the container has ended: back in the mount namespace the daemon lives in
    /// (`setns`; the container's, which `pivot_root` made this process's root too, is left
    /// without a process and goes), unmounts the rootfs there, waits for the daemon, and
    /// syncs the upper directory (what overlayfs's unmount does for a native mount, so a RUN
    /// step's layer is durable).
    ///
    /// Where it cannot go back, the daemon is killed (the connection is aborted, and the
    /// namespace goes with the init) and the upper is left as it is: this process's root is
    /// then the container's, where the upper's path would resolve inside a tree the
    /// container controlled. The caller fails the container: its upper is not a layer.
    fn finish(self) -> Result<(), nix::Error> {
        let Some((mount, ns, upper)) = self.fuse else {
            return Ok(());
        };
        if let Err(e) = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNS) {
            if let Some(pid) = mount.pid() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            mount.forget();
            return Err(e);
        }
        drop(mount);
        if let Some(upper) = upper
            && let Ok(dir) = std::fs::File::open(&upper)
        {
            let _ = nix::unistd::syncfs(&dir);
        }
        Ok(())
    }
}

/// Mounts the overlay rootfs from the init, in a mount namespace of its own made before the
/// container's (which is a copy of it, so the container gets the mount), when a rootless
/// berth or `BERTH_MOUNT_PROGRAM` may need fuse-overlayfs: its daemon must then be started
/// before the PID namespace exists, so it is never a process the container can see, signal
/// or trace. Rootless, the kernel's overlayfs is tried first (`crate::fuse::mount_overlay`).
/// `None`: PID 1 mounts the rootfs as usual (root, or `native`).
fn premount(
    sys: &mut dyn Sys,
    ops: &[Op],
    source: &RootfsSource,
) -> Result<Option<Premounted>, RuntimeError> {
    let program = MountProgram::from_env();
    let wanted = match &program {
        MountProgram::Fuse(_) => true,
        MountProgram::Auto => crate::sys::linux::in_user_namespace(),
        MountProgram::Native => false,
    };
    let (
        RootfsSource::Overlay {
            upper, volatile, ..
        },
        true,
    ) = (source, wanted)
    else {
        return Ok(None);
    };
    let Some((overlay, target, flags)) = ops.iter().find_map(|o| match o {
        Op::Overlay {
            overlay,
            target,
            flags,
        } => Some((overlay, target, *flags)),
        _ => None,
    }) else {
        return Ok(None);
    };
    sys.unshare(CloneFlags::CLONE_NEWNS)
        .map_err(setup("creating the rootfs's mount namespace"))?;
    sys.mount(
        None,
        Path::new("/"),
        None,
        nix::mount::MsFlags::MS_SLAVE | nix::mount::MsFlags::MS_REC,
        None,
    )
    .map_err(setup("making mounts private"))?;
    let fuse = crate::fuse::mount_overlay(&program, overlay, target, flags, &mut || {
        let mut result = sys.mount_overlay(overlay, target, flags);
        // A kernel without overlayfs's `volatile` (before 5.10) answers EINVAL.
        if let (Err(nix::Error::EINVAL), true) = (result, overlay.volatile) {
            let plain = crate::sys::Overlay {
                volatile: false,
                ..overlay.clone()
            };
            result = sys.mount_overlay(&plain, target, flags);
        }
        result
    })?;
    let fuse = match fuse {
        Some(mount) => {
            let ns = nix::fcntl::open(
                "/proc/self/ns/mnt",
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(setup("opening the rootfs's mount namespace"))?;
            Some((mount, ns, (!volatile).then(|| upper.clone())))
        }
        None => None,
    };
    Ok(Some(Premounted { fuse }))
}

/// Runs an init command in the foreground: blocks the forwarded signals in this (single-
/// threaded) process, spawns the command, forwards those signals to it and returns its exit
/// code. Used by `berth run`, so a SIGTERM to it reaches the container's PID 1.
pub fn run_foreground(command: std::process::Command) -> Result<i32, RuntimeError> {
    run_foreground_with(command, &mut |_| true)
}

/// [`run_foreground`] without the exec, for a single-threaded process (`berth run` is, when
/// it gets here; the caller checks with [`crate::sys::linux::single_threaded`]): it forks
/// and the child runs the init on `bundle` itself, which spares a container the start-up of
/// a second `berth` process (about 1.5 ms of the 11–15 ms of `run --rm IMG true` on the
/// development VM). The child gets what an exec'd init would: `stdio` (the relay's pipes,
/// or `/dev/null`) as its stdin, stdout and stderr, no descriptor above 2, the forwarded
/// signals blocked (the init blocks them anyway). The parent drops its copies of `stdio`,
/// starts the `relay`'s threads (after the fork: the child is a copy of one thread), and
/// supervises the child.
pub fn run_foreground_forked(
    bundle: &Path,
    stdio: [std::os::fd::OwnedFd; 3],
    relay: crate::relay::Relay,
) -> Result<i32, RuntimeError> {
    let set = signal_set();
    block_signals()?;
    // What the parent's stdout buffer holds must not be written twice.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let sys = &mut LinuxSys;
    let child = match sys.fork() {
        Ok(ForkResult::Child) => {
            let code = match crate::sys::linux::forked_init_stdio(&stdio) {
                Ok(()) => main(bundle),
                Err(e) => {
                    eprintln!("berth: preparing the container init: {e}");
                    EXIT_SETUP
                }
            };
            std::process::exit(code);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(setup("fork")(e)),
    };
    drop(stdio);
    let copying = match relay.start() {
        Ok(c) => c,
        Err(e) => {
            let _ = sys.kill(child, Signal::SIGKILL);
            supervise(sys, child, &set, &mut |_| false);
            return Err(e);
        }
    };
    let code = supervise(sys, child, &set, &mut |_| true);
    copying.finish();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)
        .map(|()| code)
        .map_err(setup("unblocking signals"))
}

/// Blocks the forwarded signals in the calling thread; call it before starting any thread
/// that must not receive them (threads inherit the mask).
pub fn block_signals() -> Result<(), RuntimeError> {
    LinuxSys
        .block_signals(&signal_set())
        .map_err(|e| RuntimeError::Setup {
            what: "blocking signals".into(),
            errno: e,
        })
}

/// [`run_foreground`], with `on_signal` deciding for each signal whether it is forwarded
/// (`run -t` handles SIGWINCH itself by resizing the container's terminal).
pub fn run_foreground_with(
    mut command: std::process::Command,
    on_signal: &mut dyn FnMut(Signal) -> bool,
) -> Result<i32, RuntimeError> {
    let set = signal_set();
    block_signals()?;
    let child = command.spawn().map_err(|e| RuntimeError::Io {
        what: "starting the container init".into(),
        source: e,
    })?;
    // The child's ends of its stdio pipes, held by the command, are closed here: a relay
    // sees their end when the child's side closes them.
    drop(command);
    let code = supervise(
        &mut LinuxSys,
        Pid::from_raw(child.id() as i32),
        &set,
        on_signal,
    );
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).map_err(|e| {
        RuntimeError::Setup {
            what: "unblocking signals".into(),
            errno: e,
        }
    })?;
    Ok(code)
}

/// Forwards signals to the child and waits for it; returns its exit code.
pub(crate) fn supervise(
    sys: &mut dyn Sys,
    child: Pid,
    set: &SigSet,
    on_signal: &mut dyn FnMut(Signal) -> bool,
) -> i32 {
    loop {
        let Ok(signal) = sys.wait_signal(set) else {
            continue;
        };
        if signal != Signal::SIGCHLD {
            if on_signal(signal) {
                let _ = sys.kill(child, signal);
            }
            continue;
        }
        loop {
            match sys.reap() {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

pub(crate) enum ChildError {
    Setup(RuntimeError),
    Exec { code: i32, message: String },
}

impl From<RuntimeError> for ChildError {
    fn from(e: RuntimeError) -> Self {
        ChildError::Setup(e)
    }
}

fn setup(what: &str) -> impl FnOnce(nix::Error) -> RuntimeError + '_ {
    move |errno| RuntimeError::Setup {
        what: what.to_owned(),
        errno,
    }
}

/// PID 1's setup, then exec; returns only on failure, or with the command's exit code when
/// PID 1 is berth's small init. With `network_up` (slirp4netns), it waits there for the
/// init's word that tap0 is configured before it drops privileges: the rootfs is set up
/// while slirp4netns starts, and the command never runs without its network.
fn container_child(
    sys: &mut dyn Sys,
    spec: &Spec,
    ops: &[Op],
    skip_overlay: bool,
    new_net: bool,
    network_up: Option<std::fs::File>,
) -> Result<i32, ChildError> {
    sys.set_parent_death_signal(Signal::SIGKILL)
        .map_err(setup("setting the parent-death signal"))?;
    if spec.process().as_ref().and_then(|p| p.terminal()) == Some(true) {
        sys.take_controlling_terminal()
            .map_err(setup("taking the terminal"))?;
    } else {
        // Out of berth's session, which may have the user's terminal as its controlling
        // terminal: through `/dev/tty` the container could read what is typed there, and
        // push input into it (TIOCSTI) that the user's shell runs once berth ends.
        sys.new_session().map_err(setup("starting a session"))?;
    }
    let with_init = spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_INIT));
    if skip_overlay {
        let rest: Vec<Op> = ops
            .iter()
            .filter(|o| !matches!(o, Op::Overlay { .. }))
            .cloned()
            .collect();
        apply(sys, &rest)?;
    } else {
        apply(sys, ops)?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sys.sethostname(h).map_err(setup("setting the hostname"))?;
    }
    if new_net {
        sys.loopback_up().map_err(setup("bringing lo up"))?;
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        // A bind remount sets the per-mount flags it is given and clears the others: nodev
        // is given again.
        let nodev = if spec
            .annotations()
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_NODEV))
        {
            nix::mount::MsFlags::MS_NODEV
        } else {
            nix::mount::MsFlags::empty()
        };
        sys.mount(
            None,
            Path::new("/"),
            None,
            nix::mount::MsFlags::MS_BIND
                | nix::mount::MsFlags::MS_REMOUNT
                | nix::mount::MsFlags::MS_RDONLY
                | nodev,
            None,
        )
        .map_err(setup("making the rootfs read-only"))?;
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::Spec("the spec has no process".into()))?;
    let user_spec = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_USER))
        .cloned()
        .unwrap_or_default();
    // The image's files, after pivot_root: nothing outside the container is reachable, and a
    // FIFO, a device or a huge file is refused instead of read (a missing one is empty); a
    // numeric user needs neither file, so for one such a file is taken as empty.
    let numeric = crate::user::is_numeric(&user_spec);
    let mut image_file = |path: &str| match sys.read_image_file(Path::new(path)) {
        Ok(text) => Ok(text),
        Err(nix::Error::ENOENT) => Ok(String::new()),
        Err(_) if numeric => Ok(String::new()),
        Err(e) => Err(ChildError::Exec {
            code: EXIT_SETUP,
            message: format!("reading {path} of the image: {}", e.desc()),
        }),
    };
    let passwd = image_file("/etc/passwd")?;
    let group = image_file("/etc/group")?;
    let user = crate::user::resolve(&user_spec, &passwd, &group).map_err(|e| ChildError::Exec {
        code: EXIT_SETUP,
        message: e.to_string(),
    })?;

    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    env_from_fds(sys, spec, &mut env)?;
    let cwd = process.cwd();
    sys.create_dirs(cwd).map_err(|e| ChildError::Exec {
        code: EXIT_SETUP,
        message: format!("creating working directory {}: {e}", cwd.display()),
    })?;
    sys.chdir(cwd.as_path())
        .map_err(setup("entering the working directory"))?;
    let here = sys.current_dir().map_err(|e| ChildError::Exec {
        code: EXIT_SETUP,
        message: format!("working directory is not reachable: {e}"),
    })?;
    if !here.starts_with("/") || here.to_string_lossy().contains("(unreachable)") {
        return Err(ChildError::Exec {
            code: EXIT_SETUP,
            message: format!(
                "working directory {} is outside the container",
                here.display()
            ),
        });
    }
    let args = process.args().clone().unwrap_or_default();
    let program = find_program(sys, &args, &env)?;
    let argv = cstrings(&args).map_err(|_| ChildError::Exec {
        code: EXIT_SETUP,
        message: "an argument contains a NUL byte".into(),
    })?;
    let envp = cstrings(&env).map_err(|_| ChildError::Exec {
        code: EXIT_SETUP,
        message: "an environment value contains a NUL byte".into(),
    })?;

    let seccomp = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SECCOMP))
        .map(String::as_str);
    let identity = crate::privileges::Identity {
        uid: user.uid,
        gid: user.gid,
        groups: &user.groups,
        capabilities: process.capabilities().as_ref(),
        seccomp: seccomp != Some("unconfined"),
        rlimits: process.rlimits().as_deref().unwrap_or_default(),
    };
    if let Some(mut up) = network_up {
        let mut byte = [0u8];
        if std::io::Read::read(&mut up, &mut byte).ok() != Some(1) {
            // The init said why (slirp4netns did not configure tap0) and kills this process.
            return Ok(EXIT_SETUP);
        }
    }
    crate::privileges::drop_privileges(sys, &identity)?;
    if with_init {
        return Ok(crate::pid1::run(sys, &program, &argv, &envp));
    }
    let err = sys.execve(&program, &argv, &envp);
    let code = if err == nix::Error::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_NOT_EXECUTABLE
    };
    Err(ChildError::Exec {
        code,
        message: format!(
            "exec {:?}: {}",
            args.first().map(String::as_str).unwrap_or(""),
            err.desc()
        ),
    })
}

/// Finds the program as execvp would, but in the container's `PATH`.
pub(crate) fn find_program(
    sys: &mut dyn Sys,
    args: &[String],
    env: &[String],
) -> Result<CString, ChildError> {
    let name = args
        .first()
        .filter(|a| !a.is_empty())
        .ok_or(ChildError::Exec {
            code: EXIT_NOT_FOUND,
            message: "no command given".into(),
        })?;
    let to_c = |p: &str| {
        CString::new(p).map_err(|_| ChildError::Exec {
            code: EXIT_SETUP,
            message: "the command contains a NUL byte".into(),
        })
    };
    if name.contains('/') {
        return to_c(name);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::DEFAULT_PATH);
    let mut denied = false;
    for dir in path.split(':') {
        let candidate = PathBuf::from(if dir.is_empty() { "." } else { dir }).join(name);
        match sys.executable(&candidate) {
            Some(true) => return to_c(&candidate.display().to_string()),
            Some(false) => denied = true,
            None => {}
        }
    }
    if denied {
        return Err(ChildError::Exec {
            code: EXIT_NOT_EXECUTABLE,
            message: format!("exec {name:?}: permission denied"),
        });
    }
    Err(ChildError::Exec {
        code: EXIT_NOT_FOUND,
        message: format!("exec {name:?}: executable file not found in $PATH"),
    })
}

/// An error with its causes, `what: cause: cause` (the init prints errors itself, so the
/// CLI's `{:#}` does not apply).
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_supervisor_forwards_what_it_should_and_returns_the_exit_code() {
        let mut sys = crate::sys::recording::RecordingSys::default();
        sys.signals.extend([
            Signal::SIGWINCH,
            Signal::SIGINT,
            Signal::SIGCHLD,
            Signal::SIGCHLD,
        ]);
        sys.reaped.extend([
            WaitStatus::StillAlive,
            WaitStatus::Exited(Pid::from_raw(2), 7),
        ]);
        // `run -t` handles SIGWINCH itself: not forwarded.
        let code = supervise(&mut sys, Pid::from_raw(2), &signal_set(), &mut |s| {
            s != Signal::SIGWINCH
        });
        assert_eq!(code, 7);
        assert_eq!(
            sys.calls,
            [
                "signal SIGWINCH",
                "signal SIGINT",
                "kill 2 SIGINT",
                "signal SIGCHLD",
                "reaped StillAlive",
                "signal SIGCHLD",
                "reaped Exited(Pid(2), 7)",
            ]
        );
    }
    use crate::spec::{NetworkMode, ProcessSettings, build_spec};

    #[test]
    fn namespaces_follow_the_network_mode() {
        let none = build_spec(
            Path::new("/r"),
            &ProcessSettings {
                network: NetworkMode::None,
                ..Default::default()
            },
        )
        .unwrap();
        let (flags, cgroup) = namespace_flags(&none);
        let always = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        assert_eq!(flags, always | CloneFlags::CLONE_NEWNET);
        assert!(cgroup, "the cgroup namespace is unshared by PID 1 itself");
        let host = build_spec(
            Path::new("/r"),
            &ProcessSettings {
                network: NetworkMode::Host,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            namespace_flags(&host).0,
            always,
            "--network host keeps the host's network namespace"
        );
    }

    /// `expected` appear in `calls` in this order (each as the start of a line).
    fn assert_in_order(calls: &[String], expected: &[&str]) {
        let mut at = 0;
        for want in expected {
            match calls[at..].iter().position(|c| c.starts_with(want)) {
                Some(i) => at += i + 1,
                None => panic!("{want:?} missing after call {at} in:\n{}", calls.join("\n")),
            }
        }
    }

    fn recording(
        settings: &ProcessSettings,
    ) -> (crate::sys::recording::RecordingSys, Spec, RootfsSource) {
        let spec = build_spec(Path::new("/c/rootfs"), settings).unwrap();
        let source = RootfsSource::Overlay {
            lowers: vec!["/s/a".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            volatile: false,
        };
        let mut sys = crate::sys::recording::RecordingSys::default();
        sys.contents.insert(
            "/proc/self/mountinfo".into(),
            ["39 30 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n".to_string()].into(),
        );
        (sys, spec, source)
    }

    /// A build secret's `env=`: the value comes from the inherited descriptor, replaces a
    /// variable of that name, and is never in the spec written to the bundle.
    #[test]
    fn env_from_descriptors_sets_the_variable_and_stays_out_of_the_spec() {
        let spec = build_spec(
            Path::new("/r"),
            &ProcessSettings {
                env_fds: vec![("TOKEN".into(), 7)],
                ..settings()
            },
        )
        .unwrap();
        assert!(
            !serde_json::to_string(&spec)
                .unwrap()
                .contains("s3cret-value")
        );
        let mut sys = crate::sys::recording::RecordingSys::default();
        sys.contents
            .insert("fd:7".into(), ["s3cret-value".to_string()].into());
        let mut env = vec!["PATH=/bin".to_string(), "TOKEN=old".to_string()];
        assert!(env_from_fds(&mut sys, &spec, &mut env).is_ok());
        assert_eq!(env, ["PATH=/bin", "TOKEN=s3cret-value"]);
        // Too long a value fails the start, naming the variable, not the value.
        sys.contents
            .insert("fd:7".into(), ["x".repeat(MAX_ENV_FD_VALUE + 1)].into());
        let Err(ChildError::Exec { message, .. }) = env_from_fds(&mut sys, &spec, &mut env) else {
            panic!("a value past the limit was taken");
        };
        assert!(message.contains("TOKEN"), "{message}");
    }

    fn settings() -> ProcessSettings {
        ProcessSettings {
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/work".into(),
            user: "app".into(),
            hostname: "box".into(),
            network: NetworkMode::None,
            cgroup_path: "berth/x".into(),
            pids_limit: Some(20),
            ..Default::default()
        }
    }

    /// A bundle reads back as it was written, through `Sys` (and a missing one says which
    /// file it lacks).
    #[test]
    fn a_bundle_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        // Rooted in the temporary directory: writing a bundle creates its rootfs mount point.
        let spec = build_spec(&dir.path().join("rootfs"), &settings()).unwrap();
        let (_, _, source) = recording(&settings());
        crate::Bundle::write(dir.path(), &spec, &source).unwrap();
        let (read_spec, read_source) = read_bundle(&mut LinuxSys, dir.path()).unwrap();
        assert_eq!(read_spec, spec);
        assert_eq!(
            serde_json::to_value(&read_source).unwrap(),
            serde_json::to_value(&source).unwrap()
        );
        let err = read_bundle(
            &mut crate::sys::recording::RecordingSys::default(),
            dir.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    /// The init's side: the cgroup is made before the namespaces, and the exit code is
    /// PID 1's.
    #[test]
    fn the_init_makes_the_cgroup_then_the_namespaces_then_waits_for_pid_1() {
        let (mut sys, spec, source) = recording(&settings());
        sys.signals.push_back(Signal::SIGCHLD);
        sys.reaped
            .push_back(WaitStatus::Exited(Pid::from_raw(2), 3));
        assert_eq!(run(&mut sys, &spec, &source).unwrap(), 3);
        assert_eq!(
            sys.calls,
            [
                "pdeathsig SIGKILL",
                "block",
                "mkdir -p /sys/fs/cgroup/pids/berth/x",
                "write /sys/fs/cgroup/pids/berth/x/pids.max 20",
                "unshare CloneFlags(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET)",
                "fork",
                "signal SIGCHLD",
                "reaped Exited(Pid(2), 3)",
            ]
        );
    }

    /// PID 1's side, from the fork to the exec: it moves itself into its cgroup, takes its
    /// cgroup namespace, sets up the rootfs, resolves the user in the container's files, makes and
    /// enters the working directory, finds the command on the container's PATH, drops its
    /// privileges (seccomp first), and execs; a failed exec of a missing file is 127.
    #[test]
    fn pid_1_sets_up_in_the_documented_order_and_execs() {
        let (mut sys, spec, source) = recording(&settings());
        sys.fork_as_child = true;
        sys.files.push("/bin/sh".into());
        sys.contents.insert(
            "/etc/passwd".into(),
            ["root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n".to_string()].into(),
        );
        sys.contents.insert(
            "/etc/group".into(),
            ["app:x:1000:\nwheel:x:10:app\n".to_string()].into(),
        );
        assert_eq!(run(&mut sys, &spec, &source).unwrap(), EXIT_NOT_FOUND);
        assert_in_order(
            &sys.calls,
            &[
                "pdeathsig SIGKILL",
                "block",
                "unshare",
                "fork",
                "write /sys/fs/cgroup/pids/berth/x/tasks 0",
                "unshare CloneFlags(CLONE_NEWCGROUP)",
                "pdeathsig SIGKILL",
                "mount - / type=- flags=MS_REC|MS_SLAVE",
                "mount overlay /c/rootfs type=overlay flags=MS_NODEV",
                "mount proc fd:/c/rootfs/proc",
                "pivot_root",
                "sethostname box",
                "loopback up",
                "mkdir -p /work",
                "chdir /work",
                "seccomp",
                "setgroups 10",
                "setgid 1000",
                "setuid 1000",
                "capabilities uid=1000",
                "pdeathsig SIGKILL",
                "finish",
                "execve /bin/sh",
            ],
        );
    }

    /// With a terminal, PID 1 takes it as its controlling terminal first; a command that is
    /// nowhere on the PATH is 127 before any privilege is dropped.
    #[test]
    fn a_terminal_is_taken_first_and_a_missing_command_is_127() {
        let (mut sys, spec, source) = recording(&ProcessSettings {
            console: Some("/dev/pts/9".into()),
            user: String::new(),
            ..settings()
        });
        sys.fork_as_child = true;
        assert_eq!(run(&mut sys, &spec, &source).unwrap(), EXIT_NOT_FOUND);
        let first = sys
            .calls
            .iter()
            .position(|c| c.ends_with("tasks 0"))
            .unwrap();
        assert_eq!(sys.calls[first + 2], "pdeathsig SIGKILL");
        assert_eq!(sys.calls[first + 3], "setsid; TIOCSCTTY 0");
        assert!(
            !sys.calls
                .iter()
                .any(|c| c.starts_with("execve") || c.starts_with("seccomp"))
        );
    }
}
