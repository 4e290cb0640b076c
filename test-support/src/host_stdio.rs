//! Whether a container's stdio gives it a way into berth's own descriptors (security review
//! F2): berth runs with stdout appended to a host file holding a secret and stdin from a
//! read-only host file; the container's command tries to truncate the first (reopened,
//! it could as well be read) and to write the second, through `/proc/PID/fd/N` (which reopens whatever the descriptor
//! is). With a relay, its descriptors are pipes of berth's, or `/dev/null`.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::Sandbox;

/// The container's side: what its descriptors are, then the attempts.
pub const SCRIPT: &str = "for n in 0 1 2; do echo \"fd$n=$(readlink /proc/$$/fd/$n)\" >&2; done; \
     echo replaced > /proc/$$/fd/1; \
     echo overwritten > /proc/$$/fd/0; \
     echo done";

/// Runs `berth ARGS sh -c SCRIPT` (ARGS ending in the image or container) with stdout
/// appended to a host file with a secret in it and stdin a read-only host file, and checks
/// that the container could neither truncate nor write them, and that its descriptors
/// were pipes or `/dev/null`.
#[track_caller]
pub fn assert_out_of_reach(s: &Sandbox, args: &[&str]) {
    let log = s.path().join("host-log");
    let input = s.path().join("host-input");
    std::fs::write(&log, "host secret\n").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&input, "read only\n").unwrap();
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o400)).unwrap();
    let stdout = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let stdin = std::fs::File::open(&input).unwrap();
    let out = s
        .cmd()
        .args(args)
        .args(["sh", "-c", SCRIPT])
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("running berth");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.status.success(),
        "berth {args:?}: {:?}\n{err}",
        out.status
    );
    assert!(
        !err.contains("host secret"),
        "the container read the host file:\n{err}"
    );
    assert!(
        logged.starts_with("host secret\n") && logged.ends_with("done\n"),
        "the host file was truncated, or the output is missing: {logged:?}\n{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        "read only\n",
        "the container wrote the read-only host file:\n{err}"
    );
    for n in 0..3 {
        let line = err
            .lines()
            .find_map(|l| l.strip_prefix(&format!("fd{n}=")))
            .unwrap_or_else(|| panic!("no fd{n} line:\n{err}"));
        assert!(
            line.starts_with("pipe:") || line == "/dev/null",
            "the container's fd {n} is {line:?}, not a pipe:\n{err}"
        );
    }
}
