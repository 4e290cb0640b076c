//! Containers through their records: finding one by name or ID, whether it still runs, and
//! signalling it. A container's record names the process running it (`berth run`, or the
//! monitor of `run -d`): signals sent to that process reach the container's PID 1; SIGKILL
//! goes to the container's init (the process's child), whose death ends PID 1, so the runner
//! still records the exit and removes the cgroup.
//!
//! A PID alone does not name a process: when berth was killed before it recorded the end,
//! the PID may since belong to an unrelated process. So a record keeps the runner's start
//! time with its PID, and a signal goes only through a pidfd opened on a process whose start
//! time matches ([`Process::verified`]); the container's init, only when it is that
//! process's child. A record without a start time (an older berth's) is never signalled.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use berth_store::Store;
use nix::sys::signal::Signal;

use crate::UsageError;
use berth_store::containers::ContainerRecord;

/// A container by name, ID or unique ID prefix.
pub fn find(store: &Store, want: &str) -> anyhow::Result<ContainerRecord> {
    let all = store.container_records()?;
    let found: Vec<_> = all
        .into_iter()
        .filter(|r| r.name.as_deref() == Some(want) || r.id.starts_with(want))
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(anyhow::anyhow!("no such container: {want}")),
        n => Err(UsageError(format!("{want} matches {n} containers: use more of the ID")).into()),
    }
}

/// Whether the container's runner is still running: the recorded PID holds a process
/// started when the recorded one was.
pub fn alive(r: &ContainerRecord) -> bool {
    matches!(r.status.as_str(), "running" | "restarting") && runner_running(r)
}

fn runner_running(r: &ContainerRecord) -> bool {
    match (r.pid, r.pid_start) {
        (Some(pid), Some(start)) => start_time(pid) == Some(start),
        _ => false,
    }
}

/// A process's `/proc/PID/stat` fields after the command name (which may hold spaces and
/// parentheses): `[0]` is field 3 (state), `[1]` field 4 (the parent), `[19]` field 22
/// (the start time, in clock ticks after boot).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// `(start time, parent PID)` from a `stat` file's text.
fn parse_stat(stat: &str) -> Option<(u64, u32)> {
    let fields = stat_fields(stat)?;
    Some((fields.get(19)?.parse().ok()?, fields.get(1)?.parse().ok()?))
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), `None` when there is
/// no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(start, _)| start)
}

/// A process held by a pidfd, known to be the one meant: signals sent through it can reach
/// no other process, even if the PID is reused meanwhile.
struct Process {
    pidfd: OwnedFd,
}

impl Process {
    /// The process `pid` if it started at `start` (and, with `parent`, is that process's
    /// child). `/proc/PID` is opened first: that directory stays bound to the process it
    /// named, so its `stat` is read again after the pidfd is opened; if it still reads, the
    /// process never left, the PID was never reused, and the pidfd is that process's.
    fn verified(pid: u32, start: Option<u64>, parent: Option<u32>) -> Option<Process> {
        use rustix::fs::{Mode, OFlags};
        let dir = rustix::fs::open(
            format!("/proc/{pid}"),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let read_stat = || -> Option<(u64, u32)> {
            let fd = rustix::fs::openat(
                &dir,
                "stat",
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            let mut text = String::new();
            std::fs::File::from(fd).read_to_string(&mut text).ok()?;
            parse_stat(&text)
        };
        let (started, ppid) = read_stat()?;
        if start.is_some_and(|s| s != started) || parent.is_some_and(|p| p != ppid) {
            return None;
        }
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid as i32)?,
            rustix::process::PidfdFlags::empty(),
        )
        .ok()?;
        read_stat()?;
        Some(Process { pidfd })
    }

    fn signal(&self, signal: Signal) {
        if let Some(s) = rustix::process::Signal::from_named_raw(signal as i32) {
            let _ = rustix::process::pidfd_send_signal(&self.pidfd, s);
        }
    }
}

/// The container's init: the runner's child.
pub fn init_of(runner: u32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{runner}/task/{runner}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits (up to 2 s) for a runner to have started the container's init.
pub fn wait_for_init(runner: u32) -> Option<i32> {
    for _ in 0..200 {
        if let Some(init) = init_of(runner) {
            return Some(init);
        }
        if !std::path::Path::new(&format!("/proc/{runner}")).exists() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Waits (up to 5 s) until the container runs its command: its PID 1 (the init's child that
/// is PID 1 of a PID namespace) or, with `--init`, a child of it, has an executable that is
/// no longer berth's. By then the init has set the container up, its network and published
/// ports included, so `run -d` returns when the container can be reached, as Docker's does.
/// (The init's other children, `ip` and `nft`, are not the container.) Returns early when
/// the init has gone.
pub fn wait_for_command(runner: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = std::fs::metadata("/proc/self/exe") else {
        return;
    };
    let berth = (me.dev(), me.ino());
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let namespace_init = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|ids| {
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    ids.len() > 1 && ids.last() == Some(&"1")
                })
        })
    };
    // EACCES: a process not dumpable, which berth's own code in the container is.
    let runs_command = |pid: &u32| {
        std::fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| (m.dev(), m.ino()) != berth)
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let Some(init) = init_of(runner) else {
            return;
        };
        for pid1 in children(init as u32).into_iter().filter(namespace_init) {
            if runs_command(&pid1) || children(pid1).iter().any(runs_command) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends a signal to the container: through its runner, which forwards it to PID 1; SIGKILL
/// (which cannot be forwarded) to the container's init, never to the runner, so the runner
/// still records the end. Only a runner whose start time matches the record's is signalled,
/// and only its own child as its init.
pub fn send(r: &ContainerRecord, signal: Signal) {
    let (Some(pid), Some(start)) = (r.pid, r.pid_start) else {
        return;
    };
    let Some(runner) = Process::verified(pid, Some(start), None) else {
        return; // the runner has ended; its PID may be someone else's now
    };
    if signal == Signal::SIGKILL {
        // The container has already ended when there is no init.
        if let Some(init) = wait_for_init(pid)
            && let Some(init) = Process::verified(init as u32, None, Some(pid))
            // The runner is still the recorded one, so the init is its child.
            && Process::verified(pid, Some(start), None).is_some()
        {
            init.signal(signal);
        }
    } else {
        runner.signal(signal);
    }
}

/// Waits until the runner has exited; `false` on timeout.
fn wait_exit(r: &ContainerRecord, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if !runner_running(r) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// SIGTERM, then SIGKILL after `grace`; returns once the runner has recorded the end. The
/// container is marked as stopped by its user first, so its restart policy does not start
/// it again (a monitor waiting to restart it ends instead).
pub fn stop_one(store: &Store, r: &ContainerRecord, grace: Duration) -> anyhow::Result<()> {
    store.mark_container_stopped(&r.id, true)?;
    if !alive(r) {
        return Ok(());
    }
    send(r, Signal::SIGTERM);
    if !wait_exit(r, grace) {
        send(r, Signal::SIGKILL);
        wait_exit(r, Duration::from_secs(10));
    }
    Ok(())
}

/// Removes the anonymous volumes (`run -v /path`) a removed container's record named, as
/// Docker's `run --rm` and `rm -v` do; named volumes stay. Without `wait`, a store another
/// process is using leaves them to `volume prune`.
pub fn remove_anonymous_volumes(
    store: &Store,
    r: &ContainerRecord,
    wait: bool,
) -> anyhow::Result<()> {
    for name in &r.volumes {
        if !store.volume_record(name)?.is_some_and(|v| v.anonymous()) {
            continue;
        }
        if wait {
            store.remove_volume(name)?;
        } else {
            store.try_remove_volume(name)?;
        }
    }
    Ok(())
}
