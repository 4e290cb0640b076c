//! The hostile corpus through the CLI: each crafted layer goes in three ways, as `berth load`
//! of an OCI archive, as `berth pull` of an image skopeo pushed to a real registry, and as
//! `ADD layer.tar /` in a build; hostile contexts go through `COPY`. After each, the host side
//! is checked: a sentinel directory outside the store and the host's `/etc` are unchanged, and
//! `berth system check` is clean. Each case also says whether berth accepts it (the content
//! lands inside the image) or refuses it with an error that names the problem.
//!
//! The images carry busybox as their first layer, so a case can check what landed inside with
//! `berth run`.

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_oci::Digest;
use berth_test_support::{RawTar, RegistryConfig, Sandbox, TestRegistry};

/// What a case must give on every path.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Accepted; when a script is given, `sh -c SCRIPT` inside the image must print `ok`.
    Accepted(Option<&'static str>),
    /// Refused by load and pull with an error containing this text. ADD unpacks with the same
    /// unpacker and must refuse it too.
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    layers: Vec<Vec<u8>>,
    expect: Expect,
}

/// The host side a case must leave alone: `<sandbox>/outside` with two files, and `/etc`.
struct Host {
    outside: PathBuf,
    etc_before: BTreeMap<String, Vec<u8>>,
}

fn etc_state() -> BTreeMap<String, Vec<u8>> {
    let mut state = BTreeMap::new();
    for e in std::fs::read_dir("/etc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let content = if matches!(name.as_str(), "passwd" | "shadow" | "group" | "hosts") {
            std::fs::read(e.path()).unwrap_or_default()
        } else {
            Vec::new()
        };
        state.insert(name, content);
    }
    state
}

impl Host {
    fn new(s: &Sandbox) -> Host {
        let outside = s.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep\n").unwrap();
        std::fs::write(outside.join("secret"), "secret\n").unwrap();
        Host {
            outside,
            etc_before: etc_state(),
        }
    }

    fn check(&self, case: &str, path: &str) {
        let mut names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap_or_else(|e| panic!("{case} via {path}: the sentinel dir is gone: {e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["keep", "secret"],
            "{case} via {path}: outside/ changed"
        );
        assert_eq!(
            std::fs::read_to_string(self.outside.join("keep")).unwrap(),
            "keep\n",
            "{case} via {path}"
        );
        assert_eq!(
            etc_state(),
            self.etc_before,
            "{case} via {path}: host /etc changed"
        );
        for p in ["/pwned", "/tmp/pwned", "/root/pwned"] {
            assert!(!Path::new(p).exists(), "{case} via {path}: {p} was written");
        }
    }

    /// The sentinel path without its leading `/`, for names relative to the root.
    fn rel(&self) -> String {
        self.outside.display().to_string()[1..].to_owned()
    }

    fn abs(&self) -> String {
        self.outside.display().to_string()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The busybox rootfs as one uncompressed layer.
fn busybox_layer(s: &Sandbox) -> Vec<u8> {
    let rootfs = s.path().join("bb-rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).unwrap();
    b.into_inner().unwrap()
}

/// Writes an OCI layout at `dir` holding one image (`base` then `layers`, gzip-compressed),
/// named `ref_name`.
fn oci_layout(dir: &Path, ref_name: &str, base: &[u8], layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = Digest::of(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        (d.to_string(), bytes.len())
    };
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for layer in std::iter::once(base).chain(layers.iter().map(Vec::as_slice)) {
        diff_ids.push(Digest::of(layer).to_string());
        let (digest, size) = put(&gzip(layer));
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest, "size": size,
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cdigest, csize) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": descs,
    });
    let (mdigest, msize) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest, "size": msize,
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

fn corpus(h: &Host) -> Vec<Case> {
    use Expect::{Accepted, Refused};
    let up = "../".repeat(24);
    let (rel, abs) = (h.rel(), h.abs());
    let one = |t: &mut RawTar| vec![t.finish()];
    let mut cases = vec![
        Case {
            name: "dotdot_names",
            layers: one(RawTar::new().file(&format!("{up}{rel}/pwned"), b"x")),
            expect: Accepted(Some(&*Box::leak(
                format!("test -f /{rel}/pwned && echo ok").into_boxed_str(),
            ))),
        },
        Case {
            name: "absolute_names",
            layers: one(RawTar::new().file(&format!("{abs}/pwned"), b"x")),
            expect: Accepted(None),
        },
        Case {
            name: "absolute_name_into_host_etc",
            layers: one(RawTar::new().file("/etc/pwned", b"x").file("/pwned", b"x")),
            expect: Accepted(Some("test -f /etc/pwned && test -f /pwned && echo ok")),
        },
        Case {
            name: "symlink_parent_to_sentinel",
            layers: one(RawTar::new()
                .symlink("a", &abs)
                .file("a/pwned", b"x")
                .file("a/keep", b"overwritten")),
            expect: Accepted(None),
        },
        Case {
            name: "symlink_to_etc_then_passwd",
            layers: one(RawTar::new()
                .symlink("a", "/etc")
                .file("a/pwned", b"root::0:0::/:/bin/sh\n")),
            expect: Accepted(Some("test -f /etc/pwned && echo ok")),
        },
        Case {
            name: "relative_symlink_climbing_out",
            layers: one(RawTar::new()
                .symlink("a", &format!("{up}{rel}"))
                .file("a/pwned", b"x")),
            expect: Accepted(None),
        },
        Case {
            name: "symlink_via_proc_self_root",
            layers: one(RawTar::new()
                .symlink("a", &format!("/proc/self/root{abs}"))
                .file("a/pwned", b"x")),
            expect: Accepted(None),
        },
        Case {
            name: "symlink_then_write_in_next_layer",
            layers: vec![
                RawTar::new().symlink("d", &abs).finish(),
                RawTar::new().file("d/pwned", b"x").finish(),
            ],
            expect: Accepted(None),
        },
        Case {
            name: "dir_replaced_by_symlink_between_layers",
            layers: vec![
                RawTar::new().dir("d").file("d/x", b"x").finish(),
                RawTar::new().symlink("d", "/").finish(),
                RawTar::new()
                    .file(&format!("d/{rel}/pwned"), b"x")
                    .file("d/etc/pwned", b"x")
                    .finish(),
            ],
            // Each layer is unpacked into its own snapshot, not onto the layers below, so the
            // last layer's `d/` is a directory over the symlink (containerd, which applies onto
            // the merged view, would follow it to /etc inside the image). Either way: inside.
            expect: Accepted(Some(
                "test -f /d/etc/pwned && test ! -e /etc/pwned && echo ok",
            )),
        },
        Case {
            name: "symlink_loop_then_write",
            layers: one(RawTar::new()
                .symlink("l1", "l2")
                .symlink("l2", "l1")
                .file("l1/pwned", b"x")),
            expect: Refused("l1"),
        },
        Case {
            name: "hard_link_to_host_passwd",
            layers: one(RawTar::new().hardlink("passwd", "/etc/passwd")),
            expect: Refused("passwd"),
        },
        Case {
            name: "hard_link_to_sentinel",
            layers: one(RawTar::new().hardlink("h", &format!("{abs}/secret"))),
            expect: Refused("secret"),
        },
        Case {
            name: "hard_link_via_dotdot",
            layers: one(RawTar::new().hardlink("h", &format!("{up}{rel}/secret"))),
            expect: Refused("secret"),
        },
        Case {
            name: "hard_link_through_symlinked_parent",
            layers: one(RawTar::new().symlink("s", &abs).hardlink("h", "s/secret")),
            expect: Refused("secret"),
        },
        Case {
            name: "hard_link_to_symlink_links_the_symlink",
            layers: one(RawTar::new()
                .symlink("s", &format!("{abs}/secret"))
                .hardlink("h", "s")),
            expect: Accepted(Some(&*Box::leak(
                format!("test \"$(readlink /h)\" = {abs}/secret && echo ok").into_boxed_str(),
            ))),
        },
        Case {
            name: "hard_link_to_later_entry",
            layers: one(RawTar::new().hardlink("h", "later").file("later", b"x")),
            expect: Refused("later"),
        },
        Case {
            name: "hard_link_to_directory",
            layers: one(RawTar::new().dir("dd").hardlink("h", "dd")),
            expect: Refused("hard link to a directory"),
        },
        Case {
            name: "whiteout_naming_dotdot",
            layers: one(RawTar::new().file(".wh...", b"")),
            expect: Refused(".wh.."),
        },
        Case {
            name: "whiteout_climbing_out",
            layers: one(RawTar::new().file(&format!("{up}{rel}/.wh.keep"), b"")),
            expect: Accepted(None),
        },
        Case {
            name: "whiteout_through_symlink_in_next_layer",
            layers: vec![
                RawTar::new().symlink("w", &abs).finish(),
                RawTar::new().file("w/.wh.keep", b"").finish(),
            ],
            expect: Accepted(None),
        },
        Case {
            name: "opaque_whiteout_through_symlink",
            layers: vec![
                RawTar::new().symlink("o", &abs).finish(),
                RawTar::new().file("o/.wh..wh..opq", b"").finish(),
            ],
            expect: Accepted(None),
        },
        Case {
            name: "whiteout_of_host_etc",
            layers: one(RawTar::new().file("etc/.wh.passwd", b"")),
            expect: Accepted(Some("test ! -e /etc/passwd && echo ok")),
        },
        Case {
            name: "device_nodes_stay_in_the_image",
            layers: one(RawTar::new().char_device("mem", 1, 1).char_device(
                &format!("{up}{rel}/dev"),
                1,
                3,
            )),
            expect: Accepted(Some("test -c /mem && echo ok")),
        },
        Case {
            name: "setuid_file_kept_inside",
            layers: one(RawTar::new().file_mode("bin/suid", 0o4755, b"#!/bin/sh\n")),
            expect: Accepted(Some("test \"$(stat -c %a /bin/suid)\" = 4755 && echo ok")),
        },
        Case {
            name: "huge_header_size",
            layers: vec![RawTar::new().lying_size("big", 1 << 40).finish()],
            expect: Refused("big"),
        },
        Case {
            name: "newline_in_name",
            layers: one(RawTar::new()
                .file("bad\nname", b"x")
                .file("etc\n/pwned", b"x")),
            expect: Accepted(Some("ls / | grep -q bad && echo ok")),
        },
        Case {
            name: "invalid_utf8_name",
            layers: one(RawTar::new()
                .file_bytes(b"bad-\xff\xfe", b"x")
                .file_bytes(&[format!("{up}{rel}/").as_bytes(), b"\xc3"].concat(), b"x")),
            expect: Accepted(Some("ls / | grep -q bad- && echo ok")),
        },
        Case {
            name: "long_gnu_name_climbing_out",
            layers: one(RawTar::new().file(&format!("{}{rel}/pwned", "../".repeat(60)), b"x")),
            expect: Accepted(None),
        },
        Case {
            name: "pax_path_climbing_out",
            layers: one(RawTar::new()
                .pax_path(&format!("{up}{rel}/pwned"))
                .file("innocent", b"x")),
            expect: Accepted(None),
        },
        Case {
            name: "pax_linkpath_to_host",
            layers: one(RawTar::new()
                .pax_linkpath(&format!("{abs}/secret"))
                .hardlink("h", "innocent")),
            expect: Refused("secret"),
        },
        Case {
            name: "duplicate_entries_file_then_dir_then_symlink",
            layers: one(RawTar::new()
                .file("x", b"1")
                .dir("x")
                .file("x/y", b"2")
                .symlink("x", &abs)
                .file("x/pwned", b"3")),
            expect: Accepted(None),
        },
        Case {
            name: "entry_named_dot_and_root",
            layers: one(RawTar::new()
                .file(".", b"x")
                .file("/", b"x")
                .file("./", b"x")),
            expect: Refused("names the layer root"),
        },
        Case {
            name: "unreadable_dir_then_file",
            layers: one(RawTar::new()
                .dir_mode("locked", 0o000)
                .file("locked/f", b"x")),
            expect: Accepted(Some("test -f /locked/f && echo ok")),
        },
    ];
    // 100k entries: slow but bounded, and the result is complete.
    let mut many = RawTar::new();
    for i in 0..100_000 {
        many.file(&format!("many/{i}"), b"");
    }
    cases.push(Case {
        name: "a_hundred_thousand_entries",
        layers: vec![many.finish()],
        expect: Accepted(Some("test $(ls /many | wc -l) = 100000 && echo ok")),
    });
    // A GNU long name of 4 MiB (a path is at most 4 KiB): the tar crate would read any
    // declared size whole into memory before the entry it names.
    cases.push(Case {
        name: "huge_long_name",
        layers: vec![{
            let mut raw = Vec::new();
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::GNULongName);
            h.set_path("././@LongLink").unwrap();
            h.set_size(4 << 20);
            h.set_cksum();
            raw.extend_from_slice(h.as_bytes());
            raw.extend(std::iter::repeat_n(b'a', 4 << 20));
            raw.extend(RawTar::new().file("f", b"x").finish());
            raw
        }],
        expect: Refused("tar extension header of 4194304 bytes"),
    });
    // A gzip bomb: 96 MiB of zeros against a 56 MiB limit (BERTH_MAX_LAYER_SIZE below; the
    // 100k-entry tar is 51 MiB).
    cases.push(Case {
        name: "gzip_bomb",
        layers: vec![RawTar::new().file("zeros", &vec![0u8; 96 << 20]).finish()],
        expect: Refused("BERTH_MAX_LAYER_SIZE"),
    });
    cases
}

/// Where ADD (a copy onto the image's merged view) ends differently from layer application.
fn add_expectations() -> Vec<(&'static str, Expect)> {
    vec![
        // ADD onto an image replaces nothing of a different kind, as COPY.
        (
            "dir_replaced_by_symlink_between_layers",
            Expect::Refused("cannot overwrite directory"),
        ),
        // Whiteouts in an ADDed archive remove nothing from the image (they are layer
        // syntax, not archive content).
        (
            "whiteout_of_host_etc",
            Expect::Accepted(Some("test -f /etc/passwd && echo ok")),
        ),
        // ADD copies regular files, directories and links out of the archive; device nodes
        // are left out (BuildKit would make them; berth chooses not to in builds).
        (
            "device_nodes_stay_in_the_image",
            Expect::Accepted(Some("test ! -e /mem && echo ok")),
        ),
        // COPY and ADD name files as UTF-8 paths; other names get a clear error.
        ("invalid_utf8_name", Expect::Refused("not UTF-8")),
    ]
}

fn outcome(out: &std::process::Output) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "berth panicked on hostile input:\n{stderr}"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(stderr)
    }
}

fn check_outcome(case: &Case, path: &str, result: Result<(), String>) -> bool {
    check_expect(case, case.expect, path, result)
}

fn check_expect(case: &Case, expect: Expect, path: &str, result: Result<(), String>) -> bool {
    match (expect, result) {
        (Expect::Accepted(_), Ok(())) => true,
        (Expect::Refused(what), Err(e)) => {
            assert!(
                e.contains(what),
                "{} via {path}: the error should name {what:?}:\n{e}",
                case.name
            );
            false
        }
        (Expect::Accepted(_), Err(e)) => panic!("{} via {path}: refused:\n{e}", case.name),
        (Expect::Refused(what), Ok(())) => {
            panic!(
                "{} via {path}: accepted, expected a refusal naming {what:?}",
                case.name
            )
        }
    }
}

fn inside(s: &Sandbox, case: &Case, path: &str, image: &str) {
    if let Expect::Accepted(Some(script)) = case.expect {
        let out = s.ok(&["run", "--rm", image, "sh", "-c", script]);
        assert_eq!(
            out.trim(),
            "ok",
            "{} via {path}: inside check {script:?}",
            case.name
        );
    }
}

#[test]
fn hostile_layers_through_load_pull_and_add() {
    if !berth_test_support::needs_root("device nodes, overlay, containers") {
        return;
    }
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let host = Host::new(&s);
    let base = busybox_layer(&s);
    // The busybox base for ADD builds.
    s.ok(&[
        "import",
        s.path().join("bb-rootfs").to_str().unwrap(),
        "busybox",
    ]);
    let reg = TestRegistry::start(RegistryConfig::default());
    let cases = corpus(&host);
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let run = |args: &[&str]| {
        s.cmd()
            .env("BERTH_MAX_LAYER_SIZE", (56u64 << 20).to_string())
            .args(args)
            .output()
            .unwrap()
    };
    let mut tally = Vec::new();
    for case in &cases {
        let name = case.name.replace('_', "-");
        let layout = s.path().join(format!("layouts/{name}"));
        oci_layout(&layout, &format!("hostile:{name}"), &base, &case.layers);

        // 1. berth load of an OCI archive.
        let archive = s.path().join(format!("{name}.tar"));
        tar_dir(&layout, &archive);
        let loaded = check_outcome(
            case,
            "load",
            outcome(&run(&["load", "-i", archive.to_str().unwrap()])),
        );
        host.check(case.name, "load");
        s.assert_clean();
        if loaded {
            inside(&s, case, "load", &format!("hostile:{name}"));
        }

        // 2. berth pull of what skopeo pushed.
        let remote = format!("{}/hostile/{name}:1", reg.host);
        let copy = std::process::Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:hostile:{name}", layout.display()))
            .arg(format!("docker://{remote}"))
            .output()
            .unwrap();
        assert!(
            copy.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&copy.stderr)
        );
        let pulled = check_outcome(case, "pull", outcome(&run(&["pull", &remote])));
        host.check(case.name, "pull");
        s.assert_clean();
        if pulled {
            inside(&s, case, "pull", &remote);
        }

        // 3. ADD of each layer tar in a build.
        let ctx = s.path().join(format!("ctx/{name}"));
        std::fs::create_dir_all(&ctx).unwrap();
        let mut dockerfile = String::from("FROM busybox\n");
        for (i, layer) in case.layers.iter().enumerate() {
            std::fs::write(ctx.join(format!("l{i}.tar")), layer).unwrap();
            dockerfile.push_str(&format!("ADD l{i}.tar /\n"));
        }
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let tag = format!("added:{name}");
        let added = outcome(&run(&["build", "-q", "-t", &tag, ctx.to_str().unwrap()]));
        host.check(case.name, "ADD");
        s.assert_clean();
        // ADD is not layer application: it copies onto the image as COPY does, so a few
        // cases end differently there (the overrides in `add_expectations`).
        let add_expect = add_expectations()
            .into_iter()
            .find(|(n, _)| *n == case.name)
            .map_or(case.expect, |(_, e)| e);
        let add_ok = check_expect(case, add_expect, "ADD", added);
        if add_ok && let Expect::Accepted(Some(script)) = add_expect {
            let out = s.ok(&["run", "--rm", &tag, "sh", "-c", script]);
            assert_eq!(
                out.trim(),
                "ok",
                "{} via ADD: inside check {script:?}",
                case.name
            );
        }
        let word = |ok| if ok { "accepted" } else { "refused" };
        tally.push(format!(
            "{:48} load+pull {:8} ADD {}",
            case.name,
            word(loaded),
            word(add_ok)
        ));
        // Keep the store small between cases.
        for image in [format!("hostile:{name}"), remote.clone(), tag] {
            let _ = s.run(&["rmi", &image]);
        }
        let _ = s.run(&["system", "prune", "-f"]);
        std::fs::remove_dir_all(&layout).unwrap();
        std::fs::remove_dir_all(&ctx).unwrap();
        let _ = std::fs::remove_file(&archive);
    }
    eprintln!("{}", tally.join("\n"));
    eprintln!(
        "{} hostile layers, each through load, pull and ADD",
        cases.len()
    );
}

#[test]
fn hostile_contexts_through_copy_and_add() {
    if !berth_test_support::needs_root("runs containers") {
        return;
    }
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let host = Host::new(&s);
    s.import_busybox("busybox");
    let build = |name: &str, dockerfile: &str, setup: &dyn Fn(&Path)| {
        let ctx = s.context(name, &[("Dockerfile", dockerfile)]);
        setup(&ctx);
        let out = s.run(&[
            "build",
            "-q",
            "-t",
            &format!("ctx:{name}"),
            ctx.to_str().unwrap(),
        ]);
        host.check(name, "build");
        s.assert_clean();
        outcome(&out)
    };
    let outside = host.abs();
    // A COPY source that is a symlink out of the context: resolved inside it, not found.
    let r = build("symlink-out", "FROM busybox\nCOPY out /x\n", &|c| {
        std::os::unix::fs::symlink(format!("{outside}/secret"), c.join("out")).unwrap();
    });
    assert!(r.unwrap_err().contains("out"));
    // An ADD of a local archive through a symlink out of the context: the same.
    let r = build(
        "add-symlink-out",
        "FROM busybox\nADD arch.tar /x/\n",
        &|c| {
            std::os::unix::fs::symlink(format!("{outside}/secret"), c.join("arch.tar")).unwrap();
        },
    );
    assert!(r.unwrap_err().contains("arch.tar"));
    // A directory symlink out of the context, used as a COPY parent.
    let r = build(
        "dir-symlink-out",
        "FROM busybox\nCOPY d/secret /x\n",
        &|c| {
            std::os::unix::fs::symlink(&outside, c.join("d")).unwrap();
        },
    );
    assert!(r.unwrap_err().contains("d/secret"));
    // A symlink loop in the context: copied as the links they are by `COPY .`, and a clear
    // error when named as a source.
    let r = build(
        "loop-copied",
        "FROM busybox\nCOPY . /ctx/\nRUN test -L /ctx/a && test -L /ctx/b\n",
        &|c| {
            std::os::unix::fs::symlink("b", c.join("a")).unwrap();
            std::os::unix::fs::symlink("a", c.join("b")).unwrap();
        },
    );
    assert!(r.is_ok(), "{r:?}");
    let r = build("loop-named", "FROM busybox\nCOPY a/x /x\n", &|c| {
        std::os::unix::fs::symlink("b", c.join("a")).unwrap();
        std::os::unix::fs::symlink("a", c.join("b")).unwrap();
    });
    assert!(r.unwrap_err().contains("a/x"));
    // Symlinks inside a copied directory are copied as links, never followed.
    let r = build(
        "links-kept",
        &format!(
            "FROM busybox\nCOPY d /d\nRUN test \"$(readlink /d/l)\" = {outside}/secret && test ! -e /d/l\n"
        ),
        &|c| {
            std::fs::create_dir(c.join("d")).unwrap();
            std::os::unix::fs::symlink(format!("{outside}/secret"), c.join("d/l")).unwrap();
        },
    );
    assert!(r.is_ok(), "{r:?}");
    // A destination through a symlink the image made: the write stays in the image.
    let r = build(
        "dest-through-symlink",
        &format!(
            "FROM busybox\nRUN ln -s {outside} /o\nCOPY f /o/pwned\nRUN test -f {outside}/pwned\n"
        ),
        &|c| std::fs::write(c.join("f"), "x").unwrap(),
    );
    assert!(r.is_ok(), "{r:?}");
    // A context with a FIFO: COPY . does not hang on it (it is never opened), and it is
    // not part of the context, so nothing is copied for it.
    let r = build(
        "fifo",
        "FROM busybox\nCOPY . /ctx/\nRUN ! test -e /ctx/fifo\n",
        &|c| {
            nix::unistd::mkfifo(
                &c.join("fifo"),
                nix::sys::stat::Mode::from_bits_truncate(0o644),
            )
            .unwrap();
        },
    );
    assert!(r.is_ok(), "{r:?}");
}
