//! Every syscall the runtime makes, behind one trait: [`Sys`], with the types its calls take
//! and return. Two implementations (youki's `syscall/{linux,test}.rs` shape):
//!
//! | module | what it is |
//! |---|---|
//! | [`linux`] | [`LinuxSys`](linux::LinuxSys) makes the calls; the calls berth makes outside the trait |
//! | [`recording`] | [`RecordingSys`](recording::RecordingSys) writes each call as a line, so the mount and namespace sequence is unit-tested without root |

pub mod linux;
pub mod recording;

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

pub type SysResult<T> = Result<T, nix::Error>;

/// A device node to create under `/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: PathBuf,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
}

/// What [`Sys::resolve_in_root`] creates when the path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Dir,
    File,
}

/// A path resolved inside a root and held open (an `O_PATH` descriptor) until it is dropped.
///
/// [`InRoot::target`] names the held descriptor itself (`/proc/self/fd/N`), so that what is
/// mounted or created there lands on the very directory or file that was resolved, even if a
/// component of its path is renamed or replaced by a symlink meanwhile (a volume or cache mount
/// that another container or RUN step shares): the path is not walked again. The way runc
/// mounts since CVE-2021-30465.
#[derive(Debug)]
pub struct InRoot {
    path: PathBuf,
    target: PathBuf,
    _fd: Option<OwnedFd>,
}

impl InRoot {
    /// A path that needs no resolving (outside any root: the host paths berth chose itself).
    pub fn unresolved(path: &Path) -> InRoot {
        InRoot {
            path: path.to_owned(),
            target: path.to_owned(),
            _fd: None,
        }
    }

    /// Where the resolved file was on the host when it was resolved: for messages, and for
    /// what must match it in `/proc/self/mountinfo`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path to hand to the kernel: `/proc/self/fd/N` of the held descriptor
    /// ([`RecordingSys`](recording::RecordingSys): `fd:PATH`, so that its record shows
    /// which calls went through one).
    pub fn target(&self) -> &Path {
        &self.target
    }
}

/// An overlay to mount ([`Sys::mount_overlay`]). Its options make the upper a plain diff: no
/// redirects, no index, no metacopy, whatever the kernel's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Lower directories, bottom layer first.
    pub lowers: Vec<PathBuf>,
    /// A writable upper directory and its work directory; `None`: read-only.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// overlayfs's `volatile`: no syncs of the upper filesystem (only with an upper).
    pub volatile: bool,
}

/// The most lower layers overlayfs stacks (the kernel's `OVL_MAX_STACK`).
pub const MAX_OVERLAY_LOWERS: usize = 500;

impl Overlay {
    /// The options besides the lower layers, as `(key, value)`; `None`: a flag.
    pub fn options(&self) -> Vec<(&'static str, Option<String>)> {
        let mut options = Vec::new();
        if let Some((upper, work)) = &self.upper {
            options.push(("upperdir", Some(upper.display().to_string())));
            options.push(("workdir", Some(work.display().to_string())));
        }
        // Redirects neither made nor followed, so no xattr in a layer steers a lookup; in a
        // user namespace overlayfs refuses `redirect_dir=off`, which may follow them.
        options.push(("redirect_dir", Some("nofollow".to_owned())));
        for key in ["index", "metacopy"] {
            options.push((key, Some("off".to_owned())));
        }
        // In a user namespace the trusted xattrs are out of reach: overlayfs keeps its
        // whiteout and opaque marks in `user.overlay.*` instead (the store writes those).
        if linux::in_user_namespace() {
            options.push(("userxattr", None));
        }
        if self.volatile && self.upper.is_some() {
            options.push(("volatile", None));
        }
        options
    }

    /// `mount(2)`'s data: `lowerdir=` the layers topmost first, then the options.
    pub fn data(&self) -> String {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        self.data_with_lowers(&lowers)
    }

    /// `mount(2)`'s data with the lower layers named by `lowers` (topmost first).
    pub fn data_with_lowers(&self, lowers: &[String]) -> String {
        let mut data = format!("lowerdir={}", lowers.join(":"));
        for (key, value) in self.options() {
            data.push(',');
            data.push_str(key);
            if let Some(v) = value {
                data.push('=');
                data.push_str(&v);
            }
        }
        data
    }
}

/// The most the runtime reads of a file of the container's image (`/etc/passwd`,
/// `/etc/group`).
pub const MAX_IMAGE_FILE: u64 = 16 << 20;

pub trait Sys {
    /// Resolves `rel` inside `root` as if `root` were `/` (symlinks in the image followed
    /// within it, never out: `openat2(RESOLVE_IN_ROOT)`), creating what `create` says when
    /// missing, and holds the result open, for mounting onto ([`InRoot`]).
    fn resolve_in_root(&mut self, root: &Path, rel: &Path, create: Create) -> SysResult<InRoot>;
    /// A bind mount of `source`'s tree (only its top mount unless `recursive`) onto `target`,
    /// restricted before it is attached: `attrs` (any of `MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`,
    /// `MS_NOEXEC`) set on each of its mounts and their propagation private
    /// (`open_tree(OPEN_TREE_CLONE)`, `mount_setattr(AT_RECURSIVE)` on the detached copy, then
    /// `move_mount` onto the held target), so no process ever sees it less restricted, and
    /// nothing is looked up by path after `target` was resolved. Where the kernel lacks these
    /// calls (ENOSYS; EPERM from a seccomp filter that does not know them), nothing is mounted
    /// and the caller binds and remounts instead ([`crate::rootfs::remount_tree`]).
    fn bind_tree(
        &mut self,
        source: &Path,
        target: &InRoot,
        recursive: bool,
        attrs: MsFlags,
    ) -> SysResult<()>;
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()>;
    /// Mounts `overlay` on `target` (an absolute path) with `flags` (any of `MS_RDONLY`,
    /// `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`), each lower layer given on its own (`fsopen`,
    /// `fsconfig(lowerdir+)`, Linux 6.8), so the layers' paths are not bound by a page;
    /// older kernels get `mount(2)` with the layers named as short as it takes.
    fn mount_overlay(&mut self, overlay: &Overlay, target: &Path, flags: MsFlags) -> SysResult<()>;
    fn umount(&mut self, target: &Path, flags: MntFlags) -> SysResult<()>;
    fn mknod_char(&mut self, node: &DeviceNode) -> SysResult<()>;
    fn symlink(&mut self, target: &str, link: &Path) -> SysResult<()>;
    fn exists(&mut self, path: &Path) -> bool;
    fn is_dir(&mut self, path: &Path) -> bool;
    fn chdir(&mut self, path: &Path) -> SysResult<()>;
    /// `pivot_root(".", ".")` in the current directory, then detach the old root.
    fn pivot_here(&mut self) -> SysResult<()>;
    fn sethostname(&mut self, name: &str) -> SysResult<()>;
    /// Brings the loopback interface up (a fresh network namespace has it down).
    fn loopback_up(&mut self) -> SysResult<()>;
    /// Installs a seccomp BPF program without setting `no_new_privs` (needs CAP_SYS_ADMIN).
    fn install_seccomp(&mut self, program: &[libc::sock_filter]) -> SysResult<()>;
    fn unshare(&mut self, flags: nix::sched::CloneFlags) -> SysResult<()>;
    fn set_groups(&mut self, groups: &[u32]) -> SysResult<()>;
    /// Real, effective and saved group.
    fn set_gid(&mut self, gid: u32) -> SysResult<()>;
    /// Real, effective and saved user.
    fn set_uid(&mut self, uid: u32) -> SysResult<()>;
    /// fork(2). Only in a single-threaded process (the init and PID 1 are).
    fn fork(&mut self) -> SysResult<nix::unistd::ForkResult>;
    /// execve(2); returns only on failure, with the error.
    fn execve(&mut self, program: &CStr, argv: &[CString], env: &[CString]) -> nix::Error;
    /// Adds `set` to the blocked signals (`sigprocmask(SIG_BLOCK)`).
    fn block_signals(&mut self, set: &nix::sys::signal::SigSet) -> SysResult<()>;
    /// Replaces the signal mask (`sigprocmask(SIG_SETMASK)`).
    fn set_signal_mask(&mut self, set: &nix::sys::signal::SigSet) -> SysResult<()>;
    /// Waits for one of the (blocked) signals in `set` (`sigwait`).
    fn wait_signal(
        &mut self,
        set: &nix::sys::signal::SigSet,
    ) -> SysResult<nix::sys::signal::Signal>;
    /// Reaps one ended child without waiting (`waitpid(-1, WNOHANG)`).
    fn reap(&mut self) -> SysResult<nix::sys::wait::WaitStatus>;
    fn kill(&mut self, pid: nix::unistd::Pid, signal: nix::sys::signal::Signal) -> SysResult<()>;
    /// `PR_SET_DUMPABLE`.
    fn set_dumpable(&mut self, dumpable: bool) -> SysResult<()>;
    /// `setrlimit` (`u64::MAX` is no limit).
    fn set_rlimit(
        &mut self,
        kind: oci_spec::runtime::PosixRlimitType,
        soft: u64,
        hard: u64,
    ) -> SysResult<()>;
    /// Drops from the bounding set what the spec does not list.
    fn limit_bounding(
        &mut self,
        caps: &oci_spec::runtime::LinuxCapabilities,
    ) -> Result<(), crate::RuntimeError>;
    /// Sets the other capability sets (after the user change).
    fn apply_capabilities(
        &mut self,
        caps: &oci_spec::runtime::LinuxCapabilities,
        uid: u32,
    ) -> Result<(), crate::RuntimeError>;
    /// umask 022, every descriptor above 2 closed, every signal unblocked and at its default
    /// action: the state exec hands to the command. (exec resets handled signals but keeps
    /// ignored ones, and berth's process ignores SIGPIPE, as every Rust program, and, when
    /// started through glibc's `posix_spawn`, glibc's two internal real-time signals; a
    /// container's command starts with none ignored, as under Docker.)
    fn finish_process(&mut self) -> SysResult<()>;
    /// `PR_SET_PDEATHSIG`.
    fn set_parent_death_signal(&mut self, signal: nix::sys::signal::Signal) -> SysResult<()>;
    /// A new session with the terminal on stdin as its controlling terminal.
    fn take_controlling_terminal(&mut self) -> SysResult<()>;
    /// A new session without a controlling terminal (`setsid`).
    fn new_session(&mut self) -> SysResult<()>;
    /// A small file's text: `/proc/self/mountinfo`, cgroup files, the bundle.
    fn read_file(&mut self, path: &Path) -> SysResult<String>;
    /// A file of the container's image, read by PID 1 after `pivot_root` (`/etc/passwd`,
    /// `/etc/group`): only a regular file (opened non-blocking, never a FIFO or a device that
    /// could hang or feed the start forever: EINVAL), and at most [`MAX_IMAGE_FILE`] bytes
    /// (EFBIG).
    fn read_image_file(&mut self, path: &Path) -> SysResult<String>;
    /// The contents of the file open as descriptor `fd` (read from its start, whatever its
    /// offset), at most `limit` bytes (EFBIG past it).
    fn read_fd(&mut self, fd: i32, limit: usize) -> SysResult<Vec<u8>>;
    /// Writes `value` to an existing file (cgroup files).
    fn write_file(&mut self, path: &Path, value: &str) -> SysResult<()>;
    /// `mkdir -p`.
    fn create_dirs(&mut self, path: &Path) -> SysResult<()>;
    fn remove_dir(&mut self, path: &Path) -> SysResult<()>;
    fn current_dir(&mut self) -> SysResult<PathBuf>;
    /// For a regular file, whether this process may execute it (`access(X_OK)`); `None` when
    /// `path` is missing or not a regular file.
    fn executable(&mut self, path: &Path) -> Option<bool>;
    fn sleep(&mut self, duration: std::time::Duration);
}

/// `CString`s for exec; a NUL inside an argument is refused.
pub fn cstrings(items: &[String]) -> Result<Vec<CString>, std::ffi::NulError> {
    items.iter().map(|s| CString::new(s.as_bytes())).collect()
}
