//! Builds each case of `testdata/compare/` ([`berth_test_support::corpus`]) with berth and
//! with BuildKit (Debian's `docker.io`: a `dockerd` of its own) and compares what a user would
//! compare: the image config (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes,
//! Labels, StopSignal, Healthcheck, OnBuild, Shell, Author), the history (instructions, which
//! made a layer) and the final filesystem tree (every path's type, mode, owner, size, link
//! target, hard-link group and content digest; times are not compared, nor the files Docker
//! itself adds: `/.dockerenv`, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`,
//! `/etc/mtab`, `/dev`, `/proc`, `/sys`). Both trees come from the same place: each image is
//! loaded into the dockerd (berth's as a docker archive) and exported from a container.
//!
//! A `FAILS` case must fail with both builders (with berth only, when it is also `NEWER`). A
//! `NEWER` case (a feature Docker 20.10's
//! BuildKit lacks) is compared with its reviewed `EXPECTED` text; `--record` writes that file
//! from berth's result, for review. Prints each difference and ends with
//! `N identical, M differ`.
//!
//! `cargo build --release && cargo run --release -p berth-bench --bin compare [--record] [CASE...]`
//! as root. Kept out of CI: it needs docker.io and takes minutes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use berth_bench::{Dockerd, which};
use berth_test_support::corpus::{self, Kind};

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

/// path → description, from a tar stream of a whole filesystem. A hard link is described as
/// the file it links to, and every member of a group of hard links names the others.
fn tree_of_tar(r: impl Read) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut a = tar::Archive::new(r);
    let clean = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_owned()
    };
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = clean(&e.path_bytes());
        let h = e.header().clone();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        if h.entry_type() == tar::EntryType::Link {
            links.push((name, clean(link.as_bytes())));
            continue;
        }
        let kind = format!("{:?}", h.entry_type());
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
    // Groups: every name linked to a first one.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, target) in &links {
        groups
            .entry(target.clone())
            .or_insert_with(|| vec![target.clone()])
            .push(name.clone());
    }
    for members in groups.values() {
        let first = out.get(&members[0]).cloned().unwrap_or_default();
        for m in members {
            let others: Vec<&str> = members
                .iter()
                .filter(|o| *o != m)
                .map(String::as_str)
                .collect();
            out.insert(
                m.clone(),
                format!("{first} [hard link with {}]", others.join(", ")),
            );
        }
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

/// The comparison text of one image: its config lines, then its tree's.
fn describe(
    config: &serde_json::Value,
    tree: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    // A config value on one line (a RUN heredoc's history holds newlines).
    let mut out: BTreeMap<String, String> = config_of(config)
        .into_iter()
        .map(|(k, v)| (format!("config {k}"), v.replace('\n', "\\n")))
        .collect();
    for (p, v) in tree {
        if !ignored(p) {
            out.insert(format!("/{p}"), v.clone());
        }
    }
    out
}

fn as_text(d: &BTreeMap<String, String>) -> String {
    d.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

fn from_text(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("      ")
            && let Some(k) = &last
        {
            let v: &mut String = out.get_mut(k).expect("inserted");
            v.push('\n');
            v.push_str(line);
            continue;
        }
        if let Some((k, v)) = line.split_once(": ") {
            out.insert(k.to_owned(), v.to_owned());
            last = Some(k.to_owned());
        } else if let Some(k) = line.strip_suffix(':') {
            out.insert(k.to_owned(), String::new());
            last = Some(k.to_owned());
        }
    }
    out
}

fn differences(
    reference: &str,
    want: &BTreeMap<String, String>,
    got: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            Some(g) if g == v => {}
            Some(g) => diffs.push(format!("  {k}:\n    {reference}: {v}\n    berth:    {g}")),
            None => diffs.push(format!("  {k}: only in {reference}'s ({v})")),
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            diffs.push(format!("  {k}: only in berth's ({v})"));
        }
    }
    diffs
}

fn main() {
    let root = std::env::current_dir().unwrap();
    let berth = root.join("target/release/berth");
    assert!(berth.exists(), "build berth first: cargo build --release");
    let mut wanted: Vec<String> = std::env::args().skip(1).collect();
    let record = wanted.iter().any(|a| a == "--record");
    wanted.retain(|a| a != "--record");
    let cases = corpus::cases(&wanted);
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
    // `busybox-docker`, for both builders, through a registry of our own.
    let registry = berth_test_support::TestRegistry::start(Default::default());
    let reference = corpus::docker_typed_base(&b, &registry.host);
    sh(d(&["pull", "-q", &reference]));
    sh(d(&["tag", &reference, "busybox-docker"]));
    // An image's comparison text: config and history from its docker archive, the tree from
    // a container of it, both through the dockerd.
    let image_text = |tag: &str, archive: &Path| {
        let config = config_from_docker_archive(archive);
        // A command of its own: some images name none, and Docker refuses to create those.
        let cid = sh(d(&["create", tag, "/none"])).trim().to_owned();
        let fs = work.join("fs.tar");
        sh(d(&["export", "-o", fs.to_str().unwrap(), &cid]));
        sh(d(&["rm", &cid]));
        let tree = tree_of_tar(std::fs::File::open(&fs).unwrap());
        describe(&config, &tree)
    };
    let (mut same, mut differ) = (0, 0);
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for case in &cases {
        let name = &case.name;
        let ctx = case.prepare(&work.join("cases"));
        let tag = format!("cmp-{name}");
        let berth_tag = format!("cmp-berth-{name}");
        let built = b(&["build", "-q", "-t", &tag, ctx.to_str().unwrap()])
            .output()
            .unwrap();
        let kind_name = match case.kind {
            Kind::Builds => "BuildKit",
            Kind::Fails => "must fail",
            Kind::Newer => "reviewed (newer frontend)",
        };
        let mut diffs = Vec::new();
        let berth_ok = built.status.success();
        let berth_err = String::from_utf8_lossy(&built.stderr).into_owned();
        let berth_text = berth_ok.then(|| {
            let ba = work.join(format!("{name}-berth.tar"));
            sh(b(&[
                "save",
                "--format",
                "docker",
                "-o",
                ba.to_str().unwrap(),
                &tag,
            ]));
            // Loaded under its own name, so BuildKit's image of the same tag stays apart.
            let loaded = sh(d(&["load", "-q", "-i", ba.to_str().unwrap()]));
            assert!(loaded.contains(&tag), "{loaded}");
            sh(d(&["tag", &tag, &berth_tag]));
            sh(d(&["rmi", &tag]));
            let text = image_text(&berth_tag, &ba);
            sh(d(&["rmi", &berth_tag]));
            let _ = std::fs::remove_file(&ba);
            text
        });
        let buildkit = || {
            d(&[
                "build",
                "-q",
                "--network",
                "host",
                "-t",
                &tag,
                ctx.to_str().unwrap(),
            ])
            .output()
            .unwrap()
        };
        match case.kind {
            Kind::Fails => {
                let dk = buildkit();
                if berth_ok {
                    diffs.push("  berth built it; it must fail".to_owned());
                }
                // A case that fails only under the current frontend: 20.10's answer is not
                // the reference.
                let newer = case.dir.join("NEWER").exists();
                if dk.status.success() && !newer {
                    diffs.push("  BuildKit built it; it must fail".to_owned());
                    let _ = d(&["rmi", &tag]).output();
                }
            }
            Kind::Newer => match (&berth_text, case.expected()) {
                (None, _) => diffs.push(format!("  berth failed:\n{berth_err}")),
                (Some(text), _) if record => {
                    std::fs::write(case.dir.join("EXPECTED"), as_text(text)).unwrap();
                    println!("{name}: EXPECTED recorded from berth's result: review it");
                }
                (Some(_), None) => diffs.push("  no EXPECTED recorded".to_owned()),
                (Some(text), Some(expected)) => {
                    diffs = differences("EXPECTED", &from_text(&expected), text);
                }
            },
            Kind::Builds => {
                let dk = buildkit();
                match (&berth_text, dk.status.success()) {
                    (None, false) => diffs.push(format!(
                        "  both failed:\n    BuildKit: {}\n    berth: {berth_err}",
                        String::from_utf8_lossy(&dk.stderr)
                            .lines()
                            .last()
                            .unwrap_or("")
                    )),
                    (None, true) => diffs.push(format!("  berth failed:\n{berth_err}")),
                    (Some(_), false) => diffs.push(format!(
                        "  BuildKit failed:\n{}",
                        String::from_utf8_lossy(&dk.stderr)
                    )),
                    (Some(text), true) => {
                        let da = work.join(format!("{name}-docker.tar"));
                        sh(d(&["save", "-o", da.to_str().unwrap(), &tag]));
                        let reference = image_text(&tag, &da);
                        let _ = std::fs::remove_file(&da);
                        diffs = differences("BuildKit", &reference, text);
                    }
                }
                let _ = d(&["rmi", &tag]).output();
            }
        }
        let _ = b(&["rmi", &tag]).output();
        let _ = std::fs::remove_dir_all(&ctx);
        let counts = by_kind.entry(kind_name).or_default();
        if diffs.is_empty() {
            println!("{name}: identical ({kind_name})");
            same += 1;
            counts.0 += 1;
        } else {
            println!(
                "{name}: {} difference(s) ({kind_name})\n{}",
                diffs.len(),
                diffs.join("\n")
            );
            differ += 1;
            counts.1 += 1;
        }
    }
    for (kind, (s, dif)) in &by_kind {
        println!("  {kind}: {s} identical, {dif} differ");
    }
    println!("{same} identical, {differ} differ");
    let _ = std::fs::remove_dir_all(&work);
}
