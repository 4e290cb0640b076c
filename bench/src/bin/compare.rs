//! Builds each context under `testdata/compare/` with berth and with BuildKit (Debian's
//! `docker.io`: a `dockerd` of its own, as `builds` starts it) and compares what a user
//! would compare: the image config (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts,
//! Volumes, Labels, StopSignal, Healthcheck, OnBuild, Shell, Author), the history
//! (instructions, which made a layer) and the final filesystem tree (every path's type,
//! mode, owner, size, link target and content digest; times are not compared, nor the
//! files Docker itself adds: `/.dockerenv`, `/etc/hosts`, `/etc/hostname`,
//! `/etc/resolv.conf`, `/etc/mtab`, `/dev`, `/proc`, `/sys`). Prints each difference and ends with
//! `N identical, M differ`.
//!
//! `cargo build --release && cargo run --release -p berth-bench --bin compare [CASE...]`
//! as root. Kept out of CI: it needs docker.io.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_bench::{Dockerd, which};

fn sh(mut c: impl std::borrow::BorrowMut<Command>) -> String {
    let c = c.borrow_mut();
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// path → description, from a tar stream of a whole filesystem.
fn tree_of_tar(r: impl Read) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(r);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        let h = e.header().clone();
        let kind = format!("{:?}", h.entry_type());
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let digest = if h.entry_type().is_file() {
            berth_oci::Digest::of(&data).hex()[..12].to_owned()
        } else {
            String::new()
        };
        // Small text files show their text, so a difference can be read.
        let text = match std::str::from_utf8(&data) {
            Ok(t) if h.entry_type().is_file() && !t.is_empty() && t.len() <= 2048 => {
                format!("\n      {}", t.trim_end().replace('\n', "\n      "))
            }
            _ => String::new(),
        };
        out.insert(
            name,
            format!(
                "{kind} {:o} {}:{} {} {link} {digest}{text}",
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap(),
                if h.entry_type().is_file() {
                    data.len()
                } else {
                    0
                },
            ),
        );
    }
    out
}

fn ignored(path: &str) -> bool {
    path.is_empty()
        || matches!(
            path,
            ".dockerenv"
                | "etc/hosts"
                | "etc/hostname"
                | "etc/resolv.conf"
                | "etc/mtab"
                | "dev"
                | "proc"
                | "sys"
        )
        || path.starts_with("dev/")
        || path.starts_with("proc/")
        || path.starts_with("sys/")
}

fn config_of(v: &serde_json::Value) -> BTreeMap<String, String> {
    let c = &v["config"];
    let mut out = BTreeMap::new();
    for k in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ] {
        let value = &c[k];
        let shown = match value {
            serde_json::Value::Null => "null".to_owned(),
            serde_json::Value::String(s) if s.is_empty() => "null".to_owned(),
            serde_json::Value::Array(a) if a.is_empty() => "null".to_owned(),
            serde_json::Value::Object(o) if o.is_empty() => "null".to_owned(),
            v => v.to_string(),
        };
        out.insert(k.to_owned(), shown);
    }
    out.insert(
        "Author".into(),
        v["author"].as_str().unwrap_or("").to_owned(),
    );
    let history: Vec<String> = v["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .skip_while(|e| !e["comment"].as_str().unwrap_or("").contains("buildkit"))
                .map(|e| {
                    format!(
                        "{}{}",
                        e["created_by"].as_str().unwrap_or(""),
                        if e["empty_layer"] == true {
                            " (no layer)"
                        } else {
                            ""
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.insert("History".into(), history.join(" | "));
    out
}

/// The config JSON of an image in a docker archive.
fn config_from_docker_archive(path: &Path) -> serde_json::Value {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if name.ends_with(".json") {
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            files.insert(name, d);
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap();
    serde_json::from_slice(&files[config]).unwrap()
}

fn main() {
    let root = std::env::current_dir().unwrap();
    let berth = root.join("target/release/berth");
    assert!(berth.exists(), "build berth first: cargo build --release");
    let cases_dir = root.join("testdata/compare");
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Dockerfile").is_file())
        .filter(|p| wanted.is_empty() || wanted.iter().any(|w| p.ends_with(w)))
        .collect();
    cases.sort();
    let work = std::env::temp_dir().join(format!("berth-compare-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let rootfs = work.join("rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    let store = work.join("store");
    let b = |args: &[&str]| {
        let mut c = Command::new(&berth);
        c.env("BERTH_ROOT", &store).args(args);
        c
    };
    sh(b(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        rootfs.to_str().unwrap(),
        "busybox",
    ])
    .stderr(Stdio::null()));
    let archive = work.join("busybox.tar");
    sh(b(&[
        "save",
        "--format",
        "docker",
        "-o",
        archive.to_str().unwrap(),
        "busybox",
    ]));
    let (Some(docker), Some((_dockerd, host))) = (
        which("docker").filter(|p| p.starts_with("/usr/bin")),
        Dockerd::start(&work),
    ) else {
        println!(
            "BuildKit: docker.io is not installed (or dockerd did not start): nothing to compare with"
        );
        return;
    };
    let d = |args: &[&str]| {
        let mut c = Command::new(&docker);
        c.env("DOCKER_HOST", &host)
            .env("DOCKER_BUILDKIT", "1")
            .args(args);
        c
    };
    sh(d(&["load", "-i", archive.to_str().unwrap()]));
    let (mut same, mut differ) = (0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let tag = format!("cmp-{name}");
        sh(b(&["build", "-q", "-t", &tag, case.to_str().unwrap()]));
        sh(d(&[
            "build",
            "-q",
            "--network",
            "host",
            "-t",
            &tag,
            case.to_str().unwrap(),
        ]));
        // Configs.
        let ba = work.join(format!("{name}-berth.tar"));
        sh(b(&[
            "save",
            "--format",
            "docker",
            "-o",
            ba.to_str().unwrap(),
            &tag,
        ]));
        let da = work.join(format!("{name}-docker.tar"));
        sh(d(&["save", "-o", da.to_str().unwrap(), &tag]));
        let bc = config_of(&config_from_docker_archive(&ba));
        let dc = config_of(&config_from_docker_archive(&da));
        let mut diffs = Vec::new();
        for (k, v) in &dc {
            if bc.get(k) != Some(v) {
                diffs.push(format!(
                    "  config {k}:\n    BuildKit: {v}\n    berth:    {}",
                    bc.get(k).map_or("-", String::as_str)
                ));
            }
        }
        // Trees.
        let local = work.join(format!("{name}-rootfs"));
        sh(b(&[
            "build",
            "-q",
            "-t",
            &tag,
            "-o",
            local.to_str().unwrap(),
            case.to_str().unwrap(),
        ]));
        let exported = work.join(format!("{name}-berth-fs.tar"));
        sh(Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&local)
            .args(["-cf"])
            .arg(&exported)
            .arg("."));
        let bt = tree_of_tar(std::fs::File::open(&exported).unwrap());
        let cid = sh(d(&["create", &tag])).trim().to_owned();
        let dfs = work.join(format!("{name}-docker-fs.tar"));
        sh(d(&["export", "-o", dfs.to_str().unwrap(), &cid]));
        sh(d(&["rm", &cid]));
        let dt = tree_of_tar(std::fs::File::open(&dfs).unwrap());
        for (p, v) in &dt {
            if ignored(p) {
                continue;
            }
            match bt.get(p) {
                Some(bv) if bv == v => {}
                Some(bv) => diffs.push(format!("  /{p}:\n    BuildKit: {v}\n    berth:    {bv}")),
                None => diffs.push(format!("  /{p}: only in BuildKit's ({v})")),
            }
        }
        for (p, v) in &bt {
            if !ignored(p) && !dt.contains_key(p) {
                diffs.push(format!("  /{p}: only in berth's ({v})"));
            }
        }
        if diffs.is_empty() {
            println!("{name}: identical");
            same += 1;
        } else {
            println!(
                "{name}: {} difference(s)\n{}",
                diffs.len(),
                diffs.join("\n")
            );
            differ += 1;
        }
    }
    println!("{same} identical, {differ} differ");
    let _ = std::fs::remove_dir_all(&work);
}
