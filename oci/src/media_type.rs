//! Media types: the strings of the OCI image spec and of Docker's schema 2, in; what kind of
//! object each names (manifest, index, config, layer with its compression), out.
//!
//! berth reads every type listed here and writes the OCI ones by default.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Some tools write uncompressed Docker layers with this type.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The `Accept` list for fetching any manifest or index berth can read.
pub const MANIFEST_ACCEPT: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Guesses from the first bytes of a blob (gzip and zstd magic numbers), for inputs that
    /// carry no media type (`import`, docker archives).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_layer_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

/// The OCI media type for the same bytes as `media_type`: Docker's layer and config types
/// map to their OCI twins, every other type is returned as it is. An OCI manifest lists
/// only OCI types (strict readers such as umoci refuse a mix), so a layer that came with a
/// Docker type is relabelled, not rewritten, when an OCI manifest lists it.
pub fn oci_equivalent(media_type: &str) -> &str {
    match media_type {
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER_TAR => OCI_LAYER_TAR,
        DOCKER_LAYER_FOREIGN_GZIP => OCI_LAYER_NONDIST_GZIP,
        DOCKER_CONFIG => OCI_CONFIG,
        other => other,
    }
}

/// What a media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Index,
    Config,
    Layer(Compression),
    Other,
}

/// Classifies a media type string.
pub fn kind(media_type: &str) -> Kind {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        OCI_INDEX | DOCKER_MANIFEST_LIST => Kind::Index,
        OCI_CONFIG | DOCKER_CONFIG => Kind::Config,
        OCI_LAYER_TAR | OCI_LAYER_NONDIST_TAR | DOCKER_LAYER_TAR => Kind::Layer(Compression::None),
        OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN_GZIP => {
            Kind::Layer(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD => Kind::Layer(Compression::Zstd),
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_types_have_oci_twins_of_the_same_kind() {
        for t in [
            DOCKER_LAYER_GZIP,
            DOCKER_LAYER_TAR,
            DOCKER_LAYER_FOREIGN_GZIP,
            DOCKER_CONFIG,
        ] {
            let oci = oci_equivalent(t);
            assert!(oci.starts_with("application/vnd.oci."), "{t} -> {oci}");
            assert_eq!(kind(oci), kind(t));
        }
        assert_eq!(oci_equivalent(OCI_LAYER_ZSTD), OCI_LAYER_ZSTD);
        assert_eq!(oci_equivalent("text/plain"), "text/plain");
    }

    #[test]
    fn classifies_oci_and_docker_types() {
        assert_eq!(kind(DOCKER_MANIFEST_LIST), Kind::Index);
        assert_eq!(kind(OCI_MANIFEST), Kind::Manifest);
        assert_eq!(kind(DOCKER_LAYER_GZIP), Kind::Layer(Compression::Gzip));
        assert_eq!(kind(OCI_LAYER_ZSTD), Kind::Layer(Compression::Zstd));
        assert_eq!(kind("text/plain"), Kind::Other);
    }

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
    }
}
