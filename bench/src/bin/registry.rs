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
//!   too). A warm-up round, then three, each push into an empty registry of its own,
//!   berth's kept compressed blob forgotten before each (so each is a first push), the order
//!   alternating.
//! - pull: berth downloads, verifies and unpacks every layer into its snapshot; skopeo copies
//!   into an OCI layout (download and verify, no unpacking, which favours skopeo); buildah
//!   pulls into its storage (unpacks, like berth).
//!
//! Goals: each berth time ≤ 0.5× skopeo's; peak memory under 100 MiB.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_bench::which;
use berth_test_support::{RegistryConfig, Sandbox, TestRegistry};

/// Lets the previous phase's writes reach the disk first, so each tool starts from the same
/// quiet machine (a pull right after 3 GiB of uploads otherwise pays for their writeback).
/// With `drop`, clean page-cache pages are dropped too (needs root; as I/O benchmarks do).
fn settle(drop: bool) {
    let _ = Command::new("sync").status();
    if drop {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
    }
    std::thread::sleep(Duration::from_secs(1));
}

/// Runs `c` to completion; returns its wall time and its peak resident set (KiB). The child
/// is reaped by `wait4`, which gives its own rusage (std's `wait` does not). With
/// `BERTH_BENCH_VERBOSE` set, each run's user and system times are printed.
fn measured(c: &mut Command) -> (Duration, u64) {
    measured_after(c, false)
}

/// [`measured`], dropping clean cache pages first when `drop_caches` is set.
#[allow(clippy::zombie_processes)]
fn measured_after(c: &mut Command, drop_caches: bool) -> (Duration, u64) {
    settle(drop_caches);
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
    if !stderr.is_empty() && std::env::var_os("BERTH_BENCH_VERBOSE").is_some() {
        eprintln!("stderr: {stderr}");
    }
    if std::env::var_os("BERTH_BENCH_VERBOSE").is_some() {
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        eprintln!(
            "{:?}: {:.2} s, user {:.2} s, sys {:.2} s",
            c.get_program(),
            took.as_secs_f64(),
            t(usage.ru_utime),
            t(usage.ru_stime)
        );
    }
    (took, usage.ru_maxrss as u64)
}

/// With `BERTH_BENCH_VERBOSE`, how much CPU the registry spent taking a push.
fn busy(registry: &TestRegistry, who: &str) {
    if std::env::var_os("BERTH_BENCH_VERBOSE").is_some() {
        eprintln!(
            "  the registry's CPU time for {who}'s push: {:.2} s",
            registry.cpu_time().as_secs_f64()
        );
    }
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

    // Pushes, 3 of each, berth and skopeo taking turns (the first to go alternates), each
    // into a registry of its own started empty, and berth's kept compressed blob forgotten
    // first, so every berth push compresses again as a first push does. The medians are
    // compared, and each round's ratio is shown.
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
    let mut berth_pushes = Vec::new();
    let mut skopeo_pushes = Vec::new();
    let mut push_rss = 0;
    // The first gigabyte a fresh registry takes after the build costs it far more: the
    // registry's own CPU time for the same push was 6.25 s in the first round against
    // 3.66 s in the next two (skopeo's first: 5.77 s against 4.50 s), whichever tool came
    // first. A warm-up round of both, unmeasured, as hyperfine's --warmup does.
    for round in 0..4 {
        let berth_push = || {
            let _ = std::fs::remove_dir_all(s.store().join("compressed"));
            let own = TestRegistry::start(RegistryConfig::default());
            let dest = format!("{}/w4/berth:1", own.host);
            let pushed = measured(berth_cmd(&s.store()).args(["push", "-q", "w4:1", &dest]));
            busy(&own, "berth");
            pushed
        };
        let skopeo_push = || {
            let own = TestRegistry::start(RegistryConfig::default());
            let pushed = measured(Command::new(&skopeo).args([
                "copy",
                "--dest-tls-verify=false",
                "--dest-compress",
                "--dest-compress-format",
                "gzip",
                &format!("oci-archive:{}", archive.display()),
                &format!("docker://{}/w4/skopeo:1", own.host),
            ]))
            .0;
            busy(&own, "skopeo");
            pushed
        };
        let (b, k) = if round % 2 == 0 {
            let b = berth_push();
            (b, skopeo_push())
        } else {
            let k = skopeo_push();
            (berth_push(), k)
        };
        if round == 0 {
            println!(
                "warm-up pushes (not counted): berth {}, skopeo {}",
                secs(b.0),
                secs(k)
            );
            continue;
        }
        berth_pushes.push(b.0);
        push_rss = push_rss.max(b.1);
        skopeo_pushes.push(k);
    }
    let list = |v: &[Duration]| v.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", ");
    let ratios = |b: &[Duration], k: &[Duration]| {
        b.iter()
            .zip(k)
            .map(|(b, k)| format!("{:.2}", b.as_secs_f64() / k.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "pushes: berth {}; skopeo {}; per round berth/skopeo {}",
        list(&berth_pushes),
        list(&skopeo_pushes),
        ratios(&berth_pushes, &skopeo_pushes)
    );
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let berth_push = median(berth_pushes);
    let skopeo_push = median(skopeo_pushes);
    // The image the pulls below fetch (its compressed blob is kept by now: no compression).
    let pushed = format!("{}/w4/berth:1", reg.host);
    s.ok(&["push", "-q", "w4:1", &pushed]);

    // The registry's own floor: its biggest blob (berth's compressed layer) uploaded in one
    // PUT by curl to a repository that has nothing. docker-registry hashes and writes what
    // it receives on one thread, so no client pushes faster than this.
    let floor = which("curl").map(|curl| {
        // The biggest gzip blob: the layer as pushed (the store also keeps it uncompressed).
        let gzip = |p: &Path| {
            let mut magic = [0u8; 2];
            std::fs::File::open(p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && magic == [0x1f, 0x8b]
        };
        let blob = std::fs::read_dir(s.store().join("blobs/sha256"))
            .unwrap()
            .flatten()
            .filter(|e| gzip(&e.path()))
            .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .expect("the pushed layer's blob");
        let size = blob.metadata().unwrap().len();
        let digest = format!("sha256:{}", blob.file_name().to_string_lossy());
        let empty = TestRegistry::start(RegistryConfig::default());
        let start = Command::new(&curl)
            .args(["-s", "-i", "-X", "POST"])
            .arg(format!("http://{}/v2/w4/floor/blobs/uploads/", empty.host))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&start.stdout);
        let location = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .expect("an upload location");
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", empty.host)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let took = measured(
            Command::new(&curl)
                .args([
                    "-s",
                    "-f",
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/octet-stream",
                ])
                .arg("-T")
                .arg(blob.path())
                .arg(format!("{url}{sep}digest={digest}")),
        )
        .0;
        (took, size)
    });

    // Pulls, each into nothing, berth and skopeo taking turns, 3 of each; the medians are
    // compared (one run on this VM can be off by a second either way). First with the page
    // cache as the build and the pushes left it, then with clean pages dropped before each
    // run: berth writes twice what skopeo does (the blob it keeps, and the unpacked files),
    // and with gigabytes of freshly written pages in the cache each page it writes costs
    // the kernel about three times as much (system time 3 s against 1 s).
    let mut pulls = Vec::new();
    for drop in [false, true] {
        let mut berth_runs = Vec::new();
        let mut skopeo_runs = Vec::new();
        let mut rss_max = 0;
        for i in 0..3 {
            let fresh = s.path().join(format!("fresh-store-{i}"));
            let (took, rss) = measured_after(berth_cmd(&fresh).args(["pull", "-q", &pushed]), drop);
            berth_runs.push(took);
            rss_max = rss_max.max(rss);
            let _ = std::fs::remove_dir_all(&fresh);
            let layout = s.path().join(format!("pulled-layout-{i}"));
            skopeo_runs.push(
                measured_after(
                    Command::new(&skopeo).args([
                        "copy",
                        "--src-tls-verify=false",
                        &format!("docker://{pushed}"),
                        &format!("oci:{}:w4", layout.display()),
                    ]),
                    drop,
                )
                .0,
            );
            let _ = std::fs::remove_dir_all(&layout);
        }
        println!(
            "pulls{}: berth {}; skopeo {}; per round berth/skopeo {}",
            if drop { " (clean caches dropped)" } else { "" },
            list(&berth_runs),
            list(&skopeo_runs),
            ratios(&berth_runs, &skopeo_runs)
        );
        pulls.push((median(berth_runs), median(skopeo_runs), rss_max));
    }
    let (berth_pull, skopeo_pull, pull_rss) = pulls[0];
    let (berth_pull_cold, skopeo_pull_cold, _) = pulls[1];

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
        // To a registry of its own: containers/image keeps a blob-info cache across runs
        // and tools (/var/lib/containers/cache), and on the shared registry it would find
        // skopeo's blob and mount it instead of uploading (a 0.04 s "push").
        let own = TestRegistry::start(RegistryConfig::default());
        let (push, _) = measured(&mut cmd(&[
            "push",
            "--tls-verify=false",
            "--compression-format",
            "gzip",
            &image_id,
            &format!("docker://{}/w4/buildah:1", own.host),
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
    let buildah_cell = |d: Option<Duration>| d.map_or("not installed".to_owned(), secs);
    for (phase, b, k, bd) in [
        (
            "push",
            berth_push,
            skopeo_push,
            buildah_cell(buildah.map(|x| x.0)),
        ),
        (
            "pull",
            berth_pull,
            skopeo_pull,
            buildah_cell(buildah.map(|x| x.1)),
        ),
        (
            "pull, clean caches dropped",
            berth_pull_cold,
            skopeo_pull_cold,
            "-".to_owned(),
        ),
    ] {
        println!(
            "| {phase} | {} | {} | {:.2} | {bd} |",
            secs(b),
            secs(k),
            b.as_secs_f64() / k.as_secs_f64(),
        );
    }
    match floor {
        Some((f, size)) => println!(
            "registry floor: one PUT of the {:.2} GiB layer blob by curl took {} (0.5x skopeo's push would be {:.2} s)",
            size as f64 / f64::from(1u32 << 30),
            secs(f),
            skopeo_push.as_secs_f64() / 2.0
        ),
        None => println!("registry floor: curl is not installed, skipped"),
    }
    println!(
        "berth peak memory: push {:.1} MiB, pull {:.1} MiB (goal < 100 MiB)",
        push_rss as f64 / 1024.0,
        pull_rss as f64 / 1024.0
    );
}
