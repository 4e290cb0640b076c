//! The pause process of a rootless berth: a process that holds berth's user namespace between
//! commands (as Podman's does), so that every command of the user joins the same namespace
//! instead of making one of its own. Joining costs a few system calls where making one costs
//! the start of two setuid helpers; and a later command (`stop`, `kill`) is root in the very
//! namespace an earlier command's containers run in.
//!
//! It is berth exec'd afresh (`berth-pause __pause`, [`main`]), so nothing of the command
//! that started it (arguments, memory) lives on in it, and it does nothing: it sleeps on
//! signals, ignores hangups and terminal signals, has `/` as its working directory, stdio on `/dev/null` and no other file open (nothing of the store),
//! a session of its own, and stays in the host's mount namespace (each command unshares a
//! mount namespace of its own after joining, so its mounts still end with it). SIGTERM ends
//! it (`berth system migrate`); the next command starts a new one.
//!
//! Its PID is in `pause.pid` in the user's runtime directory ([`RuntimeDir`]:
//! `$XDG_RUNTIME_DIR/berth`, else `/run/user/UID/berth`, else `$XDG_DATA_HOME/berth-run`
//! (`~/.local/share/berth-run`); 0700,
//! the user's own, checked on every open), written atomically under `pause.lock`. The PID
//! may have been reused since, so [`find`] trusts it only when the process, held by a pidfd
//! across the checks, is named [`NAME`], and its user namespace is owned by this user, a
//! child of this process's own, with the maps the caller expects.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use crate::sys::linux;

/// The pause process's name (`/proc/PID/comm`).
pub const NAME: &str = "berth-pause";
const PIDFILE: &str = "pause.pid";
const LOCK: &str = "pause.lock";
/// The longest a command waits for another to start the pause process.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A namespace's maps: the lines of `uid_map` and `gid_map`, `[inside, outside, count]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maps {
    pub uids: Vec<[u32; 3]>,
    pub gids: Vec<[u32; 3]>,
}

/// The user's runtime directory for berth, open: a directory of the user's, closed to
/// others.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl RuntimeDir {
    /// The first of `$XDG_RUNTIME_DIR/berth`, `/run/user/UID/berth` and
    /// `$XDG_DATA_HOME/berth-run` (`~/.local/share/berth-run`) that is (or can be made) a directory of this user's, mode
    /// 0700 or closer, not a symlink; or why none is.
    pub fn open() -> Result<RuntimeDir, String> {
        let uid = nix::unistd::getuid().as_raw();
        let mut candidates = Vec::new();
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
            && d.is_absolute()
        {
            candidates.push(d.join("berth"));
        }
        let run_user = PathBuf::from(format!("/run/user/{uid}"));
        if run_user.is_dir() {
            candidates.push(run_user.join("berth"));
        }
        // Last, a directory in the user's own data directory, never one in a shared /tmp,
        // where another user could take the name first.
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .filter(|h| h.is_absolute())
                    .map(|h| h.join(".local/share"))
            });
        if let Some(data) = data {
            let _ = std::fs::create_dir_all(&data);
            candidates.push(data.join("berth-run"));
        }
        let mut why = Vec::new();
        for path in candidates {
            match Self::open_one(&path, uid) {
                Ok(fd) => return Ok(RuntimeDir { path, fd }),
                Err(e) => why.push(format!("{}: {e}", path.display())),
            }
        }
        Err(why.join("; "))
    }

    fn open_one(path: &Path, uid: u32) -> Result<OwnedFd, String> {
        match nix::unistd::mkdir(path, Mode::S_IRWXU) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(e.desc().to_owned()),
        }
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| e.desc().to_owned())?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| e.desc().to_owned())?;
        if st.st_uid != uid {
            return Err("not the user's own".into());
        }
        if st.st_mode & 0o077 != 0 {
            return Err(format!("open to others (mode {:o})", st.st_mode & 0o7777));
        }
        Ok(fd)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The PID in the pidfile, when it holds one (a regular file, at most a few bytes).
    fn read_pid(&self) -> Option<i32> {
        let fd = nix::fcntl::openat(
            &self.fd,
            PIDFILE,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .ok()?;
        let file = std::fs::File::from(fd);
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut text = String::new();
        file.take(32).read_to_string(&mut text).ok()?;
        text.trim().parse::<i32>().ok().filter(|&p| p > 1)
    }

    /// Writes the pidfile atomically (a new file renamed over it), mode 0600.
    fn write_pid(&self, pid: i32) -> std::io::Result<()> {
        let tmp = format!("{PIDFILE}.{}", std::process::id());
        let fd = nix::fcntl::openat(
            &self.fd,
            tmp.as_str(),
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        let written = std::fs::File::from(fd).write_all(format!("{pid}\n").as_bytes());
        let renamed = written.and_then(|()| {
            nix::fcntl::renameat(&self.fd, tmp.as_str(), &self.fd, PIDFILE)
                .map_err(std::io::Error::from)
        });
        if renamed.is_err() {
            let _ = nix::unistd::unlinkat(
                &self.fd,
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        renamed
    }

    fn remove_pid(&self) {
        let _ = nix::unistd::unlinkat(&self.fd, PIDFILE, nix::unistd::UnlinkatFlags::NoRemoveDir);
    }

    /// Takes `pause.lock`, which whoever starts a pause process holds until its PID is
    /// written, so that two first commands at once start one. Waits at most [`LOCK_WAIT`]:
    /// starting a pause process takes milliseconds, and a holder that keeps it longer (a
    /// process the directory was bound into) must not hang every command.
    pub fn lock(&self) -> std::io::Result<Flock<std::fs::File>> {
        let fd = nix::fcntl::openat(
            &self.fd,
            LOCK,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        let mut file = std::fs::File::from(fd);
        let start = std::time::Instant::now();
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((back, nix::Error::EWOULDBLOCK)) if start.elapsed() < LOCK_WAIT => {
                    file = back;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((_, e)) => return Err(std::io::Error::from(e)),
            }
        }
    }
}

/// A pause process of this user's, held by a pidfd, and its user namespace.
#[derive(Debug)]
pub struct Pause {
    pub pid: i32,
    pidfd: OwnedFd,
    ns: OwnedFd,
}

/// What the pidfile leads to.
#[derive(Debug)]
pub enum Found {
    /// A pause process with the maps expected.
    Live(Pause),
    /// A pause process of this user's, with other maps (the mapping files changed).
    Other(Pause),
    /// Nothing to join: no pidfile, a dead PID, or a process that is not a pause process of
    /// this user's.
    None,
}

/// The pause process the pidfile names, checked (see the module's documentation).
pub fn find(dir: &RuntimeDir, expected: &Maps) -> Found {
    let Some(pid) = dir.read_pid() else {
        return Found::None;
    };
    match inspect(pid) {
        Some((pause, maps)) if maps == *expected => Found::Live(pause),
        Some((pause, _)) => Found::Other(pause),
        None => Found::None,
    }
}

fn inspect(pid: i32) -> Option<(Pause, Maps)> {
    let pidfd = linux::pidfd_open(pid).ok()?;
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(proc.join("comm")).ok()?;
    if comm.trim_end_matches('\n') != NAME {
        return None;
    }
    let ns = OwnedFd::from(std::fs::File::open(proc.join("ns/user")).ok()?);
    let maps = Maps {
        uids: parse_map(&std::fs::read_to_string(proc.join("uid_map")).ok()?)?,
        gids: parse_map(&std::fs::read_to_string(proc.join("gid_map")).ok()?)?,
    };
    // Still there (and signalled by this user: EPERM for another's): the PID was not
    // reused while the files above were read, so they were this process's.
    linux::pidfd_signal(pidfd.as_fd(), 0).ok()?;
    if linux::ns_owner_uid(ns.as_fd()).ok()? != nix::unistd::getuid().as_raw() {
        return None;
    }
    // A child of this process's own namespace, not one nested deeper (a container's).
    let parent = nix::sys::stat::fstat(linux::ns_parent(ns.as_fd()).ok()?).ok()?;
    let own = std::fs::metadata("/proc/self/ns/user").ok()?;
    if (parent.st_dev, parent.st_ino) != (own.dev(), own.ino()) {
        return None;
    }
    Some((Pause { pid, pidfd, ns }, maps))
}

/// A `uid_map`'s or `gid_map`'s lines; `None` when one is not three numbers.
fn parse_map(text: &str) -> Option<Vec<[u32; 3]>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            let line = [f.next()??, f.next()??, f.next()??];
            f.next().is_none().then_some(line)
        })
        .collect()
}

impl Pause {
    /// Joins its user namespace, then unshares a mount namespace of this process's own; the
    /// process must run a single thread.
    pub fn join(self) -> nix::Result<()> {
        nix::sched::setns(&self.ns, nix::sched::CloneFlags::CLONE_NEWUSER)?;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
    }

    /// Ends it (SIGTERM) and waits up to a second for it to go.
    pub fn stop(&self) {
        if linux::pidfd_signal(self.pidfd.as_fd(), libc::SIGTERM).is_ok() {
            let mut fds = [nix::poll::PollFd::new(
                self.pidfd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, 1000u16);
        }
    }

    /// Kills a pause process that could not be given its maps.
    fn kill(&self) {
        let _ = linux::pidfd_signal(self.pidfd.as_fd(), libc::SIGKILL);
    }
}

/// `berth __pause`: the pause process's life (see the module's documentation); never
/// returns once it has unshared its namespace.
pub fn main() -> i32 {
    linux::pause_main(c"berth-pause")
}

/// Starts a pause process in a new user namespace, its maps not yet written (the caller
/// writes them, then [`publish`]es it); the process must run a single thread.
pub fn spawn() -> nix::Result<Spawned> {
    let pid = linux::spawn_pause()?;
    let pidfd = linux::pidfd_open(pid)?;
    Ok(Spawned {
        pid,
        pidfd: Some(pidfd),
    })
}

/// A pause process just started, killed on drop unless published.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pidfd: Option<OwnedFd>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(pidfd) = &self.pidfd {
            let _ = linux::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
        }
    }
}

/// Records a pause process in the pidfile (the caller holds the lock and gave it its maps),
/// then finds it again as any later command would.
pub fn publish(dir: &RuntimeDir, mut spawned: Spawned, expected: &Maps) -> Result<Pause, String> {
    dir.write_pid(spawned.pid)
        .map_err(|e| format!("writing {}: {e}", dir.path().join(PIDFILE).display()))?;
    match find(dir, expected) {
        Found::Live(pause) => {
            spawned.pidfd = None;
            Ok(pause)
        }
        Found::Other(pause) => {
            pause.kill();
            dir.remove_pid();
            Err("the pause process does not have the maps written".into())
        }
        Found::None => {
            dir.remove_pid();
            Err("the pause process ended at once".into())
        }
    }
}

/// Stops this user's pause process, if the pidfile names one, and removes the pidfile;
/// returns its PID.
pub fn stop(dir: &RuntimeDir) -> Option<i32> {
    let pid = dir.read_pid()?;
    let stopped = inspect(pid).map(|(pause, _)| {
        pause.stop();
        pause.pid
    });
    dir.remove_pid();
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse_as_the_kernel_prints_them() {
        let text = "         0       1001          1\n         1     100000      65536\n";
        assert_eq!(
            parse_map(text),
            Some(vec![[0, 1001, 1], [1, 100000, 65536]])
        );
        assert_eq!(parse_map("0 0\n"), None);
        assert_eq!(parse_map("0 0 1 2\n"), None);
        assert_eq!(parse_map("0 x 1\n"), None);
        assert_eq!(parse_map(""), Some(vec![]));
    }
}
