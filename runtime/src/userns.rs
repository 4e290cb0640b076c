//! Rootless berth: the user namespace an unprivileged user's `berth` enters at start, so that
//! the store, the builder and the runtime work as they do as root, with the user's own files
//! and subordinate ids standing for root's.
//!
//! The mapping: inside id 0 is the user; inside ids 1.. are the ranges `/etc/subuid` and
//! `/etc/subgid` give the user, in file order, written by the setuid `newuidmap` and
//! `newgidmap` (Debian's `uidmap`). Without ranges, or without those helpers, the namespace
//! maps the user alone (as `unshare -r` does): files keep their owners only when they are
//! root's, and a `chown` to another id fails.
//!
//! [`enter`] puts this very process (its PID, signals, terminal and exit code stay berth's
//! own) into the namespace the user's pause process holds ([`crate::pause`]), then unshares
//! a mount namespace of its own: every command of the user shares one user namespace, and
//! joining it costs a few system calls. The first command starts the pause process, which
//! unshares the namespace, then maps that process's ids (the mapping helpers run on it). Without
//! a private runtime directory for the pidfile, the command unshares a namespace of its own
//! as before: a forked helper, left outside, runs the mapping helpers on it. Either way it
//! needs a single-threaded process (`setns` into a user namespace refuses others), so `main`
//! calls it before anything starts a thread. Every descendant (`__init`, `__monitor`, RUN
//! steps) inherits the namespace and finds [`MARKER`] in its environment.

use std::path::Path;

/// The environment variable a rootless berth sets once inside its namespace: `UID:GID`, the
/// user's ids outside. Its presence makes the store default to the user's data directory.
pub const MARKER: &str = "_BERTH_USERNS";

/// What berth unshares: a user namespace, and a mount namespace that it owns, so that berth
/// may clone and attach mounts (a RUN step's bind sources) as it does as root. Shared mounts
/// come into it as slaves: nothing mounted there reaches the host.
const NAMESPACES: nix::sched::CloneFlags =
    nix::sched::CloneFlags::CLONE_NEWUSER.union(nix::sched::CloneFlags::CLONE_NEWNS);

/// The most ranges taken from `/etc/subuid` or `/etc/subgid` (the kernel takes 340 lines).
pub const MAX_RANGES: usize = 64;

/// One line of a `uid_map` or `gid_map`: `count` ids from `inside` map to `outside` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The ids a rootless berth maps: the user's own as 0, then the subordinate ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl Mapping {
    /// `uid`/`gid` as 0, then the ranges of `subuid`/`subgid` (the files' text) that name
    /// the user (`name` or the decimal id), inside ids counted on from 1.
    pub fn new(uid: u32, gid: u32, name: Option<&str>, subuid: &str, subgid: &str) -> Mapping {
        Mapping {
            uids: ranges(uid, &subordinate(subuid, name, uid)),
            gids: ranges(gid, &subordinate(subgid, name, uid)),
        }
    }

    /// The mapping of this process's user, from `/etc/subuid` and `/etc/subgid` (either may
    /// be missing: the user alone is mapped).
    pub fn for_current_user() -> Mapping {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Mapping::new(
            uid,
            gid,
            name.as_deref(),
            &read("/etc/subuid"),
            &read("/etc/subgid"),
        )
    }

    /// Only the user's own ids are mapped (no subordinate ranges for one of the two).
    pub fn is_single(&self) -> bool {
        self.uids.len() < 2 || self.gids.len() < 2
    }

    /// How many ids the namespace has (uids), the user's own included.
    pub fn uid_count(&self) -> u64 {
        self.uids.iter().map(|r| u64::from(r.count)).sum()
    }

    /// The maps a namespace with this mapping shows in `uid_map` and `gid_map`.
    pub fn maps(&self) -> crate::pause::Maps {
        let lines = |r: &[IdRange]| r.iter().map(|r| [r.inside, r.outside, r.count]).collect();
        crate::pause::Maps {
            uids: lines(&self.uids),
            gids: lines(&self.gids),
        }
    }

    /// `newuidmap`'s or `newgidmap`'s arguments after the PID: `inside outside count`...
    fn helper_args(ranges: &[IdRange]) -> Vec<String> {
        ranges
            .iter()
            .flat_map(|r| [r.inside, r.outside, r.count].map(|n| n.to_string()))
            .collect()
    }
}

/// The ranges of `text` (`/etc/subuid`'s format: `user:start:count` per line) for the user
/// named `name` or numbered `id`; malformed lines, empty ranges and ranges past `u32::MAX`
/// are skipped, and at most [`MAX_RANGES`] are taken.
pub fn subordinate(text: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (who, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some() || (Some(who) != name && who != id) {
                return None;
            }
            let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
            (count > 0 && start.checked_add(count - 1).is_some()).then_some((start, count))
        })
        .take(MAX_RANGES)
        .collect()
}

/// `own` as inside 0, then `subordinate` ranges from inside 1 on; a range that would take the
/// inside ids past `u32::MAX - 1` (the kernel's overflow id stays unmapped) is cut.
fn ranges(own: u32, subordinate: &[(u32, u32)]) -> Vec<IdRange> {
    let mut out = vec![IdRange {
        inside: 0,
        outside: own,
        count: 1,
    }];
    let mut next: u32 = 1;
    for &(start, count) in subordinate {
        let room = (u32::MAX - 1).saturating_sub(next);
        let count = count.min(room);
        if count == 0 {
            break;
        }
        out.push(IdRange {
            inside: next,
            outside: start,
            count,
        });
        next += count;
    }
    out
}

/// Why berth could not enter its user namespace.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("berth must enter its user namespace before it starts a thread")]
    Threads,
    #[error(
        "creating a user namespace: {0} (user.max_user_namespaces may be 0, or a security profile may forbid it)"
    )]
    Unshare(nix::Error),
    #[error("{helper} could not map the ids of /etc/sub{kind}: {why}")]
    Helper {
        helper: &'static str,
        kind: &'static str,
        why: String,
    },
    #[error("writing {0}: {1}")]
    Map(&'static str, std::io::Error),
    #[error("joining berth's user namespace (pause process {pid}): {errno}")]
    Join { pid: i32, errno: nix::Error },
    #[error("starting berth's pause process: {0}")]
    Pause(String),
    /// The pause process's lock could not be had (held too long, or refused): the caller
    /// enters a namespace of its own.
    #[error("{0}")]
    Locked(String),
}

/// How [`enter`] entered the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entered {
    /// It joined the namespace of the pause process an earlier command started.
    Joined,
    /// It started the pause process (none ran, or the pidfile was stale) and joined it.
    Started,
    /// The pause process's maps were not those of `/etc/subuid` and `/etc/subgid` now: it
    /// was stopped, and a new one started with the new mapping.
    Replaced,
    /// No private runtime directory for the pidfile (why): a namespace of its own, which
    /// later commands do not share.
    Alone(String),
}

pub use crate::sys::linux::in_user_namespace;

/// Whether this is a rootless berth inside its own namespace (or a descendant of one): the
/// marker in the environment, which anyone can set, counts only inside a user namespace, so
/// that root with it set stays root and a user with it set still enters the namespace.
pub fn rootless() -> bool {
    std::env::var_os(MARKER).is_some() && in_user_namespace()
}

/// Enters berth's user namespace with `mapping`, in this process, which must run one thread:
/// afterwards it is root inside, with every capability there, in a mount namespace of its
/// own, and [`MARKER`] is set.
pub fn enter(mapping: &Mapping) -> Result<Entered, UsernsError> {
    if !crate::sys::linux::single_threaded() {
        return Err(UsernsError::Threads);
    }
    let outer = format!(
        "{}:{}",
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw()
    );
    let alone = |why: String| -> Result<Entered, UsernsError> {
        if mapping.is_single() {
            map_self()?;
        } else {
            map_with_helpers(mapping)?;
        }
        Ok(Entered::Alone(why))
    };
    let entered = match crate::pause::RuntimeDir::open() {
        Ok(dir) => match through_pause(&dir, mapping) {
            // Nothing was unshared or joined yet: a namespace of this command's own.
            Err(UsernsError::Locked(why)) => alone(why)?,
            other => other?,
        },
        Err(why) => alone(why)?,
    };
    // SAFETY (of the call's contract): checked above that this process runs one thread, and
    // nothing since has started one.
    crate::sys::linux::set_env_single_threaded(MARKER, &outer);
    Ok(entered)
}

/// Joins the pause process's namespace; starts the pause process first when there is none
/// to join (under the lock, so that two commands at once start one).
fn through_pause(
    dir: &crate::pause::RuntimeDir,
    mapping: &Mapping,
) -> Result<Entered, UsernsError> {
    use crate::pause::{self, Found};
    let expected = mapping.maps();
    let join = |p: pause::Pause| {
        let pid = p.pid;
        p.join().map_err(|errno| UsernsError::Join { pid, errno })
    };
    if let Found::Live(p) = pause::find(dir, &expected) {
        join(p)?;
        return Ok(Entered::Joined);
    }
    let _lock = dir.lock().map_err(|e| {
        UsernsError::Locked(format!(
            "locking {}: {e}",
            dir.path().join("pause.lock").display()
        ))
    })?;
    let mut entered = Entered::Started;
    match pause::find(dir, &expected) {
        Found::Live(p) => {
            join(p)?;
            return Ok(Entered::Joined);
        }
        Found::Other(p) => {
            p.stop();
            entered = Entered::Replaced;
        }
        Found::None => {}
    }
    let spawned = pause::spawn().map_err(UsernsError::Unshare)?;
    let pid = spawned.pid.to_string();
    if mapping.is_single() {
        map_single(&pid)?;
    } else {
        run_helpers(&pid, mapping).map_err(|(which, why)| helper_error(which, &why))?;
    }
    join(pause::publish(dir, spawned, &expected).map_err(UsernsError::Pause)?)?;
    Ok(entered)
}

/// Stops the user's pause process, if one runs (`berth system migrate`); returns its PID.
/// The next command that enters the namespace starts a new one.
pub fn stop_pause() -> Result<Option<i32>, String> {
    let dir = crate::pause::RuntimeDir::open()?;
    Ok(crate::pause::stop(&dir))
}

/// The user alone, mapped from this process (in the parent namespace) into the pause
/// process's namespace: `setgroups` denied first, as the kernel asks of an unprivileged
/// mapping.
fn map_single(pid: &str) -> Result<(), UsernsError> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let write = |file: &'static str, text: String| {
        std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(|e| UsernsError::Map(file, e))
    };
    write("setgroups", "deny".to_owned())?;
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("gid_map", format!("0 {gid} 1\n"))
}

/// The user alone, mapped by this process itself (no helper needed): `setgroups` must be
/// denied first, as the kernel asks of an unprivileged mapping.
fn map_self() -> Result<(), UsernsError> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    nix::sched::unshare(NAMESPACES).map_err(UsernsError::Unshare)?;
    let write = |path: &'static str, text: String| {
        std::fs::write(Path::new(path), text).map_err(|e| UsernsError::Map(path, e))
    };
    write("/proc/self/setgroups", "deny".to_owned())?;
    write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1\n"))
}

/// The subordinate ranges, mapped by `newuidmap` and `newgidmap` run from a forked helper
/// that stays in the host's namespace while this process unshares its own.
fn map_with_helpers(mapping: &Mapping) -> Result<(), UsernsError> {
    use std::io::{Read, Write};
    let pid = std::process::id().to_string();
    let mapping = mapping.clone();
    let helper = crate::sys::linux::fork_helper(move |mut go, mut done| {
        let mut byte = [0u8];
        // No byte: the parent could not unshare, or is gone; nothing to map.
        if go.read(&mut byte).ok() != Some(1) {
            return;
        }
        let answer = match run_helpers(&pid, &mapping) {
            Ok(()) => "ok".to_owned(),
            Err((which, why)) => format!("{which}{why}"),
        };
        let _ = done.write_all(answer.as_bytes());
    })
    .map_err(|e| UsernsError::Map("a helper process", std::io::Error::from(e)))?;
    let (mut go, mut done, child) = helper;
    let unshared = nix::sched::unshare(NAMESPACES);
    if unshared.is_ok() {
        let _ = go.write_all(b"g");
    }
    drop(go);
    let mut answer = String::new();
    let _ = done.read_to_string(&mut answer);
    let _ = nix::sys::wait::waitpid(child, None);
    unshared.map_err(UsernsError::Unshare)?;
    if answer == "ok" {
        return Ok(());
    }
    let (which, why) = answer.split_at(answer.len().min(1));
    Err(helper_error(if which == "1" { 1 } else { 0 }, why))
}

/// Runs `newuidmap` and `newgidmap` on process `pid`, both at once (each is a setuid
/// program's start-up, most of the wait); on failure, which one (0 or 1) and why.
fn run_helpers(pid: &str, mapping: &Mapping) -> Result<(), (usize, String)> {
    let jobs = [
        ("newuidmap", Mapping::helper_args(&mapping.uids)),
        ("newgidmap", Mapping::helper_args(&mapping.gids)),
    ];
    let children: Vec<_> = jobs
        .iter()
        .map(|(program, args)| {
            std::process::Command::new(program)
                .arg(pid)
                .args(args)
                .stdin(std::process::Stdio::null())
                .spawn()
        })
        .collect();
    let mut failed = None;
    for (i, child) in children.into_iter().enumerate() {
        let why = match child.map(|mut c| c.wait()) {
            Ok(Ok(s)) if s.success() => continue,
            Ok(Ok(s)) => format!("exited with {s}"),
            Ok(Err(e)) | Err(e) => e.to_string(),
        };
        failed.get_or_insert((i, why));
    }
    failed.map_or(Ok(()), Err)
}

fn helper_error(which: usize, why: &str) -> UsernsError {
    let (helper, kind) = if which == 1 {
        ("newgidmap", "gid")
    } else {
        ("newuidmap", "uid")
    };
    let why = match why {
        "" => "the helper process ended without an answer".to_owned(),
        w if w.contains("No such file") => format!("{w} (install Debian's uidmap)"),
        w => w.to_owned(),
    };
    UsernsError::Helper { helper, kind, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_taken_by_name_or_id_in_file_order() {
        let subuid = "alice:100000:65536\nbob:200000:10\n1001:300000:5\nbad line\nalice:x:1\n";
        let m = Mapping::new(1001, 1001, Some("alice"), subuid, "alice:500000:100\n");
        assert_eq!(
            m.uids,
            vec![
                IdRange {
                    inside: 0,
                    outside: 1001,
                    count: 1
                },
                IdRange {
                    inside: 1,
                    outside: 100000,
                    count: 65536
                },
                IdRange {
                    inside: 65537,
                    outside: 300000,
                    count: 5
                },
            ]
        );
        assert_eq!(
            m.gids[1],
            IdRange {
                inside: 1,
                outside: 500000,
                count: 100
            }
        );
        assert!(!m.is_single());
        assert_eq!(m.uid_count(), 65542);
        assert_eq!(
            Mapping::helper_args(&m.gids),
            ["0", "1001", "1", "1", "500000", "100"]
        );
    }

    #[test]
    fn without_ranges_only_the_user_is_mapped() {
        let m = Mapping::new(1001, 1001, Some("carol"), "alice:100000:65536\n", "");
        assert!(m.is_single());
        assert_eq!(
            m.uids,
            vec![IdRange {
                inside: 0,
                outside: 1001,
                count: 1
            }]
        );
    }

    #[test]
    fn hostile_files_are_bounded() {
        // Empty ranges, ranges past the last id and many lines.
        let mut text = "u:1:0\nu:4294967295:2\n".to_owned();
        for i in 0..1000 {
            text.push_str(&format!("u:{}:4294967295\n", i));
        }
        let got = subordinate(&text, Some("u"), 7);
        assert_eq!(
            got,
            [(0, u32::MAX), (1, u32::MAX)],
            "only ranges ending by u32::MAX"
        );
        let m = Mapping::new(7, 7, Some("u"), &text, "");
        assert_eq!(m.uids.len(), 2);
        assert_eq!(
            m.uids[1].count,
            u32::MAX - 2,
            "inside ids stop before the overflow id"
        );
        assert_eq!(
            subordinate(&"u:1:1\n".repeat(500), Some("u"), 7).len(),
            MAX_RANGES
        );
    }
}
