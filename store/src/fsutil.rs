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

/// Reads until `buf` is full or the reader ends; how many bytes it holds.
pub(crate) fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Turns `O_DIRECT` on or off for an open file (its later reads and writes).
pub(crate) fn set_direct(file: &std::fs::File, on: bool) -> std::io::Result<()> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
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
