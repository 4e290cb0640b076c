//! `cache/<key hex>`: the build cache. A record says what a build step produced: a layer
//! (its diff-id, which is also the digest of the uncompressed blob in `blobs/`, and the
//! chain-id of its snapshot) or nothing (a step whose diff was empty). The key is the
//! builder's (DESIGN.md, "Cache keys"); the store only keeps records, keeps what they name
//! alive through gc, and drops them on `system prune --build-cache`.
//!
//! Also here: [`WorkDir`], the scratch directories a build step runs in (an overlay's upper
//! and work directories), and [`Store::commit_upper`], which turns an upper directory into a
//! layer blob and a snapshot in one pass.

use std::path::{Path, PathBuf};

use berth_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::layer::pack::{PackOptions, pack};

use crate::layout::{Store, atomic_write, unique_tmp_path};
use crate::{BlobWriter, Expect};

const CHUNK: usize = 1 << 20;

/// A `Write` that hands 1 MiB chunks to another thread.
struct ChunkSender {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> std::io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| std::io::Error::other("the layer writer stopped"))
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a cached step made, and what its key was made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// `None`: the step changed no file.
    pub layer: Option<CachedLayer>,
    /// Seconds since the epoch when the step ran (the history's `created`, so a fully
    /// cached rebuild gives the same image).
    #[serde(default)]
    pub created: u64,
    /// Seconds since the epoch when the record was last used by a build (set by
    /// [`Store::cache_store`]).
    #[serde(default)]
    pub used: u64,
    /// The key the step chained on (the builder's), to find the records of the other
    /// builds of a step when its key misses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    /// Where the step sits (the builder's stage and instruction text).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site: String,
    /// What the key was made of, by name (the builder's; values are digests or public
    /// text). Kept beside the record (`cache/<key hex>.inputs`), read only to explain a
    /// miss ([`Store::cache_inputs`]): a COPY of thousands of files has as many inputs.
    #[serde(skip)]
    pub inputs: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub diff_id: Digest,
    pub size: u64,
    pub chain_id: Digest,
}

/// `RUN --mount=type=cache,sharing=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// A scratch directory under `tmp/` with `upper/` and `work/` inside; removed on drop (and
/// by the next start of berth if the process dies first).
#[derive(Debug)]
pub struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    pub fn upper(&self) -> PathBuf {
        self.path.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.path.join("work")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = crate::fsutil::remove_all(&self.path);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.root().join("cache").join(key.hex())
    }

    fn inputs_path(&self, key: &Digest) -> PathBuf {
        self.root()
            .join("cache")
            .join(format!("{}.inputs", key.hex()))
    }

    /// What the key of the record `key` was made of (empty when it was not kept).
    pub fn cache_inputs(&self, key: &Digest) -> std::collections::BTreeMap<String, String> {
        std::fs::read(self.inputs_path(key))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The record for `key`, if there is one and what it names is still in the store.
    pub fn cache_lookup(&self, key: &Digest) -> Option<CacheRecord> {
        let bytes = std::fs::read(self.cache_path(key)).ok()?;
        let record: CacheRecord = serde_json::from_slice(&bytes).ok()?;
        match &record.layer {
            Some(l) if !self.has_blob(&l.diff_id) => None,
            _ => Some(record),
        }
    }

    /// Records what the step with `key` made (its last use: now), and its inputs.
    pub fn cache_store(&self, key: &Digest, record: &CacheRecord) -> Result<()> {
        let record = CacheRecord {
            used: now(),
            ..record.clone()
        };
        if !record.inputs.is_empty() {
            atomic_write(
                &self.inputs_path(key),
                &serde_json::to_vec(&record.inputs).expect("plain data"),
                &self.tmp_dir(),
            )?;
        }
        atomic_write(
            &self.cache_path(key),
            &serde_json::to_vec(&record).expect("plain data"),
            &self.tmp_dir(),
        )
    }

    /// Every record, with its key (unreadable records are skipped: they match nothing).
    pub fn cache_records(&self) -> Result<Vec<(String, CacheRecord)>> {
        let dir = self.root().join("cache");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))? {
            let entry = entry.ctx(|| "reading cache".into())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".inputs") {
                continue;
            }
            if let Ok(bytes) = std::fs::read(entry.path())
                && let Ok(record) = serde_json::from_slice(&bytes)
            {
                out.push((name, record));
            }
        }
        Ok(out)
    }

    /// Removes the records last used more than `older_than` seconds ago (all with `None`);
    /// returns how many. What they named goes at the next gc unless an image needs it.
    pub fn cache_prune(&self, older_than: Option<u64>) -> Result<usize> {
        let cutoff = older_than.map(|s| now().saturating_sub(s));
        let mut removed = 0;
        for (name, record) in self.cache_records()? {
            if cutoff.is_none_or(|c| record.used < c) {
                let path = self.root().join("cache").join(&name);
                std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
                let _ = std::fs::remove_file(path.with_extension("inputs"));
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn cache_mount_dir(&self, id: &str) -> PathBuf {
        self.root()
            .join("cache-mounts")
            .join(Digest::of(id.as_bytes()).hex())
    }

    /// Whether the cache mount `id` has been made.
    pub fn has_cache_mount(&self, id: &str) -> bool {
        self.cache_mount_dir(id).join("data").is_dir()
    }

    /// Packs the cache mount `id` into a blob: a deterministic tar (the same files give the
    /// same bytes), gzip-compressed. Returns the blob's digest and size and the tar's size;
    /// `None` when there is no such mount. Holds the mount's lock shared while it reads, so
    /// no `locked` or `private` step writes meanwhile.
    pub fn pack_cache_mount(&self, id: &str) -> Result<Option<(Digest, u64, u64)>> {
        let dir = self.cache_mount_dir(id);
        let data = dir.join("data");
        if !data.is_dir() {
            return Ok(None);
        }
        let _lock = crate::lock::FileLock::shared(&dir.join("lock"))?;
        struct Counting<W> {
            inner: W,
            n: u64,
        }
        impl<W: std::io::Write> std::io::Write for Counting<W> {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let n = self.inner.write(b)?;
                self.n += n as u64;
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.inner.flush()
            }
        }
        let writer: BlobWriter = self.blob_writer()?;
        let gz = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
        let mut counting = Counting { inner: gz, n: 0 };
        pack(&data, &mut counting, &PackOptions::default())?;
        let tar_size = counting.n;
        let writer = counting
            .inner
            .finish()
            .ctx(|| format!("packing cache mount {id:?}"))?;
        let (digest, size) = writer.commit(Expect::Any)?;
        Ok(Some((digest, size, tar_size)))
    }

    /// The directory of a `RUN --mount=type=cache` with this id (`cache-mounts/<sha256 of
    /// id>/data`), made with `mode`, `uid` and `gid` when it is new, holding the files of
    /// `seed` (a gzip-compressed tar blob in the store, unpacked as a layer is: nothing lands
    /// outside) when one is given: it appears whole or not at all. The caller holds the
    /// returned lock while the step runs: shared for `sharing=shared`, exclusive for
    /// `locked` (waiting for the others) and `private`, where a busy cache gives `None` and
    /// the caller uses a fresh directory, dropped after the step (BuildKit keeps such extra
    /// copies; berth keeps one per id).
    pub fn cache_mount(
        &self,
        id: &str,
        owner: (u32, u32, u32),
        sharing: CacheSharing,
        seed: Option<&Digest>,
    ) -> Result<Option<(PathBuf, Option<crate::lock::FileLock>)>> {
        let dir = self.cache_mount_dir(id);
        crate::files::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let data = dir.join("data");
        if !data.is_dir() {
            let tmp = unique_tmp_path(&dir, "new");
            crate::files::create_dir(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            if let Some(blob) = seed {
                let file = std::io::BufReader::new(self.open_blob(blob)?);
                let tar = crate::layer::decompress(file, berth_oci::media_type::Compression::Gzip)
                    .ctx(|| format!("reading cache mount {id:?}"))?;
                // Ownership is kept (a step may run as another user); device nodes are not
                // made: a remote cache's files are no image's.
                let options = crate::layer::unpack::UnpackOptions {
                    devices: false,
                    ..Default::default()
                };
                if let Err(e) = crate::layer::unpack::unpack(tar, &tmp, &options) {
                    let _ = crate::fsutil::remove_all(&tmp);
                    return Err(e);
                }
            }
            let (mode, uid, gid) = owner;
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))
                .ctx(|| format!("chown {}", tmp.display()))?;
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .ctx(|| format!("chmod {}", tmp.display()))?;
            if std::fs::rename(&tmp, &data).is_err() {
                let _ = std::fs::remove_dir(&tmp); // another build made it first
            }
        }
        let lock_path = dir.join("lock");
        let lock = match sharing {
            // Shared users hold the lock shared: they run together, and `locked` users,
            // `private` users and the pruner wait for them (or, `private`, go elsewhere).
            CacheSharing::Shared => Some(crate::lock::FileLock::shared(&lock_path)?),
            CacheSharing::Locked => Some(crate::lock::FileLock::exclusive(&lock_path)?),
            CacheSharing::Private => match crate::lock::FileLock::try_exclusive(&lock_path)? {
                Some(l) => Some(l),
                None => return Ok(None),
            },
        };
        Ok(Some((data, lock)))
    }

    /// Removes every cache mount nobody is using; returns how many.
    pub fn cache_mounts_prune(&self) -> Result<usize> {
        let dir = self.root().join("cache-mounts");
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let lock_path = entry.path().join("lock");
            if let Some(_lock) = crate::lock::FileLock::try_exclusive(&lock_path)? {
                crate::fsutil::remove_all(&entry.path().join("data"))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A fresh scratch directory for a build step: `upper/` (the root of the step's tree, so
    /// [`crate::files::TREE_ROOT`]) and overlay's `work/`.
    pub fn work_dir(&self, what: &str) -> Result<WorkDir> {
        let path = unique_tmp_path(&self.tmp_dir(), what);
        crate::files::create_dir(&path).ctx(|| format!("creating {}", path.display()))?;
        for (sub, mode) in [
            ("upper", crate::files::TREE_ROOT),
            ("work", crate::files::PRIVATE_DIR),
        ] {
            let p = path.join(sub);
            crate::files::create_dir_mode(&p, mode).ctx(|| format!("creating {}", p.display()))?;
        }
        Ok(WorkDir { path })
    }

    /// Makes a layer of an overlay upper directory: packs it (overlay whiteouts as OCI
    /// whiteouts) straight into a blob writer, so the tar is hashed as it is written (the
    /// diff-id, also the blob's digest: built layers stay uncompressed in the store), then
    /// renames the directory into `snapshots/<chain-id>`. An empty directory makes a layer
    /// too, of an empty tar (diff-id `sha256:5f70bf18…`), as BuildKit records a step that
    /// changed nothing (a RUN, or a WORKDIR that exists).
    pub fn commit_upper(
        &self,
        upper: &Path,
        parent_chain: Option<&Digest>,
        clamp_mtime: Option<u64>,
    ) -> Result<CachedLayer> {
        let writer: BlobWriter = self.blob_writer()?;
        // Two threads: this one walks the directory, reads the files and builds the tar;
        // the other hashes and writes it (bounded: 4 chunks of 1 MiB in flight).
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let packed = std::thread::scope(|scope| {
            let mut writer = writer;
            let sink = scope.spawn(move || -> std::io::Result<BlobWriter> {
                use std::io::Write;
                for chunk in rx {
                    writer.write_all(&chunk)?;
                }
                Ok(writer)
            });
            let mut out = ChunkSender {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let result = pack(
                upper,
                &mut out,
                &PackOptions {
                    overlay_whiteouts: true,
                    clamp_mtime,
                },
            )
            .and_then(|()| out.finish().ctx(|| "writing a layer".into()));
            drop(out);
            let written = sink.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            let writer = written.ctx(|| "writing a layer".into());
            // When the writer failed (a full disk), its error is the cause; the packer only
            // saw the channel close.
            writer.and_then(|w| result.map(|()| w))
        });
        let (diff_id, size) = packed?.commit(Expect::Any)?;
        let chain_id = match parent_chain {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        self.place_snapshot(upper, &chain_id)?;
        Ok(CachedLayer {
            diff_id,
            size,
            chain_id,
        })
    }

    /// Makes sure the snapshot for a cached layer on top of `parent_chain` exists (gc may
    /// have dropped it while keeping the blob, or the layer was made on another parent, as
    /// `COPY --link` layers are); unpacks it from the blob when missing. Returns the layer
    /// with its chain-id on this parent.
    pub fn ensure_cached_snapshot(
        &self,
        layer: &CachedLayer,
        parent_chain: Option<&Digest>,
    ) -> Result<CachedLayer> {
        let chain_id = match parent_chain {
            None => layer.diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {}", layer.diff_id).as_bytes()),
        };
        let layer = CachedLayer {
            chain_id,
            ..layer.clone()
        };
        let dir = self.snapshot_path(&layer.chain_id);
        if !dir.is_dir() {
            let desc = berth_oci::Descriptor::new(
                berth_oci::media_type::OCI_LAYER_TAR,
                layer.diff_id.clone(),
                layer.size,
            );
            self.unpack_snapshot(
                &desc,
                &layer.diff_id,
                &layer.chain_id,
                &crate::layer::unpack::UnpackOptions::default(),
            )?;
        }
        Ok(layer)
    }
}
