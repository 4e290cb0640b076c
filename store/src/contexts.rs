//! `contexts/<key>`: the builder's stat→digest index per build context, as opaque bytes
//! (the builder owns the format). The key is the sha256 of the context's absolute path.

use berth_oci::Digest;

use crate::error::Result;
use crate::layout::Store;

impl Store {
    fn context_index_path(&self, context: &std::path::Path) -> std::path::PathBuf {
        let abs = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_owned());
        self.root()
            .join("contexts")
            .join(Digest::of(abs.as_os_str().as_encoded_bytes()).hex())
    }

    /// The saved index for a context directory, if any.
    pub fn read_context_index(&self, context: &std::path::Path) -> Option<Vec<u8>> {
        std::fs::read(self.context_index_path(context)).ok()
    }

    /// Saves the index for a context directory (atomically; the last writer wins).
    pub fn write_context_index(&self, context: &std::path::Path, bytes: &[u8]) -> Result<()> {
        crate::layout::atomic_write(&self.context_index_path(context), bytes, &self.tmp_dir())
    }
}
