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

pub mod ignore;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
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
    /// FIFOs, sockets, devices: listed, never read.
    Other,
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
    pub root: PathBuf,
    pub entries: BTreeMap<String, ContextEntry>,
    pub stats: ScanStats,
}

/// Stat data that says whether a file may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StatKey {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    mode: u32,
}

impl StatKey {
    fn of(m: &std::fs::Metadata) -> StatKey {
        StatKey {
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
            mode: m.mode(),
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

/// The ignore file for a build: `<dockerfile>.dockerignore` beside the Dockerfile wins over
/// `<context>/.dockerignore`.
pub fn ignore_file(context: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    if let Some(df) = dockerfile {
        let mut name = df.file_name()?.to_os_string();
        name.push(".dockerignore");
        let beside = df.with_file_name(name);
        if beside.is_file() {
            return Some(beside);
        }
    }
    Some(context.join(".dockerignore")).filter(|p| p.is_file())
}

/// The matcher for a build (empty when there is no ignore file).
pub fn load_matcher(context: &Path, dockerfile: Option<&Path>) -> Result<Matcher, ContextError> {
    match ignore_file(context, dockerfile) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(io(format!("reading {}", path.display())))?;
            Ok(Matcher::parse(&text)?)
        }
        None => Ok(Matcher::default()),
    }
}

/// Scans `root`, reusing digests from `index` for unchanged files and updating it.
pub fn scan(
    root: &Path,
    matcher: &Matcher,
    index: &mut StatIndex,
) -> Result<ScannedContext, ContextError> {
    let mut entries = BTreeMap::new();
    let mut stats = ScanStats::default();
    let mut seen: HashMap<String, (StatKey, Digest)> = HashMap::new();
    let mut walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(item) = walk.next() {
        let item = item.map_err(|e| ContextError::Io {
            context: format!("walking {}", root.display()),
            source: e.into(),
        })?;
        let rel = item
            .path()
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let meta = item
            .path()
            .symlink_metadata()
            .map_err(io(format!("reading {}", item.path().display())))?;
        let excluded = matcher.excluded(&rel);
        if meta.is_dir() {
            if excluded {
                if !matcher.may_include_under(&rel) {
                    walk.skip_current_dir();
                }
                continue;
            }
        } else if excluded {
            continue;
        }
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink(
                std::fs::read_link(item.path())
                    .map_err(io(format!("reading link {}", item.path().display())))?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        let digest = if kind == EntryKind::File {
            stats.files += 1;
            let key = StatKey::of(&meta);
            let digest = match index.entries.get(&rel) {
                Some((k, d)) if *k == key => d.clone(),
                _ => {
                    let d = hash_file(item.path())?;
                    stats.files_read += 1;
                    stats.bytes_read += meta.len();
                    d
                }
            };
            seen.insert(rel.clone(), (key, digest.clone()));
            Some(digest)
        } else {
            None
        };
        entries.insert(
            rel.clone(),
            ContextEntry {
                path: rel,
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.len(),
                digest,
            },
        );
    }
    index.entries = seen;
    Ok(ScannedContext {
        root: root.to_owned(),
        entries,
        stats,
    })
}

fn hash_file(path: &Path) -> Result<Digest, ContextError> {
    let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let mut d = Digester::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    Ok(d.finish())
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
