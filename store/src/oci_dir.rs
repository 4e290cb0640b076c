//! An OCI image layout directory (`oci:DIR[:REF]`, image-layout.md) as an [`ImageSource`]
//! and an [`ImageDestination`], for `berth copy`. Not the store: any directory skopeo or
//! umoci would read or write. The reference is the `org.opencontainers.image.ref.name`
//! annotation of an `index.json` entry. Blobs are written under a temporary name while
//! hashed and renamed only when size and digest match; `index.json` is replaced atomically.
//!
//! The directory's contents are not trusted (a layout may come from anywhere): every path in
//! it is resolved inside it with [`berth_fsroot::Root`] (a symlink never leads out), only
//! regular files are opened for reading, without blocking, and what is read into memory is
//! bounded (`index.json` by `MAX_LAYOUT_FILE`, manifests by `MAX_MANIFEST`). Files are
//! created `O_EXCL|O_NOFOLLOW` and renamed into place, so a planted name is replaced, never
//! followed.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use berth_fsroot::Root;
use berth_oci::limits::{MAX_LAYOUT_FILE, MAX_MANIFEST, read_limited};
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
        self.dir.join(Self::blob_rel(d))
    }

    /// A blob's path inside the layout.
    fn blob_rel(d: &Digest) -> String {
        format!("blobs/{}/{}", d.algorithm(), d.hex())
    }

    /// The layout directory as a root: every path in it is resolved inside it.
    fn root(&self) -> Result<Root, TransportError> {
        Root::open(&self.dir).map_err(io(format!("opening {}", self.dir.display())))
    }

    /// Opens a regular file of the layout for reading (a FIFO or a device is refused without
    /// blocking; symlinks are resolved inside the layout).
    fn open(&self, rel: &str) -> std::io::Result<std::fs::File> {
        Root::open(&self.dir)?.open_file_following(rel)
    }

    fn index(&self) -> Result<ImageIndex, TransportError> {
        let path = self.dir.join("index.json");
        let file = match self.open("index.json") {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ImageIndex::default()),
            Err(e) => return Err(TransportError::io(format!("reading {}", path.display()), e)),
        };
        let bytes = read_limited(file, MAX_LAYOUT_FILE, &path.display().to_string())
            .map_err(|e| TransportError::other(e.to_string()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| TransportError::other(format!("{}: {e}", path.display())))
    }

    fn read_verified(&self, desc: &Descriptor) -> Result<Parsed, TransportError> {
        let path = self.blob_path(&desc.digest);
        let file = self
            .open(&Self::blob_rel(&desc.digest))
            .map_err(io(format!("reading {}", path.display())))?;
        let bytes = read_limited(file, MAX_MANIFEST, &path.display().to_string())
            .map_err(|e| TransportError::other(e.to_string()))?;
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

    /// The layout's `blobs/<algorithm>` directory, made when missing (inside the layout).
    fn blob_dir(&self, d: &Digest) -> Result<OwnedFd, TransportError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        self.root()?
            .mkdir_all(&format!("blobs/{}", d.algorithm()), None)
            .map_err(io(format!("creating {}", self.dir.display())))
    }

    fn write_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<(), TransportError> {
        let dir = self.blob_dir(digest)?;
        replace_at(&dir, digest.hex(), &mut &bytes[..])
            .map_err(io(format!("writing {}", self.blob_path(digest).display())))
    }
}

/// A temporary name beside `name` in `dir`, created `O_EXCL|O_NOFOLLOW` (a stale one is
/// removed first, never followed).
fn create_tmp(dir: &OwnedFd, name: &str) -> std::io::Result<(String, std::fs::File)> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let tmp = format!(".{name}.tmp-{}", std::process::id());
    match rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    Ok((tmp, std::fs::File::from(fd)))
}

/// Replaces `name` in `dir` with `contents` (a temporary file renamed over it: whatever
/// `name` was, a symlink included, is replaced, not followed).
fn replace_at(dir: &OwnedFd, name: &str, contents: &mut dyn std::io::Read) -> std::io::Result<()> {
    let (tmp, mut f) = create_tmp(dir, name)?;
    let result = std::io::copy(contents, &mut f)
        .and_then(|_| Ok(rustix::fs::renameat(dir, tmp.as_str(), dir, name)?));
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), rustix::fs::AtFlags::empty());
    }
    result
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
        let f = self
            .open(&Self::blob_rel(&desc.digest))
            .map_err(io(format!("opening {}", path.display())))?;
        Ok(Box::pin(tokio::fs::File::from_std(f)))
    }
}

impl ImageDestination for LayoutDir {
    fn describe(&self) -> String {
        ImageSource::describe(self)
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        let root = match Root::open(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(TransportError::io(
                    format!("opening {}", self.dir.display()),
                    e,
                ));
            }
        };
        Ok(root
            .lstat(&Self::blob_rel(&desc.digest))
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file()))
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        mut reader: BlobReader,
    ) -> Result<(), TransportError> {
        let path = self.blob_path(&desc.digest);
        let dir = self.blob_dir(&desc.digest)?;
        let (tmp, mut f) = create_tmp(&dir, desc.digest.hex())
            .map_err(io(format!("writing {}", path.display())))?;
        let result = async {
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
                    .map_err(io(format!("writing {}", path.display())))?;
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
            rustix::fs::renameat(&dir, tmp.as_str(), &dir, desc.digest.hex())
                .map_err(|e| TransportError::io(format!("writing {}", path.display()), e.into()))
        }
        .await;
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), rustix::fs::AtFlags::empty());
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
        let top = rustix::fs::openat(
            self.root()?.fd(),
            ".",
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| TransportError::io(format!("opening {}", self.dir.display()), e.into()))?;
        let write = |name: &str, bytes: &[u8]| {
            replace_at(&top, name, &mut &bytes[..])
                .map_err(io(format!("writing {}", self.dir.join(name).display())))
        };
        write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        write("index.json", &to_canonical_json(&index))
    }
}
