//! Small filesystem helpers shared by the store's modules.

use std::path::Path;

use crate::error::{IoContext, Result};

/// Removes a file or a directory tree without following symlinks; a missing path is fine.
pub(crate) fn remove_all(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(crate::StoreError::io(
                format!("inspecting {}", path.display()),
                e,
            ));
        }
    };
    if meta.is_dir() {
        std::fs::remove_dir_all(path).ctx(|| format!("removing {}", path.display()))
    } else {
        std::fs::remove_file(path).ctx(|| format!("removing {}", path.display()))
    }
}

/// Reads until `buf` is full or the reader ends; how many bytes it holds.
pub(crate) fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Turns `O_DIRECT` on or off for an open file (its later reads and writes).
pub(crate) fn set_direct(file: &std::fs::File, on: bool) -> std::io::Result<()> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

/// How deep [`tree_size`] goes: a directory below this depth is not counted.
const MAX_SIZE_DEPTH: usize = 512;

/// The bytes of the regular files under `path`, each inode once. The walk opens every
/// directory relative to its parent's descriptor with `O_NOFOLLOW` and reads entries with
/// `fstatat(AT_SYMLINK_NOFOLLOW)`: a symlink, even one swapped in for a directory while the
/// walk runs (a container writing in a volume), is never followed, so only what is under
/// `path` is counted. Directories deeper than [`MAX_SIZE_DEPTH`] are not counted.
pub fn tree_size(path: &Path) -> u64 {
    use rustix::fs::{AtFlags, Mode, OFlags, openat, statat};
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(root) = rustix::fs::open(path, dir_flags, Mode::empty()) else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    // Depth first; each level holds its directory open while its children are read.
    let mut stack = vec![root];
    let mut pending: Vec<Vec<std::ffi::CString>> = vec![Vec::new()];
    let list = |fd: &rustix::fd::OwnedFd| -> Vec<std::ffi::CString> {
        let Ok(dir) = rustix::fs::Dir::read_from(fd) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect()
    };
    pending[0] = list(&stack[0]);
    while let Some(names) = pending.last_mut() {
        let Some(name) = names.pop() else {
            pending.pop();
            stack.pop();
            continue;
        };
        let parent = stack.last().expect("one open directory per level");
        let Ok(st) = statat(parent, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind == rustix::fs::FileType::RegularFile {
            if seen.insert((st.st_dev, st.st_ino)) {
                total += st.st_size as u64;
            }
        } else if kind == rustix::fs::FileType::Directory && stack.len() < MAX_SIZE_DEPTH {
            // O_NOFOLLOW: a symlink put here since the fstatat fails to open.
            if let Ok(child) = openat(parent, name.as_c_str(), dir_flags, Mode::empty()) {
                let names = list(&child);
                stack.push(child);
                pending.push(names);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_size_counts_what_is_under_the_path_and_nothing_a_symlink_reaches() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("big"), vec![0u8; 1 << 20]).unwrap();
        let root = d.path().join("vol");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"12345").unwrap();
        std::fs::hard_link(root.join("a/b/f"), root.join("a/g")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("big"), root.join("file-link")).unwrap();
        assert_eq!(
            tree_size(&root),
            5,
            "the hard link once, no symlink followed"
        );
        // A directory swapped for a symlink to the outside while walks run: no walk ever
        // counts the outside's megabyte.
        let swap = root.join("swap");
        std::fs::create_dir(&swap).unwrap();
        for i in 0..50 {
            std::fs::create_dir_all(swap.join(format!("d{i}"))).unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let racer = {
            let (stop, swap, outside, hold) = (
                stop.clone(),
                swap.clone(),
                outside.clone(),
                root.join("hold"),
            );
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::fs::rename(&swap, &hold);
                    let _ = std::os::unix::fs::symlink(&outside, &swap);
                    let _ = std::fs::remove_file(&swap);
                    let _ = std::fs::rename(&hold, &swap);
                }
            })
        };
        for _ in 0..300 {
            assert!(tree_size(&root) < 1 << 20);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        racer.join().unwrap();
    }
}
