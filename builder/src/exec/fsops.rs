//! Files inside a tree that may hold hostile symlinks: every path is resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` against the tree's root directory, so
//! `..` and symlinks (absolute or relative) are followed as if the root were `/` and never
//! lead out of it. Used for both sides of COPY and ADD: reading a build context or a stage,
//! and writing into the image being built (a symlink `/app -> /etc` in the image makes
//! `COPY x /app/` write to the image's `/etc`, never the host's).
//!
//! Final components are never followed when writing: a file or symlink is replaced, so a
//! symlink already at the destination cannot redirect the write.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

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

/// Splits a `/`-separated path into its normal components (`.` and empty dropped; `..` kept
/// for the kernel to clamp at the root).
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

/// A directory tree, opened once.
#[derive(Debug)]
pub struct InRoot {
    root: OwnedFd,
}

impl InRoot {
    pub fn open(path: &Path) -> io::Result<InRoot> {
        let root = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(InRoot { root })
    }

    fn open_at(&self, path: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let path = if path.is_empty() { "." } else { path };
        Ok(rustix::fs::openat2(
            &self.root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )?)
    }

    /// `lstat` of a path whose parents are resolved in the root.
    pub fn lstat(&self, path: &str) -> io::Result<Stat> {
        let c = components(path);
        match c.split_last() {
            None => Ok(rustix::fs::fstat(&self.root)?),
            Some((name, parent)) => {
                let dir = self.open_at(&rel(parent), OFlags::DIRECTORY | OFlags::PATH)?;
                Ok(rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW)?)
            }
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
        let here = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))?;
        let root = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.root)
        ))?;
        Ok(here
            .strip_prefix(&root)
            .map_err(|_| io::Error::other("resolved outside the root"))?
            .to_string_lossy()
            .into_owned())
    }

    /// Opens a regular file for reading; its final component is not followed.
    pub fn open_file(&self, path: &str) -> io::Result<std::fs::File> {
        let fd = self.open_at(path, OFlags::RDONLY | OFlags::NOFOLLOW)?;
        Ok(std::fs::File::from(fd))
    }

    pub fn read_link(&self, path: &str) -> io::Result<Vec<u8>> {
        let c = components(path);
        let (name, parent) = c
            .split_last()
            .ok_or_else(|| io::Error::other("not a link"))?;
        let dir = self.open_at(&rel(parent), OFlags::DIRECTORY | OFlags::PATH)?;
        Ok(rustix::fs::readlinkat(&dir, *name, Vec::new())?.into_bytes())
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

    /// Makes every missing directory of `path` (following symlinks within the root, dangling
    /// ones too: their targets are made, as BuildKit's in-root `MkdirAll`) with `meta`
    /// (mode, owner); returns the directory, opened.
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
                        // A dangling symlink: continue from its target.
                        if let Ok(target) = rustix::fs::readlinkat(&parent, c[i], Vec::new()) {
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
                        let fd = self.open_at(&prefix, OFlags::DIRECTORY | OFlags::RDONLY)?;
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
        Ok((self.mkdir_all(&rel(parent), meta)?, name))
    }
}

fn set_meta(fd: &OwnedFd, m: Meta) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(m.uid)),
        Some(rustix::fs::Gid::from_raw(m.gid)),
    )?;
    // After chown, which clears setuid and setgid.
    rustix::fs::fchmod(fd, Mode::from_raw_mode(m.mode))?;
    Ok(())
}

fn set_time(fd: &OwnedFd, m: Meta) -> io::Result<()> {
    let t = Timespec {
        tv_sec: m.mtime.0,
        tv_nsec: m.mtime.1 as _,
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?;
    Ok(())
}

/// Removes `name` in `dir` unless it is a directory (and `keep_dir`).
fn clear(dir: &OwnedFd, name: &str, keep_dir: bool) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            if keep_dir {
                return Ok(true);
            }
            remove_tree_at(dir, name)?;
            Ok(false)
        }
        Ok(_) => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            Ok(false)
        }
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn remove_tree_at(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let n = entry?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(n);
        }
    }
    for n in names {
        let n = String::from_utf8_lossy(&n).into_owned();
        if clear(&sub, &n, true)? {
            remove_tree_at(&sub, &n)?;
            rustix::fs::unlinkat(&sub, n.as_str(), AtFlags::REMOVEDIR)?;
        }
    }
    drop(sub);
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
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
    if clear(dir, name, true)? {
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
    set_time(&fd, m)
}

/// Copies an open file (copy_file_range where the kernel can).
pub fn copy_file(dir: &OwnedFd, name: &str, src: std::fs::File, m: Meta) -> io::Result<()> {
    let mut src = src;
    write_file(dir, name, &mut src, m)
}

pub fn write_symlink(dir: &OwnedFd, name: &str, target: &[u8], m: Meta) -> io::Result<()> {
    if clear(dir, name, true)? {
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
    )?;
    let t = Timespec {
        tv_sec: m.mtime.0,
        tv_nsec: m.mtime.1 as _,
    };
    rustix::fs::utimensat(
        dir,
        name,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Makes (or keeps) directory `name` in `dir`; sets its metadata either way (a copied
/// directory takes its source's mode and owner, as BuildKit). Returns it, opened.
pub fn write_dir(dir: &OwnedFd, name: &str, m: Option<Meta>) -> io::Result<OwnedFd> {
    if !clear(dir, name, true)? {
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
    set_time(fd, m)
}
