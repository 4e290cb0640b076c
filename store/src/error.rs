//! The store's error type: facts in every variant, no strings to parse.

use berth_oci::{Digest, ReferenceError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(
        "no space left on the device holding the store ({context}): free some space, or run `berth system prune`"
    )]
    NoSpace { context: String },
    #[error("blob {expected}: digest mismatch: the content hashes to {found}")]
    DigestMismatch { expected: Digest, found: Digest },
    #[error("blob {digest}: size mismatch: expected {expected} bytes, got {found}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        found: u64,
    },
    #[error("blob {0} is not in the store")]
    BlobMissing(Digest),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("image name {name:?} is ambiguous: it matches {count} images")]
    Ambiguous { name: String, count: usize },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{what} is malformed: {reason}")]
    Malformed { what: String, reason: String },
    #[error("layer entry {entry:?}: {reason}")]
    HostileLayer { entry: String, reason: String },
    #[error("layer expands past the {limit}-byte limit (set BERTH_MAX_LAYER_SIZE to raise it)")]
    LayerTooLarge { limit: u64 },
    #[error("image {image} is used by container {container}; stop and remove it first, or use -f")]
    InUse { image: String, container: String },
    #[error("the store is busy: another berth process holds it ({what})")]
    Busy { what: String },
    #[error("refusing {path}: {reason}; remove it if berth should make it again")]
    UnsafeFile {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A network or lease refused: a name taken, a subnet overlapping, a port published.
    #[error("{0}")]
    Network(String),
    #[error("invalid {what} name {name:?}: {rule}")]
    InvalidName {
        what: &'static str,
        name: String,
        rule: &'static str,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Wraps an I/O error, recognising ENOSPC so the message says what to do.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        let context = context.into();
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return StoreError::NoSpace { context };
        }
        StoreError::Io { context, source }
    }
}

/// Attaches a context to I/O results.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| StoreError::io(context(), e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| StoreError::io(context(), e.into()))
    }
}
