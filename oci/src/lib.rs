//! berth's image model and transport contracts. Owns data, not I/O: everything here is pure
//! except [`transport::copy_image`], which only calls the traits it is given.
//!
//! | module | in → out |
//! |---|---|
//! | [`digest`] | `sha256:<hex>` strings and byte streams → validated [`Digest`]s |
//! | [`media_type`] | media type strings → what they name ([`media_type::Kind`]) |
//! | [`manifest`] | manifest/index JSON → [`Descriptor`], [`ImageManifest`], [`ImageIndex`], raw bytes kept in [`Parsed`] |
//! | [`config`] | image config JSON → [`ImageConfig`] (Docker's extra fields kept); diff-ids → chain-ids |
//! | [`reference`] | user strings → normalized [`Reference`]s (Docker's rules) |
//! | [`platform`] | `os/arch/variant` → [`Platform`]; index selection |
//! | [`limits`] | caps for reading untrusted documents into memory |
//! | [`transport`] | [`ImageSource`] / [`ImageDestination`] and the one [`copy_image`] |
//! | [`xattr`] | xattr names → whether an overlay filesystem reads them (never in a layer) |
//!
//! Crossing the boundary: every type above; `store`, `registry-client` and the archive
//! formats implement the transport traits, `cli` wires them together. The OCI spec types of
//! the `oci-spec` crate are re-exported as [`spec`] for callers that want them; berth's own
//! types above are used where a lossless round trip of Docker's fields matters.

pub mod config;
pub mod digest;
pub mod limits;
pub mod manifest;
pub mod media_type;
pub mod platform;
pub mod reference;
pub mod transport;
pub mod xattr;

pub use oci_spec::image as spec;

pub use config::{ContainerConfig, History, ImageConfig, RootFs};
pub use digest::{Digest, DigestError, Digester};
pub use manifest::{Descriptor, ImageIndex, ImageManifest, ManifestValue, Parsed};
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};
pub use transport::{
    BlobReader, CopyEvent, CopyOptions, CopyOutcome, ImageDestination, ImageSource, TransportError,
    copy_image,
};
