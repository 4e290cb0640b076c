//! An OCI image layout directory (`oci:DIR[:REF]`, image-layout.md) as an [`ImageSource`]
//! and an [`ImageDestination`], for `berth copy`. Not the store: any directory skopeo or
//! umoci would read or write. The reference is the `org.opencontainers.image.ref.name`
//! annotation of an `index.json` entry. Blobs are written under a temporary name while
//! hashed and renamed only when size and digest match; `index.json` is replaced atomically.

use std::io::Write;
use std::path::PathBuf;

use berth_oci::limits::MAX_MANIFEST;
use berth_oci::manifest::{ANNOTATION_REF_NAME, Descriptor, ImageIndex, Parsed, to_canonical_json};
use berth_oci::transport::{BlobReader, ImageDestination, ImageSource, TransportError};
use berth_oci::{Digest, Digester};
use tokio::io::AsyncReadExt;

/// `oci:DIR[:REF]`.
#[derive(Debug, Clone)]
pub struct LayoutDir {
    pub dir: PathBuf,
    pub reference: Option<String>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> TransportError {
    move |e| TransportError::io(what, e)
}

impl LayoutDir {
    pub fn new(dir: impl Into<PathBuf>, reference: Option<&str>) -> LayoutDir {
        LayoutDir {
            dir: dir.into(),
            reference: reference.map(str::to_owned),
        }
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs").join(d.algorithm()).join(d.hex())
    }

    fn index(&self) -> Result<ImageIndex, TransportError> {
        let path = self.dir.join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() as u64 <= MAX_MANIFEST => serde_json::from_slice(&bytes)
                .map_err(|e| TransportError::other(format!("{}: {e}", path.display()))),
            Ok(_) => Err(TransportError::other(format!(
                "{}: too large",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageIndex::default()),
            Err(e) => Err(TransportError::io(format!("reading {}", path.display()), e)),
        }
    }

    fn read_verified(&self, desc: &Descriptor) -> Result<Parsed, TransportError> {
        let path = self.blob_path(&desc.digest);
        let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(TransportError::other(format!(
                "{}: too large",
                path.display()
            )));
        }
        let parsed = Parsed::parse(bytes, Some(&desc.media_type))?;
        if parsed.digest != desc.digest {
            return Err(TransportError::DigestMismatch {
                what: path.display().to_string(),
                expected: desc.digest.clone(),
                found: parsed.digest,
            });
        }
        Ok(parsed)
    }

    fn write_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<(), TransportError> {
        let path = self.blob_path(digest);
        std::fs::create_dir_all(path.parent().expect("under blobs"))
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io(format!("writing {}", path.display())))
    }
}

impl ImageSource for LayoutDir {
    fn describe(&self) -> String {
        format!(
            "oci:{}{}",
            self.dir.display(),
            self.reference
                .as_deref()
                .map(|r| format!(":{r}"))
                .unwrap_or_default()
        )
    }

    async fn root_manifest(&self) -> Result<Parsed, TransportError> {
        let index = self.index()?;
        let desc = match &self.reference {
            Some(r) => index.manifests.iter().find(|d| {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(r.as_str())
            }),
            None if index.manifests.len() == 1 => index.manifests.first(),
            None => {
                return Err(TransportError::other(format!(
                    "{} holds {} images: name one (oci:DIR:REF)",
                    self.dir.display(),
                    index.manifests.len()
                )));
            }
        }
        .ok_or_else(|| TransportError::NotFound {
            what: ImageSource::describe(self),
        })?;
        let plain = Descriptor::new(desc.media_type.clone(), desc.digest.clone(), desc.size);
        self.read_verified(&plain)
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Parsed, TransportError> {
        self.read_verified(desc)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let path = self.blob_path(&desc.digest);
        let f = tokio::fs::File::open(&path)
            .await
            .map_err(io(format!("opening {}", path.display())))?;
        Ok(Box::pin(f))
    }
}

impl ImageDestination for LayoutDir {
    fn describe(&self) -> String {
        ImageSource::describe(self)
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self.blob_path(&desc.digest).is_file())
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        mut reader: BlobReader,
    ) -> Result<(), TransportError> {
        let path = self.blob_path(&desc.digest);
        std::fs::create_dir_all(path.parent().expect("under blobs"))
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let result = async {
            let mut f =
                std::fs::File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
            let mut digester = Digester::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut len = 0u64;
            loop {
                let n = reader
                    .read(&mut buf)
                    .await
                    .map_err(io(format!("reading blob {}", desc.digest)))?;
                if n == 0 {
                    break;
                }
                len += n as u64;
                if len > desc.size {
                    break;
                }
                digester.update(&buf[..n]);
                f.write_all(&buf[..n])
                    .map_err(io(format!("writing {}", tmp.display())))?;
            }
            if len != desc.size {
                return Err(TransportError::SizeMismatch {
                    what: format!("blob {}", desc.digest),
                    expected: desc.size,
                    found: len,
                });
            }
            let found = digester.finish();
            if found != desc.digest {
                return Err(TransportError::DigestMismatch {
                    what: format!("blob {}", desc.digest),
                    expected: desc.digest.clone(),
                    found,
                });
            }
            std::fs::rename(&tmp, &path).map_err(io(format!("writing {}", path.display())))
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    async fn put_manifest(&self, manifest: &Parsed) -> Result<(), TransportError> {
        self.write_blob_bytes(&manifest.digest, &manifest.bytes)
    }

    async fn commit(&self, root: &Parsed) -> Result<(), TransportError> {
        self.write_blob_bytes(&root.digest, &root.bytes)?;
        let mut index = self.index()?;
        let mut desc = root.descriptor();
        if let Some(r) = &self.reference {
            index.manifests.retain(|d| {
                d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) != Some(r.as_str())
            });
            desc.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), r.clone());
        }
        index.manifests.push(desc);
        let write = |name: &str, bytes: &[u8]| {
            let path = self.dir.join(name);
            let tmp = self.dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(io(format!("writing {}", path.display())))
        };
        write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        write("index.json", &to_canonical_json(&index))
    }
}
