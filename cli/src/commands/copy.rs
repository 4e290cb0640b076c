//! `berth copy [--all] SRC DST`: an image between any two of `docker://REF`, `oci:DIR[:REF]`,
//! `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]` (a source only; as a destination
//! the image goes through the store) and the local store (`store:NAME`, or a bare name), all
//! through the one `copy_image`. With `--all` an index is copied whole. Layers kept
//! uncompressed in the store leave compressed (`--compression`, gzip by default).

use std::path::PathBuf;
use std::sync::Arc;

use berth_oci::Reference;
use berth_oci::manifest::{Descriptor, Parsed};
use berth_oci::transport::{
    BlobReader, CopyOptions, ImageDestination, ImageSource, TransportError, copy_image,
};
use berth_registry_client::Remote;
use berth_store::archive::{Archive, ArchiveSource};
use berth_store::oci_dir::LayoutDir;
use berth_store::{Store, StoreDestination, StoreSource};

use crate::UsageError;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Copy every manifest of a multi-platform image
    #[arg(long)]
    all: bool,
    /// Compression of layers kept uncompressed in the store: gzip, zstd or none
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    compression: String,
    #[command(flatten)]
    tls: crate::wiring::TlsArgs,
    /// Where the image is: TRANSPORT:NAME (docker://, oci:, oci-archive:, docker-archive:, store:)
    src: String,
    /// Where it goes, in the same form
    dst: String,
}

#[derive(Debug)]
enum End {
    Docker(Reference),
    Oci(PathBuf, Option<String>),
    OciArchive(PathBuf, Option<String>),
    DockerArchive(PathBuf, Option<String>),
    Store(String),
}

fn split_ref(rest: &str) -> (PathBuf, Option<String>) {
    match rest.split_once(':') {
        Some((p, r)) if !r.contains('/') && !p.is_empty() => (PathBuf::from(p), Some(r.to_owned())),
        _ => (PathBuf::from(rest), None),
    }
}

fn parse_end(s: &str) -> anyhow::Result<End> {
    Ok(if let Some(r) = s.strip_prefix("docker://") {
        End::Docker(Reference::parse(r)?)
    } else if let Some(r) = s.strip_prefix("oci-archive:") {
        let (p, r) = split_ref(r);
        End::OciArchive(p, r)
    } else if let Some(r) = s.strip_prefix("docker-archive:") {
        let (p, r) = split_ref(r);
        End::DockerArchive(p, r)
    } else if let Some(r) = s.strip_prefix("oci:") {
        let (p, r) = split_ref(r);
        End::Oci(p, r)
    } else if let Some(r) = s.strip_prefix("store:").or(Some(s)) {
        if r.contains("://") {
            return Err(UsageError(format!(
                "{s:?}: unknown transport (docker://, oci:, oci-archive:, docker-archive:, store:)"
            ))
            .into());
        }
        End::Store(r.to_owned())
    } else {
        unreachable!()
    })
}

/// Any source, for the one generic copy.
enum Source {
    Remote(Remote),
    Layout(LayoutDir),
    Archive(Box<ArchiveSource>),
    Store(StoreSource),
}

impl ImageSource for Source {
    fn describe(&self) -> String {
        match self {
            Source::Remote(s) => ImageSource::describe(s),
            Source::Layout(s) => ImageSource::describe(s),
            Source::Archive(s) => s.describe(),
            Source::Store(s) => s.describe(),
        }
    }
    async fn root_manifest(&self) -> Result<Parsed, TransportError> {
        match self {
            Source::Remote(s) => s.root_manifest().await,
            Source::Layout(s) => s.root_manifest().await,
            Source::Archive(s) => s.root_manifest().await,
            Source::Store(s) => s.root_manifest().await,
        }
    }
    async fn manifest(&self, d: &Descriptor) -> Result<Parsed, TransportError> {
        match self {
            Source::Remote(s) => s.manifest(d).await,
            Source::Layout(s) => s.manifest(d).await,
            Source::Archive(s) => s.manifest(d).await,
            Source::Store(s) => s.manifest(d).await,
        }
    }
    async fn blob(&self, d: &Descriptor) -> Result<BlobReader, TransportError> {
        match self {
            Source::Remote(s) => s.blob(d).await,
            Source::Layout(s) => s.blob(d).await,
            Source::Archive(s) => s.blob(d).await,
            Source::Store(s) => s.blob(d).await,
        }
    }
}

/// Any destination.
enum Dest {
    Remote(Remote),
    Layout(LayoutDir),
    Store(StoreDestination),
}

impl ImageDestination for Dest {
    fn describe(&self) -> String {
        match self {
            Dest::Remote(d) => ImageDestination::describe(d),
            Dest::Layout(d) => ImageDestination::describe(d),
            Dest::Store(d) => d.describe(),
        }
    }
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        match self {
            Dest::Remote(d) => d.has_blob(desc).await,
            Dest::Layout(d) => d.has_blob(desc).await,
            Dest::Store(d) => d.has_blob(desc).await,
        }
    }
    async fn put_blob(&self, desc: &Descriptor, r: BlobReader) -> Result<(), TransportError> {
        match self {
            Dest::Remote(d) => d.put_blob(desc, r).await,
            Dest::Layout(d) => d.put_blob(desc, r).await,
            Dest::Store(d) => d.put_blob(desc, r).await,
        }
    }
    async fn put_manifest(&self, m: &Parsed) -> Result<(), TransportError> {
        match self {
            Dest::Remote(d) => d.put_manifest(m).await,
            Dest::Layout(d) => d.put_manifest(m).await,
            Dest::Store(d) => d.put_manifest(m).await,
        }
    }
    async fn commit(&self, root: &Parsed) -> Result<(), TransportError> {
        match self {
            Dest::Remote(d) => d.commit(root).await,
            Dest::Layout(d) => d.commit(root).await,
            Dest::Store(d) => d.commit(root).await,
        }
    }
}

fn archive_source(
    store: &Store,
    path: &std::path::Path,
    reference: Option<&str>,
) -> anyhow::Result<Source> {
    let archive = Arc::new(Archive::open(path, &store.tmp_dir())?);
    let images = archive.images()?;
    let wanted = reference.map(Reference::parse).transpose()?;
    let image = match &wanted {
        Some(r) => images.into_iter().find(|i| i.names.contains(r)),
        None => images.into_iter().next(),
    }
    .ok_or_else(|| anyhow::anyhow!("{}: no such image in the archive", path.display()))?;
    Ok(Source::Archive(Box::new(ArchiveSource::new(
        archive, image,
    ))))
}

pub fn run(store: Arc<Store>, args: Args) -> anyhow::Result<u8> {
    let src_end = parse_end(&args.src)?;
    let dst_end = parse_end(&args.dst)?;
    let options = crate::wiring::options(&args.tls);
    let leaves = !matches!(dst_end, End::Store(_));
    crate::block_on(async {
        // The store image a copy to a registry starts from, whose `RepoDigests` it adds to.
        let mut local_root = None;
        let src = match &src_end {
            End::Docker(r) => Source::Remote(crate::transfer::remote(r, &options).await?),
            End::Oci(p, r) => Source::Layout(LayoutDir::new(p, r.as_deref())),
            End::OciArchive(p, r) | End::DockerArchive(p, r) => {
                archive_source(&store, p, r.as_deref())?
            }
            End::Store(name) => {
                let image = store.resolve(name)?;
                local_root = Some(image.root.digest.clone());
                let image = if leaves {
                    store
                        .distribution_image(&image, crate::wiring::compression(&args.compression))?
                } else {
                    image
                };
                Source::Store(StoreSource::new(store.clone(), image.root.clone()))
            }
        };
        let copy = CopyOptions {
            all: args.all,
            ..CopyOptions::default()
        };
        let (dest, archive): (Dest, Option<(PathBuf, bool, Option<String>)>) = match &dst_end {
            End::Docker(r) => (
                Dest::Remote(crate::transfer::remote(r, &options).await?),
                None,
            ),
            End::Oci(p, r) => (Dest::Layout(LayoutDir::new(p, r.as_deref())), None),
            End::Store(name) => {
                let names = vec![Reference::parse(name)?];
                (
                    Dest::Store(StoreDestination::new(store.clone(), names)),
                    None,
                )
            }
            // Archives are written from the store: the image goes there first, unnamed.
            End::OciArchive(p, r) => (
                Dest::Store(StoreDestination::new(store.clone(), Vec::new())),
                Some((p.clone(), true, r.clone())),
            ),
            End::DockerArchive(p, r) => (
                Dest::Store(StoreDestination::new(store.clone(), Vec::new())),
                Some((p.clone(), false, r.clone())),
            ),
        };
        // An archive's image passes through the store unnamed; the entry that keeps it there
        // goes once the archive is written, unless the store had the image before.
        let had: std::collections::HashSet<_> = if archive.is_some() {
            store.roots()?.into_iter().map(|(_, d)| d.digest).collect()
        } else {
            Default::default()
        };
        let outcome = copy_image(&src, &dest, &copy).await?;
        // Where a registry stores the image, as Docker's pull and push record it.
        match (&src_end, &dst_end, &local_root) {
            (End::Docker(r), End::Store(_), _) => crate::transfer::record_repo_digest(
                &store,
                &outcome.root.digest,
                r,
                &outcome.source_root.digest,
            )?,
            (End::Store(_), End::Docker(r), Some(root)) => {
                crate::transfer::record_repo_digest(&store, root, r, &outcome.root.digest)?
            }
            _ => {}
        }
        if let Some((path, oci, name)) = archive {
            let written = write_archive(&store, &outcome.root, &path, oci, name.as_deref());
            // Its blobs and snapshots go too, as `rmi` does, unless another process is
            // using the store (then the next `system prune` takes them).
            if !had.contains(&outcome.root.digest) && store.remove_unnamed(&outcome.root.digest)? {
                store.try_gc()?;
            }
            written?;
        }
        outln!(
            "Copied {} to {}: {} blob(s) copied, {} already there; digest {}",
            args.src,
            args.dst,
            outcome.blobs_copied,
            outcome.blobs_skipped,
            outcome.root.digest
        );
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Writes the store's image `root` to an archive at `path`, named `name` if given.
fn write_archive(
    store: &Store,
    root: &Descriptor,
    path: &std::path::Path,
    oci: bool,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let image = store.load_image(root)?;
    let names = name
        .map(Reference::parse)
        .transpose()?
        .into_iter()
        .collect();
    crate::output_file::write_atomically(path, crate::output_file::ARCHIVE_MODE, |f| {
        if oci {
            berth_store::archive::write_oci_archive(store, &[(image, names)], f)?;
        } else {
            berth_store::archive::write_docker_archive(store, &[(image, names)], f)?;
        }
        Ok(())
    })
    .map_err(|e| e.context(format!("writing {}", path.display())))
}
