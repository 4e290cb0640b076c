//! `RUN --mount=...`: parsing BuildKit's mount specs and preparing each for the container.
//!
//! - `type=cache` (`id` defaults to the target; `sharing=shared|private|locked`; `mode`,
//!   `uid`, `gid` for a new cache): a directory kept in the store (`cache-mounts/`) between
//!   builds, never part of a layer or of the cache key;
//! - `type=bind` (the default; `source`, `from=stage|image`, read-only unless `rw`): from the
//!   context, the step sees exactly the context the build has after `.dockerignore`, as under
//!   BuildKit: the source is resolved among the included entries ([`resolve_in_context`]; a
//!   symlink is followed inside the context; an ignored or missing name is not found), and a
//!   directory is shown read-only through an overlay whose top layer whites out every
//!   ignored name below it ([`hide_ignored`]), so nothing is copied and the user's files are
//!   never written; `rw` binds, and directories holding a mount, are copies. The source is
//!   opened in the scanned context directory ([`open_bind_source`]) and mounted from that
//!   descriptor, never by path, so a name swapped for a symlink after the check mounts
//!   nothing else. From a stage or
//!   an image, the source is first copied out of that tree, so the container never sees
//!   more than the source, and `rw` writes are thrown away;
//! - `type=tmpfs` (`size`): an empty tmpfs;
//! - `type=secret` (`id`, `target` default `/run/secrets/<id>`, `required`, `mode`, `uid`,
//!   `gid`): the secret given with `--secret id=...,src=FILE|env=VAR`, written for the step
//!   only into a [`SecretDir`] (a directory on `/dev/shm`, memory, never the disk, that no
//!   other user can enter) and bind-mounted read-only. `mode` is what the step sees; on the
//!   host the file is out of every other user's reach whatever its mode. The secret's value
//!   never enters the cache key, the history, a layer or the logs.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::context::ContextEntry;
use crate::context::resolve::is_dir_in;

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// `id=ID,src=PATH` | `id=ID,env=VAR` | `id=ID` (the env var `ID`, as BuildKit).
    pub fn parse(spec: &str) -> Result<(String, Secret), String> {
        let mut id = None;
        let mut source = None;
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("--secret {spec:?}: expected id=ID,src=PATH or id=ID,env=VAR")
            })?;
            match k {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => source = Some(Secret::File(PathBuf::from(v))),
                "env" => source = Some(Secret::Env(v.to_owned())),
                "type" if v == "file" || v == "env" => {}
                _ => return Err(format!("--secret {spec:?}: unknown key {k:?}")),
            }
        }
        let id = id.ok_or_else(|| format!("--secret {spec:?}: the id is missing"))?;
        let source = source.unwrap_or_else(|| Secret::Env(id.clone()));
        Ok((id, source))
    }

    /// The value; `None` when the file or variable does not exist.
    pub fn read(&self) -> Result<Option<Vec<u8>>, String> {
        match self {
            Secret::File(p) => match std::fs::read(p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("reading secret file {}: {e}", p.display())),
            },
            Secret::Env(v) => Ok(std::env::var_os(v).map(|s| s.into_encoded_bytes())),
        }
    }
}

/// Resolves a bind mount's `source` in the build context as the build sees it
/// ([`crate::context::resolve::resolve`]: only included entries exist, symlinks are followed
/// among them). Returns the resolved path (`""` for the root) and whether it is a directory.
pub fn resolve_in_context(
    entries: &BTreeMap<String, ContextEntry>,
    source: &str,
) -> Result<(String, bool), String> {
    crate::context::resolve::resolve(entries, source).map_err(|e| e.to_string())
}

/// The entries a bind of context path `resolved` (from [`resolve_in_context`]) shows: the
/// path itself and everything below it.
pub fn context_selection<'a>(
    entries: &'a BTreeMap<String, ContextEntry>,
    resolved: &'a str,
) -> impl Iterator<Item = &'a ContextEntry> + 'a {
    crate::context::resolve::below(entries, resolved)
}

/// Opens a bind mount's `source` (resolved by [`resolve_in_context`], `""` for the root) in
/// the context directory `root` that the scan walked, for the runtime to mount from the
/// descriptor: what was resolved is what is mounted, whatever the path names by the time the
/// step starts. The resolved path has no symlink left (the scan's were followed), so any
/// symlink now on the way, or in its place, means the context changed since the scan: an
/// error (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). A directory is opened for
/// reading ([`hide_ignored`] lists it), anything else as `O_PATH` (never opened for its data:
/// a FIFO cannot block).
pub fn open_bind_source(
    root: BorrowedFd<'_>,
    resolved: &str,
    dir: bool,
) -> Result<OwnedFd, String> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let changed = || format!("{resolved:?}: the build context changed while it was built");
    let path = if resolved.is_empty() { "." } else { resolved };
    let flags = if dir {
        OFlags::RDONLY | OFlags::DIRECTORY
    } else {
        OFlags::PATH
    };
    let fd = rustix::fs::openat2(
        root,
        path,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::NOENT => changed(),
        e => format!("{resolved:?}: {e}"),
    })?;
    let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd).map_err(|e| e.to_string())?.st_mode);
    if kind == FileType::Symlink || (kind == FileType::Directory) != dir {
        return Err(changed());
    }
    Ok(fd)
}

/// Builds in `hide` (an empty directory) the top layer of a read-only overlay over context
/// directory `top` (opened by [`open_bind_source`]; `dir` is its resolved path in the
/// context): a whiteout (the character device 0:0 overlayfs reads as "no such entry") for
/// every name below `dir` that the context's `entries` leave out, inside directories given
/// the owner and mode of the ones they stand over. Names are read from the directories
/// themselves, through descriptors opened from `top` without following links. Returns `false`
/// when a directory below `dir` is another mount, which an overlay would not show: the caller
/// copies instead.
pub fn hide_ignored(
    top: &OwnedFd,
    dir: &str,
    entries: &BTreeMap<String, ContextEntry>,
    hide: &Path,
) -> std::io::Result<bool> {
    use rustix::fs::{Mode, OFlags};
    let open = |at: &OwnedFd, name: &str| {
        rustix::fs::openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let top = top.try_clone()?;
    let hide_fd = rustix::fs::open(
        hide,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let top_st = rustix::fs::fstat(&top)?;
    let real_top = top.try_clone()?;
    // (real directory, its path in the context, its path below `dir`)
    let mut stack = vec![(top, dir.to_owned(), String::new())];
    while let Some((fd, path, below)) = stack.pop() {
        let mut names: Vec<String> = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd)? {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name != b"." && name != b".." {
                // A name that is not UTF-8 never matches an entry (the scan keeps names as
                // UTF-8): hidden.
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        for name in names {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let child_below = if below.is_empty() {
                name.clone()
            } else {
                format!("{below}/{name}")
            };
            if entries.contains_key(&child) || is_dir_in(entries, &child) {
                if is_dir_in(entries, &child) {
                    let sub = open(&fd, &name)?;
                    if rustix::fs::fstat(&sub)?.st_dev != top_st.st_dev {
                        return Ok(false);
                    }
                    stack.push((sub, child, child_below));
                }
                continue;
            }
            let parent = mirror_dirs(&hide_fd, &real_top, &below)?;
            rustix::fs::mknodat(
                &parent,
                name.as_str(),
                rustix::fs::FileType::CharacterDevice,
                Mode::empty(),
                0,
            )?;
        }
    }
    // The overlay's root is its top layer's: the owner and mode of `dir` itself.
    copy_owner_and_mode(&hide_fd, &top_st)?;
    Ok(true)
}

/// Opens (creating) `below` in the whiteout layer; each directory it makes gets the owner
/// and mode of the real directory it stands over (walked from `real_top`, the bind's source).
fn mirror_dirs(hide: &OwnedFd, real_top: &OwnedFd, below: &str) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let open = |at: &OwnedFd, name: &str| {
        rustix::fs::openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let mut at = hide.try_clone()?;
    let mut real = real_top.try_clone()?;
    for c in below.split('/').filter(|c| !c.is_empty()) {
        real = open(&real, c)?;
        let made = match rustix::fs::mkdirat(&at, c, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(e.into()),
        };
        at = open(&at, c)?;
        if made {
            copy_owner_and_mode(&at, &rustix::fs::fstat(&real)?)?;
        }
    }
    Ok(at)
}

fn copy_owner_and_mode(fd: &OwnedFd, st: &rustix::fs::Stat) -> std::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}

/// A directory for a step's secret files that only berth's user can enter: `mode 0700`,
/// made by `mkdir` under a fresh random name (an existing name, which another user may have
/// made first, is never used), then checked through the descriptor it was opened with (a
/// directory, not a link, owned by this user, 0700). Files are created inside it relative to
/// that descriptor, exclusively, never following a link. Removed with its files on drop.
#[derive(Debug)]
pub struct SecretDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl SecretDir {
    /// On `/dev/shm` (a tmpfs) when there is one, else under `fallback`.
    pub fn create(fallback: &Path) -> std::io::Result<SecretDir> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm } else { fallback };
        let mut tries = 0;
        loop {
            let mut random = [0u8; 16];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
            let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let path = base.join(format!("berth-secrets-{name}"));
            match rustix::fs::mkdir(&path, rustix::fs::Mode::from_raw_mode(0o700)) {
                Ok(()) => return SecretDir::open(path),
                Err(rustix::io::Errno::EXIST) if tries < 16 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn open(path: PathBuf) -> std::io::Result<SecretDir> {
        use rustix::fs::{FileType, Mode, OFlags};
        let refuse = |path: &Path| {
            let _ = std::fs::remove_dir(path);
            std::io::Error::other(format!(
                "{}: not a private directory of this user",
                path.display()
            ))
        };
        let fd = match rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => return Err(refuse(&path)),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory
            || st.st_uid != rustix::process::geteuid().as_raw()
        {
            return Err(refuse(&path));
        }
        // mkdir's mode went through the umask, which can only have taken bits away.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
        Ok(SecretDir { path, fd })
    }

    /// Writes `value` to a new file `name` in the directory, owned by `uid:gid` with `mode`;
    /// returns its path, for the bind mount.
    pub fn write(
        &self,
        name: &str,
        value: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> std::io::Result<PathBuf> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::openat(
            self.fd.as_fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, value)?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(self.path.join(name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: Kind,
    pub target: String,
    pub source: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub sharing: berth_store::CacheSharing,
    pub readonly: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    pub size: Option<u64>,
}

fn size(v: &str) -> Result<u64, String> {
    let lower = v.to_ascii_lowercase();
    let end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let n: u64 = lower[..end]
        .parse()
        .map_err(|_| format!("invalid size {v:?}"))?;
    let shift = match lower[end..].trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        u => return Err(format!("invalid size {v:?}: unknown unit {u:?}")),
    };
    Ok(n << shift)
}

impl MountSpec {
    pub fn parse(spec: &str) -> Result<MountSpec, String> {
        let mut fields: BTreeMap<String, Option<String>> = BTreeMap::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
                None => (part.to_ascii_lowercase(), None),
            };
            fields.insert(k, v);
        }
        let get = |names: &[&str]| names.iter().find_map(|n| fields.get(*n).cloned().flatten());
        let flag = |name: &str| match fields.get(name) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!(
                    "--mount {spec:?}: {name}={v}: expected true or false"
                )),
            },
        };
        let kind = match get(&["type"]).as_deref().unwrap_or("bind") {
            "bind" => Kind::Bind,
            "cache" => Kind::Cache,
            "tmpfs" => Kind::Tmpfs,
            "secret" => Kind::Secret,
            "ssh" => return Err("RUN --mount=type=ssh is not supported yet".into()),
            t => return Err(format!("--mount {spec:?}: unknown type {t:?}")),
        };
        for k in fields.keys() {
            let known = [
                "type",
                "target",
                "dst",
                "destination",
                "source",
                "src",
                "from",
                "id",
                "sharing",
                "readonly",
                "ro",
                "rw",
                "readwrite",
                "mode",
                "uid",
                "gid",
                "required",
                "size",
            ];
            if !known.contains(&k.as_str()) {
                return Err(format!("--mount {spec:?}: unknown option {k:?}"));
            }
        }
        let id = get(&["id"]);
        let target = match (get(&["target", "dst", "destination"]), kind, &id) {
            (Some(t), _, _) => t,
            (None, Kind::Secret, Some(id)) => format!("/run/secrets/{id}"),
            _ => return Err(format!("--mount {spec:?}: the target is missing")),
        };
        let octal = |name: &str| {
            get(&[name])
                .map(|v| {
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| format!("--mount {spec:?}: invalid {name} {v:?}"))
                })
                .transpose()
        };
        let number = |name: &str| {
            get(&[name])
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| format!("--mount {spec:?}: invalid {name} {v:?}"))
                })
                .transpose()
        };
        let rw = flag("rw")? || flag("readwrite")?;
        let ro = flag("readonly")? || flag("ro")?;
        Ok(MountSpec {
            kind,
            id: id.clone().or_else(|| match kind {
                Kind::Cache => Some(target.clone()),
                Kind::Secret => target.rsplit('/').next().map(str::to_owned),
                _ => None,
            }),
            target,
            source: get(&["source", "src"]),
            from: get(&["from"]),
            sharing: match get(&["sharing"]).as_deref().unwrap_or("shared") {
                "shared" => berth_store::CacheSharing::Shared,
                "private" => berth_store::CacheSharing::Private,
                "locked" => berth_store::CacheSharing::Locked,
                s => return Err(format!("--mount {spec:?}: unknown sharing {s:?}")),
            },
            readonly: match kind {
                Kind::Bind => !rw,
                Kind::Secret => true,
                _ => ro,
            },
            mode: octal("mode")?,
            uid: number("uid")?,
            gid: number("gid")?,
            required: flag("required")?,
            size: get(&["size"]).map(|v| size(&v)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::EntryKind;

    #[test]
    fn mount_specs_parse_with_buildkit_defaults() {
        let c = MountSpec::parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!(c.kind, Kind::Cache);
        assert_eq!(c.id.as_deref(), Some("/root/.cache"));
        assert!(!c.readonly);
        let b = MountSpec::parse("target=/src,source=go.mod").unwrap();
        assert_eq!(b.kind, Kind::Bind);
        assert!(b.readonly);
        assert!(!MountSpec::parse("target=/src,rw").unwrap().readonly);
        let s = MountSpec::parse("type=secret,id=token,required").unwrap();
        assert_eq!(s.target, "/run/secrets/token");
        assert!(s.required);
        let t = MountSpec::parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(t.size, Some(64 << 20));
        let l = MountSpec::parse("type=cache,target=/c,sharing=locked,mode=0700,uid=5").unwrap();
        assert_eq!(l.sharing, berth_store::CacheSharing::Locked);
        assert_eq!((l.mode, l.uid), (Some(0o700), Some(5)));
        assert!(MountSpec::parse("type=bind").is_err());
        assert!(MountSpec::parse("type=cache,target=/c,bogus=1").is_err());
        assert!(MountSpec::parse("type=nope,target=/c").is_err());
    }

    #[test]
    fn bind_sources_resolve_among_the_included_entries_only() {
        let entry = |path: &str, kind: EntryKind| {
            (
                path.to_owned(),
                ContextEntry {
                    path: path.into(),
                    kind,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    digest: None,
                    version: None,
                },
            )
        };
        // `secret` and `dir` are ignored; `dir/keep` is let in again.
        let entries: BTreeMap<String, ContextEntry> = [
            entry("a", EntryKind::Dir),
            entry("a/f", EntryKind::File),
            entry("dir/keep", EntryKind::File),
            entry("to-a", EntryKind::Symlink("a".into())),
            entry("abs", EntryKind::Symlink("/a/f".into())),
            entry("up", EntryKind::Symlink("../../a".into())),
            entry("to-secret", EntryKind::Symlink("secret".into())),
            entry("loop", EntryKind::Symlink("loop".into())),
        ]
        .into_iter()
        .collect();
        let r = |s: &str| resolve_in_context(&entries, s);
        assert_eq!(r("/"), Ok(("".into(), true)));
        assert_eq!(r("./a/"), Ok(("a".into(), true)));
        assert_eq!(r("to-a/f"), Ok(("a/f".into(), false)));
        assert_eq!(r("abs"), Ok(("a/f".into(), false)));
        assert_eq!(r("up"), Ok(("a".into(), true)), "never above the root");
        assert_eq!(r("dir"), Ok(("dir".into(), true)));
        for missing in ["secret", "to-secret", "dir/drop", "a/f/x", "nope"] {
            assert!(r(missing).unwrap_err().contains("not found"), "{missing}");
        }
        assert!(r("loop").is_err());
        let shown: Vec<&str> = context_selection(&entries, "a")
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(shown, ["a", "a/f"]);
    }

    /// What is opened is what was resolved: a source swapped for a symlink, a parent
    /// swapped for one, or a file swapped for a directory (or back) is refused, and a swap
    /// after the open does not change what the descriptor names.
    #[test]
    fn a_bind_source_is_opened_as_resolved_or_refused() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let (ctx, outside) = (tmp.path().join("ctx"), tmp.path().join("outside"));
        std::fs::create_dir_all(ctx.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(ctx.join("f"), "in").unwrap();
        std::fs::write(ctx.join("d/f"), "in d").unwrap();
        std::fs::write(outside.join("f"), "OUTSIDE").unwrap();
        let root = rustix::fs::open(
            &ctx,
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let read = |fd: &OwnedFd, rel: &str| {
            let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
            let path = if rel.is_empty() {
                fd_path
            } else {
                format!("{fd_path}/{rel}")
            };
            std::fs::read_to_string(path).unwrap()
        };
        // Opened, then swapped: the descriptors still name the originals.
        let f = open_bind_source(root.as_fd(), "f", false).unwrap();
        let d = open_bind_source(root.as_fd(), "d", true).unwrap();
        let whole = open_bind_source(root.as_fd(), "", true).unwrap();
        std::fs::rename(ctx.join("f"), ctx.join("f.old")).unwrap();
        symlink(outside.join("f"), ctx.join("f")).unwrap();
        std::fs::rename(ctx.join("d"), ctx.join("d.old")).unwrap();
        symlink(&outside, ctx.join("d")).unwrap();
        assert_eq!(read(&f, ""), "in");
        assert_eq!(read(&d, "f"), "in d");
        assert_eq!(read(&whole, "f.old"), "in");
        // Swapped before the open: refused.
        for (path, dir) in [("f", false), ("d", true), ("d/f", false), ("f.old", true)] {
            let e = open_bind_source(root.as_fd(), path, dir).unwrap_err();
            assert!(e.contains("changed while it was built"), "{path}: {e}");
        }
        assert!(open_bind_source(root.as_fd(), "d.old", false).is_err());
        assert!(open_bind_source(root.as_fd(), "../outside/f", false).is_err());
    }

    #[test]
    fn a_secret_dir_is_private_and_goes_with_its_files() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretDir::create(tmp.path()).unwrap();
        let path = dir.path().to_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o700);
        let me = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let file = dir.write("s", b"value", 0o444, me, gid).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"value");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o444);
        assert!(
            dir.write("s", b"again", 0o400, me, gid).is_err(),
            "never over an existing file"
        );
        std::os::unix::fs::symlink("/etc/passwd", path.join("l")).unwrap();
        assert!(
            dir.write("l", b"x", 0o400, me, gid).is_err(),
            "never through a link"
        );
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn secrets_parse() {
        assert_eq!(
            Secret::parse("id=a,src=/x").unwrap(),
            ("a".into(), Secret::File("/x".into()))
        );
        assert_eq!(
            Secret::parse("id=a,env=V").unwrap(),
            ("a".into(), Secret::Env("V".into()))
        );
        assert_eq!(
            Secret::parse("id=a").unwrap(),
            ("a".into(), Secret::Env("a".into()))
        );
        assert!(Secret::parse("src=/x").is_err());
    }
}
