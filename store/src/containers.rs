//! Containers' records (`containers/<id>/container.json`: what runs, from which image, by
//! which process, and how it ended). A record's image stays alive while the record exists
//! (`rmi` refuses, gc keeps its blobs and snapshots), and so do the volumes it names
//! (volumes.rs).
//!
//! A container ID becomes a path: it is checked to be hex, so it never climbs out of
//! `containers/`.

use serde::{Deserialize, Serialize};

use berth_oci::Digest;

use crate::error::{Result, StoreError};
use crate::layout::Store;

/// `containers/<id>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Manifest digest of the image the container runs (keeps the image alive).
    pub image: Digest,
    #[serde(default)]
    pub image_name: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The process that runs the container: `berth run` itself, or its monitor with `-d`.
    #[serde(default)]
    pub pid: Option<u32>,
    /// That process's start time (`/proc/PID/stat` field 22): with the PID, what names the
    /// process; a PID alone may have been reused by an unrelated process since.
    #[serde(default)]
    pub pid_start: Option<u64>,
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(default)]
    pub memory: Option<i64>,
    /// What `-v` mounted, as `ps` shows it: a volume's name or a bind's host path.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// The volumes the container mounts (by name): they are kept while the record exists.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// How many times the restart policy (`--restart`) has started the container again.
    #[serde(default)]
    pub restart_count: u32,
    /// When the container last started and last ended (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Whether the OOM killer ended the container's last run.
    #[serde(default)]
    pub oom_killed: bool,
}

/// A random ID: 64 hex digits, as Docker's container and volume IDs.
pub fn random_id() -> String {
    let mut seed = std::fs::read("/proc/sys/kernel/random/uuid").unwrap_or_default();
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    seed.extend_from_slice(
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes(),
    );
    berth_oci::Digest::of(&seed).hex().to_owned()
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

    /// Replaces `containers/<id>/container.json` atomically (rename, no fsync: see
    /// `layout::replace_file`).
    pub fn write_container_record(&self, record: &ContainerRecord) -> Result<()> {
        let json = serde_json::to_vec(record).expect("a record serializes");
        crate::layout::replace_file(
            &self.container_dir(&record.id)?.join("container.json"),
            &json,
            &self.tmp_dir(),
            false,
        )
    }

    /// One container's record, as written in `containers/<id>/container.json`.
    pub fn container_record(&self, dir: &std::path::Path) -> Option<ContainerRecord> {
        let bytes = std::fs::read(dir.join("container.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes a container's directory (its upper dir with it).
    pub fn remove_container(&self, id: &str) -> Result<()> {
        crate::fsutil::remove_all(&self.container_dir(id)?)
    }

    /// Marks the container as stopped by its user (`stop`, `kill`): its restart policy does
    /// not start it again until `start` or `restart` clears the mark, as Docker's manual stop.
    pub fn mark_container_stopped(&self, id: &str, stopped: bool) -> Result<()> {
        let mark = self.container_dir(id)?.join("stopped");
        if stopped {
            crate::files::write_mode(&mark, b"", crate::files::PRIVATE_FILE)
                .map_err(|e| StoreError::io(format!("writing {}", mark.display()), e))
        } else {
            match std::fs::remove_file(&mark) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(StoreError::io(format!("removing {}", mark.display()), e))
                }
                _ => Ok(()),
            }
        }
    }

    /// Whether [`Store::mark_container_stopped`] marked the container in `dir`.
    pub fn container_stopped_by_user(&self, dir: &std::path::Path) -> bool {
        dir.join("stopped").exists()
    }

    /// Every container record in the store (a record that does not read, left by a crash
    /// mid-write of an older berth, is passed over).
    pub fn container_records(&self) -> Result<Vec<ContainerRecord>> {
        let Ok(dir) = std::fs::read_dir(self.containers_dir()) else {
            return Ok(Vec::new());
        };
        Ok(dir
            .flatten()
            .filter_map(|entry| self.container_record(&entry.path()))
            .collect())
    }
}
