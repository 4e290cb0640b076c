//! Images to and from registries: the registry client wired to the store through
//! `copy_image` (DESIGN.md: `registry-client` and `store` never meet but here), with the
//! progress lines `docker pull` and `docker push` print (a bar per blob on a terminal).

use std::io::Write;
use std::sync::Arc;

use berth_oci::Reference;
use berth_oci::transport::{CopyEvent, CopyOptions, copy_image};
use berth_registry_client::{Options, Remote};
use berth_store::{Store, StoreDestination, StoreSource};

/// The registry and repository a reference names, connected with saved credentials. For
/// Docker Hub images, the configured mirrors are tried first.
pub async fn remote(reference: &Reference, options: &Options) -> anyhow::Result<Remote> {
    let at = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    if reference.domain() == "docker.io" {
        for mirror in &options.mirrors {
            if let Ok(r) = berth_registry_client::connect(mirror, options).await
                && r.ping().await.is_ok()
            {
                return Ok(Remote::new(r, reference.path(), &at));
            }
        }
    }
    let registry = berth_registry_client::connect(reference.domain(), options).await?;
    Ok(Remote::new(registry, reference.path(), &at))
}

/// An async runtime of its own for code that calls into registries from plain threads (the
/// builder's stages).
pub fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the async runtime"),
    )
}

/// The blobs of any transport source, read from a plain thread for the builder (an imported
/// cache's, a base image's left in its registry).
pub struct SyncBlobs<S> {
    pub src: S,
    pub rt: Arc<tokio::runtime::Runtime>,
}

impl<S: berth_oci::transport::ImageSource + 'static> berth_builder::cache::CacheSource
    for SyncBlobs<S>
{
    fn describe(&self) -> String {
        self.src.describe()
    }

    fn blob(
        &self,
        desc: &berth_oci::Descriptor,
        out: &mut dyn std::io::Write,
    ) -> Result<(), berth_builder::cache::BlobError> {
        use tokio::io::AsyncReadExt;
        self.rt.block_on(async {
            let mut reader = self.src.blob(desc).await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                out.write_all(&buf[..n])?;
            }
        })
    }
}

fn short(d: &berth_oci::Digest) -> &str {
    &d.hex()[..12]
}

fn printer(quiet: bool) -> Option<Arc<dyn Fn(CopyEvent) + Send + Sync>> {
    if quiet {
        return None;
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return Some(Arc::new(BlobBars::default().into_printer()));
    }
    Some(Arc::new(|e: CopyEvent| match e {
        CopyEvent::BlobSkipped(d) => errln!("{}: Already exists", short(&d.digest)),
        CopyEvent::BlobStarted(d) => errln!(
            "{}: Copying ({})",
            short(&d.digest),
            crate::output::human_size(d.size)
        ),
        CopyEvent::BlobProgress(..) => {}
        CopyEvent::BlobDone(d) => errln!("{}: Done", short(&d.digest)),
    }))
}

/// On a terminal: a bar per blob with bytes done, total and rate (indicatif), left on
/// screen as `Done` with the blob's size when it ends.
#[derive(Default)]
struct BlobBars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<berth_oci::Digest, indicatif::ProgressBar>>,
}

impl BlobBars {
    fn into_printer(self) -> impl Fn(CopyEvent) + Send + Sync {
        let style = |t: &str| {
            indicatif::ProgressStyle::with_template(t)
                .expect("a valid template")
                .progress_chars("=> ")
        };
        move |e: CopyEvent| {
            let mut bars = self.bars.lock().expect("no panics");
            match e {
                CopyEvent::BlobSkipped(d) => {
                    let bar = self.multi.add(indicatif::ProgressBar::new(d.size));
                    bar.set_style(style("{prefix}: Already exists"));
                    bar.set_prefix(short(&d.digest).to_owned());
                    bar.finish();
                }
                CopyEvent::BlobStarted(d) => {
                    let bar = self.multi.add(indicatif::ProgressBar::new(d.size));
                    bar.set_style(style(
                        "{prefix}: [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
                    ));
                    bar.set_prefix(short(&d.digest).to_owned());
                    bars.insert(d.digest, bar);
                }
                CopyEvent::BlobProgress(d, n) => {
                    if let Some(bar) = bars.get(&d.digest) {
                        bar.set_position(n);
                    }
                }
                CopyEvent::BlobDone(d) => {
                    if let Some(bar) = bars.remove(&d.digest) {
                        bar.set_style(style("{prefix}: Done {total_bytes}"));
                        bar.finish();
                    }
                }
            }
        }
    }
}

/// Pulls `reference` into the store, names it and records where it came from
/// (`RepoDigests`); returns the manifest digest.
pub async fn pull_image(
    store: Arc<Store>,
    reference: &Reference,
    options: &Options,
    platform: Option<berth_oci::Platform>,
    quiet: bool,
) -> anyhow::Result<berth_oci::Digest> {
    let remote = remote(reference, options).await?;
    let dst = StoreDestination::new(store.clone(), vec![reference.clone()]);
    let outcome = copy_image(
        &remote,
        &dst,
        &CopyOptions {
            platform,
            progress: printer(quiet),
            ..CopyOptions::default()
        },
    )
    .await?;
    record_repo_digest(
        &store,
        &outcome.root.digest,
        reference,
        &outcome.source_root.digest,
    )?;
    Ok(outcome.root.digest)
}

/// Records in the store that the image `root` is `repository@digest` in a registry, where
/// `reference` names the repository (`RepoDigests`).
pub fn record_repo_digest(
    store: &Store,
    root: &berth_oci::Digest,
    reference: &Reference,
    digest: &berth_oci::Digest,
) -> anyhow::Result<()> {
    store
        .add_repo_digest(root, &reference.with_digest(digest.clone()))
        .map_err(|e| anyhow::Error::new(e).context("recording the image's repository digest"))
}

/// Pushes a store image to `dest` and records where it went (`RepoDigests`); returns the
/// pushed manifest digest.
pub async fn push_image(
    store: Arc<Store>,
    image: &berth_store::Image,
    dest: &Reference,
    options: &Options,
    compression: &str,
    quiet: bool,
) -> anyhow::Result<berth_oci::Digest> {
    let mut remote = remote(dest, options).await?;
    let c = crate::wiring::compression(compression);
    let progress = printer(quiet);
    // Layers compressed for the first time are uploaded while they are compressed; the
    // copy below then finds them on the registry. (Layers with a kept compressed blob, or
    // pulled already compressed, go through the copy: HEAD, mount or upload.)
    let mut streamed = std::collections::HashSet::new();
    for layer in &image.manifest_value.layers {
        if c == berth_oci::media_type::Compression::None
            || berth_store::images::layer_compression(layer)
                != berth_oci::media_type::Compression::None
            || store.compressed_variant(&layer.digest, c).is_some()
        {
            continue;
        }
        let sent = stream_layer(store.clone(), &remote, layer.clone(), c, progress.clone()).await?;
        streamed.insert(sent);
    }
    let dist = store.distribution_image(image, c)?;
    // Blobs already in another repository of the same registry are mounted, not sent. The
    // repository to mount from: the one, among the store's names on that registry, whose
    // image shares the most layers with this one (by diff-id, so whatever their
    // compression). Each blob asks for a mount; one the registry does not have there is
    // uploaded as usual (the registry answers a failed mount with a new upload).
    let ours: std::collections::HashSet<&berth_oci::Digest> =
        image.config.rootfs.diff_ids.iter().collect();
    remote.mount_from = store
        .tags()?
        .into_iter()
        .filter(|t| {
            let r = &t.reference;
            r.domain() == dest.domain() && r.path() != dest.path()
        })
        .filter_map(|t| {
            let other = store.load_image(&t.manifest).ok()?;
            let shared = other
                .config
                .rootfs
                .diff_ids
                .iter()
                .filter(|d| ours.contains(d))
                .count();
            (shared > 0).then(|| (shared, t.reference.path().to_owned()))
        })
        .max()
        .map(|(_, path)| path);
    let src = StoreSource::new(store.clone(), dist.root.clone());
    // The streamed layers were reported as they went; the copy's "already exists" for them
    // would be wrong.
    let progress = progress.map(|p| -> Arc<dyn Fn(CopyEvent) + Send + Sync> {
        Arc::new(move |e: CopyEvent| match &e {
            CopyEvent::BlobSkipped(d) if streamed.contains(&d.digest) => {}
            _ => p(e),
        })
    });
    let outcome = copy_image(
        &src,
        &remote,
        &CopyOptions {
            progress,
            ..CopyOptions::default()
        },
    )
    .await?;
    record_repo_digest(&store, &image.root.digest, dest, &outcome.root.digest)?;
    Ok(outcome.root.digest)
}

/// Compresses an uncompressed store layer and uploads it at the same time: the compressor
/// (on a blocking thread, all cores) writes each compressed chunk both to the store, where
/// it is kept so the next push compresses nothing, and into a bounded channel (1 chunk of
/// up to 4 MiB, so memory stays flat: 8 chunks took the W4 push to 106 MiB) that feeds the
/// registry upload. Returns the compressed blob's digest. Progress is
/// reported against the uncompressed layer (its size is the one known up front).
async fn stream_layer(
    store: Arc<Store>,
    remote: &Remote,
    layer: berth_oci::Descriptor,
    c: berth_oci::media_type::Compression,
    progress: Option<Arc<dyn Fn(CopyEvent) + Send + Sync>>,
) -> anyhow::Result<berth_oci::Digest> {
    /// A `Write` into the upload's channel (an error once the upload has stopped), closed
    /// as soon as the last byte is in, so the last chunk goes while the store syncs; the
    /// digest goes to the upload's closing PUT as soon as it is known.
    struct ToUpload {
        chunks: Option<tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>>,
        digest: Option<tokio::sync::oneshot::Sender<berth_oci::Digest>>,
    }
    impl Write for ToUpload {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.chunks
                .as_ref()
                .ok_or_else(|| std::io::Error::other("written after its end"))?
                .blocking_send(Ok(bytes::Bytes::copy_from_slice(data)))
                .map_err(|_| std::io::Error::other("the upload stopped"))?;
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl berth_store::compress::CompressTee for ToUpload {
        fn end(&mut self) {
            self.chunks = None;
        }
        fn compressed(&mut self, digest: &berth_oci::Digest, _size: u64) {
            if let Some(tx) = self.digest.take() {
                let _ = tx.send(digest.clone());
            }
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let (digest_tx, digest_rx) = tokio::sync::oneshot::channel();
    if let Some(p) = &progress {
        p(CopyEvent::BlobStarted(layer.clone()));
    }
    let job = {
        let layer = layer.clone();
        tokio::task::spawn_blocking(move || {
            let mut tee = ToUpload {
                chunks: Some(tx),
                digest: Some(digest_tx),
            };
            store.compress_layer_tee(&layer, c, &mut tee)
        })
    };
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let reader: berth_oci::transport::BlobReader =
        Box::pin(tokio_util::io::StreamReader::new(stream));
    let mut job = job;
    let failed =
        |r: Result<berth_store::Result<berth_oci::Descriptor>, tokio::task::JoinError>| match r {
            Ok(Ok(_)) => "the compressor ended without a digest".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
    let digest = async {
        match digest_rx.await {
            Ok(digest) => Ok(digest),
            Err(_) => Err(failed((&mut job).await)),
        }
    };
    let digest = remote.upload_streamed(reader, digest).await?;
    // The store's copy, verified and kept (the push's manifest is made from its record).
    match job.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => anyhow::bail!("keeping the compressed layer: {e}"),
        Err(e) => anyhow::bail!("keeping the compressed layer: {e}"),
    }
    if let Some(p) = &progress {
        p(CopyEvent::BlobProgress(layer.clone(), layer.size));
        p(CopyEvent::BlobDone(layer));
    }
    Ok(digest)
}
