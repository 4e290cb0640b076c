//! The container's filesystem: an OCI runtime spec and a [`RootfsSource`] in, an ordered
//! list of [`Op`]s out ([`plan`], a pure value), and those ops applied through [`Sys`]
//! ([`apply`]) inside the container's fresh mount namespace.
//!
//! Order (as runc's `rootfs_linux.go`): make `/` recursively slave, so nothing done here
//! propagates to the host while host mounts still propagate in; mount the overlay rootfs;
//! the spec's mounts in order (with `/dev`'s device nodes right after the `/dev` tmpfs);
//! masked paths (`/dev/null` over files, an empty read-only tmpfs over directories);
//! read-only paths (bound, read-only); `pivot_root` into the rootfs with the old root
//! detached.
//!
//! Every target is resolved inside the rootfs and held open; the mount goes onto the held
//! descriptor ([`crate::sys::InRoot`]), never onto the path walked again.
//!
//! Binds are recursive (`rbind`, as Docker's `-v`), so a bound directory brings the mounts
//! below it; read-only, `nosuid`, `nodev` and `noexec` are set on the whole bound tree, never
//! on its top mount alone, and its propagation made private, before it is attached
//! ([`bind`]): with `-v /:/host:ro`, the host's `/proc` and `/sys` below are read-only too,
//! and a mount made on the host later does not appear in the container.
//!
//! Not privileged, the rootfs and every bind are `nodev`: a device node that an image layer,
//! a RUN step or a bound directory holds cannot be opened, whether or not a devices cgroup
//! enforces Docker's rules (cgroup v2 has none without a BPF program). Only `/dev`'s own tmpfs,
//! with the nodes berth makes there, is not.
//!
//! Because every mount lives in the container's namespace, they all vanish with its last
//! process: nothing is left on the host to unmount.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::RuntimeError;
use crate::sys::{Create, DeviceNode, InRoot, Sys};

/// Where the rootfs comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsSource {
    /// An overlay: `lowers` bottom layer first, a writable `upper` and its `work` dir.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        /// Mount with overlayfs's `volatile` option: no sync of the upper filesystem, also
        /// not at unmount (an ext4 journal commit when the container's mount namespace
        /// goes). For uppers that do not outlive the container anyway: `run --rm`, as
        /// Podman does. Not for the builder's RUN steps: their upper is renamed into a
        /// snapshot, and the sync at unmount is what makes that snapshot durable. Kernels
        /// before 5.10 refuse the option; the mount is then retried without it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        volatile: bool,
    },
    /// An existing directory, bind-mounted (an OCI bundle's `rootfs/`).
    Directory(PathBuf),
}

/// One step of the rootfs setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The overlay rootfs ([`Sys::mount_overlay`]).
    Overlay {
        overlay: crate::sys::Overlay,
        target: PathBuf,
        flags: MsFlags,
    },
    Mount {
        source: Option<String>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Mkdir(PathBuf),
    Touch(PathBuf),
    Devices(PathBuf),
    Mask(PathBuf),
    ReadOnly(PathBuf),
    /// A bind of `source` (its whole tree when `recursive`) with `attrs` on each of its
    /// mounts and their propagation private, set before it is attached ([`bind`]).
    Bind {
        source: PathBuf,
        target: PathBuf,
        recursive: bool,
        attrs: MsFlags,
    },
    Pivot(PathBuf),
}

/// Docker's device set under `/dev`.
pub fn default_devices(dev: &Path) -> Vec<DeviceNode> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DeviceNode {
        path: dev.join(name),
        major,
        minor,
        mode: 0o666,
    })
    .collect()
}

/// Splits mount options into flags and the data string, as runc's `parseMountOptions`.
pub fn parse_options(options: &[String]) -> (MsFlags, Vec<String>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" => (MsFlags::MS_PRIVATE, MsFlags::empty()),
            "rprivate" => (MsFlags::MS_PRIVATE | MsFlags::MS_REC, MsFlags::empty()),
            "slave" => (MsFlags::MS_SLAVE, MsFlags::empty()),
            "rslave" => (MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            other => {
                data.push(other.to_owned());
                continue;
            }
        };
        flags |= set;
        flags &= !clear;
    }
    (flags, data)
}

/// The per-mount flags that a bind may set ([`Sys::bind_tree`]).
const RESTRICTIONS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The mounts at and below `target` in `/proc/self/mountinfo` text, top-down (a parent before
/// its children, as the kernel lists them), each with its per-mount flags (`ro`, `nosuid`,
/// `nodev`, `noexec` and the atime ones), which a bind remount would otherwise reset.
pub fn mounts_under(mountinfo: &str, target: &Path) -> Vec<(PathBuf, MsFlags)> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let point = PathBuf::from(unescape_mountinfo(point));
        if !point.starts_with(target) {
            continue;
        }
        let (flags, _) = parse_options(
            &options
                .split(',')
                .filter(|o| *o != "rw")
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
        found.push((point, flags));
    }
    found
}

/// A mount point as mountinfo writes it: space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
        .into_string()
        .unwrap_or_else(|s| s.to_string_lossy().into_owned())
}

/// What [`Sys::bind_tree`] sets, for a kernel without `mount_setattr` (before 5.12), on a tree
/// already bound at `target`: the subtree made private first (no host mount can appear in it
/// meanwhile), then each mount that `/proc/self/mountinfo` lists at or below `target` remounted
/// (`MS_REMOUNT|MS_BIND`) with `attrs` added to the flags it has, which such a remount would
/// otherwise clear. A listed mount that the path no longer reaches (hidden under a later mount
/// at or above it: ENOENT, or EINVAL for a path that is no mount point in this view) is
/// skipped: nothing can reach it through the bind either. These remounts go by path, so on
/// such kernels a path component swapped meanwhile is not guarded against.
pub fn remount_tree(sys: &mut dyn Sys, target: &Path, attrs: MsFlags) -> Result<(), RuntimeError> {
    let fail = |what: String| move |errno: nix::Error| RuntimeError::Setup { what, errno };
    sys.mount(
        None,
        target,
        None,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None,
    )
    .map_err(fail(format!("making {} private", target.display())))?;
    if attrs.is_empty() {
        return Ok(());
    }
    let info = sys
        .read_file(Path::new(MOUNTINFO))
        .map_err(fail(format!("reading {MOUNTINFO}")))?;
    let mounts = mounts_under(&info, target);
    if mounts.is_empty() {
        return Err(fail(format!("finding the mount at {}", target.display()))(
            nix::Error::ENOENT,
        ));
    }
    for (point, flags) in mounts {
        let keep = flags
            & (RESTRICTIONS
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_STRICTATIME
                | MsFlags::MS_RELATIME);
        match sys.mount(
            None,
            &point,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | keep | attrs,
            None,
        ) {
            Ok(()) => {}
            Err(nix::Error::ENOENT | nix::Error::EINVAL) if point != target => {}
            Err(e) => return Err(fail(format!("restricting {}", point.display()))(e)),
        }
    }
    Ok(())
}

/// The mount table of the calling thread's mount namespace (the builder's views unshare it
/// for one thread; `/proc/self` would show the process's).
const MOUNTINFO: &str = "/proc/thread-self/mountinfo";

/// The rootfs setup for `spec`, as a value.
pub fn plan(spec: &Spec, source: &RootfsSource) -> Result<Vec<Op>, RuntimeError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RuntimeError::Spec("the spec has no root".into()))?
        .path()
        .clone();
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let console = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::contract::ANNOTATION_CONSOLE))
        .cloned();
    let mut ops = vec![Op::Mount {
        source: None,
        target: "/".into(),
        fstype: None,
        flags: MsFlags::MS_SLAVE | MsFlags::MS_REC,
        data: None,
    }];
    // Not privileged: no device node is opened through the rootfs or any mount of the spec
    // but /dev's own tmpfs ([`crate::contract::ANNOTATION_NODEV`]).
    let nodev = spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(crate::contract::ANNOTATION_NODEV));
    let root_attrs = if nodev {
        MsFlags::MS_NODEV
    } else {
        MsFlags::empty()
    };
    ops.push(match source {
        RootfsSource::Overlay {
            lowers,
            upper,
            work,
            volatile,
        } => {
            // With no layer, an empty upper-only image still needs one lower, so the work
            // dir's sibling `empty` stands in.
            let lowers = if lowers.is_empty() {
                vec![work.with_file_name("empty")]
            } else {
                lowers.clone()
            };
            crate::views::check_layer_count(&lowers)?;
            Op::Overlay {
                overlay: crate::sys::Overlay {
                    lowers,
                    upper: Some((upper.clone(), work.clone())),
                    volatile: *volatile,
                },
                target: root.clone(),
                flags: root_attrs,
            }
        }
        RootfsSource::Directory(dir) => Op::Bind {
            source: dir.clone(),
            target: root.clone(),
            recursive: true,
            attrs: root_attrs,
        },
    });
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let target = inside(m.destination());
        let (flags, data) = parse_options(m.options().as_deref().unwrap_or_default());
        let fstype = m.typ().clone().filter(|t| t != "bind");
        let is_bind = flags.contains(MsFlags::MS_BIND) || m.typ().as_deref() == Some("bind");
        let source_is_file = is_bind && m.source().as_ref().is_some_and(|s| !s.is_dir());
        ops.push(if source_is_file {
            Op::Touch(target.clone())
        } else {
            Op::Mkdir(target.clone())
        });
        let data = (!data.is_empty()).then(|| data.join(","));
        let source = m
            .source()
            .as_ref()
            .map(|s| s.display().to_string())
            .or_else(|| fstype.clone());
        if is_bind {
            // Always restricted, also with no flag to set: the propagation becomes private.
            ops.push(Op::Bind {
                source: source.map(PathBuf::from).unwrap_or_default(),
                target,
                recursive: flags.contains(MsFlags::MS_REC),
                attrs: flags & RESTRICTIONS,
            });
        } else {
            ops.push(Op::Mount {
                source,
                target: target.clone(),
                fstype,
                flags,
                data,
            });
            if m.destination() == Path::new("/dev") {
                ops.push(Op::Devices(target.clone()));
                if let Some(console) = &console {
                    let dst = target.join("console");
                    ops.push(Op::Touch(dst.clone()));
                    ops.push(Op::Mount {
                        source: Some(console.clone()),
                        target: dst,
                        fstype: None,
                        flags: MsFlags::MS_BIND,
                        data: None,
                    });
                }
            }
        }
    }
    if let Some(linux) = spec.linux() {
        for p in linux.masked_paths().as_deref().unwrap_or_default() {
            ops.push(Op::Mask(inside(Path::new(p))));
        }
        for p in linux.readonly_paths().as_deref().unwrap_or_default() {
            ops.push(Op::ReadOnly(inside(Path::new(p))));
        }
    }
    ops.push(Op::Pivot(root));
    Ok(ops)
}

/// Binds `source` onto `target` with `attrs` on its whole tree ([`Sys::bind_tree`]); on a
/// kernel without `open_tree`/`mount_setattr`, a plain bind onto the held target, then each
/// mount remounted ([`remount_tree`], by the path the target had when it was resolved).
pub fn bind(
    sys: &mut dyn Sys,
    source: &Path,
    target: &InRoot,
    recursive: bool,
    attrs: MsFlags,
) -> Result<(), RuntimeError> {
    let fail = |what: String| move |errno: nix::Error| RuntimeError::Setup { what, errno };
    match sys.bind_tree(source, target, recursive, attrs) {
        Err(nix::Error::ENOSYS | nix::Error::EPERM) => {
            let rec = if recursive {
                MsFlags::MS_REC
            } else {
                MsFlags::empty()
            };
            // A handed-down tree is attached by `bind_tree` even where it could not be
            // restricted first.
            if crate::handed_down_tree(source).is_none() {
                sys.mount(
                    Some(&source.display().to_string()),
                    target.target(),
                    None,
                    MsFlags::MS_BIND | rec,
                    None,
                )
                .map_err(fail(format!("binding {}", target.path().display())))?;
            }
            remount_tree(sys, target.path(), attrs)
        }
        // The kernel attaches no mount whose source was removed (`ENOENT`): a handed-down
        // file replaced or deleted since it was opened.
        Err(nix::Error::ENOENT) if crate::handed_down_tree(source).is_some() => {
            Err(fail(format!(
                "binding {}: its source was removed or replaced since it was opened",
                target.path().display()
            ))(nix::Error::ENOENT))
        }
        other => other.map_err(fail(format!("binding {}", target.path().display()))),
    }
}

/// Applies the ops in order. Every path under the root is resolved inside it first
/// ([`Sys::resolve_in_root`]): an image's symlinks (`/dev -> /host/dir`, `/etc -> /`) are
/// followed within the rootfs and can never make the runtime create or mount anything outside
/// it. What is mounted or created there goes through the descriptor the resolution holds
/// ([`InRoot::target`]), never through the path again, so a component swapped for a symlink
/// meanwhile (in a volume or cache mount shared with a running container or step) changes
/// nothing. Masked and read-only paths that do not exist are skipped (the kernel may not have
/// them), as runc does.
pub fn apply(sys: &mut dyn Sys, ops: &[Op]) -> Result<(), RuntimeError> {
    let fail = |what: String| move |e: nix::Error| RuntimeError::Setup { what, errno: e };
    let root = ops.iter().find_map(|o| match o {
        Op::Pivot(r) => Some(r.clone()),
        _ => None,
    });
    // A path of the plan, resolved and held: inside the root when under it (but not the root
    // itself).
    let at =
        |sys: &mut dyn Sys, p: &Path, create: Create| -> Result<Option<InRoot>, RuntimeError> {
            let Some(root) = root
                .as_ref()
                .filter(|r| p.starts_with(r) && p != r.as_path())
            else {
                return Ok(Some(InRoot::unresolved(p)));
            };
            match sys.resolve_in_root(root, p.strip_prefix(root).expect("under root"), create) {
                Ok(resolved) => Ok(Some(resolved)),
                Err(nix::Error::ENOENT) if create == Create::Nothing => Ok(None),
                Err(e) => Err(fail(format!("resolving {} in the rootfs", p.display()))(e)),
            }
        };
    // A path that must exist in the rootfs, for `what` to be done at it.
    let existing = |sys: &mut dyn Sys, what: &str, p: &Path| -> Result<InRoot, RuntimeError> {
        at(sys, p, Create::Nothing)?.ok_or_else(|| RuntimeError::Setup {
            what: format!("{what} {}", p.display()),
            errno: nix::Error::ENOENT,
        })
    };
    for op in ops {
        match op {
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let target = existing(sys, "mounting", target)?;
                let mounted = sys.mount(
                    source.as_deref(),
                    target.target(),
                    fstype.as_deref(),
                    *flags,
                    data.as_deref(),
                );
                match (mounted, fstype.as_deref()) {
                    // A user namespace may mount sysfs only in a network namespace of its own:
                    // sharing the host's network (rootless), the host's `/sys` is bound there,
                    // read-only, as runc does rootless.
                    (Err(nix::Error::EPERM), Some("sysfs")) => bind(
                        sys,
                        Path::new("/sys"),
                        &target,
                        true,
                        *flags | MsFlags::MS_RDONLY,
                    )?,
                    // devpts refuses a `gid=` that the user namespace does not map (only the
                    // user's own id mapped, rootless): its ptys then belong to the caller's group.
                    (Err(nix::Error::EINVAL), Some("devpts")) => {
                        let data = data.as_deref().map(|d| {
                            d.split(',')
                                .filter(|o| !o.starts_with("gid="))
                                .collect::<Vec<_>>()
                                .join(",")
                        });
                        sys.mount(
                            source.as_deref(),
                            target.target(),
                            fstype.as_deref(),
                            *flags,
                            data.as_deref(),
                        )
                        .map_err(fail(format!("mounting {}", target.path().display())))?
                    }
                    (other, _) => {
                        other.map_err(fail(format!("mounting {}", target.path().display())))?
                    }
                }
            }
            Op::Overlay {
                overlay,
                target,
                flags,
            } => {
                let target = existing(sys, "mounting", target)?;
                let mut result = sys.mount_overlay(overlay, target.target(), *flags);
                // A kernel without overlayfs's `volatile` (before 5.10) answers EINVAL.
                if let (Err(nix::Error::EINVAL), true) = (result, overlay.volatile) {
                    let plain = crate::sys::Overlay {
                        volatile: false,
                        ..overlay.clone()
                    };
                    result = sys.mount_overlay(&plain, target.target(), *flags);
                }
                result.map_err(fail(format!(
                    "mounting the overlay of {} layers on {}",
                    overlay.lowers.len(),
                    target.path().display()
                )))?
            }
            Op::Mkdir(p) => {
                at(sys, p, Create::Dir)?;
            }
            Op::Touch(p) => {
                at(sys, p, Create::File)?;
            }
            Op::Devices(dev_path) => {
                let dev = existing(sys, "creating devices in", dev_path)?;
                for node in default_devices(dev.target()) {
                    let name = display_name(&node.path);
                    match sys.mknod_char(&node) {
                        // In a user namespace no node can be made: the host's own is bound
                        // onto a file instead (the container's `/dev` is berth's fresh tmpfs).
                        Err(nix::Error::EPERM) => {
                            let file = at(sys, &dev_path.join(&name), Create::File)?
                                .expect("a created file");
                            bind(
                                sys,
                                &Path::new("/dev").join(&name),
                                &file,
                                false,
                                MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                            )?;
                        }
                        other => other.map_err(fail(format!("creating /dev/{name}")))?,
                    }
                }
                for (link, target) in [
                    ("fd", "/proc/self/fd"),
                    ("stdin", "/proc/self/fd/0"),
                    ("stdout", "/proc/self/fd/1"),
                    ("stderr", "/proc/self/fd/2"),
                    ("ptmx", "pts/ptmx"),
                    ("core", "/proc/kcore"),
                ] {
                    sys.symlink(target, &dev.target().join(link))
                        .map_err(fail(format!("linking /dev/{link}")))?;
                }
            }
            Op::Mask(p) => {
                let Some(p) = at(sys, p, Create::Nothing)? else {
                    continue;
                };
                if sys.is_dir(p.target()) {
                    sys.mount(
                        Some("tmpfs"),
                        p.target(),
                        Some("tmpfs"),
                        MsFlags::MS_RDONLY,
                        None,
                    )
                    .map_err(fail(format!("masking {}", p.path().display())))?;
                } else if sys.exists(p.target()) {
                    sys.mount(Some("/dev/null"), p.target(), None, MsFlags::MS_BIND, None)
                        .map_err(fail(format!("masking {}", p.path().display())))?;
                }
            }
            Op::ReadOnly(p) => {
                let Some(p) = at(sys, p, Create::Nothing)? else {
                    continue;
                };
                bind(sys, p.target(), &p, true, MsFlags::MS_RDONLY)?;
            }
            Op::Bind {
                source,
                target,
                recursive,
                attrs,
            } => {
                let target = existing(sys, "binding", target)?;
                bind(sys, source, &target, *recursive, *attrs)?;
            }
            Op::Pivot(root) => {
                sys.chdir(root)
                    .map_err(fail(format!("entering {}", root.display())))?;
                sys.pivot_here().map_err(fail("pivot_root".into()))?;
            }
        }
    }
    Ok(())
}

/// The last component of a path, for messages.
fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{NetworkMode, ProcessSettings, build_spec};
    use crate::sys::linux::{LinuxSys, in_private_mount_namespace};
    use crate::sys::recording::RecordingSys;

    fn settings() -> ProcessSettings {
        ProcessSettings {
            args: vec!["sh".into()],
            hostname: "box".into(),
            network: NetworkMode::None,
            etc_files: vec![("/c/hosts".into(), "/etc/hosts")],
            ..Default::default()
        }
    }

    #[test]
    fn a_volatile_overlay_is_mounted_without_the_option_where_the_kernel_refuses_it() {
        let spec = build_spec(Path::new("/c/rootfs"), &settings()).unwrap();
        let source = RootfsSource::Overlay {
            lowers: vec!["/s/a".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            volatile: true,
        };
        let data = "data=lowerdir=/s/a,upperdir=/c/upper,workdir=/c/work,redirect_dir=nofollow,index=off,metacopy=off";
        for refuse in [false, true] {
            let mut sys = RecordingSys {
                refuse_volatile: refuse,
                ..Default::default()
            };
            apply(&mut sys, &plan(&spec, &source).unwrap()).unwrap();
            let overlays: Vec<&String> = sys
                .calls
                .iter()
                .filter(|c| c.starts_with("mount overlay"))
                .collect();
            let volatile =
                format!("mount overlay /c/rootfs type=overlay flags=MS_NODEV {data},volatile");
            let plain = format!("mount overlay /c/rootfs type=overlay flags=MS_NODEV {data}");
            if refuse {
                assert_eq!(overlays, [&volatile, &plain]);
            } else {
                assert_eq!(overlays, [&volatile]);
            }
        }
        // Not volatile: no option, and a refusal is an error, not retried.
        let source = RootfsSource::Overlay {
            lowers: vec!["/s/a".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            volatile: false,
        };
        let mut sys = RecordingSys::default();
        apply(&mut sys, &plan(&spec, &source).unwrap()).unwrap();
        assert!(!sys.calls.iter().any(|c| c.contains("volatile")));
    }

    #[test]
    fn mount_sequence_is_the_documented_one() {
        let spec = build_spec(Path::new("/c/rootfs"), &settings()).unwrap();
        let source = RootfsSource::Overlay {
            lowers: vec!["/s/a".into(), "/s/b".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            volatile: false,
        };
        let mut sys = RecordingSys {
            files: vec!["/c/rootfs/proc/kcore".into()],
            dirs: vec!["/c/rootfs/sys/firmware".into(), "/c/rootfs/proc/sys".into()],
            ..Default::default()
        };
        apply(&mut sys, &plan(&spec, &source).unwrap()).unwrap();
        let calls = sys.calls.join("\n");
        let expected_order = [
            "mount - / type=- flags=MS_REC|MS_SLAVE",
            // Not privileged: the rootfs is nodev, /dev's own tmpfs is not.
            "mount overlay /c/rootfs type=overlay flags=MS_NODEV data=lowerdir=/s/b:/s/a,upperdir=/c/upper,workdir=/c/work,redirect_dir=nofollow,index=off,metacopy=off",
            // Every target inside the rootfs is mounted onto through its held descriptor.
            "mount proc fd:/c/rootfs/proc type=proc",
            "mount tmpfs fd:/c/rootfs/dev type=tmpfs flags=MS_NOSUID|MS_STRICTATIME data=",
            "mknod fd:/c/rootfs/dev/null c 1:3 666",
            "symlink fd:/c/rootfs/dev/ptmx -> pts/ptmx",
            "mount devpts fd:/c/rootfs/dev/pts type=devpts",
            "mount sysfs fd:/c/rootfs/sys type=sysfs flags=MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC",
            "touch /c/rootfs/etc/hosts",
            "bind_tree /c/hosts fd:/c/rootfs/etc/hosts AT_RECURSIVE set=MS_NODEV propagation=MS_PRIVATE",
            "mount /dev/null fd:/c/rootfs/proc/kcore type=- flags=MS_BIND",
            "mount tmpfs fd:/c/rootfs/sys/firmware type=tmpfs flags=MS_RDONLY",
            "bind_tree fd:/c/rootfs/proc/sys fd:/c/rootfs/proc/sys AT_RECURSIVE set=MS_RDONLY propagation=MS_PRIVATE",
            "chdir /c/rootfs",
            "pivot_root . .; umount2 . MNT_DETACH; chdir /",
        ];
        let mut at = 0;
        for want in expected_order {
            let found = calls[at..]
                .find(want)
                .unwrap_or_else(|| panic!("{want:?} missing or out of order in:\n{calls}"));
            at += found + want.len();
        }
        assert!(
            !calls.contains("/proc/keys"),
            "masked paths that do not exist are skipped"
        );
    }

    fn with_binds(binds: Vec<(PathBuf, String, bool)>) -> Spec {
        build_spec(
            Path::new("/c/rootfs"),
            &ProcessSettings {
                binds,
                ..settings()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_read_only_bind_is_read_only_through_its_whole_tree() {
        let spec = with_binds(vec![
            ("/data".into(), "/r".into(), true),
            ("/rw".into(), "/w".into(), false),
        ]);
        let mut sys = RecordingSys::default();
        apply(
            &mut sys,
            &plan(&spec, &RootfsSource::Directory("/b".into())).unwrap(),
        )
        .unwrap();
        let calls = sys.calls.join("\n");
        // Restricted before it is attached, onto the held target; nodev, not privileged.
        let want = "bind_tree /data fd:/c/rootfs/r AT_RECURSIVE set=MS_RDONLY|MS_NODEV propagation=MS_PRIVATE\n";
        assert!(calls.contains(want), "{calls}");
        // A read-write bind is recursive too, and private.
        let want =
            "bind_tree /rw fd:/c/rootfs/w AT_RECURSIVE set=MS_NODEV propagation=MS_PRIVATE\n";
        assert!(calls.contains(want), "{calls}");
        assert!(!calls.contains("MS_REMOUNT"), "{calls}");
        assert!(!calls.contains("mount /data"), "{calls}");
    }

    #[test]
    fn without_mount_setattr_every_submount_is_remounted_keeping_its_flags() {
        let spec = with_binds(vec![("/data".into(), "/r".into(), true)]);
        // What the kernel lists once the bind is made: the bind, two submounts (one of them
        // nosuid,nodev,noexec as /proc is, one with a space in its name), a mount hidden under
        // a later one, and mounts elsewhere, one of them a name that merely starts alike.
        let mountinfo = "\
1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 1 8:1 /data /c/rootfs/r rw,relatime - ext4 /dev/sda1 rw
41 40 0:5 / /c/rootfs/r/proc rw,nosuid,nodev,noexec,relatime - proc proc rw
42 40 0:6 / /c/rootfs/r/my\\040disk rw,noatime - tmpfs tmpfs rw
43 40 0:7 / /c/rootfs/r/gone rw - tmpfs tmpfs rw
44 1 0:8 / /c/rootfs/rr rw - tmpfs tmpfs rw
45 1 8:1 /c/hosts /c/rootfs/etc/hosts rw - ext4 /dev/sda1 rw
";
        let mut sys = RecordingSys {
            no_mount_setattr: true,
            ..Default::default()
        };
        sys.contents.insert(
            MOUNTINFO.into(),
            std::collections::VecDeque::from([mountinfo.to_owned()]),
        );
        apply(
            &mut sys,
            &plan(
                &spec,
                &RootfsSource::Overlay {
                    lowers: vec!["/s/a".into()],
                    upper: "/c/upper".into(),
                    work: "/c/work".into(),
                    volatile: false,
                },
            )
            .unwrap(),
        )
        .unwrap();
        let calls = sys.calls.join("\n");
        let want = "\
bind_tree /data fd:/c/rootfs/r AT_RECURSIVE set=MS_RDONLY|MS_NODEV propagation=MS_PRIVATE
mount /data fd:/c/rootfs/r type=- flags=MS_BIND|MS_REC data=-
mount - /c/rootfs/r type=- flags=MS_REC|MS_PRIVATE data=-
mount - /c/rootfs/r type=- flags=MS_RDONLY|MS_NODEV|MS_REMOUNT|MS_BIND|MS_RELATIME data=-
mount - /c/rootfs/r/proc type=- flags=MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND|MS_RELATIME data=-
mount - /c/rootfs/r/my disk type=- flags=MS_RDONLY|MS_NODEV|MS_REMOUNT|MS_NOATIME|MS_BIND data=-
mount - /c/rootfs/r/gone type=- flags=MS_RDONLY|MS_NODEV|MS_REMOUNT|MS_BIND data=-
";
        assert!(calls.contains(want), "{calls}");
        assert!(!calls.contains("/c/rootfs/rr"), "{calls}");
    }

    /// The fallback against the kernel: a tree of two tmpfs mounts bound recursively, then
    /// remounted read-only mount by mount, in a mount namespace of a thread.
    #[test]
    fn the_remount_fallback_makes_a_real_tree_read_only() {
        if !berth_test_support::needs_root("mounts") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b b"));
        in_private_mount_namespace(|sys| {
            std::fs::create_dir_all(&a).unwrap();
            std::fs::create_dir_all(&b).unwrap();
            let tmpfs = |sys: &mut LinuxSys, at: &Path, flags| {
                sys.mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some("size=1m"))
                    .unwrap()
            };
            tmpfs(sys, &a, MsFlags::empty());
            std::fs::create_dir(a.join("sub")).unwrap();
            tmpfs(sys, &a.join("sub"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV);
            let src = a.display().to_string();
            sys.mount(
                Some(&src),
                &b,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .unwrap();
            remount_tree(sys, &b, MsFlags::MS_RDONLY).unwrap();
            for p in [b.join("x"), b.join("sub/x")] {
                let e = std::fs::write(&p, "x").unwrap_err();
                assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{}", p.display());
            }
            // The source stays writable; the submount kept nosuid,nodev.
            std::fs::write(a.join("sub/x"), "x").unwrap();
            let info = sys.read_file(Path::new(MOUNTINFO)).unwrap();
            let sub = mounts_under(&info, &b.join("sub"));
            assert_eq!(sub.len(), 1, "{info}");
            assert!(
                sub[0]
                    .1
                    .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
                "{info}"
            );
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn mountinfo_names_are_unescaped() {
        let info = "1 0 0:1 / /a\\134b\\011c\\012d rw - tmpfs t rw\n";
        assert_eq!(
            mounts_under(info, Path::new("/")),
            [(PathBuf::from("/a\\b\tc\nd"), MsFlags::empty())]
        );
    }

    #[test]
    fn privileged_has_no_masks_and_all_capabilities() {
        let spec = build_spec(
            Path::new("/r"),
            &ProcessSettings {
                privileged: true,
                ..settings()
            },
        )
        .unwrap();
        let ops = plan(&spec, &RootfsSource::Directory("/bundle/rootfs".into())).unwrap();
        assert!(
            !ops.iter()
                .any(|o| matches!(o, Op::Mask(_) | Op::ReadOnly(_)))
        );
        // Trusted with every device: nothing is nodev but the kernel filesystems.
        let ops = plan(
            &spec,
            &RootfsSource::Overlay {
                lowers: vec!["/s/a".into()],
                upper: "/c/upper".into(),
                work: "/c/work".into(),
                volatile: false,
            },
        )
        .unwrap();
        assert!(ops.iter().all(|o| match o {
            Op::Overlay { flags, .. } => !flags.contains(MsFlags::MS_NODEV),
            Op::Bind { attrs, .. } => !attrs.contains(MsFlags::MS_NODEV),
            _ => true,
        }));
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert!(caps.bounding().as_ref().unwrap().len() > crate::spec::DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "mode=755".into(),
            "size=1k".into(),
        ]);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_RDONLY);
        assert_eq!(data, ["mode=755", "size=1k"]);
    }
}
