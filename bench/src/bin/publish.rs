//! A published port: `run -d -p 127.0.0.1:PORT:80 IMG httpd` start latency, and request
//! throughput through the port, for berth, podman (`--network bridge`, netavark) and Docker
//! (its `docker0` bridge) in the same run. `cargo build --release && cargo run --release -p
//! berth-bench --bin publish [RUNS]` as root; kept out of CI (it needs podman, docker.io and
//! wrk, and takes minutes). Goal (issue 21): berth at least equal to podman.
//!
//! Each tool runs in a network namespace of its own that the bench makes (`ip netns add`),
//! where its bridge, firewall rules and containers live and where its clients connect from
//! (the bench's thread enters it with `setns`), so one tool's rules never touch another's
//! traffic; the namespaces are deleted at the end, so nothing is sent off the machine and
//! nothing is left on the host's network. Each tool keeps
//! its images and state in the bench's own directory (podman `--root`, dockerd
//! `--data-root`), loaded from the same busybox image (`berth save --format docker`).
//!
//! Start latency: the tools take turns, one run each, `RUNS` rounds (default 20) after one
//! warm-up round; two times per run: until the `run -d` command returns, and until the first
//! HTTP answer through the published port. Medians with the interquartile range, and the
//! median of per-round ratios. Throughput: `wrk -t2 -c16 -d5s` against one container per
//! tool, three rounds, taking turns; requests per second, median.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var("PATH").ok()?.split(':').find_map(|d| {
        let p = Path::new(d).join(name);
        p.is_file().then_some(p)
    })
}

/// One tool under comparison: how to run its CLI.
struct Tool {
    name: &'static str,
    /// Its network namespace (`/run/netns/NAME`).
    netns: std::fs::File,
    program: PathBuf,
    /// Flags of `run` this tool needs here.
    run_flags: Vec<&'static str>,
    /// Global flags and environment that point the tool at the bench's own state.
    global: Vec<String>,
    env: Vec<(String, String)>,
    image: String,
}

impl Tool {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.global).args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }
}

/// Waits until an HTTP GET of `/` on 127.0.0.1:`port` is answered with 200; `false` after 10 s.
fn answered(port: u16) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n");
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok()
                && head.starts_with(b"HTTP/1.")
                && &head[9..12] == b"200"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn rootfs(dir: &Path) {
    for d in ["bin", "etc", "www", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is needed");
    for applet in ["sh", "httpd", "true", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(dir.join("www/index.html"), "x".repeat(1024)).unwrap();
}

/// A network namespace of the bench's, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tool: &str) -> Netns {
        let name = format!("berth-bench-{}-{tool}", std::process::id());
        sh(Command::new("ip").args(["netns", "add", &name]));
        sh(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        Netns(name)
    }

    fn file(&self) -> std::fs::File {
        std::fs::File::open(format!("/run/netns/{}", self.0)).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Moves this thread (and what it starts from now on) into `ns`.
fn enter(ns: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a descriptor this function borrows; it changes only this thread's
    // network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let spaces: Vec<Netns> = ["berth", "podman", "docker"].map(Netns::new).into();
    let host = std::fs::File::open("/proc/self/ns/net").unwrap();
    let work = tempfile::Builder::new()
        .prefix("berth-bench-publish-")
        .tempdir()
        .unwrap();
    let w = work.path();
    let root = berth_test_support::workspace_root();
    let berth = root.join("target/release/berth");
    assert!(berth.exists(), "build berth first: cargo build --release");
    let fs = w.join("rootfs");
    rootfs(&fs);
    let berth_tool = Tool {
        name: "berth",
        netns: spaces[0].file(),
        program: berth.clone(),
        run_flags: Vec::new(),
        global: vec!["--root".into(), w.join("berth").display().to_string()],
        // `cargo run` sets `none` (the workspace's .cargo/config.toml): berth's own default.
        env: vec![("BERTH_DEFAULT_NETWORK".into(), "bridge".into())],
        image: "web:1".into(),
    };
    enter(&berth_tool.netns);
    sh(&mut berth_tool.cmd(&["import", fs.to_str().unwrap(), "web:1"]));
    let archive = w.join("web.tar");
    sh(&mut berth_tool.cmd(&[
        "save",
        "--format",
        "docker",
        "-o",
        archive.to_str().unwrap(),
        "web:1",
    ]));
    let mut tools = vec![berth_tool];
    if let Some(podman) = which("podman") {
        let p = |d: &str| w.join(d).display().to_string();
        std::fs::create_dir_all(w.join("podman-net")).unwrap();
        let tool = Tool {
            name: "podman",
            netns: spaces[1].file(),
            program: podman,
            // Its default open-file limit is above what this machine lets a process raise
            // its own to; the host's limits, as berth and Docker pass them on.
            run_flags: vec!["--ulimit", "host"],
            global: vec![
                "--root".into(),
                p("podman-root"),
                "--runroot".into(),
                p("podman-run"),
                "--network-config-dir".into(),
                p("podman-net"),
                "--tmpdir".into(),
                p("podman-tmp"),
                "--cgroup-manager".into(),
                "cgroupfs".into(),
                "--events-backend".into(),
                "file".into(),
            ],
            env: Vec::new(),
            image: "localhost/web:1".into(),
        };
        enter(&tool.netns);
        sh(&mut tool.cmd(&["load", "-q", "-i", archive.to_str().unwrap()]));
        tools.push(tool);
    } else {
        println!("podman: not installed");
    }
    enter(&spaces[2].file());
    let dockerd = berth_test_support::dockerd::Dockerd::start_bridged(w);
    if let Some((_, host)) = &dockerd {
        let tool = Tool {
            name: "docker",
            netns: spaces[2].file(),
            program: PathBuf::from("/usr/bin/docker"),
            run_flags: Vec::new(),
            global: Vec::new(),
            env: vec![("DOCKER_HOST".into(), host.clone())],
            image: "web:1".into(),
        };
        sh(&mut tool.cmd(&["load", "-q", "-i", archive.to_str().unwrap()]));
        tools.push(tool);
    } else {
        println!("docker: dockerd did not start");
    }
    // A tool that cannot run a container on this machine is left out, saying why (podman
    // 4.3's runc raises RLIMIT_NPROC, which needs CAP_SYS_RESOURCE, which root lacks on
    // some sandboxed machines).
    tools.retain(|tool| {
        enter(&tool.netns);
        let mut args = vec!["run", "--rm"];
        args.extend(&tool.run_flags);
        args.extend([tool.image.as_str(), "true"]);
        let out = tool.cmd(&args).output().unwrap();
        if !out.status.success() {
            println!(
                "{}: cannot run a container here, left out: {}",
                tool.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out.status.success()
    });
    let start = |tool: &Tool, port: u16, name: &str| -> (f64, f64) {
        enter(&tool.netns);
        let publish = format!("127.0.0.1:{port}:80");
        let mut args = vec!["run", "-d", "--name", name, "-p", &publish];
        args.extend(&tool.run_flags);
        args.extend([tool.image.as_str(), "httpd", "-f", "-p", "80", "-h", "/www"]);
        let mut c = tool.cmd(&args);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let t = Instant::now();
        let out = c.output().unwrap();
        let returned = t.elapsed();
        assert!(
            out.status.success(),
            "{}: {}",
            tool.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(answered(port), "{}: no answer on port {port}", tool.name);
        let ready = t.elapsed();
        (returned.as_secs_f64() * 1e3, ready.as_secs_f64() * 1e3)
    };
    let remove = |tool: &Tool, name: &str| {
        enter(&tool.netns);
        let _ = tool
            .cmd(&["rm", "-f", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    let mut times: Vec<Vec<(f64, f64)>> = vec![Vec::new(); tools.len()];
    let mut port = 20000u16;
    for round in 0..=runs {
        for (k, tool) in tools.iter().enumerate() {
            port += 1;
            let name = format!("bench{round}x{k}");
            let t = start(tool, port, &name);
            remove(tool, &name);
            if round > 0 {
                times[k].push(t);
            }
        }
    }
    println!("start latency, {runs} rounds (ms: quartiles 25/50/75)");
    println!(
        "{:<8} {:>24} {:>24}",
        "", "until run -d returns", "until the port answers"
    );
    for (k, tool) in tools.iter().enumerate() {
        let (a, b): (Vec<f64>, Vec<f64>) = times[k].iter().copied().unzip();
        let (a, b) = (quartiles(a), quartiles(b));
        println!(
            "{:<8} {:>7.1} {:>7.1} {:>7.1}  {:>7.1} {:>7.1} {:>7.1}",
            tool.name, a.0, a.1, a.2, b.0, b.1, b.2
        );
    }
    for k in 1..tools.len() {
        let ratios = |i: usize| -> Vec<f64> {
            times[0]
                .iter()
                .zip(&times[k])
                .map(|(b, o)| if i == 0 { b.0 / o.0 } else { b.1 / o.1 })
                .collect()
        };
        let (r0, r1) = (quartiles(ratios(0)), quartiles(ratios(1)));
        println!(
            "berth/{}: {:.2}× ({:.2}–{:.2}) until it returns, {:.2}× ({:.2}–{:.2}) until it answers",
            tools[k].name, r0.1, r0.0, r0.2, r1.1, r1.0, r1.2
        );
    }
    let Some(wrk) = which("wrk") else {
        println!("throughput: wrk is not installed");
        return;
    };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
    let ports: Vec<u16> = (0..tools.len()).map(|k| 30000 + k as u16).collect();
    for (k, tool) in tools.iter().enumerate() {
        start(tool, ports[k], "bench-wrk");
    }
    for _ in 0..3 {
        for (k, tool) in tools.iter().enumerate() {
            enter(&tool.netns);
            let url = format!("http://127.0.0.1:{}/index.html", ports[k]);
            let out = sh(Command::new(&wrk).args(["-t2", "-c16", "-d5s", &url]));
            let rate = out
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|r| r.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{}: wrk printed no rate: {out}", tool.name));
            rates[k].push(rate);
        }
    }
    println!("throughput through the published port (wrk -t2 -c16 -d5s, 1 KiB, 3 rounds)");
    for (k, tool) in tools.iter().enumerate() {
        let (lo, mid, hi) = quartiles(rates[k].clone());
        println!("{:<8} {mid:>9.0} req/s ({lo:.0}–{hi:.0})", tool.name);
        remove(tool, "bench-wrk");
    }
    for k in 1..tools.len() {
        let ratio = quartiles(rates[0].clone()).1 / quartiles(rates[k].clone()).1;
        println!(
            "berth/{}: {ratio:.2}× the requests per second",
            tools[k].name
        );
    }
    if let Some(podman) = tools.iter().find(|t| t.name == "podman") {
        enter(&podman.netns);
        let _ = podman
            .cmd(&["system", "reset", "-f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    drop(dockerd);
    enter(&host);
    drop(spaces);
}
