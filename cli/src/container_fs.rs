//! A container's files, for `cp`, `export`, `diff` and `commit`: where they are (the live root
//! of a running container, or its overlay mounted in a private mount namespace) and a tar
//! writer that walks a tree the container wrote (hostile) only through [`Root`], so no
//! symlink, `..` or magic link in it leads outside.
//!
//! - A running container's root is PID 1's `/proc/PID/root`, opened through PID 1's
//!   pidfd-checked `/proc` directory ([`berth_runtime::exec::ExecTarget::root`]): what the
//!   container sees, volumes included. Paths are resolved in it with `RESOLVE_IN_ROOT`.
//! - A stopped container's root is its overlay (the image's snapshots under its upper
//!   directory) mounted in a private mount namespace of one thread
//!   ([`berth_runtime::views`]): writable (upper and work) to copy into it, so what is
//!   written keeps overlay semantics; read-only (the upper as the top lower layer, no work
//!   directory) to read it.
//! - The flattened filesystem (`export`) is always the read-only overlay, even while the
//!   container runs: it holds no mount of the container's (no `/proc`, no volume) and no
//!   whiteout (overlayfs hides them).

use std::io::{Read, Write};
use std::path::PathBuf;

use berth_fsroot::{Resolve, Root};
use berth_runtime::RootfsSource;
use berth_store::Store;
use berth_store::containers::ContainerRecord;

/// How the tree is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// What the container sees: the live root when it runs, else the overlay read-only.
    Read,
    /// To write into: the live root when it runs, else the overlay with its upper.
    Write,
    /// The overlay read-only, running or not (`export`).
    Flat,
}

/// The container's overlay: `(lowers bottom first, upper, work)`.
pub fn overlay_of(
    store: &Store,
    record: &ContainerRecord,
) -> anyhow::Result<(Vec<PathBuf>, PathBuf, PathBuf)> {
    let dir = store.container_dir(&record.id)?;
    let (_, source) =
        berth_runtime::init::read_bundle(&mut berth_runtime::sys::linux::LinuxSys, &dir)?;
    match source {
        RootfsSource::Overlay {
            lowers,
            upper,
            work,
            ..
        } => Ok((lowers, upper, work)),
        RootfsSource::Directory(_) => Err(anyhow::anyhow!(
            "container {} has no overlay rootfs",
            record.id
        )),
    }
}

/// Runs `f` on the container's tree as `access` asks.
pub fn with_root<T: Send>(
    store: &Store,
    record: &ContainerRecord,
    access: Access,
    f: impl FnOnce(&Root) -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    if access != Access::Flat
        && crate::containers::alive(record)
        && let (Some(pid), Some(start)) = (record.pid, record.pid_start)
        && let Ok(target) = berth_runtime::exec::ExecTarget::find(pid, start)
    {
        let root = Root::from_fd(target.root()?, Resolve::InRoot);
        return f(&root);
    }
    let (lowers, upper, work) = overlay_of(store, record)?;
    let empty = tempfile::tempdir()?;
    let target = tempfile::tempdir()?;
    let view = if access == Access::Write {
        if crate::containers::alive(record) {
            return Err(anyhow::anyhow!(
                "container {} is starting or stopping: try again",
                record.id
            ));
        }
        berth_runtime::views::View {
            lowers,
            upper: Some((upper, work)),
            target: target.path().to_owned(),
        }
    } else {
        let mut lowers = lowers;
        lowers.push(upper);
        berth_runtime::views::View {
            lowers,
            upper: None,
            target: target.path().to_owned(),
        }
    };
    berth_runtime::views::with_views(&[view], empty.path(), |targets| {
        let root = Root::open(&targets[0])?;
        f(&root)
    })?
}

/// What [`write_tree`] puts in each header.
#[derive(Debug, Clone, Copy, Default)]
pub struct TarOptions {
    /// Every entry owned by this `(uid, gid)` instead of the file's.
    pub owner: Option<(u32, u32)>,
    /// Clear setuid and setgid bits.
    pub strip_setid: bool,
    /// Follow a symlink at the walked path itself (inside the root).
    pub follow_top: bool,
}

fn header(stat: &rustix::fs::Stat, kind: tar::EntryType, opts: &TarOptions) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    let mut mode = stat.st_mode & 0o7777;
    if opts.strip_setid {
        mode &= !0o6000;
    }
    h.set_mode(mode);
    let (uid, gid) = opts.owner.unwrap_or((stat.st_uid, stat.st_gid));
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(stat.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Appends `path` of `root` (and, for a directory, everything under it, sorted by name) to
/// `out`, named `name` (`""`: a directory's contents only, without an entry of its own).
/// Regular files, directories and symlinks are written; FIFOs, sockets and device nodes are
/// skipped. Every name is resolved inside the root and no final component is followed, so a
/// tree changing while it is read yields its own files or an error, never another's.
pub fn write_tree<W: Write>(
    root: &Root,
    path: &str,
    name: &str,
    opts: &TarOptions,
    out: &mut tar::Builder<W>,
) -> anyhow::Result<()> {
    let stat = if opts.follow_top {
        root.stat(path)
    } else {
        root.lstat(path)
    }
    .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let path = if opts.follow_top && !path.is_empty() {
        root.canonical(path)?
    } else {
        path.to_owned()
    };
    let child = TarOptions {
        follow_top: false,
        ..*opts
    };
    append(root, &path, name, &stat, &child, out, 0)
}

/// Directory depth past which a tree is refused (a container can nest deeper than any
/// stack should recurse).
const MAX_DEPTH: usize = 512;

fn append<W: Write>(
    root: &Root,
    path: &str,
    name: &str,
    stat: &rustix::fs::Stat,
    opts: &TarOptions,
    out: &mut tar::Builder<W>,
    depth: usize,
) -> anyhow::Result<()> {
    use rustix::fs::FileType;
    if depth > MAX_DEPTH {
        return Err(anyhow::anyhow!("{path}: directories nested too deep"));
    }
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {
            if !name.is_empty() {
                let mut h = header(stat, tar::EntryType::Directory, opts);
                out.append_data(&mut h, format!("{name}/"), std::io::empty())?;
            }
            for child in root.list(path)? {
                let Ok(child) = String::from_utf8(child) else {
                    errln!("berth: skipping a name in {path} that is not UTF-8");
                    continue;
                };
                let child_path = format!("{}/{child}", path.trim_end_matches('/'));
                let child_name = if name.is_empty() {
                    child.clone()
                } else {
                    format!("{name}/{child}")
                };
                let Ok(child_stat) = root.lstat(&child_path) else {
                    continue; // gone meanwhile
                };
                append(
                    root,
                    &child_path,
                    &child_name,
                    &child_stat,
                    opts,
                    out,
                    depth + 1,
                )?;
            }
        }
        FileType::RegularFile => {
            let file = root.open_file(path)?;
            let now = rustix::fs::fstat(&file)?;
            let mut h = header(&now, tar::EntryType::Regular, opts);
            h.set_size(now.st_size as u64);
            out.append_data(&mut h, name, file.take(now.st_size as u64))?;
        }
        FileType::Symlink => {
            let target = root.read_link(path)?;
            let target = String::from_utf8(target)
                .map_err(|_| anyhow::anyhow!("{path}: a link target that is not UTF-8"))?;
            let mut h = header(stat, tar::EntryType::Symlink, opts);
            out.append_link(&mut h, name, target)?;
        }
        _ => errln!("berth: skipping {path}: not a file, directory or symlink"),
    }
    Ok(())
}

/// A tar builder over `out` with berth's deterministic settings.
pub fn builder<W: Write>(out: W) -> tar::Builder<W> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    b.follow_symlinks(false);
    b
}

/// Unpacks a tar stream into directory `dir` (a descriptor already resolved inside its
/// root): every name resolved inside that directory, `..` breakouts refused, no final
/// component followed, overlay xattrs dropped, no device node made.
pub fn unpack_into(reader: impl Read, dir: &std::os::fd::OwnedFd) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let options = berth_store::layer::unpack::UnpackOptions {
        devices: false,
        build_context: true,
        ..Default::default()
    };
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    berth_store::layer::unpack::unpack(reader, &path, &options)?;
    Ok(())
}

/// The last component of a container or host path (`""` for `/`).
pub fn base_name(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// The directory part of a path (`/` for a top-level name, `.` for a bare name).
pub fn parent_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => trimmed[..i].to_owned(),
        None => ".".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_as_docker_paths() {
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(base_name("/"), "");
        assert_eq!(parent_path("/a/b"), "/a");
        assert_eq!(parent_path("/a"), "/");
        assert_eq!(parent_path("a"), ".");
    }

    /// A tree with a link to `/` and a `..` link: the walk writes the links as links and
    /// reads nothing through them.
    #[test]
    fn a_walk_writes_links_and_never_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"inside").unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("d/evil")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", dir.path().join("d/up")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let mut b = builder(Vec::new());
        write_tree(&root, "/d", "d", &TarOptions::default(), &mut b).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let e = e.unwrap();
            names.push((
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
            ));
        }
        assert_eq!(
            names,
            [
                ("d/".to_owned(), tar::EntryType::Directory),
                ("d/evil".to_owned(), tar::EntryType::Symlink),
                ("d/f".to_owned(), tar::EntryType::Regular),
                ("d/up".to_owned(), tar::EntryType::Symlink),
            ]
        );
        // Following the top inside the root: `/d/evil` is the root itself.
        let mut b = builder(Vec::new());
        let opts = TarOptions {
            follow_top: true,
            ..Default::default()
        };
        write_tree(&root, "/d/up", "x", &opts, &mut b).unwrap_err();
    }
}
