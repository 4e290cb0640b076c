//! cgroups: the spec's `linux.resources` and `linux.cgroupsPath` in, a cgroup with those
//! limits holding the container out; and afterwards every remaining process killed and the
//! cgroup removed. Both hierarchies are handled:
//!
//! - **v2** (`/sys/fs/cgroup/cgroup.controllers` exists): one directory; the memory, pids and
//!   cpu controllers are enabled in the parents' `cgroup.subtree_control`; limits go to
//!   `memory.max` (+ `memory.swap.max`), `pids.max`, `cpu.max`; OOM kills are counted in
//!   `memory.events`.
//! - **v1** (and hybrids, where the controllers are bound to v1 mounts and the unified mount
//!   has none): one directory per controller mount found in `/proc/self/mountinfo`;
//!   `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes` where swap accounting exists),
//!   `pids.max`, `cpu.cfs_quota_us`/`cpu.cfs_period_us`; OOM kills in `memory.oom_control`.
//!
//! Written by hand (DEPENDENCIES.md: cgroups-rs costs 73 crates and has open panics); this is
//! a few file writes.

use std::path::{Path, PathBuf};

use crate::RuntimeError;

/// The limits berth sets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<i64>,
    /// CPU quota in µs per 100 ms period.
    pub cpu_quota: Option<i64>,
    pub pids: Option<i64>,
}

impl Limits {
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Limits {
        let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().clone()) else {
            return Limits::default();
        };
        Limits {
            memory: r.memory().as_ref().and_then(|m| m.limit()),
            cpu_quota: r.cpu().as_ref().and_then(|c| c.quota()),
            pids: r.pids().as_ref().map(|p| p.limit()),
        }
    }
}

pub const CPU_PERIOD: u64 = 100_000;
const CONTROLLERS: &[&str] = &["memory", "pids", "cpu"];

/// A container's cgroup: one directory (v2) or one per controller (v1).
#[derive(Debug, Clone)]
pub struct Cgroup {
    v2: bool,
    dirs: Vec<(String, PathBuf)>,
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

impl Cgroup {
    /// The cgroup for `path` (relative, like `berth/<id>`), not yet created.
    pub fn at(path: &str) -> Cgroup {
        let rel = path.trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            return Cgroup {
                v2: true,
                dirs: vec![("unified".into(), root.join(rel))],
            };
        }
        Cgroup {
            v2: false,
            dirs: v1_mounts()
                .into_iter()
                .map(|(c, m)| (c, m.join(rel)))
                .collect(),
        }
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| self.v2 || c == controller)
            .map(|(_, d)| d.as_path())
    }

    /// Creates the directories and writes the limits.
    pub fn create(&self, limits: &Limits) -> Result<(), RuntimeError> {
        if self.v2 {
            let dir = &self.dirs[0].1;
            // Enable the controllers on the way down (the root, then each parent).
            let root = Path::new("/sys/fs/cgroup");
            let mut parent = root.to_path_buf();
            for part in dir
                .strip_prefix(root)
                .unwrap_or(dir)
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
            {
                let _ = write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu");
                parent = parent.join(part);
                std::fs::create_dir_all(&parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            let _ = write(&parent.join("cgroup.subtree_control"), "+memory +pids +cpu");
        }
        for (_, dir) in &self.dirs {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        if let Some(m) = limits.memory {
            let dir = self.dir("memory").ok_or_else(|| {
                RuntimeError::Spec("--memory needs the memory cgroup controller".into())
            })?;
            if self.v2 {
                write(&dir.join("memory.max"), &m.to_string())?;
                let _ = write(&dir.join("memory.swap.max"), "0");
            } else {
                write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &m.to_string());
                }
            }
        }
        if let Some(p) = limits.pids {
            let dir = self.dir("pids").ok_or_else(|| {
                RuntimeError::Spec("--pids-limit needs the pids cgroup controller".into())
            })?;
            write(&dir.join("pids.max"), &p.to_string())?;
        }
        if let Some(q) = limits.cpu_quota {
            let dir = self.dir("cpu").ok_or_else(|| {
                RuntimeError::Spec("--cpus needs the cpu cgroup controller".into())
            })?;
            if self.v2 {
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
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn procs(&self) -> Vec<i32> {
        let mut out: Vec<i32> = Vec::new();
        for (_, dir) in &self.dirs {
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
        let Some(dir) = self.dir("memory") else {
            return false;
        };
        let file = if self.v2 {
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
        for _ in 0..500 {
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
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for (_, dir) in &self.dirs {
            let mut last = Ok(());
            for _ in 0..100 {
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
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            last.map_err(io(format!("removing {}", dir.display())))?;
        }
        Ok(())
    }
}
