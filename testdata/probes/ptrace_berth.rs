//! A static probe run as a container's process (with CAP_SYS_PTRACE) by
//! `cli/tests/exec_window.rs`: for SECONDS it scans `/proc` over and over and, for every
//! process whose `exe` or `cmdline` names berth, reads its `status` and `PTRACE_ATTACH`es to
//! it (`PTRACE_SEIZE`, then `PTRACE_INTERRUPT`: the attach of `PTRACE_ATTACH` without its
//! SIGSTOP, which an exec racing the attach would leave pending, stopping the process for
//! good), reading the `status` again while it is stopped. Prints one line per finding:
//!
//! - `caps PID CAPEFF` for a berth process whose effective capabilities go beyond the
//!   probe's own (the container's, with SYS_PTRACE);
//! - `seccomp PID` for one without a seccomp filter (`Seccomp: 0`);
//! - `host-exe PID` for one whose `/proc/PID/exe` is the file DEV:INO (the host's berth);
//! - `attached PID EXE` for every attach that succeeded (EXE: what `exe` read while stopped);
//!
//! then `done SEEN ATTACHED`. Usage: `ptrace_berth DEV INO SECONDS`. x86_64 numbers.

use std::collections::HashSet;
use std::ffi::{c_int, c_long};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

extern "C" {
    fn ptrace(request: c_int, pid: c_int, addr: c_long, data: c_long) -> c_long;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
}

const PTRACE_DETACH: c_int = 17;
const PTRACE_SEIZE: c_int = 0x4206;
const PTRACE_INTERRUPT: c_int = 0x4207;
const WALL: c_int = 0x4000_0000;
/// `status >> 16` of a stop made by `PTRACE_INTERRUPT`.
const PTRACE_EVENT_STOP: c_int = 128;

fn field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
}

fn caps(status: &str) -> u64 {
    field(status, "CapEff:")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0)
}

struct Probe {
    own_caps: u64,
    host: (u64, u64),
    reported: HashSet<String>,
}

impl Probe {
    fn report(&mut self, line: String) {
        if self.reported.insert(line.clone()) {
            println!("{line}");
        }
    }

    /// Checks what `/proc/PID` says now.
    fn check(&mut self, pid: i32) {
        let dir = format!("/proc/{pid}");
        if let Ok(status) = std::fs::read_to_string(format!("{dir}/status")) {
            let eff = caps(&status);
            if eff & !self.own_caps != 0 {
                self.report(format!("caps {pid} {eff:016x}"));
            }
            if field(&status, "Seccomp:").as_deref() == Some("0") {
                self.report(format!("seccomp {pid}"));
            }
        }
        if let Ok(m) = std::fs::metadata(format!("{dir}/exe")) {
            if (m.dev(), m.ino()) == self.host {
                self.report(format!("host-exe {pid}"));
            }
        }
    }
}

fn names_berth(pid: i32) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    exe.contains("berth") || String::from_utf8_lossy(&cmdline).contains("berth")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok()).expect("usage");
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut probe = Probe {
        own_caps: caps(&own),
        host: (number(1), number(2)),
        reported: HashSet::new(),
    };
    let me = std::process::id() as i32;
    let end = Instant::now() + Duration::from_secs(number(3));
    let (mut seen, mut attached) = (HashSet::new(), 0u64);
    while Instant::now() < end {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            continue;
        };
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            if pid == me || !names_berth(pid) {
                continue;
            }
            seen.insert(pid);
            probe.check(pid);
            // SAFETY: ptrace and waitpid take numbers; the status pointer is a live int.
            unsafe {
                if ptrace(PTRACE_SEIZE, pid, 0, 0) == 0 {
                    ptrace(PTRACE_INTERRUPT, pid, 0, 0);
                    let mut status = 0;
                    if waitpid(pid, &mut status, WALL) != pid || status & 0x7f != 0x7f {
                        // Gone (exited or killed) meanwhile.
                        continue;
                    }
                    attached += 1;
                    // A signal the process was about to get when it stopped: handed back on
                    // detach.
                    let signal = if status >> 16 == PTRACE_EVENT_STOP {
                        0
                    } else {
                        (status >> 8) & 0xff
                    };
                    probe.check(pid);
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    probe.report(format!("attached {pid} {exe}"));
                    ptrace(PTRACE_DETACH, pid, 0, signal as c_long);
                }
            }
        }
    }
    println!("done {} {attached}", seen.len());
}
