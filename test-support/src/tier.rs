//! Test tiers: what a test needs that a machine may not have (root, a tool, a kernel
//! feature, the conformance corpus, a guest kernel), in; whether the test runs, out. A test
//! that cannot run says so, `skipped: needs <what>`, and returns; the line goes to the
//! process's stderr past the test harness's capture, so a run that passes without root
//! still shows what it did not test.
//!
//! Where the thing must be there, an environment variable turns the skip into a failure:
//!
//! | variable | a test fails instead of skipping when it needs |
//! |---|---|
//! | `BERTH_REQUIRE_ROOT=1` | root ([`needs_root`]) |
//! | `BERTH_NO_SKIP=1` | a tool, a kernel feature, the corpus ([`skip`]): anything but root and the guest kernel |
//! | `BERTH_REQUIRE_GUEST=1` | the qemu guest kernel ([`crate::guest::GuestKernel::needed`]) |
//!
//! `scripts/test` sets `BERTH_REQUIRE_GUEST=1`, and as root `BERTH_REQUIRE_ROOT=1` and
//! `BERTH_NO_SKIP=1` (it has installed everything a test needs), so CI never passes a test
//! that did not run. Its rootless pass (`scripts/test-rootless`) sets only `BERTH_NO_SKIP=1`:
//! there a test that needs root says so and skips, and nothing else may.

use std::io::Write;

use crate::Sandbox;

/// Whether the tests run as root (namespaces, mounts, device nodes, ownership).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The root tier: `true` as root; otherwise says `skipped: needs root (<why>)` and gives
/// `false` (the test returns), or fails under `BERTH_REQUIRE_ROOT=1` or `BERTH_NO_SKIP=1`.
#[track_caller]
pub fn needs_root(why: &str) -> bool {
    if is_root() {
        return true;
    }
    skip_unless_required(&["BERTH_REQUIRE_ROOT"], &format!("root ({why})"));
    false
}

/// Whether the tests run as a user whom berth can run rootless with subordinate ids: not
/// root, `newuidmap` installed, and a range for the user in `/etc/subuid` and `/etc/subgid`.
/// CI runs the container suites a second time so (`scripts/test-rootless`).
pub fn rootless_capable() -> bool {
    if is_root() || !std::path::Path::new("/usr/bin/newuidmap").exists() {
        return false;
    }
    let uid = rustix::process::getuid().as_raw().to_string();
    let name = std::env::var("USER").unwrap_or_default();
    ["/etc/subuid", "/etc/subgid"].iter().all(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines()
                .any(|l| l.split(':').next().is_some_and(|w| w == uid || w == name))
        })
    })
}

/// `present`, or else [`skip`]`(what)` and `false`:
/// `if !needs("umoci", umoci.is_ok()) { return; }`.
#[track_caller]
pub fn needs(what: &str, present: bool) -> bool {
    if !present {
        skip(what);
    }
    present
}

/// A test that cannot run here for want of `what` (a tool, a kernel feature, a file) says
/// `skipped: needs <what>` before it returns; under `BERTH_NO_SKIP=1` it fails instead.
#[track_caller]
pub fn skip(what: &str) {
    skip_unless_required(&["BERTH_NO_SKIP"], what);
}

/// Panics when one of `required` is `1`; otherwise says the test is skipped.
#[track_caller]
pub(crate) fn skip_unless_required(required: &[&str], what: &str) {
    if let Some(var) = required
        .iter()
        .find(|v| std::env::var_os(v).is_some_and(|v| v == "1"))
    {
        panic!("{var}=1, but this test would be skipped: it needs {what}");
    }
    // libtest names each test's thread after the test (unless tests run one at a time).
    let thread = std::thread::current();
    let test = thread.name().filter(|n| *n != "main");
    let line = match test {
        Some(name) => format!("skipped: needs {what} [{name}]\n"),
        None => format!("skipped: needs {what}\n"),
    };
    // Not `eprintln!`: the harness captures that, and shows it only when a test fails.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A test file's tier, declared once at its top as a `const`, so the tier reads there and
/// each test asks for a sandbox in one line:
///
/// ```text
/// const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));
///
/// let Some(s) = ROOT.sandbox() else { return };
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Tier {
    bin: &'static str,
    open_to_others: bool,
}

impl Tier {
    /// Tests that run containers (`berth run`, RUN steps): root, and a sandbox with the
    /// busybox image imported as `busybox`.
    pub const fn containers(bin: &'static str) -> Tier {
        Tier {
            bin,
            open_to_others: false,
        }
    }

    /// The same, with each sandbox's directory open to other users
    /// ([`Sandbox::open_to_others`], which skips when that cannot be done).
    pub const fn open_to_others(self) -> Tier {
        Tier {
            open_to_others: true,
            ..self
        }
    }

    /// A sandbox for one test; `None` when berth can run containers neither as root nor
    /// rootless ([`rootless_capable`]), after [`needs_root`] said the test skips (or failed
    /// it, under `BERTH_REQUIRE_ROOT=1`).
    #[track_caller]
    pub fn sandbox(&self) -> Option<Sandbox> {
        if !rootless_capable() && !needs_root("runs containers") {
            return None;
        }
        let s = Sandbox::new(self.bin).with_busybox();
        if self.open_to_others {
            s.open_to_others()
        } else {
            Some(s)
        }
    }
}
