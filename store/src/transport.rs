//! The local store as an [`ImageSource`] and an [`ImageDestination`] (oci/transport.rs gives
//! the call order). Blob bytes are verified by [`crate::BlobWriter`] as they arrive; `commit`
//! unpacks the snapshots of the committed image and then names it, so a named image is
//! always ready to run.
//!
//! The adapters do their file I/O inline in the async functions: writes are buffered and
//! the CLI drives them on a multi-threaded runtime, so no other task starves meanwhile.

use std::io::Write;
use std::sync::Arc;

use berth_oci::{
    BlobReader, Descriptor, ImageDestination, ImageSource, Parsed, Reference, TransportError,
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
#[derive(Debug, Clone)]
pub struct StoreDestination {
    store: Arc<Store>,
    names: Vec<Reference>,
}

impl StoreDestination {
    pub fn new(store: Arc<Store>, names: Vec<Reference>) -> StoreDestination {
        StoreDestination { store, names }
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
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| TransportError::io(format!("reading blob {}", desc.digest), e))?;
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
            writer.write_all(&buf[..n]).map_err(|e| {
                to_transport(StoreError::io(format!("writing blob {}", desc.digest), e))
            })?;
        }
        writer
            .commit(Expect::Descriptor(desc))
            .map_err(to_transport)?;
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
