//! cgroups: the spec's `linux.resources` and `linux.cgroupsPath` in, a cgroup with those
//! limits holding the container out; and afterwards every remaining process killed and the
//! cgroup removed. Both hierarchies are handled, per controller (a hybrid machine may have
//! memory on v1 and pids on v2; each controller is used where it is mounted):
//!
//! - **v2** (the cgroup2 mount, for the controllers it lists): one directory; the controllers
//!   are enabled in the parents' `cgroup.subtree_control`; limits go to
//!   `memory.max` (+ `memory.swap.max`), `pids.max`, `cpu.max`; OOM kills are counted in
//!   `memory.events`.
//! - **v1**: one directory per controller mount found in `/proc/self/mountinfo`;
//!   `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes` where swap accounting exists),
//!   `pids.max`, `cpu.cfs_quota_us`/`cpu.cfs_period_us`; OOM kills in `memory.oom_control`.
//!
//! Written by hand (DEPENDENCIES.md: cgroups-rs costs 73 crates and has open panics); this is
//! a few file writes. They go through [`Sys`] like the runtime's other calls, so the unit
//! tests below check what is written where for a pure v2, a pure v1 and a mixed machine (the
//! v2 side cannot be run for real on this hybrid VM: see cli/tests/cgroup_v2.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::RuntimeError;
use crate::sys::Sys;
use crate::sys::linux::LinuxSys;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The limits berth sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<i64>,
    /// CPU quota in µs per 100 ms period.
    pub cpu_quota: Option<i64>,
    pub pids: Option<i64>,
    /// Device rules, in order (the first is "deny all" when berth makes them).
    pub devices: Vec<DeviceRule>,
}

/// One line for `devices.allow` / `devices.deny` (v1).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `a`, `b` or `c`, then `MAJOR:MINOR` with `*` for any, then the access (`rwm`).
    pub line: String,
}

/// Whether device rules can be enforced here: a v1 devices controller, outside a user
/// namespace. (On v2 they need a BPF program; berth does not load one, so containers there
/// get no CAP_MKNOD. In a user namespace no device node can be made at all, and the devices
/// cgroup is the host's.)
pub fn devices_enforceable() -> bool {
    !crate::userns::in_user_namespace()
        && v1_mounts(&LinuxSys.read_file(Path::new(MOUNTINFO)).unwrap_or_default())
            .iter()
            .any(|(c, _)| c == "devices")
}

impl Limits {
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Limits {
        let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().clone()) else {
            return Limits::default();
        };
        let devices = r
            .devices()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|d| {
                let kind = match d.typ() {
                    Some(oci_spec::runtime::LinuxDeviceType::B) => "b",
                    Some(oci_spec::runtime::LinuxDeviceType::C) => "c",
                    _ => "a",
                };
                let num = |n: Option<i64>| n.map_or("*".to_owned(), |n| n.to_string());
                let line = if kind == "a" {
                    "a".to_owned()
                } else {
                    format!(
                        "{kind} {}:{} {}",
                        num(d.major()),
                        num(d.minor()),
                        d.access().clone().unwrap_or_else(|| "rwm".into())
                    )
                };
                DeviceRule {
                    allow: d.allow(),
                    line,
                }
            })
            .collect();
        Limits {
            memory: r.memory().as_ref().and_then(|m| m.limit()),
            cpu_quota: r.cpu().as_ref().and_then(|c| c.quota()),
            pids: r.pids().as_ref().map(|p| p.limit()),
            devices,
        }
    }
}

pub const CPU_PERIOD: u64 = 100_000;
const CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "devices"];

/// A container's cgroup: a directory per v1 controller mount, and/or one directory in the
/// unified (v2) hierarchy holding the controllers that are there.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// v1: controller → its directory.
    v1: Vec<(String, PathBuf)>,
    /// v2: the unified mount, the directory under it, and the controllers used there.
    v2: Option<Unified>,
}

#[derive(Debug, Clone)]
struct Unified {
    mount: PathBuf,
    dir: PathBuf,
    controllers: Vec<String>,
}

fn io(what: String) -> impl FnOnce(nix::Error) -> RuntimeError {
    move |errno| RuntimeError::Io {
        what,
        source: errno.into(),
    }
}

fn write(sys: &mut dyn Sys, path: &Path, value: &str) -> Result<(), RuntimeError> {
    sys.write_file(path, value)
        .map_err(io(format!("writing {value:?} to {}", path.display())))
}

/// Enables `controllers` in `dir`'s `cgroup.subtree_control`, unless they are on already:
/// above a delegated subtree the file is root's, and a rootless berth may only read it.
fn enable(sys: &mut dyn Sys, dir: &Path, controllers: &[String]) -> Result<(), RuntimeError> {
    let file = dir.join("cgroup.subtree_control");
    let on = sys.read_file(&file).unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !on.split_whitespace().any(|o| o == c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(sys, &file, &missing.join(" "))
}

/// v1 controller mounts in a mountinfo text: controller → mount point.
fn v1_mounts(info: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let options = r.nth(1).unwrap_or_default();
        let mount_point = left.split_whitespace().nth(4).unwrap_or_default();
        for c in options.split(',') {
            if CONTROLLERS.contains(&c) && !out.iter().any(|(n, _)| n == c) {
                out.push((c.to_owned(), PathBuf::from(mount_point)));
            }
        }
    }
    out
}

/// The cgroup2 mount point in a mountinfo text.
fn unified_mount(info: &str) -> Option<PathBuf> {
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next() == Some("cgroup2"))
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or_default()))
    })
}

/// A cgroup v2 subtree an unprivileged user may manage: systemd's `Delegate=yes` (a
/// `systemd-run --user --scope -p Delegate=yes` around berth), or a cgroup an administrator
/// made and chowned to the user, as a CI runner may. A rootless berth puts containers with
/// limits under it; the v1 hierarchies are never delegated to a user.
#[derive(Debug, Clone, PartialEq)]
pub struct Delegation {
    /// The unified hierarchy's mount point.
    pub mount: PathBuf,
    /// The delegated cgroup, relative to the mount (`""`: the mount's root, as in a cgroup
    /// namespace of the user's own).
    pub rel: PathBuf,
    /// Of the controllers berth limits with (memory, pids, cpu), those the delegated cgroup
    /// has (its `cgroup.controllers`).
    pub controllers: Vec<String>,
}

/// The controllers a delegation is asked for.
const DELEGATED: &[&str] = &["memory", "pids", "cpu"];

/// The cgroup v2 subtree delegated to the calling user, found from berth's own cgroup
/// (`/proc/self/cgroup`'s `0::` line): that cgroup, when `mine` says its directory,
/// `cgroup.procs` and `cgroup.subtree_control` are the user's own to write; or, when it is
/// the `init` leaf [`Delegation::prepare`] moved berth's processes into, the cgroup above
/// it. Never higher: under systemd every cgroup of `user@UID.service` is the user's, but only
/// a unit with `Delegate=yes` is the user's to manage. `Err` says why there is none.
pub fn delegation(sys: &mut dyn Sys, mine: &dyn Fn(&Path) -> bool) -> Result<Delegation, String> {
    let info = sys.read_file(Path::new(MOUNTINFO)).unwrap_or_default();
    let mount = unified_mount(&info).ok_or("no cgroup2 hierarchy is mounted")?;
    let own = sys
        .read_file(Path::new("/proc/self/cgroup"))
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("berth's process is in no cgroup v2")?;
    let own = Path::new(own.trim());
    if own.components().any(|c| {
        !matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    }) {
        return Err(format!(
            "berth's cgroup {} is not a plain path",
            own.display()
        ));
    }
    let rel = own.strip_prefix("/").unwrap_or(own);
    let may_manage = |dir: &Path| {
        mine(dir) && mine(&dir.join("cgroup.procs")) && mine(&dir.join("cgroup.subtree_control"))
    };
    if !may_manage(&mount.join(rel)) {
        return Err(format!(
            "berth's cgroup {} is not delegated to this user",
            own.display()
        ));
    }
    let top = match rel.parent() {
        Some(parent)
            if rel.file_name() == Some(INIT.as_ref()) && may_manage(&mount.join(parent)) =>
        {
            parent.to_owned()
        }
        _ => rel.to_owned(),
    };
    let available = sys
        .read_file(&mount.join(&top).join("cgroup.controllers"))
        .unwrap_or_default();
    let controllers = DELEGATED
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| (*c).to_owned())
        .collect();
    Ok(Delegation {
        mount,
        rel: top,
        controllers,
    })
}

/// The real check for [`delegation`]: `path` is the caller's own (not only writable through a
/// group or by everyone), not a symlink, and writable (`access(W_OK)`).
pub fn owned_by_caller(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == nix::unistd::getuid().as_raw())
        && nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The leaf [`Delegation::prepare`] moves a delegated cgroup's processes into.
const INIT: &str = "init";

/// The most processes [`Delegation::prepare`] moves out of the delegated cgroup, over all its
/// rounds: a delegated cgroup holds a user's shell and its commands, not a fork bomb.
const MAX_MOVED: usize = 4096;

impl Delegation {
    /// Makes the delegation ready to hold limited containers: `controllers` enabled in its
    /// `cgroup.subtree_control`, and `berth` under it. cgroup v2 lets a cgroup other than
    /// the root enable controllers for its children only while it holds no process itself,
    /// so the processes in the delegated cgroup (the user's shell, berth itself) are first
    /// moved to a leaf `init` under it, as Docker's entry point for nested daemons does.
    /// Returns the parent for containers' cgroups, relative to the mount.
    pub fn prepare(
        &self,
        sys: &mut dyn Sys,
        controllers: &[&str],
    ) -> Result<PathBuf, RuntimeError> {
        let dir = self.mount.join(&self.rel);
        let wanted: Vec<String> = controllers.iter().map(|c| (*c).to_owned()).collect();
        let on = sys
            .read_file(&dir.join("cgroup.subtree_control"))
            .unwrap_or_default();
        if !wanted.iter().all(|c| on.split_whitespace().any(|o| o == c)) {
            let init = dir.join(INIT);
            let mut moved = 0usize;
            loop {
                let procs = sys.read_file(&dir.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<&str> = procs.split_whitespace().collect();
                if pids.is_empty() {
                    break;
                }
                if moved == 0 {
                    sys.create_dirs(&init)
                        .map_err(io(format!("creating {}", init.display())))?;
                }
                for pid in pids {
                    moved += 1;
                    if moved > MAX_MOVED {
                        return Err(RuntimeError::Setup {
                            what: format!(
                                "{} keeps gaining processes: more than {MAX_MOVED} moved to {}",
                                dir.display(),
                                init.display()
                            ),
                            errno: nix::Error::EBUSY,
                        });
                    }
                    match sys.write_file(&init.join("cgroup.procs"), pid) {
                        // A process that has exited meanwhile.
                        Ok(()) | Err(nix::Error::ESRCH) => {}
                        Err(e) => {
                            return Err(io(format!("moving process {pid} to {}", init.display()))(
                                e,
                            ));
                        }
                    }
                }
            }
            enable(sys, &dir, &wanted)?;
        }
        Ok(self.rel.join("berth"))
    }
}

impl Cgroup {
    /// The cgroup for `path` (relative, like `berth/<id>`), not yet created, with the
    /// controllers `limits` needs (all of them when it needs none: the cgroup then only
    /// tracks the processes). Each controller is taken from its v1 mount when it has one,
    /// else from the unified hierarchy when it lists the controller: a pure v2 machine, a v1
    /// machine, and hybrids with controllers on either side (as runc's hybrid mode) all work.
    ///
    /// In a user namespace only the unified hierarchy is used: v1 hierarchies are never
    /// delegated to a user ([`delegation`]).
    pub fn for_limits(sys: &mut dyn Sys, path: &str, limits: &Limits) -> Cgroup {
        Cgroup::with_hierarchies(sys, path, limits, !crate::userns::in_user_namespace())
    }

    fn with_hierarchies(sys: &mut dyn Sys, path: &str, limits: &Limits, use_v1: bool) -> Cgroup {
        let info = sys.read_file(Path::new(MOUNTINFO)).unwrap_or_default();
        let needed: Vec<&str> = [
            ("memory", limits.memory.is_some()),
            ("pids", limits.pids.is_some()),
            ("cpu", limits.cpu_quota.is_some()),
            ("devices", !limits.devices.is_empty()),
        ]
        .into_iter()
        .filter(|(_, n)| *n)
        .map(|(c, _)| c)
        .collect();
        let wanted = |c: &str| needed.is_empty() || needed.contains(&c);
        let rel = path.trim_start_matches('/');
        let v1: Vec<(String, PathBuf)> = v1_mounts(&info)
            .into_iter()
            .filter(|(c, _)| use_v1 && wanted(c))
            .map(|(c, m)| (c, m.join(rel)))
            .collect();
        let v2 = unified_mount(&info).map(|mount| {
            let available = sys
                .read_file(&mount.join("cgroup.controllers"))
                .unwrap_or_default();
            let controllers = CONTROLLERS
                .iter()
                .filter(|c| wanted(c) && !v1.iter().any(|(v, _)| v == *c))
                .filter(|c| available.split_whitespace().any(|a| a == **c))
                .map(|c| (*c).to_owned())
                .collect::<Vec<_>>();
            Unified {
                dir: mount.join(rel),
                mount,
                controllers,
            }
        });
        // The unified directory is used when it holds a controller, or when there is no v1
        // controller at all (a pure v2 machine: the cgroup still tracks and kills).
        let v2 = v2.filter(|u| !u.controllers.is_empty() || v1.is_empty());
        Cgroup { v1, v2 }
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|(_, d)| d.as_path())
            .chain(self.v2.as_ref().map(|u| u.dir.as_path()))
    }

    /// Where `controller`'s files are, and whether that is the v2 hierarchy.
    fn dir(&self, controller: &str) -> Option<(&Path, bool)> {
        if let Some((_, d)) = self.v1.iter().find(|(c, _)| c == controller) {
            return Some((d.as_path(), false));
        }
        self.v2
            .as_ref()
            .filter(|u| u.controllers.iter().any(|c| c == controller))
            .map(|u| (u.dir.as_path(), true))
    }

    /// Creates the directories and writes the limits.
    pub fn create(&self, sys: &mut dyn Sys, limits: &Limits) -> Result<(), RuntimeError> {
        if let Some(u) = &self.v2 {
            // Enable the controllers on the way down (the mount root, then each parent).
            let mut parent = u.mount.clone();
            for part in u
                .dir
                .strip_prefix(&u.mount)
                .unwrap_or(&u.dir)
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
            {
                enable(sys, &parent, &u.controllers)?;
                parent = parent.join(part);
                sys.create_dirs(&parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            enable(sys, &parent, &u.controllers)?;
        }
        for dir in self.dirs() {
            sys.create_dirs(dir)
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        if let Some(m) = limits.memory {
            let (dir, v2) = self.dir("memory").ok_or_else(|| {
                RuntimeError::Spec("--memory needs the memory cgroup controller".into())
            })?;
            if v2 {
                write(sys, &dir.join("memory.max"), &m.to_string())?;
                let _ = write(sys, &dir.join("memory.swap.max"), "0");
            } else {
                write(sys, &dir.join("memory.limit_in_bytes"), &m.to_string())?;
                // Present only where swap accounting is on.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if sys.exists(&memsw) {
                    let _ = write(sys, &memsw, &m.to_string());
                }
            }
        }
        if !limits.devices.is_empty() {
            let Some((dir, false)) = self.dir("devices") else {
                return Err(RuntimeError::Spec(
                    "device rules need the v1 devices cgroup controller".into(),
                ));
            };
            for rule in &limits.devices {
                let file = if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(sys, &dir.join(file), &rule.line)?;
            }
        }
        if let Some(p) = limits.pids {
            let (dir, _) = self.dir("pids").ok_or_else(|| {
                RuntimeError::Spec("--pids-limit needs the pids cgroup controller".into())
            })?;
            write(sys, &dir.join("pids.max"), &p.to_string())?;
        }
        if let Some(q) = limits.cpu_quota {
            let (dir, v2) = self.dir("cpu").ok_or_else(|| {
                RuntimeError::Spec("--cpus needs the cpu cgroup controller".into())
            })?;
            if v2 {
                write(sys, &dir.join("cpu.max"), &format!("{q} {CPU_PERIOD}"))?;
            } else {
                write(sys, &dir.join("cpu.cfs_period_us"), &CPU_PERIOD.to_string())?;
                write(sys, &dir.join("cpu.cfs_quota_us"), &q.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves the calling process, which must be single-threaded (the container's PID 1 right
    /// after its fork), into every directory of the cgroup.
    ///
    /// On v1 it writes `0` (itself) to each `tasks` file: the kernel moves the current
    /// thread without taking the global threadgroup lock (since Linux 5.17), whose writer
    /// waits for an RCU grace period, 5 to 15 ms on this VM: most of a container's start
    /// when the init wrote PID 1's number to `cgroup.procs` from outside. For a
    /// single-threaded process, its only thread is the process. v2 has no such path for
    /// domain cgroups, so there it writes `0` to `cgroup.procs`.
    pub fn enter(&self, sys: &mut dyn Sys) -> Result<(), RuntimeError> {
        for (_, dir) in &self.v1 {
            write(sys, &dir.join("tasks"), "0")?;
        }
        if let Some(u) = &self.v2 {
            write(sys, &u.dir.join("cgroup.procs"), "0")?;
        }
        Ok(())
    }

    fn procs(&self, sys: &mut dyn Sys) -> Vec<i32> {
        let mut out: Vec<i32> = Vec::new();
        for dir in self.dirs() {
            if let Ok(text) = sys.read_file(&dir.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether the kernel's OOM killer killed something in the cgroup.
    pub fn oom_killed(&self, sys: &mut dyn Sys) -> bool {
        let Some((dir, v2)) = self.dir("memory") else {
            return false;
        };
        let file = if v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        sys.read_file(&dir.join(file))
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
    }

    /// Kills every process left in the cgroup and removes its directories.
    pub fn destroy(&self, sys: &mut dyn Sys) -> Result<(), RuntimeError> {
        // Up to 5 s for killed processes to go, looking every millisecond.
        for _ in 0..5000 {
            let procs = self.procs(sys);
            if procs.is_empty() {
                break;
            }
            for pid in procs {
                let _ = sys.kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            sys.sleep(Duration::from_millis(1));
        }
        for dir in self.dirs() {
            let mut last = Ok(());
            // A cgroup whose last task is still exiting is busy for a moment: retry, quickly
            // at first (this is on every container's way out), for up to about a second.
            for attempt in 0..200u64 {
                match sys.remove_dir(dir) {
                    Ok(()) | Err(nix::Error::ENOENT) => {
                        last = Ok(());
                        break;
                    }
                    Err(e) => last = Err(e),
                }
                sys.sleep(Duration::from_micros(200 * attempt.min(25)));
            }
            last.map_err(io(format!("removing {}", dir.display())))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::recording::RecordingSys;

    const V1: &str = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 30 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
";
    const UNIFIED_HYBRID: &str =
        "41 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    const UNIFIED_PURE: &str = "30 25 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";

    fn sys_with(mountinfo: String, controllers: &[(&str, &str)]) -> RecordingSys {
        let mut sys = RecordingSys::default();
        sys.contents
            .insert(MOUNTINFO.into(), [mountinfo].into_iter().collect());
        for (path, text) in controllers {
            sys.contents.insert(
                PathBuf::from(path),
                [text.to_string()].into_iter().collect(),
            );
        }
        sys
    }

    fn limits() -> Limits {
        Limits {
            memory: Some(32 << 20),
            cpu_quota: Some(50_000),
            pids: Some(20),
            devices: Vec::new(),
        }
    }

    #[test]
    fn pure_v2_enables_controllers_down_the_path_and_writes_v2_files() {
        let mut sys = sys_with(
            UNIFIED_PURE.into(),
            &[(
                "/sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids",
            )],
        );
        let cg = Cgroup::for_limits(&mut sys, "berth/abc", &limits());
        cg.create(&mut sys, &limits()).unwrap();
        cg.enter(&mut sys).unwrap();
        assert_eq!(
            sys.calls,
            [
                "write /sys/fs/cgroup/cgroup.subtree_control +memory +pids +cpu",
                "mkdir -p /sys/fs/cgroup/berth",
                "write /sys/fs/cgroup/berth/cgroup.subtree_control +memory +pids +cpu",
                "mkdir -p /sys/fs/cgroup/berth/abc",
                "write /sys/fs/cgroup/berth/abc/memory.max 33554432",
                "write /sys/fs/cgroup/berth/abc/memory.swap.max 0",
                "write /sys/fs/cgroup/berth/abc/pids.max 20",
                "write /sys/fs/cgroup/berth/abc/cpu.max 50000 100000",
                "write /sys/fs/cgroup/berth/abc/cgroup.procs 0",
            ]
        );
        // The OOM count is read from memory.events.
        sys.contents.insert(
            "/sys/fs/cgroup/berth/abc/memory.events".into(),
            ["low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n".to_string()].into(),
        );
        assert!(cg.oom_killed(&mut sys));
    }

    #[test]
    fn pure_v1_writes_one_directory_per_controller() {
        let mut sys = sys_with(V1.into(), &[]);
        sys.files
            .push("/sys/fs/cgroup/memory/berth/abc/memory.memsw.limit_in_bytes".into());
        let cg = Cgroup::for_limits(&mut sys, "/berth/abc", &limits());
        cg.create(&mut sys, &limits()).unwrap();
        assert_eq!(
            sys.calls,
            [
                "mkdir -p /sys/fs/cgroup/cpu/berth/abc",
                "mkdir -p /sys/fs/cgroup/memory/berth/abc",
                "mkdir -p /sys/fs/cgroup/pids/berth/abc",
                "write /sys/fs/cgroup/memory/berth/abc/memory.limit_in_bytes 33554432",
                "write /sys/fs/cgroup/memory/berth/abc/memory.memsw.limit_in_bytes 33554432",
                "write /sys/fs/cgroup/pids/berth/abc/pids.max 20",
                "write /sys/fs/cgroup/cpu/berth/abc/cpu.cfs_period_us 100000",
                "write /sys/fs/cgroup/cpu/berth/abc/cpu.cfs_quota_us 50000",
            ]
        );
        sys.contents.insert(
            "/sys/fs/cgroup/memory/berth/abc/memory.oom_control".into(),
            ["oom_kill_disable 0\nunder_oom 0\noom_kill 0\n".to_string()].into(),
        );
        assert!(!cg.oom_killed(&mut sys));
    }

    /// This machine's shape with pids and cpu moved to the unified hierarchy: memory stays on
    /// v1, pids and cpu go to v2, and hugetlb (listed there too) is not enabled.
    #[test]
    fn a_mixed_hybrid_uses_each_controller_where_it_is() {
        let info: String = V1
            .lines()
            .filter(|l| !l.ends_with("rw,cpu") && !l.ends_with("rw,pids"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + UNIFIED_HYBRID;
        let mut sys = sys_with(
            info,
            &[(
                "/sys/fs/cgroup/unified/cgroup.controllers",
                "cpu hugetlb pids",
            )],
        );
        let cg = Cgroup::for_limits(&mut sys, "berth/abc", &limits());
        cg.create(&mut sys, &limits()).unwrap();
        cg.enter(&mut sys).unwrap();
        assert_eq!(
            sys.calls,
            [
                "write /sys/fs/cgroup/unified/cgroup.subtree_control +pids +cpu",
                "mkdir -p /sys/fs/cgroup/unified/berth",
                "write /sys/fs/cgroup/unified/berth/cgroup.subtree_control +pids +cpu",
                "mkdir -p /sys/fs/cgroup/memory/berth/abc",
                "mkdir -p /sys/fs/cgroup/unified/berth/abc",
                "write /sys/fs/cgroup/memory/berth/abc/memory.limit_in_bytes 33554432",
                "write /sys/fs/cgroup/unified/berth/abc/pids.max 20",
                "write /sys/fs/cgroup/unified/berth/abc/cpu.max 50000 100000",
                "write /sys/fs/cgroup/memory/berth/abc/tasks 0",
                "write /sys/fs/cgroup/unified/berth/abc/cgroup.procs 0",
            ]
        );
    }

    /// This VM as it is: every controller on v1, the unified hierarchy with hugetlb only.
    /// Without limits the cgroup still tracks the processes, on v1 only.
    #[test]
    fn this_hybrid_without_limits_tracks_on_v1() {
        let mut sys = sys_with(
            V1.to_string() + UNIFIED_HYBRID,
            &[("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb")],
        );
        let cg = Cgroup::for_limits(&mut sys, "berth/abc", &Limits::default());
        let dirs: Vec<_> = cg.dirs().map(|d| d.display().to_string()).collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/cpu/berth/abc",
                "/sys/fs/cgroup/memory/berth/abc",
                "/sys/fs/cgroup/devices/berth/abc",
                "/sys/fs/cgroup/pids/berth/abc",
            ]
        );
        let err = Cgroup::for_limits(&mut sys_with(UNIFIED_PURE.into(), &[]), "b", &limits())
            .create(&mut sys_with(UNIFIED_PURE.into(), &[]), &limits())
            .unwrap_err();
        assert!(
            err.to_string().contains("memory cgroup controller"),
            "{err}"
        );
    }

    /// A rootless berth in `/user/init` of a subtree an administrator chowned to it: the
    /// delegation is `/user`, above the leaf berth moved its processes into, with the
    /// controllers it has; from a cgroup of its own, that cgroup, never one above.
    #[test]
    fn the_delegation_is_berths_own_cgroup_or_the_one_above_its_init_leaf() {
        let mut sys = sys_with(
            UNIFIED_PURE.into(),
            &[
                ("/proc/self/cgroup", "0::/user/init\n"),
                (
                    "/sys/fs/cgroup/user/cgroup.controllers",
                    "cpuset io memory pids",
                ),
            ],
        );
        let mine = |p: &Path| p.starts_with("/sys/fs/cgroup/user");
        let found = delegation(&mut sys, &mine).unwrap();
        assert_eq!(found.rel, Path::new("user"));
        assert_eq!(found.mount, Path::new("/sys/fs/cgroup"));
        assert_eq!(found.controllers, ["memory", "pids"]);

        let mut scope = sys_with(
            UNIFIED_PURE.into(),
            &[
                ("/proc/self/cgroup", "0::/user/app.slice/run-1.scope\n"),
                (
                    "/sys/fs/cgroup/user/app.slice/run-1.scope/cgroup.controllers",
                    "memory pids cpu",
                ),
            ],
        );
        let found = delegation(&mut scope, &mine).unwrap();
        assert_eq!(found.rel, Path::new("user/app.slice/run-1.scope"));
        assert_eq!(found.controllers, ["memory", "pids", "cpu"]);

        let none = |_: &Path| false;
        let err = delegation(&mut sys, &none).unwrap_err();
        assert!(err.contains("/user/init is not delegated"), "{err}");
        // A cgroup whose files are the user's but whose directory is not.
        let files_only = |p: &Path| p.parent() == Some(Path::new("/sys/fs/cgroup/user/init"));
        assert!(delegation(&mut sys, &files_only).is_err());

        let mut v1_only = sys_with(V1.into(), &[("/proc/self/cgroup", "0::/\n")]);
        let err = delegation(&mut v1_only, &mine).unwrap_err();
        assert!(err.contains("no cgroup2"), "{err}");
        let mut odd = sys_with(
            UNIFIED_PURE.into(),
            &[("/proc/self/cgroup", "0::/user/../etc\n")],
        );
        assert!(delegation(&mut odd, &mine).is_err());
    }

    /// Preparing moves the delegated cgroup's processes into `init` (one has exited
    /// meanwhile), enables the controllers, and the container's cgroup then goes under
    /// `berth`, enabling only what is not on yet: nothing above the delegation is written.
    #[test]
    fn a_delegation_moves_its_processes_out_then_holds_limited_containers() {
        let mut sys = sys_with(
            UNIFIED_PURE.into(),
            &[
                ("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids"),
                ("/sys/fs/cgroup/cgroup.subtree_control", "cpu memory pids"),
            ],
        );
        sys.contents.insert(
            "/sys/fs/cgroup/user/cgroup.procs".into(),
            ["12\n34\n".to_string(), String::new()].into(),
        );
        sys.contents.insert(
            "/sys/fs/cgroup/user/cgroup.subtree_control".into(),
            [String::new(), String::new(), "memory pids".to_string()].into(),
        );
        sys.write_errors.push((
            "/sys/fs/cgroup/user/init/cgroup.procs".into(),
            "34".into(),
            nix::Error::ESRCH,
        ));
        let d = Delegation {
            mount: "/sys/fs/cgroup".into(),
            rel: "user".into(),
            controllers: vec!["memory".into(), "pids".into()],
        };
        let parent = d.prepare(&mut sys, &["memory", "pids"]).unwrap();
        assert_eq!(parent, Path::new("user/berth"));
        let limits = Limits {
            cpu_quota: None,
            ..limits()
        };
        let cg = Cgroup::with_hierarchies(&mut sys, "user/berth/abc", &limits, false);
        cg.create(&mut sys, &limits).unwrap();
        assert_eq!(
            sys.calls,
            [
                "mkdir -p /sys/fs/cgroup/user/init",
                "write /sys/fs/cgroup/user/init/cgroup.procs 12",
                "write /sys/fs/cgroup/user/init/cgroup.procs 34",
                "write /sys/fs/cgroup/user/cgroup.subtree_control +memory +pids",
                "mkdir -p /sys/fs/cgroup/user",
                "mkdir -p /sys/fs/cgroup/user/berth",
                "write /sys/fs/cgroup/user/berth/cgroup.subtree_control +memory +pids",
                "mkdir -p /sys/fs/cgroup/user/berth/abc",
                "write /sys/fs/cgroup/user/berth/abc/memory.max 33554432",
                "write /sys/fs/cgroup/user/berth/abc/memory.swap.max 0",
                "write /sys/fs/cgroup/user/berth/abc/pids.max 20",
            ]
        );
    }

    /// In a user namespace on this hybrid VM, the v1 hierarchies are left alone.
    #[test]
    fn without_v1_a_hybrid_uses_only_the_unified_hierarchy() {
        let mut sys = sys_with(
            V1.to_string() + UNIFIED_HYBRID,
            &[("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb")],
        );
        let cg = Cgroup::with_hierarchies(&mut sys, "u/berth/abc", &Limits::default(), false);
        let dirs: Vec<_> = cg.dirs().map(|d| d.display().to_string()).collect();
        assert_eq!(dirs, ["/sys/fs/cgroup/unified/u/berth/abc"]);
    }

    #[test]
    fn destroy_kills_what_is_left_then_retries_a_busy_rmdir() {
        let mut sys = sys_with(
            UNIFIED_PURE.into(),
            &[("/sys/fs/cgroup/cgroup.controllers", "memory pids cpu")],
        );
        sys.contents.insert(
            "/sys/fs/cgroup/berth/abc/cgroup.procs".into(),
            ["7\n9\n".to_string(), "9\n".to_string(), String::new()].into(),
        );
        sys.busy_rmdirs = 3;
        let cg = Cgroup::for_limits(&mut sys, "berth/abc", &Limits::default());
        cg.destroy(&mut sys).unwrap();
        assert_eq!(
            sys.calls,
            [
                "kill 7 SIGKILL",
                "kill 9 SIGKILL",
                "kill 9 SIGKILL",
                "rmdir /sys/fs/cgroup/berth/abc",
            ]
        );
    }
}
