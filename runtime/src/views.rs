//! Filesystem views outside any container: overlay mounts that live in a private mount
//! namespace of one short-lived thread, for work that needs an image's merged tree but no
//! process inside it (the builder's COPY and ADD, and reading a stage's files).
//!
//! [`with_views`] spawns a thread, gives it its own mount namespace
//! (`unshare(CLONE_NEWNS)` affects only the calling thread, which gets its own
//! `fs_struct`), makes every mount in it a slave of the host's, mounts the views and runs the
//! closure there. The mounts are visible only to that thread and vanish with it: when the
//! closure returns, when it panics, or when berth is killed. Nothing is ever left mounted on
//! the host, so there is nothing to clean up after a crash.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::RuntimeError;
use crate::sys::Sys;
use crate::sys::linux::in_private_mount_namespace;

/// One merged tree to mount.
#[derive(Debug, Clone)]
pub struct View {
    /// Snapshot directories, bottom layer first.
    pub lowers: Vec<PathBuf>,
    /// A writable upper directory and its work directory; `None`: read-only.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// An existing empty directory to mount on.
    pub target: PathBuf,
}

/// Overlay mount data for `lowers` (bottom first) and an optional upper. The options make
/// the upper a plain diff: no redirects, no index, no metacopy, whatever the kernel default;
/// `volatile` adds overlayfs's option of that name (no syncs of the upper filesystem).
pub fn overlay_data(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, volatile: bool) -> String {
    let lower = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut data = format!("lowerdir={lower}");
    if let Some((upper, work)) = upper {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            upper.display(),
            work.display()
        ));
    }
    data.push_str(",redirect_dir=off,index=off,metacopy=off");
    if volatile && upper.is_some() {
        data.push_str(VOLATILE);
    }
    data
}

const VOLATILE: &str = ",volatile";

/// Overlay mount data with `volatile` taken out, for a retry on a kernel that refused it;
/// `None` when `data` has no such option.
pub fn without_volatile(data: &str) -> Option<String> {
    data.ends_with(VOLATILE)
        .then(|| data[..data.len() - VOLATILE.len()].to_owned())
}

fn mount_view(sys: &mut dyn Sys, view: &View, empty: &Path) -> Result<(), RuntimeError> {
    let err = |what: String| move |errno| RuntimeError::Setup { what, errno };
    let target = &view.target;
    match (&view.upper, view.lowers.as_slice()) {
        // A read-only view of one directory (or none): a bind mount is enough.
        (None, []) => Ok(()),
        (None, [only]) => sys
            .mount(
                Some(&only.display().to_string()),
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(err(format!("binding {}", only.display()))),
        (upper, lowers) => {
            // overlayfs needs at least one lower dir, and two without an upper.
            let mut lowers = lowers.to_vec();
            while lowers.len() < if upper.is_some() { 1 } else { 2 } {
                lowers.insert(0, empty.to_owned());
            }
            let data = overlay_data(
                &lowers,
                upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
                false,
            );
            sys.mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
            )
            .map_err(err(format!("mounting an overlay on {}", target.display())))
        }
    }
}

/// Mounts `views` in a private mount namespace of a new thread and runs `f` there with their
/// mount points. `empty` is an empty directory, used as a stand-in lower layer.
pub fn with_views<T: Send>(
    views: &[View],
    empty: &Path,
    f: impl FnOnce(&[PathBuf]) -> T + Send,
) -> Result<T, RuntimeError> {
    in_private_mount_namespace(|sys| {
        for v in views {
            mount_view(sys, v, empty)?;
        }
        let targets: Vec<PathBuf> = views.iter().map(|v| v.target.clone()).collect();
        Ok(f(&targets))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::recording::RecordingSys;

    #[test]
    fn views_mount_as_documented() {
        let mut sys = RecordingSys::default();
        let empty = Path::new("/e");
        let view = |lowers: &[&str], upper: bool| View {
            lowers: lowers.iter().map(PathBuf::from).collect(),
            upper: upper.then(|| (PathBuf::from("/u"), PathBuf::from("/w"))),
            target: PathBuf::from("/t"),
        };
        mount_view(&mut sys, &view(&[], false), empty).unwrap();
        mount_view(&mut sys, &view(&["/a"], false), empty).unwrap();
        mount_view(&mut sys, &view(&["/a", "/b"], false), empty).unwrap();
        mount_view(&mut sys, &view(&[], true), empty).unwrap();
        mount_view(&mut sys, &view(&["/a", "/b"], true), empty).unwrap();
        assert_eq!(
            sys.calls,
            [
                "mount /a /t type=- flags=MS_BIND|MS_REC data=-",
                "mount overlay /t type=overlay flags=- data=lowerdir=/b:/a,redirect_dir=off,index=off,metacopy=off",
                "mount overlay /t type=overlay flags=- data=lowerdir=/e,upperdir=/u,workdir=/w,redirect_dir=off,index=off,metacopy=off",
                "mount overlay /t type=overlay flags=- data=lowerdir=/b:/a,upperdir=/u,workdir=/w,redirect_dir=off,index=off,metacopy=off",
            ]
        );
    }
}
