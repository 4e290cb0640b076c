//! The CI scenario of a registry build cache: runner 1 builds the W2 app (a 5,000-file /
//! 200 MB context: a manifest COPY, a RUN, `COPY . .`, a RUN) and exports its cache to a
//! registry; runner 2, a fresh machine with an empty store, builds with that cache. Side by
//! side in one run: berth, BuildKit (Debian's `docker.io`, each runner a `dockerd` of its own)
//! and buildah (`--cache-from`/`--cache-to`, where installed); a peer that is absent or fails
//! is skipped and said so.
//!
//! `cargo build --release && cargo run --release -p berth-bench --bin ci_cache [RUNS]` as root
//! (default RUNS=3). One registry (Debian's `docker-registry` on a loopback port) serves
//! everything, busybox included: berth makes it and pushes it as `REG/busybox`, the app's
//! `FROM`.
//!
//! Runner 1 (one store or daemon per tool, kept for the whole run) builds and exports:
//! - berth: `berth build -t REG/w2:berth --push --cache-to type=registry,ref=REG/w2-cache:berth,mode=max`;
//! - BuildKit: `docker build --build-arg BUILDKIT_INLINE_CACHE=1 -t REG/w2:bk`, then `docker push`;
//! - buildah: `buildah bud --layers --cache-to REG/w2-bcache --tls-verify=false -t w2`.
//!
//! Runner 2 is fresh for every measured build (a new `BERTH_ROOT`; a new `dockerd` with an
//! empty data root, started before and stopped after the timed `docker build`; new buildah
//! roots) and exports nothing (should a fresh `dockerd` not start, runner 2 becomes one
//! daemon emptied by `docker system prune -af` and `docker builder prune -af` before each
//! build, and the output says so):
//! - `berth`: `berth build -t w2 --cache-from type=registry,ref=REG/w2-cache:berth` (a local
//!   image, as BuildKit's docker driver makes);
//! - `berth push-only`: `berth build --cache-from ... -o type=registry,name=REG/w2:out` (the
//!   CI job that only pushes);
//! - `BuildKit`: `docker build --cache-from REG/w2:bk --build-arg BUILDKIT_INLINE_CACHE=1 -t w2`;
//! - `buildah`: `buildah bud --layers --cache-from REG/w2-bcache --tls-verify=false -t w2`.
//!
//! Each round edits one source file (`src/d7/f7.bin`), then, for each tool in turn (the first
//! rotating by round): `change` (runner 2 builds the edited context with the cache of the
//! build before the edit), runner 1 builds the edited context and exports, `no-change`
//! (runner 2 builds the same context again). Before each timed build the disk is synced.
//!
//! On this machine, files deleted in the last minutes make creating new ones slow (berth's
//! W2 `COPY . .` took 0.9–2.6 s on a quiet machine, 3.0–3.9 s right after a runner's store
//! was deleted), which a fresh runner does not pay. So runner 2's directories (stores, data
//! roots) are deleted only at the end of the run, and buildah, whose builds remove their
//! working containers (thousands of files after `COPY . .`), has its rounds after berth's
//! and BuildKit's (each block's runners 1 export first): in one rotation of all three, the
//! tool that came after buildah was the slower one.
//!
//! Measured: runner 2's wall time and the bytes the registry served it (`GET` of manifests
//! and blobs, from the registry's access log). For berth and BuildKit the bytes are also set
//! against what the build needs, from the image runner 1 pushed (its layers, and its
//! config's history for which layer `COPY . .` made): after a change, the layers below
//! `COPY . .` (the RUN after it needs them; the layers of the two steps that run are made
//! again); with nothing changed, every layer for a local image and none for a push-only
//! build (the registry already holds them). `unneeded` is what was downloaded of the image's
//! other layers.
//!
//! With `BERTH_BENCH_VERBOSE` set, each runner-2 build's output and downloads go to stderr.
//!
//! Printed per phase: each runner's median time with its min–max, median MB downloaded, the
//! steps run/cached (from berth's summary line, BuildKit's `CACHED` steps, buildah's cache
//! lines) and the ratio to BuildKit's time. Goals: berth ≤ 0.5× BuildKit's time; berth
//! downloads nothing the steps that run and the output do not need.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_bench::{Dockerd, Measured, measure, median, w2_app, which};
use berth_test_support::{RegistryConfig, TestRegistry};

/// The phases of a round, in order.
const PHASES: [&str; 2] = ["change", "no-change"];

/// What every runner shares: the registry, the context, the scratch directory.
struct Env {
    reg: TestRegistry,
    ctx: PathBuf,
    work: PathBuf,
}

impl Env {
    /// `REG/NAME`.
    fn at(&self, name: &str) -> String {
        format!("{}/{name}", self.reg.host)
    }
}

/// One tool: its runner 1, kept for the whole run, and how a fresh runner 2 builds.
trait Tool {
    fn name(&self) -> &'static str;
    /// The rows runner 2 gives (one per kind of build).
    fn rows(&self) -> &'static [&'static str];
    /// Runner 1 builds the context and leaves its cache in the registry.
    fn seed(&mut self, env: &Env) -> Result<(), String>;
    /// A fresh runner 2 under `scratch` for `row`: the build command to time, and what must
    /// live until it ends (a daemon).
    fn fresh(
        &mut self,
        env: &Env,
        row: usize,
        scratch: &Path,
    ) -> Result<(Command, Option<Dockerd>), String>;
    /// `(steps run, steps cached)` from a build's output.
    fn steps(&self, output: &str) -> Option<(usize, usize)>;
    /// Whether its rounds run apart, after the other tools': its builds delete thousands of
    /// files, which slows the file creation of whatever runs next on this machine.
    fn own_rounds(&self) -> bool {
        false
    }
    /// The repository and tag of the image runner 1 pushed, when it pushes one; and whether
    /// `row` keeps a local image (so needs every layer).
    fn image(&self, row: usize) -> Option<(&'static str, &'static str, bool)>;
}

struct Berth {
    bin: PathBuf,
    seed_store: PathBuf,
}

impl Berth {
    fn cmd(&self, store: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("BERTH_ROOT", store)
            .args(["build", "--progress", "plain"]);
        c
    }
}

impl Tool for Berth {
    fn name(&self) -> &'static str {
        "berth"
    }
    fn rows(&self) -> &'static [&'static str] {
        &["berth", "berth push-only"]
    }
    fn seed(&mut self, env: &Env) -> Result<(), String> {
        let mut c = self.cmd(&self.seed_store);
        c.args(["-t", &env.at("w2:berth"), "--push", "--cache-to"])
            .arg(format!(
                "type=registry,ref={},mode=max",
                env.at("w2-cache:berth")
            ))
            .arg(&env.ctx);
        measure(&mut c).map(drop)
    }
    fn fresh(
        &mut self,
        env: &Env,
        row: usize,
        scratch: &Path,
    ) -> Result<(Command, Option<Dockerd>), String> {
        let mut c = self.cmd(&scratch.join("store"));
        c.arg("--cache-from")
            .arg(format!("type=registry,ref={}", env.at("w2-cache:berth")));
        match row {
            0 => c.args(["-t", "w2"]),
            _ => c
                .arg("-o")
                .arg(format!("type=registry,name={}", env.at("w2:out"))),
        };
        c.arg(&env.ctx);
        Ok((c, None))
    }
    fn steps(&self, output: &str) -> Option<(usize, usize)> {
        // `built sha256:... in 1.2s (N steps run, M cached)`
        let line = output.lines().find(|l| l.starts_with("built "))?;
        let inner = line.rsplit_once('(')?.1;
        let n: Vec<usize> = inner
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse().ok())
            .collect();
        Some((*n.first()?, *n.get(1)?))
    }
    fn image(&self, row: usize) -> Option<(&'static str, &'static str, bool)> {
        Some(("w2", "berth", row == 0))
    }
}

struct BuildKit {
    docker: PathBuf,
    /// Runner 1's daemon and its `DOCKER_HOST`.
    seed: (Dockerd, String),
    /// When a fresh daemon per build cannot be started: one daemon for runner 2, emptied by
    /// `docker system prune -af` and `docker builder prune -af` before each build.
    pruned: Option<(Dockerd, String)>,
}

impl BuildKit {
    fn cmd(&self, host: &str) -> Command {
        let mut c = Command::new(&self.docker);
        c.env("DOCKER_HOST", host).env("DOCKER_BUILDKIT", "1");
        c
    }
    fn build(&self, host: &str) -> Command {
        let mut c = self.cmd(host);
        c.args([
            "build",
            "--network",
            "host",
            "--progress",
            "plain",
            "--build-arg",
            "BUILDKIT_INLINE_CACHE=1",
        ]);
        c
    }
}

impl Tool for BuildKit {
    fn name(&self) -> &'static str {
        "BuildKit"
    }
    fn rows(&self) -> &'static [&'static str] {
        &["BuildKit"]
    }
    fn seed(&mut self, env: &Env) -> Result<(), String> {
        let host = &self.seed.1;
        let image = env.at("w2:bk");
        measure(self.build(host).args(["-t", &image]).arg(&env.ctx))?;
        measure(self.cmd(host).args(["push", &image])).map(drop)
    }
    fn fresh(
        &mut self,
        env: &Env,
        _row: usize,
        scratch: &Path,
    ) -> Result<(Command, Option<Dockerd>), String> {
        let mut daemon = None;
        let host = match &self.pruned {
            None => match Dockerd::start(scratch) {
                Some((d, host)) => {
                    daemon = Some(d);
                    host
                }
                None => {
                    println!(
                        "note: BuildKit: a fresh dockerd did not start (see {}); runner 2 is from now on one dockerd emptied by `docker system prune -af` and `docker builder prune -af` before each build",
                        scratch.join("dockerd.err").display()
                    );
                    let dir = env.work.join("bk-runner2");
                    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                    let d = Dockerd::start(&dir).ok_or("dockerd did not start")?;
                    self.pruned = Some(d);
                    self.pruned.as_ref().unwrap().1.clone()
                }
            },
            Some((_, host)) => host.clone(),
        };
        if self.pruned.is_some() {
            measure(self.cmd(&host).args(["system", "prune", "-af"]))?;
            measure(self.cmd(&host).args(["builder", "prune", "-af"]))?;
        }
        let mut c = self.build(&host);
        c.args(["--cache-from", &env.at("w2:bk"), "-t", "w2"])
            .arg(&env.ctx);
        Ok((c, daemon))
    }
    fn steps(&self, output: &str) -> Option<(usize, usize)> {
        // Plain progress: `#5 [2/5] WORKDIR /app` opens a step, `#5 CACHED` marks it cached.
        let mut steps = BTreeSet::new();
        let mut cached = HashSet::new();
        for l in output.lines() {
            let Some((id, rest)) = l.split_once(' ') else {
                continue;
            };
            if !id.starts_with('#') {
                continue;
            }
            if rest == "CACHED" {
                cached.insert(id);
            } else if let Some((bracket, what)) =
                rest.strip_prefix('[').and_then(|r| r.split_once("] "))
            {
                let counted = bracket
                    .rsplit(' ')
                    .next()
                    .and_then(|k| k.split_once('/'))
                    .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
                if counted && !what.starts_with("FROM ") {
                    steps.insert(id);
                }
            }
        }
        let hit = steps.iter().filter(|s| cached.contains(*s)).count();
        (!steps.is_empty()).then(|| (steps.len() - hit, hit))
    }
    fn image(&self, _row: usize) -> Option<(&'static str, &'static str, bool)> {
        Some(("w2", "bk", true))
    }
}

struct Buildah {
    bin: PathBuf,
    seed_root: PathBuf,
}

impl Buildah {
    fn bud(&self, root: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(root.join("root"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args([
                "--storage-driver",
                "overlay",
                "bud",
                "--layers",
                "--network",
                "host",
                "--isolation",
                "chroot",
                "--tls-verify=false",
            ]);
        c
    }
}

impl Tool for Buildah {
    fn name(&self) -> &'static str {
        "buildah"
    }
    fn rows(&self) -> &'static [&'static str] {
        &["buildah"]
    }
    fn seed(&mut self, env: &Env) -> Result<(), String> {
        let mut c = self.bud(&self.seed_root);
        c.args(["--cache-to", &env.at("w2-bcache"), "-t", "w2"])
            .arg(&env.ctx);
        measure(&mut c).map(drop)
    }
    fn fresh(
        &mut self,
        env: &Env,
        _row: usize,
        scratch: &Path,
    ) -> Result<(Command, Option<Dockerd>), String> {
        let mut c = self.bud(scratch);
        c.args(["--cache-from", &env.at("w2-bcache"), "-t", "w2"])
            .arg(&env.ctx);
        Ok((c, None))
    }
    fn steps(&self, output: &str) -> Option<(usize, usize)> {
        // `STEP 2/6: WORKDIR /app` opens a step; a hit, local or pulled from the
        // --cache-from repository (`--> Cache pulled from remote ...` first), prints
        // `--> Using cache ID`.
        let (mut steps, mut hit) = (0, 0);
        for l in output.lines() {
            if l.starts_with("STEP ") && !l.contains(": FROM ") {
                steps += 1;
            } else if l.starts_with("--> Using cache") {
                hit += 1;
            }
        }
        (steps > 0).then(|| (steps - hit, hit))
    }
    fn image(&self, _row: usize) -> Option<(&'static str, &'static str, bool)> {
        None
    }
    fn own_rounds(&self) -> bool {
        // Each build removes its working containers, thousands of files after `COPY . .`.
        true
    }
}

/// One timed runner-2 build.
struct Sample {
    time: Duration,
    /// Bytes of manifests and blobs the registry served during the build.
    bytes: u64,
    steps: Option<(usize, usize)>,
    /// The layers the build needed, and what it downloaded of the image's other layers.
    needed: Option<(u64, u64)>,
}

/// A layer of an image in the registry: digest, size, and the history line that made it.
struct Layer {
    digest: String,
    size: u64,
    created_by: String,
}

/// A blob or manifest in the registry's storage directory.
fn stored(reg: &TestRegistry, digest: &str) -> Option<serde_json::Value> {
    let hex = digest.strip_prefix("sha256:")?;
    let path = reg.data_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        hex.get(..2)?
    ));
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The layers of `REG/repo:tag` (its manifest, or an index's first manifest), each with the
/// `created_by` of its non-empty history entry.
fn layers(reg: &TestRegistry, repo: &str, tag: &str) -> Option<Vec<Layer>> {
    let link = reg.data_dir().join(format!(
        "docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/current/link"
    ));
    let mut manifest = stored(reg, std::fs::read_to_string(link).ok()?.trim())?;
    if let Some(first) = manifest["manifests"].get(0) {
        manifest = stored(reg, first["digest"].as_str()?)?;
    }
    let config = stored(reg, manifest["config"]["digest"].as_str()?)?;
    let history: Vec<String> = config["history"]
        .as_array()?
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .map(|h| h["created_by"].as_str().unwrap_or("").to_owned())
        .collect();
    let layers = manifest["layers"].as_array()?;
    (history.len() == layers.len()).then_some(())?;
    layers
        .iter()
        .zip(history)
        .map(|(l, created_by)| {
            Some(Layer {
                digest: l["digest"].as_str()?.to_owned(),
                size: l["size"].as_u64()?,
                created_by,
            })
        })
        .collect()
}

/// The digests of `layers` a build in `phase` needs: after a change, those below `COPY . .`;
/// unchanged, all of them for a local image and none for a push.
fn needed(layers: &[Layer], phase: &str, local: bool) -> HashSet<String> {
    let copy = layers
        .iter()
        .position(|l| l.created_by.starts_with("COPY . ."))
        .unwrap_or(layers.len());
    let keep = match (phase, local) {
        ("change", _) => copy,
        (_, true) => layers.len(),
        _ => 0,
    };
    layers[..keep].iter().map(|l| l.digest.clone()).collect()
}

/// The registry's access log once it stops growing: a line is written after its response,
/// so the last ones of a client that just exited may still be on their way.
fn settled_log(reg: &TestRegistry) -> Vec<berth_test_support::Served> {
    let mut seen = reg.served();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = reg.served();
        if now.len() == seen.len() {
            return now;
        }
        seen = now;
    }
}

/// Unmounts whatever is mounted at or under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(m)
            .stderr(Stdio::null())
            .status();
    }
}

/// Unmounts whatever is mounted at or under `dir`, then removes it.
fn remove_tree(dir: &Path) {
    unmount_under(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Lets earlier writes reach the disk, so each build starts from the same quiet machine.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

/// One timed runner-2 build of `row` of `tool` in `phase`.
fn sample(
    env: &Env,
    tool: &mut dyn Tool,
    row: usize,
    phase: &str,
    n: usize,
) -> Result<Sample, String> {
    let scratch = env.work.join(format!("runner2-{n}"));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let image = tool.image(row);
    let layers = image.and_then(|(repo, tag, _)| layers(&env.reg, repo, tag));
    let result = tool.fresh(env, row, &scratch).and_then(|(mut c, daemon)| {
        settle();
        let before = env.reg.served().len();
        let m: Result<Measured, String> = measure(&mut c);
        let log = settled_log(&env.reg);
        drop(daemon);
        m.map(|m| (m, log.into_iter().skip(before).collect::<Vec<_>>()))
    });
    // Kept until the end of the run: deleting thousands of files makes this machine's ext4
    // slow to create files for minutes after (see docs/BENCHMARKS.md, "The machine"), which
    // a fresh CI runner does not pay.
    unmount_under(&scratch);
    let (m, served) = result?;
    let downloads: Vec<_> = served
        .iter()
        .filter(|r| r.method == "GET" && (200..300).contains(&r.status))
        .filter(|r| r.path.contains("/blobs/") || r.path.contains("/manifests/"))
        .collect();
    if std::env::var_os("BERTH_BENCH_VERBOSE").is_some() {
        eprintln!(
            "--- {} ({phase}): {:.2}s\n{}",
            tool.rows()[row],
            m.time.as_secs_f64(),
            m.output
        );
        for r in &downloads {
            eprintln!("GET {} {} bytes", r.path, r.bytes);
        }
    }
    let needed = layers.map(|layers| {
        let need = needed(&layers, phase, image.is_some_and(|(_, _, local)| local));
        let unneeded: u64 = downloads
            .iter()
            .filter_map(|r| {
                let digest = r.path.split("/blobs/").nth(1)?;
                let of_image = layers.iter().any(|l| l.digest == digest);
                (of_image && !need.contains(digest)).then_some(r.bytes)
            })
            .sum();
        let need_bytes = layers
            .iter()
            .filter(|l| need.contains(&l.digest))
            .map(|l| l.size)
            .sum();
        (need_bytes, unneeded)
    });
    Ok(Sample {
        time: m.time,
        bytes: downloads.iter().map(|r| r.bytes).sum(),
        steps: tool.steps(&m.output),
        needed,
    })
}

/// A tool's version line, or why there is none.
fn version(c: &mut Command) -> String {
    c.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let root = std::env::current_dir().unwrap();
    let bin = root.join("target/release/berth");
    assert!(bin.exists(), "build berth first: cargo build --release");
    let work = std::env::temp_dir().join(format!("berth-bench-ci-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let reg = TestRegistry::start(RegistryConfig::default());

    // busybox, made by berth and pushed where every runner's FROM finds it.
    let rootfs = work.join("rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    let base_store = work.join("base-store");
    let berth = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.env("BERTH_ROOT", &base_store).args(args);
        measure(&mut c).unwrap_or_else(|e| panic!("{e}"));
    };
    let busybox = format!("{}/busybox", reg.host);
    berth(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        rootfs.to_str().unwrap(),
        "busybox",
    ]);
    berth(&["tag", "busybox", &busybox]);
    berth(&["push", &busybox]);
    remove_tree(&base_store);

    let ctx = work.join("ctx");
    let change = w2_app(&ctx, &busybox);
    let env = Env { reg, ctx, work };

    println!(
        "machine: {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        version(Command::new("date").arg("-u"))
    );
    println!("berth: {}", version(Command::new(&bin).arg("--version")));
    let mut tools: Vec<Box<dyn Tool>> = vec![Box::new(Berth {
        bin: bin.clone(),
        seed_store: env.work.join("berth-seed"),
    })];
    match which("docker").filter(|p| p.starts_with("/usr/bin")) {
        Some(docker) => {
            let dir = env.work.join("bk-seed");
            std::fs::create_dir_all(&dir).unwrap();
            match Dockerd::start(&dir) {
                Some(seed) => {
                    println!(
                        "BuildKit: Docker {}",
                        version(Command::new(&docker).env("DOCKER_HOST", &seed.1).args([
                            "version",
                            "--format",
                            "{{.Server.Version}}"
                        ]))
                    );
                    tools.push(Box::new(BuildKit {
                        docker,
                        seed,
                        pruned: None,
                    }));
                }
                None => println!("BuildKit: dockerd did not start: skipped"),
            }
        }
        None => println!("BuildKit: docker.io is not installed: skipped"),
    }
    match which("buildah") {
        Some(b) => {
            let help = version(Command::new(&b).args(["bud", "--help"]));
            let v = version(Command::new(&b).arg("--version"));
            println!("buildah: {v}");
            if help.contains("--cache-from") && help.contains("--cache-to") {
                tools.push(Box::new(Buildah {
                    bin: b,
                    seed_root: env.work.join("buildah-seed"),
                }));
            } else {
                println!("buildah: --cache-from/--cache-to not supported by {v}: skipped");
            }
        }
        None => println!("buildah: not installed: skipped"),
    }

    let rows: Vec<&str> = tools
        .iter()
        .flat_map(|t| t.rows().iter().copied())
        .collect();
    // samples[phase][row]
    let mut samples: Vec<Vec<Vec<Sample>>> = PHASES
        .iter()
        .map(|_| rows.iter().map(|_| Vec::new()).collect())
        .collect();
    // The rounds of the tools whose builds delete many files come after the others'.
    let blocks: [Vec<usize>; 2] = [
        (0..tools.len())
            .filter(|&t| !tools[t].own_rounds())
            .collect(),
        (0..tools.len())
            .filter(|&t| tools[t].own_rounds())
            .collect(),
    ];
    let mut failed: Vec<bool> = vec![false; tools.len()];
    let mut n = 0;
    let mut edits = 0;
    for block in &blocks {
        // Runner 1 of each tool exports the cache of the context as it is now.
        for &t in block {
            if let Err(e) = tools[t].seed(&env) {
                println!("note: {}: runner 1 failed, skipped: {e}", tools[t].name());
                failed[t] = true;
            }
        }
        for round in 0..runs {
            edits += 1;
            let mut text = std::fs::read(&change).unwrap();
            text.extend_from_slice(format!("\nchange {edits}\n").as_bytes());
            std::fs::write(&change, text).unwrap();
            for k in 0..block.len() {
                let t = block[(round + k) % block.len()];
                if failed[t] {
                    continue;
                }
                let first_row: usize = tools[..t].iter().map(|t| t.rows().len()).sum();
                for (p, phase) in PHASES.iter().enumerate() {
                    if p == 1 {
                        // Runner 1 builds the edited context: the registry now holds its cache.
                        if let Err(e) = tools[t].seed(&env) {
                            println!(
                                "note: {}: runner 1 failed in round {}, skipped from now on: {e}",
                                tools[t].name(),
                                round + 1
                            );
                            failed[t] = true;
                            break;
                        }
                    }
                    for row in 0..tools[t].rows().len() {
                        n += 1;
                        match sample(&env, tools[t].as_mut(), row, phase, n) {
                            Ok(s) => samples[p][first_row + row].push(s),
                            Err(e) => println!(
                                "note: {} ({phase}, round {}) failed: {e}",
                                rows[first_row + row],
                                round + 1
                            ),
                        }
                    }
                }
            }
        }
    }

    let bk = rows.iter().position(|r| *r == "BuildKit");
    for (p, phase) in PHASES.iter().enumerate() {
        println!();
        match *phase {
            "change" => println!(
                "change: src/d7/f7.bin edited; runner 2 builds with the cache of the build before the edit"
            ),
            _ => println!("no-change: runner 2 builds what runner 1 just built and exported"),
        }
        println!(
            "medians of {runs} runs, each on a fresh runner 2; MB = 10^6 bytes of manifests and blobs the registry served it"
        );
        println!(
            "{:<16} {:>8} {:>15} {:>8} {:>13} {:>10} {:>9} {:>11} {:>11}",
            "runner",
            "time",
            "range",
            "MB down",
            "range",
            "steps r/c",
            "needed",
            "unneeded",
            "÷ BuildKit"
        );
        let bk_time = bk
            .filter(|&b| !samples[p][b].is_empty())
            .map(|b| median(samples[p][b].iter().map(|s| s.time).collect()));
        for (r, name) in rows.iter().enumerate() {
            let s = &samples[p][r];
            if s.is_empty() {
                println!("{name:<16} no successful run");
                continue;
            }
            let times: Vec<Duration> = s.iter().map(|s| s.time).collect();
            let bytes: Vec<u64> = s.iter().map(|s| s.bytes).collect();
            let steps: BTreeSet<String> = s
                .iter()
                .map(|s| s.steps.map_or("?".into(), |(a, b)| format!("{a}/{b}")))
                .collect();
            let (need, unneeded) = if s.iter().all(|s| s.needed.is_some()) {
                let need = median(s.iter().map(|s| s.needed.unwrap().0).collect());
                let un = median(s.iter().map(|s| s.needed.unwrap().1).collect());
                (format!("{:.2}", mb(need)), format!("{:.2}", mb(un)))
            } else {
                ("-".into(), "-".into())
            };
            let t = median(times.clone());
            let ratio = bk_time.map_or("-".into(), |b| {
                format!("{:.2}", t.as_secs_f64() / b.as_secs_f64())
            });
            println!(
                "{name:<16} {:>7.2}s {:>15} {:>8.2} {:>13} {:>10} {need:>9} {unneeded:>11} {ratio:>11}",
                t.as_secs_f64(),
                format!(
                    "{:.2}–{:.2}",
                    times.iter().min().unwrap().as_secs_f64(),
                    times.iter().max().unwrap().as_secs_f64()
                ),
                mb(median(bytes.clone())),
                format!(
                    "{:.2}–{:.2}",
                    mb(*bytes.iter().min().unwrap()),
                    mb(*bytes.iter().max().unwrap())
                ),
                steps.into_iter().collect::<Vec<_>>().join(","),
            );
        }
    }
    println!(
        "\nsteps r/c: steps run/cached (berth: its summary line; BuildKit: CACHED steps; buildah: its cache lines). needed: MB of the image's layers the build needs (see the binary's doc); unneeded: MB it downloaded of the image's other layers"
    );
    drop(tools);
    drop(env.reg);
    remove_tree(&env.work);
}
