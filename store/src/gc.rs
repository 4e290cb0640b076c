//! Garbage collection: the index, container records and build cache in, unreferenced blobs
//! and snapshots removed out. Runs only with the store lock held exclusive (lock.rs).
//!
//! Mark: every root in `index.json` (tagged or not), every image a container uses →
//! manifests (all children of an index) → config and layers; the configs' diff-ids → chain-ids
//! → snapshots; and every build cache record's layer blob and snapshot (cache.rs). A document that cannot be read aborts the collection: not knowing what it
//! references, gc deletes nothing (`berth system check` says what is wrong).
//! Sweep: everything else under `blobs/sha256/` and `snapshots/`.

use std::collections::HashSet;

use berth_oci::config::chain_ids;
use berth_oci::limits::MAX_CONFIG;
use berth_oci::{Descriptor, Digest, ImageConfig, ManifestValue};

use crate::error::{Result, StoreError};
use crate::layout::Store;

#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    pub bytes_freed: u64,
}

/// What the store's roots reference.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    pub blobs: HashSet<Digest>,
    pub snapshots: HashSet<String>,
}

impl Store {
    /// Collects garbage; waits for other processes to release the store.
    pub fn gc(&self) -> Result<GcReport> {
        self.store_lock().upgrade()?;
        let result = self.gc_locked();
        self.store_lock().downgrade()?;
        result
    }

    /// Collects garbage only if no other process is using the store; `None` when busy.
    pub fn try_gc(&self) -> Result<Option<GcReport>> {
        if !self.store_lock().try_upgrade()? {
            return Ok(None);
        }
        let result = self.gc_locked();
        self.store_lock().downgrade()?;
        result.map(Some)
    }

    fn gc_locked(&self) -> Result<GcReport> {
        let marks = self.mark()?;
        let mut report = GcReport::default();
        for entry in std::fs::read_dir(self.blobs_dir())
            .map_err(|e| StoreError::io("reading blobs", e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| marks.blobs.contains(&d));
            if !keep {
                report.bytes_freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                crate::fsutil::remove_all(&entry.path())?;
                report.blobs_removed += 1;
            }
        }
        for entry in std::fs::read_dir(self.snapshots_dir())
            .map_err(|e| StoreError::io("reading snapshots", e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !marks.snapshots.contains(&name) {
                report.bytes_freed += crate::fsutil::tree_size(&entry.path());
                crate::fsutil::remove_all(&entry.path())?;
                report.snapshots_removed += 1;
            }
        }
        Ok(report)
    }

    /// Marks from every root.
    pub(crate) fn mark(&self) -> Result<Marks> {
        let mut marks = Marks::default();
        let index = crate::index::read_index(self)?;
        let mut roots: Vec<Descriptor> = index.manifests;
        for c in self.container_records()? {
            roots.push(Descriptor::new(
                berth_oci::media_type::OCI_MANIFEST,
                c.image,
                0,
            ));
        }
        for root in &roots {
            self.mark_manifest(root, &mut marks)?;
        }
        // Compressed copies of kept layers (compress.rs) stay with them.
        let kept: Vec<Digest> = marks.blobs.iter().cloned().collect();
        for d in kept {
            marks.blobs.extend(self.compressed_variants(&d));
        }
        for (_, record) in self.cache_records()? {
            if let Some(layer) = record.layer {
                marks.blobs.insert(layer.diff_id);
                marks.snapshots.insert(layer.chain_id.hex().to_owned());
            }
        }
        Ok(marks)
    }

    fn mark_manifest(&self, desc: &Descriptor, marks: &mut Marks) -> Result<()> {
        if !marks.blobs.insert(desc.digest.clone()) {
            return Ok(());
        }
        let parsed = self.read_manifest(desc)?;
        match parsed.value {
            ManifestValue::Index(index) => {
                for child in &index.manifests {
                    if self.has_blob(&child.digest) {
                        self.mark_manifest(child, marks)?;
                    }
                }
            }
            ManifestValue::Manifest(m) => {
                marks.blobs.insert(m.config.digest.clone());
                marks
                    .blobs
                    .extend(m.layers.iter().map(|l| l.digest.clone()));
                let config = ImageConfig::parse(&self.read_blob(&m.config.digest, MAX_CONFIG)?)
                    .map_err(|e| StoreError::Malformed {
                        what: format!("config {}", m.config.digest),
                        reason: e.to_string(),
                    })?;
                marks.snapshots.extend(
                    chain_ids(&config.rootfs.diff_ids)
                        .iter()
                        .map(|c| c.hex().to_owned()),
                );
            }
        }
        Ok(())
    }
}
