//! Tags: `index.json` of the OCI layout in, names → manifest descriptors out.
//!
//! Each tagged image is one descriptor in `index.json` with the annotation
//! `org.opencontainers.image.ref.name` set to its full normalized reference
//! (`docker.io/library/app:latest`), so `skopeo inspect oci:<root>:<reference>` finds it.
//! Every change is a read-modify-write under `locks/index.lock` with an atomic replace, so
//! concurrent processes lose no tag. A re-tagged image whose last name is gone is not kept
//! as a `<none>` image: its blobs are reclaimed by the next gc.

use berth_oci::limits::{MAX_LAYOUT_FILE, read_limited};
use berth_oci::manifest::{ANNOTATION_REF_NAME, to_canonical_json};
use berth_oci::{Descriptor, ImageIndex, Reference};

use crate::error::{IoContext, Result, StoreError};
use crate::layout::{Store, atomic_write};

/// One name in the index.
#[derive(Debug, Clone)]
pub struct TagEntry {
    pub reference: Reference,
    pub manifest: Descriptor,
}

pub(crate) fn read_index(store: &Store) -> Result<ImageIndex> {
    let path = store.root().join("index.json");
    let file = std::fs::File::open(&path).ctx(|| format!("opening {}", path.display()))?;
    let bytes =
        read_limited(file, MAX_LAYOUT_FILE, "index.json").map_err(|e| StoreError::Malformed {
            what: "index.json".into(),
            reason: e.to_string(),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Malformed {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn write_index(store: &Store, index: &ImageIndex) -> Result<()> {
    atomic_write(
        &store.root().join("index.json"),
        &to_canonical_json(index),
        &store.tmp_dir(),
    )
}

fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations
        .get(ANNOTATION_REF_NAME)
        .map(String::as_str)
}

impl Store {
    /// Every name in the index, in index order. Entries whose name is not a reference berth
    /// understands (written by another tool) are listed under the error-free ones only.
    pub fn tags(&self) -> Result<Vec<TagEntry>> {
        let index = read_index(self)?;
        Ok(index
            .manifests
            .into_iter()
            .filter_map(|d| {
                let reference = Reference::parse(ref_name(&d)?).ok()?;
                Some(TagEntry {
                    reference,
                    manifest: d,
                })
            })
            .collect())
    }

    /// Every root in the index with its name, if it has one (unnamed roots are images loaded
    /// without a name, shown as `<none>`).
    pub fn roots(&self) -> Result<Vec<(Option<Reference>, Descriptor)>> {
        let index = read_index(self)?;
        Ok(index
            .manifests
            .into_iter()
            .filter_map(|d| match ref_name(&d) {
                None => Some((None, d)),
                Some(name) => Reference::parse(name).ok().map(|r| (Some(r), d)),
            })
            .collect())
    }

    /// Keeps an image without a name (so gc leaves it), unless the index already has it.
    pub fn add_untagged(&self, manifest: &Descriptor) -> Result<()> {
        self.update_index(|index| {
            if index.manifests.iter().any(|d| d.digest == manifest.digest) {
                return false;
            }
            let mut desc = Descriptor::new(
                manifest.media_type.clone(),
                manifest.digest.clone(),
                manifest.size,
            );
            desc.platform = manifest.platform.clone();
            index.manifests.push(desc);
            true
        })
    }

    /// Drops the unnamed entry of a root whose names were all removed (`rmi`).
    pub fn remove_root(&self, root: &Descriptor) -> Result<()> {
        self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|d| d.digest != root.digest);
            before != index.manifests.len()
        })
    }

    /// Drops every unnamed root (`system prune`); returns how many.
    pub fn remove_untagged(&self) -> Result<usize> {
        let mut removed = 0;
        self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|d| ref_name(d).is_some());
            removed = before - index.manifests.len();
            removed > 0
        })?;
        Ok(removed)
    }

    /// Points `reference` at `manifest`, replacing what it named before.
    pub fn set_tag(&self, reference: &Reference, manifest: &Descriptor) -> Result<()> {
        let name = reference.to_string();
        self.update_index(|index| {
            index.manifests.retain(|d| {
                ref_name(d) != Some(name.as_str())
                    && !(ref_name(d).is_none() && d.digest == manifest.digest)
            });
            let mut desc = Descriptor::new(
                manifest.media_type.clone(),
                manifest.digest.clone(),
                manifest.size,
            );
            desc.platform = manifest.platform.clone();
            desc.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), name.clone());
            index.manifests.push(desc);
            index
                .manifests
                .sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
            true
        })
    }

    /// Removes a name; `false` when it was not there.
    pub fn remove_tag(&self, reference: &Reference) -> Result<bool> {
        let name = reference.to_string();
        let mut removed = false;
        self.update_index(|index| {
            let before = index.manifests.len();
            index
                .manifests
                .retain(|d| ref_name(d) != Some(name.as_str()));
            removed = index.manifests.len() != before;
            removed
        })?;
        Ok(removed)
    }

    /// Read-modify-write of `index.json` under the index lock; `change` returns whether it
    /// changed anything (then the file is rewritten).
    fn update_index(&self, change: impl FnOnce(&mut ImageIndex) -> bool) -> Result<()> {
        let _guard = self.index_lock()?;
        let mut index = read_index(self)?;
        if change(&mut index) {
            write_index(self, &index)?;
        }
        Ok(())
    }
}
