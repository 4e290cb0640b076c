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
