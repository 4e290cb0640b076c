//! A directory treated as a root: a path (`/`-separated, from a Dockerfile, an image, a build
//! context or a RUN step) in; an operation on what that path names *inside* the directory
//! out. Nothing a tree holds (absolute or relative symlinks, `..`, loops, magic links) can
//! lead an operation out of it. Everything berth does on a tree it does not trust (a step's
//! upper dir, an image's merged view, a build context, an export destination) goes through
//! [`Root`].
//!
//! How:
//!
//! - every parent is resolved by the kernel with `openat2` against the root's descriptor:
//!   [`Resolve::InRoot`] (`RESOLVE_IN_ROOT`: symlinks are followed as if the root were `/`,
//!   `..` stops at it) or [`Resolve::NoSymlinks`] (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`:
//!   any symlink in the path is an error, for trees where a symlink means someone else
//!   changed the path); always with `RESOLVE_NO_MAGICLINKS`;
//! - the last component is handled with a `*at` call on the resolved parent that never
//!   follows it (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`, `unlinkat`, `mkdirat`, `symlinkat`,
//!   `mknodat`);
//! - a file is opened for reading only when it is a regular file, and the open itself never
//!   blocks (`O_NONBLOCK`, then `fstat`): a FIFO or a device is never opened for its data.
//!
//! | item | what |
//! |---|---|
//! | [`Root`] | a directory opened once: `lstat`, `stat`, `canonical`, `open_file`, `read_link`, `list`, `mkdir_all`, `parent`, `remove_empty`, `open_dir` |
//! | [`write_file`], [`write_symlink`], [`write_dir`], [`write_fifo`] | make a name in a resolved parent (replacing a non-directory there, never following it) |
//! | [`Meta`] | mode, owner and mtime given to what is written |
//!
//! Errors are [`std::io::Error`]s with the kernel's errno (`ELOOP` for a symlink under
//! [`Resolve::NoSymlinks`], `EXDEV` for a path that would leave the root under it, ...).
//!
//! Needs Linux 5.6 (`openat2`).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};

/// How a [`Root`] resolves the directories of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Symlinks (absolute or relative) and `..` are followed as if the root were `/`.
    InRoot,
    /// No symlink may appear anywhere in the path (`ELOOP`), and `..` may not climb above the
    /// root (`EXDEV`).
    NoSymlinks,
}

impl Resolve {
    fn flags(self) -> ResolveFlags {
        match self {
            Resolve::InRoot => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            Resolve::NoSymlinks => {
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
            }
        }
    }
}

/// Metadata to give a written entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
}

impl Meta {
    pub fn of(stat: &Stat) -> Meta {
        Meta {
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
            mtime: (stat.st_mtime, stat.st_mtime_nsec as u32),
        }
    }
}

/// Splits a `/`-separated path into its components (`.` and empty dropped; `..` kept for
/// the kernel to resolve under the root's rules).
pub fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

fn rel(components: &[&str]) -> String {
    if components.is_empty() {
        ".".into()
    } else {
        components.join("/")
    }
}

/// The file an `O_PATH` descriptor names, opened for reading when it is a regular file. The
/// check and the open are of the same inode (the open goes through the descriptor's
/// `/proc/self/fd` link), so a tree that swaps a device node or a FIFO in for the file
/// between the two never gets berth to open it: a device's open can have effects, and a
/// FIFO's blocks. ENOENT when `/proc` is not mounted.
fn reopen_regular(fd: OwnedFd, path: &str) -> io::Result<std::fs::File> {
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
        return Err(not_regular(path));
    }
    let file = rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    )?;
    Ok(std::fs::File::from(file))
}

fn not_regular(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{path:?} is not a regular file"),
    )
}

/// A directory tree, opened once; see the crate doc for the rules.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    resolve: Resolve,
}

impl Root {
    /// Opens `path` (a trusted host path) as a root whose symlinks are followed inside it.
    pub fn open(path: &Path) -> io::Result<Root> {
        Root::open_with(path, Resolve::InRoot)
    }

    /// Opens `path` as a root in which no path may go through a symlink.
    pub fn open_no_symlinks(path: &Path) -> io::Result<Root> {
        Root::open_with(path, Resolve::NoSymlinks)
    }

    /// A root over a directory already open.
    pub fn from_fd(fd: OwnedFd, resolve: Resolve) -> Root {
        Root { fd, resolve }
    }

    pub fn open_with(path: &Path, resolve: Resolve) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd, resolve })
    }

    /// The root directory itself.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn open_at(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let path = if path.is_empty() { "." } else { path };
        Ok(rustix::fs::openat2(
            &self.fd,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            self.resolve.flags(),
        )?)
    }

    /// The directory holding `path`'s last component, resolved inside the root, and that
    /// component; `None` for the root itself.
    pub fn parent_of<'p>(&self, path: &'p str) -> io::Result<Option<(OwnedFd, &'p str)>> {
        let c = components(path);
        match c.split_last() {
            None => Ok(None),
            Some((name, parent)) => {
                let dir = self.open_at(&rel(parent), OFlags::DIRECTORY | OFlags::PATH)?;
                Ok(Some((dir, name)))
            }
        }
    }

    /// `lstat` of a path whose parents are resolved in the root.
    pub fn lstat(&self, path: &str) -> io::Result<Stat> {
        match self.parent_of(path)? {
            None => Ok(rustix::fs::fstat(&self.fd)?),
            Some((dir, name)) => Ok(rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?),
        }
    }

    /// `stat` following symlinks within the root.
    pub fn stat(&self, path: &str) -> io::Result<Stat> {
        let fd = self.open_at(path, OFlags::PATH)?;
        Ok(rustix::fs::fstat(&fd)?)
    }

    /// Resolves symlinks within the root: the path it names, relative to the root.
    pub fn canonical(&self, path: &str) -> io::Result<String> {
        let fd = self.open_at(path, OFlags::PATH)?;
        let here = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        let root = std::fs::read_link(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))?;
        Ok(here
            .strip_prefix(&root)
            .map_err(|_| io::Error::other("resolved outside the root"))?
            .to_string_lossy()
            .into_owned())
    }

    /// The path `path` names with every symlink in it followed inside the root, its last
    /// component included, as a path relative to the root: an absolute link target starts
    /// again at the root, `..` stops there. Unlike [`Root::canonical`] the path need not
    /// exist: from the first name that is not there (or a dangling link's target) on, the
    /// rest is kept as written, with `..` taken lexically. At most 40 links are followed
    /// (`ELOOP` past that, as the kernel). The answer is a name to resolve in the root again,
    /// never a promise: every use still goes through the root's own resolution.
    pub fn follow(&self, path: &str) -> io::Result<String> {
        let mut todo: std::collections::VecDeque<String> =
            components(path).into_iter().map(str::to_owned).collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        let mut missing = false;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                done.pop();
                continue;
            }
            done.push(name);
            if missing {
                continue;
            }
            let here = done.join("/");
            let st = match self.lstat(&here) {
                Ok(st) => st,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                continue;
            }
            links += 1;
            if links > 40 {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = self.read_link(&here)?;
            let target = String::from_utf8(target).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the link {here:?} has a target that is not UTF-8"),
                )
            })?;
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            for c in components(&target).into_iter().rev() {
                todo.push_front(c.to_owned());
            }
        }
        Ok(done.join("/"))
    }

    /// Opens a regular file for reading; its final component is not followed, and anything
    /// but a regular file (a FIFO, a device, a socket) is refused without being opened.
    pub fn open_file(&self, path: &str) -> io::Result<std::fs::File> {
        match reopen_regular(self.open_at(path, OFlags::PATH | OFlags::NOFOLLOW)?, path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.open_nonblocking(path, OFlags::NOFOLLOW)
            }
            other => other,
        }
    }

    /// Opens a regular file for reading, following symlinks (its final component included)
    /// inside the root, as BuildKit resolves a context's Dockerfile; anything but a regular
    /// file is refused without being opened.
    pub fn open_file_following(&self, path: &str) -> io::Result<std::fs::File> {
        match reopen_regular(self.open_at(path, OFlags::PATH)?, path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.open_nonblocking(path, OFlags::empty())
            }
            other => other,
        }
    }

    /// Where no `/proc` is mounted (a chroot): the file opened without blocking and its type
    /// checked after, which a device's open precedes.
    fn open_nonblocking(&self, path: &str, flags: OFlags) -> io::Result<std::fs::File> {
        let fd = self.open_at(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | flags,
        )?;
        if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
            return Err(not_regular(path));
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
        Ok(std::fs::File::from(fd))
    }

    /// Opens a directory (not following its final component) for reading, `fgetxattr`, ...
    pub fn open_dir(&self, path: &str) -> io::Result<OwnedFd> {
        self.open_at(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW)
    }

    pub fn read_link(&self, path: &str) -> io::Result<Vec<u8>> {
        let (dir, name) = self
            .parent_of(path)?
            .ok_or_else(|| io::Error::other("not a link"))?;
        Ok(rustix::fs::readlinkat(&dir, name, Vec::new())?.into_bytes())
    }

    /// The names in a directory, sorted.
    pub fn list(&self, path: &str) -> io::Result<Vec<Vec<u8>>> {
        let fd = self.open_at(path, OFlags::DIRECTORY | OFlags::RDONLY)?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes `path` when it is an empty directory or an empty regular file (its final
    /// component not followed); says whether it did. A symlink, a non-empty entry or a
    /// missing one is left alone.
    pub fn remove_empty(&self, path: &str) -> io::Result<bool> {
        self.remove_if_empty(path, true)
    }

    /// Removes `path` when it is an empty directory (its final component not followed); says
    /// whether it did.
    pub fn remove_empty_dir(&self, path: &str) -> io::Result<bool> {
        self.remove_if_empty(path, false)
    }

    fn remove_if_empty(&self, path: &str, files: bool) -> io::Result<bool> {
        let Some((dir, name)) = self.parent_of(path)? else {
            return Ok(false);
        };
        let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let result = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR),
            FileType::RegularFile if files && st.st_size == 0 => {
                rustix::fs::unlinkat(&dir, name, AtFlags::empty())
            }
            _ => return Ok(false),
        };
        match result {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes every missing directory of `path` with `meta` (mode, owner) and returns the
    /// directory, opened. Under [`Resolve::InRoot`] symlinks are followed within the root,
    /// dangling ones too (their targets are made, as BuildKit's and runc's in-root
    /// `MkdirAll`), at most 40 of them.
    pub fn mkdir_all(&self, path: &str, meta: Option<Meta>) -> io::Result<OwnedFd> {
        let mut path = path.to_owned();
        'restart: for _ in 0..40 {
            let c = components(&path);
            let mut parent = self.open_at(".", OFlags::DIRECTORY | OFlags::RDONLY)?;
            for i in 0..c.len() {
                let prefix = rel(&c[..=i]);
                match self.open_at(&prefix, OFlags::DIRECTORY | OFlags::RDONLY) {
                    Ok(fd) => parent = fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        if let Ok(target) = rustix::fs::readlinkat(&parent, c[i], Vec::new()) {
                            if self.resolve == Resolve::NoSymlinks {
                                return Err(io::Error::from_raw_os_error(libc::ELOOP));
                            }
                            // A dangling symlink: continue from its target.
                            let target = target.to_string_lossy().into_owned();
                            let rest = c[i + 1..].join("/");
                            let base = if target.starts_with('/') {
                                target
                            } else {
                                format!("{}/{target}", rel(&c[..i]))
                            };
                            path = format!("{base}/{rest}");
                            continue 'restart;
                        }
                        let mode = meta.map_or(0o755, |m| m.mode);
                        match rustix::fs::mkdirat(&parent, c[i], Mode::from_raw_mode(mode)) {
                            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                            Err(e) => return Err(e.into()),
                        }
                        let fd = rustix::fs::openat(
                            &parent,
                            c[i],
                            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )?;
                        match meta {
                            Some(m) => set_meta(&fd, m)?,
                            None => rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))?,
                        }
                        parent = fd;
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(parent);
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// Opens (making it when missing) the parent directory of `path`, and returns it with the
    /// final name.
    pub fn parent<'p>(&self, path: &'p str, meta: Option<Meta>) -> io::Result<(OwnedFd, &'p str)> {
        let c = components(path);
        let (name, parent) = c
            .split_last()
            .ok_or_else(|| io::Error::other("the destination is the root directory"))?;
        if *name == ".." {
            return Err(io::Error::other(format!(
                "{path:?}: the destination may not end in \"..\""
            )));
        }
        Ok((self.mkdir_all(&rel(parent), meta)?, name))
    }
}

/// A chown's error, said plainly when the owner has no id in this process's user namespace
/// (`EINVAL`): rootless, `/etc/subuid` and `/etc/subgid` gave too few ids for it.
pub fn chown_error(e: rustix::io::Errno, uid: u32, gid: u32) -> io::Error {
    if e == rustix::io::Errno::INVAL {
        return io::Error::other(format!(
            "owner {uid}:{gid} has no id in berth's user namespace (rootless, /etc/subuid and \
             /etc/subgid give the user too few ids for it)"
        ));
    }
    e.into()
}

fn set_meta(fd: &OwnedFd, m: Meta) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(m.uid)),
        Some(rustix::fs::Gid::from_raw(m.gid)),
    )
    .map_err(|e| chown_error(e, m.uid, m.gid))?;
    // After chown, which clears setuid and setgid.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(m.mode))?;
    Ok(())
}

fn timestamps(m: Meta) -> Timestamps {
    let t = Timespec {
        tv_sec: m.mtime.0,
        tv_nsec: m.mtime.1 as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Removes `name` in `dir` unless it is a directory; says whether a directory is there.
fn clear(dir: &OwnedFd, name: &str) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(true),
        Ok(_) => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            Ok(false)
        }
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name"),
        ));
    }
    Ok(())
}

/// Writes a regular file `name` in `dir` from `contents`, replacing what is there (but not a
/// directory: an error).
pub fn write_file(
    dir: &OwnedFd,
    name: &str,
    contents: &mut dyn io::Read,
    m: Meta,
) -> io::Result<()> {
    check_name(name)?;
    if clear(dir, name)? {
        return Err(io::Error::other(format!(
            "cannot overwrite directory {name:?} with a file"
        )));
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = std::fs::File::from(fd);
    io::copy(contents, &mut file)?;
    let fd = OwnedFd::from(file);
    set_meta(&fd, m)?;
    rustix::fs::futimens(&fd, &timestamps(m))?;
    Ok(())
}

/// Makes `name` in `dir` a hard link to `from` in `from_dir` (never following a symlink at
/// `from`), replacing what is at `name` (but not a directory: an error).
pub fn write_hard_link(
    dir: &OwnedFd,
    name: &str,
    from_dir: &OwnedFd,
    from: &str,
) -> io::Result<()> {
    check_name(name)?;
    check_name(from)?;
    if clear(dir, name)? {
        return Err(io::Error::other(format!(
            "cannot overwrite directory {name:?} with a file"
        )));
    }
    rustix::fs::linkat(from_dir, from, dir, name, AtFlags::empty())?;
    Ok(())
}

/// Copies an open file (copy_file_range where the kernel can).
pub fn copy_file(dir: &OwnedFd, name: &str, src: std::fs::File, m: Meta) -> io::Result<()> {
    let mut src = src;
    write_file(dir, name, &mut src, m)
}

pub fn write_symlink(dir: &OwnedFd, name: &str, target: &[u8], m: Meta) -> io::Result<()> {
    check_name(name)?;
    if clear(dir, name)? {
        return Err(io::Error::other(format!(
            "cannot overwrite directory {name:?} with a symlink"
        )));
    }
    rustix::fs::symlinkat(OsStr::from_bytes(target), dir, name)?;
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(m.uid)),
        Some(rustix::fs::Gid::from_raw(m.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| chown_error(e, m.uid, m.gid))?;
    rustix::fs::utimensat(dir, name, &timestamps(m), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Makes a FIFO `name` in `dir` (replacing a non-directory there). Its metadata is set
/// through a non-blocking read-only descriptor, which a FIFO gives at once.
pub fn write_fifo(dir: &OwnedFd, name: &str, m: Meta) -> io::Result<()> {
    check_name(name)?;
    if clear(dir, name)? {
        return Err(io::Error::other(format!(
            "cannot overwrite directory {name:?} with a FIFO"
        )));
    }
    rustix::fs::mknodat(dir, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::Fifo {
        return Err(io::Error::other(format!("{name:?} changed while made")));
    }
    set_meta(&fd, m)?;
    rustix::fs::futimens(&fd, &timestamps(m))?;
    Ok(())
}

/// Makes (or keeps) directory `name` in `dir`; sets its metadata either way (a copied
/// directory takes its source's mode and owner, as BuildKit). Returns it, opened.
pub fn write_dir(dir: &OwnedFd, name: &str, m: Option<Meta>) -> io::Result<OwnedFd> {
    check_name(name)?;
    if !clear(dir, name)? {
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))?;
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if let Some(m) = m {
        set_meta(&fd, m)?;
    }
    Ok(fd)
}

/// Sets a directory's mtime (after its contents are written).
pub fn set_dir_time(fd: &OwnedFd, m: Meta) -> io::Result<()> {
    rustix::fs::futimens(fd, &timestamps(m))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix_mkfifo(&fifo);
        std::fs::write(dir.path().join("file"), b"text").unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert!(root.open_file("fifo").is_err());
        assert!(root.open_file_following("fifo").is_err());
        let mut text = String::new();
        std::io::Read::read_to_string(&mut root.open_file("file").unwrap(), &mut text).unwrap();
        assert_eq!(text, "text");
        // A device node, where this user may make one: refused without being opened.
        if rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, 3),
        )
        .is_ok()
        {
            assert!(root.open_file("null").is_err());
        }
    }

    fn nix_mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn components_drop_dots_and_empties_but_keep_dotdot() {
        assert_eq!(components("/a//./b/../c/"), ["a", "b", "..", "c"]);
        assert!(components("/").is_empty());
    }

    #[test]
    fn follow_resolves_every_link_in_the_root_even_where_nothing_exists() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/passwd"), "").unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, p.join(at)).unwrap();
        link("/etc/passwd", "p");
        link("/nowhere/x", "q");
        link("../../../host/file", "up");
        link("/../../etc/../etc", "e");
        link("e/passwd", "chain");
        link("loop", "loop");
        link("/real", "d");
        let r = Root::open(p).unwrap();
        assert_eq!(r.follow("/p").unwrap(), "etc/passwd");
        assert_eq!(r.follow("/q").unwrap(), "nowhere/x");
        assert_eq!(r.follow("up").unwrap(), "host/file");
        assert_eq!(r.follow("/chain").unwrap(), "etc/passwd");
        assert_eq!(r.follow("/d/f").unwrap(), "real/f");
        assert_eq!(r.follow("/new/../etc/./passwd").unwrap(), "etc/passwd");
        assert_eq!(r.follow("/").unwrap(), "");
        assert_eq!(
            r.follow("/loop").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn no_symlinks_refuses_any_link_in_the_path() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::os::unix::fs::symlink("d", t.path().join("l")).unwrap();
        std::fs::write(t.path().join("d/f"), "").unwrap();
        let strict = Root::open_no_symlinks(t.path()).unwrap();
        assert!(strict.lstat("d/f").is_ok());
        let e = strict.lstat("l/f").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(!strict.remove_empty("l/f").unwrap_or(false));
        assert!(t.path().join("d/f").exists());
        assert!(strict.lstat("../x").is_err());
        let loose = Root::open(t.path()).unwrap();
        assert!(loose.remove_empty("l/f").unwrap());
        assert!(!t.path().join("d/f").exists());
    }

    #[test]
    fn open_file_refuses_a_fifo_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let dir = root.open_dir(".").unwrap();
        write_fifo(
            &dir,
            "p",
            Meta {
                mode: 0o640,
                uid: rustix::process::getuid().as_raw(),
                gid: rustix::process::getgid().as_raw(),
                mtime: (1, 0),
            },
        )
        .unwrap();
        let st = root.lstat("p").unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Fifo);
        assert_eq!(st.st_mode & 0o7777, 0o640);
        let e = root.open_file("p").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn remove_empty_keeps_what_is_not_empty() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("full/x")).unwrap();
        std::fs::write(t.path().join("data"), "x").unwrap();
        std::fs::write(t.path().join("empty"), "").unwrap();
        std::os::unix::fs::symlink("/", t.path().join("link")).unwrap();
        let root = Root::open(t.path()).unwrap();
        assert!(!root.remove_empty("full").unwrap());
        assert!(!root.remove_empty("data").unwrap());
        assert!(!root.remove_empty("link").unwrap());
        assert!(!root.remove_empty("missing").unwrap());
        assert!(root.remove_empty("empty").unwrap());
        assert!(root.remove_empty("full/x").unwrap());
    }
}
