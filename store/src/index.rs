//! Tags: `index.json` of the OCI layout in, names → manifest descriptors out.
//!
//! Each tagged image is one descriptor in `index.json` with the annotation
//! `org.opencontainers.image.ref.name` set to its full normalized reference
//! (`docker.io/library/app:latest`), so `skopeo inspect oci:<root>:<reference>` finds it.
//! Every change is a read-modify-write under `locks/index.lock` with an atomic replace, so
//! concurrent processes lose no tag. A re-tagged image whose last name is gone is not kept
//! as a `<none>` image: its blobs are reclaimed by the next gc.
//!
//! An image's `RepoDigests` (each `repository@digest` it was pulled from or pushed to, the
//! digest of the manifest as that registry stores it) ride on its entries too: the
//! annotation [`ANNOTATION_REPO_DIGESTS`], the same on every entry of that root. They go
//! when the image's last entry goes, and a repository's go when its last tag on the image
//! is removed, as Docker's.

use berth_oci::limits::{MAX_LAYOUT_FILE, read_limited};
use berth_oci::manifest::{ANNOTATION_REF_NAME, to_canonical_json};
use berth_oci::{Descriptor, ImageIndex, Reference};

use crate::error::{IoContext, Result, StoreError};
use crate::layout::{Store, atomic_write};

/// The annotation on an index entry listing its image's repository digests: full
/// references (`127.0.0.1:5000/app@sha256:…`), comma-separated.
pub const ANNOTATION_REPO_DIGESTS: &str = "berth.repo-digests";

/// How many repository digests an image keeps; past that the oldest go first.
const MAX_REPO_DIGESTS: usize = 64;

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

/// The repository digests an entry carries (those berth cannot parse left out).
pub(crate) fn repo_digests(desc: &Descriptor) -> Vec<Reference> {
    desc.annotations
        .get(ANNOTATION_REPO_DIGESTS)
        .map(|list| {
            list.split(',')
                .filter_map(|r| Reference::parse(r).ok())
                .filter(|r| r.digest().is_some())
                .collect()
        })
        .unwrap_or_default()
}

/// The repository digests of `root` in the index: those of its first entry that has any.
fn root_repo_digests(index: &ImageIndex, root: &berth_oci::Digest) -> Vec<Reference> {
    index
        .manifests
        .iter()
        .filter(|d| &d.digest == root)
        .map(repo_digests)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}

/// Sets the repository digests of every entry of `root`.
fn set_root_repo_digests(index: &mut ImageIndex, root: &berth_oci::Digest, list: &[Reference]) {
    let joined = list
        .iter()
        .map(Reference::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for d in index.manifests.iter_mut().filter(|d| &d.digest == root) {
        if joined.is_empty() {
            d.annotations.remove(ANNOTATION_REPO_DIGESTS);
        } else {
            d.annotations
                .insert(ANNOTATION_REPO_DIGESTS.to_owned(), joined.clone());
        }
    }
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

    /// Drops the unnamed entry of `root`, if the index has one (its names stay); whether
    /// there was one.
    pub fn remove_unnamed(&self, root: &berth_oci::Digest) -> Result<bool> {
        let mut removed = false;
        self.update_index(|index| {
            let before = index.manifests.len();
            index
                .manifests
                .retain(|d| !(ref_name(d).is_none() && d.digest == *root));
            removed = before != index.manifests.len();
            removed
        })?;
        Ok(removed)
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
            let kept = root_repo_digests(index, &manifest.digest);
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
            set_root_repo_digests(index, &manifest.digest, &kept);
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
            let Some(at) = index
                .manifests
                .iter()
                .position(|d| ref_name(d) == Some(name.as_str()))
            else {
                return false;
            };
            let root = index.manifests.remove(at).digest;
            removed = true;
            // The image's digests in that repository go with its last tag there.
            let repository = reference.repository();
            let tagged_there = index.manifests.iter().any(|d| {
                d.digest == root
                    && ref_name(d)
                        .and_then(|n| Reference::parse(n).ok())
                        .is_some_and(|r| r.repository() == repository)
            });
            if !tagged_there {
                let mut list = root_repo_digests(index, &root);
                list.retain(|r| r.repository() != repository);
                set_root_repo_digests(index, &root, &list);
            }
            true
        })?;
        Ok(removed)
    }

    /// Adds `repo_digest` (`repository@digest`: where a registry stores the image `root`, as
    /// a pull or a push found it) to the image's `RepoDigests`. Nothing when the index has
    /// no entry of `root` (the image was removed meanwhile).
    pub fn add_repo_digest(&self, root: &berth_oci::Digest, repo_digest: &Reference) -> Result<()> {
        if repo_digest.digest().is_none() || repo_digest.tag().is_some() {
            return Err(StoreError::Malformed {
                what: format!("repository digest {repo_digest}"),
                reason: "not repository@digest".into(),
            });
        }
        self.update_index(|index| {
            let mut list = root_repo_digests(index, root);
            if list.contains(repo_digest) || !index.manifests.iter().any(|d| &d.digest == root) {
                return false;
            }
            list.push(repo_digest.clone());
            if list.len() > MAX_REPO_DIGESTS {
                list.drain(..list.len() - MAX_REPO_DIGESTS);
            }
            set_root_repo_digests(index, root, &list);
            true
        })
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
