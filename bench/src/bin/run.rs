//! Container start-up: `berth run --rm IMG true`, 50 times, beside `runc run` on a bundle of
//! the same rootfs (and `podman run --rm` where installed), in the same run; medians and the
//! berth/runc ratio. `cargo run --release -p berth-bench --bin run [RUNS]` as root, after
//! `cargo build --release` (it runs `target/release/berth`). Goal: at most half of runc's time.
//!
//! berth and runc alternate, one run each in turn after three warm-up runs, so that the VM's
//! drifts (other guests, page-cache state) fall on both; the ratio reported is the median of
//! the per-pair ratios, with their interquartile range.
//!
//! Both sides start a fresh process tree with new namespaces over the same busybox rootfs:
//! berth mounts an overlay over its snapshot; runc is given the directory itself (no overlay),
//! which favours runc.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ok(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One timed run of `c`, which must succeed.
fn time_once(mut c: Command) -> Duration {
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let t = Instant::now();
    let out = c.output().unwrap();
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "{c:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn timed(runs: usize, mut make: impl FnMut(usize) -> Command) -> Duration {
    median((0..runs).map(|i| time_once(make(i))).collect())
}

fn rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is needed");
    for applet in ["sh", "true"] {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let root = std::env::current_dir().unwrap();
    let berth = root.join("target/release/berth");
    assert!(berth.exists(), "build berth first: cargo build --release");
    let work = tempdir();
    rootfs(&work.join("rootfs"));
    let store = work.join("store");
    ok(Command::new(&berth).env("BERTH_ROOT", &store).args([
        "import",
        work.join("rootfs").to_str().unwrap(),
        "bench",
    ]));
    let berth_run = || {
        let mut c = Command::new(&berth);
        c.env("BERTH_ROOT", &store)
            .args(["run", "--rm", "bench", "true"]);
        c
    };
    let runc = which("runc").map(|runc| {
        let bundle = work.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        rootfs(&bundle.join("rootfs"));
        ok(Command::new(&runc).current_dir(&bundle).args(["spec"]));
        let spec = std::fs::read_to_string(bundle.join("config.json")).unwrap();
        let spec = spec
            .replace("\"terminal\": true", "\"terminal\": false")
            .replace("\"sh\"", "\"true\"")
            .replace("\"readonly\": true", "\"readonly\": false");
        std::fs::write(bundle.join("config.json"), spec).unwrap();
        move |i: usize| {
            let mut c = Command::new(&runc);
            c.current_dir(&bundle)
                .args(["run", &format!("berth-bench-{}-{i}", std::process::id())]);
            c
        }
    });
    const WARM_UP: usize = 3;
    let (mut berth_times, mut runc_times, mut ratios) = (vec![], vec![], vec![]);
    for i in 0..WARM_UP + runs {
        let b = time_once(berth_run());
        let r = runc.as_ref().map(|make| time_once(make(i)));
        if i < WARM_UP {
            continue;
        }
        berth_times.push(b);
        if let Some(r) = r {
            runc_times.push(r);
            ratios.push(b.as_secs_f64() / r.as_secs_f64());
        }
    }
    let b = median(berth_times);
    println!("run start-to-exit, {runs} runs each, alternating, medians");
    println!("berth run --rm      {:>8.1} ms", b.as_secs_f64() * 1e3);
    if runc.is_some() {
        let r = median(runc_times);
        println!("runc run            {:>8.1} ms", r.as_secs_f64() * 1e3);
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        println!(
            "ratio berth/runc    {ratio:>8.2}   (pairs' median; quartiles {:.2}–{:.2})   goal ≤ 0.5: {}",
            ratios[ratios.len() / 4],
            ratios[ratios.len() * 3 / 4],
            if ratio <= 0.5 { "met" } else { "NOT met" }
        );
    } else {
        println!("runc: not installed, skipped (apt-get install runc)");
    }
    match which("podman") {
        Some(podman) => {
            ok(Command::new(&podman)
                .args([
                    "import",
                    work.join("rootfs").to_str().unwrap(),
                    "localhost/berth-bench",
                ])
                .stdin(Stdio::null()));
            let p = timed(runs.min(20), |_| {
                let mut c = Command::new(&podman);
                c.args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "localhost/berth-bench",
                    "true",
                ]);
                c
            });
            println!(
                "podman run --rm     {:>8.1} ms   ratio berth/podman {:.2}",
                p.as_secs_f64() * 1e3,
                b.as_secs_f64() / p.as_secs_f64()
            );
        }
        None => println!("podman: not installed, skipped"),
    }
    let _ = std::fs::remove_dir_all(&work);
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("berth-bench-run-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
