//! The local store as an [`ImageSource`] and an [`ImageDestination`] (oci/transport.rs gives
//! the call order). Blob bytes are verified by [`crate::BlobWriter`] as they arrive; `commit`
//! unpacks the snapshots of the committed image and then names it, so a named image is
//! always ready to run.
//!
//! The adapters do their file I/O inline in the async functions: writes are buffered and
//! the CLI drives them on a multi-threaded runtime, so no other task starves meanwhile.

use std::path::PathBuf;
use std::sync::Arc;

use berth_oci::{
    BlobReader, Descriptor, Digest, ImageDestination, ImageSource, Parsed, Reference,
    TransportError,
};
use tokio::io::AsyncReadExt;

use crate::blobs::Expect;
use crate::error::StoreError;
use crate::layout::Store;

/// Maps store errors onto the transport's vocabulary.
pub fn to_transport(e: StoreError) -> TransportError {
    match e {
        StoreError::DigestMismatch { expected, found } => TransportError::DigestMismatch {
            what: format!("blob {expected}"),
            expected,
            found,
        },
        StoreError::SizeMismatch {
            digest,
            expected,
            found,
        } => TransportError::SizeMismatch {
            what: format!("blob {digest}"),
            expected,
            found,
        },
        StoreError::BlobMissing(d) => TransportError::NotFound {
            what: format!("blob {d}"),
        },
        // The store error is the source, so the chain prints it once.
        other => TransportError::Other {
            message: "local store".into(),
            retryable: false,
            source: Some(Box::new(other)),
        },
    }
}

/// Reads one image out of the store.
#[derive(Debug, Clone)]
pub struct StoreSource {
    store: Arc<Store>,
    root: Descriptor,
}

impl StoreSource {
    pub fn new(store: Arc<Store>, root: Descriptor) -> StoreSource {
        StoreSource { store, root }
    }
}

impl ImageSource for StoreSource {
    fn describe(&self) -> String {
        format!("local store image {}", self.root.digest)
    }

    async fn root_manifest(&self) -> Result<Parsed, TransportError> {
        self.store.read_manifest(&self.root).map_err(to_transport)
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Parsed, TransportError> {
        self.store.read_manifest(desc).map_err(to_transport)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let file = self.store.open_blob(&desc.digest).map_err(to_transport)?;
        Ok(Box::pin(tokio::fs::File::from_std(file)))
    }
}

/// Writes an image into the store and names it (or keeps it unnamed).
///
/// A layer is unpacked while it arrives: its bytes go to the blob file and, through a
/// channel, to the unpacker on a blocking thread, into a directory under `tmp/`. Snapshots
/// are named by chain-id, which needs the config, so [`ImageDestination::commit`] renames
/// each such directory into `snapshots/<chain-id>` once the image is known and the
/// unpacked diff-id is the config's. Any layer that could not be unpacked early (the
/// unpacker failed, the diff-id differs) is unpacked from its verified blob there, as
/// before, so errors are reported the same way.
#[derive(Debug, Clone)]
pub struct StoreDestination {
    store: Arc<Store>,
    names: Vec<Reference>,
    /// Layers unpacked as they arrived: blob digest → (directory, diff-id).
    early: Arc<std::sync::Mutex<std::collections::HashMap<Digest, (PathBuf, Digest)>>>,
}

impl StoreDestination {
    pub fn new(store: Arc<Store>, names: Vec<Reference>) -> StoreDestination {
        StoreDestination {
            store,
            names,
            early: Default::default(),
        }
    }

    /// The directories of layers unpacked early but not (yet) used: removed.
    fn drop_early(&self) {
        for (_, (dir, _)) in self.early.lock().expect("no panics").drain() {
            let _ = crate::fsutil::remove_all(&dir);
        }
    }
}

/// The blocking end of the channel a layer's bytes reach the unpacker through.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::sync::Arc<Vec<u8>>>,
    chunk: std::sync::Arc<Vec<u8>>,
    at: usize,
    /// Used-up chunks nobody else holds go back to the downloader, whose next chunks reuse
    /// them (fresh 256 KiB buffers each cost the kernel 64 page faults and their zeroing).
    spent: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let chunk = std::io::BufRead::fill_buf(self)?;
            let n = out.len().min(chunk.len());
            out[..n].copy_from_slice(&chunk[..n]);
            n
        };
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

/// The chunks as they came, so the decompressor reads them without another copy.
impl std::io::BufRead for ChannelReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    let old = std::mem::replace(&mut self.chunk, c);
                    self.at = 0;
                    if let Ok(mut buf) = Arc::try_unwrap(old) {
                        buf.clear();
                        let _ = self.spent.try_send(buf);
                    }
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.chunk.len());
    }
}

impl ImageDestination for StoreDestination {
    fn describe(&self) -> String {
        format!("local store at {}", self.store.root().display())
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self.store.has_blob(&desc.digest))
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        mut reader: BlobReader,
    ) -> Result<(), TransportError> {
        let mut writer = self.store.blob_writer().map_err(to_transport)?;
        // A layer also goes to the unpacker as it arrives.
        let mut early = None;
        let (spent, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(32);
        if let berth_oci::media_type::Kind::Layer(compression) = desc.kind() {
            let dir = crate::layout::unique_tmp_path(&self.store.tmp_dir(), "early");
            if crate::files::create_dir_mode(&dir, crate::files::TREE_ROOT).is_ok() {
                let (tx, rx) = tokio::sync::mpsc::channel::<std::sync::Arc<Vec<u8>>>(16);
                let into = dir.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let reader = ChannelReader {
                        rx,
                        chunk: Default::default(),
                        at: 0,
                        spent,
                    };
                    // Both digests are checked (the blob's on commit, the diff-id's before
                    // the directory becomes a snapshot), so gzip's CRC is skipped.
                    let reader = crate::layer::decompress_digest_checked(reader, compression)
                        .map_err(|e| StoreError::io("decompressing a layer", e))?;
                    crate::layer::unpack::unpack(reader, &into, &Default::default())
                });
                early = Some((Some(tx), task, dir));
            }
        }
        const CHUNK: usize = 1024 * 1024;
        loop {
            // Each chunk is read straight into its own buffer (no zeroing, no copy after)
            // and filled to 1 MiB (or the end): fewer, fuller chunks measured faster than
            // handing on whatever had arrived, and the unpacker is still at most 1 MiB
            // behind the network.
            let mut chunk = spare
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            while chunk.len() < CHUNK {
                let k = reader
                    .read_buf(&mut chunk)
                    .await
                    .map_err(|e| TransportError::io(format!("reading blob {}", desc.digest), e))?;
                if k == 0 {
                    break;
                }
            }
            let n = chunk.len();
            if n == 0 {
                break;
            }
            if writer.len() + n as u64 > desc.size {
                return Err(TransportError::SizeMismatch {
                    what: format!("blob {}", desc.digest),
                    expected: desc.size,
                    found: writer.len() + n as u64,
                });
            }
            // Shared by the blob file's hasher and the unpacker.
            let chunk = Arc::new(chunk);
            writer.write_shared(&chunk).map_err(|e| {
                to_transport(StoreError::io(format!("writing blob {}", desc.digest), e))
            })?;
            if let Some((tx @ Some(_), _, _)) = &mut early
                && tx
                    .as_ref()
                    .expect("matched Some")
                    .send(chunk)
                    .await
                    .is_err()
            {
                // The unpacker stopped (the tar ended, or it failed): the blob goes on.
                *tx = None;
            }
        }
        let committed = writer
            .commit(Expect::Descriptor(desc))
            .map_err(to_transport);
        if let Some((tx, task, dir)) = early {
            drop(tx);
            match (task.await, &committed) {
                (Ok(Ok(report)), Ok(_)) => {
                    self.early
                        .lock()
                        .expect("no panics")
                        .insert(desc.digest.clone(), (dir, report.diff_id));
                }
                _ => {
                    let _ = crate::fsutil::remove_all(&dir);
                }
            }
        }
        committed?;
        Ok(())
    }

    async fn put_manifest(&self, manifest: &Parsed) -> Result<(), TransportError> {
        self.store
            .put_bytes(&manifest.media_type, &manifest.bytes)
            .map_err(to_transport)?;
        Ok(())
    }

    async fn commit(&self, root: &Parsed) -> Result<(), TransportError> {
        let desc = self
            .store
            .put_bytes(&root.media_type, &root.bytes)
            .map_err(to_transport)?;
        let image = self.store.load_image(&desc).map_err(to_transport)?;
        let chains = berth_oci::config::chain_ids(&image.config.rootfs.diff_ids);
        {
            let mut early = self.early.lock().expect("no panics");
            for ((layer, diff_id), chain) in image
                .manifest_value
                .layers
                .iter()
                .zip(&image.config.rootfs.diff_ids)
                .zip(&chains)
            {
                let target = self.store.snapshot_path(chain);
                if target.is_dir() {
                    continue;
                }
                if let Some((dir, unpacked)) = early.remove(&layer.digest) {
                    if unpacked == *diff_id && std::fs::rename(&dir, &target).is_ok() {
                        continue;
                    }
                    let _ = crate::fsutil::remove_all(&dir);
                }
            }
        }
        self.drop_early();
        crate::layout::sync_dir(&self.store.snapshots_dir()).map_err(to_transport)?;
        self.store.ensure_snapshots(&image).map_err(to_transport)?;
        if self.names.is_empty() {
            self.store.add_untagged(&desc).map_err(to_transport)?;
        }
        for name in &self.names {
            self.store.set_tag(name, &desc).map_err(to_transport)?;
        }
        Ok(())
    }
}
