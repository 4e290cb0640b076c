//! The differential corpus, `testdata/compare/`: each case a directory holding a `Dockerfile`
//! and the context it builds, which `bench compare` builds with berth and with BuildKit and
//! the `corpus` test hands to strict readers. Besides the context, a case may hold:
//!
//! - `SETUP`: a POSIX shell script run in a copy of the case before the build, for what git
//!   cannot keep (hard links, symlinks, special modes, empty directories, FIFOs);
//! - `FAILS`: the build must fail, with every builder (one line: why; with `NEWER` too, only
//!   under the current frontend, so Docker 20.10 is not asked);
//! - `NEWER`: the case uses a feature of the current Dockerfile frontend that Docker 20.10's
//!   BuildKit lacks (one line: which); it is compared with `EXPECTED`;
//! - `EXPECTED`: the comparison text of the reviewed result, for a `NEWER` case;
//! - `NOTES`: what the case checks.
//!
//! None of these files is part of the context.
//!
//! Bases: `busybox` (made from Debian's busybox-static, [`crate::busybox_rootfs`]),
//! `busybox-docker` (the same image under Docker schema 2 media types,
//! [`docker_typed_base`]) and `scratch`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of a case that are not its context.
pub const META_FILES: &[&str] = &["SETUP", "FAILS", "NEWER", "EXPECTED", "NOTES"];

/// What a case is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Builds, and BuildKit's image is the reference.
    Builds,
    /// Fails with every builder.
    Fails,
    /// Builds; the reference is the reviewed `EXPECTED`.
    Newer,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub kind: Kind,
}

/// The corpus directory of this checkout.
pub fn dir() -> PathBuf {
    crate::workspace_root().join("testdata/compare")
}

/// The cases, sorted by name; with `wanted` not empty, only those named there.
pub fn cases(wanted: &[String]) -> Vec<Case> {
    let mut cases: Vec<Case> = std::fs::read_dir(dir())
        .expect("testdata/compare")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let kind = if p.join("FAILS").exists() {
                Kind::Fails
            } else if p.join("NEWER").exists() {
                Kind::Newer
            } else {
                Kind::Builds
            };
            Case { name, dir: p, kind }
        })
        .filter(|c| wanted.is_empty() || wanted.contains(&c.name))
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    cases
}

impl Case {
    /// A copy of the case under `work`, its `SETUP` run and its meta files removed: the
    /// context to build.
    pub fn prepare(&self, work: &Path) -> PathBuf {
        std::fs::create_dir_all(work).expect("a work directory");
        let ctx = work.join(&self.name);
        let _ = std::fs::remove_dir_all(&ctx);
        let status = Command::new("cp")
            .arg("-a")
            .arg(&self.dir)
            .arg(&ctx)
            .status()
            .expect("cp");
        assert!(status.success(), "copying case {}", self.name);
        if ctx.join("SETUP").exists() {
            let out = Command::new("sh")
                .arg("-eu")
                .arg("SETUP")
                .current_dir(&ctx)
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "{}/SETUP: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for f in META_FILES {
            let _ = std::fs::remove_file(ctx.join(f));
        }
        ctx
    }

    /// The reviewed comparison text of a `NEWER` case.
    pub fn expected(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("EXPECTED")).ok()
    }
}

/// Makes `busybox-docker`: the local `busybox` pushed to `registry` (`127.0.0.1:PORT`,
/// plain HTTP), copied there by skopeo as Docker schema 2, pulled back and tagged. `berth`
/// makes a berth command with the store set. Returns the reference in the registry, for
/// other clients to pull.
pub fn docker_typed_base(berth: &dyn Fn(&[&str]) -> Command, registry: &str) -> String {
    let run = |mut c: Command| {
        let out = c.output().expect("running");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let staged = format!("{registry}/busybox-docker:oci");
    let reference = format!("{registry}/busybox-docker:latest");
    run(berth(&["push", "busybox", &staged]));
    let mut skopeo = Command::new("skopeo");
    skopeo.args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("docker://{staged}"),
        &format!("docker://{reference}"),
    ]);
    run(skopeo);
    run(berth(&["pull", "-q", &reference]));
    run(berth(&["tag", &reference, "busybox-docker"]));
    reference
}
