//! The layer unpacker: a (decompressed) tar stream in, one snapshot directory out, and never
//! a byte written outside that directory whatever the tar says.
//!
//! Why not `tar::Archive::unpack`: it turns device nodes and FIFOs into empty files, rewrites
//! mtime 0, rejects absolute symlinks that are legitimate inside a rootfs, and resolves paths
//! with the host's view of symlinks. Here every path is resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` against the snapshot directory, so `..`,
//! absolute names and symlinks (`a -> /etc`, then `a/passwd`) all stay inside it; the final
//! component is always created or replaced with `*at` calls that never follow it.
//!
//! Entry rules (as containerd's `archive.Apply` for a fresh directory):
//! - names are cleaned lexically (`./a/../b` → `b`, `../../etc` → `etc`, `/etc` → `etc`);
//! - a later entry replaces an earlier one of the same name (a directory over a directory
//!   keeps its contents);
//! - `.wh.NAME` becomes an overlay whiteout (char device 0:0) and `.wh..wh..opq` sets the
//!   opaque mark on its directory (`trusted.overlay.opaque=y`, or `user.overlay.opaque=y` in a
//!   user namespace: [`super::opaque_xattr`]); a whiteout naming `.` or `..` is refused;
//! - hard links resolve their target inside the directory too;
//! - device nodes are made only as root outside a user namespace; otherwise they are skipped
//!   and listed;
//! - ownership is applied only as root (in a user namespace too, where an owner it does not
//!   map is an error); modes (with setuid/setgid/sticky), `user.*`, `security.capability`
//!   and (as root outside a user namespace) `trusted.*` xattrs, and mtimes are kept;
//!   `trusted.overlay.*` and `user.overlay.*` xattrs in a tar are dropped, since they would
//!   steer overlayfs;
//! - directory modes and mtimes are applied last, so a read-only directory can still be filled.

use std::cell::Cell;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use berth_oci::Digest;
use berth_oci::digest::ThreadedDigestingReader;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::{Result, StoreError};

/// Limits and privileges of one unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Uncompressed bytes allowed (a gzip bomb stops here with a clear error).
    pub max_bytes: u64,
    /// Apply ownership and make device nodes (true when running as root).
    pub privileged: bool,
    /// Make device nodes (with `privileged`): off for trees that are no image's layer, such
    /// as a cache mount's files from a remote cache, where a node is skipped.
    pub devices: bool,
    /// Entries allowed (the tar guard's count, checked before an entry's bytes are read).
    pub max_entries: u64,
    /// The tar is a build context, not a layer: `.wh.` names are ordinary names, and a name
    /// or hard-link target whose `..` climbs above the root is refused (as Docker's untar
    /// refuses a breakout) instead of being folded into the root.
    pub build_context: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let max_bytes = std::env::var("BERTH_MAX_LAYER_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64 << 30);
        UnpackOptions {
            max_bytes,
            privileged: rustix::process::geteuid().is_root(),
            // No device node can be made in a user namespace (rootless).
            devices: !super::in_user_namespace(),
            max_entries: super::guard::Limits::default().entries,
            build_context: false,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone)]
pub struct UnpackReport {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    pub size: u64,
    pub entries: u64,
    /// Entries not created (device nodes without privilege, unknown types), with why.
    pub skipped: Vec<String>,
}

/// Unpacks an uncompressed tar stream into `dest`, an existing empty directory.
pub fn unpack(reader: impl Read, dest: &Path, options: &UnpackOptions) -> Result<UnpackReport> {
    let exceeded = Rc::new(Cell::new(false));
    let capped = Capped {
        inner: reader,
        left: options.max_bytes,
        exceeded: exceeded.clone(),
    };
    let mut archive = tar::Archive::new(super::guard::TarGuard::new(
        ThreadedDigestingReader::new(capped),
        super::guard::Limits {
            entries: options.max_entries,
            ..Default::default()
        },
    ));
    let root = rustix::fs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StoreError::io(format!("opening {}", dest.display()), e.into()))?;
    let mut state = State {
        root,
        options,
        deferred_dirs: Vec::new(),
        entries: 0,
        skipped: Vec::new(),
        buf: vec![0; COPY_BUF + BLOCK as usize],
    };
    let result = state.apply_all(&mut archive);
    if exceeded.get() {
        return Err(StoreError::LayerTooLarge {
            limit: options.max_bytes,
        });
    }
    result?;
    let mut rest = archive.into_inner().into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| {
        if exceeded.get() {
            StoreError::LayerTooLarge {
                limit: options.max_bytes,
            }
        } else {
            StoreError::io("reading layer", e)
        }
    })?;
    state.finish_dirs()?;
    let (diff_id, size) = rest.finish();
    Ok(UnpackReport {
        diff_id,
        size,
        entries: state.entries,
        skipped: state.skipped,
    })
}

/// The copy buffer of regular files: 1 MiB, aligned to a [`BLOCK`] inside `State::buf`.
const COPY_BUF: usize = 1 << 20;

/// Counts bytes and fails past the limit.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(std::io::Error::other("layer size limit exceeded"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

struct DeferredDir {
    components: Vec<Vec<u8>>,
    mode: u32,
    mtime: Timespec,
}

struct State<'a> {
    root: OwnedFd,
    options: &'a UnpackOptions,
    deferred_dirs: Vec<DeferredDir>,
    entries: u64,
    skipped: Vec<String>,
    /// The copy buffer for file contents (1 MiB: `io::copy`'s 8 KiB made 130,000 writes
    /// and decompressor calls per GiB).
    buf: Vec<u8>,
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn hostile(entry: &[u8], reason: &str) -> StoreError {
    StoreError::HostileLayer {
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.to_owned(),
    }
}

/// `io::copy` through `buf` into a new file, leaving holes for whole 4 KiB blocks of zeros
/// (at file offsets that are multiples of 4 KiB), as `cp --sparse=auto` does: the file
/// reads the same, and a layer's zero-filled files (disk images, preallocated databases)
/// take neither the disk nor the time to write them. Runs of data and of zeros each take
/// one call.
///
/// With `direct`, the data goes to the disk with `O_DIRECT`, past the page cache: `buf`
/// must then be aligned to [`BLOCK`] and a multiple of it; it is filled whole before each
/// round, so every write starts at an aligned offset, and the last block goes out padded
/// and the file is cut back to its size. Used for files of [`DIRECT_FILE`] and more: a
/// pulled image's big files are written once and not read again soon, and filling a
/// gigabyte of fresh cache pages cost this VM 1.3 s of system time where writing past the
/// cache cost none (the blob store does the same, see `blobs.rs`). A filesystem that
/// refuses `O_DIRECT` writes the file buffered, from the same bytes.
fn copy_sparse(
    from: &mut impl Read,
    to: &mut std::fs::File,
    buf: &mut [u8],
    direct: bool,
) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let is_zero = |piece: &[u8]| {
        let mut chunks = piece.chunks_exact(64);
        chunks.all(|c| c.iter().fold(0u8, |a, b| a | b) == 0)
            && chunks.remainder().iter().all(|b| *b == 0)
    };
    let mut direct = direct && crate::fsutil::set_direct(to, true).is_ok();
    let mut total = 0u64;
    let mut set_len = false;
    loop {
        let n = if direct {
            crate::fsutil::read_full(from, buf)?
        } else {
            loop {
                match from.read(buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        if n == 0 {
            break;
        }
        // Split at block boundaries of the file; a run is (start, end, zeros).
        let mut run: Option<(usize, usize, bool)> = None;
        let mut at = 0;
        while at < n {
            let offset = total + at as u64;
            let end = n.min(at + (BLOCK - offset % BLOCK) as usize);
            let piece = &buf[at..end];
            let zeros = piece.len() as u64 == BLOCK && is_zero(piece);
            run = match run {
                Some((start, _, z)) if z == zeros => Some((start, end, z)),
                Some((start, stop, z)) => {
                    flush(to, &buf[start..stop], z, &mut direct)?;
                    Some((at, end, zeros))
                }
                None => Some((at, end, zeros)),
            };
            at = end;
        }
        if let Some((start, stop, z)) = run {
            // A direct write of a last, partial block goes out padded with zeros.
            let padded = if direct && !z {
                let padded = stop.next_multiple_of(BLOCK as usize);
                buf[stop..padded].fill(0);
                set_len |= padded != stop;
                padded
            } else {
                stop
            };
            flush(to, &buf[start..padded], z, &mut direct)?;
            set_len |= z;
            if !z && padded != stop {
                // Back to the true end, for whatever comes after (nothing, in a read that
                // came up short: it was the last).
                to.seek(SeekFrom::Current(stop as i64 - padded as i64))?;
            }
        }
        total += n as u64;
    }
    if set_len {
        to.set_len(total)?;
    }
    return Ok(total);

    fn flush(
        to: &mut std::fs::File,
        data: &[u8],
        zeros: bool,
        direct: &mut bool,
    ) -> std::io::Result<()> {
        if zeros {
            return to.seek(SeekFrom::Current(data.len() as i64)).map(|_| ());
        }
        match to.write_all(data) {
            Err(e) if *direct && e.raw_os_error() == Some(libc::EINVAL) => {
                *direct = false;
                crate::fsutil::set_direct(to, false)?;
                to.write_all(data)
            }
            r => r,
        }
    }
}

/// Blocks of a file, for holes and for `O_DIRECT`'s alignment (a page covers every device).
const BLOCK: u64 = 4096;

/// Regular files of this size and more are written with `O_DIRECT` (see [`copy_sparse`]).
const DIRECT_FILE: u64 = 8 << 20;

fn not_in_layer(target: &[u8]) -> String {
    format!(
        "hard link to {:?}, which is not in the layer",
        String::from_utf8_lossy(target)
    )
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Lexical clean: drops empty, `.` and leading `/`; `..` pops (never above the root).
pub fn clean_components(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            p => out.push(p.to_vec()),
        }
    }
    out
}

/// Whether a `..` in `path` goes above the root it is relative to (`a/../../b`, `../x`;
/// a leading `/` counts as the root itself, as in [`clean_components`]).
fn climbs_out(path: &[u8]) -> bool {
    let mut depth = 0usize;
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if depth == 0 => return true,
            b".." => depth -= 1,
            _ => depth += 1,
        }
    }
    false
}

fn join(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

fn io_err(what: &[u8], action: &str, e: Errno) -> StoreError {
    StoreError::io(
        format!("{action} {:?}", String::from_utf8_lossy(what)),
        e.into(),
    )
}

fn chown_err(what: &[u8], meta: &Meta, e: Errno) -> StoreError {
    StoreError::io(
        format!("chown {:?}", String::from_utf8_lossy(what)),
        berth_fsroot::chown_error(e, uid(meta.uid).as_raw(), gid(meta.gid).as_raw()),
    )
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl State<'_> {
    fn apply_all<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let entries = archive
            .entries()
            .map_err(|e| StoreError::io("reading layer", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("reading layer entry", e))?;
            self.apply(entry)?;
            self.entries += 1;
        }
        Ok(())
    }

    /// Opens a directory inside the root (following symlinks within it, never out).
    fn open_dir(&self, components: &[Vec<u8>], flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let path = if components.is_empty() {
            b".".to_vec()
        } else {
            join(components)
        };
        rustix::fs::openat2(
            &self.root,
            os(&path),
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
    }

    /// Opens a directory inside the root, creating missing components (mode 0755).
    fn ensure_dir(&self, components: &[Vec<u8>]) -> Result<OwnedFd> {
        self.ensure_dir_within(components, 0)
    }

    /// As [`State::ensure_dir`]; `hops` counts dangling symlinks followed so far. A missing
    /// parent behind a dangling symlink (`a -> /opt/x`, then `a/f`) is created where the
    /// link points inside the root, as containerd's applier does (`fs.RootPath`, then
    /// `MkdirAll`); a loop ends with ELOOP after 40 hops, as the kernel's own limit.
    fn ensure_dir_within(&self, components: &[Vec<u8>], hops: u32) -> Result<OwnedFd> {
        match self.open_dir(components, OFlags::PATH) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOENT) if !components.is_empty() => {
                let (last, parent) = components.split_last().expect("non-empty");
                let parent_fd = self.ensure_dir_within(parent, hops)?;
                match rustix::fs::mkdirat(&parent_fd, os(last), Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        if let Ok(target) = rustix::fs::readlinkat(&parent_fd, os(last), Vec::new())
                        {
                            if hops >= 40 {
                                return Err(io_err(
                                    &join(components),
                                    "opening directory",
                                    Errno::LOOP,
                                ));
                            }
                            let target = target.as_bytes();
                            let resolved = if target.starts_with(b"/") {
                                clean_components(target)
                            } else {
                                let mut base = self.in_root_path(&parent_fd)?;
                                base.push(b'/');
                                base.extend_from_slice(target);
                                clean_components(&base)
                            };
                            return self.ensure_dir_within(&resolved, hops + 1);
                        }
                    }
                    Err(e) => return Err(io_err(&join(components), "creating directory", e)),
                }
                self.open_dir(components, OFlags::PATH)
                    .map_err(|e| io_err(&join(components), "opening directory", e))
            }
            Err(e) => Err(io_err(&join(components), "opening directory", e)),
        }
    }

    /// Where an open directory is, relative to the root (from `/proc/self/fd`; the fd was
    /// opened with RESOLVE_IN_ROOT, so it is inside).
    fn in_root_path(&self, fd: &OwnedFd) -> Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let path_of = |fd: i32| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map_err(|e| StoreError::io("locating a directory of the layer", e))
        };
        let root = path_of(self.root.as_raw_fd())?;
        let dir = path_of(fd.as_raw_fd())?;
        let rel = dir.strip_prefix(&root).map_err(|_| {
            StoreError::io(
                format!("locating {dir:?}"),
                std::io::Error::other("outside the layer root"),
            )
        })?;
        Ok(rel.as_os_str().as_bytes().to_vec())
    }

    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let meta = read_meta(&mut entry)?;
        if self.options.build_context && climbs_out(&raw_path) {
            return Err(hostile(
                &raw_path,
                "the name climbs out of the archive's root",
            ));
        }
        let components = clean_components(&raw_path);
        let Some((name, parent)) = components.split_last() else {
            if kind.is_dir() {
                self.deferred_dirs.push(DeferredDir {
                    components: Vec::new(),
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
                return Ok(());
            }
            return Err(hostile(
                &raw_path,
                "a non-directory entry names the layer root",
            ));
        };
        if let Some(target) = name.strip_prefix(b".wh.")
            && !self.options.build_context
        {
            return self.whiteout(&raw_path, parent, target);
        }
        let parent_fd = self.ensure_dir(parent)?;
        let existing = rustix::fs::statat(&parent_fd, os(name), AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing
            .as_ref()
            .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        match kind {
            tar::EntryType::Directory => {
                if !existing_is_dir {
                    if existing.is_some() {
                        remove_at(&parent_fd, name)?;
                    }
                    rustix::fs::mkdirat(&parent_fd, os(name), Mode::from_raw_mode(0o700))
                        .map_err(|e| io_err(&raw_path, "creating directory", e))?;
                }
                let fd = rustix::fs::openat(
                    &parent_fd,
                    os(name),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(&raw_path, "opening directory", e))?;
                self.chown_fd(&fd, &meta, &raw_path)?;
                self.set_xattrs(&fd, &meta, &raw_path)?;
                self.deferred_dirs.push(DeferredDir {
                    components: components.clone(),
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if existing.is_some() {
                    remove_at(&parent_fd, name)?;
                }
                let fd = rustix::fs::openat(
                    &parent_fd,
                    os(name),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err(&raw_path, "creating", e))?;
                let mut file = std::fs::File::from(fd);
                let declared = entry.header().entry_size().unwrap_or(0);
                let direct = declared >= DIRECT_FILE && kind != tar::EntryType::GNUSparse;
                let start = self.buf.as_ptr().align_offset(BLOCK as usize);
                let buf = &mut self.buf[start..start + COPY_BUF];
                let written = copy_sparse(&mut entry, &mut file, buf, direct).map_err(|e| {
                    StoreError::io(
                        format!("writing {:?}", String::from_utf8_lossy(&raw_path)),
                        e,
                    )
                })?;
                // The tar reader ends an entry quietly at the end of the stream; a header
                // that claims more than the stream holds is a truncated or lying layer.
                if kind != tar::EntryType::GNUSparse && written < declared {
                    return Err(hostile(
                        &raw_path,
                        &format!(
                            "truncated: its header claims {declared} bytes, the layer ends after {written}"
                        ),
                    ));
                }
                self.chown_fd(&file, &meta, &raw_path)?;
                rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                    .map_err(|e| io_err(&raw_path, "chmod", e))?;
                self.set_xattrs(&file, &meta, &raw_path)?;
                rustix::fs::futimens(&file, &times(meta.mtime))
                    .map_err(|e| io_err(&raw_path, "setting times of", e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile(&raw_path, "symlink without a target"))?
                    .into_owned();
                if existing.is_some() {
                    remove_at(&parent_fd, name)?;
                }
                rustix::fs::symlinkat(os(&target), &parent_fd, os(name))
                    .map_err(|e| io_err(&raw_path, "creating symlink", e))?;
                self.finish_at(&parent_fd, name, &meta, &raw_path)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile(&raw_path, "hard link without a target"))?
                    .into_owned();
                if self.options.build_context && climbs_out(&target) {
                    return Err(hostile(
                        &raw_path,
                        "the hard link's target climbs out of the root",
                    ));
                }
                let target_components = clean_components(&target);
                let Some((target_name, target_parent)) = target_components.split_last() else {
                    return Err(hostile(&raw_path, "hard link to the layer root"));
                };
                if target_components == components {
                    return Ok(());
                }
                let target_parent_fd =
                    self.open_dir(target_parent, OFlags::PATH)
                        .map_err(|e| match e {
                            Errno::NOENT | Errno::NOTDIR | Errno::LOOP => {
                                hostile(&raw_path, &not_in_layer(&target))
                            }
                            e => io_err(&target, "resolving hard link target", e),
                        })?;
                if existing.is_some() {
                    remove_at(&parent_fd, name)?;
                }
                rustix::fs::linkat(
                    &target_parent_fd,
                    os(target_name),
                    &parent_fd,
                    os(name),
                    AtFlags::empty(),
                )
                .map_err(|e| match e {
                    Errno::PERM => hostile(&raw_path, "hard link to a directory"),
                    Errno::NOENT => hostile(&raw_path, &not_in_layer(&target)),
                    Errno::XDEV => hostile(&raw_path, "hard link out of the layer"),
                    e => io_err(&raw_path, "creating hard link", e),
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if file_type != FileType::Fifo && !(self.options.privileged && self.options.devices)
                {
                    self.skipped.push(format!(
                        "{}: device node (needs root)",
                        String::from_utf8_lossy(&raw_path)
                    ));
                    return Ok(());
                }
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if existing.is_some() {
                    remove_at(&parent_fd, name)?;
                }
                match rustix::fs::mknodat(
                    &parent_fd,
                    os(name),
                    file_type,
                    Mode::from_raw_mode(meta.mode),
                    rustix::fs::makedev(major, minor),
                ) {
                    Ok(()) => {}
                    Err(Errno::PERM) => {
                        self.skipped.push(format!(
                            "{}: device node not permitted here",
                            String::from_utf8_lossy(&raw_path)
                        ));
                        return Ok(());
                    }
                    Err(e) => return Err(io_err(&raw_path, "creating node", e)),
                }
                self.finish_at(&parent_fd, name, &meta, &raw_path)?;
                // mknodat applies the umask; the node was just made here, so set the exact mode.
                rustix::fs::chmodat(
                    &parent_fd,
                    os(name),
                    Mode::from_raw_mode(meta.mode),
                    AtFlags::empty(),
                )
                .map_err(|e| io_err(&raw_path, "chmod", e))?;
            }
            other => {
                self.skipped.push(format!(
                    "{}: unsupported entry type {other:?}",
                    String::from_utf8_lossy(&raw_path)
                ));
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, raw_path: &[u8], parent: &[Vec<u8>], target: &[u8]) -> Result<()> {
        let parent_fd = self.ensure_dir(parent)?;
        if target == b".wh..opq" {
            if !self.options.privileged {
                self.skipped.push(format!(
                    "{}: opaque marker (needs root)",
                    String::from_utf8_lossy(raw_path)
                ));
                return Ok(());
            }
            let fd = self
                .open_dir(parent, OFlags::RDONLY)
                .map_err(|e| io_err(raw_path, "opening directory", e))?;
            return rustix::fs::fsetxattr(&fd, super::opaque_xattr(), b"y", XattrFlags::empty())
                .map_err(|e| io_err(raw_path, "marking opaque", e));
        }
        if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
            return Err(hostile(raw_path, "whiteout names no file"));
        }
        if !self.options.privileged {
            self.skipped.push(format!(
                "{}: whiteout (needs root)",
                String::from_utf8_lossy(raw_path)
            ));
            return Ok(());
        }
        if rustix::fs::statat(&parent_fd, os(target), AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            remove_at(&parent_fd, target)?;
        }
        rustix::fs::mknodat(
            &parent_fd,
            os(target),
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| io_err(raw_path, "creating whiteout", e))
    }

    /// Ownership and times of a node that must not be followed (symlinks, devices).
    fn finish_at(&self, parent: &OwnedFd, name: &[u8], meta: &Meta, raw_path: &[u8]) -> Result<()> {
        if self.options.privileged {
            rustix::fs::chownat(
                parent,
                os(name),
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| chown_err(raw_path, meta, e))?;
        }
        rustix::fs::utimensat(
            parent,
            os(name),
            &times(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(raw_path, "setting times of", e))
    }

    fn chown_fd(&self, fd: impl AsFd, meta: &Meta, raw_path: &[u8]) -> Result<()> {
        if self.options.privileged {
            rustix::fs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| chown_err(raw_path, meta, e))?;
        }
        Ok(())
    }

    fn set_xattrs(&mut self, fd: impl AsFd, meta: &Meta, raw_path: &[u8]) -> Result<()> {
        for (name, value) in &meta.xattrs {
            let allowed = !super::is_overlay_xattr(name)
                && (name.starts_with(b"user.")
                    || name == b"security.capability"
                    || (self.options.privileged
                        && !super::in_user_namespace()
                        && name.starts_with(b"trusted.")));
            if !allowed {
                self.skipped.push(format!(
                    "{}: xattr {}",
                    String::from_utf8_lossy(raw_path),
                    String::from_utf8_lossy(name)
                ));
                continue;
            }
            match rustix::fs::fsetxattr(&fd, os(name), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::OPNOTSUPP | Errno::PERM) => {
                    self.skipped.push(format!(
                        "{}: xattr {} not supported here",
                        String::from_utf8_lossy(raw_path),
                        String::from_utf8_lossy(name)
                    ));
                }
                Err(e) => return Err(io_err(raw_path, "setting xattr on", e)),
            }
        }
        Ok(())
    }

    /// Applies directory modes and mtimes, deepest first, skipping any directory a later
    /// entry replaced (`O_NOFOLLOW` on the last component: a symlink is not followed).
    fn finish_dirs(&mut self) -> Result<()> {
        self.deferred_dirs
            .sort_by_key(|d| std::cmp::Reverse(d.components.len()));
        for dir in std::mem::take(&mut self.deferred_dirs) {
            let fd = match self.open_dir(&dir.components, OFlags::RDONLY | OFlags::NOFOLLOW) {
                Ok(fd) => fd,
                Err(Errno::LOOP | Errno::NOTDIR | Errno::NOENT) => continue,
                Err(e) => return Err(io_err(&join(&dir.components), "opening directory", e)),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.mode))
                .map_err(|e| io_err(&join(&dir.components), "chmod", e))?;
            rustix::fs::futimens(&fd, &times(dir.mtime))
                .map_err(|e| io_err(&join(&dir.components), "setting times of", e))?;
        }
        Ok(())
    }
}

fn uid(n: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(n as u32)
}

fn gid(n: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(n as u32)
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
    let path = entry.path_bytes().into_owned();
    let bad = |what: &str| hostile(&path, what);
    let header = entry.header();
    let old = header.as_old();
    // A numeric field left blank (all NULs or spaces) reads as 0, as Go's archive/tar (and
    // so BuildKit and Docker) reads it; anything else that is not a number is refused.
    let numeric = |value: std::io::Result<u64>, field: &[u8], what: &str| match value {
        Ok(v) => Ok(v),
        Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(_) => Err(bad(what)),
    };
    let mut meta = Meta {
        mode: numeric(header.mode().map(u64::from), &old.mode, "unreadable mode")? as u32 & 0o7777,
        uid: numeric(header.uid(), &old.uid, "unreadable uid")?,
        gid: numeric(header.gid(), &old.gid, "unreadable gid")?,
        mtime: Timespec {
            tv_sec: numeric(header.mtime(), &old.mtime, "unreadable mtime")? as i64,
            tv_nsec: 0,
        },
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(|e| StoreError::io("reading PAX header", e))?
    {
        for ext in pax {
            let ext = ext.map_err(|e| StoreError::io("reading PAX header", e))?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
            };
            match key {
                b"uid" => meta.uid = number().ok_or_else(|| bad("bad PAX uid"))?,
                b"gid" => meta.gid = number().ok_or_else(|| bad("bad PAX gid"))?,
                b"mtime" => {
                    meta.mtime = parse_pax_time(value).ok_or_else(|| bad("bad PAX mtime"))?
                }
                k if k.starts_with(b"SCHILY.xattr.") => {
                    meta.xattrs
                        .push((k[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec()));
                }
                _ => {}
            }
        }
    }
    Ok(meta)
}

fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(Timespec { tv_sec, tv_nsec })
}

/// Removes `name` in `parent` without following it; directories recursively.
fn remove_at(parent: &OwnedFd, name: &[u8]) -> Result<()> {
    match rustix::fs::unlinkat(parent, os(name), AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_err(name, "removing", e)),
    }
    let dir = rustix::fs::openat(
        parent,
        os(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(name, "opening", e))?;
    let children: Vec<Vec<u8>> = rustix::fs::Dir::read_from(&dir)
        .map_err(|e| io_err(name, "reading", e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    for child in children {
        remove_at(&dir, &child)?;
    }
    rustix::fs::unlinkat(parent, os(name), AtFlags::REMOVEDIR)
        .map_err(|e| io_err(name, "removing directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names_lexically() {
        let c = |s: &str| {
            clean_components(s.as_bytes())
                .iter()
                .map(|p| String::from_utf8(p.clone()).unwrap())
                .collect::<Vec<_>>()
                .join("/")
        };
        assert_eq!(c("./a/../b"), "b");
        assert_eq!(c("../../etc/passwd"), "etc/passwd");
        assert_eq!(c("/etc//passwd"), "etc/passwd");
        assert_eq!(c("./"), "");
    }

    #[test]
    fn parses_pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1700000000, 500000000));
    }
}
