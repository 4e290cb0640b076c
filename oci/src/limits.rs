//! Bounds for everything that comes from outside: a reader and a byte cap in, the bytes (or
//! [`LimitError`]) out, for in-memory reads ([`read_limited`], as containers/image
//! `iolimits` does); and a parsed manifest, index or config in, `Ok` or the count that is
//! too large out ([`check_manifest`], [`check_config`]), so an image is refused before any
//! of its blobs is fetched. Every path that reads an image (pull, load, copy, an OCI
//! directory) goes through [`crate::transport::copy_image`], which applies them.

use std::io::Read;

use crate::config::ImageConfig;
use crate::manifest::{Descriptor, ManifestValue, Parsed};

/// Manifests and indexes.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Image configs.
pub const MAX_CONFIG: u64 = 4 << 20;
/// Bearer token responses.
pub const MAX_TOKEN: u64 = 1 << 20;
/// Registry error bodies.
pub const MAX_ERROR_BODY: u64 = 1 << 20;
/// `index.json`, `manifest.json` and other small files of layouts and archives.
pub const MAX_LAYOUT_FILE: u64 = 16 << 20;
/// One page of a registry's tag list.
pub const MAX_TAG_PAGE: u64 = 4 << 20;
/// Pages of a tag list followed (each a request).
pub const MAX_TAG_PAGES: usize = 1_000;
/// Tags of one repository.
pub const MAX_TAGS: usize = 100_000;

/// Layers of one image: Docker's limit (its layer store refuses a deeper chain with `max
/// depth exceeded`). Each layer is a snapshot directory and, in a container, an overlay
/// lower directory, whose paths all go in one mount's options (one page): an image with
/// thousands could be stored but never run.
pub const MAX_LAYERS: usize = 125;
/// Entries of one index (a multi-platform image lists a dozen or so; Docker Hub's largest
/// have fewer than 100, attestations included).
pub const MAX_INDEX_ENTRIES: usize = 1_000;
/// Entries of the history of one config. Each layer has one, and empty-layer steps add
/// more (ENV, LABEL, CMD): 125 layers with 8 config steps each stay well below.
pub const MAX_HISTORY: usize = 1_000;
/// Annotations of one manifest, index or descriptor.
pub const MAX_ANNOTATIONS: usize = 256;
/// Manifests and configs of one copy, held in memory together (an index copied whole
/// with `--all` holds all its children and their configs).
pub const MAX_HELD_METADATA: u64 = 64 << 20;
/// Images of one archive (`manifest.json` entries of a docker archive, `index.json`
/// entries of an OCI archive).
pub const MAX_ARCHIVE_IMAGES: usize = 1_000;
/// Files in one archive (each is indexed in memory before anything is read).
pub const MAX_ARCHIVE_MEMBERS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("{what} has {count} {items}, more than the limit of {limit}")]
    TooMany {
        what: String,
        items: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("reading {what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Reads at most `limit` bytes; more is an error, not a truncation.
pub fn read_limited(reader: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, LimitError> {
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| LimitError::Io {
            what: what.to_owned(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(LimitError::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(buf)
}

/// `count` must be at most `limit`.
pub fn check_count(
    what: &str,
    items: &'static str,
    count: usize,
    limit: usize,
) -> Result<(), LimitError> {
    if count > limit {
        return Err(LimitError::TooMany {
            what: what.to_owned(),
            items,
            count,
            limit,
        });
    }
    Ok(())
}

fn check_descriptor(what: &str, d: &Descriptor) -> Result<(), LimitError> {
    check_count(what, "annotations", d.annotations.len(), MAX_ANNOTATIONS)?;
    check_count(what, "URLs", d.urls.len(), MAX_ANNOTATIONS)
}

/// The counts and sizes a manifest or index may have: layers, index entries, annotations,
/// and the config's size (it is read into memory).
pub fn check_manifest(m: &Parsed) -> Result<(), LimitError> {
    let what = format!("manifest {}", m.digest);
    match &m.value {
        ManifestValue::Manifest(manifest) => {
            check_count(&what, "layers", manifest.layers.len(), MAX_LAYERS)?;
            check_count(
                &what,
                "annotations",
                manifest.annotations.len(),
                MAX_ANNOTATIONS,
            )?;
            if manifest.config.size > MAX_CONFIG {
                return Err(LimitError::TooLarge {
                    what: format!("{what}: the config {}", manifest.config.digest),
                    limit: MAX_CONFIG,
                });
            }
            for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
                check_descriptor(&what, d)?;
            }
        }
        ManifestValue::Index(index) => {
            let what = format!("index {}", m.digest);
            check_count(&what, "manifests", index.manifests.len(), MAX_INDEX_ENTRIES)?;
            check_count(
                &what,
                "annotations",
                index.annotations.len(),
                MAX_ANNOTATIONS,
            )?;
            for d in &index.manifests {
                check_descriptor(&what, d)?;
                if d.size > MAX_MANIFEST {
                    return Err(LimitError::TooLarge {
                        what: format!("{what}: the manifest {}", d.digest),
                        limit: MAX_MANIFEST,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The counts a config may have: diff-ids (layers) and history entries.
pub fn check_config(config: &ImageConfig, what: &str) -> Result<(), LimitError> {
    check_count(what, "layers", config.rootfs.diff_ids.len(), MAX_LAYERS)?;
    check_count(what, "history entries", config.history.len(), MAX_HISTORY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ImageIndex, ImageManifest};
    use crate::media_type;

    #[test]
    fn caps_reads() {
        assert_eq!(read_limited(&b"abcd"[..], 4, "x").unwrap(), b"abcd");
        assert!(matches!(
            read_limited(&b"abcde"[..], 4, "x"),
            Err(LimitError::TooLarge { .. })
        ));
    }

    fn manifest(layers: usize) -> ImageManifest {
        let layer = Descriptor::of(media_type::OCI_LAYER_TAR, b"layer");
        ImageManifest::new_oci(
            Descriptor::of(media_type::OCI_CONFIG, b"{}"),
            vec![layer; layers],
        )
    }

    #[test]
    fn layers_are_capped_at_dockers_125() {
        assert!(check_manifest(&Parsed::from_manifest(&manifest(MAX_LAYERS))).is_ok());
        let e = check_manifest(&Parsed::from_manifest(&manifest(20_000))).unwrap_err();
        assert!(
            e.to_string()
                .contains("20000 layers, more than the limit of 125"),
            "{e}"
        );
    }

    #[test]
    fn config_size_and_annotations_are_capped() {
        let mut m = manifest(1);
        m.config.size = MAX_CONFIG + 1;
        assert!(matches!(
            check_manifest(&Parsed::from_manifest(&m)),
            Err(LimitError::TooLarge { .. })
        ));
        let mut m = manifest(1);
        for i in 0..=MAX_ANNOTATIONS {
            m.annotations.insert(format!("k{i}"), String::new());
        }
        assert!(check_manifest(&Parsed::from_manifest(&m)).is_err());
        let mut m = manifest(1);
        for i in 0..=MAX_ANNOTATIONS {
            m.layers[0]
                .annotations
                .insert(format!("k{i}"), String::new());
        }
        assert!(check_manifest(&Parsed::from_manifest(&m)).is_err());
    }

    fn index(entries: usize, size: u64) -> Parsed {
        let mut index = ImageIndex::default();
        let mut d = Descriptor::of(media_type::OCI_MANIFEST, b"{}");
        d.size = size;
        index.manifests = vec![d; entries];
        let bytes = crate::manifest::to_canonical_json(&index);
        Parsed::parse(bytes, None).unwrap()
    }

    #[test]
    fn index_entries_and_their_sizes_are_capped() {
        assert!(check_manifest(&index(MAX_INDEX_ENTRIES, 2)).is_ok());
        let e = check_manifest(&index(MAX_INDEX_ENTRIES + 1, 2)).unwrap_err();
        assert!(e.to_string().contains("1001 manifests"), "{e}");
        assert!(check_manifest(&index(1, MAX_MANIFEST + 1)).is_err());
    }

    #[test]
    fn config_diff_ids_and_history_are_capped() {
        let mut c = ImageConfig::default();
        c.rootfs.diff_ids = vec![crate::Digest::of(b"x"); MAX_LAYERS];
        c.history = vec![Default::default(); MAX_HISTORY];
        assert!(check_config(&c, "config").is_ok());
        c.rootfs.diff_ids.push(crate::Digest::of(b"y"));
        assert!(check_config(&c, "config").is_err());
        c.rootfs.diff_ids.pop();
        c.history.push(Default::default());
        let e = check_config(&c, "config").unwrap_err();
        assert!(e.to_string().contains("history entries"), "{e}");
    }
}
