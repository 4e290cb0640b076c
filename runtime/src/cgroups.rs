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
//! a few file writes.

use std::path::{Path, PathBuf};

use crate::RuntimeError;

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

/// Whether device rules can be enforced here: a v1 devices controller. (On v2 they need a
/// BPF program; berth does not load one, so containers there get no CAP_MKNOD.)
pub fn devices_enforceable() -> bool {
    v1_mounts().iter().any(|(c, _)| c == "devices")
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

fn io(what: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |source| RuntimeError::Io { what, source }
}

fn write(path: &Path, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, value).map_err(io(format!("writing {value:?} to {}", path.display())))
}

/// v1 controller mounts: controller → mount point.
fn v1_mounts() -> Vec<(String, PathBuf)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
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

/// The cgroup2 mount point, from `/proc/self/mountinfo`.
fn unified_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next() == Some("cgroup2"))
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or_default()))
    })
}

impl Cgroup {
    /// The cgroup for `path` (relative, like `berth/<id>`), not yet created, with the
    /// controllers `limits` needs (all of them when it needs none: the cgroup then only
    /// tracks the processes). Each controller is taken from its v1 mount when it has one,
    /// else from the unified hierarchy when it lists the controller: a pure v2 machine, a v1
    /// machine, and hybrids with controllers on either side (as runc's hybrid mode) all work.
    pub fn for_limits(path: &str, limits: &Limits) -> Cgroup {
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
        let v1: Vec<(String, PathBuf)> = v1_mounts()
            .into_iter()
            .filter(|(c, _)| wanted(c))
            .map(|(c, m)| (c, m.join(rel)))
            .collect();
        let v2 = unified_mount().map(|mount| {
            let available =
                std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
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
    pub fn create(&self, limits: &Limits) -> Result<(), RuntimeError> {
        if let Some(u) = &self.v2 {
            // Enable the controllers on the way down (the mount root, then each parent).
            let enable: String = u
                .controllers
                .iter()
                .map(|c| format!("+{c} "))
                .collect::<String>()
                .trim_end()
                .to_owned();
            let mut parent = u.mount.clone();
            for part in u
                .dir
                .strip_prefix(&u.mount)
                .unwrap_or(&u.dir)
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
            {
                if !enable.is_empty() {
                    write(&parent.join("cgroup.subtree_control"), &enable)?;
                }
                parent = parent.join(part);
                std::fs::create_dir_all(&parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            if !enable.is_empty() {
                write(&parent.join("cgroup.subtree_control"), &enable)?;
            }
        }
        for dir in self.dirs() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        if let Some(m) = limits.memory {
            let (dir, v2) = self.dir("memory").ok_or_else(|| {
                RuntimeError::Spec("--memory needs the memory cgroup controller".into())
            })?;
            if v2 {
                write(&dir.join("memory.max"), &m.to_string())?;
                let _ = write(&dir.join("memory.swap.max"), "0");
            } else {
                write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &m.to_string());
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
                write(&dir.join(file), &rule.line)?;
            }
        }
        if let Some(p) = limits.pids {
            let (dir, _) = self.dir("pids").ok_or_else(|| {
                RuntimeError::Spec("--pids-limit needs the pids cgroup controller".into())
            })?;
            write(&dir.join("pids.max"), &p.to_string())?;
        }
        if let Some(q) = limits.cpu_quota {
            let (dir, v2) = self.dir("cpu").ok_or_else(|| {
                RuntimeError::Spec("--cpus needs the cpu cgroup controller".into())
            })?;
            if v2 {
                write(&dir.join("cpu.max"), &format!("{q} {CPU_PERIOD}"))?;
            } else {
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves a process into every directory of the cgroup.
    pub fn add(&self, pid: i32) -> Result<(), RuntimeError> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn procs(&self) -> Vec<i32> {
        let mut out: Vec<i32> = Vec::new();
        for dir in self.dirs() {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether the kernel's OOM killer killed something in the cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some((dir, v2)) = self.dir("memory") else {
            return false;
        };
        let file = if v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
    }

    /// Kills every process left in the cgroup and removes its directories.
    pub fn destroy(&self) -> Result<(), RuntimeError> {
        // Up to 5 s for killed processes to go, looking every millisecond.
        for _ in 0..5000 {
            let procs = self.procs();
            if procs.is_empty() {
                break;
            }
            for pid in procs {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for dir in self.dirs() {
            let mut last = Ok(());
            // A cgroup whose last task is still exiting is busy for a moment: retry, quickly
            // at first (this is on every container's way out), for up to about a second.
            for attempt in 0..200u64 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => {
                        last = Ok(());
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        last = Ok(());
                        break;
                    }
                    Err(e) => last = Err(e),
                }
                std::thread::sleep(std::time::Duration::from_micros(200 * attempt.min(25)));
            }
            last.map_err(io(format!("removing {}", dir.display())))?;
        }
        Ok(())
    }
}
