//! Image archives: `oci-archive` (a tar of an OCI image layout) and `docker-archive` (the
//! `docker save` format: `manifest.json`, `<config>.json`, `<layer>/layer.tar`), read as an
//! [`ImageSource`] and written from the store.
//!
//! They live beside the store because an OCI archive is the store's own on-disk format in a
//! tar. Reading does not unpack the archive: one pass indexes where each member's bytes sit
//! in the (uncompressed) tar, and blobs are then read in place. A compressed archive
//! (`docker save | gzip`) is first decompressed into the store's `tmp/`, bounded (see
//! [`DecompressLimits`]: a small bomb cannot fill the disk) and removed on every path out,
//! errors included. Member names are only looked up, never used as paths, so a hostile
//! archive cannot write anywhere.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_oci::limits::{
    MAX_ARCHIVE_IMAGES, MAX_ARCHIVE_MEMBERS, MAX_CONFIG, MAX_LAYERS, MAX_LAYOUT_FILE, MAX_MANIFEST,
    check_count, read_limited,
};
use berth_oci::manifest::{ANNOTATION_REF_NAME, to_canonical_json};
use berth_oci::media_type::{self, Compression};
use berth_oci::{
    BlobReader, Descriptor, Digest, Digester, ImageIndex, ImageManifest, ImageSource, Parsed,
    Reference, TransportError,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{IoContext, Result, StoreError};
use crate::images::{Image, layer_compression};
use crate::layout::{Store, unique_tmp_path};

/// The annotation containerd and Docker write with an image's full name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Oci,
    Docker,
}

/// An opened archive: member name → (offset, size) in an uncompressed tar file.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    members: HashMap<String, (u64, u64)>,
    format: ArchiveFormat,
    /// A decompressed copy, deleted with the archive.
    _temp: Option<TempFile>,
}

/// A file in the store's `tmp/`, removed when dropped (on success and on every error).
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bounds on decompressing an archive into the store's `tmp/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecompressLimits {
    /// Decompressed bytes allowed: `BERTH_MAX_ARCHIVE_SIZE`, by default 64 GiB (the size
    /// one layer may have, `BERTH_MAX_LAYER_SIZE`).
    pub max_bytes: u64,
    /// Free bytes the filesystem holding the store must keep: decompressing stops before
    /// it would leave less. `BERTH_MIN_FREE_SPACE`, by default the smaller of 1 GiB and 5%
    /// of the filesystem; `0` turns the check off.
    pub reserve: Option<u64>,
}

impl DecompressLimits {
    pub fn from_env() -> DecompressLimits {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        DecompressLimits {
            max_bytes: var("BERTH_MAX_ARCHIVE_SIZE").unwrap_or(64 << 30),
            reserve: var("BERTH_MIN_FREE_SPACE"),
        }
    }
}

/// Copies `reader` into `out` (a file on `dir`'s filesystem), at most `limits.max_bytes`,
/// stopping before the filesystem would keep less than the reserve free.
fn copy_bounded(
    mut reader: impl Read,
    out: &mut File,
    dir: &Path,
    limits: DecompressLimits,
    what: &str,
) -> Result<u64> {
    const CHECK_EVERY: u64 = 64 << 20;
    let reserve = |dir: &Path| -> Result<Option<(u64, u64)>> {
        let st = rustix::fs::statvfs(dir)
            .map_err(|e| StoreError::io(format!("statvfs {}", dir.display()), e.into()))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let want = limits.reserve.unwrap_or((1u64 << 30).min(total / 20));
        Ok((want > 0).then_some((free, want)))
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    let mut next_check = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| StoreError::io(format!("decompressing {what}"), e))?;
        if n == 0 {
            return Ok(written);
        }
        written += n as u64;
        if written > limits.max_bytes {
            return Err(malformed(
                what,
                format!(
                    "it decompresses past the {}-byte limit (set BERTH_MAX_ARCHIVE_SIZE to raise it)",
                    limits.max_bytes
                ),
            ));
        }
        if written >= next_check {
            if let Some((free, want)) = reserve(dir)?
                && free < want + CHECK_EVERY
            {
                return Err(StoreError::NoSpace {
                    context: format!(
                        "decompressing {what} would leave less than {want} bytes free (BERTH_MIN_FREE_SPACE)"
                    ),
                });
            }
            next_check = written + CHECK_EVERY;
        }
        out.write_all(&buf[..n])
            .map_err(|e| StoreError::io(format!("decompressing {what}"), e))?;
    }
}

/// One image found in an archive.
#[derive(Debug, Clone)]
pub struct ArchivedImage {
    pub names: Vec<Reference>,
    pub root: Parsed,
    /// digest → member name.
    blobs: HashMap<Digest, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn member_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_owned()
}

fn malformed(what: &str, reason: impl ToString) -> StoreError {
    StoreError::Malformed {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

impl Archive {
    /// Indexes an archive file, decompressing it into `tmp_dir` first when needed (bounded
    /// by [`DecompressLimits::from_env`]).
    pub fn open(path: &Path, tmp_dir: &Path) -> Result<Archive> {
        Archive::open_with(path, tmp_dir, DecompressLimits::from_env())
    }

    /// [`Archive::open`] with explicit limits.
    pub fn open_with(path: &Path, tmp_dir: &Path, limits: DecompressLimits) -> Result<Archive> {
        let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        let mut head = [0u8; 4];
        let n = file
            .read(&mut head)
            .ctx(|| format!("reading {}", path.display()))?;
        let compression = Compression::sniff(&head[..n]);
        let (tar_path, temp) = if compression == Compression::None {
            (path.to_owned(), None)
        } else {
            let tmp = unique_tmp_path(tmp_dir, "archive");
            let mut out =
                crate::files::create_file(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            // From here the file is removed however this function returns.
            let guard = TempFile(tmp.clone());
            let reader = crate::layer::decompress(
                std::io::BufReader::with_capacity(
                    1 << 20,
                    File::open(path).ctx(|| format!("opening {}", path.display()))?,
                ),
                compression,
            )
            .ctx(|| "decompressing archive".into())?;
            copy_bounded(
                reader,
                &mut out,
                tmp_dir,
                limits,
                &path.display().to_string(),
            )?;
            (tmp, Some(guard))
        };
        let mut members = HashMap::new();
        let file = File::open(&tar_path).ctx(|| format!("opening {}", tar_path.display()))?;
        let mut tar = tar::Archive::new(crate::layer::guard::TarGuard::new(
            std::io::BufReader::new(file),
            crate::layer::guard::Limits::default(),
        ));
        for entry in tar
            .entries()
            .map_err(|e| malformed(&path.display().to_string(), e))?
        {
            let entry = entry.map_err(|e| malformed(&path.display().to_string(), e))?;
            if members.len() >= MAX_ARCHIVE_MEMBERS {
                let what = path.display().to_string();
                let e = check_count(&what, "files", members.len() + 1, MAX_ARCHIVE_MEMBERS);
                return Err(malformed(&what, e.expect_err("over the limit")));
            }
            if entry.header().entry_type().is_file() {
                members.insert(
                    member_name(&entry.path_bytes()),
                    (entry.raw_file_position(), entry.size()),
                );
            }
        }
        let format = if members.contains_key("index.json") && members.contains_key("oci-layout") {
            ArchiveFormat::Oci
        } else if members.contains_key("manifest.json") {
            ArchiveFormat::Docker
        } else {
            return Err(malformed(
                &path.display().to_string(),
                "neither an OCI layout (index.json, oci-layout) nor a docker archive (manifest.json)",
            ));
        };
        Ok(Archive {
            path: tar_path,
            members,
            format,
            _temp: temp,
        })
    }

    pub fn format(&self) -> ArchiveFormat {
        self.format
    }

    fn member(&self, name: &str) -> Result<(u64, u64)> {
        self.members.get(name).copied().ok_or_else(|| {
            malformed(
                &self.path.display().to_string(),
                format!("member {name} is missing"),
            )
        })
    }

    fn open_member(&self, name: &str) -> Result<std::io::Take<File>> {
        let (offset, size) = self.member(name)?;
        let mut file = File::open(&self.path).ctx(|| format!("opening {}", self.path.display()))?;
        file.seek(SeekFrom::Start(offset))
            .ctx(|| "seeking in archive".into())?;
        Ok(file.take(size))
    }

    fn read_member(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        read_limited(self.open_member(name)?, limit, name).map_err(|e| malformed(name, e))
    }

    /// The images the archive holds, with their names.
    pub fn images(&self) -> Result<Vec<ArchivedImage>> {
        match self.format {
            ArchiveFormat::Oci => self.oci_images(),
            ArchiveFormat::Docker => self.docker_images(),
        }
    }

    fn oci_images(&self) -> Result<Vec<ArchivedImage>> {
        let index: ImageIndex =
            serde_json::from_slice(&self.read_member("index.json", MAX_LAYOUT_FILE)?)
                .map_err(|e| malformed("index.json", e))?;
        check_count(
            "index.json",
            "images",
            index.manifests.len(),
            MAX_ARCHIVE_IMAGES,
        )
        .map_err(|e| malformed("index.json", e))?;
        let mut out: Vec<ArchivedImage> = Vec::new();
        for desc in &index.manifests {
            let name = desc
                .annotations
                .get(ANNOTATION_IMAGE_NAME)
                .or_else(|| {
                    desc.annotations
                        .get(ANNOTATION_REF_NAME)
                        .filter(|n| n.contains(['/', ':']))
                })
                .and_then(|n| Reference::parse(n).ok());
            if let Some(existing) = out.iter_mut().find(|i| i.root.digest == desc.digest) {
                existing.names.extend(name);
                continue;
            }
            let bytes =
                self.read_member(&format!("blobs/sha256/{}", desc.digest.hex()), MAX_MANIFEST)?;
            let root = Parsed::parse(bytes, Some(&desc.media_type))
                .map_err(|e| malformed(&format!("manifest {}", desc.digest), e))?;
            if root.digest != desc.digest {
                return Err(StoreError::DigestMismatch {
                    expected: desc.digest.clone(),
                    found: root.digest,
                });
            }
            let blobs = self
                .members
                .keys()
                .filter_map(|k| {
                    Some((
                        Digest::from_hex(k.strip_prefix("blobs/sha256/")?).ok()?,
                        k.clone(),
                    ))
                })
                .collect();
            out.push(ArchivedImage {
                names: name.into_iter().collect(),
                root,
                blobs,
            });
        }
        Ok(out)
    }

    fn docker_images(&self) -> Result<Vec<ArchivedImage>> {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&self.read_member("manifest.json", MAX_LAYOUT_FILE)?)
                .map_err(|e| malformed("manifest.json", e))?;
        check_count("manifest.json", "images", entries.len(), MAX_ARCHIVE_IMAGES)
            .map_err(|e| malformed("manifest.json", e))?;
        let mut out = Vec::new();
        for entry in entries {
            // Before any layer is hashed: each is read whole for its digest.
            check_count(
                &format!("manifest.json entry {}", entry.config),
                "layers",
                entry.layers.len(),
                MAX_LAYERS,
            )
            .map_err(|e| malformed("manifest.json", e))?;
            let config_bytes =
                self.read_member(&member_name(entry.config.as_bytes()), MAX_CONFIG)?;
            let config = Descriptor::of(media_type::OCI_CONFIG, &config_bytes);
            let mut blobs =
                HashMap::from([(config.digest.clone(), member_name(entry.config.as_bytes()))]);
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let name = member_name(layer.as_bytes());
                let (digest, size, compression) = self.hash_member(&name)?;
                blobs.insert(digest.clone(), name);
                layers.push(Descriptor::new(compression.oci_layer_type(), digest, size));
            }
            let root = Parsed::from_manifest(&ImageManifest::new_oci(config, layers));
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(ArchivedImage { names, root, blobs });
        }
        Ok(out)
    }

    fn hash_member(&self, name: &str) -> Result<(Digest, u64, Compression)> {
        let mut reader = self.open_member(name)?;
        let mut digester = Digester::new();
        let mut head = [0u8; 4];
        let n = reader.read(&mut head).ctx(|| format!("reading {name}"))?;
        digester.update(&head[..n]);
        std::io::copy(&mut reader, &mut digester).ctx(|| format!("reading {name}"))?;
        let size = digester.len();
        Ok((digester.finish(), size, Compression::sniff(&head[..n])))
    }
}

/// One archived image as an [`ImageSource`].
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    archive: Arc<Archive>,
    image: ArchivedImage,
}

impl ArchiveSource {
    pub fn new(archive: Arc<Archive>, image: ArchivedImage) -> ArchiveSource {
        ArchiveSource { archive, image }
    }

    /// The member holding the bytes `desc` names (`what` it is, for the error).
    fn member_of(&self, what: &str, desc: &Descriptor) -> Result<&str, TransportError> {
        let name = self.image.blobs.get(&desc.digest);
        name.map(String::as_str)
            .ok_or_else(|| TransportError::NotFound {
                what: format!("{what} {}", desc.digest),
            })
    }
}

impl ImageSource for ArchiveSource {
    fn describe(&self) -> String {
        format!("archive {}", self.archive.path.display())
    }

    async fn root_manifest(&self) -> Result<Parsed, TransportError> {
        Ok(self.image.root.clone())
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Parsed, TransportError> {
        let name = self.member_of("manifest", desc)?;
        let bytes = self
            .archive
            .read_member(name, MAX_MANIFEST)
            .map_err(crate::transport::to_transport)?;
        Ok(Parsed::parse(bytes, Some(&desc.media_type))?)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let name = self.member_of("blob", desc)?;
        let (offset, size) = self
            .archive
            .member(name)
            .map_err(crate::transport::to_transport)?;
        let mut file = tokio::fs::File::open(&self.archive.path)
            .await
            .map_err(|e| {
                TransportError::io(format!("opening {}", self.archive.path.display()), e)
            })?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| TransportError::io("seeking in archive", e))?;
        Ok(Box::pin(file.take(size)))
    }
}

/// Appends one file member with fixed metadata (mode 0644, owner 0, mtime 0).
fn append_member<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .ctx(|| format!("writing archive member {name}"))
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    append_member(tar, name, bytes.len() as u64, bytes)
}

fn append_blob<W: Write>(
    store: &Store,
    tar: &mut tar::Builder<W>,
    name: &str,
    digest: &Digest,
) -> Result<()> {
    let file = store.open_blob(digest)?;
    let size = file
        .metadata()
        .ctx(|| format!("reading blob {digest}"))?
        .len();
    append_member(
        tar,
        name,
        size,
        std::io::BufReader::with_capacity(1 << 20, file),
    )
}

/// Writes images as an OCI archive: `oci-layout`, `index.json` (one entry per name, with
/// the full reference in both `org.opencontainers.image.ref.name` and
/// `io.containerd.image.name`), and every blob the images need.
pub fn write_oci_archive(
    store: &Store,
    images: &[(Image, Vec<Reference>)],
    out: impl Write,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut index = ImageIndex::default();
    let mut written: std::collections::HashSet<Digest> = std::collections::HashSet::new();
    for (image, names) in images {
        let root = store.read_manifest(&image.root)?;
        let mut blobs = vec![image.root.digest.clone()];
        if root.digest != image.manifest.digest {
            blobs.push(image.manifest.digest.clone());
        }
        blobs.push(image.manifest_value.config.digest.clone());
        blobs.extend(image.manifest_value.layers.iter().map(|l| l.digest.clone()));
        for digest in blobs {
            if written.insert(digest.clone()) {
                append_blob(
                    store,
                    &mut tar,
                    &format!("blobs/sha256/{}", digest.hex()),
                    &digest,
                )?;
            }
        }
        let plain = Descriptor::new(
            image.root.media_type.clone(),
            image.root.digest.clone(),
            image.root.size,
        );
        if names.is_empty() {
            index.manifests.push(plain.clone());
        }
        for name in names {
            let mut desc = plain.clone();
            desc.annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), name.to_string());
            desc.annotations
                .insert(ANNOTATION_IMAGE_NAME.to_owned(), name.to_string());
            index.manifests.push(desc);
        }
    }
    append_bytes(&mut tar, "index.json", &to_canonical_json(&index))?;
    tar.into_inner()
        .ctx(|| "finishing archive".into())?
        .flush()
        .ctx(|| "flushing archive".into())
}

/// Writes images as a docker archive (`docker save` layout) that `docker load` and skopeo's
/// `docker-archive:` read: `manifest.json`, `repositories`, `<config hex>.json` and
/// `<diff-id hex>/layer.tar` (uncompressed, decompressing stored layers where needed).
pub fn write_docker_archive(
    store: &Store,
    images: &[(Image, Vec<Reference>)],
    out: impl Write,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut manifest = Vec::new();
    let mut repositories: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, String>,
    > = Default::default();
    let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (image, names) in images {
        let config_name = format!("{}.json", image.id().hex());
        if written.insert(config_name.clone()) {
            append_bytes(&mut tar, &config_name, &image.config_bytes)?;
        }
        let mut layer_names = Vec::new();
        for (layer, diff_id) in image
            .manifest_value
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            let name = format!("{}/layer.tar", diff_id.hex());
            if written.insert(name.clone()) {
                append_uncompressed_layer(store, &mut tar, &name, layer, diff_id)?;
            }
            layer_names.push(name);
        }
        let tags: Vec<String> = names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(|n| n.familiar())
            .collect();
        for n in names.iter().filter(|n| n.tag().is_some()) {
            if let Some(top) = image.config.rootfs.diff_ids.last() {
                repositories
                    .entry(n.familiar_repository())
                    .or_default()
                    .insert(n.tag().unwrap_or_default().to_owned(), top.hex().to_owned());
            }
        }
        manifest.push(DockerManifestEntry {
            config: config_name,
            repo_tags: Some(tags),
            layers: layer_names,
        });
    }
    append_bytes(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("plain data"),
    )?;
    append_bytes(
        &mut tar,
        "repositories",
        &serde_json::to_vec(&repositories).expect("plain data"),
    )?;
    tar.into_inner()
        .ctx(|| "finishing archive".into())?
        .flush()
        .ctx(|| "flushing archive".into())
}

fn append_uncompressed_layer<W: Write>(
    store: &Store,
    tar: &mut tar::Builder<W>,
    name: &str,
    layer: &Descriptor,
    diff_id: &Digest,
) -> Result<()> {
    if layer_compression(layer) == Compression::None {
        return append_blob(store, tar, name, &layer.digest);
    }
    let tmp = unique_tmp_path(&store.tmp_dir(), "layer");
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .mode(crate::files::PRIVATE_FILE)
            .open(&tmp)
            .ctx(|| format!("creating {}", tmp.display()))?;
        let mut digester = Digester::new();
        let mut reader = crate::layer::decompress(
            std::io::BufReader::new(store.open_blob(&layer.digest)?),
            layer_compression(layer),
        )
        .ctx(|| format!("decompressing {}", layer.digest))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader
                .read(&mut buf)
                .ctx(|| format!("decompressing {}", layer.digest))?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
            out.write_all(&buf[..n])
                .ctx(|| format!("writing {}", tmp.display()))?;
        }
        let size = digester.len();
        let found = digester.finish();
        if found != *diff_id {
            return Err(StoreError::DigestMismatch {
                expected: diff_id.clone(),
                found,
            });
        }
        out.seek(SeekFrom::Start(0)).ctx(|| "rewinding".into())?;
        append_member(
            tar,
            name,
            size,
            std::io::BufReader::with_capacity(1 << 20, out),
        )
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip of `n` zero bytes: what comes out is not an archive.
    fn zeros_gz(n: usize) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; n]).unwrap();
        gz.finish().unwrap()
    }

    fn left(tmp: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Decompression stops at the byte limit and at the free-space reserve, with a clear
    /// error, and leaves nothing in tmp/ either way (nor when the result is no archive).
    #[test]
    fn decompression_is_bounded_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let bomb = dir.path().join("bomb.tar.gz");
        std::fs::write(&bomb, zeros_gz(8 << 20)).unwrap();
        let limits = DecompressLimits {
            max_bytes: 1 << 20,
            reserve: Some(0),
        };
        let e = Archive::open_with(&bomb, &tmp, limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("BERTH_MAX_ARCHIVE_SIZE"), "{e}");
        assert!(left(&tmp).is_empty(), "{:?}", left(&tmp));
        let limits = DecompressLimits {
            max_bytes: 64 << 30,
            reserve: Some(u64::MAX / 4),
        };
        let e = Archive::open_with(&bomb, &tmp, limits).unwrap_err();
        assert!(matches!(e, StoreError::NoSpace { .. }), "{e}");
        assert!(left(&tmp).is_empty(), "{:?}", left(&tmp));
        let limits = DecompressLimits {
            max_bytes: 64 << 30,
            reserve: Some(0),
        };
        let e = Archive::open_with(&bomb, &tmp, limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("malformed") || e.contains("neither"), "{e}");
        assert!(left(&tmp).is_empty(), "{:?}", left(&tmp));
    }
}
