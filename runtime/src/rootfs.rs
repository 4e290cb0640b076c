//! The container's filesystem: an OCI runtime spec and a [`RootfsSource`] in, an ordered
//! list of [`Op`]s out ([`plan`], a pure value), and those ops applied through [`Sys`]
//! ([`apply`]) inside the container's fresh mount namespace.
//!
//! Order (as runc's `rootfs_linux.go`): make `/` recursively slave, so nothing done here
//! propagates to the host while host mounts still propagate in; mount the overlay rootfs;
//! the spec's mounts in order (with `/dev`'s device nodes right after the `/dev` tmpfs);
//! masked paths (`/dev/null` over files, an empty read-only tmpfs over directories);
//! read-only paths (bind, then remount read-only); `pivot_root` into the rootfs with the old
//! root detached. Because every mount lives in the container's namespace, they all vanish
//! with its last process: nothing is left on the host to unmount.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::RuntimeError;
use crate::sys::{Create, DeviceNode, Sys};

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
        .and_then(|a| a.get(crate::spec::ANNOTATION_CONSOLE))
        .cloned();
    let mut ops = vec![Op::Mount {
        source: None,
        target: "/".into(),
        fstype: None,
        flags: MsFlags::MS_SLAVE | MsFlags::MS_REC,
        data: None,
    }];
    ops.push(match source {
        RootfsSource::Overlay {
            lowers,
            upper,
            work,
            volatile,
        } => {
            // overlayfs lists lower dirs topmost first; with no layer, an empty upper-only
            // image still needs one lower, so the work dir's sibling `empty` stands in.
            let lowers = if lowers.is_empty() {
                vec![work.with_file_name("empty")]
            } else {
                lowers.clone()
            };
            Op::Mount {
                source: Some("overlay".into()),
                target: root.clone(),
                fstype: Some("overlay".into()),
                flags: MsFlags::empty(),
                data: Some(crate::views::overlay_data(
                    &lowers,
                    Some((upper.as_path(), work.as_path())),
                    *volatile,
                )),
            }
        }
        RootfsSource::Directory(dir) => Op::Mount {
            source: Some(dir.display().to_string()),
            target: root.clone(),
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
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
            ops.push(Op::Mount {
                source,
                target: target.clone(),
                fstype: None,
                flags: MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
                data: None,
            });
            let remount = flags
                & (MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC);
            if !remount.is_empty() {
                ops.push(Op::Mount {
                    source: None,
                    target,
                    fstype: None,
                    flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | remount,
                    data: None,
                });
            }
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

/// Applies the ops in order. Every path under the root is resolved inside it first
/// ([`Sys::resolve_in_root`]): an image's symlinks (`/dev -> /host/dir`, `/etc -> /`) are
/// followed within the rootfs and can never make the runtime create or mount anything outside
/// it. Masked and read-only paths that do not exist are skipped (the kernel may not have them),
/// as runc does.
pub fn apply(sys: &mut dyn Sys, ops: &[Op]) -> Result<(), RuntimeError> {
    let fail = |what: String| move |e: nix::Error| RuntimeError::Setup { what, errno: e };
    let root = ops.iter().find_map(|o| match o {
        Op::Pivot(r) => Some(r.clone()),
        _ => None,
    });
    // A path of the plan, resolved: inside the root when under it (but not the root itself).
    let at =
        |sys: &mut dyn Sys, p: &Path, create: Create| -> Result<Option<PathBuf>, RuntimeError> {
            let Some(root) = root
                .as_ref()
                .filter(|r| p.starts_with(r) && p != r.as_path())
            else {
                return Ok(Some(p.to_owned()));
            };
            match sys.resolve_in_root(root, p.strip_prefix(root).expect("under root"), create) {
                Ok(resolved) => Ok(Some(resolved)),
                Err(nix::Error::ENOENT) if create == Create::Nothing => Ok(None),
                Err(e) => Err(fail(format!("resolving {} in the rootfs", p.display()))(e)),
            }
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
                let Some(target) = at(sys, target, Create::Nothing)? else {
                    return Err(RuntimeError::Setup {
                        what: format!("mounting {}", target.display()),
                        errno: nix::Error::ENOENT,
                    });
                };
                let mut result = sys.mount(
                    source.as_deref(),
                    &target,
                    fstype.as_deref(),
                    *flags,
                    data.as_deref(),
                );
                // A kernel without overlayfs's `volatile` (before 5.10) answers EINVAL.
                if let (Err(nix::Error::EINVAL), Some(plain)) = (
                    result,
                    data.as_deref().and_then(crate::views::without_volatile),
                ) {
                    result = sys.mount(
                        source.as_deref(),
                        &target,
                        fstype.as_deref(),
                        *flags,
                        Some(&plain),
                    );
                }
                result.map_err(fail(format!("mounting {}", target.display())))?
            }
            Op::Mkdir(p) => {
                at(sys, p, Create::Dir)?;
            }
            Op::Touch(p) => {
                at(sys, p, Create::File)?;
            }
            Op::Devices(dev) => {
                let dev = at(sys, dev, Create::Nothing)?.unwrap_or_else(|| dev.clone());
                for node in default_devices(&dev) {
                    sys.mknod_char(&node)
                        .map_err(fail(format!("creating {}", node.path.display())))?;
                }
                for (link, target) in [
                    ("fd", "/proc/self/fd"),
                    ("stdin", "/proc/self/fd/0"),
                    ("stdout", "/proc/self/fd/1"),
                    ("stderr", "/proc/self/fd/2"),
                    ("ptmx", "pts/ptmx"),
                    ("core", "/proc/kcore"),
                ] {
                    sys.symlink(target, &dev.join(link))
                        .map_err(fail(format!("linking /dev/{link}")))?;
                }
            }
            Op::Mask(p) => {
                let Some(p) = at(sys, p, Create::Nothing)? else {
                    continue;
                };
                if sys.is_dir(&p) {
                    sys.mount(Some("tmpfs"), &p, Some("tmpfs"), MsFlags::MS_RDONLY, None)
                        .map_err(fail(format!("masking {}", p.display())))?;
                } else if sys.exists(&p) {
                    sys.mount(Some("/dev/null"), &p, None, MsFlags::MS_BIND, None)
                        .map_err(fail(format!("masking {}", p.display())))?;
                }
            }
            Op::ReadOnly(p) => {
                let Some(p) = at(sys, p, Create::Nothing)? else {
                    continue;
                };
                if sys.exists(&p) {
                    let src = p.display().to_string();
                    sys.mount(
                        Some(&src),
                        &p,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )
                    .map_err(fail(format!("binding {}", p.display())))?;
                    sys.mount(
                        None,
                        &p,
                        None,
                        MsFlags::MS_BIND
                            | MsFlags::MS_REMOUNT
                            | MsFlags::MS_RDONLY
                            | MsFlags::MS_REC,
                        None,
                    )
                    .map_err(fail(format!("making {} read-only", p.display())))?;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{NetworkMode, ProcessSettings, build_spec};
    use crate::sys::RecordingSys;

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
        let data = "data=lowerdir=/s/a,upperdir=/c/upper,workdir=/c/work,redirect_dir=off,index=off,metacopy=off";
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
            let volatile = format!("mount overlay /c/rootfs type=overlay flags=- {data},volatile");
            let plain = format!("mount overlay /c/rootfs type=overlay flags=- {data}");
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
            "mount overlay /c/rootfs type=overlay flags=- data=lowerdir=/s/b:/s/a,upperdir=/c/upper,workdir=/c/work,redirect_dir=off,index=off,metacopy=off",
            "mount proc /c/rootfs/proc type=proc",
            "mount tmpfs /c/rootfs/dev type=tmpfs",
            "mknod /c/rootfs/dev/null c 1:3 666",
            "symlink /c/rootfs/dev/ptmx -> pts/ptmx",
            "mount devpts /c/rootfs/dev/pts type=devpts",
            "mount sysfs /c/rootfs/sys type=sysfs flags=MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC",
            "touch /c/rootfs/etc/hosts",
            "mount /c/hosts /c/rootfs/etc/hosts type=- flags=MS_BIND|MS_REC",
            "mount /dev/null /c/rootfs/proc/kcore type=- flags=MS_BIND",
            "mount tmpfs /c/rootfs/sys/firmware type=tmpfs flags=MS_RDONLY",
            "mount - /c/rootfs/proc/sys type=- flags=MS_RDONLY|MS_REMOUNT|MS_BIND|MS_REC",
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
