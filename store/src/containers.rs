//! Which images containers use: `containers/<id>/container.json` in, references out.
//!
//! The runtime issue owns the full container state; the store reads only the fields that
//! keep an image alive (`rmi` refuses, gc keeps its blobs and snapshots).

use serde::{Deserialize, Serialize};

use berth_oci::Digest;

use crate::error::Result;
use crate::layout::Store;

/// The part of a container's record the store cares about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerUse {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Manifest digest of the image the container runs.
    pub image: Digest,
}

impl Store {
    /// Runs `f` without holding the store lock: for the life of a container, which may be
    /// long, so gc and prune are not held up. What the container uses stays safe meanwhile:
    /// its record keeps its image (and so its snapshots) marked.
    pub fn unlocked<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        self.store_lock().unlock()?;
        let out = f();
        self.store_lock().relock_shared()?;
        Ok(out)
    }

    /// `containers/<id>/`, created empty.
    pub fn create_container_dir(&self, id: &str) -> Result<std::path::PathBuf> {
        let dir = self.containers_dir().join(id);
        std::fs::create_dir(&dir)
            .map_err(|e| crate::StoreError::io(format!("creating {}", dir.display()), e))?;
        Ok(dir)
    }

    /// Replaces `containers/<id>/container.json` atomically (rename, no fsync: see
    /// `layout::replace_file`).
    pub fn write_container_record(&self, id: &str, json: &[u8]) -> Result<()> {
        crate::layout::replace_file(
            &self.containers_dir().join(id).join("container.json"),
            json,
            &self.tmp_dir(),
            false,
        )
    }

    /// Every `container.json`, raw.
    pub fn container_records(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if let Ok(dir) = std::fs::read_dir(self.containers_dir()) {
            for entry in dir.flatten() {
                if let Ok(bytes) = std::fs::read(entry.path().join("container.json")) {
                    out.push(bytes);
                }
            }
        }
        Ok(out)
    }

    /// Removes a container's directory (its upper dir with it).
    pub fn remove_container(&self, id: &str) -> Result<()> {
        crate::fsutil::remove_all(&self.containers_dir().join(id))
    }

    /// Every container record in the store.
    pub fn container_uses(&self) -> Result<Vec<ContainerUse>> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.containers_dir()) else {
            return Ok(out);
        };
        for entry in dir.flatten() {
            let path = entry.path().join("container.json");
            if let Ok(bytes) = std::fs::read(&path)
                && let Ok(record) = serde_json::from_slice::<ContainerUse>(&bytes)
            {
                out.push(record);
            }
        }
        Ok(out)
    }
}
