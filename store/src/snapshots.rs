//! Snapshots: an image's layer blobs in, one unpacked directory per layer out
//! (`snapshots/<chain-id hex>/`), ready to be overlay lower dirs.
//!
//! A layer is unpacked into a fresh directory under `tmp/`, its diff-id (the sha256 of the
//! uncompressed stream, computed while unpacking) is checked against the config's
//! `rootfs.diff_ids`, and the directory is renamed into place. A snapshot is therefore either
//! complete or absent; when two processes unpack the same layer at once, the first rename
//! wins and the second copy is dropped.

use std::path::{Path, PathBuf};

use berth_oci::config::chain_ids;
use berth_oci::{Descriptor, Digest};

use crate::error::{IoContext, Result, StoreError};
use crate::images::{Image, layer_compression};
use crate::layer::unpack::{UnpackOptions, UnpackReport, unpack};
use crate::layout::{Store, unique_tmp_path};

impl Store {
    /// Makes sure every layer of `image` has its snapshot; returns the snapshot directories,
    /// bottom layer first.
    pub fn ensure_snapshots(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let diff_ids = &image.config.rootfs.diff_ids;
        let chains = chain_ids(diff_ids);
        let mut dirs = Vec::with_capacity(chains.len());
        for ((layer, diff_id), chain) in image
            .manifest_value
            .layers
            .iter()
            .zip(diff_ids)
            .zip(&chains)
        {
            let dir = self.snapshot_path(chain);
            if !dir.is_dir() {
                self.unpack_snapshot(layer, diff_id, chain, &UnpackOptions::default())?;
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }

    /// Unpacks one layer blob into `snapshots/<chain>`, checking its diff-id.
    pub fn unpack_snapshot(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        chain: &Digest,
        options: &UnpackOptions,
    ) -> Result<UnpackReport> {
        let tmp = unique_tmp_path(&self.tmp_dir(), "snapshot");
        // The layer's root `/`: the image's `./` entry, if any, sets its own mode.
        crate::files::create_dir_mode(&tmp, crate::files::TREE_ROOT)
            .ctx(|| format!("creating {}", tmp.display()))?;
        let result = (|| {
            let blob = std::io::BufReader::with_capacity(1 << 20, self.open_blob(&layer.digest)?);
            let reader = crate::layer::decompress(blob, layer_compression(layer))
                .ctx(|| format!("decompressing layer {}", layer.digest))?;
            let report = unpack(reader, &tmp, options)?;
            if report.diff_id != *diff_id {
                return Err(StoreError::DigestMismatch {
                    expected: diff_id.clone(),
                    found: report.diff_id,
                });
            }
            self.place_snapshot(&tmp, chain)?;
            Ok(report)
        })();
        let _ = crate::fsutil::remove_all(&tmp);
        result
    }

    /// Renames the complete directory `from` into place as the snapshot `chain`, and syncs
    /// `snapshots/`. When another process placed the same snapshot first (the same bytes),
    /// theirs is kept and `from` is left for the caller to remove.
    pub(crate) fn place_snapshot(&self, from: &Path, chain: &Digest) -> Result<()> {
        let target = self.snapshot_path(chain);
        match std::fs::rename(from, &target) {
            Ok(()) => {}
            Err(e)
                if target.is_dir()
                    && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {}
            Err(e) => {
                return Err(StoreError::io(
                    format!("renaming into {}", target.display()),
                    e,
                ));
            }
        }
        crate::layout::sync_dir(&self.snapshots_dir())
    }
}
