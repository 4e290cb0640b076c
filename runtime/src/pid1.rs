//! `run --init`: a small PID 1 that starts the command as its child, forwards signals to it,
//! reaps every orphan that reparents to it (no zombies pile up), and exits like the command.
//!
//! It is berth itself: the container's PID 1 forks the command and, instead of exec'ing,
//! runs this loop. The container must not reach the host's binary through `/proc/1/exe` (the
//! CVE-2019-5736 class), so PID 1 makes itself non-dumpable first: the kernel then refuses
//! `/proc/1/exe` (and `/proc/1/mem`, ptrace) to any process without CAP_SYS_PTRACE, which the
//! default capability set does not include; the binary cannot be opened for writing while it
//! runs anyway (ETXTBSY). (runc executes a sealed memfd copy instead; that needs a statically
//! linked init, since an image need not have a dynamic loader.)

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};

use crate::contract::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SETUP, FORWARDED};
use crate::sys::Sys;

/// PID 1's life: runs `program` (argv, env as given) as its child and returns the exit
/// code to exit with. Called in the container's PID 1 after all setup, in place of exec.
/// Every call goes through `sys`, so the loop is unit-tested with the recording fake.
pub fn run(
    sys: &mut dyn Sys,
    program: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    env: &[std::ffi::CString],
) -> i32 {
    let _ = sys.set_dumpable(false);
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    if sys.block_signals(&set).is_err() {
        return EXIT_SETUP;
    }
    let child = match sys.fork() {
        Ok(ForkResult::Child) => {
            let _ = sys.set_signal_mask(&SigSet::empty());
            let err = sys.execve(program, argv, env);
            eprintln!("berth: exec {program:?}: {}", err.desc());
            return if err == nix::Error::ENOENT {
                EXIT_NOT_FOUND
            } else {
                EXIT_NOT_EXECUTABLE
            };
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(_) => return EXIT_SETUP,
    };
    loop {
        let signal = match sys.wait_signal(&set) {
            Ok(s) => s,
            Err(nix::Error::EINTR) => continue,
            Err(_) => return EXIT_SETUP,
        };
        if signal != Signal::SIGCHLD {
            let _ = sys.kill(child, signal);
            continue;
        }
        if let Some(code) = reap(sys, child) {
            return code;
        }
    }
}

/// Reaps every exited process; the command's exit code once it has ended.
fn reap(sys: &mut dyn Sys, command: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match sys.reap() {
            Ok(WaitStatus::Exited(pid, c)) if pid == command => code = Some(c),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                code = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::recording::RecordingSys;

    fn cstr(s: &str) -> std::ffi::CString {
        std::ffi::CString::new(s).unwrap()
    }

    #[test]
    fn pid1_forwards_signals_reaps_orphans_and_exits_like_the_command() {
        let mut sys = RecordingSys::default();
        let pid = Pid::from_raw;
        // A SIGTERM arrives, then an orphan (pid 7) ends, then the command (pid 2) ends on
        // the SIGTERM it was forwarded.
        sys.signals
            .extend([Signal::SIGTERM, Signal::SIGCHLD, Signal::SIGCHLD]);
        sys.reaped.extend([
            WaitStatus::Exited(pid(7), 0),
            WaitStatus::StillAlive,
            WaitStatus::Signaled(pid(2), Signal::SIGTERM, false),
        ]);
        let code = run(&mut sys, &cstr("/bin/app"), &[cstr("app")], &[]);
        assert_eq!(code, 128 + 15);
        assert_eq!(
            sys.calls,
            [
                "dumpable false",
                "block",
                "fork",
                "signal SIGTERM",
                "kill 2 SIGTERM",
                "signal SIGCHLD",
                "reaped Exited(Pid(7), 0)",
                "reaped StillAlive",
                "signal SIGCHLD",
                "reaped Signaled(Pid(2), SIGTERM, false)",
            ]
        );
    }

    #[test]
    fn the_command_side_unblocks_signals_and_reports_a_missing_program() {
        let mut sys = RecordingSys {
            fork_as_child: true,
            ..RecordingSys::default()
        };
        let code = run(&mut sys, &cstr("/missing"), &[cstr("missing")], &[]);
        assert_eq!(code, EXIT_NOT_FOUND);
        assert_eq!(
            sys.calls,
            [
                "dumpable false",
                "block",
                "fork",
                "setmask",
                "execve /missing"
            ]
        );
    }
}
