//! Which images containers use: `containers/<id>/container.json` in, references out; and
//! named volumes: a name in, `volumes/<name>/_data` out.
//!
//! The runtime issue owns the full container state; the store reads only the fields that
//! keep an image alive (`rmi` refuses, gc keeps its blobs and snapshots).
//!
//! Names that become paths are checked here, so none can climb out of its directory: a
//! container ID is hex, a volume name is Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.

use serde::{Deserialize, Serialize};

use berth_oci::Digest;

use crate::error::{IoContext, Result, StoreError};
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

    /// `containers/<id>/`, created empty and private (files.rs).
    pub fn create_container_dir(&self, id: &str) -> Result<std::path::PathBuf> {
        let dir = self.container_dir(id)?;
        crate::files::create_dir(&dir)
            .map_err(|e| crate::StoreError::io(format!("creating {}", dir.display()), e))?;
        Ok(dir)
    }

    /// `containers/<id>/` (which may not exist); an ID that is not hex is refused.
    pub fn container_dir(&self, id: &str) -> Result<std::path::PathBuf> {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::InvalidName {
                what: "container ID",
                name: id.to_owned(),
                rule: "a container ID is hexadecimal",
            });
        }
        Ok(self.containers_dir().join(id))
    }

    /// The data directory of the named volume `name` (`volumes/<name>/_data`), created if
    /// missing: private above, the volume's own root open to the container's users. Names
    /// are Docker's: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so `..` or `a/b` never name a path.
    pub fn volume(&self, name: &str) -> Result<std::path::PathBuf> {
        let mut bytes = name.bytes();
        let valid = name.len() >= 2
            && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(StoreError::InvalidName {
                what: "volume",
                name: name.to_owned(),
                rule: "a volume name is [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at least 2 characters), as in Docker",
            });
        }
        let dir = self.root().join("volumes").join(name);
        crate::files::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let data = dir.join("_data");
        crate::files::ensure_dir_mode(&data, crate::files::TREE_ROOT)
            .ctx(|| format!("creating {}", data.display()))?;
        Ok(data)
    }

    /// Replaces `containers/<id>/container.json` atomically (rename, no fsync: see
    /// `layout::replace_file`).
    pub fn write_container_record(&self, id: &str, json: &[u8]) -> Result<()> {
        crate::layout::replace_file(
            &self.container_dir(id)?.join("container.json"),
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
        crate::fsutil::remove_all(&self.container_dir(id)?)
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
