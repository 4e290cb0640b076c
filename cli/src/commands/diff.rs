//! `berth diff CONTAINER`: what the container changed in its filesystem, as `docker diff`:
//! `A /path` added, `C /path` changed (a directory holding a change is changed too), `D /path`
//! deleted, sorted by path. Read from the container's upper directory, which the container
//! wrote: every name is resolved under it with no symlink followed (`berth_fsroot`, `*at`
//! calls), so nothing in it leads the walk elsewhere. Whiteouts in both forms (a 0:0
//! character device, fuse-overlayfs's `.wh.NAME` file) are deletions. The empty files berth
//! makes in the upper as mount points for `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf` are not shown, as Docker does not show its own.

use berth_fsroot::Root;
use berth_store::Store;
use rustix::fs::FileType;

use crate::container_fs::overlay_of;
use crate::containers::find;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name, ID or unique ID prefix)
    container: String,
}

/// Entries past which the walk stops (a container can make more names than fit in memory).
const MAX_ENTRIES: usize = 1 << 20;

/// Mount points berth makes in the upper when the image lacks them (empty).
const MOUNT_POINTS: [&str; 6] = [
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/dev",
    "/proc",
    "/sys",
];

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let record = find(store, &args.container)?;
    let (lowers, upper, _) = overlay_of(store, &record)?;
    let upper = Root::open_no_symlinks(&upper)?;
    let lowers: Vec<Root> = lowers
        .iter()
        .rev()
        .filter_map(|l| Root::open_no_symlinks(l).ok())
        .collect();
    let mut changes = Vec::new();
    // A tree too deep or too large still shows what was found before the walk stopped,
    // then fails: a container cannot hide its other changes behind one deep directory.
    let walked = walk(&upper, &lowers, "", &mut changes, 0);
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    changes.dedup_by(|a, b| a.1 == b.1);
    for (kind, path) in changes {
        outln!("{kind} {}", crate::output::terminal_safe_text(&path));
    }
    walked.map(|_| 0)
}

/// The path's `lstat` in the topmost lower layer holding it.
fn in_lowers(lowers: &[Root], path: &str) -> Option<rustix::fs::Stat> {
    lowers.iter().find_map(|l| l.lstat(path).ok())
}

fn walk(
    upper: &Root,
    lowers: &[Root],
    dir: &str,
    out: &mut Vec<(char, String)>,
    depth: usize,
) -> anyhow::Result<usize> {
    let start = out.len();
    if depth > 512 || out.len() > MAX_ENTRIES {
        return Err(anyhow::anyhow!(
            "the container's changes are nested too deep or too many"
        ));
    }
    // Names relative to the roots: `RESOLVE_BENEATH` refuses absolute ones.
    for name in upper.list(if dir.is_empty() { "." } else { dir })? {
        let name = String::from_utf8_lossy(&name).into_owned();
        let path = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        let Ok(stat) = upper.lstat(&path) else {
            continue; // gone meanwhile
        };
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind == FileType::CharacterDevice && stat.st_rdev == 0 {
            out.push(('D', format!("/{path}")));
            continue;
        }
        if kind == FileType::RegularFile && name == ".wh..wh..opq" {
            continue;
        }
        if kind == FileType::RegularFile
            && let Some(gone) = name.strip_prefix(".wh.")
        {
            let gone = if dir.is_empty() {
                format!("/{gone}")
            } else {
                format!("/{dir}/{gone}")
            };
            out.push(('D', gone));
            continue;
        }
        let below = in_lowers(lowers, &path);
        let existed = below.is_some();
        let same_meta = below.is_some_and(|b| {
            (b.st_mode, b.st_uid, b.st_gid) == (stat.st_mode, stat.st_uid, stat.st_gid)
        });
        let empty = match kind {
            FileType::RegularFile => stat.st_size == 0,
            FileType::Directory => upper.list(&path).is_ok_and(|l| l.is_empty()),
            _ => false,
        };
        if !existed && empty && MOUNT_POINTS.contains(&format!("/{path}").as_str()) {
            continue;
        }
        let at = out.len();
        out.push((if existed { 'C' } else { 'A' }, format!("/{path}")));
        // A directory of the image that is in the upper only because a name below it
        // changed (same mode and owner) is shown when one is.
        if kind == FileType::Directory
            && walk(upper, lowers, &path, out, depth + 1)? == 0
            && same_meta
        {
            out.remove(at);
        }
    }
    Ok(out.len() - start)
}
