//! Output into a pipe whose reader has gone (`berth images | head -1`): every command ends
//! quietly, with no panic and no error, and with the status of its own work (0 here), and a
//! command that only streams (`logs -f`, `save` to stdout) stops.

use std::os::fd::OwnedFd;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, printed, tier::Tier};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// The write end of a pipe whose read end is already closed.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    write
}

/// Which of the two streams the closed pipe replaces.
#[derive(Clone, Copy, Debug)]
enum Into {
    Stdout,
    Stderr,
}

/// Runs `cmd` with stdout or stderr a pipe whose reader has gone, capturing the other, and
/// gives up after `limit`.
fn run_into_closed_pipe(mut cmd: Command, into: Into, limit: Duration) -> Output {
    match into {
        Into::Stdout => cmd.stdout(closed_pipe()).stderr(Stdio::piped()),
        Into::Stderr => cmd.stdout(Stdio::piped()).stderr(closed_pipe()),
    };
    let mut child = cmd.stdin(Stdio::null()).spawn().expect("running berth");
    let start = Instant::now();
    while child.try_wait().expect("waiting for berth").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} still running after {limit:?} with its reader gone");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("berth's output")
}

/// `berth ARGS` into a closed pipe exits 0 and prints nothing about it.
#[track_caller]
fn ends_quietly(s: &Sandbox, args: &[&str], into: Into) {
    let mut cmd = s.cmd();
    cmd.args(args);
    let out = run_into_closed_pipe(cmd, into, Duration::from_secs(60));
    let shown = printed(&out);
    assert!(
        !shown.contains("panicked") && !shown.contains("Broken pipe"),
        "berth {args:?} into a closed {into:?}:\n{shown}"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "berth {args:?} into a closed {into:?}: {:?}\n{shown}",
        out.status
    );
}

#[test]
fn listing_commands_end_quietly_when_stdout_is_closed() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    s.ok(&["tag", "busybox", "other:1"]);
    for args in [
        &["images"][..],
        &["images", "-q"],
        &["images", "--format", "json"],
        &["inspect", "busybox"],
        &["history", "busybox"],
        &["history", "--no-trunc", "busybox"],
        &["ps", "-a"],
        &["tag", "busybox", "third:1"],
        &["rmi", "third:1"],
        &["system", "df"],
        &["system", "check"],
        &["debug", "context", "."],
    ] {
        ends_quietly(&s, args, Into::Stdout);
    }
    // The work of a command that prints is done all the same.
    assert!(!s.ok(&["images"]).contains("third"));
}

#[test]
fn save_to_a_closed_stdout_stops_quietly() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    ends_quietly(&s, &["save", "busybox"], Into::Stdout);
}

#[test]
fn progress_into_a_closed_stderr_ends_quietly_and_the_work_is_done() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    ends_quietly(&s, &["save", "-o", "b.tar", "busybox"], Into::Stderr);
    ends_quietly(&s, &["load", "-i", "b.tar"], Into::Stderr);
    ends_quietly(&s, &["rmi", "busybox"], Into::Stdout);
    assert!(s.path().join("b.tar").exists());
    assert_eq!(s.ok(&["images", "-q"]), "");
}

#[test]
fn an_error_into_a_closed_stderr_keeps_its_status() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let mut cmd = s.cmd();
    cmd.args(["inspect", "no-such-image"]);
    let out = run_into_closed_pipe(cmd, Into::Stderr, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn a_build_with_its_progress_into_a_closed_stderr_ends_quietly() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "b",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo one; echo two\nCOPY Dockerfile /\n",
        )],
    );
    ends_quietly(
        &s,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "built",
            ctx.to_str().unwrap(),
        ],
        Into::Stderr,
    );
    ends_quietly(
        &s,
        &["build", "-q", "-t", "built2", ctx.to_str().unwrap()],
        Into::Stdout,
    );
    s.ok(&["inspect", "built"]);
    s.ok(&["inspect", "built2"]);
}

#[test]
fn logs_follow_stops_when_its_reader_goes() {
    let Some(s) = ROOT.sandbox() else { return };
    // A container that never stops writing, and one that never writes.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "busybox",
        "sh",
        "-c",
        "while :; do echo x; done",
    ]);
    s.ok(&["run", "-d", "--name", "silent", "busybox", "sleep", "1000"]);
    for args in [
        &["logs", "chatty"][..],
        &["logs", "-f", "chatty"],
        &["logs", "-f", "silent"],
        &["ps"],
    ] {
        ends_quietly(&s, args, Into::Stdout);
    }
    s.ok(&["rm", "-f", "chatty", "silent"]);
}

#[test]
fn another_failure_to_write_stdout_is_an_error() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = s
        .cmd()
        .args(["images"])
        .stdout(full)
        .output()
        .expect("running berth");
    let shown = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("writing to stdout") && !shown.contains("panicked"),
        "{shown}"
    );
}

/// A container writing into berth's stdout whose reader has gone (`berth run IMG yes | head
/// -1`): berth's copy of the container's stdout fails, the pipe to the container is closed,
/// and the container's writer dies of SIGPIPE (PID 1, which the kernel spares that signal,
/// would get EPIPE): the container, then berth, end.
#[test]
fn a_container_writing_into_a_closed_stdout_ends() {
    let Some(s) = ROOT.sandbox() else { return };
    for interactive in [&[][..], &["-i"][..]] {
        let mut cmd = s.cmd();
        cmd.args(["run", "--rm"]).args(interactive).args([
            "busybox",
            "sh",
            "-c",
            "yes; echo yes ended with $? >&2",
        ]);
        let out = run_into_closed_pipe(cmd, Into::Stdout, Duration::from_secs(30));
        let shown = printed(&out);
        assert!(!shown.contains("panicked"), "{shown}");
        assert!(shown.contains("yes ended with 141"), "{shown}");
        assert_eq!(out.status.code(), Some(0), "{interactive:?}: {shown}");
    }
}
