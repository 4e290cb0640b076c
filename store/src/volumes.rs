//! Volumes: `volumes/<name>/_data` (what containers see) and `volumes/<name>/volume.json`
//! (when it was made, its labels). A name is Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, checked
//! before it meets the filesystem, so it is always one path component under `volumes/`;
//! what a container wrote in `_data` is only ever removed (`remove_dir_all` works with *at
//! calls and never follows a symlink) or measured (without following symlinks).
//!
//! Containers name the volumes they mount in their records: a volume a record names is in
//! use and is not removed. Removal holds the store lock exclusive, so no `run` is between
//! mounting a volume and writing its record meanwhile.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::layout::Store;

/// The label Docker puts on the volumes it makes for `-v /path` (no name given).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// `volumes/<name>/volume.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeRecord {
    pub name: String,
    /// RFC 3339, seconds.
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl VolumeRecord {
    /// A volume made for `-v /path` without a name.
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// What [`Store::remove_volume`] did.
#[derive(Debug, PartialEq)]
pub enum VolumeRemoval {
    /// Removed; the bytes its data held.
    Removed { bytes: u64 },
    /// Kept: these containers (IDs) use it.
    InUse(Vec<String>),
    /// There is no such volume.
    Missing,
}

/// Checks a volume name: Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 255 bytes.
pub fn check_volume_name(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let valid = name.len() >= 2
        && name.len() <= 255
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what: "volume",
            name: name.to_owned(),
            rule: "a volume name is [a-zA-Z0-9][a-zA-Z0-9_.-]+ (2 to 255 characters), as in Docker",
        })
    }
}

/// A random volume name: 64 hex digits, as Docker's.
pub fn random_name() -> String {
    crate::containers::random_id()
}

impl Store {
    fn volumes_dir(&self) -> PathBuf {
        self.root().join("volumes")
    }

    /// `volumes/<name>/` for a checked name (which may not exist).
    fn volume_dir(&self, name: &str) -> Result<PathBuf> {
        check_volume_name(name)?;
        Ok(self.volumes_dir().join(name))
    }

    /// The data directory of volume `name` (`volumes/<name>/_data`), made with `labels` if
    /// missing (an existing volume keeps its own): private above, the volume's own root
    /// open to the container's users. Returns its record and whether it was made now.
    pub fn create_volume(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<(PathBuf, VolumeRecord, bool)> {
        let dir = self.volume_dir(name)?;
        crate::files::create_dir_all(&self.volumes_dir())
            .ctx(|| format!("creating {}", self.volumes_dir().display()))?;
        let made = match crate::files::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(StoreError::io(format!("creating {}", dir.display()), e)),
        };
        let data = dir.join("_data");
        crate::files::ensure_dir_mode(&data, crate::files::TREE_ROOT)
            .ctx(|| format!("creating {}", data.display()))?;
        let record = match (made, self.volume_record(name)?) {
            (false, Some(r)) => r,
            _ => {
                let record = VolumeRecord {
                    name: name.to_owned(),
                    created: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        .to_string(),
                    labels,
                };
                let json = serde_json::to_vec(&record).expect("a record serializes");
                crate::layout::replace_file(
                    &dir.join("volume.json"),
                    &json,
                    &self.tmp_dir(),
                    false,
                )?;
                record
            }
        };
        Ok((data, record, made))
    }

    /// The data directory of volume `name`, made (without labels) if missing.
    pub fn volume(&self, name: &str) -> Result<PathBuf> {
        Ok(self.create_volume(name, BTreeMap::new())?.0)
    }

    /// Volume `name`'s record; `None` when there is no such volume. A volume made by an
    /// older berth (no `volume.json`) gets its directory's time and no labels.
    pub fn volume_record(&self, name: &str) -> Result<Option<VolumeRecord>> {
        let dir = self.volume_dir(name)?;
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            return Ok(None);
        };
        if !meta.is_dir() {
            return Ok(None);
        }
        if let Ok(bytes) = std::fs::read(dir.join("volume.json"))
            && let Ok(record) = serde_json::from_slice::<VolumeRecord>(&bytes)
        {
            return Ok(Some(VolumeRecord {
                name: name.to_owned(),
                ..record
            }));
        }
        let created = meta
            .modified()
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default();
        Ok(Some(VolumeRecord {
            name: name.to_owned(),
            created,
            labels: BTreeMap::new(),
        }))
    }

    /// Where volume `name`'s data is (`volumes/<name>/_data`), whether or not it exists.
    pub fn volume_mountpoint(&self, name: &str) -> Result<PathBuf> {
        Ok(self.volume_dir(name)?.join("_data"))
    }

    /// Every volume, by name (entries whose name is not a volume name are passed over).
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let Ok(dir) = std::fs::read_dir(self.volumes_dir()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_volume_name(&name).is_err() {
                continue;
            }
            if let Some(r) = self.volume_record(&name)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The containers (IDs) whose records name volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .container_records()?
            .into_iter()
            .filter(|c| c.volumes.iter().any(|v| v == name))
            .map(|c| c.id)
            .collect())
    }

    /// Removes volume `name` unless a container's record names it. Holds the store lock
    /// exclusive meanwhile (see the module's doc), waiting for other processes to let go.
    pub fn remove_volume(&self, name: &str) -> Result<VolumeRemoval> {
        let dir = self.volume_dir(name)?;
        self.store_lock().upgrade()?;
        let result = self.remove_volume_locked(name, &dir);
        self.store_lock().downgrade()?;
        result
    }

    /// As [`Store::remove_volume`] when no other process is using the store; `None`
    /// (nothing removed) when one is.
    pub fn try_remove_volume(&self, name: &str) -> Result<Option<VolumeRemoval>> {
        let dir = self.volume_dir(name)?;
        if !self.store_lock().try_upgrade()? {
            return Ok(None);
        }
        let result = self.remove_volume_locked(name, &dir);
        self.store_lock().downgrade()?;
        result.map(Some)
    }

    fn remove_volume_locked(&self, name: &str, dir: &std::path::Path) -> Result<VolumeRemoval> {
        if self.volume_record(name)?.is_none() {
            return Ok(VolumeRemoval::Missing);
        }
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Ok(VolumeRemoval::InUse(users));
        }
        let bytes = tree_size(&dir.join("_data"));
        crate::fsutil::remove_all(dir)?;
        Ok(VolumeRemoval::Removed { bytes })
    }
}

/// The bytes the regular files under `dir` hold ([`crate::tree_size`]: no symlink is
/// followed, even one a container swaps in while the walk runs).
pub fn tree_size(dir: &std::path::Path) -> u64 {
    crate::fsutil::tree_size(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_dockers_and_never_paths() {
        for good in ["ab", "data", "my_vol.1-x", "0a"] {
            assert!(check_volume_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "..", ".a", "-a", "_a", "a/b", "../x", "a b", "/abs", "a\0b", "ü1",
        ] {
            assert!(check_volume_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_volume_name(&"a".repeat(256)).is_err());
    }
}
