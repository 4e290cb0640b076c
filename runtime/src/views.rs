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
//!
//! Where fuse-overlayfs mounts a view ([`crate::fuse`]: `BERTH_MOUNT_PROGRAM`, or rootless
//! where the kernel refuses overlayfs), its daemon is a child of the view's thread, in that
//! thread's mount namespace: the view is unmounted and the daemon waited for before the
//! thread ends (the closure's panic included); if berth is killed, the daemon gets SIGKILL as
//! its thread ends, the connection is aborted, and the namespace, with no process left, goes
//! with the mount.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::RuntimeError;
use crate::fuse::{FuseMount, MountProgram};
use crate::sys::linux::in_private_mount_namespace;
use crate::sys::{MAX_OVERLAY_LOWERS, Overlay, Sys};

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

/// Overlay mount data for `lowers` (bottom first) and an optional upper, for an overlay of
/// the spec's mounts ([`Overlay::data`]).
pub fn overlay_data(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, volatile: bool) -> String {
    Overlay {
        lowers: lowers.to_vec(),
        upper: upper.map(|(u, w)| (u.to_owned(), w.to_owned())),
        volatile,
    }
    .data()
}

/// Refuses more lower layers than overlayfs stacks, before anything is mounted.
pub fn check_layer_count(lowers: &[PathBuf]) -> Result<(), RuntimeError> {
    if lowers.len() > MAX_OVERLAY_LOWERS {
        return Err(RuntimeError::Setup {
            what: format!(
                "an image of {} layers: overlayfs stacks at most {MAX_OVERLAY_LOWERS}",
                lowers.len()
            ),
            errno: nix::Error::E2BIG,
        });
    }
    Ok(())
}

/// Mounts one view; an overlay through `program` ([`crate::fuse::mount_overlay`]), its
/// fuse-overlayfs mount returned when it made one.
fn mount_view(
    sys: &mut dyn Sys,
    view: &View,
    empty: &Path,
    program: &MountProgram,
) -> Result<Option<FuseMount>, RuntimeError> {
    let err = |what: String| move |errno| RuntimeError::Setup { what, errno };
    let target = &view.target;
    match (&view.upper, view.lowers.as_slice()) {
        // A read-only view of one directory (or none): a bind mount is enough.
        (None, []) => Ok(None),
        (None, [only]) => sys
            .mount(
                Some(&only.display().to_string()),
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map(|()| None)
            .map_err(err(format!("binding {}", only.display()))),
        (upper, lowers) => {
            // overlayfs needs at least one lower dir, and two without an upper.
            let mut lowers = lowers.to_vec();
            while lowers.len() < if upper.is_some() { 1 } else { 2 } {
                lowers.insert(0, empty.to_owned());
            }
            check_layer_count(&lowers)?;
            let overlay = Overlay {
                lowers,
                upper: upper.clone(),
                volatile: false,
            };
            crate::fuse::mount_overlay(program, &overlay, target, MsFlags::empty(), &mut || {
                sys.mount_overlay(&overlay, target, MsFlags::empty())
            })
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
    let program = MountProgram::from_env();
    in_private_mount_namespace(|sys| {
        // Dropped (unmounted, their daemons gone) before the thread ends, last first.
        let mut fuse = Vec::new();
        let unmount = |mut fuse: Vec<FuseMount>| {
            while let Some(m) = fuse.pop() {
                drop(m);
            }
        };
        for v in views {
            match mount_view(sys, v, empty, &program) {
                Ok(m) => fuse.extend(m),
                Err(e) => {
                    unmount(fuse);
                    return Err(e);
                }
            }
        }
        let targets: Vec<PathBuf> = views.iter().map(|v| v.target.clone()).collect();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&targets)));
        unmount(fuse);
        match result {
            Ok(t) => Ok(t),
            Err(panic) => std::panic::resume_unwind(panic),
        }
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
        mount_view(&mut sys, &view(&[], false), empty, &MountProgram::Native).unwrap();
        mount_view(
            &mut sys,
            &view(&["/a"], false),
            empty,
            &MountProgram::Native,
        )
        .unwrap();
        mount_view(
            &mut sys,
            &view(&["/a", "/b"], false),
            empty,
            &MountProgram::Native,
        )
        .unwrap();
        mount_view(&mut sys, &view(&[], true), empty, &MountProgram::Native).unwrap();
        mount_view(
            &mut sys,
            &view(&["/a", "/b"], true),
            empty,
            &MountProgram::Native,
        )
        .unwrap();
        assert_eq!(
            sys.calls,
            [
                "mount /a /t type=- flags=MS_BIND|MS_REC data=-",
                "mount overlay /t type=overlay flags=- data=lowerdir=/b:/a,redirect_dir=nofollow,index=off,metacopy=off",
                "mount overlay /t type=overlay flags=- data=lowerdir=/e,upperdir=/u,workdir=/w,redirect_dir=nofollow,index=off,metacopy=off",
                "mount overlay /t type=overlay flags=- data=lowerdir=/b:/a,upperdir=/u,workdir=/w,redirect_dir=nofollow,index=off,metacopy=off",
            ]
        );
    }

    #[test]
    fn more_layers_than_overlayfs_stacks_are_refused_before_any_mount() {
        let mut sys = RecordingSys::default();
        let lowers: Vec<PathBuf> = (0..=MAX_OVERLAY_LOWERS)
            .map(|i| PathBuf::from(format!("/s/{i}")))
            .collect();
        let view = View {
            lowers,
            upper: Some((PathBuf::from("/u"), PathBuf::from("/w"))),
            target: PathBuf::from("/t"),
        };
        let e = mount_view(&mut sys, &view, Path::new("/e"), &MountProgram::Native).unwrap_err();
        assert!(
            e.to_string().contains("an image of 501 layers")
                && e.to_string().contains("at most 500"),
            "{e}"
        );
        assert!(sys.calls.is_empty());
    }
}
