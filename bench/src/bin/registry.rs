//! Push and pull of the W4 image (one RUN writing 1 GiB of random bytes and 0.5 GiB of
//! zeros) against a local `docker-registry` (Debian's, started here on a loopback port), side
//! by side with `skopeo copy` and, where installed, `buildah push`/`buildah pull`, in one run.
//! Prints each time, the berth/skopeo ratio and berth's peak memory.
//!
//! `cargo build --release && cargo run --release -p berth-bench --bin registry` as root.
//!
//! What each side does:
//! - push: berth compresses the uncompressed store layers (gzip, parallel members) while it
//!   uploads; skopeo copies an uncompressed OCI archive of the same image with
//!   `--dest-compress` (gzip on the way); buildah pushes from its own storage (it compresses
//!   too).
//! - pull: berth downloads, verifies and unpacks every layer into its snapshot; skopeo copies
//!   into an OCI layout (download and verify, no unpacking, which favours skopeo); buildah
//!   pulls into its storage (unpacks, like berth).
//!
//! Goals (issue 7): each berth time ≤ 0.5× skopeo's; peak memory under 100 MiB.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_bench::which;
use berth_test_support::{RegistryConfig, Sandbox, TestRegistry};

/// Runs `c` to completion; returns its wall time and its peak resident set (KiB). The child
/// is reaped by `wait4`, which gives its own rusage (std's `wait` does not).
#[allow(clippy::zombie_processes)]
fn measured(c: &mut Command) -> (Duration, u64) {
    let log = tempfile::tempfile().unwrap();
    c.stdout(Stdio::null()).stderr(log.try_clone().unwrap());
    let started = Instant::now();
    let child = c.spawn().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; `usage` is a valid, zeroed rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = started.elapsed();
    assert_eq!(r, pid, "wait4");
    drop(child);
    let mut stderr = String::new();
    let mut log = log;
    let _ = std::io::Seek::rewind(&mut log);
    let _ = std::io::Read::read_to_string(&mut log, &mut stderr);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{c:?} failed: {stderr}"
    );
    (took, usage.ru_maxrss as u64)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let root = std::env::current_dir().unwrap();
    let berth = root.join("target/release/berth");
    assert!(berth.exists(), "build berth first: cargo build --release");
    let Some(skopeo) = which("skopeo") else {
        println!("skopeo is not installed: nothing to compare with (apt-get install skopeo)");
        return;
    };
    let s = Sandbox::new(&berth);
    s.import_busybox("busybox");
    let ctx = s.path().join("w4");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN head -c 1073741824 /dev/urandom > /random && head -c 536870912 /dev/zero > /zeros\n",
    )
    .unwrap();
    println!("building the W4 image (1.5 GiB layer)...");
    s.ok(&["build", "-q", "-t", "w4:1", ctx.to_str().unwrap()]);
    let reg = TestRegistry::start(RegistryConfig::default());
    let berth_cmd = |store: &Path| {
        let mut c = Command::new(&berth);
        c.env("BERTH_ROOT", store);
        c
    };

    // Push.
    let pushed = format!("{}/w4/berth:1", reg.host);
    let (berth_push, push_rss) =
        measured(berth_cmd(&s.store()).args(["push", "-q", "w4:1", &pushed]));
    let archive = s.path().join("w4-plain.tar");
    s.ok(&[
        "save",
        "--format",
        "oci",
        "--compression",
        "none",
        "-o",
        archive.to_str().unwrap(),
        "w4:1",
    ]);
    let (skopeo_push, _) = measured(Command::new(&skopeo).args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-compress",
        "--dest-compress-format",
        "gzip",
        &format!("oci-archive:{}", archive.display()),
        &format!("docker://{}/w4/skopeo:1", reg.host),
    ]));

    // Pull, into a store (and a layout) that has nothing.
    let fresh = s.path().join("fresh-store");
    let (berth_pull, pull_rss) = measured(berth_cmd(&fresh).args(["pull", "-q", &pushed]));
    let layout = s.path().join("pulled-layout");
    let (skopeo_pull, _) = measured(Command::new(&skopeo).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{pushed}"),
        &format!("oci:{}:w4", layout.display()),
    ]));

    // buildah, where installed, in storage of its own.
    let buildah = which("buildah").map(|b| {
        let storage = s.path().join("buildah");
        let cmd = |args: &[&str]| {
            let mut c = Command::new(&b);
            c.arg("--root")
                .arg(storage.join("root"))
                .arg("--runroot")
                .arg(storage.join("run"))
                .args(["--storage-driver", "overlay"])
                .args(args);
            c
        };
        measured(&mut cmd(&[
            "pull",
            "-q",
            &format!("oci-archive:{}", archive.display()),
        ]));
        let image_id = String::from_utf8_lossy(&cmd(&["images", "-q"]).output().unwrap().stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let (push, _) = measured(&mut cmd(&[
            "push",
            "--tls-verify=false",
            &image_id,
            &format!("docker://{}/w4/buildah:1", reg.host),
        ]));
        measured(&mut cmd(&["rmi", "-a", "-f"]));
        let (pull, _) = measured(&mut cmd(&[
            "pull",
            "--tls-verify=false",
            &format!("docker://{pushed}"),
        ]));
        (push, pull)
    });

    println!("| phase | berth | skopeo | berth/skopeo | buildah |");
    println!("|---|---|---|---|---|");
    for (phase, b, k, bd) in [
        ("push", berth_push, skopeo_push, buildah.map(|x| x.0)),
        ("pull", berth_pull, skopeo_pull, buildah.map(|x| x.1)),
    ] {
        println!(
            "| {phase} | {} | {} | {:.2} | {} |",
            secs(b),
            secs(k),
            b.as_secs_f64() / k.as_secs_f64(),
            bd.map_or("not installed".to_owned(), secs)
        );
    }
    println!(
        "berth peak memory: push {:.1} MiB, pull {:.1} MiB (goal < 100 MiB)",
        push_rss as f64 / 1024.0,
        pull_rss as f64 / 1024.0
    );
}
