//! cgroup v2 enforcement on this hybrid machine. Here memory, pids and cpu are bound to v1
//! mounts and the unified hierarchy has none of them, so the v2 code would go untested. The
//! test moves pids and cpu to the unified hierarchy for its duration: when no process sits
//! in a child cgroup of their v1 mounts, it removes those children and unmounts the two.
//! The kernel then lists them in the unified `cgroup.controllers`. It runs `--pids-limit` and
//! `--cpus` there, beside `--memory` still on v1 (a mixed hybrid), and checks the container's
//! v2 directory is gone afterwards. A guard puts both controllers back on v1, even when an
//! assertion fails.
//!
//! It changes the machine's cgroup mounts for a few seconds, so it lives in its own test
//! binary (cargo runs binaries one at a time). It skips, saying why, when the machine is not
//! the hybrid it expects or a v1 cgroup it would remove is in use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, is_root, scripts};

const MOVED: &[&str] = &["pids", "cpu"];

fn unified() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next() == Some("cgroup2"))
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
    })
}

/// The v1 mount point of a controller mounted on its own (`cgroup ... rw,pids`).
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        (r.next() == Some("cgroup") && r.nth(1)?.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
    })
}

fn listed(unified: &Path, controller: &str) -> bool {
    std::fs::read_to_string(unified.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|c| c == controller)
}

/// Child cgroups under `root`, deepest first.
fn children(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.path().to_owned())
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Puts the moved controllers back on their v1 mounts when dropped.
struct Restore {
    unified: PathBuf,
    mounts: Vec<(String, PathBuf)>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // Nothing of berth may hold the controllers on v2: remove its directories, then
        // disable the controllers at the root.
        let berth = self.unified.join("berth");
        if berth.is_dir() {
            for d in children(&berth) {
                let _ = std::fs::remove_dir(d);
            }
            let _ = std::fs::write(berth.join("cgroup.subtree_control"), "-pids -cpu");
            let _ = std::fs::remove_dir(&berth);
        }
        let _ = std::fs::write(self.unified.join("cgroup.subtree_control"), "-pids -cpu");
        for (c, at) in &self.mounts {
            let start = Instant::now();
            loop {
                let ok = Command::new("mount")
                    .args(["-t", "cgroup", "-o", c, "cgroup"])
                    .arg(at)
                    .status()
                    .is_ok_and(|s| s.success());
                if ok || start.elapsed() > Duration::from_secs(20) {
                    if !ok {
                        eprintln!(
                            "could not mount the {c} controller back at {}",
                            at.display()
                        );
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn pids_and_cpu_limits_are_enforced_on_the_unified_hierarchy() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(unified) = unified() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    if MOVED.iter().all(|c| listed(&unified, c)) {
        eprintln!("pids and cpu are already on v2: nothing to move");
    }
    let mut mounts = Vec::new();
    for c in MOVED {
        if listed(&unified, c) {
            continue;
        }
        let Some(at) = v1_mount(c) else {
            eprintln!("skipped: {c} is neither on v1 nor on v2");
            return;
        };
        // Only a mount of this controller alone can be taken apart and remade as it was.
        let alone = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| {
                l.contains(&format!(" {} ", at.display()))
                    && l.split(" - ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().nth(2))
                        .is_some_and(|o| {
                            o.split(',')
                                .filter(|x| MOVED.contains(x) || *x == "cpuacct")
                                .count()
                                == 1
                        })
            });
        let busy = children(&at).iter().any(|d| {
            !std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .trim()
                .is_empty()
        });
        if !alone || busy {
            eprintln!(
                "skipped: the {c} mount at {} is shared or in use (alone {alone}, busy {busy})",
                at.display()
            );
            return;
        }
        mounts.push(((*c).to_owned(), at));
    }
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");

    let mut restore = Restore {
        unified: unified.clone(),
        mounts: Vec::new(),
    };
    for (c, at) in &mounts {
        // First whether the mount can go at all (then it comes straight back): nothing is
        // touched on a machine that refuses.
        let out = Command::new("umount").arg(at).output().unwrap();
        if out.status.success() {
            let back = Command::new("mount")
                .args(["-t", "cgroup", "-o", c, "cgroup"])
                .arg(at)
                .status()
                .unwrap();
            assert!(back.success(), "mounting {} back", at.display());
            for d in children(at) {
                std::fs::remove_dir(&d).unwrap_or_else(|e| panic!("removing {}: {e}", d.display()));
            }
        }
        let out = if out.status.success() {
            Command::new("umount").arg(at).output().unwrap()
        } else {
            out
        };
        if !out.status.success() {
            // Some machines lock their cgroup mounts (this VM answers EBUSY with no user of
            // the mount in sight): nothing can move, so there is nothing to test.
            eprintln!(
                "skipped: {} cannot be unmounted here: {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        restore.mounts.push((c.clone(), at.clone()));
        // The hierarchy goes (and the controller with it) only when nothing holds it any
        // more; on this VM something outside its view can (a lazily detached mount kept
        // it alive once): then the controller never moves and there is nothing to test.
        let start = Instant::now();
        while !listed(&unified, c) {
            if start.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "skipped: {c} stays bound to its v1 hierarchy after the unmount (held \
                     outside this test); its mount is put back"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // pids on v2: a fork bomb stops at the limit.
    let count = scripts::fork_bomb_under(&s, "20");
    assert!(
        (10..=20).contains(&count),
        "{count} processes under --pids-limit 20 (v2)"
    );

    // The limit is written where v2 keeps it, in the container's unified directory.
    let mut child = s
        .cmd()
        .args([
            "run",
            "--rm",
            "--pids-limit",
            "33",
            "--cpus",
            "0.5",
            "--memory",
            "64m",
            "busybox",
            "sleep",
            "2",
        ])
        .spawn()
        .unwrap();
    let berth_dir = unified.join("berth");
    let mut seen = None;
    wait_for("the container's v2 cgroup", || {
        seen = children(&berth_dir)
            .into_iter()
            .find(|d| d.join("pids.max").exists());
        seen.is_some()
    });
    let dir = seen.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("pids.max"))
            .unwrap()
            .trim(),
        "33"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("cpu.max")).unwrap().trim(),
        "50000 100000"
    );
    // Memory stayed on v1 here: the container has a v1 memory cgroup with the limit.
    let memory = v1_mount("memory")
        .unwrap()
        .join("berth")
        .join(dir.file_name().unwrap());
    assert_eq!(
        std::fs::read_to_string(memory.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (64u64 << 20).to_string()
    );
    assert!(child.wait().unwrap().success());
    assert!(
        !dir.exists(),
        "the v2 cgroup is removed after the container"
    );
    assert!(!memory.exists(), "the v1 cgroup too");

    // cpu on v2: a busy loop holds near half a core.
    let share = scripts::cpu_share(&s.ok(&[
        "run",
        "--rm",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        scripts::SPIN,
    ]));
    assert!(
        (0.1..=0.62).contains(&share),
        "--cpus 0.5 on v2 used {share:.2} of a core"
    );
    eprintln!("v2: pids {count} under a limit of 20, cpu {share:.2} of a core under 0.5");
}
