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

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// Annotation asking for `--init`.
pub const ANNOTATION_INIT: &str = "berth.init";

/// PID 1's life: runs `program` (argv, env as given) as its child and returns the exit
/// code to exit with. Called in the container's PID 1 after all setup, in place of exec.
pub fn run(program: &std::ffi::CStr, argv: &[std::ffi::CString], env: &[std::ffi::CString]) -> i32 {
    let _ = nix::sys::prctl::set_dumpable(false);
    let mut set = SigSet::empty();
    for s in crate::init::FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return crate::init::EXIT_SETUP;
    }
    // SAFETY: PID 1 is single-threaded (the container's init child, forked from the
    // single-threaded `berth __init`).
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            let err = nix::unistd::execve(program, argv, env)
                .expect_err("execve returns only on failure");
            eprintln!("berth: exec {program:?}: {}", err.desc());
            std::process::exit(if err == nix::Error::ENOENT {
                crate::init::EXIT_NOT_FOUND
            } else {
                crate::init::EXIT_NOT_EXECUTABLE
            });
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(_) => return crate::init::EXIT_SETUP,
    };
    loop {
        let Ok(signal) = set.wait() else { continue };
        if signal != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, signal);
            continue;
        }
        if let Some(code) = reap(child) {
            return code;
        }
    }
}

/// Reaps every exited process; the command's exit code once it has ended.
fn reap(command: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) if pid == command => code = Some(c),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                code = Some(128 + sig as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => continue,
        }
    }
}
