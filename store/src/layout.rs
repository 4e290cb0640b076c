//! The store itself: a root path in, an opened [`Store`] out, its directories laid out as
//! below. The modules of the store's parts (blobs, images, index, snapshots, cache,
//! containers, …) add their methods to [`Store`] in their own files.
//!
//! ```text
//! <root>/oci-layout, index.json   an OCI image layout (image-layout.md): skopeo/umoci read it
//! <root>/blobs/sha256/<hex>       content (blobs.rs)
//! <root>/snapshots/<chain-hex>/   one unpacked layer each (snapshots.rs)
//! <root>/cache/                   build cache records (builder)
//! <root>/contexts/                build-context stat→digest indexes (builder)
//! <root>/containers/<id>/         containers made by `run` (containers.rs)
//! <root>/locks/                   store.lock, index.lock (lock.rs)
//! <root>/tmp/                     staging; emptied at start when no other process is active
//! ```
//!
//! Snapshot directories are named by the chain-id's hex alone: overlayfs separates lower
//! dirs with `:`, so no path under the store may contain one.
//!
//! The root and every directory above are private to the user running berth (files.rs);
//! opening a store an older berth left open to other users closes these top levels.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_oci::manifest::to_canonical_json;
use berth_oci::{Digest, ImageIndex};

use crate::error::{IoContext, Result};
use crate::lock::FileLock;

const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// The version of the store's layout as this berth reads and writes it (`berth version`
/// reports it): raised when a store written by this berth can no longer be read by an older
/// one, or the other way round.
pub const FORMAT_VERSION: u32 = 1;

/// The directories under the root, parents before children.
const TOP_DIRS: [&str; 11] = [
    "blobs",
    "blobs/sha256",
    "snapshots",
    "cache",
    "cache-mounts",
    "compressed",
    "contexts",
    "containers",
    "locks",
    "tmp",
    "volumes",
];

/// An opened store. Holds the shared store lock (lock.rs) for its whole life.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    lock: FileLock,
}

impl Store {
    /// Opens the store at `root`, creating the layout if missing (private to the user
    /// running berth), closes its top levels to other users if an older berth left them
    /// open, and removes what killed processes left in `tmp/` when no other process is
    /// using the store.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root: PathBuf = root.into();
        crate::files::create_dir_all(&root).ctx(|| format!("creating {}", root.display()))?;
        let mut was_open = crate::files::tighten(&root)?;
        for dir in TOP_DIRS {
            let p = root.join(dir);
            match crate::files::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    was_open |= crate::files::tighten(&p)?
                }
                Err(e) => return Err(e).ctx(|| format!("creating {}", p.display())),
            }
        }
        if was_open {
            // An older berth's store: its locks too (each is also checked when opened).
            crate::files::tighten_files_in(&root.join("locks"))?;
        }
        let lock = FileLock::shared(&root.join("locks/store.lock"))?;
        let store = Store { root, lock };
        if !store.root.join("oci-layout").exists() {
            atomic_write(
                &store.root.join("oci-layout"),
                OCI_LAYOUT.as_bytes(),
                &store.tmp_dir(),
            )?;
        }
        if !store.root.join("index.json").exists() {
            let _guard = store.index_lock()?;
            if !store.root.join("index.json").exists() {
                atomic_write(
                    &store.root.join("index.json"),
                    &to_canonical_json(&ImageIndex::default()),
                    &store.tmp_dir(),
                )?;
            }
        }
        if store.lock.try_upgrade()? {
            let cleaned = store.clean_tmp();
            store.lock.downgrade()?;
            cleaned?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn snapshot_path(&self, chain_id: &Digest) -> PathBuf {
        self.snapshots_dir().join(chain_id.hex())
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub(crate) fn index_lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.root.join("locks/index.lock"))
    }

    pub(crate) fn store_lock(&self) -> &FileLock {
        &self.lock
    }

    /// Removes everything under `tmp/`. Only called with the store lock held exclusive.
    fn clean_tmp(&self) -> Result<()> {
        let tmp = self.tmp_dir();
        for entry in std::fs::read_dir(&tmp).ctx(|| format!("reading {}", tmp.display()))? {
            let path = entry.ctx(|| "reading tmp".into())?.path();
            crate::fsutil::remove_all(&path)?;
        }
        Ok(())
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A path under `dir` no other process or thread will pick.
pub(crate) fn unique_tmp_path(dir: &Path, what: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!("{what}-{}-{n}-{nanos:x}", std::process::id()))
}

/// fsyncs a directory so a rename inside it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx(|| format!("syncing {}", dir.display()))
}

/// Writes a small file atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8], tmp_dir: &Path) -> Result<()> {
    replace_file(path, bytes, tmp_dir, true)
}

/// Replaces a file by rename; with `durable`, fsyncs the file and its directory too. State
/// that is rewritten constantly and worthless after a power loss (a container's status) is
/// written without the fsyncs, which cost milliseconds on every `run`.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], tmp_dir: &Path, durable: bool) -> Result<()> {
    use std::io::Write;
    let tmp = unique_tmp_path(tmp_dir, "write");
    let result = (|| {
        let mut f = crate::files::create_new_file(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.ctx(|| format!("writing {}", path.display()))?;
    if durable {
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}
