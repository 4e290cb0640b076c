//! Where images come from and go to: an [`ImageSource`] and an [`ImageDestination`] in, an
//! image copied between them by the one generic [`copy_image`] out.
//!
//! The local store, a remote repository and the archive formats each implement these traits;
//! `pull`, `push`, `save`, `load` and `copy` are all `copy_image` with different ends
//! (the shape of containers/image `types.ImageSource` / `copy.Image`).
//!
//! # Call order
//!
//! `copy_image` calls, in this order:
//!
//! 1. `src.root_manifest()` once: the manifest or index the source's reference names.
//! 2. For an index: pick the manifests to copy (one, for the wanted platform, or all with
//!    [`CopyOptions::all`]) and `src.manifest(desc)` for each. A child that is an index
//!    itself is refused (nesting is one level deep).
//! 3. For each manifest, `src.blob(config)` read into memory (at most
//!    [`limits::MAX_CONFIG`] bytes, digest checked). Every manifest, index and config is
//!    held to [`crate::limits`] here (layers, entries, history, annotations, sizes), before
//!    any layer is asked for, so an oversized image is refused at once and leaves nothing.
//! 4. For each manifest, its config (from memory) and then its layers: `dst.has_blob(desc)`,
//!    and when that is false `src.blob(desc)` → `dst.put_blob(desc, reader)`. Blobs of one
//!    image are copied concurrently, at most [`CopyOptions::concurrency`] at a time.
//!    `put_blob` must verify the size and digest of what it received against `desc` and
//!    keep nothing on a mismatch.
//! 5. For an index copied whole: `dst.put_manifest(child)` for each child manifest.
//! 6. `dst.commit(root)` once, last: the destination stores the root manifest and names it.
//!    Nothing is visible under the destination's name before this call succeeds, so an
//!    interrupted copy leaves at most unreferenced blobs behind.
//!
//! Both traits' futures are `Send`, so an implementation may be driven from any tokio task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};
use tokio::io::AsyncRead;

use crate::digest::Digest;
use crate::limits::{self, LimitError};
use crate::manifest::{Descriptor, ManifestError, ManifestValue, Parsed};
use crate::platform::Platform;

/// A blob's bytes as they arrive.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// What can go wrong moving an image. Variants carry the facts a message needs.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what}: digest mismatch: expected {expected}, got {found}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        found: Digest,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {found}")]
    SizeMismatch {
        what: String,
        expected: u64,
        found: u64,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("no image for platform {wanted} (available: {})", available.join(", "))]
    NoMatchingPlatform {
        wanted: Platform,
        available: Vec<String>,
    },
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{message}")]
    Other {
        message: String,
        /// Whether trying again may succeed (network errors, 5xx, 429).
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl TransportError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> TransportError {
        TransportError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn other(message: impl Into<String>) -> TransportError {
        TransportError::Other {
            message: message.into(),
            retryable: false,
            source: None,
        }
    }

    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TransportError::Other {
                retryable: true,
                ..
            }
        )
    }
}

/// Something images are read from.
pub trait ImageSource: Send + Sync {
    /// A name for messages (`oci-archive:x.tar`, `docker://host/repo:tag`).
    fn describe(&self) -> String;
    /// The manifest or index the source's reference names, with its raw bytes.
    fn root_manifest(&self) -> impl Future<Output = Result<Parsed, TransportError>> + Send;
    /// A manifest named by a descriptor of an index.
    fn manifest(
        &self,
        desc: &Descriptor,
    ) -> impl Future<Output = Result<Parsed, TransportError>> + Send;
    /// A blob's bytes. The caller (the destination) verifies them.
    fn blob(
        &self,
        desc: &Descriptor,
    ) -> impl Future<Output = Result<BlobReader, TransportError>> + Send;
}

/// Something images are written to.
pub trait ImageDestination: Send + Sync {
    fn describe(&self) -> String;
    /// Whether the destination already holds this blob (then it is not copied).
    fn has_blob(
        &self,
        desc: &Descriptor,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;
    /// Stores a blob, verifying size and digest against `desc`; keeps nothing on a mismatch.
    fn put_blob(
        &self,
        desc: &Descriptor,
        reader: BlobReader,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Stores a child manifest of an index being copied whole.
    fn put_manifest(
        &self,
        manifest: &Parsed,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Stores the root manifest or index and names it; the last call of a copy.
    fn commit(&self, root: &Parsed) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Progress of a copy, for the CLI to show.
#[derive(Debug, Clone)]
pub enum CopyEvent {
    BlobSkipped(Descriptor),
    BlobStarted(Descriptor),
    /// Bytes of a blob read from the source so far (reported every 256 KiB and at the end).
    BlobProgress(Descriptor, u64),
    BlobDone(Descriptor),
}

/// A blob reader that reports how much was read through [`CopyEvent::BlobProgress`].
struct Counting {
    inner: BlobReader,
    desc: Descriptor,
    read: u64,
    reported: u64,
    report: Arc<dyn Fn(CopyEvent) + Send + Sync>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.inner.as_mut().poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &polled {
            let n = (buf.filled().len() - before) as u64;
            self.read += n;
            if self.read - self.reported >= 256 << 10 || (n == 0 && self.read != self.reported) {
                self.reported = self.read;
                (self.report)(CopyEvent::BlobProgress(self.desc.clone(), self.read));
            }
        }
        polled
    }
}

/// How [`copy_image`] chooses and moves.
#[derive(Clone)]
pub struct CopyOptions {
    /// The platform to pick from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Copy an index with all its manifests instead of picking one.
    pub all: bool,
    /// Blobs copied at once.
    pub concurrency: usize,
    pub progress: Option<Arc<dyn Fn(CopyEvent) + Send + Sync>>,
}

impl std::fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOptions")
            .field("platform", &self.platform)
            .field("all", &self.all)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platform: None,
            all: false,
            concurrency: 4,
            progress: None,
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    /// The manifest or index committed at the destination.
    pub root: Descriptor,
    /// The source's root as it named it: the index when one platform's manifest was taken
    /// from it (what Docker's `RepoDigests` name after a pull), else `root`.
    pub source_root: Descriptor,
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
}

/// Copies an image from `src` to `dst` in the order the module doc gives.
pub async fn copy_image<S: ImageSource, D: ImageDestination>(
    src: &S,
    dst: &D,
    options: &CopyOptions,
) -> Result<CopyOutcome, TransportError> {
    let root = src.root_manifest().await?;
    limits::check_manifest(&root)?;
    let source_root = root.descriptor();
    // What is held in memory at once: every manifest and config of this copy.
    let mut held = Held(root.bytes.len() as u64);
    let (root, children) = match &root.value {
        ManifestValue::Manifest(_) => (root, Vec::new()),
        ManifestValue::Index(index) if options.all => {
            let mut children = Vec::with_capacity(index.manifests.len());
            for desc in &index.manifests {
                let child = fetch_child(src, desc).await?;
                held.add(child.bytes.len(), &root)?;
                children.push(child);
            }
            (root, children)
        }
        ManifestValue::Index(index) => {
            let wanted = options.platform.clone().unwrap_or_else(Platform::host);
            let desc = select_platform(&index.manifests, &wanted)?;
            (fetch_child(src, desc).await?, Vec::new())
        }
    };
    let mut blobs: Vec<(Descriptor, Option<Arc<Vec<u8>>>)> = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for m in children.iter().chain(std::iter::once(&root)) {
        if let ManifestValue::Manifest(manifest) = &m.value {
            if listed.insert(manifest.config.digest.clone()) {
                let config = read_config(src, &manifest.config).await?;
                held.add(config.len(), &root)?;
                blobs.push((manifest.config.clone(), Some(Arc::new(config))));
            }
            for desc in &manifest.layers {
                if listed.insert(desc.digest.clone()) {
                    blobs.push((desc.clone(), None));
                }
            }
        }
    }
    let copied: Vec<bool> = stream::iter(
        blobs
            .iter()
            .map(|(desc, bytes)| copy_blob(src, dst, desc, bytes.clone(), options)),
    )
    .buffer_unordered(options.concurrency.max(1))
    .try_collect()
    .await?;
    for child in &children {
        dst.put_manifest(child).await?;
    }
    dst.commit(&root).await?;
    let blobs_copied = copied.iter().filter(|c| **c).count();
    Ok(CopyOutcome {
        root: root.descriptor(),
        source_root,
        blobs_copied,
        blobs_skipped: copied.len() - blobs_copied,
    })
}

/// Bytes of manifests and configs held by one copy, capped at
/// [`limits::MAX_HELD_METADATA`].
struct Held(u64);

impl Held {
    fn add(&mut self, n: usize, root: &Parsed) -> Result<(), LimitError> {
        self.0 += n as u64;
        if self.0 > limits::MAX_HELD_METADATA {
            return Err(LimitError::TooLarge {
                what: format!("the manifests and configs of {}", root.digest),
                limit: limits::MAX_HELD_METADATA,
            });
        }
        Ok(())
    }
}

async fn fetch_child<S: ImageSource>(src: &S, desc: &Descriptor) -> Result<Parsed, TransportError> {
    let child = src.manifest(desc).await?;
    if child.digest != desc.digest {
        return Err(TransportError::DigestMismatch {
            what: format!("manifest {}", desc.digest),
            expected: desc.digest.clone(),
            found: child.digest,
        });
    }
    if let ManifestValue::Index(_) = child.value {
        return Err(TransportError::other(format!(
            "index entry {} is an index itself: nested indexes are not supported",
            desc.digest
        )));
    }
    limits::check_manifest(&child)?;
    Ok(child)
}

/// One platform's manifest as the source names it (through its index when the root is one),
/// held to the limits [`copy_image`] holds it to; no blob is read. Returns the source's root
/// beside it.
pub async fn platform_manifest<S: ImageSource>(
    src: &S,
    wanted: &Platform,
) -> Result<(Descriptor, Parsed), TransportError> {
    let root = src.root_manifest().await?;
    limits::check_manifest(&root)?;
    let source_root = root.descriptor();
    let manifest = match &root.value {
        ManifestValue::Manifest(_) => root,
        ManifestValue::Index(index) => {
            fetch_child(src, select_platform(&index.manifests, wanted)?).await?
        }
    };
    Ok((source_root, manifest))
}

/// A config's bytes, read whole (it is small, and held to [`limits::MAX_CONFIG`]), checked
/// against its descriptor, with its counts held to [`limits::check_config`].
pub async fn read_config<S: ImageSource>(
    src: &S,
    desc: &Descriptor,
) -> Result<Vec<u8>, TransportError> {
    use tokio::io::AsyncReadExt;
    let what = format!("config {}", desc.digest);
    let mut bytes = Vec::new();
    src.blob(desc)
        .await?
        .take(limits::MAX_CONFIG + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| TransportError::io(format!("reading {what}"), e))?;
    if bytes.len() as u64 > limits::MAX_CONFIG {
        return Err(LimitError::TooLarge {
            what,
            limit: limits::MAX_CONFIG,
        }
        .into());
    }
    if bytes.len() as u64 != desc.size {
        return Err(TransportError::SizeMismatch {
            what,
            expected: desc.size,
            found: bytes.len() as u64,
        });
    }
    let found = Digest::of(&bytes);
    if found != desc.digest {
        return Err(TransportError::DigestMismatch {
            what,
            expected: desc.digest.clone(),
            found,
        });
    }
    // Only the counts are read: any JSON object is accepted here (an artifact's config
    // need not be an image config); a config that is not one fails where it is used.
    #[derive(serde::Deserialize)]
    struct Counts {
        #[serde(default)]
        rootfs: Option<RootFsCounts>,
        #[serde(default)]
        history: Option<Vec<serde::de::IgnoredAny>>,
    }
    #[derive(serde::Deserialize)]
    struct RootFsCounts {
        #[serde(default)]
        diff_ids: Option<Vec<serde::de::IgnoredAny>>,
    }
    if let Ok(c) = serde_json::from_slice::<Counts>(&bytes) {
        let layers = c.rootfs.and_then(|r| r.diff_ids).map_or(0, |d| d.len());
        limits::check_count(&what, "layers", layers, limits::MAX_LAYERS)?;
        let history = c.history.map_or(0, |h| h.len());
        limits::check_count(&what, "history entries", history, limits::MAX_HISTORY)?;
    }
    Ok(bytes)
}

/// Copies one blob; `bytes` when it was read already (a config).
async fn copy_blob<S: ImageSource, D: ImageDestination>(
    src: &S,
    dst: &D,
    desc: &Descriptor,
    bytes: Option<Arc<Vec<u8>>>,
    options: &CopyOptions,
) -> Result<bool, TransportError> {
    let report = |e: CopyEvent| {
        if let Some(p) = &options.progress {
            p(e)
        }
    };
    if dst.has_blob(desc).await? {
        report(CopyEvent::BlobSkipped(desc.clone()));
        return Ok(false);
    }
    report(CopyEvent::BlobStarted(desc.clone()));
    let mut reader: BlobReader = match bytes {
        Some(b) => Box::pin(std::io::Cursor::new(b.to_vec())),
        None => src.blob(desc).await?,
    };
    if let Some(p) = &options.progress {
        reader = Box::pin(Counting {
            inner: reader,
            desc: desc.clone(),
            read: 0,
            reported: 0,
            report: p.clone(),
        });
    }
    dst.put_blob(desc, reader).await?;
    report(CopyEvent::BlobDone(desc.clone()));
    Ok(true)
}

/// Picks the manifest for `wanted` from an index's descriptors: the first whose platform
/// matches, preferring an exact variant match.
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, TransportError> {
    let with_platform = || {
        manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(|p| (d, p.to_platform())))
    };
    with_platform()
        .find(|(_, p)| p == wanted)
        .or_else(|| with_platform().find(|(_, p)| wanted.matches(p)))
        .map(|(d, _)| d)
        .ok_or_else(|| TransportError::NoMatchingPlatform {
            wanted: wanted.clone(),
            available: with_platform().map(|(_, p)| p.to_string()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::manifest::{ImageIndex, ImageManifest, to_canonical_json};
    use crate::media_type;

    /// Blobs and manifests in memory; counts the blobs asked for.
    #[derive(Default)]
    struct Memory {
        root: Option<Parsed>,
        blobs: HashMap<Digest, Vec<u8>>,
        asked: Mutex<usize>,
        stored: Mutex<usize>,
    }

    impl Memory {
        fn add(&mut self, bytes: Vec<u8>) -> Digest {
            let d = Digest::of(&bytes);
            self.blobs.insert(d.clone(), bytes);
            d
        }
    }

    impl ImageSource for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        async fn root_manifest(&self) -> Result<Parsed, TransportError> {
            Ok(self.root.clone().unwrap())
        }
        async fn manifest(&self, desc: &Descriptor) -> Result<Parsed, TransportError> {
            Ok(Parsed::parse(self.blobs[&desc.digest].clone(), None)?)
        }
        async fn blob(&self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
            *self.asked.lock().unwrap() += 1;
            Ok(Box::pin(std::io::Cursor::new(
                self.blobs[&desc.digest].clone(),
            )))
        }
    }

    impl ImageDestination for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        async fn has_blob(&self, _: &Descriptor) -> Result<bool, TransportError> {
            Ok(false)
        }
        async fn put_blob(&self, _: &Descriptor, _: BlobReader) -> Result<(), TransportError> {
            *self.stored.lock().unwrap() += 1;
            Ok(())
        }
        async fn put_manifest(&self, _: &Parsed) -> Result<(), TransportError> {
            Ok(())
        }
        async fn commit(&self, _: &Parsed) -> Result<(), TransportError> {
            *self.stored.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// An image of `layers` layers (one blob repeated) whose config has `history` entries.
    fn image(src: &mut Memory, layers: usize, history: usize) -> Parsed {
        let layer = src.add(b"layer".to_vec());
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": vec![layer.to_string(); layers]},
            "history": vec![serde_json::json!({}); history],
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config_desc = Descriptor::of(media_type::OCI_CONFIG, &config);
        src.add(config);
        let config = config_desc;
        let layer = Descriptor::new(media_type::OCI_LAYER_TAR, layer, 5);
        Parsed::from_manifest(&ImageManifest::new_oci(config, vec![layer; layers]))
    }

    #[test]
    fn an_image_within_the_limits_is_copied() {
        let mut src = Memory::default();
        src.root = Some(image(&mut src, limits::MAX_LAYERS, 10));
        let dst = Memory::default();
        block_on(copy_image(&src, &dst, &CopyOptions::default())).unwrap();
        assert_eq!(*dst.stored.lock().unwrap(), 3, "config, layer, commit");
        assert_eq!(*src.asked.lock().unwrap(), 2, "the config is read once");
    }

    #[test]
    fn too_many_layers_are_refused_before_any_blob_is_read() {
        let mut src = Memory::default();
        src.root = Some(image(&mut src, 20_000, 0));
        let dst = Memory::default();
        let e = block_on(copy_image(&src, &dst, &CopyOptions::default())).unwrap_err();
        assert!(e.to_string().contains("20000 layers"), "{e}");
        assert_eq!(*src.asked.lock().unwrap(), 0);
        assert_eq!(*dst.stored.lock().unwrap(), 0);
    }

    #[test]
    fn a_config_with_too_much_history_is_refused_before_any_layer() {
        let mut src = Memory::default();
        src.root = Some(image(&mut src, 1, limits::MAX_HISTORY + 1));
        let dst = Memory::default();
        let e = block_on(copy_image(&src, &dst, &CopyOptions::default())).unwrap_err();
        assert!(e.to_string().contains("history entries"), "{e}");
        assert_eq!(*src.asked.lock().unwrap(), 1, "only the config");
        assert_eq!(*dst.stored.lock().unwrap(), 0);
    }

    #[test]
    fn nested_indexes_are_refused() {
        let mut src = Memory::default();
        let inner = to_canonical_json(&ImageIndex::default());
        let inner_desc = Descriptor::of(media_type::OCI_INDEX, &inner);
        src.add(inner);
        let inner = inner_desc;
        let mut outer = ImageIndex::default();
        outer.manifests.push(inner);
        src.root = Some(Parsed::parse(to_canonical_json(&outer), None).unwrap());
        let dst = Memory::default();
        let options = CopyOptions {
            all: true,
            ..Default::default()
        };
        let e = block_on(copy_image(&src, &dst, &options)).unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
    }
}
