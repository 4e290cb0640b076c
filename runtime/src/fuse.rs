//! fuse-overlayfs, the mount program for overlays where the kernel's overlayfs cannot be
//! mounted: an [`Overlay`] and a target in, a FUSE mount served by a `fuse-overlayfs` daemon
//! out ([`FuseMount`]), unmounted and its daemon gone when it is dropped.
//!
//! Which program mounts overlays ([`MountProgram`], from `BERTH_MOUNT_PROGRAM`): unset, the
//! kernel's overlayfs, and in a user namespace (rootless) fuse-overlayfs where the kernel
//! refuses it (`EPERM`, `EINVAL`, `ENODEV`, `EOPNOTSUPP`: an overlayfs that user namespaces
//! may not mount, an option it does not know, none at all) and fuse-overlayfs is usable
//! (found on `PATH`, `/dev/fuse` opened read-write); `native`: never fuse-overlayfs; a path:
//! always that program, and an error, never a native mount, when it cannot be used.
//!
//! The mount: berth opens `/dev/fuse` and mounts it itself (`fuse.fuse-overlayfs`, with
//! `allow_other` so the container's other users reach it and `default_permissions` so the
//! kernel checks modes, as fuse-overlayfs asks of libfuse), then runs
//! `fuse-overlayfs -f -o lowerdir=…,upperdir=…,workdir=… /dev/fd/N` on that descriptor
//! (libfuse serves a descriptor named so without mounting). Nothing else is passed: no
//! squashing of owners, no redirects. The mount is ready when a `statfs` through it is
//! answered; a daemon that fails before that aborts the connection and its stderr is the
//! error.
//!
//! The daemon: a child of the thread that mounted, in a session of its own (a terminal's
//! Ctrl-C never reaches it), with `PR_SET_PDEATHSIG` SIGKILL: it dies with the thread that
//! started it (berth killed with SIGKILL included), which aborts the connection; the mount
//! namespace it lived in then has no process left and goes, with the mount. Dropping a
//! [`FuseMount`] unmounts it (the superblock's last reference gone, the kernel flushes what
//! it caches and ends the connection, and the daemon exits) and waits for the daemon.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

use crate::RuntimeError;
use crate::sys::Overlay;

/// The environment variable that picks the overlay mount program.
pub const ENV: &str = "BERTH_MOUNT_PROGRAM";

/// The program berth looks for on `PATH` when it falls back.
pub const PROGRAM: &str = "fuse-overlayfs";

/// Which program mounts overlays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountProgram {
    /// The kernel's overlayfs; in a user namespace, fuse-overlayfs where the kernel refuses.
    Auto,
    /// The kernel's overlayfs only.
    Native,
    /// This fuse-overlayfs, always.
    Fuse(PathBuf),
}

impl MountProgram {
    /// `BERTH_MOUNT_PROGRAM`'s value: unset or empty is [`MountProgram::Auto`], `native`,
    /// else a program (a name is looked up on `PATH` when it is used).
    pub fn parse(value: Option<&str>) -> MountProgram {
        match value.map(str::trim) {
            None | Some("") => MountProgram::Auto,
            Some("native") => MountProgram::Native,
            Some(program) => MountProgram::Fuse(PathBuf::from(program)),
        }
    }

    /// The choice this process's environment makes.
    pub fn from_env() -> MountProgram {
        MountProgram::parse(std::env::var(ENV).ok().as_deref())
    }
}

/// Whether a native overlay mount's error means the kernel will not mount overlayfs here at
/// all (rather than a problem with these directories, which fuse-overlayfs would meet too).
pub fn native_unsupported(errno: nix::Error) -> bool {
    matches!(
        errno,
        nix::Error::EPERM | nix::Error::EINVAL | nix::Error::ENODEV | nix::Error::EOPNOTSUPP
    )
}

/// The program as an executable path: a name without `/` is looked up on `PATH`.
pub fn find_program(program: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return if executable(program) {
            Ok(program.to_owned())
        } else {
            Err(format!("{} is not an executable file", program.display()))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("{} is not on PATH", program.display()))
}

/// Opens `/dev/fuse` for a mount.
fn open_fuse_device() -> Result<OwnedFd, nix::Error> {
    nix::fcntl::open(
        "/dev/fuse",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// fuse-overlayfs ready to mount: the program found (`program`, or `fuse-overlayfs` on
/// `PATH`) and `/dev/fuse` usable; else why not.
pub fn usable(program: Option<&Path>) -> Result<PathBuf, String> {
    let found = find_program(program.unwrap_or(Path::new(PROGRAM)))?;
    open_fuse_device().map_err(|e| format!("/dev/fuse cannot be opened: {}", e.desc()))?;
    Ok(found)
}

/// Which overlay a rootless berth mounts here, for `berth info`: native, or fuse-overlayfs
/// and why. `native_ok`: whether the kernel mounts overlayfs in a user namespace.
pub fn describe(program: &MountProgram, native_ok: Result<(), String>) -> String {
    match program {
        MountProgram::Native => match native_ok {
            Ok(()) => format!("native, in berth's user namespace (userxattr; {ENV}=native)"),
            Err(why) => {
                format!("unavailable rootless: {why}, and {ENV}=native forbids fuse-overlayfs")
            }
        },
        MountProgram::Fuse(p) => match usable(Some(p)) {
            Ok(found) => format!("fuse-overlayfs ({}, forced by {ENV})", found.display()),
            Err(why) => format!("unusable: {ENV} asks for fuse-overlayfs, but {why}"),
        },
        MountProgram::Auto => match native_ok {
            Ok(()) => "native, in berth's user namespace (userxattr)".to_owned(),
            Err(why) => match usable(None) {
                Ok(found) => format!("fuse-overlayfs ({}), since {why}", found.display()),
                Err(no) => {
                    format!("unavailable rootless: {why}, and no fuse-overlayfs fallback: {no}")
                }
            },
        },
    }
}

/// An overlay mounted by fuse-overlayfs; dropping it unmounts it and waits for the daemon.
#[derive(Debug)]
pub struct FuseMount {
    target: PathBuf,
    daemon: Option<Child>,
    /// What was mounted: its upper directory is rewritten once the daemon is gone.
    overlay: Overlay,
}

/// The most of a failed daemon's stderr an error carries.
const MAX_STDERR: usize = 4096;

/// How long an unmounted daemon is given to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(10);

impl FuseMount {
    /// Mounts `overlay` on `target` (a directory; a `/proc/self/fd/N` path works) with
    /// `flags` (`MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`) through `program`.
    pub fn mount(
        program: &Path,
        overlay: &Overlay,
        target: &Path,
        flags: MsFlags,
    ) -> Result<FuseMount, RuntimeError> {
        let fail = |what: String, errno| RuntimeError::Setup { what, errno };
        let program =
            find_program(program).map_err(|e| fail(format!("{ENV}: {e}"), nix::Error::ENOENT))?;
        let options = fuse_options(overlay).ok_or_else(|| {
            fail(
                "fuse-overlayfs: a layer's path holds ':', ',' or '\\'".to_owned(),
                nix::Error::EINVAL,
            )
        })?;
        let device = open_fuse_device()
            .map_err(|e| fail("fuse-overlayfs: opening /dev/fuse".to_owned(), e))?;
        let data = format!(
            "fd={},rootmode=40000,user_id={},group_id={},allow_other,default_permissions",
            device.as_raw_fd(),
            nix::unistd::geteuid(),
            nix::unistd::getegid()
        );
        nix::mount::mount(
            Some(PROGRAM),
            target,
            Some("fuse.fuse-overlayfs"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|errno| RuntimeError::Setup {
            what: format!("mounting fuse-overlayfs on {}", target.display()),
            errno,
        })?;
        // From here the mount exists: an error unmounts it (the drop).
        let mut mounted = FuseMount {
            target: target.to_owned(),
            daemon: None,
            overlay: overlay.clone(),
        };
        let mut command = Command::new(&program);
        command
            .arg("-f")
            .arg("-o")
            .arg(&options)
            .arg(format!("/dev/fd/{}", device.as_raw_fd()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let fd = device.as_raw_fd();
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (fcntl, close_range, setsid, prctl, getppid) on values
        // copied before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                daemon_setup(fd, parent)
            });
        }
        let mut child = command.spawn().map_err(|e| RuntimeError::Io {
            what: format!("starting {}", program.display()),
            source: e,
        })?;
        drop(device);
        let stderr = child.stderr.take();
        mounted.daemon = Some(child);
        // Answered once the daemon serves the mount; a daemon that exits first aborts the
        // connection (ENOTCONN).
        if let Err(errno) = nix::sys::statfs::statfs(target) {
            let mut said = String::new();
            if let Some(mut e) = stderr {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(
                    &mut std::io::Read::take(&mut e, MAX_STDERR as u64),
                    &mut buf,
                );
                said = String::from_utf8_lossy(&buf).trim().to_owned();
            }
            return Err(RuntimeError::Setup {
                what: format!(
                    "fuse-overlayfs did not serve {}{}",
                    target.display(),
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(" ({said})")
                    }
                ),
                errno,
            });
        }
        Ok(mounted)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Where it is mounted.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts (lazily: the kernel ends the connection once nothing uses the mount) and waits
    /// for the daemon to exit; one still running after [`EXIT_WAIT`] is killed. Then the
    /// upper directory, which nothing writes any more, is rewritten in the kernel's forms
    /// ([`normalize_upper`]; not a volatile one, which is thrown away).
    fn finish(&mut self) {
        let _ = nix::mount::umount2(&self.target, MntFlags::MNT_DETACH);
        let Some(mut child) = self.daemon.take() else {
            return;
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if start.elapsed() > EXIT_WAIT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        if let (Some((upper, _)), false) = (&self.overlay.upper, self.overlay.volatile) {
            let lowers: Vec<PathBuf> = self.overlay.lowers.iter().rev().cloned().collect();
            // What is left unconverted, the layer packer reads as well.
            let _ = normalize_upper(upper, &lowers);
        }
    }

    /// Forgets the mount and the daemon without touching either: for a forked child that
    /// shares them with its parent, which cleans up.
    pub fn forget(mut self) {
        self.daemon = None;
        self.target = PathBuf::new();
        self.overlay.upper = None;
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        self.finish();
    }
}

/// In the daemon between fork and exec: the FUSE descriptor kept open across exec and every
/// other descriptor above 2 closed at exec, a session of its own, and SIGKILL when the thread
/// that started it ends (checked against a parent that ended already).
fn daemon_setup(fd: i32, parent: libc::pid_t) -> std::io::Result<()> {
    let check = |rc: libc::c_long| {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: fcntl, close_range, setsid, prctl and getppid only act on this process; they
    // are async-signal-safe.
    unsafe {
        if fd > 3 {
            check(libc::syscall(
                libc::SYS_close_range,
                3u32,
                (fd - 1) as u32,
                CLOSE_RANGE_CLOEXEC,
            ))?;
        }
        check(libc::syscall(
            libc::SYS_close_range,
            (fd + 1) as u32,
            u32::MAX,
            CLOSE_RANGE_CLOEXEC,
        ))?;
        check(libc::fcntl(fd, libc::F_SETFD, 0) as libc::c_long)?;
        check(libc::setsid() as libc::c_long)?;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) as libc::c_long)?;
        // The parent ended before the death signal was set (no allocation here: ESRCH).
        if libc::getppid() != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// The opaque mark the kernel's overlayfs reads: `user.overlay.opaque` in a user namespace
/// (mounted `userxattr`), else `trusted.overlay.opaque`.
fn kernel_opaque_xattr() -> &'static std::ffi::CStr {
    if crate::sys::linux::in_user_namespace() {
        c"user.overlay.opaque"
    } else {
        c"trusted.overlay.opaque"
    }
}

/// Every opaque mark fuse-overlayfs reads or writes on an upper directory.
const OPAQUE_XATTRS: [&std::ffi::CStr; 3] = [
    c"user.fuseoverlayfs.opaque",
    c"trusted.overlay.opaque",
    c"user.overlay.opaque",
];

/// fuse-overlayfs's opaque file in a directory.
const OPAQUE_FILE: &str = ".wh..wh..opq";

fn c_path(p: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// Whether `path` (never followed) has the xattr `name`.
fn has_xattr(path: &Path, name: &std::ffi::CStr) -> bool {
    let Ok(p) = c_path(path) else { return false };
    // SAFETY: both strings are NUL-terminated and outlive the call; a null buffer of size 0
    // asks only for the value's size.
    unsafe { libc::lgetxattr(p.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

/// Whether `path` is a whiteout: a char device 0:0, or fuse-overlayfs's `.wh.NAME` beside it.
fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
    {
        return true;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(name);
            std::fs::symlink_metadata(dir.join(wh)).is_ok_and(|m| m.is_file())
        }
        _ => false,
    }
}

/// Whether directory `path` of a lower layer is opaque, in any form.
fn is_opaque_dir(path: &Path) -> bool {
    OPAQUE_XATTRS.iter().any(|n| has_xattr(path, n))
        || std::fs::symlink_metadata(path.join(OPAQUE_FILE)).is_ok_and(|m| m.is_file())
}

/// Whether the lower layers (topmost first) show something at `rel`, as overlayfs looks a
/// path up: component by component, down the layers where the parent is a directory,
/// stopping at a whiteout, a non-directory or an opaque directory. The kernel makes a
/// directory it creates opaque exactly when it is created over a whiteout of the upper
/// directory, which is when the lowers showed something there that the step deleted (a
/// whiteout in a lower layer makes no upper whiteout: nothing is deleted).
fn shown_by_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    let parts: Vec<_> = rel.components().collect();
    let mut layers: Vec<&PathBuf> = lowers.iter().collect();
    let mut prefix = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        prefix.push(part);
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for l in layers {
            let p = l.join(&prefix);
            if is_whiteout(&p) {
                break;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if last {
                return true;
            }
            if !meta.is_dir() {
                break;
            }
            next.push(l);
            if is_opaque_dir(&p) {
                break;
            }
        }
        layers = next;
        if layers.is_empty() {
            return false;
        }
    }
    false
}

/// Removes every overlay xattr ([`berth_oci::xattr::is_overlay_xattr`]) of `path` (never followed): those
/// fuse-overlayfs wrote, and those a process under it set, which fuse-overlayfs 1.10 allows
/// (`user.overlay.redirect`, `metacopy`, `whiteout`...) and which the kernel's overlayfs would
/// act on when the snapshot is a lower layer. Whether it had an opaque mark is returned.
fn strip_overlay_xattrs(path: &Path) -> std::io::Result<bool> {
    let p = c_path(path)?;
    // SAFETY: the path is NUL-terminated; a null buffer of size 0 asks only for the size.
    let size = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    if size == 0 {
        return Ok(false);
    }
    // At most 64 KiB of names: the kernel's own limit for one file's list (ERANGE if the
    // list grew since).
    let mut names = vec![0u8; 64 << 10];
    let n = if size < 0 {
        size
    } else {
        // SAFETY: the path is NUL-terminated and the buffer is writable for its length; both
        // outlive the call.
        unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) }
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        // A filesystem without xattrs has none to strip.
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(false),
            _ => Err(e),
        };
    }
    names.truncate(n as usize);
    let mut opaque = false;
    for name in names
        .split(|b| *b == 0)
        .filter(|n| berth_oci::xattr::is_overlay_xattr(n))
    {
        opaque |= OPAQUE_XATTRS.iter().any(|o| o.to_bytes() == name);
        let name = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
        // SAFETY: both strings are NUL-terminated and outlive the call.
        if unsafe { libc::lremovexattr(p.as_ptr(), name.as_ptr()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(opaque)
}

/// Rewrites an upper directory fuse-overlayfs wrote (its daemon gone) into the kernel's
/// overlayfs forms, so that the same steps give the same upper, and so the same layer, under
/// either: a `.wh.NAME` file becomes a char device 0:0 NAME (left where none can be made,
/// before Linux 5.8 in a user namespace); whiteouts of `.wh.` names it makes beside its
/// opaque file go; every directory it marked opaque (`user.fuseoverlayfs.opaque`,
/// `trusted.overlay.opaque` or `user.overlay.opaque`, a `.wh..wh..opq` file) keeps the
/// kernel's mark alone ([`kernel_opaque_xattr`]) where the kernel would have set it, over
/// something the lower layers (`lowers`, topmost first) show there ([`shown_by_lowers`]), and
/// none elsewhere (fuse-overlayfs marks every directory it creates). Nothing is followed:
/// entries are taken by their own type, and the tree is walked without recursion.
pub fn normalize_upper(upper: &Path, lowers: &[PathBuf]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = upper.join(&rel);
        let entries: Vec<std::fs::DirEntry> =
            std::fs::read_dir(&dir)?.collect::<std::io::Result<_>>()?;
        // The directory's times, set back once its entries are rewritten: these are no
        // change the container made.
        let times = std::fs::symlink_metadata(&dir)?;
        let mut changed = false;
        let mut marked = strip_overlay_xattrs(&dir)? && !rel.as_os_str().is_empty();
        for entry in entries {
            let name = entry.file_name();
            let kind = entry.file_type()?;
            let path = dir.join(&name);
            if kind.is_dir() {
                dirs.push(rel.join(&name));
                continue;
            }
            strip_overlay_xattrs(&path)?;
            let Some(target) = name.as_bytes().strip_prefix(b".wh.") else {
                continue;
            };
            changed = true;
            if name == OPAQUE_FILE && kind.is_file() {
                std::fs::remove_file(&path)?;
                marked |= !rel.as_os_str().is_empty();
            } else if kind.is_char_device() && entry.metadata()?.rdev() == 0 {
                std::fs::remove_file(&path)?;
            } else if kind.is_file() && !target.is_empty() {
                let node = dir.join(std::ffi::OsStr::from_bytes(target));
                let made = nix::sys::stat::mknod(
                    &node,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    0,
                );
                if made.is_ok() {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        if changed {
            use std::os::unix::fs::MetadataExt;
            let at = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &dir,
                &at(times.atime(), times.atime_nsec()),
                &at(times.mtime(), times.mtime_nsec()),
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )?;
        }
        if marked {
            let p = c_path(&dir)?;
            if shown_by_lowers(lowers, &rel) {
                // SAFETY: the strings and the one-byte value outlive the call.
                let rc = unsafe {
                    libc::lsetxattr(
                        p.as_ptr(),
                        kernel_opaque_xattr().as_ptr(),
                        c"y".as_ptr().cast(),
                        1,
                        0,
                    )
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
    }
    Ok(())
}

/// fuse-overlayfs's `-o` value: the layers topmost first, the upper and work directories,
/// `volatile` when asked. `None` when a path holds a character its option syntax splits on.
pub fn fuse_options(overlay: &Overlay) -> Option<String> {
    let plain = |p: &Path| {
        let s = p.to_str()?;
        (!s.contains([':', ',', '\\'])).then(|| s.to_owned())
    };
    let lowers = overlay
        .lowers
        .iter()
        .rev()
        .map(|p| plain(p))
        .collect::<Option<Vec<_>>>()?;
    let mut options = format!("lowerdir={}", lowers.join(":"));
    if let Some((upper, work)) = &overlay.upper {
        options.push_str(&format!(
            ",upperdir={},workdir={}",
            plain(upper)?,
            plain(work)?
        ));
        if overlay.volatile {
            options.push_str(",volatile");
        }
    }
    Some(options)
}

/// Set once the kernel refused an overlay in this process's user namespace
/// ([`mount_overlay`]).
static NATIVE_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether the kernel's overlayfs may be mounted for this process (a RUN step's read-only
/// overlay mounts, which only the kernel's can be): not when `BERTH_MOUNT_PROGRAM` names a
/// program, nor in a user namespace where the kernel refuses overlayfs, which is tried once
/// for the process: an overlay mounted on directories made under `scratch` (removed after),
/// in a thread's mount namespace.
pub fn kernel_overlays(scratch: &Path) -> bool {
    static PROBED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    match MountProgram::from_env() {
        MountProgram::Fuse(_) => false,
        MountProgram::Native => true,
        MountProgram::Auto if !crate::sys::linux::in_user_namespace() => true,
        MountProgram::Auto => {
            *PROBED.get_or_init(|| probe_native(scratch)) && !NATIVE_REFUSED.load(Ordering::Relaxed)
        }
    }
}

/// Mounts a one-layer overlay under `scratch` in a thread's mount namespace: false when the
/// kernel refuses overlayfs itself ([`native_unsupported`]), which later mounts then know.
fn probe_native(scratch: &Path) -> bool {
    let dir = |d: &str| scratch.join(d);
    if ["lower", "upper", "work", "merged"]
        .iter()
        .any(|d| std::fs::create_dir_all(dir(d)).is_err())
    {
        return true;
    }
    let overlay = Overlay {
        lowers: vec![dir("lower")],
        upper: Some((dir("upper"), dir("work"))),
        volatile: false,
    };
    let mounted = crate::sys::linux::in_private_mount_namespace(|sys| {
        Ok(crate::sys::Sys::mount_overlay(
            sys,
            &overlay,
            &dir("merged"),
            MsFlags::empty(),
        ))
    });
    let _ = std::fs::remove_dir_all(scratch);
    match mounted {
        Ok(Err(errno)) if native_unsupported(errno) => {
            NATIVE_REFUSED.store(true, Ordering::Relaxed);
            false
        }
        _ => true,
    }
}

/// Mounts `overlay` on `target` as `program` says: natively through `mount_native`, or by
/// fuse-overlayfs (then its [`FuseMount`]). In [`MountProgram::Auto`], a native mount
/// refused in a user namespace ([`native_unsupported`]) falls back to fuse-overlayfs when it
/// is [`usable`]; `remember` says once that it did, so later mounts of the process go to
/// fuse-overlayfs at once.
pub fn mount_overlay(
    program: &MountProgram,
    overlay: &Overlay,
    target: &Path,
    flags: MsFlags,
    mount_native: &mut dyn FnMut() -> Result<(), nix::Error>,
) -> Result<Option<FuseMount>, RuntimeError> {
    let what = || {
        format!(
            "mounting an overlay of {} layers on {}",
            overlay.lowers.len(),
            target.display()
        )
    };
    match program {
        MountProgram::Fuse(p) => FuseMount::mount(p, overlay, target, flags).map(Some),
        MountProgram::Native => {
            mount_native()
                .map(|()| None)
                .map_err(|errno| RuntimeError::Setup {
                    what: what(),
                    errno,
                })
        }
        MountProgram::Auto => {
            let in_userns = crate::sys::linux::in_user_namespace();
            if in_userns
                && NATIVE_REFUSED.load(Ordering::Relaxed)
                && let Ok(found) = usable(None)
            {
                return FuseMount::mount(&found, overlay, target, flags).map(Some);
            }
            match mount_native() {
                Ok(()) => Ok(None),
                Err(errno) if in_userns && native_unsupported(errno) => match usable(None) {
                    Ok(found) => {
                        NATIVE_REFUSED.store(true, Ordering::Relaxed);
                        FuseMount::mount(&found, overlay, target, flags).map(Some)
                    }
                    Err(why) => Err(RuntimeError::Setup {
                        what: format!(
                            "{} (the kernel's overlayfs in berth's user namespace; no \
                             fuse-overlayfs fallback: {why})",
                            what()
                        ),
                        errno,
                    }),
                },
                Err(errno) => Err(RuntimeError::Setup {
                    what: what(),
                    errno,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_picks_the_program() {
        assert_eq!(MountProgram::parse(None), MountProgram::Auto);
        assert_eq!(MountProgram::parse(Some("")), MountProgram::Auto);
        assert_eq!(MountProgram::parse(Some("native")), MountProgram::Native);
        assert_eq!(
            MountProgram::parse(Some("/usr/bin/fuse-overlayfs")),
            MountProgram::Fuse("/usr/bin/fuse-overlayfs".into())
        );
        assert_eq!(
            MountProgram::parse(Some("fuse-overlayfs")),
            MountProgram::Fuse("fuse-overlayfs".into())
        );
    }

    #[test]
    fn only_what_is_needed_is_passed() {
        let overlay = Overlay {
            lowers: vec!["/s/a".into(), "/s/b".into()],
            upper: Some(("/c/upper".into(), "/c/work".into())),
            volatile: false,
        };
        assert_eq!(
            fuse_options(&overlay).unwrap(),
            "lowerdir=/s/b:/s/a,upperdir=/c/upper,workdir=/c/work"
        );
        let volatile = Overlay {
            volatile: true,
            ..overlay.clone()
        };
        assert!(fuse_options(&volatile).unwrap().ends_with(",volatile"));
        let ro = Overlay {
            upper: None,
            ..overlay.clone()
        };
        assert_eq!(fuse_options(&ro).unwrap(), "lowerdir=/s/b:/s/a");
        for bad in ["/s/a:b", "/s/a,b", "/s/a\\b"] {
            let o = Overlay {
                lowers: vec![bad.into()],
                ..overlay.clone()
            };
            assert_eq!(fuse_options(&o), None, "{bad}");
        }
    }

    #[test]
    fn a_forced_program_that_is_missing_is_an_error_not_a_native_mount() {
        let mut native = 0;
        let e = mount_overlay(
            &MountProgram::Fuse("/nonexistent/fuse-overlayfs".into()),
            &Overlay {
                lowers: vec!["/s/a".into()],
                upper: None,
                volatile: false,
            },
            Path::new("/nonexistent/target"),
            MsFlags::empty(),
            &mut || {
                native += 1;
                Ok(())
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("BERTH_MOUNT_PROGRAM"), "{e}");
        assert_eq!(native, 0);
    }

    /// A real fuse-overlayfs mount, as root, in a thread's mount namespace: a lower file
    /// deleted, a lower directory replaced, a new directory made; once dropped, the daemon is
    /// gone and the upper holds the kernel's forms alone: a whiteout node, the opaque mark on
    /// the replaced directory only.
    #[test]
    fn a_fuse_mount_leaves_the_kernels_forms_and_no_daemon() {
        if !berth_test_support::needs_root("mounts")
            || !berth_test_support::needs(PROGRAM, usable(None).is_ok())
        {
            return;
        }
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for d in ["lower/gone-dir", "upper", "work", "merged"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("lower/gone"), "g").unwrap();
        std::fs::write(dir.join("lower/gone-dir/old"), "o").unwrap();
        let overlay = Overlay {
            lowers: vec![dir.join("lower")],
            upper: Some((dir.join("upper"), dir.join("work"))),
            volatile: false,
        };
        let merged = dir.join("merged");
        let pid = crate::sys::linux::in_private_mount_namespace(|_| {
            let mount = mount_overlay(
                &MountProgram::Fuse(PROGRAM.into()),
                &overlay,
                &merged,
                MsFlags::empty(),
                &mut || panic!("no native mount"),
            )?
            .expect("a fuse mount");
            std::fs::remove_file(merged.join("gone")).unwrap();
            std::fs::remove_dir_all(merged.join("gone-dir")).unwrap();
            std::fs::create_dir(merged.join("gone-dir")).unwrap();
            std::fs::create_dir(merged.join("new")).unwrap();
            std::fs::write(merged.join("new/f"), "f").unwrap();
            // fuse-overlayfs lets a process set overlayfs's own xattrs: on a file, and on
            // the root of the tree.
            for (at, name) in [
                ("new/f", c"user.overlay.metacopy"),
                ("new", c"user.overlay.redirect"),
                ("", c"user.overlay.opaque"),
            ] {
                let p = c_path(&merged.join(at)).unwrap();
                // SAFETY: the strings and the one-byte value outlive the call.
                let rc = unsafe {
                    libc::lsetxattr(p.as_ptr(), name.as_ptr(), c"y".as_ptr().cast(), 1, 0)
                };
                assert_eq!(rc, 0, "{at} {name:?}: {}", std::io::Error::last_os_error());
            }
            Ok(mount.pid().unwrap())
        })
        .unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "daemon {pid} left"
        );
        let upper = dir.join("upper");
        let gone = std::fs::symlink_metadata(upper.join("gone")).unwrap();
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
        let mut names: Vec<String> = Vec::new();
        let mut stack = vec![upper.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
                names.push(e.path().strip_prefix(&upper).unwrap().display().to_string());
            }
        }
        names.sort();
        assert_eq!(names, ["gone", "gone-dir", "new", "new/f"]);
        assert!(has_xattr(&upper.join("gone-dir"), kernel_opaque_xattr()));
        assert!(!has_xattr(&upper.join("new"), kernel_opaque_xattr()));
        for d in ["gone-dir", "new"] {
            assert!(
                !has_xattr(&upper.join(d), c"user.fuseoverlayfs.opaque"),
                "{d}"
            );
        }
        // What the process set is gone: no overlay xattr is left but the one opaque mark.
        for at in ["", "new", "new/f"] {
            assert!(!strip_overlay_xattrs(&upper.join(at)).unwrap(), "{at}");
            let p = c_path(&upper.join(at)).unwrap();
            // SAFETY: the path is NUL-terminated; size 0 asks for the size only.
            let size = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
            assert!(size <= 0, "{at}: xattrs left");
        }
    }

    /// Outside a user namespace (root) the kernel's refusal is the error: no fallback, and
    /// later mounts are not sent to fuse-overlayfs.
    #[test]
    fn as_root_a_refused_native_mount_is_an_error() {
        if crate::sys::linux::in_user_namespace() {
            return;
        }
        let e = mount_overlay(
            &MountProgram::Auto,
            &Overlay {
                lowers: vec!["/s/a".into()],
                upper: None,
                volatile: false,
            },
            Path::new("/nonexistent/target"),
            MsFlags::empty(),
            &mut || Err(nix::Error::EPERM),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("fuse-overlayfs"), "{e}");
        assert!(kernel_overlays(Path::new("/nonexistent")));
    }

    #[test]
    fn only_refusals_of_overlayfs_itself_fall_back() {
        for e in [
            nix::Error::EPERM,
            nix::Error::EINVAL,
            nix::Error::ENODEV,
            nix::Error::EOPNOTSUPP,
        ] {
            assert!(native_unsupported(e), "{e}");
        }
        for e in [
            nix::Error::ENOENT,
            nix::Error::EACCES,
            nix::Error::ENOSPC,
            nix::Error::E2BIG,
        ] {
            assert!(!native_unsupported(e), "{e}");
        }
    }
}
