//! Builds, side by side in one run: berth, BuildKit (Debian's `docker.io`: a `dockerd` this
//! benchmark starts on its own socket and data root, `--bridge=none --iptables=false`, built
//! with `DOCKER_BUILDKIT=1 /usr/bin/docker build --network host`) and buildah (`buildah bud
//! --layers`) where installed; a peer that is absent is skipped and said so.
//!
//! `cargo build --release && cargo run --release -p berth-bench --bin builds [RUNS] [W1,W2,W3,W4]`
//! as root. Workloads (DESIGN.md's goals):
//! - W1: a ~10-step Dockerfile;
//! - W2: an app with a 5,000-file / 200 MB context (manifest COPY, RUN, `COPY . .`, RUN);
//! - W3: four independent ~2 s CPU stages joined at the end;
//! - W4: a RUN writing 1 GiB of incompressible and 0.5 GiB of compressible data.
//!
//! Phases: cold (`--no-cache`), no-op rebuild, one source file changed, `touch` only. Each
//! cell is the median of RUNS (default 3; W4 cold once); the last column is berth/BuildKit.
//! Peak memory is the berth process's maximum RSS over all its runs (`wait4`). For W4 the
//! layer commit (tar + sha256 of 1.5 GiB, from berth's own `committed in` line) is compared
//! with `tar c | sha256sum` over the same upper directory contents.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_bench::{Dockerd, measure, median, w2_app, which, write};

/// Runs a command; returns its wall time, its max RSS in KiB and its output (stdout, then
/// stderr). A failure ends the benchmark.
fn run(c: &mut Command) -> (Duration, u64, String) {
    let m = measure(c).unwrap_or_else(|e| panic!("{e}"));
    (m.time, m.max_rss_kib, m.output)
}

struct Workload {
    name: &'static str,
    dir: PathBuf,
    /// The file the "one file changed" phase edits (none: the phase is skipped).
    change: Option<PathBuf>,
}

/// CPU work of about `secs` seconds in busybox sh, calibrated once.
fn spin_loop(secs: f64) -> String {
    let n = 200_000;
    let t = Instant::now();
    let ok = Command::new("/bin/busybox")
        .args([
            "sh",
            "-c",
            &format!("i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"),
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let per = t.elapsed().as_secs_f64() / n as f64;
    let count = (secs / per) as u64;
    format!("i=0; while [ $i -lt {count} ]; do i=$((i+1)); done")
}

fn workloads(base: &Path, which_ones: &[String]) -> Vec<Workload> {
    let mut out = Vec::new();
    let want = |n: &str| which_ones.is_empty() || which_ones.iter().any(|w| w == n);
    if want("W1") {
        let d = base.join("w1");
        write(
            &d.join("Dockerfile"),
            br#"FROM busybox
ARG VERSION=1.0
ENV APP_HOME=/app VERSION=$VERSION
WORKDIR /app
COPY config/ ./config/
RUN mkdir -p /app/data && echo "$VERSION" > /app/version
COPY src/ ./src/
RUN find /app/src -type f | sort | xargs cat | sha256sum > /app/checksum
LABEL org.example.version=$VERSION
EXPOSE 8080
CMD ["sh", "-c", "cat /app/checksum"]
"#,
        );
        for i in 0..20 {
            write(
                &d.join(format!("src/mod{i}.txt")),
                format!("module {i}\n").repeat(200).as_bytes(),
            );
        }
        write(&d.join("config/app.conf"), b"port=8080\n");
        out.push(Workload {
            name: "W1",
            change: Some(d.join("src/mod7.txt")),
            dir: d,
        });
    }
    if want("W2") {
        let d = base.join("w2");
        let change = w2_app(&d, "busybox");
        out.push(Workload {
            name: "W2",
            change: Some(change),
            dir: d,
        });
    }
    if want("W3") {
        let d = base.join("w3");
        let spin = spin_loop(2.0);
        let mut df = String::new();
        for s in ["a", "b", "c", "d"] {
            df.push_str(&format!(
                "FROM busybox AS {s}\nRUN {spin} && echo {s} > /{s}\n\n"
            ));
        }
        df.push_str("FROM busybox\nCOPY --from=a /a /\nCOPY --from=b /b /\nCOPY --from=c /c /\nCOPY --from=d /d /\n");
        write(&d.join("Dockerfile"), df.as_bytes());
        // One stage alone, to measure "the sum of its stages".
        write(
            &d.join("one/Dockerfile"),
            format!("FROM busybox\nRUN {spin} && echo a > /a\n").as_bytes(),
        );
        out.push(Workload {
            name: "W3",
            change: None,
            dir: d,
        });
    }
    if want("W4") {
        let d = base.join("w4");
        write(&d.join("Dockerfile"), b"FROM busybox\nRUN head -c 1073741824 /dev/urandom > /random.bin && head -c 536870912 /dev/zero > /zeros.bin\n");
        out.push(Workload {
            name: "W4",
            change: None,
            dir: d,
        });
    }
    out
}

/// A builder under test.
trait Builder {
    fn name(&self) -> &str;
    fn build(&self, w: &Workload, dir: &Path, no_cache: bool) -> (Duration, u64, String);
}

struct Berth {
    /// `berth`, or `baseline` for the binary of `BERTH_BENCH_BASELINE`.
    name: &'static str,
    bin: PathBuf,
    store: PathBuf,
}

impl Builder for Berth {
    fn name(&self) -> &str {
        self.name
    }
    fn build(&self, w: &Workload, dir: &Path, no_cache: bool) -> (Duration, u64, String) {
        let mut c = Command::new(&self.bin);
        c.env("BERTH_ROOT", &self.store)
            .args(["build", "--progress", "plain"]);
        build_as(c, w, dir, no_cache)
    }
}

/// berth run as an unprivileged user (`BERTH_BENCH_ROOTLESS=USER`, a user with ranges in
/// /etc/subuid): rootless, with a store of its own. The command is started with the user's
/// ids directly (no PAM session), so its time is berth's.
struct Rootless {
    bin: PathBuf,
    store: PathBuf,
    uid: u32,
    gid: u32,
}

impl Rootless {
    fn command(&self) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(&self.bin);
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("HOME", self.store.parent().unwrap())
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("XDG_RUNTIME_DIR", self.store.parent().unwrap().join("run"))
            .env("BERTH_ROOT", &self.store);
        c
    }
}

/// The pause process that held the user's namespace for the benchmark's commands, stopped.
impl Drop for Rootless {
    fn drop(&mut self) {
        let _ = self.command().args(["system", "migrate"]).output();
    }
}

impl Builder for Rootless {
    fn name(&self) -> &str {
        "rootless"
    }
    fn build(&self, w: &Workload, dir: &Path, no_cache: bool) -> (Duration, u64, String) {
        let mut c = self.command();
        c.args(["build", "--progress", "plain"]);
        build_as(c, w, dir, no_cache)
    }
}

/// The user `name`'s uid and gid, from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
}

struct Docker {
    bin: PathBuf,
    host: String,
}

impl Builder for Docker {
    fn name(&self) -> &str {
        "BuildKit"
    }
    fn build(&self, w: &Workload, dir: &Path, no_cache: bool) -> (Duration, u64, String) {
        let mut c = Command::new(&self.bin);
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "1")
            .args(["build", "--network", "host", "--progress", "plain"]);
        build_as(c, w, dir, no_cache)
    }
}

struct Buildah {
    bin: PathBuf,
    root: PathBuf,
}

impl Builder for Buildah {
    fn name(&self) -> &str {
        "buildah"
    }
    fn build(&self, w: &Workload, dir: &Path, no_cache: bool) -> (Duration, u64, String) {
        let mut c = Command::new(&self.bin);
        c.args(["--root"])
            .arg(self.root.join("root"))
            .args(["--runroot"])
            .arg(self.root.join("run"))
            .args([
                "--storage-driver",
                "overlay",
                "bud",
                "--layers",
                "--network",
                "host",
                "--isolation",
                "chroot",
            ]);
        build_as(c, w, dir, no_cache)
    }
}

/// A builder's build command `c`, finished the same way for all: the workload's tag, the
/// cache flag, the context; run and measured.
fn build_as(mut c: Command, w: &Workload, dir: &Path, no_cache: bool) -> (Duration, u64, String) {
    c.args(["-t", &format!("bench-{}", w.name.to_lowercase())]);
    if no_cache {
        c.arg("--no-cache");
    }
    c.arg(dir);
    run(&mut c)
}

fn touch(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let which_ones: Vec<String> = args
        .get(2)
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let root = std::env::current_dir().unwrap();
    let bin = root.join("target/release/berth");
    assert!(bin.exists(), "build berth first: cargo build --release");
    let work = std::env::temp_dir().join(format!("berth-bench-build-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    // The busybox base for every builder.
    let rootfs = work.join("rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    let import = |bin: &Path, store: &Path| {
        run(Command::new(bin)
            .env("BERTH_ROOT", store)
            .args(["import", "-c", "CMD [\"sh\"]"])
            .arg(&rootfs)
            .arg("busybox"));
    };
    let store = work.join("store");
    import(&bin, &store);
    let archive = work.join("busybox-docker.tar");
    run(Command::new(&bin)
        .env("BERTH_ROOT", &store)
        .args(["save", "--format", "docker", "-o"])
        .arg(&archive)
        .arg("busybox"));
    let mut builders: Vec<Box<dyn Builder>> = vec![Box::new(Berth {
        name: "berth",
        bin: bin.clone(),
        store: store.clone(),
    })];
    // Another berth binary (an earlier commit's) measured in the same run, with a store of
    // its own: a change's effect on build times, against the same machine's noise.
    if let Some(baseline) = std::env::var_os("BERTH_BENCH_BASELINE").map(PathBuf::from) {
        let store = work.join("baseline-store");
        import(&baseline, &store);
        builders.push(Box::new(Berth {
            name: "baseline",
            bin: baseline,
            store,
        }));
    }
    let _dockerd = match (
        which("docker").filter(|p| p.starts_with("/usr/bin")),
        Dockerd::start(&work),
    ) {
        (Some(docker), Some((d, host))) => {
            run(Command::new(&docker)
                .env("DOCKER_HOST", &host)
                .arg("load")
                .arg("-i")
                .arg(&archive));
            builders.push(Box::new(Docker { bin: docker, host }));
            Some(d)
        }
        _ => {
            println!("BuildKit: docker.io is not installed (or dockerd did not start): skipped");
            None
        }
    };
    match which("buildah") {
        Some(b) => {
            let broot = work.join("buildah");
            run(Command::new(&b)
                .arg("--root")
                .arg(broot.join("root"))
                .arg("--runroot")
                .arg(broot.join("run"))
                .args(["--storage-driver", "overlay", "pull"])
                .arg(format!("docker-archive:{}", archive.display())));
            // Stored as localhost/busybox, which `FROM busybox` finds.
            builders.push(Box::new(Buildah {
                bin: b,
                root: broot,
            }));
        }
        None => println!("buildah: not installed: skipped"),
    }
    // Rootless berth, last: its cells against root berth's.
    let rootless = std::env::var("BERTH_BENCH_ROOTLESS").ok().map(|user| {
        let (uid, gid) = user_ids(&user).unwrap_or_else(|| panic!("no user {user}"));
        let home = work.join("rootless");
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        // The user's runtime directory, for the pause process's pidfile.
        let run_dir = home.join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::set_permissions(
            &run_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::chown(&run_dir, Some(uid), Some(gid)).unwrap();
        let r = Rootless {
            bin: bin.clone(),
            store: home.join("store"),
            uid,
            gid,
        };
        // berth wrote the archive for root alone (0600).
        let shared = home.join("busybox-docker.tar");
        std::fs::copy(&archive, &shared).unwrap();
        std::os::unix::fs::chown(&shared, Some(uid), Some(gid)).unwrap();
        run(r.command().arg("load").arg("-i").arg(&shared));
        r
    });
    let rootless_at = builders.len();
    let rootless_again = rootless.as_ref().map(|r| Rootless {
        bin: r.bin.clone(),
        store: r.store.clone(),
        ..*r
    });
    if let Some(r) = rootless {
        builders.push(Box::new(r));
    }
    let loads = workloads(&work.join("ctx"), &which_ones);
    println!(
        "\nmedians of {runs} runs in rounds (W4 cold: 1); ratio = berth / BuildKit; range: min–max per builder\n"
    );
    println!(
        "{:<4} {:<8} {}",
        "",
        "phase",
        builders
            .iter()
            .map(|b| format!("{:>10}", b.name()))
            .collect::<String>()
            + "      ratio"
    );
    let mut peak = 0u64;
    let mut commit_line = String::new();
    for w in &loads {
        let phases: Vec<&str> = match w.change {
            Some(_) => vec!["cold", "no-op", "change", "touch"],
            None => vec!["cold", "no-op"],
        };
        for phase in phases {
            let n = if w.name == "W4" && phase == "cold" {
                1
            } else {
                runs
            };
            if phase != "cold" {
                for b in &builders {
                    b.build(w, &w.dir, false); // warm the cache
                }
            }
            // Rounds: each changes the context once, then every builder builds, the first
            // one rotating, so no builder always runs first (after the change) or last.
            let mut times = vec![Vec::new(); builders.len()];
            for i in 0..n {
                match phase {
                    "change" => {
                        let p = w.change.as_ref().unwrap();
                        let mut text = std::fs::read(p).unwrap();
                        text.extend_from_slice(format!("\nchange {i}\n").as_bytes());
                        std::fs::write(p, text).unwrap();
                    }
                    "touch" => touch(w.change.as_ref().unwrap()),
                    _ => {}
                }
                for k in 0..builders.len() {
                    let j = (i + k) % builders.len();
                    let b = &builders[j];
                    let (t, rss, err) = b.build(w, &w.dir, phase == "cold");
                    if b.name() == "berth" {
                        peak = peak.max(rss);
                        if w.name == "W4" && phase == "cold" {
                            commit_line = err
                                .lines()
                                .filter(|l| l.contains("committed in"))
                                .collect::<Vec<_>>()
                                .join("\n");
                        }
                    }
                    times[j].push(t);
                }
            }
            let spread: Vec<(Duration, Duration)> = times
                .iter()
                .map(|t| (*t.iter().min().unwrap(), *t.iter().max().unwrap()))
                .collect();
            let cells: Vec<Duration> = times.into_iter().map(median).collect();
            let mut ratio = if cells.len() > 1 && builders[1].name() == "BuildKit" {
                format!("{:>10.2}", cells[0].as_secs_f64() / cells[1].as_secs_f64())
            } else {
                "         -".into()
            };
            if rootless_at < cells.len() {
                ratio.push_str(&format!(
                    "  rootless÷root {:.2}",
                    cells[rootless_at].as_secs_f64() / cells[0].as_secs_f64()
                ));
            }
            println!(
                "{:<4} {:<8} {}{ratio}   range {}",
                w.name,
                phase,
                cells
                    .iter()
                    .map(|c| format!("{:>9.3}s", c.as_secs_f64()))
                    .collect::<String>(),
                spread
                    .iter()
                    .map(|(lo, hi)| format!("{:.3}–{:.3}", lo.as_secs_f64(), hi.as_secs_f64()))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        if w.name == "W3" {
            let one = w.dir.join("one");
            let (t, _, _) = builders[0].build(w, &one, true);
            println!(
                "W3   one stage alone (berth, cold): {:.2}s; the sum of four: {:.2}s",
                t.as_secs_f64(),
                4.0 * t.as_secs_f64()
            );
        }
    }
    // The same image rootless and as root: each workload once more with a fixed
    // SOURCE_DATE_EPOCH, in both stores.
    if let Some(r) = rootless_again {
        println!();
        for w in &loads {
            let id = |mut c: Command| {
                c.env("SOURCE_DATE_EPOCH", "1700000000")
                    .args(["build", "-q", "--no-cache"])
                    .arg(&w.dir);
                let (_, _, out) = run(&mut c);
                out.lines().next().unwrap_or_default().trim().to_owned()
            };
            let mut as_root = Command::new(&bin);
            as_root.env("BERTH_ROOT", &store);
            let (root_id, rootless_id) = (id(as_root), id(r.command()));
            println!(
                "{} digests, rootless and root: {} ({root_id}, {rootless_id})",
                w.name,
                if root_id == rootless_id {
                    "equal"
                } else {
                    "DIFFER"
                }
            );
        }
    }
    println!(
        "\npeak memory of berth (max RSS over all runs): {:.1} MiB",
        peak as f64 / 1024.0
    );
    if !commit_line.is_empty() {
        println!("W4 berth commit: {commit_line}");
        // The reference: tar c | sha256sum over the same files.
        let data = work.join("w4-data");
        std::fs::create_dir_all(&data).unwrap();
        let status = Command::new("sh").arg("-c").arg(format!("head -c 1073741824 /dev/urandom > {0}/random.bin && head -c 536870912 /dev/zero > {0}/zeros.bin && sync", data.display())).status().unwrap();
        assert!(status.success());
        let t = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("tar -C {} -c . | sha256sum", data.display()))
            .output()
            .unwrap();
        assert!(out.status.success());
        println!(
            "W4 reference: tar c | sha256sum of the same 1.5 GiB: {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    drop(_dockerd);
    let _ = std::fs::remove_dir_all(&work);
}
