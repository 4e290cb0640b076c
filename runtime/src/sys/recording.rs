//! The [`Sys`] that records: each call becomes a line in [`RecordingSys::calls`] and answers
//! from the fake's own lists, so the mount, namespace and signal sequences are unit-tested
//! without root.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::{Create, DeviceNode, InRoot, Sys, SysResult};

/// Records calls instead of making them; `exists`/`is_dir`/`executable` answer from the
/// given lists, `read_file` from `contents`. `resolve_in_root` adds what it creates to the
/// lists and answers ENOENT for what is in neither, as the kernel would.
#[derive(Debug, Default)]
pub struct RecordingSys {
    pub calls: Vec<String>,
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    /// What `read_file` answers for a path, in order; the last answer repeats (ENOENT for a
    /// path not listed).
    pub contents: std::collections::BTreeMap<PathBuf, std::collections::VecDeque<String>>,
    /// How many `remove_dir` calls answer EBUSY before they succeed.
    pub busy_rmdirs: usize,
    /// The directory `chdir` went to last.
    pub cwd: PathBuf,
    /// What `fork` answers (default: the parent of child 2).
    pub fork_as_child: bool,
    /// Signals `wait_signal` returns, in order (then EINTR).
    pub signals: std::collections::VecDeque<nix::sys::signal::Signal>,
    /// What `reap` returns, in order (then ECHILD).
    pub reaped: std::collections::VecDeque<nix::sys::wait::WaitStatus>,
    /// Answer EINVAL to mounts with overlayfs's `volatile` (a kernel before 5.10).
    pub refuse_volatile: bool,
    /// Answer ENOSYS to `bind_tree` (a kernel before 5.12).
    pub no_mount_setattr: bool,
    /// `write_file` calls that fail: the path, the value and the error (recorded all the same).
    pub write_errors: Vec<(PathBuf, String, nix::Error)>,
}

/// The path a [`RecordingSys`] target (`fd:PATH`) was resolved from: it answers as that path.
fn held(path: &Path) -> &Path {
    path.to_str()
        .and_then(|p| p.strip_prefix("fd:"))
        .map_or(path, Path::new)
}

impl RecordingSys {
    fn record(&mut self, line: String) -> SysResult<()> {
        self.calls.push(line);
        Ok(())
    }
}

impl Sys for RecordingSys {
    fn resolve_in_root(&mut self, root: &Path, rel: &Path, create: Create) -> SysResult<InRoot> {
        let path = root.join(rel);
        let exists = self.exists(&path);
        match create {
            Create::Dir => {
                self.record(format!("mkdir {} 755", path.display()))?;
                if !exists {
                    self.dirs.push(path.clone());
                }
            }
            Create::File => {
                self.record(format!("touch {}", path.display()))?;
                if !exists {
                    self.files.push(path.clone());
                }
            }
            Create::Nothing if !exists => return Err(nix::Error::ENOENT),
            Create::Nothing => {}
        }
        Ok(InRoot {
            target: PathBuf::from(format!("fd:{}", path.display())),
            path,
            _fd: None,
        })
    }

    fn bind_tree(
        &mut self,
        source: &Path,
        target: &InRoot,
        recursive: bool,
        attrs: MsFlags,
    ) -> SysResult<()> {
        let names: Vec<&str> = attrs.iter_names().map(|(name, _)| name).collect();
        self.record(format!(
            "bind_tree {} {}{} set={} propagation=MS_PRIVATE",
            source.display(),
            target.target().display(),
            if recursive { " AT_RECURSIVE" } else { "" },
            if names.is_empty() {
                "-".to_owned()
            } else {
                names.join("|")
            }
        ))?;
        if self.no_mount_setattr {
            return Err(nix::Error::ENOSYS);
        }
        Ok(())
    }

    fn mount(
        &mut self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        let names: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
        self.record(format!(
            "mount {} {} type={} flags={} data={}",
            source.unwrap_or("-"),
            target.display(),
            fstype.unwrap_or("-"),
            if names.is_empty() {
                "-".to_owned()
            } else {
                names.join("|")
            },
            data.unwrap_or("-")
        ))?;
        if self.refuse_volatile && data.is_some_and(|d| d.contains("volatile")) {
            return Err(nix::Error::EINVAL);
        }
        Ok(())
    }

    /// Recorded as the `mount(2)` of the same overlay.
    fn mount_overlay(
        &mut self,
        overlay: &super::Overlay,
        target: &Path,
        flags: MsFlags,
    ) -> SysResult<()> {
        self.mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(&overlay.data()),
        )
    }

    fn umount(&mut self, target: &Path, flags: MntFlags) -> SysResult<()> {
        self.record(format!("umount {} {flags:?}", target.display()))
    }

    fn mknod_char(&mut self, node: &DeviceNode) -> SysResult<()> {
        self.record(format!(
            "mknod {} c {}:{} {:o}",
            node.path.display(),
            node.major,
            node.minor,
            node.mode
        ))
    }

    fn symlink(&mut self, target: &str, link: &Path) -> SysResult<()> {
        self.record(format!("symlink {} -> {target}", link.display()))
    }

    fn exists(&mut self, path: &Path) -> bool {
        let path = held(path);
        self.files.iter().chain(&self.dirs).any(|p| p == path)
    }

    fn is_dir(&mut self, path: &Path) -> bool {
        let path = held(path);
        self.dirs.iter().any(|p| p == path)
    }

    fn chdir(&mut self, path: &Path) -> SysResult<()> {
        self.cwd = self.cwd.join(path);
        self.record(format!("chdir {}", path.display()))
    }

    fn pivot_here(&mut self) -> SysResult<()> {
        self.record("pivot_root . .; umount2 . MNT_DETACH; chdir /".into())
    }

    fn sethostname(&mut self, name: &str) -> SysResult<()> {
        self.record(format!("sethostname {name}"))
    }

    fn loopback_up(&mut self) -> SysResult<()> {
        self.record("loopback up".into())
    }

    fn install_seccomp(&mut self, program: &[libc::sock_filter]) -> SysResult<()> {
        self.record(format!("seccomp {} instructions", program.len()))
    }

    fn unshare(&mut self, flags: nix::sched::CloneFlags) -> SysResult<()> {
        self.record(format!("unshare {flags:?}"))
    }

    fn set_groups(&mut self, groups: &[u32]) -> SysResult<()> {
        self.record(format!(
            "setgroups {}",
            groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))
    }

    fn set_gid(&mut self, gid: u32) -> SysResult<()> {
        self.record(format!("setgid {gid}"))
    }

    fn set_uid(&mut self, uid: u32) -> SysResult<()> {
        self.record(format!("setuid {uid}"))
    }

    fn set_rlimit(
        &mut self,
        kind: oci_spec::runtime::PosixRlimitType,
        soft: u64,
        hard: u64,
    ) -> SysResult<()> {
        self.record(format!("setrlimit {kind:?} {soft} {hard}"))
    }

    fn fork(&mut self) -> SysResult<nix::unistd::ForkResult> {
        self.record("fork".into())?;
        Ok(if self.fork_as_child {
            nix::unistd::ForkResult::Child
        } else {
            nix::unistd::ForkResult::Parent {
                child: nix::unistd::Pid::from_raw(2),
            }
        })
    }

    fn execve(&mut self, program: &CStr, _argv: &[CString], _env: &[CString]) -> nix::Error {
        let _ = self.record(format!("execve {}", program.to_string_lossy()));
        nix::Error::ENOENT
    }

    fn block_signals(&mut self, _set: &nix::sys::signal::SigSet) -> SysResult<()> {
        self.record("block".into())
    }

    fn set_signal_mask(&mut self, _set: &nix::sys::signal::SigSet) -> SysResult<()> {
        self.record("setmask".into())
    }

    fn wait_signal(
        &mut self,
        _set: &nix::sys::signal::SigSet,
    ) -> SysResult<nix::sys::signal::Signal> {
        let s = self.signals.pop_front().ok_or(nix::Error::EINTR)?;
        self.record(format!("signal {s:?}"))?;
        Ok(s)
    }

    fn reap(&mut self) -> SysResult<nix::sys::wait::WaitStatus> {
        let status = self.reaped.pop_front().ok_or(nix::Error::ECHILD)?;
        self.record(format!("reaped {status:?}"))?;
        Ok(status)
    }

    fn kill(&mut self, pid: nix::unistd::Pid, signal: nix::sys::signal::Signal) -> SysResult<()> {
        self.record(format!("kill {pid} {signal:?}"))
    }

    fn set_dumpable(&mut self, dumpable: bool) -> SysResult<()> {
        self.record(format!("dumpable {dumpable}"))
    }

    fn limit_bounding(
        &mut self,
        _caps: &oci_spec::runtime::LinuxCapabilities,
    ) -> Result<(), crate::RuntimeError> {
        self.calls.push("bounding".into());
        Ok(())
    }

    fn apply_capabilities(
        &mut self,
        _caps: &oci_spec::runtime::LinuxCapabilities,
        uid: u32,
    ) -> Result<(), crate::RuntimeError> {
        self.calls.push(format!("capabilities uid={uid}"));
        Ok(())
    }

    fn finish_process(&mut self) -> SysResult<()> {
        self.record("finish umask 022, fds > 2 closed, signals unblocked and default".into())
    }

    fn set_parent_death_signal(&mut self, signal: nix::sys::signal::Signal) -> SysResult<()> {
        self.record(format!("pdeathsig {signal:?}"))
    }

    fn take_controlling_terminal(&mut self) -> SysResult<()> {
        self.record("setsid; TIOCSCTTY 0".into())
    }

    fn new_session(&mut self) -> SysResult<()> {
        self.record("setsid".into())
    }

    fn read_file(&mut self, path: &Path) -> SysResult<String> {
        let answers = self.contents.get_mut(path).ok_or(nix::Error::ENOENT)?;
        let text = if answers.len() > 1 {
            answers.pop_front()
        } else {
            answers.front().cloned()
        };
        text.ok_or(nix::Error::ENOENT)
    }

    fn read_image_file(&mut self, path: &Path) -> SysResult<String> {
        self.read_file(path)
    }

    fn read_fd(&mut self, fd: i32, limit: usize) -> SysResult<Vec<u8>> {
        let text = self.read_file(Path::new(&format!("fd:{fd}")))?;
        if text.len() > limit {
            return Err(nix::Error::EFBIG);
        }
        Ok(text.into_bytes())
    }

    fn write_file(&mut self, path: &Path, value: &str) -> SysResult<()> {
        self.record(format!("write {} {value}", path.display()))?;
        match self
            .write_errors
            .iter()
            .find(|(p, v, _)| p == path && v == value)
        {
            Some((_, _, e)) => Err(*e),
            None => Ok(()),
        }
    }

    fn create_dirs(&mut self, path: &Path) -> SysResult<()> {
        self.record(format!("mkdir -p {}", path.display()))
    }

    fn remove_dir(&mut self, path: &Path) -> SysResult<()> {
        if self.busy_rmdirs > 0 {
            self.busy_rmdirs -= 1;
            return Err(nix::Error::EBUSY);
        }
        self.record(format!("rmdir {}", path.display()))
    }

    fn current_dir(&mut self) -> SysResult<PathBuf> {
        Ok(self.cwd.clone())
    }

    fn executable(&mut self, path: &Path) -> Option<bool> {
        self.files.iter().any(|f| f == path).then_some(true)
    }

    fn sleep(&mut self, _duration: std::time::Duration) {}
}
