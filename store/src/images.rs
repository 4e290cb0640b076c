//! Images in the store: names and IDs in, [`Image`]s (manifest + config, read and verified
//! from blobs) out; and the one way to write a new image ([`Store::write_image`]).
//!
//! An image's ID is its config digest, as Docker's; its manifest digest is what registries
//! and `RepoDigests` name.

use std::io::Read;

use berth_oci::limits::{MAX_CONFIG, MAX_MANIFEST, read_limited};
use berth_oci::manifest::to_canonical_json;
use berth_oci::media_type::{self, Kind};
use berth_oci::{
    Descriptor, Digest, ImageConfig, ImageManifest, ManifestValue, Parsed, Platform, Reference,
};

use crate::blobs::Expect;
use crate::error::{IoContext, Result, StoreError};
use crate::layout::Store;

/// An image read from the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The root manifest or index the name points at.
    pub root: Descriptor,
    /// The platform manifest (the root itself unless the root is an index).
    pub manifest: Parsed,
    pub manifest_value: ImageManifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
    /// Every name pointing at `root`.
    pub tags: Vec<Reference>,
    /// Where registries store this image: `repository@digest` of each repository it was
    /// pulled from or pushed to, the digest of the manifest as that registry has it.
    pub repo_digests: Vec<Reference>,
}

impl Image {
    /// The image ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest_value.config.digest
    }

    /// Sum of the layer blob sizes as stored.
    pub fn size(&self) -> u64 {
        self.manifest_value
            .layers
            .iter()
            .map(|l| l.size)
            .sum::<u64>()
            + self.manifest_value.config.size
    }
}

impl Store {
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a blob for reading (unverified; [`Store::read_blob`] verifies).
    pub fn open_blob(&self, digest: &Digest) -> Result<std::fs::File> {
        std::fs::File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::BlobMissing(digest.clone()),
            _ => StoreError::io(format!("opening blob {digest}"), e),
        })
    }

    /// Reads a small blob into memory, capped at `limit`, and checks its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let bytes = read_limited(file, limit, &format!("blob {digest}")).map_err(|e| {
            StoreError::Malformed {
                what: format!("blob {digest}"),
                reason: e.to_string(),
            }
        })?;
        let found = Digest::of(&bytes);
        if &found != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// Stores bytes as a blob and returns its descriptor.
    pub fn put_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let desc = Descriptor::of(media_type, bytes);
        if !self.has_blob(&desc.digest) {
            let mut w = self.blob_writer()?;
            std::io::Write::write_all(&mut w, bytes).ctx(|| "writing blob".into())?;
            w.commit(Expect::Descriptor(&desc))?;
        }
        Ok(desc)
    }

    /// Copies a reader into a blob, checking it against `expect`.
    pub fn put_reader(&self, mut reader: impl Read, expect: Expect<'_>) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer()?;
        std::io::copy(&mut reader, &mut w).ctx(|| "writing blob".into())?;
        w.commit(expect)
    }

    /// Writes a config and an OCI manifest over it, and returns the manifest. The manifest
    /// is serialised canonically, so the same config and layers give the same digest.
    pub fn write_image(&self, config: &ImageConfig, layers: Vec<Descriptor>) -> Result<Parsed> {
        let config_desc = self.put_bytes(media_type::OCI_CONFIG, &to_canonical_json(config))?;
        let manifest = Parsed::from_manifest(&ImageManifest::new_oci(config_desc, layers));
        self.put_bytes(&manifest.media_type, &manifest.bytes)?;
        Ok(manifest)
    }

    /// Reads a manifest or index blob.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<Parsed> {
        let bytes = self.read_blob(&desc.digest, MAX_MANIFEST)?;
        Parsed::parse(bytes, Some(&desc.media_type)).map_err(|e| StoreError::Malformed {
            what: format!("manifest {}", desc.digest),
            reason: e.to_string(),
        })
    }

    /// Reads the image a root descriptor names; for an index, the host platform's manifest.
    pub fn load_image(&self, root: &Descriptor) -> Result<Image> {
        self.load_image_for(root, &Platform::host())
    }

    /// Reads the image a root descriptor names; for an index, `platform`'s manifest.
    pub fn load_image_for(&self, root: &Descriptor, platform: &Platform) -> Result<Image> {
        let mut manifest = self.read_manifest(root)?;
        if let ManifestValue::Index(index) = &manifest.value {
            let child = berth_oci::transport::select_platform(&index.manifests, platform)
                .map_err(|e| StoreError::Malformed {
                    what: format!("index {}", root.digest),
                    reason: e.to_string(),
                })?
                .clone();
            manifest = self.read_manifest(&child)?;
        }
        let ManifestValue::Manifest(manifest_value) = manifest.value.clone() else {
            return Err(StoreError::Malformed {
                what: format!("manifest {}", manifest.digest),
                reason: "nested index".into(),
            });
        };
        let config_bytes = self.read_blob(&manifest_value.config.digest, MAX_CONFIG)?;
        let config = ImageConfig::parse(&config_bytes).map_err(|e| StoreError::Malformed {
            what: format!("config {}", manifest_value.config.digest),
            reason: e.to_string(),
        })?;
        if config.rootfs.diff_ids.len() != manifest_value.layers.len() {
            return Err(StoreError::Malformed {
                what: format!("image {}", manifest_value.config.digest),
                reason: format!(
                    "{} layers but {} diff_ids",
                    manifest_value.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let entries: Vec<_> = self
            .roots()?
            .into_iter()
            .filter(|(_, d)| d.digest == root.digest)
            .collect();
        let repo_digests = entries
            .iter()
            .map(|(_, d)| crate::index::repo_digests(d))
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        let tags = entries.into_iter().filter_map(|(name, _)| name).collect();
        // The root as a plain descriptor: the index entry's annotations are the store's.
        let root = Descriptor::new(root.media_type.clone(), root.digest.clone(), root.size);
        Ok(Image {
            root,
            manifest,
            manifest_value,
            config_bytes,
            config,
            tags,
            repo_digests,
        })
    }

    /// Finds an image by name (`app`, `app:1.0`, `app@sha256:…`), by image ID or manifest
    /// digest (`sha256:…`), or by a unique ID prefix of at least 4 hex digits, in Docker's
    /// order: a name first, then an ID.
    pub fn resolve(&self, name: &str) -> Result<Image> {
        self.resolve_for(name, &Platform::host())
    }

    /// [`Store::resolve`], taking `platform`'s manifest when the name is a multi-platform
    /// index.
    pub fn resolve_for(&self, name: &str, platform: &Platform) -> Result<Image> {
        let root = self.find_root(name)?;
        self.load_image_for(&root, platform)
    }

    /// The image of one platform manifest by its digest, whether it is a root of the index or
    /// an entry of a multi-platform index that is.
    pub fn image_by_manifest(&self, digest: &Digest) -> Result<Image> {
        let bytes = self.read_blob(digest, MAX_MANIFEST)?;
        let size = bytes.len() as u64;
        let parsed = Parsed::parse(bytes, None).map_err(|e| StoreError::Malformed {
            what: format!("manifest {digest}"),
            reason: e.to_string(),
        })?;
        self.load_image(&Descriptor::new(parsed.media_type, digest.clone(), size))
    }

    /// The root descriptor a name or ID points at.
    fn find_root(&self, name: &str) -> Result<Descriptor> {
        let tags = self.tags()?;
        if let Ok(reference) = Reference::parse(name) {
            let found = tags.iter().find(|t| {
                t.reference == reference
                    || (reference.tag().is_none()
                        && reference.digest() == Some(&t.manifest.digest)
                        && t.reference.repository() == reference.repository())
            });
            if let Some(t) = found {
                return Ok(t.manifest.clone());
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            let mut roots: Vec<Descriptor> = Vec::new();
            for (_, root) in self.roots()? {
                if roots.iter().any(|r| r.digest == root.digest) {
                    continue;
                }
                let image = self.load_image(&root)?;
                if image.id().hex().starts_with(hex) || root.digest.hex().starts_with(hex) {
                    roots.push(root);
                }
            }
            match roots.len() {
                1 => return Ok(roots.swap_remove(0)),
                0 => {}
                count => {
                    return Err(StoreError::Ambiguous {
                        name: name.to_owned(),
                        count,
                    });
                }
            }
        }
        Err(StoreError::NoSuchImage(name.to_owned()))
    }

    /// Every distinct image in the index once, with all its names (none for `<none>`).
    pub fn images(&self) -> Result<Vec<Image>> {
        let mut out: Vec<Image> = Vec::new();
        for (_, root) in self.roots()? {
            if out.iter().any(|i| i.root.digest == root.digest) {
                continue;
            }
            out.push(self.load_image(&root)?);
        }
        Ok(out)
    }
}

/// The layer compression a descriptor declares (uncompressed for unknown types).
pub fn layer_compression(desc: &Descriptor) -> berth_oci::media_type::Compression {
    match desc.kind() {
        Kind::Layer(c) => c,
        _ => berth_oci::media_type::Compression::None,
    }
}
