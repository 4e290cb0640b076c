//! `--cache-from` and `--cache-to`: their specs parsed; caches read from a registry, an OCI
//! layout directory or an image's inline records (only the manifest and the config are read
//! up front; a blob when the build asks for it); the build's records written back as berth's
//! cache artifact (docs/CACHE.md) through the transport's destinations.
//!
//! A cache that cannot be read is a warning, as in BuildKit: the build goes on without it. A
//! blob that is not what the cache says fails the build (the builder verifies every one).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use berth_builder::cache::{
    ARTIFACT_TYPE, CONFIG_TYPE, CacheConfig, INPUTS_TYPE, Imported, InlineCache, Layer, MAX_CONFIG,
    MOUNT_TYPE, MountRecord, Record,
};
use berth_builder::exec::StepRecord;
use berth_oci::Reference;
use berth_oci::media_type::{self, Compression};
use berth_oci::transport::{
    ImageDestination, ImageSource, TransportError, platform_manifest, read_config,
};
use berth_oci::{Descriptor, Digest, ImageConfig, ImageManifest, ManifestValue, Parsed, Platform};
use berth_registry_client::Options;
use berth_store::Store;
use berth_store::oci_dir::LayoutDir;
use tokio::io::AsyncReadExt;

use crate::UsageError;

/// Which steps an export keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The steps whose layers the image holds.
    Min,
    /// Every step of every stage built.
    Max,
}

/// Where a cache is read from.
#[derive(Debug, Clone)]
pub enum From {
    Registry(Reference),
    Local { src: PathBuf, tag: String },
}

/// Where a cache is written.
#[derive(Debug, Clone)]
pub enum To {
    Registry {
        reference: Reference,
        mode: Mode,
        compression: Option<String>,
        /// Also the contents of the `RUN --mount=type=cache` directories the build used.
        mounts: bool,
    },
    Local {
        dest: PathBuf,
        tag: String,
        mode: Mode,
        compression: Option<String>,
        mounts: bool,
    },
    Inline,
}

/// `KEY=VALUE,...`; every key must be one of `known`.
fn fields(spec: &str, flag: &str, known: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(UsageError(format!("{flag} {spec:?}: {part:?} is not KEY=VALUE")).into());
        };
        if !known.contains(&k) {
            return Err(UsageError(format!(
                "{flag} {spec:?}: unknown key {k:?} (known: {})",
                known.join(", ")
            ))
            .into());
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

fn reference(flag: &str, r: Option<&String>) -> anyhow::Result<Reference> {
    let r = r.ok_or_else(|| UsageError(format!("{flag}: type=registry needs ref=NAME")))?;
    crate::wiring::parse_reference(r)
}

/// `--cache-from type=registry,ref=NAME`, `type=local,src=DIR[,tag=T]`, or `NAME` (a cache
/// artifact or an image with inline records).
pub fn parse_from(spec: &str) -> anyhow::Result<From> {
    if !spec.contains('=') {
        return Ok(From::Registry(crate::wiring::parse_reference(spec)?));
    }
    let f = fields(spec, "--cache-from", &["type", "ref", "src", "tag"])?;
    match f.get("type").map(String::as_str).unwrap_or("registry") {
        "registry" => Ok(From::Registry(reference("--cache-from", f.get("ref"))?)),
        "local" => Ok(From::Local {
            src: f
                .get("src")
                .map(PathBuf::from)
                .ok_or_else(|| UsageError("--cache-from type=local needs src=DIR".into()))?,
            tag: f.get("tag").cloned().unwrap_or_else(|| "latest".into()),
        }),
        t => Err(UsageError(format!(
            "--cache-from {spec:?}: type {t:?} (berth reads registry and local caches)"
        ))
        .into()),
    }
}

/// `--cache-to type=registry,ref=NAME[,mode=min|max][,compression=gzip|zstd]`,
/// `type=local,dest=DIR[,tag=T][,mode][,compression]`, or `type=inline`.
pub fn parse_to(spec: &str) -> anyhow::Result<To> {
    let f = fields(
        spec,
        "--cache-to",
        &[
            "type",
            "ref",
            "dest",
            "tag",
            "mode",
            "compression",
            "mounts",
        ],
    )?;
    let mounts = match f.get("mounts").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(m) => {
            return Err(
                UsageError(format!("--cache-to {spec:?}: mounts {m:?} (true or false)")).into(),
            );
        }
    };
    let mode = match f.get("mode").map(String::as_str) {
        None | Some("min") => Mode::Min,
        Some("max") => Mode::Max,
        Some(m) => {
            return Err(UsageError(format!("--cache-to {spec:?}: mode {m:?} (min or max)")).into());
        }
    };
    let compression = match f.get("compression").map(String::as_str) {
        None => None,
        Some(c @ ("gzip" | "zstd")) => Some(c.to_owned()),
        Some(c) => {
            return Err(UsageError(format!(
                "--cache-to {spec:?}: compression {c:?} (gzip or zstd)"
            ))
            .into());
        }
    };
    match f.get("type").map(String::as_str) {
        Some("registry") => Ok(To::Registry {
            reference: reference("--cache-to", f.get("ref"))?,
            mode,
            compression,
            mounts,
        }),
        Some("local") => Ok(To::Local {
            dest: f
                .get("dest")
                .map(PathBuf::from)
                .ok_or_else(|| UsageError("--cache-to type=local needs dest=DIR".into()))?,
            tag: f.get("tag").cloned().unwrap_or_else(|| "latest".into()),
            mode,
            compression,
            mounts,
        }),
        Some("inline") if f.len() == 1 => Ok(To::Inline),
        Some("inline") => Err(UsageError(format!(
            "--cache-to {spec:?}: type=inline takes no other keys (its records are the image's)"
        ))
        .into()),
        t => Err(UsageError(format!(
            "--cache-to {spec:?}: type {t:?} (registry, local or inline)"
        ))
        .into()),
    }
}

/// A blob read whole, no larger than `limit`, checked against its descriptor.
async fn read_small<S: ImageSource>(
    src: &S,
    desc: &Descriptor,
    limit: u64,
) -> anyhow::Result<Vec<u8>> {
    if desc.size > limit {
        anyhow::bail!("{} is {} bytes, more than {limit}", desc.digest, desc.size);
    }
    let mut bytes = Vec::new();
    src.blob(desc)
        .await?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() as u64 != desc.size || Digest::of(&bytes) != desc.digest {
        anyhow::bail!("{} is not the blob its descriptor names", desc.digest);
    }
    Ok(bytes)
}

/// The records of a cache artifact or of an image's inline cache (`None`: an image without).
async fn load<S: ImageSource>(src: &S, platform: &Platform) -> anyhow::Result<Option<CacheConfig>> {
    let (_, manifest) = platform_manifest(src, platform).await?;
    let ManifestValue::Manifest(manifest) = manifest.value else {
        anyhow::bail!("{} is an index inside an index", manifest.digest);
    };
    if manifest.artifact_type.as_deref() == Some(ARTIFACT_TYPE)
        || manifest.config.media_type == CONFIG_TYPE
    {
        let bytes = read_small(src, &manifest.config, MAX_CONFIG).await?;
        return Ok(Some(CacheConfig::parse(&bytes, &manifest.layers)?));
    }
    let bytes = read_config(src, &manifest.config).await?;
    let config = ImageConfig::parse(&bytes)?;
    Ok(InlineCache::from_image(&config, &manifest.layers)?)
}

/// The cache `src` holds, looked up by key, its blobs read from `src` through `rt` when the
/// build asks for them (`None`: an image without inline records).
async fn imported<S: ImageSource + 'static>(
    src: S,
    platform: &Platform,
    rt: &Arc<tokio::runtime::Runtime>,
) -> anyhow::Result<Option<Arc<Imported>>> {
    let config = load(&src, platform).await?;
    Ok(config.map(|c| {
        let blobs = crate::transfer::SyncBlobs {
            src,
            rt: rt.clone(),
        };
        Arc::new(Imported::new(Arc::new(blobs), c))
    }))
}

/// A cache read, with the registry repository it came from (blobs of the same registry are
/// mounted from it instead of being downloaded and uploaded again).
#[derive(Debug, Clone)]
pub struct Read {
    pub cache: Arc<Imported>,
    pub registry: Option<Reference>,
}

/// Reads each `--cache-from`; one that cannot be read is a warning (`warn`), not an error.
pub fn import(
    specs: &[From],
    options: &Options,
    platform: &Platform,
    warn: &dyn Fn(String),
) -> Vec<Read> {
    let mut out = Vec::new();
    if specs.is_empty() {
        return out;
    }
    let rt = crate::transfer::runtime();
    for spec in specs {
        let loaded = match spec {
            From::Registry(r) => rt.block_on(async {
                let remote = crate::transfer::remote(r, options).await?;
                imported(remote, platform, &rt).await
            }),
            From::Local { src, tag } => rt.block_on(imported(
                LayoutDir::new(src.clone(), Some(tag)),
                platform,
                &rt,
            )),
        };
        let name = match spec {
            From::Registry(r) => r.familiar(),
            From::Local { src, .. } => src.display().to_string(),
        };
        let registry = match spec {
            From::Registry(r) => Some(r.clone()),
            From::Local { .. } => None,
        };
        match loaded {
            Ok(Some(cache)) => out.push(Read { cache, registry }),
            Ok(None) => warn(format!(
                "--cache-from {name}: the image holds no cache records"
            )),
            Err(e) => warn(format!("--cache-from {name}: not used: {e:#}")),
        }
    }
    out
}

/// Where an exported blob's bytes come from.
enum Bytes {
    Store,
    Memory(Vec<u8>),
}

/// The cache artifact of a build: its manifest, and its blobs with where each one's bytes
/// are. Imported layers that were never fetched are fetched into the store first unless
/// `present` says the destination has them.
fn artifact(
    store: &Store,
    steps: &[StepRecord],
    keep: &dyn Fn(&StepRecord) -> bool,
    c: Compression,
    present: &dyn Fn(&Descriptor) -> bool,
    mounts: &[String],
    imports: &[Read],
) -> anyhow::Result<(Parsed, Vec<(Descriptor, Bytes)>)> {
    let mut records: Vec<Record> = Vec::new();
    let mut inputs: BTreeMap<Digest, BTreeMap<String, String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for step in steps.iter().rev().filter(|s| keep(s)) {
        if !seen.insert(step.key.clone()) {
            continue;
        }
        let layer = match &step.record.layer {
            None => None,
            Some(l) if store.has_blob(&l.diff_id) => {
                let tar = Descriptor::new(media_type::OCI_LAYER_TAR, l.diff_id.clone(), l.size);
                Some(Layer {
                    blob: store.compressed_layer(&tar, c)?,
                    diff_id: l.diff_id.clone(),
                    size: l.size,
                })
            }
            Some(l) => match &step.imported {
                Some((from, layer)) if layer.diff_id == l.diff_id => {
                    if !present(&layer.blob) {
                        berth_builder::cache::fetch_blob(store, from, &layer.blob)
                            .map_err(anyhow::Error::msg)?;
                    }
                    Some(layer.clone())
                }
                // Neither here nor anywhere known: the record is left out.
                _ => continue,
            },
        };
        inputs.insert(step.key.clone(), step.record.inputs.clone());
        records.push(Record {
            key: step.key.clone(),
            parent: step.record.parent.clone(),
            site: step.record.site.clone(),
            layer,
            created: step.record.created,
        });
    }
    records.reverse();
    // Each cache mount as this store has it, else as an imported cache had it (a build
    // whose steps were all cached keeps the mounts it was given).
    let mut mount_records = Vec::new();
    for id in mounts {
        if let Some((digest, size, tar)) = store.pack_cache_mount(id)? {
            mount_records.push(MountRecord {
                id: id.clone(),
                blob: Descriptor::new(MOUNT_TYPE, digest, size),
                size: tar,
            });
        } else if let Some((from, m)) = imports
            .iter()
            .find_map(|i| Some((&i.cache, i.cache.mount(id)?)))
        {
            if !present(&m.blob) {
                berth_builder::cache::fetch_blob(store, from, &m.blob)
                    .map_err(anyhow::Error::msg)?;
            }
            mount_records.push(m.clone());
        }
    }
    let inputs_bytes = berth_builder::cache::encode_inputs(&inputs);
    let inputs_desc = Descriptor::new(
        INPUTS_TYPE,
        Digest::of(&inputs_bytes),
        inputs_bytes.len() as u64,
    );
    let config = CacheConfig {
        version: 1,
        records,
        mounts: mount_records,
        inputs: Some(inputs_desc.clone()),
    };
    let config_bytes = serde_json::to_vec(&config).expect("plain data");
    let config_desc = Descriptor::new(
        CONFIG_TYPE,
        Digest::of(&config_bytes),
        config_bytes.len() as u64,
    );
    let layers = config.blobs();
    let mut blobs: Vec<(Descriptor, Bytes)> = layers
        .iter()
        .map(|d| {
            let bytes = match d.digest == inputs_desc.digest {
                true => Bytes::Memory(inputs_bytes.clone()),
                false => Bytes::Store,
            };
            (d.clone(), bytes)
        })
        .collect();
    blobs.push((config_desc.clone(), Bytes::Memory(config_bytes)));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_owned()),
        artifact_type: Some(ARTIFACT_TYPE.to_owned()),
        config: config_desc,
        layers,
        subject: None,
        annotations: Default::default(),
    };
    Ok((Parsed::from_manifest(&manifest), blobs))
}

/// Sends the artifact's blobs the destination lacks (four at a time), then its manifest.
async fn send<D: ImageDestination>(
    store: &Store,
    dst: &D,
    manifest: &Parsed,
    blobs: Vec<(Descriptor, Bytes)>,
) -> Result<(), TransportError> {
    use futures_util::{StreamExt, TryStreamExt};
    futures_util::stream::iter(blobs.into_iter().map(|(desc, bytes)| async move {
        if dst.has_blob(&desc).await? {
            return Ok(());
        }
        let reader: berth_oci::transport::BlobReader = match bytes {
            Bytes::Memory(b) => Box::pin(std::io::Cursor::new(b)),
            Bytes::Store => {
                let file = store
                    .open_blob(&desc.digest)
                    .map_err(|e| TransportError::other(e.to_string()))?;
                Box::pin(tokio::fs::File::from_std(file))
            }
        };
        dst.put_blob(&desc, reader).await
    }))
    .buffer_unordered(4)
    .try_collect::<Vec<()>>()
    .await?;
    dst.commit(manifest).await
}

/// What one `--cache-to` needs besides its spec.
pub struct Export<'a> {
    pub store: &'a Store,
    pub steps: &'a [StepRecord],
    pub image_stages: &'a std::collections::BTreeSet<usize>,
    pub options: &'a Options,
    /// `--compression` (the pushed image's, so the cache's layers are the same blobs).
    pub compression: &'a str,
    /// The names the image was pushed to: a cache on the same registry mounts from them.
    pub pushed: &'a [Reference],
    /// The ids of the cache mounts the build's steps name.
    pub cache_mounts: &'a std::collections::BTreeSet<String>,
    /// The caches the build read (their mounts are kept when this store has none).
    pub imports: &'a [Read],
}

/// Writes the build's cache to `to`; returns what it wrote (for the message).
pub fn export(to: &To, e: &Export<'_>) -> anyhow::Result<Option<String>> {
    let (mode, compression, mounts) = match to {
        To::Inline => return Ok(None),
        To::Registry {
            mode,
            compression,
            mounts,
            ..
        }
        | To::Local {
            mode,
            compression,
            mounts,
            ..
        } => (
            *mode,
            compression.as_deref().unwrap_or(e.compression),
            *mounts,
        ),
    };
    let mounts: Vec<String> = match mounts {
        true => e.cache_mounts.iter().cloned().collect(),
        false => Vec::new(),
    };
    let c = match crate::wiring::compression(compression) {
        Compression::None => Compression::Gzip,
        c => c,
    };
    let keep = |s: &StepRecord| mode == Mode::Max || e.image_stages.contains(&s.stage);
    let rt = crate::transfer::runtime();
    match to {
        To::Registry { reference, .. } => {
            let mut remote = rt.block_on(crate::transfer::remote(reference, e.options))?;
            remote.mount_from = e
                .pushed
                .iter()
                .find(|p| p.domain() == reference.domain() && p.path() != reference.path())
                .map(|p| p.path().to_owned());
            let present = |d: &Descriptor| rt.block_on(remote.has_blob(d)).unwrap_or(false);
            let (manifest, blobs) =
                artifact(e.store, e.steps, &keep, c, &present, &mounts, e.imports)?;
            rt.block_on(send(e.store, &remote, &manifest, blobs))?;
            Ok(Some(format!(
                "{} ({})",
                reference.familiar(),
                manifest.digest
            )))
        }
        To::Local { dest, tag, .. } => {
            std::fs::create_dir_all(dest)
                .map_err(|err| anyhow::anyhow!("creating {}: {err}", dest.display()))?;
            let dir = LayoutDir::new(dest.clone(), Some(tag));
            let present = |d: &Descriptor| rt.block_on(dir.has_blob(d)).unwrap_or(false);
            let (manifest, blobs) =
                artifact(e.store, e.steps, &keep, c, &present, &mounts, e.imports)?;
            rt.block_on(send(e.store, &dir, &manifest, blobs))?;
            Ok(Some(format!("{} ({})", dest.display(), manifest.digest)))
        }
        To::Inline => unreachable!("returned above"),
    }
}

/// `-o type=registry,name=NAME` when the image is only sent: layers that only an imported
/// cache holds are mounted from the cache's repository when it is on the same registry
/// (nothing downloaded or uploaded), else fetched into the store first; the others are
/// compressed as `push` does. Returns the pushed manifest's digest.
pub fn push_lazy(
    store: &Arc<Store>,
    image: &berth_store::Image,
    pending: &[berth_builder::exec::PendingLayer],
    imports: &[Read],
    dest: &Reference,
    options: &Options,
    compression: &str,
) -> anyhow::Result<Digest> {
    let rt = crate::transfer::runtime();
    let mut remote = rt.block_on(crate::transfer::remote(dest, options))?;
    let same_registry = |r: &&Reference| r.domain() == dest.domain();
    remote.mount_from = imports
        .iter()
        .filter_map(|i| i.registry.as_ref())
        .find(|r| same_registry(r) && r.path() != dest.path())
        .map(|r| r.path().to_owned());
    let mut swapped: std::collections::HashMap<&Digest, &Descriptor> = Default::default();
    for p in pending {
        let origin = imports
            .iter()
            .find(|i| Arc::ptr_eq(&i.cache, &p.from))
            .and_then(|i| i.registry.as_ref())
            .filter(same_registry);
        let blob = &p.blob;
        let there = match origin {
            Some(o) if o.path() == dest.path() => {
                rt.block_on(remote.has_blob(blob)).unwrap_or(false)
            }
            Some(o) => rt
                .block_on(remote.mount_blob(&blob.digest, o.path()))
                .unwrap_or(false),
            None => false,
        };
        if !there {
            berth_builder::cache::fetch_blob(store, &p.from, blob).map_err(anyhow::Error::msg)?;
        }
        swapped.insert(&p.digest, blob);
    }
    let c = crate::wiring::compression(compression);
    let layers = image
        .manifest_value
        .layers
        .iter()
        .map(|l| match swapped.get(&l.digest) {
            Some(blob) => Ok((*blob).clone()),
            None => store.compressed_layer(l, c),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut manifest = ImageManifest::new_oci(image.manifest_value.config.clone(), layers);
    manifest.annotations = image.manifest_value.annotations.clone();
    let parsed = Parsed::from_manifest(&manifest);
    store.put_bytes(&parsed.media_type, &parsed.bytes)?;
    let src = berth_store::StoreSource::new(store.clone(), parsed.descriptor());
    let outcome = rt.block_on(berth_oci::transport::copy_image(
        &src,
        &remote,
        &Default::default(),
    ))?;
    Ok(outcome.root.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_parsed_and_unknown_keys_refused() {
        assert!(matches!(
            parse_to("type=registry,ref=localhost:5000/app:cache,mode=max").unwrap(),
            To::Registry {
                mode: Mode::Max,
                ..
            }
        ));
        assert!(matches!(parse_to("type=inline").unwrap(), To::Inline));
        assert!(matches!(
            parse_to("type=local,dest=/tmp/c").unwrap(),
            To::Local {
                mode: Mode::Min,
                ..
            }
        ));
        for bad in [
            "type=registry",
            "type=registry,ref=x,mode=all",
            "type=registry,ref=x,colour=blue",
            "type=gha",
            "type=inline,mode=max",
            "type=local",
        ] {
            assert!(parse_to(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_from("localhost:5000/app:1").unwrap(),
            From::Registry(_)
        ));
        assert!(matches!(
            parse_from("type=local,src=/tmp/c").unwrap(),
            From::Local { .. }
        ));
        assert!(parse_from("type=s3,bucket=x").is_err());
    }
}
