//! Descriptors, manifests and indexes: raw JSON bytes in, typed values out (and back).
//!
//! Reading keeps the raw bytes beside the parsed value ([`Parsed`]): a digest is always
//! computed over the bytes that were received or written, never over a re-serialisation.
//! Writing goes through [`to_canonical_json`], so the same value always has the same digest.
//! Fields berth does not model are kept in `extra` maps so nothing is lost on a round trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, Kind};
use crate::platform::Platform;

/// Annotation that names a manifest's reference in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation with the creation time of an image.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// A content descriptor (OCI image spec, descriptor.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// A descriptor of `bytes` with the given media type.
    pub fn of(media_type: impl Into<String>, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
    }

    pub fn kind(&self) -> Kind {
        media_type::kind(&self.media_type)
    }
}

/// The platform object inside an index's descriptors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl DescriptorPlatform {
    pub fn to_platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// An image manifest: OCI `image.manifest.v1` or Docker schema 2 (same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// An OCI manifest for a config and its layers, as berth writes them. Docker media types
    /// of the config and the layers become their OCI twins
    /// ([`media_type::oci_equivalent`]): one manifest, one family of types.
    pub fn new_oci(mut config: Descriptor, mut layers: Vec<Descriptor>) -> ImageManifest {
        let relabel = |d: &mut Descriptor| {
            d.media_type = media_type::oci_equivalent(&d.media_type).to_owned();
        };
        relabel(&mut config);
        layers.iter_mut().for_each(relabel);
        ImageManifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// An image index: OCI `image.index.v1` or a Docker manifest list (same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ImageIndex {
    fn default() -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_owned()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

/// A manifest or index as received: the raw bytes, their digest and the parsed value.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
    pub value: ManifestValue,
}

/// The parsed form of a [`Parsed`]. Values are short-lived and few, so the size difference
/// between the variants is not worth a box.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum ManifestValue {
    Manifest(ImageManifest),
    Index(ImageIndex),
}

/// Why bytes are not a manifest berth can read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("malformed {media_type} document: {source}")]
    Malformed {
        media_type: String,
        source: serde_json::Error,
    },
    #[error("manifest has schemaVersion {0}; only schema version 2 is supported")]
    SchemaVersion(u32),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    schema_version: Option<u32>,
}

impl Parsed {
    /// Parses manifest or index bytes. `declared` is the media type the transport reported
    /// (a `Content-Type` header or a descriptor); the document's own `mediaType` wins when
    /// present, and with neither the shape decides (`manifests` means an index).
    pub fn parse(bytes: Vec<u8>, declared: Option<&str>) -> Result<Parsed, ManifestError> {
        let malformed = |media_type: &str, source| ManifestError::Malformed {
            media_type: media_type.to_owned(),
            source,
        };
        let probe: Probe = serde_json::from_slice(&bytes).map_err(|e| malformed("manifest", e))?;
        if let Some(v) = probe.schema_version
            && v != 2
        {
            return Err(ManifestError::SchemaVersion(v));
        }
        let media_type = match (probe.media_type, declared) {
            (Some(t), _) => t,
            (None, Some(t)) if media_type::kind(t) != Kind::Other => t.to_owned(),
            (None, _) if probe.manifests.is_some() => media_type::OCI_INDEX.to_owned(),
            (None, _) => media_type::OCI_MANIFEST.to_owned(),
        };
        let value = match media_type::kind(&media_type) {
            Kind::Manifest => ManifestValue::Manifest(
                serde_json::from_slice(&bytes).map_err(|e| malformed(&media_type, e))?,
            ),
            Kind::Index => ManifestValue::Index(
                serde_json::from_slice(&bytes).map_err(|e| malformed(&media_type, e))?,
            ),
            _ => return Err(ManifestError::UnsupportedMediaType(media_type)),
        };
        Ok(Parsed {
            digest: Digest::of(&bytes),
            bytes,
            media_type,
            value,
        })
    }

    /// Serialises a value canonically and parses it back into a [`Parsed`].
    pub fn from_manifest(manifest: &ImageManifest) -> Parsed {
        let bytes = to_canonical_json(manifest);
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media_type::OCI_MANIFEST.into());
        Parsed {
            digest: Digest::of(&bytes),
            bytes,
            media_type,
            value: ManifestValue::Manifest(manifest.clone()),
        }
    }

    /// A descriptor of these bytes.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }
}

/// The one JSON encoding berth writes: compact, fields in declaration order, maps sorted
/// (every map in these types is a `BTreeMap`). The same value always gives the same bytes.
pub fn to_canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialising plain data cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_V2: &str = r#"{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
      "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"},
   "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,
      "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f"}]}"#;

    #[test]
    fn reads_docker_schema2_and_keeps_bytes() {
        let p = Parsed::parse(DOCKER_V2.as_bytes().to_vec(), None).unwrap();
        assert_eq!(p.media_type, media_type::DOCKER_MANIFEST);
        assert_eq!(p.digest, Digest::of(DOCKER_V2.as_bytes()));
        let ManifestValue::Manifest(m) = p.value else {
            panic!("not a manifest")
        };
        assert_eq!(
            m.layers[0].kind(),
            Kind::Layer(crate::media_type::Compression::Gzip)
        );
    }

    #[test]
    fn reads_manifest_list_by_shape() {
        let list = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":1,"digest":"sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f","platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;
        let p = Parsed::parse(list.as_bytes().to_vec(), None).unwrap();
        let ManifestValue::Index(i) = p.value else {
            panic!("not an index")
        };
        assert_eq!(
            i.manifests[0]
                .platform
                .as_ref()
                .unwrap()
                .to_platform()
                .to_string(),
            "linux/arm64/v8"
        );
    }

    #[test]
    fn rejects_schema1_and_garbage() {
        assert!(matches!(
            Parsed::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#.to_vec(), None),
            Err(ManifestError::SchemaVersion(1))
        ));
        assert!(Parsed::parse(b"not json".to_vec(), None).is_err());
        assert!(Parsed::parse(br#"{"mediaType":"text/plain"}"#.to_vec(), None).is_err());
    }

    #[test]
    fn an_oci_manifest_lists_only_oci_types() {
        let cfg = Descriptor::of(media_type::DOCKER_CONFIG, b"{}");
        let docker = Descriptor::of(media_type::DOCKER_LAYER_GZIP, b"a");
        let oci = Descriptor::of(media_type::OCI_LAYER_TAR, b"b");
        let m = ImageManifest::new_oci(cfg.clone(), vec![docker.clone(), oci.clone()]);
        assert_eq!(m.config.media_type, media_type::OCI_CONFIG);
        assert_eq!(m.config.digest, cfg.digest);
        assert_eq!(m.layers[0].media_type, media_type::OCI_LAYER_GZIP);
        assert_eq!(m.layers[0].digest, docker.digest);
        assert_eq!(m.layers[1], oci);
    }

    #[test]
    fn canonical_json_is_stable() {
        let cfg = Descriptor::of(media_type::OCI_CONFIG, b"{}");
        let m = ImageManifest::new_oci(cfg, vec![]);
        assert_eq!(to_canonical_json(&m), to_canonical_json(&m.clone()));
        let again: ImageManifest = serde_json::from_slice(&to_canonical_json(&m)).unwrap();
        assert_eq!(to_canonical_json(&again), to_canonical_json(&m));
    }
}
