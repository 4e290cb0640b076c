//! `fsck`: the whole store in, a list of [`Fault`]s out (empty when the store is sound).
//!
//! Walks index → manifests → configs → layers, checking every reference resolves, then hashes
//! every blob and compares it with its name. Holds the shared lock only: it may run beside
//! builds and pulls, which never expose partial files.

use berth_oci::limits::MAX_CONFIG;
use berth_oci::{Descriptor, Digest, Digester, ImageConfig, ManifestValue};

use crate::error::Result;
use crate::layout::Store;

/// One thing wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub object: String,
    pub problem: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

impl Store {
    pub fn check(&self) -> Result<Vec<Fault>> {
        let mut faults = Vec::new();
        let mut fault = |object: String, problem: String| faults.push(Fault { object, problem });
        for file in ["oci-layout", "index.json"] {
            if !self.root().join(file).is_file() {
                fault(file.to_owned(), "missing".into());
            }
        }
        for entry in std::fs::read_dir(self.blobs_dir())
            .map_err(|e| crate::StoreError::io("reading blobs", e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = Digest::from_hex(&name) else {
                fault(
                    format!("blobs/sha256/{name}"),
                    "not a sha256 digest name".into(),
                );
                continue;
            };
            match hash_file(&entry.path()) {
                Ok(found) if found == digest => {}
                Ok(found) => fault(
                    format!("blob {digest}"),
                    format!("content hashes to {found}"),
                ),
                Err(e) => fault(format!("blob {digest}"), format!("unreadable: {e}")),
            }
        }
        match crate::index::read_index(self) {
            Err(e) => fault("index.json".into(), e.to_string()),
            Ok(index) => {
                for root in &index.manifests {
                    let name = root
                        .annotations
                        .get(berth_oci::manifest::ANNOTATION_REF_NAME)
                        .cloned()
                        .unwrap_or_else(|| root.digest.to_string());
                    self.check_manifest(&name, root, &mut fault);
                }
            }
        }
        for entry in std::fs::read_dir(self.snapshots_dir())
            .map_err(|e| crate::StoreError::io("reading snapshots", e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if Digest::from_hex(&name).is_err() || !entry.path().is_dir() {
                fault(
                    format!("snapshots/{name}"),
                    "not a snapshot directory".into(),
                );
            }
        }
        Ok(faults)
    }

    fn check_manifest(
        &self,
        name: &str,
        desc: &Descriptor,
        fault: &mut impl FnMut(String, String),
    ) {
        let parsed = match self.read_manifest(desc) {
            Ok(p) => p,
            Err(e) => {
                return fault(
                    format!("image {name}"),
                    format!("manifest {}: {e}", desc.digest),
                );
            }
        };
        if desc.size != 0 && parsed.bytes.len() as u64 != desc.size {
            fault(
                format!("image {name}"),
                format!(
                    "manifest {} has {} bytes, index says {}",
                    desc.digest,
                    parsed.bytes.len(),
                    desc.size
                ),
            );
        }
        match parsed.value {
            ManifestValue::Index(index) => {
                for child in &index.manifests {
                    if self.has_blob(&child.digest) {
                        self.check_manifest(name, child, fault);
                    }
                }
            }
            ManifestValue::Manifest(m) => {
                for blob in std::iter::once(&m.config).chain(&m.layers) {
                    match std::fs::metadata(self.blob_path(&blob.digest)) {
                        Err(_) => fault(
                            format!("image {name}"),
                            format!("blob {} is missing", blob.digest),
                        ),
                        Ok(meta) if meta.len() != blob.size => fault(
                            format!("image {name}"),
                            format!(
                                "blob {} has {} bytes, manifest says {}",
                                blob.digest,
                                meta.len(),
                                blob.size
                            ),
                        ),
                        Ok(_) => {}
                    }
                }
                match self
                    .read_blob(&m.config.digest, MAX_CONFIG)
                    .map(|b| ImageConfig::parse(&b))
                {
                    Ok(Ok(cfg)) if cfg.rootfs.diff_ids.len() != m.layers.len() => fault(
                        format!("image {name}"),
                        format!(
                            "config lists {} diff_ids for {} layers",
                            cfg.rootfs.diff_ids.len(),
                            m.layers.len()
                        ),
                    ),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => fault(
                        format!("image {name}"),
                        format!("config {} is malformed: {e}", m.config.digest),
                    ),
                    Err(_) => {} // missing or corrupt: reported above
                }
            }
        }
    }
}

fn hash_file(path: &std::path::Path) -> std::io::Result<Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut digester = Digester::new();
    std::io::copy(&mut file, &mut digester)?;
    Ok(digester.finish())
}
