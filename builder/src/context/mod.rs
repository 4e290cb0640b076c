//! The build context: a directory and its `.dockerignore` in; every included path with its
//! type, mode, ownership and content digest out ([`ScannedContext`]), and the digest of a
//! selection of it for cache keys ([`digest_selection`]).
//!
//! Unchanged files are not re-read: a [`StatIndex`] maps each path's stat data (size, mtime,
//! ctime, inode, device, mode) to the content digest found last time; `cli` keeps it in the
//! store's `contexts/` through `Store::{read,write}_context_index`. Digests never depend on
//! mtimes or inode numbers: those only decide whether a file must be read again.
//!
//! Symlinks are recorded as links (their targets are never followed here), so a link loop or
//! a link out of the context cannot make the scan read outside it.

pub mod archive;
pub mod ignore;
pub mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_oci::{Digest, Digester};
use serde::{Deserialize, Serialize};

pub use ignore::Matcher;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ignore(#[from] ignore::IgnoreError),
    /// A Dockerfile or ignore file past its size limit.
    #[error(transparent)]
    Limit(#[from] berth_oci::limits::LimitError),
    /// A context received as a stream ([`archive::receive`]) that cannot be used.
    #[error("the build context from {from}: {reason}")]
    Archive { from: String, reason: String },
    /// The context is past one of its [`Limits`].
    #[error("the build context {what}: exclude what the build does not need in .dockerignore")]
    TooLarge { what: String },
}

/// Bounds on a build context, checked as it is walked (before anything is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries walked (files, directories, links, ...). Each included one is kept in memory
    /// (a few hundred bytes) and in the stat index; a million is far above real contexts
    /// (the Linux kernel's tree has under 100,000 files) and bounds memory to a few hundred
    /// MiB.
    pub entries: u64,
    /// Bytes in a path relative to the context: PATH_MAX, beyond which a path cannot be
    /// resolved by COPY anyway.
    pub path_len: usize,
    /// Directories deep: each level is a recursion in COPY and an open directory in the walk.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            entries: 1_000_000,
            path_len: 4096,
            depth: 256,
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContextError {
    let context = context.into();
    move |source| ContextError::Io { context, source }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(String),
}

/// One included path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Relative to the context root, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Regular files only.
    pub digest: Option<Digest>,
    /// Regular files: the file as it was when `digest` was taken; directories: as the scan
    /// listed them. Whoever reads them later for the build (COPY, ADD, a RUN step's bind)
    /// checks they still are, so no content that the cache key does not describe ever enters
    /// a layer.
    pub version: Option<StatKey>,
}

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub files: u64,
    /// Files whose contents were read (not found unchanged in the index).
    pub files_read: u64,
    pub bytes_read: u64,
}

#[derive(Debug, Clone)]
pub struct ScannedContext {
    /// The path the context was given by (for messages; never opened again).
    pub root: PathBuf,
    /// The context directory the scan walked, held open: every later read of the context
    /// (COPY, ADD, `RUN --mount=type=bind`) starts from it, so replacing the directory (or a
    /// parent of it) by a symlink after the scan changes nothing.
    pub dir: std::sync::Arc<std::os::fd::OwnedFd>,
    /// The context directory as the scan found it (its times move when an entry in it is
    /// added, removed or renamed).
    pub root_version: StatKey,
    pub entries: BTreeMap<String, ContextEntry>,
    pub stats: ScanStats,
}

/// Stat data that says whether a file may have changed: a write, a truncation, a `chmod`,
/// a `touch` or a replacement all change it (the kernel moves `ctime` on every change, and
/// only root can set it back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    mode: u32,
}

impl StatKey {
    pub fn of(st: &rustix::fs::Stat) -> StatKey {
        StatKey {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
            ino: st.st_ino,
            dev: st.st_dev,
            mode: st.st_mode,
        }
    }
}

/// path → (stat data, content digest) from the previous scan of the same context.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatIndex {
    entries: HashMap<String, (StatKey, Digest)>,
}

impl StatIndex {
    /// Reads a saved index; anything unreadable is an empty index (it is only a cache).
    pub fn from_bytes(bytes: &[u8]) -> StatIndex {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data")
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The largest Dockerfile read. Dockerfiles are text of a few KiB; a generated one of a
/// few hundred KiB is unusual. A file past this is refused, so a context whose Dockerfile
/// links to `/dev/zero`-like content cannot exhaust memory.
pub const MAX_DOCKERFILE: u64 = 4 << 20;
/// The largest `.dockerignore` read (each line becomes a pattern held in memory).
pub const MAX_IGNORE_FILE: u64 = 4 << 20;

/// Where a file of the build (the Dockerfile, an ignore file) is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildFile {
    /// A path inside the context (relative, `/`-separated): the context's own file, read
    /// through [`berth_fsroot::Root`] with its symlinks resolved inside the context, as
    /// BuildKit's file sync does, regular files only, without blocking.
    InContext(String),
    /// A path outside the context that the user named (`-f /elsewhere/Dockerfile`): theirs,
    /// read as given (a pipe such as `-f <(generate)` included).
    Host(PathBuf),
}

/// Lexically normalised absolute form of `p` (`.` and `..` folded, no symlink followed).
fn lexical_absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Classifies `path` (as the user wrote it) against the context: inside it when, made
/// absolute, it lies under the context directory as written or as canonicalised (the
/// context's own path is the user's; nothing inside the context is followed to decide).
pub fn build_file(context: &Path, path: &Path) -> BuildFile {
    let abs = lexical_absolute(path);
    let bases = [
        Some(lexical_absolute(context)),
        std::fs::canonicalize(context).ok(),
    ];
    for base in bases.into_iter().flatten() {
        if let Ok(rel) = abs.strip_prefix(&base) {
            return BuildFile::InContext(rel.to_string_lossy().into_owned());
        }
    }
    BuildFile::Host(path.to_owned())
}

impl BuildFile {
    fn describe(&self, context: &Path) -> String {
        match self {
            BuildFile::InContext(rel) => context.join(rel).display().to_string(),
            BuildFile::Host(p) => p.display().to_string(),
        }
    }

    /// The file's bytes, at most `limit` of them. `Ok(None)`: it does not exist (a dangling
    /// symlink, or one whose target is missing inside the context, included).
    pub fn read(&self, context: &Path, limit: u64) -> Result<Option<Vec<u8>>, ContextError> {
        let what = self.describe(context);
        let opened = match self {
            BuildFile::InContext(rel) => berth_fsroot::Root::open(context)
                .map_err(io(format!("opening the context {}", context.display())))?
                .open_file_following(rel),
            BuildFile::Host(p) => std::fs::File::open(p),
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ContextError::Io {
                    context: format!("reading {what}"),
                    source: e,
                });
            }
        };
        Ok(Some(berth_oci::limits::read_limited(file, limit, &what)?))
    }
}

/// The Dockerfile of a build: `-f FILE` when given, else `CONTEXT/Dockerfile`.
pub fn dockerfile(context: &Path, file: Option<&Path>) -> BuildFile {
    match file {
        Some(f) => build_file(context, f),
        None => BuildFile::InContext("Dockerfile".into()),
    }
}

/// The Dockerfile of a build without `-f`: `None` for `CONTEXT/Dockerfile` when it exists,
/// else `CONTEXT/Containerfile` (Buildah's and Podman's name) when that exists; an error
/// naming both, and the context as `shown`, when neither does. Both are looked up inside the
/// context (symlinks resolved there).
pub fn default_dockerfile(context: &Path, shown: &str) -> Result<Option<PathBuf>, ContextError> {
    let root = berth_fsroot::Root::open(context)
        .map_err(io(format!("opening the context {}", context.display())))?;
    for name in ["Dockerfile", "Containerfile"] {
        match root.open_file_following(name) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // Anything else there (a FIFO, a directory) is the Dockerfile, refused when read.
            _ if name == "Dockerfile" => return Ok(None),
            _ => return Ok(Some(context.join(name))),
        }
    }
    Err(ContextError::Io {
        context: format!("reading the Dockerfile of the build context {shown}"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "neither Dockerfile nor Containerfile is in it (give another with -f)",
        ),
    })
}

/// Reads the Dockerfile of a build (see [`dockerfile`] and [`BuildFile`]), at most
/// [`MAX_DOCKERFILE`] bytes.
pub fn read_dockerfile(context: &Path, file: Option<&Path>) -> Result<Vec<u8>, ContextError> {
    let source = dockerfile(context, file);
    source
        .read(context, MAX_DOCKERFILE)?
        .ok_or_else(|| ContextError::Io {
            context: format!("reading {}", source.describe(context)),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                match source {
                    BuildFile::InContext(_) => {
                        "no such file in the context (its symlinks are resolved inside it)"
                    }
                    BuildFile::Host(_) => "no such file",
                },
            ),
        })
}

/// The ignore files for a build, in order of preference: `<dockerfile>.dockerignore`
/// beside the Dockerfile, then `<context>/.containerignore` (Buildah's and Podman's name),
/// then `<context>/.dockerignore`; the first that exists is used.
pub fn ignore_files(context: &Path, dockerfile: Option<&Path>) -> Vec<BuildFile> {
    let mut files = Vec::new();
    if let Some(df) = dockerfile
        && let Some(name) = df.file_name()
    {
        let mut name = name.to_os_string();
        name.push(".dockerignore");
        files.push(build_file(context, &df.with_file_name(name)));
    }
    files.push(BuildFile::InContext(".containerignore".into()));
    files.push(BuildFile::InContext(".dockerignore".into()));
    files
}

/// The matcher for a build (empty when there is no ignore file). An ignore file in the
/// context is read inside it (see [`BuildFile`]), at most [`MAX_IGNORE_FILE`] bytes.
pub fn load_matcher(context: &Path, dockerfile: Option<&Path>) -> Result<Matcher, ContextError> {
    for file in ignore_files(context, dockerfile) {
        if let Some(bytes) = file.read(context, MAX_IGNORE_FILE)? {
            return Ok(Matcher::parse(&String::from_utf8_lossy(&bytes))?);
        }
    }
    Ok(Matcher::default())
}

/// One directory entry found by [`walk`], with its stat data.
struct Found {
    rel: String,
    stat: rustix::fs::Stat,
    /// The open directory holding it and its name there, for reading without path lookups.
    dir: std::sync::Arc<std::os::fd::OwnedFd>,
    name: std::ffi::CString,
}

fn errno_io(what: String) -> impl FnOnce(rustix::io::Errno) -> ContextError {
    move |e| ContextError::Io {
        context: what,
        source: e.into(),
    }
}

/// Walks the tree in name order with `openat`/`getdents`/`fstatat` relative to each open
/// directory (no path lookup per file: on this kind of VM a stat through a full path costs
/// noticeably more), calling `visit` for each entry; `visit` says whether to enter a directory.
/// A directory is opened only when its turn comes, so the walk holds one open directory per
/// level, not one per directory seen. Stops with [`ContextError::TooLarge`] past `limits`.
fn walk(
    root_fd: &std::sync::Arc<std::os::fd::OwnedFd>,
    root: &Path,
    limits: &Limits,
    mut visit: impl FnMut(Found) -> Result<bool, ContextError>,
) -> Result<(), ContextError> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    type DirFd = std::sync::Arc<std::os::fd::OwnedFd>;
    /// A directory to walk: where it is (`None`: the root), its path with a trailing `/`,
    /// its depth.
    type Pending = (Option<(DirFd, std::ffi::CString)>, String, usize);
    let mut stack: Vec<Pending> = vec![(None, String::new(), 0)];
    let root_fd: DirFd = root_fd.clone();
    let mut walked = 0u64;
    while let Some((at, prefix, depth)) = stack.pop() {
        let dir: DirFd = match at {
            None => root_fd.clone(),
            Some((parent, name)) => std::sync::Arc::new(
                rustix::fs::openat(
                    &*parent,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno_io(format!("opening {prefix}")))?,
            ),
        };
        let mut names: Vec<std::ffi::CString> = rustix::fs::Dir::read_from(&*dir)
            .map_err(errno_io(format!("reading {}/{prefix}", root.display())))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        names.sort();
        walked += names.len() as u64;
        if walked > limits.entries {
            return Err(ContextError::TooLarge {
                what: format!("has more than {} entries", limits.entries),
            });
        }
        let mut subdirs = Vec::new();
        for name in names {
            let rel = format!("{prefix}{}", String::from_utf8_lossy(name.as_bytes()));
            if rel.len() > limits.path_len {
                return Err(ContextError::TooLarge {
                    what: format!(
                        "has a path longer than {} bytes: {}...",
                        limits.path_len,
                        &rel[..rel.floor_char_boundary(80)]
                    ),
                });
            }
            let stat = rustix::fs::statat(&*dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno_io(format!("reading {rel}")))?;
            let is_dir = rustix::fs::FileType::from_raw_mode(stat.st_mode)
                == rustix::fs::FileType::Directory;
            if !is_dir {
                visit(Found {
                    rel,
                    stat,
                    dir: dir.clone(),
                    name,
                })?;
                continue;
            }
            let sub_prefix = format!("{rel}/");
            if visit(Found {
                rel,
                stat,
                dir: dir.clone(),
                name: name.clone(),
            })? {
                if depth + 1 > limits.depth {
                    return Err(ContextError::TooLarge {
                        what: format!(
                            "is more than {} directories deep at {sub_prefix}",
                            limits.depth
                        ),
                    });
                }
                subdirs.push((Some((dir.clone(), name)), sub_prefix, depth + 1));
            }
        }
        // Depth-first in name order: the first name is popped first.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Scans `root`, reusing digests from `index` for unchanged files and updating it, within
/// the default [`Limits`].
pub fn scan(
    root: &Path,
    matcher: &Matcher,
    index: &mut StatIndex,
) -> Result<ScannedContext, ContextError> {
    scan_within(root, matcher, index, &Limits::default())
}

/// [`scan`] with explicit limits.
pub fn scan_within(
    root: &Path,
    matcher: &Matcher,
    index: &mut StatIndex,
    limits: &Limits,
) -> Result<ScannedContext, ContextError> {
    use rustix::fs::{FileType, Mode, OFlags};
    let mut entries = BTreeMap::new();
    let mut stats = ScanStats::default();
    let mut seen: HashMap<String, (StatKey, Digest)> = HashMap::with_capacity(index.entries.len());
    let root_dir = std::sync::Arc::new(
        rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_io(format!("opening {}", root.display())))?,
    );
    let root_version = StatKey::of(
        &rustix::fs::fstat(&*root_dir).map_err(errno_io(format!("reading {}", root.display())))?,
    );
    walk(&root_dir, root, limits, |f| {
        let ft = FileType::from_raw_mode(f.stat.st_mode);
        if matcher.excluded(&f.rel) {
            return Ok(ft == FileType::Directory && matcher.may_include_under(&f.rel));
        }
        let kind = match ft {
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&*f.dir, &f.name, Vec::new())
                    .map_err(errno_io(format!("reading link {}", f.rel)))?;
                EntryKind::Symlink(String::from_utf8_lossy(target.as_bytes()).into_owned())
            }
            FileType::RegularFile => EntryKind::File,
            // FIFOs, sockets and devices are not part of a context (BuildKit's transfer
            // never sends them): left out here, never opened.
            _ => return Ok(false),
        };
        let st = &f.stat;
        let mut version = None;
        let digest = if kind == EntryKind::File {
            stats.files += 1;
            let key = StatKey::of(st);
            let (key, digest) = match index.entries.remove(&f.rel) {
                Some((k, d)) if k == key => (k, d),
                _ => {
                    // Non-blocking, then checked: a file swapped for a FIFO since the
                    // stat above is refused, never waited on.
                    let fd = rustix::fs::openat(
                        &*f.dir,
                        &f.name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(errno_io(format!("opening {}", f.rel)))?;
                    let now =
                        rustix::fs::fstat(&fd).map_err(errno_io(format!("opening {}", f.rel)))?;
                    if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile {
                        return Err(ContextError::Io {
                            context: format!("opening {}", f.rel),
                            source: std::io::Error::other("changed while the context was read"),
                        });
                    }
                    rustix::fs::fcntl_setfl(&fd, OFlags::empty())
                        .map_err(errno_io(format!("opening {}", f.rel)))?;
                    stats.files_read += 1;
                    stats.bytes_read += key.size;
                    let file = std::fs::File::from(fd);
                    let digest = hash_reader(&file, &f.rel)?;
                    // The digest describes one version of the file, or the scan fails: a
                    // file written while it was read has no digest.
                    let after =
                        rustix::fs::fstat(&file).map_err(errno_io(format!("reading {}", f.rel)))?;
                    let read = StatKey::of(&now);
                    if StatKey::of(&after) != read || read != key {
                        return Err(ContextError::Io {
                            context: format!("reading {}", f.rel),
                            source: std::io::Error::other(
                                "the file changed while it was read: build again, or leave it out with .dockerignore",
                            ),
                        });
                    }
                    (read, digest)
                }
            };
            seen.insert(f.rel.clone(), (key, digest.clone()));
            version = Some(key);
            Some(digest)
        } else {
            if kind == EntryKind::Dir {
                version = Some(StatKey::of(st));
            }
            None
        };
        let entry = ContextEntry {
            path: f.rel.clone(),
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            digest,
            version,
        };
        entries.insert(f.rel, entry);
        Ok(true)
    })?;
    index.entries = seen;
    Ok(ScannedContext {
        root: root.to_owned(),
        dir: root_dir,
        root_version,
        entries,
        stats,
    })
}

fn hash_reader(mut f: impl Read, what: &str) -> Result<Digest, ContextError> {
    let mut d = Digester::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf).map_err(io(format!("reading {what}")))?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    Ok(d.finish())
}

/// The first 64 bits of a digest, in hex: enough to tell two values of one input apart
/// (a cache miss's reason), in a quarter of the bytes.
pub fn short_digest(d: &Digest) -> String {
    d.hex()[..16].to_owned()
}

/// The digest of a selection of entries for a cache key: paths, types, modes, ownership
/// (after `--chown` when given) and contents or link targets; never times or inodes.
pub fn digest_selection<'a>(
    entries: impl IntoIterator<Item = &'a ContextEntry>,
    chown: Option<(u32, u32)>,
) -> Digest {
    let mut lines: Vec<String> = entries
        .into_iter()
        .map(|e| {
            let (uid, gid) = chown.unwrap_or((e.uid, e.gid));
            let content = match (&e.kind, &e.digest) {
                (EntryKind::Symlink(t), _) => format!("link:{t}"),
                (_, Some(d)) => d.to_string(),
                (EntryKind::Dir, _) => "dir".into(),
                _ => "other".into(),
            };
            format!("{}\0{:o}\0{uid}:{gid}\0{content}\n", e.path, e.mode)
        })
        .collect();
    lines.sort();
    Digest::of(lines.concat().as_bytes())
}
