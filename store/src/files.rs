//! How everything under the store root is created: a path in, a directory or file with its
//! mode out. The one place that decides the store's modes; everything in berth that makes
//! something under the store root or a container's directory goes through it.
//!
//! Other local users get nothing: the store's own directories are `0700` and its files
//! `0600`, so no other user can read an image's files, a container's `config.json` (with its
//! `-e` values) or logs, run a setuid file from a snapshot, an upper dir, a volume or a cache
//! mount, or open (and so `flock`) a lock. Docker keeps its root `0710` and its layer
//! directories `0700` for the same reason.
//!
//! Containers are not hindered: overlayfs reaches its lower and upper dirs with the mounter's
//! credentials, and a bind mount shows its source without the path above it, so nothing a
//! container sees needs a mode above the store's. What a container does see keeps the mode
//! it shows inside: the root `/` of a tree (a snapshot, an upper dir, a volume's `_data`)
//! is [`TREE_ROOT`] unless the image says otherwise, and files bound into a container
//! (`/etc/hosts`) are readable by its users ([`SHOWN_FILE`]); the private directory above
//! them is what protects them.
//!
//! Every mode is set explicitly (`fchmod` after creating), so no umask weakens or breaks it.
//! Locks ([`open_lock`]) are opened without following a symlink, and one that is not a
//! regular file of the user running berth is refused; one left open by an older berth is
//! closed to others when it is next opened. [`tighten`] closes the top levels of a store an
//! older berth made with open modes; what lies below them is protected by them.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{IoContext, Result, StoreError};

/// The store's own directories: only the user running berth enters them.
pub const PRIVATE_DIR: u32 = 0o700;
/// The store's own files.
pub const PRIVATE_FILE: u32 = 0o600;
/// The root `/` of a tree a container or a step sees (a snapshot, an upper dir, a volume):
/// every user in the container must be able to walk through it.
pub const TREE_ROOT: u32 = 0o755;
/// A file bound into a container (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`).
pub const SHOWN_FILE: u32 = 0o644;

/// Creates a directory with `mode` (exactly, whatever the umask); fails if it exists.
pub fn create_dir_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    // Created without group or other bits, so it is never more open than `mode`, even for
    // the moment before the chmod.
    std::fs::DirBuilder::new()
        .mode(mode & PRIVATE_DIR)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Creates a private directory; fails if it exists.
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    create_dir_mode(path, PRIVATE_DIR)
}

/// Creates a directory and its missing parents, each private; an existing one is left as
/// it is.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    ensure_dir_mode(path, PRIVATE_DIR)
}

/// As [`create_dir_all`], with `mode` for `path` itself when it is created (its missing
/// parents are private).
pub fn ensure_dir_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    match create_dir_mode(path, mode) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
                return Err(e);
            };
            ensure_dir_mode(parent, PRIVATE_DIR)?;
            match create_dir_mode(path, mode) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
                r => r,
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates (or truncates) a file with `mode`, never through a symlink at `path`.
pub fn create_file_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode & PRIVATE_FILE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Creates (or truncates) a private file.
pub fn create_file(path: &Path) -> std::io::Result<File> {
    create_file_mode(path, PRIVATE_FILE)
}

/// Opens a private file for appending, made if missing, never through a symlink at `path`.
pub fn append_file(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .append(true)
        .create(true)
        .mode(PRIVATE_FILE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    Ok(file)
}

/// Creates a private file that must not exist yet.
pub fn create_new_file(path: &Path) -> std::io::Result<File> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    Ok(file)
}

/// Writes a whole file with `mode`.
pub fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    create_file_mode(path, mode)?.write_all(bytes)
}

/// Writes a whole private file.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_mode(path, bytes, PRIVATE_FILE)
}

/// Closes a directory an older berth made open to others: clears its group and other bits
/// (a stat, and a chmod only when something is open); whether it was open. Symlinks are
/// followed, as `--root` may be one.
pub fn tighten(path: &Path) -> Result<bool> {
    let meta = std::fs::metadata(path).ctx(|| format!("inspecting {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))
        .ctx(|| format!("closing {} to other users", path.display()))?;
    Ok(true)
}

/// Makes every regular file of ours directly in `dir` private (not following symlinks): the
/// lock files of a store an older berth left open, closed when it is first opened again.
pub fn tighten_files_in(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    for entry in std::fs::read_dir(dir).ctx(|| format!("reading {}", dir.display()))? {
        let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
        let Ok(meta) = entry.metadata() else { continue };
        if meta.file_type().is_file() && meta.uid() == me && meta.mode() & 0o077 != 0 {
            let path = entry.path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(PRIVATE_FILE))
                .ctx(|| format!("closing {} to other users", path.display()))?;
        }
    }
    Ok(())
}

/// Opens (creating it private) a lock file. A symlink or anything but a regular file at
/// `path`, or a file another user owns, is refused: a lock someone else can open is a lock
/// they can hold forever. A lock an older berth left open to others is made private.
pub fn open_lock(path: &Path) -> Result<File> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |reason: String| StoreError::UnsafeFile {
        path: path.to_owned(),
        reason,
    };
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        // A FIFO planted there must not block the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refuse("it is a symbolic link".into())
            } else {
                StoreError::io(format!("opening lock {}", path.display()), e)
            }
        })?;
    let meta = file
        .metadata()
        .ctx(|| format!("inspecting lock {}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refuse(format!(
            "it is owned by uid {}, not by uid {me} who runs berth",
            meta.uid()
        )));
    }
    if meta.mode() & 0o777 != PRIVATE_FILE {
        file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))
            .ctx(|| format!("closing lock {} to other users", path.display()))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o277));
        let a = t.path().join("a/b/c");
        let r = (|| -> std::io::Result<()> {
            create_dir_all(&a)?;
            ensure_dir_mode(&t.path().join("root"), TREE_ROOT)?;
            write(&t.path().join("f"), b"x")?;
            write_mode(&t.path().join("shown"), b"x", SHOWN_FILE)?;
            Ok(())
        })();
        rustix::process::umask(old);
        r.unwrap();
        assert_eq!(mode(&t.path().join("a")), 0o700);
        assert_eq!(mode(&a), 0o700);
        assert_eq!(mode(&t.path().join("root")), 0o755);
        assert_eq!(mode(&t.path().join("f")), 0o600);
        assert_eq!(mode(&t.path().join("shown")), 0o644);
    }

    #[test]
    fn files_are_not_written_through_symlinks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("target"), "keep").unwrap();
        std::os::unix::fs::symlink(t.path().join("target"), t.path().join("link")).unwrap();
        assert!(write(&t.path().join("link"), b"x").is_err());
        assert_eq!(
            std::fs::read_to_string(t.path().join("target")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn locks_refuse_symlinks_and_fifos_and_close_open_ones() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("l");
        std::fs::write(&lock, "").unwrap();
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o666)).unwrap();
        open_lock(&lock).unwrap();
        assert_eq!(mode(&lock), 0o600);
        std::os::unix::fs::symlink(&lock, t.path().join("s")).unwrap();
        let e = open_lock(&t.path().join("s")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            t.path().join("fifo"),
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = open_lock(&t.path().join("fifo")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let fresh = t.path().join("new");
        open_lock(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }

    #[test]
    fn tighten_clears_group_and_other_bits_only() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(tighten(&d).unwrap());
        assert_eq!(mode(&d), 0o1700);
        assert!(!tighten(&d).unwrap());
    }
}
