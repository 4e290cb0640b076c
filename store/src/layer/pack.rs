//! The layer packer: a directory in, a deterministic tar stream out (written to any
//! `Write`, usually a [`crate::BlobWriter`] so it is hashed in the same pass).
//!
//! Deterministic: entries sorted by name bytes, the GNU header format with GNU long-name
//! records, `sparse(false)`, no user or group names, ownership, modes and mtimes taken from the
//! files (or a fixed clamp, [`PackOptions::clamp_mtime`], for reproducible builds), xattrs as
//! PAX `SCHILY.xattr.*` records, hard links within the tree as link entries to the first
//! path seen. With [`PackOptions::overlay_whiteouts`], an overlay upper directory's whiteouts
//! become `.wh.NAME` entries and opaque directories get `.wh..wh..opq`, in every form the
//! kernel's overlayfs and fuse-overlayfs write them:
//!
//! - a whiteout: a char device 0:0 named NAME (the kernel's; fuse-overlayfs's where it may
//!   make one), or an empty regular file named `.wh.NAME` (fuse-overlayfs's otherwise);
//! - an opaque directory: the opaque xattr ([`super::opaque_xattr`]), fuse-overlayfs's own
//!   `user.fuseoverlayfs.opaque` or `trusted.overlay.opaque`, or a regular file
//!   `.wh..wh..opq` in it (fuse-overlayfs writes one beside its xattr).
//!
//! Both give the same tar: a whiteout entry has mode 0 and owner 0:0 (what the kernel's has)
//! and sits where NAME sorts; the opaque marker follows its directory's entry, with the
//! directory's header. (The runtime rewrites an upper fuse-overlayfs wrote into the kernel's
//! forms once its daemon is gone, `berth_runtime::fuse`, so these are what is left where it
//! could not: no whiteout node can be made before Linux 5.8 in a user namespace.)

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};

#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Translate overlayfs whiteouts and opaque markers into OCI whiteout entries.
    pub overlay_whiteouts: bool,
    /// Clamp every mtime to at most this many seconds since the epoch (SOURCE_DATE_EPOCH).
    pub clamp_mtime: Option<u64>,
}

/// The name of fuse-overlayfs's opaque-directory file, and the OCI marker.
const OPAQUE_FILE: &[u8] = b".wh..wh..opq";

/// The opaque marks fuse-overlayfs writes besides [`super::opaque_xattr`] (its own, and
/// overlayfs's privileged one, which it writes as root).
const FUSE_OPAQUE_XATTRS: [&str; 2] = ["user.fuseoverlayfs.opaque", "trusted.overlay.opaque"];

/// Whether `name` is fuse-overlayfs's whiteout file (`.wh.NAME`, not the opaque file) when
/// it is a regular file.
fn whiteout_file_target(name: &[u8]) -> Option<&[u8]> {
    name.strip_prefix(b".wh.")
        .filter(|rest| !rest.is_empty() && name != OPAQUE_FILE)
}

/// Where an entry of an upper directory sorts: by its name, but fuse-overlayfs's `.wh.NAME`
/// file where the kernel's whiteout NAME would (the name without its prefix, then the whole
/// name, so that the order is total).
fn sort_key(entry: &walkdir::DirEntry, whiteouts: bool) -> (&[u8], &[u8]) {
    let name = entry.file_name().as_bytes();
    match whiteout_file_target(name) {
        Some(target) if whiteouts && entry.file_type().is_file() => (target, name),
        _ => (name, name),
    }
}

/// Whether directory `path` is opaque in an overlay upper, in any form.
fn is_opaque(path: &Path) -> bool {
    let marked = |name: &str| rustix::fs::lgetxattr(path, name, &mut [0u8; 4]).is_ok();
    marked(super::opaque_xattr())
        || FUSE_OPAQUE_XATTRS.iter().any(|n| marked(n))
        || std::fs::symlink_metadata(path.join(std::ffi::OsStr::from_bytes(OPAQUE_FILE)))
            .is_ok_and(|m| m.is_file())
}

/// Writes the tree under `dir` (not `dir` itself) as a tar stream into `out`.
pub fn pack(dir: &Path, out: impl Write, options: &PackOptions) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.sparse(false);
    builder.follow_symlinks(false);
    let mut links: std::collections::HashMap<(u64, u64), Vec<u8>> =
        std::collections::HashMap::new();
    let whiteouts = options.overlay_whiteouts;
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by(move |a, b| sort_key(a, whiteouts).cmp(&sort_key(b, whiteouts)));
    for entry in walk {
        let entry =
            entry.map_err(|e| StoreError::io(format!("walking {}", dir.display()), e.into()))?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("under dir")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let meta = entry
            .path()
            .symlink_metadata()
            .ctx(|| format!("reading {}", entry.path().display()))?;
        let ft = meta.file_type();
        let file_name = entry.file_name().as_bytes();
        if options.overlay_whiteouts && ft.is_file() && file_name == OPAQUE_FILE {
            // fuse-overlayfs's opaque mark: the directory's entry carried it.
            continue;
        }
        let fuse_whiteout = ft.is_file() && whiteout_file_target(file_name).is_some();
        let whiteout = fuse_whiteout || (ft.is_char_device() && meta.rdev() == 0);
        if options.overlay_whiteouts && whiteout && !fuse_whiteout && file_name.starts_with(b".wh.")
        {
            // A whiteout of a `.wh.` name (fuse-overlayfs makes `.wh..opq` beside its opaque
            // file): no name a layer can hold.
            continue;
        }
        if options.overlay_whiteouts && whiteout {
            let mut name = rel.clone();
            if !fuse_whiteout {
                let slash = name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
                name.splice(slash..slash, b".wh.".iter().copied());
            }
            let mut header = header_for(&meta, tar::EntryType::Regular, options);
            header.set_mode(0);
            header.set_uid(0);
            header.set_gid(0);
            append(&mut builder, &name, &header, &[][..], &[])?;
            continue;
        }
        let xattrs = read_xattrs(entry.path());
        let mut header = header_for(&meta, tar::EntryType::Regular, options);
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            let mut name = rel.clone();
            name.push(b'/');
            append(&mut builder, &name, &header, &[][..], &xattrs)?;
            if options.overlay_whiteouts && is_opaque(entry.path()) {
                let mut wh = rel.clone();
                wh.extend_from_slice(b"/.wh..wh..opq");
                append(
                    &mut builder,
                    &wh,
                    &header_for(&meta, tar::EntryType::Regular, options),
                    &[][..],
                    &[],
                )?;
            }
        } else if ft.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = std::fs::read_link(entry.path())
                .ctx(|| format!("reading link {}", entry.path().display()))?;
            append_link(
                &mut builder,
                &rel,
                &header,
                target.as_os_str().as_bytes(),
                &xattrs,
            )?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    append_link(&mut builder, &rel, &header, &first.clone(), &xattrs)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel.clone());
            }
            header.set_size(meta.len());
            let file = open_same_file(entry.path(), &meta)
                .ctx(|| format!("opening {}", entry.path().display()))?;
            append(&mut builder, &rel, &header, file, &xattrs)?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue; // sockets are not archived, as in GNU tar
            };
            header.set_entry_type(kind);
            let rdev = meta.rdev();
            header
                .set_device_major(rustix::fs::major(rdev))
                .ctx(|| "device major".into())?;
            header
                .set_device_minor(rustix::fs::minor(rdev))
                .ctx(|| "device minor".into())?;
            append(&mut builder, &rel, &header, &[][..], &xattrs)?;
        }
    }
    builder.finish().ctx(|| "finishing layer tar".into())
}

/// Opens the regular file `meta` describes, neither following a symlink nor blocking on a
/// FIFO put in its place since, and checks it is still that file (so the tar's header and
/// its contents describe one file).
fn open_same_file(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let now = rustix::fs::fstat(&fd)?;
    if (now.st_dev, now.st_ino) != (meta.dev(), meta.ino())
        || rustix::fs::FileType::from_raw_mode(now.st_mode) != rustix::fs::FileType::RegularFile
    {
        return Err(std::io::Error::other("changed while the layer was packed"));
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok(std::fs::File::from(fd))
}

fn header_for(
    meta: &std::fs::Metadata,
    kind: tar::EntryType,
    options: &PackOptions,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    let mtime = meta.mtime().max(0) as u64;
    h.set_mtime(options.clamp_mtime.map_or(mtime, |c| mtime.min(c)));
    h.set_size(0);
    h
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &[u8],
    header: &tar::Header,
    data: impl std::io::Read,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    append_xattrs(builder, xattrs)?;
    let mut header = header.clone();
    builder
        .append_data(&mut header, std::ffi::OsStr::from_bytes(name), data)
        .ctx(|| format!("archiving {}", String::from_utf8_lossy(name)))
}

/// Symlinks and hard links (long targets get GNU long-link records from the tar crate).
fn append_link<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &[u8],
    header: &tar::Header,
    target: &[u8],
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    append_xattrs(builder, xattrs)?;
    let mut header = header.clone();
    builder
        .append_link(
            &mut header,
            std::ffi::OsStr::from_bytes(name),
            std::ffi::OsStr::from_bytes(target),
        )
        .ctx(|| format!("archiving {}", String::from_utf8_lossy(name)))
}

fn append_xattrs<W: Write>(
    builder: &mut tar::Builder<W>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    if !xattrs.is_empty() {
        let records: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| {
                (
                    format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                    v.as_slice(),
                )
            })
            .collect();
        builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .ctx(|| "writing PAX record".into())?;
    }
    Ok(())
}

/// The xattrs worth keeping in a layer (`user.*`, `security.capability`, `trusted.*` except
/// overlay's own markers), sorted by name.
fn read_xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = names[..n]
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty())
        .filter(|k| {
            !super::is_overlay_xattr(k)
                && (k.starts_with(b"user.")
                    || *k == b"security.capability"
                    || k.starts_with(b"trusted."))
        })
        .filter_map(|k| {
            let mut value = vec![0u8; 65536];
            let len =
                rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(k), &mut value[..]).ok()?;
            value.truncate(len);
            Some((k.to_vec(), value))
        })
        .collect();
    out.sort();
    out
}
