//! The [`Sys`] that makes the calls, and the few calls made outside the trait, on berth's own
//! side of the container (descriptors handed down, the terminal's window size, the forked
//! init's stdio).
//!
//! `unsafe` in the runtime lives in this file, each block with its `SAFETY:` line, and in
//! `lib.rs` (the detached mount trees handed to the init, the descriptors it inherits).

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::{Create, DeviceNode, InRoot, MAX_IMAGE_FILE, Sys, SysResult};

/// The real thing.
#[derive(Debug, Default)]
pub struct LinuxSys;

impl LinuxSys {
    fn open_in_root(
        root: &std::os::fd::OwnedFd,
        rel: &Path,
        flags: nix::fcntl::OFlag,
    ) -> SysResult<std::os::fd::OwnedFd> {
        use std::os::fd::FromRawFd;
        let how = nix::fcntl::OpenHow::new()
            .flags(flags | nix::fcntl::OFlag::O_CLOEXEC)
            .resolve(
                nix::fcntl::ResolveFlag::RESOLVE_IN_ROOT
                    | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let fd = nix::fcntl::openat2(root, rel, how)?;
        // SAFETY: openat2 returned a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) })
    }

    /// Creates the missing components of `parts` inside the root, each relative to its
    /// resolved parent, and opens the result. A component that is a dangling symlink is
    /// followed inside the root and its target created (`/t -> /opt/x`, then a mount at
    /// `/t/keep` makes `<root>/opt/x/keep`), as runc's `MkdirAllInRoot`; 40 hops at most.
    fn create_in_root(
        root_fd: &OwnedFd,
        parts: &[PathBuf],
        create: Create,
        hops: u32,
    ) -> SysResult<OwnedFd> {
        use nix::fcntl::OFlag;
        let mut prefix = PathBuf::new();
        for (i, part) in parts.iter().enumerate() {
            let next = prefix.join(part);
            if LinuxSys::open_in_root(root_fd, &next, OFlag::O_PATH).is_ok() {
                prefix = next;
                continue;
            }
            let parent =
                LinuxSys::open_in_root(root_fd, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            if let Ok(target) = nix::fcntl::readlinkat(&parent, part.as_os_str()) {
                // A dangling symlink: continue from where it points, inside the root.
                if hops >= 40 {
                    return Err(nix::Error::ELOOP);
                }
                let target = PathBuf::from(target);
                let base = if target.is_absolute() {
                    PathBuf::new()
                } else {
                    LinuxSys::in_root(root_fd, &parent)?
                };
                let mut resolved = Vec::new();
                for c in base.join(&target).components() {
                    match c {
                        std::path::Component::Normal(n) => resolved.push(PathBuf::from(n)),
                        std::path::Component::ParentDir => {
                            resolved.pop();
                        }
                        _ => {}
                    }
                }
                resolved.extend(parts[i + 1..].iter().cloned());
                return LinuxSys::create_in_root(root_fd, &resolved, create, hops + 1);
            }
            let last = i + 1 == parts.len();
            if last && create == Create::File {
                let f = nix::fcntl::openat(
                    &parent,
                    part.as_os_str(),
                    OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                )?;
                drop(f);
            } else {
                match nix::sys::stat::mkdirat(
                    &parent,
                    part.as_os_str(),
                    nix::sys::stat::Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            prefix = next;
        }
        LinuxSys::open_in_root(root_fd, &prefix, OFlag::O_PATH)
    }

    /// Where an fd opened inside the root is, relative to the root.
    fn in_root(root_fd: &OwnedFd, fd: &OwnedFd) -> SysResult<PathBuf> {
        use std::os::fd::AsRawFd;
        let path_of =
            |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(io_to_nix);
        let root = path_of(root_fd.as_raw_fd())?;
        let dir = path_of(fd.as_raw_fd())?;
        dir.strip_prefix(&root)
            .map(Path::to_owned)
            .map_err(|_| nix::Error::EXDEV)
    }
}

impl Sys for LinuxSys {
    fn resolve_in_root(&mut self, root: &Path, rel: &Path, create: Create) -> SysResult<InRoot> {
        use nix::fcntl::OFlag;
        use std::os::fd::AsRawFd;
        let root_fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let root_fd: std::os::fd::OwnedFd = root_fd;
        let parts: Vec<_> = rel
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        let fd = match LinuxSys::open_in_root(&root_fd, rel, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) if create != Create::Nothing && !parts.is_empty() => {
                let parts: Vec<PathBuf> = parts.iter().map(PathBuf::from).collect();
                LinuxSys::create_in_root(&root_fd, &parts, create, 0)?
            }
            Err(e) => return Err(e),
        };
        let target = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(InRoot {
            path: std::fs::read_link(&target).map_err(io_to_nix)?,
            target,
            _fd: Some(fd),
        })
    }

    fn bind_tree(
        &mut self,
        source: &Path,
        target: &InRoot,
        recursive: bool,
        attrs: MsFlags,
    ) -> SysResult<()> {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::ffi::OsStrExt;
        // <linux/mount.h>: a stable ABI.
        const OPEN_TREE_CLONE: libc::c_uint = 1;
        const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
        const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
        // A target outside any root (the rootfs mount point itself) is a path berth chose.
        let opened;
        let target_fd = match &target._fd {
            Some(fd) => fd,
            None => {
                opened = nix::fcntl::open(
                    target.path(),
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )?;
                &opened
            }
        };
        // A detached tree handed down by the caller (`/proc/thread-self/fd/N`, see
        // `crate::detached_tree`) is restricted and attached as it is: a mount that lives in
        // another mount namespace cannot be cloned again here.
        let handed = crate::handed_down_tree(source);
        let tree;
        let tree_fd = match handed {
            Some(fd) => fd,
            None => {
                let source =
                    CString::new(source.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
                let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
                if recursive {
                    flags |= libc::AT_RECURSIVE as libc::c_uint;
                }
                // SAFETY: `source` is a NUL-terminated string that outlives the call;
                // open_tree returns a new descriptor or -1.
                let rc = unsafe {
                    libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, source.as_ptr(), flags)
                };
                if rc < 0 {
                    return Err(nix::Error::last());
                }
                // SAFETY: open_tree returned a fresh descriptor that nothing else owns.
                tree = unsafe { OwnedFd::from_raw_fd(rc as i32) };
                tree.as_raw_fd()
            }
        };
        let restricted = set_tree_attrs_at(tree_fd, c"", libc::AT_EMPTY_PATH, attrs);
        // A handed-down tree cannot be bound again by path: on a kernel without
        // mount_setattr it is attached anyway, and the caller remounts it (`rootfs::bind`).
        if handed.is_none() {
            restricted?;
        }
        // SAFETY: both descriptors are open for the length of the call (the tree owned here
        // or handed down to this process, the target held above); the empty paths are
        // NUL-terminated literals.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                tree_fd,
                c"".as_ptr(),
                target_fd.as_raw_fd(),
                c"".as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            )
        };
        if rc < 0 {
            return Err(nix::Error::last());
        }
        restricted
    }

    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mount_overlay(
        &mut self,
        overlay: &super::Overlay,
        target: &Path,
        flags: MsFlags,
    ) -> SysResult<()> {
        if overlay.lowers.len() > super::MAX_OVERLAY_LOWERS || !OVERLAY_FLAGS.contains(flags) {
            return Err(nix::Error::EINVAL);
        }
        match overlay_by_fsconfig(overlay, target, flags)? {
            ByFsconfig::Mounted => Ok(()),
            ByFsconfig::Unsupported => overlay_by_mount(overlay, target, flags),
        }
    }

    fn umount(&mut self, target: &Path, flags: MntFlags) -> SysResult<()> {
        nix::mount::umount2(target, flags)
    }

    fn mknod_char(&mut self, node: &DeviceNode) -> SysResult<()> {
        use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, makedev, mknod};
        mknod(
            &node.path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(node.mode),
            makedev(node.major, node.minor),
        )?;
        fchmodat(
            nix::fcntl::AT_FDCWD,
            &node.path,
            Mode::from_bits_truncate(node.mode),
            FchmodatFlags::FollowSymlink,
        )
    }

    fn symlink(&mut self, target: &str, link: &Path) -> SysResult<()> {
        std::os::unix::fs::symlink(target, link).map_err(io_to_nix)
    }

    fn exists(&mut self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }

    fn is_dir(&mut self, path: &Path) -> bool {
        path.is_dir()
    }

    fn chdir(&mut self, path: &Path) -> SysResult<()> {
        nix::unistd::chdir(path)
    }

    fn pivot_here(&mut self) -> SysResult<()> {
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }

    fn sethostname(&mut self, name: &str) -> SysResult<()> {
        nix::unistd::sethostname(name)
    }

    fn loopback_up(&mut self) -> SysResult<()> {
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        // SAFETY: ifreq is plain old data; zeroed is a valid value for it.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        use std::os::fd::AsRawFd;
        // SAFETY: SIOCGIFFLAGS reads into `req`, a valid ifreq that outlives the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(nix::Error::last());
        }
        // SAFETY: the union field written by SIOCGIFFLAGS is ifru_flags.
        unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq that outlives the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(nix::Error::last());
        }
        Ok(())
    }

    fn install_seccomp(&mut self, program: &[libc::sock_filter]) -> SysResult<()> {
        LinuxSys::seccomp(program)
    }

    fn unshare(&mut self, flags: nix::sched::CloneFlags) -> SysResult<()> {
        nix::sched::unshare(flags)
    }

    fn set_groups(&mut self, groups: &[u32]) -> SysResult<()> {
        let groups: Vec<nix::unistd::Gid> = groups
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups)
    }

    fn set_gid(&mut self, gid: u32) -> SysResult<()> {
        let g = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g)
    }

    fn set_uid(&mut self, uid: u32) -> SysResult<()> {
        let u = nix::unistd::Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u)
    }

    fn set_rlimit(
        &mut self,
        kind: oci_spec::runtime::PosixRlimitType,
        soft: u64,
        hard: u64,
    ) -> SysResult<()> {
        use nix::sys::resource::Resource as R;
        use oci_spec::runtime::PosixRlimitType as T;
        let resource = match kind {
            T::RlimitCpu => R::RLIMIT_CPU,
            T::RlimitFsize => R::RLIMIT_FSIZE,
            T::RlimitData => R::RLIMIT_DATA,
            T::RlimitStack => R::RLIMIT_STACK,
            T::RlimitCore => R::RLIMIT_CORE,
            T::RlimitRss => R::RLIMIT_RSS,
            T::RlimitNproc => R::RLIMIT_NPROC,
            T::RlimitNofile => R::RLIMIT_NOFILE,
            T::RlimitMemlock => R::RLIMIT_MEMLOCK,
            T::RlimitAs => R::RLIMIT_AS,
            T::RlimitLocks => R::RLIMIT_LOCKS,
            T::RlimitSigpending => R::RLIMIT_SIGPENDING,
            T::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
            T::RlimitNice => R::RLIMIT_NICE,
            T::RlimitRtprio => R::RLIMIT_RTPRIO,
            T::RlimitRttime => R::RLIMIT_RTTIME,
        };
        nix::sys::resource::setrlimit(resource, soft, hard)
    }

    fn fork(&mut self) -> SysResult<nix::unistd::ForkResult> {
        // SAFETY: the trait's contract: called only in a single-threaded process (the init,
        // a fresh exec of berth that started no threads, and its PID 1 child; `berth run`
        // after it checked it runs one thread), so the child may run arbitrary code after
        // fork.
        unsafe { nix::unistd::fork() }
    }

    fn execve(&mut self, program: &CStr, argv: &[CString], env: &[CString]) -> nix::Error {
        match nix::unistd::execve(program, argv, env) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }

    fn block_signals(&mut self, set: &nix::sys::signal::SigSet) -> SysResult<()> {
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(set), None)
    }

    fn set_signal_mask(&mut self, set: &nix::sys::signal::SigSet) -> SysResult<()> {
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(set), None)
    }

    fn wait_signal(
        &mut self,
        set: &nix::sys::signal::SigSet,
    ) -> SysResult<nix::sys::signal::Signal> {
        set.wait()
    }

    fn reap(&mut self) -> SysResult<nix::sys::wait::WaitStatus> {
        nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
    }

    fn kill(&mut self, pid: nix::unistd::Pid, signal: nix::sys::signal::Signal) -> SysResult<()> {
        nix::sys::signal::kill(pid, signal)
    }

    fn set_dumpable(&mut self, dumpable: bool) -> SysResult<()> {
        nix::sys::prctl::set_dumpable(dumpable)
    }

    fn limit_bounding(
        &mut self,
        caps: &oci_spec::runtime::LinuxCapabilities,
    ) -> Result<(), crate::RuntimeError> {
        crate::caps::limit_bounding(caps)
    }

    fn apply_capabilities(
        &mut self,
        caps: &oci_spec::runtime::LinuxCapabilities,
        uid: u32,
    ) -> Result<(), crate::RuntimeError> {
        crate::caps::apply_sets(caps, uid)
    }

    fn finish_process(&mut self) -> SysResult<()> {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds.into_iter().filter(|fd| *fd > 2) {
            let _ = nix::unistd::close(fd);
        }
        // The kernel's `struct sigaction` (handler, flags, restorer, mask), all zero:
        // SIG_DFL. Through the system call, since glibc's `sigaction` refuses its internal
        // signals (32 and 33).
        let default_action = [0u64; 4];
        for signal in 1..=libc::SIGRTMAX() {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            // SAFETY: rt_sigaction reads one kernel sigaction from a live, large enough
            // buffer and writes nothing (the old action pointer is null); the size is the
            // kernel's signal-set size, 8 bytes.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
            if rc < 0 {
                return Err(nix::Error::last());
            }
        }
        nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        )
    }

    fn set_parent_death_signal(&mut self, signal: nix::sys::signal::Signal) -> SysResult<()> {
        nix::sys::prctl::set_pdeathsig(signal)
    }

    fn new_session(&mut self) -> SysResult<()> {
        nix::unistd::setsid().map(drop)
    }

    fn take_controlling_terminal(&mut self) -> SysResult<()> {
        nix::unistd::setsid()?;
        // SAFETY: TIOCSCTTY takes an integer argument; fd 0 is the terminal the caller was
        // given.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(nix::Error::last());
        }
        Ok(())
    }

    fn read_file(&mut self, path: &Path) -> SysResult<String> {
        std::fs::read_to_string(path).map_err(io_to_nix)
    }

    fn read_image_file(&mut self, path: &Path) -> SysResult<String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(io_to_nix)?;
        let meta = file.metadata().map_err(io_to_nix)?;
        if !meta.is_file() {
            return Err(nix::Error::EINVAL);
        }
        let mut text = String::new();
        file.take(MAX_IMAGE_FILE + 1)
            .read_to_string(&mut text)
            .map_err(io_to_nix)?;
        if text.len() as u64 > MAX_IMAGE_FILE {
            return Err(nix::Error::EFBIG);
        }
        Ok(text)
    }

    fn read_fd(&mut self, fd: i32, limit: usize) -> SysResult<Vec<u8>> {
        // SAFETY: `fd` was handed to this process to be read here; it is only borrowed for
        // this call and never closed through the borrow.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let mut out = vec![0u8; limit + 1];
        let mut got = 0;
        while got < out.len() {
            match nix::sys::uio::pread(fd, &mut out[got..], got as i64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        if got > limit {
            return Err(nix::Error::EFBIG);
        }
        out.truncate(got);
        Ok(out)
    }

    fn write_file(&mut self, path: &Path, value: &str) -> SysResult<()> {
        std::fs::write(path, value).map_err(io_to_nix)
    }

    fn create_dirs(&mut self, path: &Path) -> SysResult<()> {
        std::fs::create_dir_all(path).map_err(io_to_nix)
    }

    fn remove_dir(&mut self, path: &Path) -> SysResult<()> {
        std::fs::remove_dir(path).map_err(io_to_nix)
    }

    fn current_dir(&mut self) -> SysResult<PathBuf> {
        std::env::current_dir().map_err(io_to_nix)
    }

    fn executable(&mut self, path: &Path) -> Option<bool> {
        let meta = std::fs::metadata(path).ok()?;
        meta.is_file()
            .then(|| nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok())
    }

    fn sleep(&mut self, duration: std::time::Duration) {
        std::thread::sleep(duration);
    }
}

impl LinuxSys {
    fn seccomp(program: &[libc::sock_filter]) -> SysResult<()> {
        #[repr(C)]
        struct SockFprog {
            len: u16,
            filter: *const libc::sock_filter,
        }
        let prog = SockFprog {
            len: program.len() as u16,
            filter: program.as_ptr(),
        };
        // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies the
        // filter and keeps no reference to this memory.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const SockFprog,
            )
        };
        if rc != 0 {
            Err(nix::Error::last())
        } else {
            Ok(())
        }
    }
}

/// `MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC` as the new mount API's
/// `MOUNT_ATTR_*` (other flags have no attribute and are left out).
fn mount_attrs(flags: MsFlags) -> u64 {
    // MOUNT_ATTR_* of <linux/mount.h>: a stable ABI.
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    let mut attrs = 0;
    for (flag, attr) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(flag) {
            attrs |= attr;
        }
    }
    attrs
}

/// The flags an overlay may be mounted with: those with a `MOUNT_ATTR_*`.
const OVERLAY_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// What became of an overlay mounted through `fsconfig`.
enum ByFsconfig {
    Mounted,
    /// The kernel has no `fsopen` (before 5.2, or a seccomp filter that refuses it) or no
    /// `lowerdir+` (before 6.8): nothing was mounted. An overlayfs without its own mount
    /// parameters (before 6.5) takes every key through the legacy option string and refuses
    /// `lowerdir+` only when the superblock is created, or once the options pass a page.
    Unsupported,
}

/// `fsconfig(fd, FSCONFIG_SET_STRING or FSCONFIG_SET_FLAG, key, value)`.
fn fsconfig_set(fs: &OwnedFd, key: &str, value: Option<&str>) -> SysResult<()> {
    use std::os::fd::AsRawFd;
    // FSCONFIG_* of <linux/mount.h>: a stable ABI.
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    let key = CString::new(key).map_err(|_| nix::Error::EINVAL)?;
    let value = value
        .map(|v| CString::new(v).map_err(|_| nix::Error::EINVAL))
        .transpose()?;
    let (cmd, value_ptr) = match &value {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: `fs` is an open fs context; `key` and `value` are NUL-terminated strings (or
    // null for a flag) that outlive the call, and the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            key.as_ptr(),
            value_ptr,
            0 as libc::c_int,
        )
    };
    if rc < 0 {
        Err(nix::Error::last())
    } else {
        Ok(())
    }
}

/// Mounts an overlay through the new mount API, one `lowerdir+` per layer (bottom first),
/// then attaches it on `target`.
fn overlay_by_fsconfig(
    overlay: &super::Overlay,
    target: &Path,
    flags: MsFlags,
) -> SysResult<ByFsconfig> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    // <linux/mount.h>: a stable ABI.
    const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: the name is a NUL-terminated literal; fsopen returns a new descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if rc < 0 {
        return match nix::Error::last() {
            nix::Error::ENOSYS | nix::Error::EPERM => Ok(ByFsconfig::Unsupported),
            e => Err(e),
        };
    }
    // SAFETY: fsopen returned a fresh descriptor that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(rc as i32) };
    // overlayfs stacks `lowerdir+` in the order given, topmost first.
    for lower in overlay.lowers.iter().rev() {
        let lower = lower.to_str().ok_or(nix::Error::EINVAL)?;
        match fsconfig_set(&fs, "lowerdir+", Some(lower)) {
            Ok(()) => {}
            // An unknown key (before 6.8), or the legacy option string full (before 6.5).
            Err(nix::Error::EINVAL) => return Ok(ByFsconfig::Unsupported),
            Err(e) => return Err(e),
        }
    }
    for (key, value) in overlay.options() {
        fsconfig_set(&fs, key, value.as_deref())?;
    }
    // SAFETY: `fs` is an open fs context; no key or value is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_int,
        )
    };
    if rc < 0 {
        return match nix::Error::last() {
            // `lowerdir+` refused as the superblock is made (an overlayfs before 6.5):
            // nothing is mounted, and `mount(2)` says what else may be wrong.
            nix::Error::EINVAL => Ok(ByFsconfig::Unsupported),
            e => Err(e),
        };
    }
    // SAFETY: `fs` is an fs context whose superblock was just created; fsmount returns a
    // new descriptor or -1.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            mount_attrs(flags) as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: fsmount returned a fresh descriptor that nothing else owns.
    let mnt = unsafe { OwnedFd::from_raw_fd(rc as i32) };
    let target = CString::new(target.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: `mnt` is open for the length of the call; the empty path and `target` are
    // NUL-terminated strings that outlive it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(ByFsconfig::Mounted)
}

/// The most `mount(2)` takes as data: one page, its NUL included.
const MOUNT_DATA_MAX: usize = 4095;

/// Mounts an overlay with `mount(2)`. When the layers' paths do not fit in a page, each
/// layer is opened (`O_PATH`) and named by its descriptor, relative to
/// `/proc/thread-self/fd` made the working directory for the call (`lowerdir=12:11:10`):
/// the kernel resolves relative lower dirs from there, and the names are a few bytes each,
/// so overlayfs's 500 layers fit. The descriptors pin the very directories given, and the
/// working directory is set back before returning.
pub(crate) fn overlay_by_mount(
    overlay: &super::Overlay,
    target: &Path,
    flags: MsFlags,
) -> SysResult<()> {
    use std::os::fd::AsRawFd;
    let data = overlay.data();
    if data.len() <= MOUNT_DATA_MAX {
        return nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(data.as_str()),
        );
    }
    // Only absolute paths mean the same from the other working directory.
    let absolute = |p: &Path| p.is_absolute();
    if !absolute(target)
        || !overlay.lowers.iter().all(|p| absolute(p))
        || !overlay
            .upper
            .as_ref()
            .is_none_or(|(u, w)| absolute(u) && absolute(w))
    {
        return Err(nix::Error::EINVAL);
    }
    let held = overlay
        .lowers
        .iter()
        .map(|p| {
            nix::fcntl::open(
                p,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
        })
        .collect::<SysResult<Vec<OwnedFd>>>()?;
    let names: Vec<String> = held
        .iter()
        .rev()
        .map(|fd| fd.as_raw_fd().to_string())
        .collect();
    let data = overlay.data_with_lowers(&names);
    if data.len() > MOUNT_DATA_MAX {
        return Err(nix::Error::E2BIG);
    }
    let back = nix::fcntl::open(
        ".",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::chdir("/proc/thread-self/fd")?;
    let mounted = nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    );
    nix::unistd::fchdir(&back)?;
    mounted
}

/// `mount_setattr(dirfd, path, flags | AT_RECURSIVE)`: `attrs` set on the mount there and on
/// every mount below it, their propagation made private.
fn set_tree_attrs_at(dirfd: i32, path: &CStr, flags: i32, attrs: MsFlags) -> SysResult<()> {
    /// `struct mount_attr` of `<linux/mount.h>` (MOUNT_ATTR_SIZE_VER0).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr_set = mount_attrs(attrs);
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a `struct mount_attr` of the size
    // passed; both outlive the call, and the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            (libc::AT_RECURSIVE | flags) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        Err(nix::Error::last())
    } else {
        Ok(())
    }
}

/// Takes ownership of descriptor `n`, inherited from the parent for this process (`run -dt`
/// hands its terminal to the monitor so); `None` when it is not open.
pub fn take_inherited_fd(n: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    if n <= 2 {
        return None;
    }
    // SAFETY: F_GETFD on any integer only reads the descriptor table.
    let open = unsafe { libc::fcntl(n, libc::F_GETFD) } != -1;
    // SAFETY: `n` is open, was passed to this process for it alone (its number came in the
    // handover string), and nothing else here owns it; it is taken once, at start-up.
    open.then(|| unsafe { OwnedFd::from_raw_fd(n) })
}

/// Whether this process runs a single thread (the `Threads:` line of /proc/self/status), so
/// that it may fork and go on running Rust code in the child.
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.strip_prefix("Threads:").map(str::trim) == Some("1"))
    })
}

/// Whether this process runs in a user namespace other than the host's (its `uid_map` is not
/// the identity over every id): trusted xattrs and device nodes are then out of reach.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().ne(["0", "0", "4294967295"]))
}

/// Forks a helper process that runs `job` with the read end of one pipe and the write end of
/// another, then exits; returns the other ends and the helper's PID. Only for a
/// single-threaded process (the caller checks [`single_threaded`]).
pub fn fork_helper(
    job: impl FnOnce(std::fs::File, std::fs::File),
) -> SysResult<(std::fs::File, std::fs::File, nix::unistd::Pid)> {
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (done_read, done_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the caller runs a single thread, so the child may run Rust code after fork;
    // it ends with `_exit`, running none of the parent's destructors or exit handlers.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(go_write);
            drop(done_read);
            job(go_read.into(), done_write.into());
            // SAFETY: `_exit` ends the process at once; nothing runs after it.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok((go_write.into(), done_read.into(), child)),
    }
}

/// A pidfd of process `pid` (`pidfd_open`): signals sent through it reach that process or
/// none, whatever becomes of the number.
pub fn pidfd_open(pid: i32) -> SysResult<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the descriptor was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` (0: only checks that it may be sent, and that the process has not been
/// reaped) to the process of `pidfd`.
pub fn pidfd_signal(pidfd: std::os::fd::BorrowedFd<'_>, signal: i32) -> SysResult<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal reads no memory when `info` is null.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// `ioctl_ns(2)` requests on a namespace's descriptor: `_IO(0xb7, N)`.
const NS_GET_PARENT: libc::c_ulong = 0xb702;
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The user that owns user namespace `ns` (whose euid made it), as this process sees it.
pub fn ns_owner_uid(ns: std::os::fd::BorrowedFd<'_>) -> SysResult<u32> {
    use std::os::fd::AsRawFd;
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which points at one.
    let rc = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut uid) };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(uid)
}

/// The parent of user namespace `ns` (EPERM when it is outside this process's own).
pub fn ns_parent(ns: std::os::fd::BorrowedFd<'_>) -> SysResult<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: NS_GET_PARENT takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT as _) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the descriptor was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts a pause process: a grandchild of this single-threaded process (the child between
/// them starts a session and exits at once, so the pause process is nobody's child here and
/// has no controlling terminal), with `/` as its working directory, stdio on `/dev/null`,
/// SIGHUP, SIGINT and the like ignored and its signal mask cleared, which execs berth again
/// as `berth-pause __pause` (a fresh process: none of this command's arguments or memory
/// lives on in it) with the report pipe as descriptor 3 and no other; [`pause_main`] runs
/// there. Returns its PID once it has unshared its user namespace, or why it could not.
pub fn spawn_pause() -> SysResult<i32> {
    use std::io::Read;
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let exe = c"/proc/self/exe";
    let argv = [c"berth-pause", c"__pause"];
    // SAFETY: the caller runs a single thread, so the child may run Rust code after fork;
    // it and the grandchild end with `_exit` or exec, running none of the parent's
    // destructors or exit handlers.
    let middle = match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(report_read);
            let code = match nix::unistd::setsid() {
                // SAFETY: as above; this process runs one thread.
                Ok(_) => match unsafe { nix::unistd::fork() } {
                    Ok(nix::unistd::ForkResult::Child) => {
                        let errno = exec_pause(exe, &argv, report_write);
                        // SAFETY: `_exit` ends the process at once; nothing runs after it.
                        unsafe { libc::_exit(128 + errno as i32) }
                    }
                    Ok(nix::unistd::ForkResult::Parent { .. }) => 0,
                    Err(_) => 1,
                },
                Err(_) => 1,
            };
            // SAFETY: `_exit` ends the process at once; nothing runs after it.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(report_write);
    let mut report = String::new();
    let read = std::fs::File::from(report_read)
        .take(64)
        .read_to_string(&mut report);
    let _ = nix::sys::wait::waitpid(middle, None);
    read.map_err(io_to_nix)?;
    // `PID` once unshared, `-ERRNO` when the unshare or the exec failed, nothing when a
    // fork did.
    match report.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        Ok(errno) if errno < 0 => Err(nix::Error::from_raw(-errno)),
        _ => Err(nix::Error::ECHILD),
    }
}

/// The grandchild of [`spawn_pause`]: prepares the process and execs; returns only when the
/// exec failed (after saying so on the report pipe).
fn exec_pause(exe: &CStr, argv: &[&CStr], report: OwnedFd) -> nix::Error {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    use std::io::Write;
    use std::os::fd::AsRawFd;
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
        Signal::SIGALRM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGPROF,
        Signal::SIGVTALRM,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGIO,
    ] {
        // SAFETY: SIG_IGN installs no handler code; it stays across the exec.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let _ = nix::unistd::chdir("/");
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    // The report pipe as descriptor 3, inherited; nothing else of berth's stays open (the
    // store, its locks, the caller's lock on the pidfile).
    // SAFETY: dup3 only makes descriptor 3 a copy of `report`; whatever 3 was is closed, and
    // nothing in this process uses it again.
    let moved = unsafe { libc::dup3(report.as_raw_fd(), 3, 0) };
    if moved >= 0 {
        // SAFETY: close_range only closes descriptors; only 0 to 3 are used again.
        unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) };
        // An empty environment: nothing of the first command's (its secrets included)
        // lives on in a process that outlasts it.
        let err = nix::unistd::execve::<_, &CStr>(exe, argv, &[]).unwrap_err();
        let _ = std::fs::File::from(report).write_all(format!("-{}", err as i32).as_bytes());
        return err;
    }
    let err = nix::Error::last();
    let _ = std::fs::File::from(report).write_all(format!("-{}", err as i32).as_bytes());
    err
}

/// `berth __pause`, the pause process after [`spawn_pause`]'s exec: names itself, unshares
/// its user namespace, says so (its PID, or `-ERRNO`) on descriptor 3, closes it and sleeps
/// until a signal ends it. Refuses (exit 2) when descriptor 3 is not a pipe: run by hand, it
/// does nothing.
pub fn pause_main(name: &CStr) -> i32 {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let is_pipe = nix::sys::stat::fstat(
        // SAFETY: fstat only reads the descriptor's metadata; 3 is not owned here.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(3) },
    )
    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO);
    if !is_pipe {
        return 2;
    }
    // SAFETY: descriptor 3 is the report pipe spawn_pause handed down, owned by nothing else.
    let mut report = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(3) });
    // SAFETY: PR_SET_NAME copies at most 16 bytes of the NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    let answer = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
        Ok(()) => i64::from(std::process::id()),
        Err(e) => -(e as i64),
    };
    let _ = report.write_all(answer.to_string().as_bytes());
    drop(report);
    if answer < 0 {
        return 1;
    }
    loop {
        nix::unistd::pause();
    }
}

/// Sets an environment variable of this process, which must run a single thread (the caller
/// checked [`single_threaded`]): no other thread can be reading the environment.
pub fn set_env_single_threaded(key: &str, value: &str) {
    // SAFETY: one thread runs, so nothing reads or writes the environment meanwhile.
    unsafe { std::env::set_var(key, value) }
}

/// In a child forked from `berth run` to be the container's init: `stdio` as its stdin,
/// stdout and stderr, and every descriptor above 2 closed, as an exec would have left them (berth opens
/// all of its files close-on-exec; the store's lock must not live on in the init).
pub fn forked_init_stdio(stdio: &[OwnedFd; 3]) -> SysResult<()> {
    // The sources are above 2 (std keeps 0, 1 and 2 open, so a new descriptor is never one
    // of them); dup2 clears close-on-exec on the copy.
    for (n, fd) in stdio.iter().enumerate() {
        // SAFETY: dup2 onto 0, 1 or 2 replaces that descriptor; nothing in this forked
        // child holds the old one as an owned value it will use.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(fd), n as i32) } < 0 {
            return Err(nix::Error::last());
        }
    }
    // SAFETY: close_range only closes descriptors; the child owns nothing above 2 that it
    // will use again (the init opens what it needs afterwards, and it exits without running
    // the parent's destructors).
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

/// Runs `f` on a new thread in a mount namespace of its own, which receives the host's mounts
/// but passes none back (`unshare(CLONE_NEWNS)`, then `/` made a recursive slave), and waits
/// for it; a panic in `f` goes on in the caller.
pub fn in_private_mount_namespace<T: Send>(
    f: impl FnOnce(&mut LinuxSys) -> Result<T, crate::RuntimeError> + Send,
) -> Result<T, crate::RuntimeError> {
    let setup = |what: &str| {
        let what = what.to_owned();
        move |errno| crate::RuntimeError::Setup { what, errno }
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut sys = LinuxSys;
                sys.unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(setup("creating a mount namespace"))?;
                sys.mount(
                    None,
                    Path::new("/"),
                    None,
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    None,
                )
                .map_err(setup("making mounts private"))?;
                f(&mut sys)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The window size of a terminal, if `fd` is one.
pub fn window_size(fd: std::os::fd::BorrowedFd<'_>) -> Option<nix::pty::Winsize> {
    use std::os::fd::AsRawFd;
    let mut size = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into `size`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0).then_some(size)
}

/// Sets a terminal's window size (the kernel then signals its foreground group).
pub fn set_window_size(fd: std::os::fd::BorrowedFd<'_>, size: &nix::pty::Winsize) {
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCSWINSZ reads a winsize from `size`, which outlives the call.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size) };
}

fn io_to_nix(e: std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Makes `command`'s child enter the network namespace `ns` (a descriptor open in this
/// process until the command is spawned) before it execs: `net` runs `ip` and `nft` on the
/// host's side from the init, which is already in the container's namespace.
pub fn enter_net_ns_before_exec(command: &mut std::process::Command, ns: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls setns,
    // which is async-signal-safe; `ns` is open in the parent when it spawns, so the child's
    // copy of it is open too (close-on-exec closes it only at the exec).
    unsafe {
        command.pre_exec(move || {
            if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_targets_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink("/", root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dev")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("up")).unwrap();
        let mut sys = LinuxSys;
        // `etc -> /` is the root itself: etc/hostsfile lands at <root>/hostsfile.
        let mut resolve = |rel: &str, create| {
            sys.resolve_in_root(&root, Path::new(rel), create)
                .map(|r| r.path().to_owned())
        };
        let p = resolve("etc/hostsfile", Create::File).unwrap();
        assert_eq!(p, std::fs::canonicalize(&root).unwrap().join("hostsfile"));
        // `dev -> <outside>` points at <root>/<outside path>, which does not exist: as runc's
        // MkdirAllInRoot, its target is created inside the root; nothing outside.
        let p = resolve("dev/shm", Create::Dir).unwrap();
        let inside = std::fs::canonicalize(&root)
            .unwrap()
            .join(outside.strip_prefix("/").unwrap())
            .join("shm");
        assert_eq!(p, inside);
        // A loop of dangling links ends in ELOOP.
        std::os::unix::fs::symlink("l2", root.join("l1")).unwrap();
        std::os::unix::fs::symlink("l1", root.join("l2")).unwrap();
        assert_eq!(resolve("l1/x", Create::Dir), Err(nix::Error::ELOOP));
        let p = resolve("up/escaped", Create::Dir).unwrap();
        assert!(
            p.starts_with(std::fs::canonicalize(&root).unwrap()),
            "{}",
            p.display()
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing created outside"
        );
        assert!(!Path::new("/hostsfile").exists());
        assert_eq!(resolve("missing", Create::Nothing), Err(nix::Error::ENOENT));
    }

    /// In a mount namespace of a thread, as root: `f` with a scratch directory.
    fn in_mount_namespace(f: impl FnOnce(&Path) + Send) {
        if !berth_test_support::needs_root("mounts") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        in_private_mount_namespace(|_| {
            f(&dir);
            Ok(())
        })
        .unwrap();
    }

    /// A target resolved, then a component of its path replaced by a symlink to outside the
    /// root (what a container sharing a volume can do between the resolution and the mount):
    /// the mount and the bind still land on what was resolved, never outside.
    #[test]
    fn a_mount_goes_onto_the_resolved_target_even_when_its_path_is_swapped() {
        in_mount_namespace(|dir| {
            let (root, outside) = (dir.join("root"), dir.join("outside"));
            std::fs::create_dir_all(root.join("vol/sub")).unwrap();
            std::fs::create_dir_all(outside.join("sub")).unwrap();
            let src = dir.join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("mark"), "m").unwrap();
            let mut sys = LinuxSys;
            let tmpfs = sys
                .resolve_in_root(&root, Path::new("vol/sub"), Create::Nothing)
                .unwrap();
            std::fs::create_dir_all(root.join("vol2/sub2")).unwrap();
            let bound = sys
                .resolve_in_root(&root, Path::new("vol2/sub2"), Create::Nothing)
                .unwrap();
            // The swap: `vol` and `vol2` moved away, symlinks to outside in their place.
            std::fs::rename(root.join("vol"), root.join("vol.moved")).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("vol")).unwrap();
            std::fs::rename(root.join("vol2"), root.join("vol2.moved")).unwrap();
            std::fs::create_dir_all(outside.join("sub2")).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("vol2")).unwrap();
            sys.mount(
                Some("tmpfs"),
                tmpfs.target(),
                Some("tmpfs"),
                MsFlags::empty(),
                Some("size=1m"),
            )
            .unwrap();
            std::fs::write(root.join("vol.moved/sub/x"), "x").unwrap();
            if !bind_or_skip(&mut sys, &src, &bound) {
                return;
            }
            assert!(root.join("vol2.moved/sub2/mark").exists());
            // Nothing appeared outside: no mount there, no file.
            assert_eq!(std::fs::read_dir(outside.join("sub")).unwrap().count(), 0);
            assert_eq!(std::fs::read_dir(outside.join("sub2")).unwrap().count(), 0);
            let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
            assert!(!info.contains(&*outside.to_string_lossy()), "{info}");
        });
    }

    /// `bind_tree`, read-only; `false` (the test skips) on a kernel without mount_setattr.
    fn bind_or_skip(sys: &mut LinuxSys, src: &Path, target: &InRoot) -> bool {
        match sys.bind_tree(src, target, true, MsFlags::MS_RDONLY | MsFlags::MS_NODEV) {
            Ok(()) => true,
            Err(nix::Error::ENOSYS) => {
                berth_test_support::skip("mount_setattr (Linux 5.12)");
                false
            }
            Err(e) => panic!("bind_tree: {e}"),
        }
    }

    /// `bind_tree` attaches the source's whole tree, with the flags on every mount of it.
    #[test]
    fn a_bound_tree_is_restricted_in_every_mount() {
        in_mount_namespace(|dir| {
            let (src, root) = (dir.join("src"), dir.join("root"));
            std::fs::create_dir_all(src.join("sub")).unwrap();
            std::fs::create_dir_all(root.join("t")).unwrap();
            let mut sys = LinuxSys;
            sys.mount(
                Some("tmpfs"),
                &src.join("sub"),
                Some("tmpfs"),
                MsFlags::empty(),
                Some("size=1m"),
            )
            .unwrap();
            let target = sys
                .resolve_in_root(&root, Path::new("t"), Create::Nothing)
                .unwrap();
            if !bind_or_skip(&mut sys, &src, &target) {
                return;
            }
            for p in [root.join("t/x"), root.join("t/sub/x")] {
                let e = std::fs::write(&p, "x").unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{}", p.display());
            }
            // `t/sub` is a mount of its own (the tmpfs came along), and both carry the flags.
            let device = |p: &Path| nix::sys::stat::stat(p).unwrap().st_dev;
            assert_ne!(device(&root.join("t")), device(&root.join("t/sub")));
            for p in [root.join("t"), root.join("t/sub")] {
                let flags = nix::sys::statvfs::statvfs(&p).unwrap().flags();
                use nix::sys::statvfs::FsFlags;
                assert!(
                    flags.contains(FsFlags::ST_RDONLY | FsFlags::ST_NODEV),
                    "{}: {flags:?}",
                    p.display()
                );
            }
            std::fs::write(src.join("sub/x"), "x").unwrap();
        });
    }

    /// A FIFO, a device or an oversized file as an image's `/etc/passwd` is refused at once.
    #[test]
    fn image_files_must_be_small_regular_files() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let mut sys = LinuxSys;
        assert_eq!(sys.read_image_file(&fifo), Err(nix::Error::EINVAL));
        assert_eq!(
            sys.read_image_file(Path::new("/dev/zero")),
            Err(nix::Error::EINVAL)
        );
        let big = tmp.path().join("big");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_IMAGE_FILE + 1).unwrap();
        assert_eq!(sys.read_image_file(&big), Err(nix::Error::EFBIG));
        std::fs::write(&big, "root:x:0:0::/:/bin/sh\n").unwrap();
        assert_eq!(
            sys.read_image_file(&big).unwrap(),
            "root:x:0:0::/:/bin/sh\n"
        );
    }

    /// `n` lower layers under `dir` with long names, each holding its own file `f<i>` and its
    /// version of `top`, and an upper.
    fn tall_overlay(dir: &Path, n: usize) -> super::super::Overlay {
        let lowers: Vec<PathBuf> = (0..n)
            .map(|i| {
                let l = dir.join(format!("{i:03}-{}", "x".repeat(150)));
                std::fs::create_dir_all(&l).unwrap();
                std::fs::write(l.join(format!("f{i}")), "").unwrap();
                std::fs::write(l.join("top"), i.to_string()).unwrap();
                l
            })
            .collect();
        std::fs::create_dir_all(dir.join("upper")).unwrap();
        std::fs::create_dir_all(dir.join("work")).unwrap();
        super::super::Overlay {
            lowers,
            upper: Some((dir.join("upper"), dir.join("work"))),
            volatile: false,
        }
    }

    /// The merged tree of a `n`-layer [`tall_overlay`] mounted on `target` is every layer,
    /// the topmost winning.
    fn assert_merged(target: &Path, n: usize) {
        for i in 0..n {
            assert!(target.join(format!("f{i}")).exists(), "layer {i} missing");
        }
        assert_eq!(
            std::fs::read_to_string(target.join("top")).unwrap(),
            (n - 1).to_string()
        );
        std::fs::write(target.join("new"), "upper").unwrap();
    }

    /// 130 layers whose paths take four pages: through `lowerdir+`, and through `mount(2)`
    /// with the layers named by descriptor (the fallback for kernels before 6.8), with the
    /// working directory left as it was.
    #[test]
    fn an_overlay_of_more_layers_than_a_page_of_paths_mounts_both_ways() {
        in_mount_namespace(|dir| {
            let n = 130;
            let overlay = tall_overlay(&dir.join("a"), n);
            assert!(overlay.data().len() > 4 * 4096, "the paths overflow a page");
            let target = dir.join("a/merged");
            std::fs::create_dir_all(&target).unwrap();
            LinuxSys
                .mount_overlay(&overlay, &target, MsFlags::MS_NODEV)
                .unwrap();
            assert_merged(&target, n);

            let overlay = tall_overlay(&dir.join("b"), n);
            let target = dir.join("b/merged");
            std::fs::create_dir_all(&target).unwrap();
            let cwd = std::env::current_dir().unwrap();
            overlay_by_mount(&overlay, &target, MsFlags::MS_NODEV).unwrap();
            assert_eq!(std::env::current_dir().unwrap(), cwd);
            assert_merged(&target, n);
            assert!(
                std::fs::read_to_string("/proc/thread-self/mountinfo")
                    .unwrap()
                    .lines()
                    .any(|l| l.contains(&*target.to_string_lossy()) && l.contains("nodev")),
                "mounted nodev"
            );
        });
    }
}
