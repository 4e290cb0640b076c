//! Build caches that leave the machine: berth's cache artifact (its types, parsed and held to
//! limits), caches imported from elsewhere (`--cache-from`), and what a miss says about
//! why it missed ([`mod@explain`]).
//!
//! | module | in → out |
//! |---|---|
//! | this one | the artifact's JSON ↔ [`CacheConfig`]; an inline cache in an image config ↔ the same records; [`Imported`], a cache looked up by key whose blobs come from a [`CacheSource`] on demand |
//! | [`explain`] | a step that missed, and the records of its earlier builds → which input changed |
//!
//! The artifact (docs/CACHE.md): an OCI image manifest with `artifactType`
//! [`ARTIFACT_TYPE`], a config of [`CONFIG_TYPE`] ([`CacheConfig`]: each record maps a berth
//! cache key to the layer its step made, as a descriptor of a compressed blob, the blob's
//! diff-id and size, and to the history entry it left), and as its layers every blob the
//! config names: the image's own layer blobs, the steps' inputs ([`INPUTS_TYPE`], one blob,
//! read only to explain a miss) and the contents of `RUN --mount=type=cache` directories
//! ([`MOUNT_TYPE`]).
//!
//! Everything here comes from a registry or a directory someone else may write: every count
//! and length is bounded, every descriptor a record names must be one of the artifact's
//! blobs, and every blob is verified by digest when fetched (the layer's tar again by its
//! diff-id). A record is only ever found by a key berth computed itself.

pub mod explain;

pub use explain::explain;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;

use berth_oci::{Descriptor, Digest, media_type};
use serde::{Deserialize, Serialize};

/// Why a blob could not be read (the message names what failed).
pub type BlobError = Box<dyn std::error::Error + Send + Sync>;

pub const ARTIFACT_TYPE: &str = "application/vnd.berth.build-cache.v1";
pub const CONFIG_TYPE: &str = "application/vnd.berth.build-cache.config.v1+json";
/// Every step's inputs ([`Inputs`]) by key, as gzip-compressed JSON.
pub const INPUTS_TYPE: &str = "application/vnd.berth.build-cache.inputs.v1+json+gzip";
/// A cache mount's contents: a gzip-compressed tar.
pub const MOUNT_TYPE: &str = "application/vnd.berth.build-cache.mount.v1.tar+gzip";
/// The field of an image config that holds an inline cache.
pub const INLINE_FIELD: &str = "berth.build-cache.v1";

/// The largest cache config read (the records of ~100,000 steps).
pub const MAX_CONFIG: u64 = 32 << 20;
/// The largest inputs blob read.
pub const MAX_INPUTS: u64 = 64 << 20;
pub const MAX_RECORDS: usize = 100_000;
/// Blobs of one cache artifact.
pub const MAX_BLOBS: usize = 10_000;
pub const MAX_MOUNTS: usize = 1_000;
const MAX_TEXT: usize = 16 << 10;

/// A cache artifact's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    pub records: Vec<Record>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountRecord>,
    /// Every record's inputs, a blob of [`INPUTS_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Descriptor>,
}

/// What one build step made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: Digest,
    /// The key the step chained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    /// The stage and the instruction as written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site: String,
    /// `None`: the step changed no file.
    pub layer: Option<Layer>,
    /// The history entry the step left: when it ran, seconds since the epoch (its text is
    /// the Dockerfile's, computed again).
    pub created: u64,
}

/// What a layer step's cache key was made of, by name, so a miss can say which input changed
/// ([`mod@explain`]): `instruction` (as written), `expanded` (its digest after expansion),
/// `base` (the stage's base), `from` (what `--from` names), `git` (the commit), `mounts`
/// (what bind mounts show), `file PATH` (each context entry a COPY or ADD copies, when there
/// are at most [`crate::plan::MAX_EXPLAINED_FILES`]; else `files`), `arg NAME` and `env NAME` (digests of
/// the values: a value never leaves the build through a cache record), `user`, `workdir`,
/// `shell`, `platform`.
pub type Inputs = BTreeMap<String, String>;

/// A layer as it travels: the compressed blob, and the tar inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub blob: Descriptor,
    pub diff_id: Digest,
    /// The tar's size.
    pub size: u64,
}

/// A `RUN --mount=type=cache` directory's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// The mount's `id` (its target when it has none).
    pub id: String,
    /// A tar of the directory, gzip-compressed ([`MOUNT_TYPE`]).
    pub blob: Descriptor,
    /// The tar's size.
    pub size: u64,
}

/// The inline cache: the records of the image's own steps, each layer an index into the
/// image's layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineCache {
    pub version: u32,
    pub records: Vec<InlineRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineRecord {
    pub key: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site: String,
    /// Index into the image's layers.
    pub layer: Option<usize>,
    /// The layer's tar size.
    #[serde(default)]
    pub size: u64,
    pub created: u64,
}

/// Why a cache could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

fn bad(m: impl Into<String>) -> FormatError {
    FormatError(m.into())
}

fn check_text(what: &str, s: &str) -> Result<(), FormatError> {
    match s.len() > MAX_TEXT {
        true => Err(bad(format!("{what} is longer than {MAX_TEXT} bytes"))),
        false => Ok(()),
    }
}

fn is_layer_blob(d: &Descriptor) -> bool {
    matches!(media_type::kind(&d.media_type), media_type::Kind::Layer(_))
}

impl CacheConfig {
    /// Parses a cache config whose blobs must all be among `blobs` (the artifact's layers).
    pub fn parse(bytes: &[u8], blobs: &[Descriptor]) -> Result<CacheConfig, FormatError> {
        let config: CacheConfig =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("the cache config: {e}")))?;
        if config.version != 1 {
            return Err(bad(format!(
                "cache format version {} (berth reads version 1)",
                config.version
            )));
        }
        if config.records.len() > MAX_RECORDS
            || config.mounts.len() > MAX_MOUNTS
            || blobs.len() > MAX_BLOBS
        {
            return Err(bad(format!(
                "more than {MAX_RECORDS} records, {MAX_MOUNTS} cache mounts or {MAX_BLOBS} blobs"
            )));
        }
        let listed = |d: &Descriptor| {
            blobs
                .iter()
                .any(|b| b.digest == d.digest && b.size == d.size)
        };
        for r in &config.records {
            check_text("a record's site", &r.site)?;
            if let Some(l) = &r.layer
                && (!listed(&l.blob) || !is_layer_blob(&l.blob) || l.size == 0)
            {
                return Err(bad(format!(
                    "record {} names layer {}, which is not a layer of the cache",
                    r.key, l.blob.digest
                )));
            }
        }
        if let Some(i) = &config.inputs
            && (!listed(i) || i.media_type != INPUTS_TYPE || i.size > MAX_INPUTS)
        {
            return Err(bad(format!(
                "the inputs {} are not a blob of the cache",
                i.digest
            )));
        }
        for m in &config.mounts {
            check_text("a cache mount's id", &m.id)?;
            if !listed(&m.blob) || m.blob.media_type != MOUNT_TYPE {
                return Err(bad(format!(
                    "cache mount {:?} names {}, which is not a blob of the cache",
                    m.id, m.blob.digest
                )));
            }
        }
        Ok(config)
    }

    /// Every blob the records name, each once, in order: the artifact's layers.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let named = self
            .records
            .iter()
            .flat_map(|r| r.layer.iter().map(|l| &l.blob));
        let named = named
            .chain(self.mounts.iter().map(|m| &m.blob))
            .chain(self.inputs.iter());
        for d in named {
            if seen.insert(d.digest.clone()) {
                out.push(d.clone());
            }
        }
        out
    }
}

impl InlineCache {
    /// The inline cache of an image config, if it has one: its records with their layers
    /// taken from the image's (`layers`, with `diff_ids` from its config).
    pub fn from_image(
        config: &berth_oci::ImageConfig,
        layers: &[Descriptor],
    ) -> Result<Option<CacheConfig>, FormatError> {
        let Some(value) = config.extra.get(INLINE_FIELD) else {
            return Ok(None);
        };
        let inline: InlineCache = serde_json::from_value(value.clone())
            .map_err(|e| bad(format!("the inline cache: {e}")))?;
        if inline.version != 1 {
            return Err(bad(format!(
                "inline cache version {} (berth reads version 1)",
                inline.version
            )));
        }
        if inline.records.len() > MAX_RECORDS {
            return Err(bad(format!("more than {MAX_RECORDS} records")));
        }
        let diff_ids = &config.rootfs.diff_ids;
        let mut records = Vec::new();
        for r in inline.records {
            check_text("a record's site", &r.site)?;
            let layer = match r.layer {
                None => None,
                Some(i) => {
                    let (Some(blob), Some(diff_id)) = (layers.get(i), diff_ids.get(i)) else {
                        return Err(bad(format!(
                            "record {} names layer {i} of an image of {} layers",
                            r.key,
                            layers.len()
                        )));
                    };
                    if r.size == 0 {
                        return Err(bad(format!("record {} gives no layer size", r.key)));
                    }
                    Some(Layer {
                        blob: blob.clone(),
                        diff_id: diff_id.clone(),
                        size: r.size,
                    })
                }
            };
            records.push(Record {
                key: r.key,
                parent: r.parent,
                site: r.site,
                layer,
                created: r.created,
            });
        }
        Ok(Some(CacheConfig {
            version: 1,
            records,
            mounts: Vec::new(),
            inputs: None,
        }))
    }
}

/// Where an imported cache's blobs come from (cli provides them: a registry, a directory).
pub trait CacheSource: Send + Sync {
    /// A name for messages (`docker://host/repo:tag`, `DIR`).
    fn describe(&self) -> String;
    /// Writes the blob's bytes into `out`; the caller verifies them.
    fn blob(&self, desc: &Descriptor, out: &mut dyn std::io::Write) -> Result<(), BlobError>;
}

/// A cache from elsewhere, looked up by key; nothing of it is fetched until a step needs it.
pub struct Imported {
    pub source: Arc<dyn CacheSource>,
    pub config: CacheConfig,
    by_key: HashMap<Digest, usize>,
    mounts: BTreeMap<String, usize>,
    inputs: std::sync::OnceLock<Option<HashMap<Digest, Inputs>>>,
}

impl std::fmt::Debug for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imported")
            .field("source", &self.source.describe())
            .field("records", &self.config.records.len())
            .finish_non_exhaustive()
    }
}

impl Imported {
    pub fn new(source: Arc<dyn CacheSource>, config: CacheConfig) -> Imported {
        let by_key = config
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.clone(), i))
            .collect();
        let mounts = config
            .mounts
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Imported {
            source,
            config,
            by_key,
            mounts,
            inputs: std::sync::OnceLock::new(),
        }
    }

    pub fn lookup(&self, key: &Digest) -> Option<&Record> {
        self.by_key.get(key).map(|&i| &self.config.records[i])
    }

    pub fn mount(&self, id: &str) -> Option<&MountRecord> {
        self.mounts.get(id).map(|&i| &self.config.mounts[i])
    }

    /// A step's inputs, the cache's inputs blob fetched at the first call (`None` when the
    /// cache has none or they cannot be read: they only explain).
    pub fn inputs(&self, record: &Record) -> Option<Inputs> {
        let all = self.inputs.get_or_init(|| {
            let desc = self.config.inputs.as_ref()?;
            let mut out = Limited::new(Vec::new(), desc.size);
            self.source.blob(desc, &mut out).ok()?;
            let bytes = out.inner;
            if Digest::of(&bytes) != desc.digest {
                return None;
            }
            let json = flate2::read::GzDecoder::new(&bytes[..]).take(MAX_INPUTS);
            serde_json::from_reader(json).ok()
        });
        all.as_ref()?.get(&record.key).cloned()
    }
}

/// The inputs blob of a cache: every record's inputs by key, as gzip-compressed JSON.
pub fn encode_inputs(inputs: &BTreeMap<Digest, Inputs>) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&serde_json::to_vec(inputs).expect("plain data"))
        .expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// Fetches `desc` from `from` into the store (unless it is there), verified by its
/// descriptor: a blob that is not what the cache says is refused and nothing is kept.
pub fn fetch_blob(
    store: &berth_store::Store,
    from: &Imported,
    desc: &Descriptor,
) -> Result<(), String> {
    if store.has_blob(&desc.digest) {
        return Ok(());
    }
    let mut writer = store.blob_writer().map_err(|e| e.to_string())?;
    let mut limited = Limited::new(&mut writer, desc.size);
    from.source
        .blob(desc, &mut limited)
        .map_err(|e| e.to_string())?;
    writer
        .commit(berth_store::Expect::Descriptor(desc))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A `Write` that fails past `limit` bytes.
#[derive(Debug)]
pub struct Limited<W> {
    pub inner: W,
    left: u64,
}

impl<W> Limited<W> {
    pub fn new(inner: W, limit: u64) -> Limited<W> {
        Limited { inner, left: limit }
    }
}

impl<W: std::io::Write> std::io::Write for Limited<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the blob is larger than its descriptor says",
            ));
        }
        let n = self.inner.write(data)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> Descriptor {
        Descriptor::new(media_type::OCI_LAYER_GZIP, Digest::of(&[n]), 10)
    }

    fn config_with(blob: Descriptor) -> Vec<u8> {
        let c = CacheConfig {
            version: 1,
            records: vec![Record {
                key: Digest::of(b"k"),
                parent: None,
                site: "0\0RUN x".into(),
                layer: Some(Layer {
                    blob,
                    diff_id: Digest::of(b"tar"),
                    size: 20,
                }),
                created: 1,
            }],
            mounts: Vec::new(),
            inputs: None,
        };
        serde_json::to_vec(&c).unwrap()
    }

    #[test]
    fn a_record_may_only_name_a_blob_of_the_artifact() {
        let ok = CacheConfig::parse(&config_with(layer(1)), &[layer(1)]).unwrap();
        assert_eq!(ok.blobs(), vec![layer(1)]);
        let e = CacheConfig::parse(&config_with(layer(2)), &[layer(1)]).unwrap_err();
        assert!(e.0.contains("not a layer of the cache"), "{e}");
        // The same digest with another size is another blob.
        let mut other = layer(1);
        other.size = 11;
        assert!(CacheConfig::parse(&config_with(other), &[layer(1)]).is_err());
        // A config blob is no layer.
        let cfg = Descriptor::new(media_type::OCI_CONFIG, Digest::of(&[1]), 10);
        assert!(CacheConfig::parse(&config_with(cfg.clone()), &[cfg]).is_err());
    }

    #[test]
    fn an_unknown_version_and_too_many_records_are_refused() {
        let e = CacheConfig::parse(br#"{"version":2,"records":[]}"#, &[]).unwrap_err();
        assert!(e.0.contains("version 2"), "{e}");
        let many: Vec<String> = (0..=MAX_RECORDS)
            .map(|i| {
                format!(
                    r#"{{"key":"{}","layer":null,"created":0}}"#,
                    Digest::of(i.to_string().as_bytes())
                )
            })
            .collect();
        let json = format!(r#"{{"version":1,"records":[{}]}}"#, many.join(","));
        let e = CacheConfig::parse(json.as_bytes(), &[]).unwrap_err();
        assert!(e.0.contains("more than"), "{e}");
    }

    #[test]
    fn an_inline_record_names_a_layer_of_its_image() {
        let mut config = berth_oci::ImageConfig::default();
        config.rootfs.diff_ids = vec![Digest::of(b"tar")];
        config.extra.insert(
            INLINE_FIELD.into(),
            serde_json::json!({"version": 1, "records": [
                {"key": Digest::of(b"k"), "layer": 0, "size": 1024, "created": 5}]}),
        );
        let got = InlineCache::from_image(&config, &[layer(1)])
            .unwrap()
            .unwrap();
        assert_eq!(got.records[0].layer.as_ref().unwrap().blob, layer(1));
        config.extra.insert(
            INLINE_FIELD.into(),
            serde_json::json!({"version": 1, "records": [
                {"key": Digest::of(b"k"), "layer": 3, "size": 1024, "created": 5}]}),
        );
        assert!(InlineCache::from_image(&config, &[layer(1)]).is_err());
    }

    #[test]
    fn limited_refuses_past_its_limit() {
        use std::io::Write;
        let mut w = Limited::new(Vec::new(), 3);
        w.write_all(b"abc").unwrap();
        assert!(w.write_all(b"d").is_err());
    }
}
