//! Small filesystem helpers shared by the store's modules.

use std::path::Path;

use crate::error::{IoContext, Result};

/// Removes a file or a directory tree without following symlinks; a missing path is fine.
pub(crate) fn remove_all(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(crate::StoreError::io(
                format!("inspecting {}", path.display()),
                e,
            ));
        }
    };
    if meta.is_dir() {
        std::fs::remove_dir_all(path).ctx(|| format!("removing {}", path.display()))
    } else {
        std::fs::remove_file(path).ctx(|| format!("removing {}", path.display()))
    }
}

/// Total bytes of regular files under `path` (not following symlinks).
pub(crate) fn disk_usage(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
