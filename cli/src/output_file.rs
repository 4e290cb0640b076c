//! Files berth writes at a path the user names (`save -o`, `build -o type=oci|docker`,
//! `copy ... oci-archive:PATH`, `--iidfile`, `--log-file`).
//!
//! The user's path is trusted, but the directory it is in may be shared (`/tmp`, a CI
//! workspace), and another local user can plant names there. So a whole file is never
//! written through a name anyone can guess: [`write_atomically`] writes a temporary file with
//! a random name, created `O_CREAT|O_EXCL` (an existing name, symlink or file, is never
//! followed or reused), private until it is complete, then gives it its final mode with
//! `fchmod`, syncs it and renames it over the destination; a symlink planted at the
//! destination is replaced, never followed. A file written while a command runs (the log)
//! is opened by [`open_append_log`] without following a symlink, and must be a regular file
//! that is berth's user's own or sits in a directory no one else may write.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Image archives: readable by their owner only, as `docker save -o` leaves them (a random
/// `os.CreateTemp` file, `0600`, renamed).
pub const ARCHIVE_MODE: u32 = 0o600;
/// Small public results (`--iidfile`): an image ID is no secret.
pub const PUBLIC_MODE: u32 = 0o644;

/// The directory `dest` is in (`.` for a bare name).
fn parent_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses a destination that renaming over would destroy or that is not a file: a
/// directory, a device, a FIFO or a socket (`/dev/null`, a FIFO planted by someone else), or
/// a symlink to one (`/dev/stdout`). Anything else there (a regular file, a symlink to one or
/// to nothing) is replaced by the rename, never written through.
fn check_destination(dest: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}", dest.display())),
    };
    let kind = if meta.file_type().is_symlink() {
        match std::fs::metadata(dest) {
            Ok(target) => target.file_type(),
            // A dangling symlink or a loop: the rename replaces it.
            Err(_) => return Ok(()),
        }
    } else {
        meta.file_type()
    };
    if !kind.is_file() {
        bail!(
            "{}: not a regular file; berth replaces the file at this path (write to `-` or \
             give another path)",
            dest.display()
        );
    }
    Ok(())
}

/// Writes a whole file at `dest` with `mode` (exactly, whatever the umask): `write` fills a
/// temporary file with a random name beside `dest`, which is then synced and renamed over
/// `dest`. On any error the temporary file is removed and `dest` is left as it was.
pub fn write_atomically(
    dest: &Path,
    mode: u32,
    write: impl FnOnce(&mut BufWriter<File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    check_destination(dest)?;
    let dir = parent_of(dest);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `tempfile` creates it `O_CREAT|O_EXCL`, mode 0600, under a random name, and removes it
    // when dropped unless it was persisted.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".berth-tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut out = BufWriter::new(tmp.as_file().try_clone()?);
    write(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.sync_all()?;
    drop(file);
    tmp.persist(dest).map_err(|e| e.error)?;
    // The rename is durable once the directory is synced.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Opens (creating it `0600` if missing, else truncating it) a file written while the
/// command runs. A symlink at `path` is not followed; only a regular file is accepted; an
/// existing file of another user is refused where others may write the directory (as the
/// kernel's `protected_regular` does in sticky directories), since its owner could read
/// everything written to it.
pub fn open_append_log(path: &Path) -> anyhow::Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc_flags())
        .open(path)
        .with_context(|| {
            format!(
                "{} (a symlink there is not followed; give the file's own path)",
                path.display()
            )
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        let dir = std::fs::metadata(parent_of(path))?;
        if dir.mode() & 0o022 != 0 {
            bail!(
                "{}: a file of another user (uid {}) in a directory others may write",
                path.display(),
                meta.uid()
            );
        }
    }
    file.set_len(0)?;
    // Opened without blocking (a FIFO must not hang the open); writes block as usual.
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC)
        .bits() as i32
}

/// Writes `bytes` as the whole file `dest` through [`write_atomically`].
pub fn write_bytes(dest: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    write_atomically(dest, mode, |f| Ok(f.write_all(bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_symlink_at_the_destination_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "mine").unwrap();
        let dest = d.path().join("out.tar");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        write_bytes(&dest, b"archive", ARCHIVE_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        let meta = std::fs::symlink_metadata(&dest).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o7777, ARCHIVE_MODE);
        assert_eq!(std::fs::read(&dest).unwrap(), b"archive");
        // Nothing else is left beside it.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_failed_write_leaves_the_destination_and_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out.tar");
        std::fs::write(&dest, "old").unwrap();
        let r = write_atomically(&dest, ARCHIVE_MODE, |_| bail!("failed"));
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_device_or_a_symlink_to_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("stdout");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert!(write_bytes(&link, b"x", PUBLIC_MODE).is_err());
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(write_bytes(Path::new("/dev/null"), b"x", PUBLIC_MODE).is_err());
        std::fs::create_dir(d.path().join("dir")).unwrap();
        assert!(write_bytes(&d.path().join("dir"), b"x", PUBLIC_MODE).is_err());
    }

    #[test]
    fn the_log_is_not_opened_through_a_symlink_nor_as_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "mine").unwrap();
        let link = d.path().join("log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(open_append_log(&link).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_append_log(&fifo).is_err());
        let log = d.path().join("new.log");
        let mut f = open_append_log(&log).unwrap();
        f.write_all(b"line\n").unwrap();
        let meta = std::fs::metadata(&log).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        // An existing log of the user's is truncated.
        drop(f);
        open_append_log(&log).unwrap();
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    }
}
