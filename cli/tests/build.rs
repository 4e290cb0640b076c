//! `berth build` end to end (the root tier: RUN steps are real containers). Each test builds
//! on the busybox image imported from Debian's busybox-static and checks the result the way
//! a user would see it: the config (`berth inspect`), the files (a container listing them,
//! or the layer tars themselves), and the cache (`CACHED` lines, steps run).

use std::path::Path;

use berth_test_support::{Sandbox, TallImage, Tier, assert_success};
use serde_json::Value;

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

struct Build {
    code: i32,
    stdout: String,
    stderr: String,
}

fn build(s: &Sandbox, ctx: &Path, args: &[&str]) -> Build {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    all.push(ctx.to_str().unwrap());
    let out = s.run(&all);
    Build {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn build_ok(s: &Sandbox, ctx: &Path, args: &[&str]) -> String {
    let b = build(s, ctx, args);
    assert_eq!(b.code, 0, "build failed:\n{}{}", b.stdout, b.stderr);
    b.stderr
}

fn inspect(s: &Sandbox, image: &str) -> Value {
    let v: Value = serde_json::from_str(&s.ok(&["inspect", image])).unwrap();
    v[0].clone()
}

fn image_id(s: &Sandbox, image: &str) -> String {
    inspect(s, image)["Id"].as_str().unwrap().to_owned()
}

fn sh(s: &Sandbox, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// The entries of an image's last layer tar (`tar tv`-like: type, mode, owner, name).
fn last_layer(s: &Sandbox, image: &str) -> Vec<String> {
    let info = inspect(s, image);
    let layers = info["RootFS"]["Layers"].as_array().unwrap();
    let digest = layers.last().unwrap().as_str().unwrap();
    let blob = s
        .store()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut archive = tar::Archive::new(std::fs::File::open(blob).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            format!(
                "{:?} {:o} {}:{} {}",
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                String::from_utf8_lossy(&e.path_bytes())
            )
        })
        .collect()
}

#[test]
fn config_instructions_match_the_dockerfile_reference() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            r#"FROM busybox
MAINTAINER someone@example.com
ENV A=1 B="two words"
ENV A=3
LABEL version="1.0" description=demo
EXPOSE 80 53/udp 8000-8001
VOLUME ["/data"]
USER nobody
WORKDIR /srv
WORKDIR sub
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD wget -q localhost || exit 1
ONBUILD RUN echo triggered
SHELL ["/bin/sh", "-ec"]
CMD echo hi
ENTRYPOINT ["/bin/echo"]
"#,
        )],
    );
    let err = build_ok(&s, &ctx, &["-t", "cfg:1"]);
    assert!(err.contains("MAINTAINER"), "deprecation warning: {err}");
    let c = inspect(&s, "cfg:1");
    let cfg = &c["Config"];
    assert_eq!(
        cfg["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=3",
            "B=two words"
        ])
    );
    assert_eq!(cfg["Labels"]["version"], "1.0");
    assert_eq!(cfg["Labels"]["description"], "demo");
    let ports: Vec<&String> = cfg["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    assert!(cfg["Volumes"]["/data"].is_object());
    assert_eq!(cfg["User"], "nobody");
    assert_eq!(cfg["WorkingDir"], "/srv/sub");
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(
        cfg["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
            "Interval": 30_000_000_000i64, "Timeout": 5_000_000_000i64, "Retries": 2})
    );
    assert_eq!(cfg["OnBuild"], serde_json::json!(["RUN echo triggered"]));
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/echo"]));
    // CMD was set in this stage, so ENTRYPOINT keeps it; shell form goes through SHELL.
    assert_eq!(cfg["Cmd"], serde_json::json!(["/bin/sh", "-ec", "echo hi"]));
    assert_eq!(c["Author"], "someone@example.com");
    // History: one entry per instruction but ONBUILD (as BuildKit); only WORKDIR made layers.
    let history = c["History"].as_array().unwrap();
    assert_eq!(history.len(), 1 + 14);
    let created_by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    for expected in [
        "ENV A=3",
        "EXPOSE map[53/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]",
        "VOLUME [/data]",
        "SHELL [/bin/sh -ec]",
        "CMD [\"/bin/sh\" \"-ec\" \"echo hi\"]",
        "HEALTHCHECK {Test:[CMD-SHELL wget -q localhost || exit 1] Interval:30s Timeout:5s StartPeriod:0s StartInterval:0s Retries:2}",
    ] {
        assert!(
            created_by.contains(&expected),
            "{expected:?} in {created_by:#?}"
        );
    }
    let layers = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(layers, c["RootFS"]["Layers"].as_array().unwrap().len());
    // The WORKDIR directories exist, owned by the USER in effect.
    let out = s.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "",
        "cfg:1",
        "stat",
        "-c",
        "%u %n",
        "/srv",
        "/srv/sub",
    ]);
    assert_eq!(out, "65534 /srv\n65534 /srv/sub\n");
    // An ENTRYPOINT resets a CMD inherited from the base.
    let ctx2 = s.context(
        "ctx2",
        &[("Dockerfile", "FROM busybox\nENTRYPOINT [\"/bin/echo\"]\n")],
    );
    build_ok(&s, &ctx2, &["-t", "ep:1"]);
    assert!(inspect(&s, "ep:1")["Config"]["Cmd"].is_null());
    s.assert_clean();
}

#[test]
fn copy_follows_docker_rules_for_sources_and_destinations() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[
            (
                "Dockerfile",
                r#"FROM busybox
RUN echo 'app:x:1000:1001:app:/home/app:/bin/sh' >> /etc/passwd && echo 'staff:x:1001:' >> /etc/group
WORKDIR /w
COPY one.txt .
COPY one.txt renamed.txt
COPY dir /contents/
COPY *.md /docs/
COPY one.txt dir/nested/two.txt /multi/
COPY --chown=app:staff --chmod=u+x,go-r one.txt /owned/x
COPY --chmod=0640 one.txt /octal
COPY link-to-one /followed
"#,
            ),
            ("one.txt", "one\n"),
            ("dir/a", "a\n"),
            ("dir/nested/two.txt", "two\n"),
            ("x.md", "x\n"),
            ("y.md", "y\n"),
            ("secret.key", "never copied\n"),
            (".dockerignore", "secret.key\n"),
        ]);
    std::os::unix::fs::symlink("one.txt", ctx.join("link-to-one")).unwrap();
    std::os::unix::fs::symlink("a", ctx.join("dir/link")).unwrap();
    build_ok(&s, &ctx, &["-t", "copy:1"]);
    let out = sh(
        &s,
        "copy:1",
        "cd /; for f in w/one.txt w/renamed.txt contents/a contents/nested/two.txt contents/link docs/x.md docs/y.md multi/one.txt multi/two.txt owned/x octal followed; do stat -c '%n %F %a %u:%g' $f; done; readlink contents/link; ls -d /contents/dir 2>&1 | head -1; cat /followed",
    );
    let expected = "\
w/one.txt regular file 644 0:0
w/renamed.txt regular file 644 0:0
contents/a regular file 644 0:0
contents/nested/two.txt regular file 644 0:0
contents/link symbolic link 777 0:0
docs/x.md regular file 644 0:0
docs/y.md regular file 644 0:0
multi/one.txt regular file 644 0:0
multi/two.txt regular file 644 0:0
owned/x regular file 700 1000:1001
octal regular file 640 0:0
followed regular file 644 0:0
a
ls: /contents/dir: No such file or directory
one
";
    assert_eq!(out, expected);
    // The directory COPY made for --chown is the user's; .dockerignore'd files never land.
    let owned = sh(
        &s,
        "copy:1",
        "stat -c '%u:%g' /owned; ls / | grep -c secret || true",
    );
    assert_eq!(owned, "1000:1001\n0\n");
    // Several sources need a directory destination.
    let bad = s.context(
        "bad",
        &[
            ("Dockerfile", "FROM busybox\nCOPY a b /nodir\n"),
            ("a", ""),
            ("b", ""),
        ],
    );
    let b = build(&s, &bad, &[]);
    assert_eq!(b.code, 1);
    assert!(
        b.stderr.contains("must be a directory and end with a /"),
        "{}",
        b.stderr
    );
    assert!(b.stderr.contains("Dockerfile:2"), "{}", b.stderr);
    s.assert_clean();
}

#[test]
fn copy_never_leaves_the_context_or_the_image_root() {
    let Some(s) = ROOT.sandbox() else { return };
    let host_dir = s.path().join("host-target");
    std::fs::create_dir_all(&host_dir).unwrap();
    let ctx = s.context("ctx", &[
            (
                "Dockerfile",
                &format!(
                    "FROM busybox\nRUN ln -s {} /escape && ln -s ../../../../../.. /up\nCOPY f /escape/\nCOPY f /up/{}/g\n",
                    host_dir.display(),
                    host_dir.display().to_string().trim_start_matches('/')
                ),
            ),
            ("f", "data\n"),
        ]);
    build_ok(&s, &ctx, &["-t", "esc:1"]);
    assert_eq!(
        std::fs::read_dir(&host_dir).unwrap().count(),
        0,
        "nothing written through the image's symlinks onto the host"
    );
    // Both writes landed inside the image, where the symlinks point within it.
    let inside = sh(&s, "esc:1", &format!("cat {0}/f {0}/g", host_dir.display()));
    assert_eq!(inside, "data\ndata\n");
    // A context symlink pointing out of the context resolves inside it: not found.
    let ctx2 = s.context("ctx2", &[("Dockerfile", "FROM busybox\nCOPY out /x\n")]);
    std::os::unix::fs::symlink("/etc/passwd", ctx2.join("out")).unwrap();
    let b = build(&s, &ctx2, &[]);
    assert_eq!(b.code, 1, "{}", b.stderr);
    s.assert_clean();
}

#[test]
fn run_output_failures_and_whiteouts() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[(
            "Dockerfile",
            "FROM busybox\nRUN echo to-stdout; echo to-stderr >&2\nRUN rm /bin/vi && rm -r /home && mkdir /opq && touch /opq/f\nRUN [\"/bin/sh\", \"-c\", \"echo exec form\"]\n",
        )]);
    let err = build_ok(&s, &ctx, &["-t", "run:1"]);
    assert!(
        err.contains("#1 to-stdout") && err.contains("#1 to-stderr"),
        "{err}"
    );
    assert!(err.contains("exec form"), "{err}");
    let check = sh(&s, "run:1", "ls /bin/vi /home 2>&1 | wc -l; ls /opq");
    assert_eq!(check, "2\nf\n");
    // The whiteouts are OCI whiteouts in the layer; no mount stub (/etc/hosts, /proc) leaked.
    let info = inspect(&s, "run:1");
    let layers = info["RootFS"]["Layers"].as_array().unwrap().clone();
    let blob = |d: &Value| {
        s.store()
            .join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let names = |d: &Value| -> Vec<String> {
        tar::Archive::new(std::fs::File::open(blob(d)).unwrap())
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    };
    // Layer 0 is busybox; RUN 1 and 3 changed no file: each made a layer of an empty tar
    // (as BuildKit, whose images show the same diff-id), with nothing of the mount stubs.
    assert_eq!(layers.len(), 4, "one layer per RUN");
    const EMPTY_TAR: &str =
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    assert_eq!(layers[1], EMPTY_TAR);
    assert_eq!(layers[3], EMPTY_TAR);
    assert!(names(&layers[1]).is_empty());
    let l = names(&layers[2]);
    assert!(l.contains(&"bin/.wh.vi".to_owned()), "{l:?}");
    assert!(l.contains(&".wh.home".to_owned()), "{l:?}");
    assert!(
        l.iter()
            .all(|n| !n.starts_with("etc") && !n.starts_with("proc")),
        "{l:?}"
    );
    // A failing step: exit 1, the command, its exit code, the line.
    let bad = s.context(
        "bad",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo before\nRUN echo about to fail; exit 7\n",
        )],
    );
    let b = build(&s, &bad, &[]);
    assert_eq!(b.code, 1);
    assert!(b.stderr.contains("about to fail"), "{}", b.stderr);
    assert!(b.stderr.contains("exit code: 7"), "{}", b.stderr);
    assert!(b.stderr.contains("Dockerfile:3"), "{}", b.stderr);
    // A syntax error is bad input: exit 2 with the line.
    let syntax = s.context("syntax", &[("Dockerfile", "FROM busybox\nRUNN x\n")]);
    let b = build(&s, &syntax, &[]);
    assert_eq!(b.code, 2, "{}", b.stderr);
    assert!(b.stderr.contains("Dockerfile:2"), "{}", b.stderr);
    s.assert_clean();
}

#[test]
fn the_cache_reuses_unchanged_steps_and_only_those() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY a.txt /\nRUN cat /a.txt > /copy\nARG LATE=1\nRUN echo $LATE > /late\nCOPY b.txt /\n",
            ),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ]);
    let first = build_ok(&s, &ctx, &["-t", "c:1"]);
    assert!(!first.contains("CACHED"));
    let id = image_id(&s, "c:1");
    // Unchanged: every layer step cached, the same image.
    let again = build_ok(&s, &ctx, &["-t", "c:1"]);
    assert_eq!(again.matches("CACHED").count(), 4, "{again}");
    assert!(again.contains("0 steps run"), "{again}");
    assert_eq!(image_id(&s, "c:1"), id);
    // touch only: still cached (contents, not times, are the key).
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(ctx.join("a.txt"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    let touched = build_ok(&s, &ctx, &["-t", "c:1"]);
    assert!(touched.contains("0 steps run"), "{touched}");
    // A build arg only the second RUN sees: the steps before it stay cached.
    let arg = build_ok(&s, &ctx, &["-t", "c:2", "--build-arg", "LATE=2"]);
    assert!(arg.contains("2 steps run, 2 cached"), "{arg}");
    assert_eq!(sh(&s, "c:2", "cat /late"), "2\n");
    // b.txt changed: only the last COPY reruns.
    std::fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let changed = build_ok(&s, &ctx, &["-t", "c:3"]);
    assert!(changed.contains("1 steps run, 3 cached"), "{changed}");
    // a.txt changed: everything from its COPY on.
    std::fs::write(ctx.join("a.txt"), "a2\n").unwrap();
    let changed = build_ok(&s, &ctx, &["-t", "c:4"]);
    assert!(changed.contains("4 steps run, 0 cached"), "{changed}");
    assert_eq!(sh(&s, "c:4", "cat /copy"), "a2\n");
    // --no-cache runs everything.
    let none = build_ok(&s, &ctx, &["-t", "c:5", "--no-cache"]);
    assert!(none.contains("4 steps run"), "{none}");
    s.assert_clean();
}

#[test]
fn multi_stage_targets_parallel_stages_and_copy_from() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            r#"FROM busybox AS base
ENV FROM_BASE=yes
RUN mkdir /out && echo base > /out/base

FROM base AS left
RUN sleep 1 && echo left > /out/left

FROM base AS right
RUN sleep 1 && echo right > /out/right

FROM busybox AS unused
RUN exit 1

FROM busybox
COPY --from=left /out/left /res/
COPY --from=right /out /res/
COPY --from=base /out/base /res/base
RUN env | grep FROM_BASE || echo no-inherited-env
"#,
        )],
    );
    let started = std::time::Instant::now();
    let err = build_ok(&s, &ctx, &["-t", "ms:1"]);
    let took = started.elapsed();
    assert!(!err.contains("[unused"), "skipped stages do not run: {err}");
    assert!(err.contains("no-inherited-env"), "{err}");
    // left and right (1 s each) ran side by side.
    assert!(took.as_secs_f64() < 1.9, "stages in parallel: {took:?}");
    assert_eq!(
        sh(&s, "ms:1", "cat /res/left /res/right /res/base; ls /res"),
        "left\nright\nbase\nbase\nleft\nright\n"
    );
    // --target builds a stage and what it needs; its ENV came from `base`.
    build_ok(&s, &ctx, &["-t", "ms:left", "--target", "left"]);
    assert_eq!(
        sh(&s, "ms:left", "echo $FROM_BASE; ls /out"),
        "yes\nbase\nleft\n"
    );
    s.assert_clean();
}

#[test]
fn add_extracts_local_archives_and_onbuild_runs_in_children() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[
            (
                "Dockerfile",
                "FROM busybox\nADD files.tar.gz /unpacked/\nADD plain.txt /plain.txt\nONBUILD RUN touch /onbuilt\n",
            ),
            ("plain.txt", "plain\n"),
        ]);
    {
        let f = std::fs::File::create(ctx.join("files.tar.gz")).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o751);
        h.set_uid(12);
        h.set_gid(34);
        h.set_cksum();
        t.append_data(&mut h, "inner/f", &b"in\n"[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    // bzip2 and xz archives too (made with tar's own compressors), and a gzip file that is
    // not a tar is copied as it is.
    let inner = ctx.join("inner");
    std::fs::create_dir_all(inner.join("d")).unwrap();
    std::fs::write(inner.join("d/x"), "x\n").unwrap();
    for (flag, name) in [("-cjf", "a.tar.bz2"), ("-cJf", "a.tar.xz")] {
        let st = std::process::Command::new("tar")
            .args([flag, name, "-C", "inner", "d"])
            .current_dir(&ctx)
            .status()
            .unwrap();
        assert!(st.success());
    }
    {
        let f = std::fs::File::create(ctx.join("note.gz")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"not a tar\n").unwrap();
        gz.finish().unwrap();
    }
    let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        df + "ADD a.tar.bz2 /bz/\nADD a.tar.xz /xz/\nADD note.gz /notes/\n",
    )
    .unwrap();
    build_ok(&s, &ctx, &["-t", "add:1"]);
    assert_eq!(
        sh(&s, "add:1", "cat /bz/d/x /xz/d/x; ls /notes"),
        "x\nx\nnote.gz\n"
    );
    assert_eq!(
        sh(
            &s,
            "add:1",
            "stat -c '%a %u:%g' /unpacked/inner/f; cat /unpacked/inner/f /plain.txt; ls /onbuilt 2>&1 | wc -l"
        ),
        "751 12:34\nin\nplain\n1\n"
    );
    let child = s.context("child", &[("Dockerfile", "FROM add:1\nRUN ls /onbuilt\n")]);
    build_ok(&s, &child, &["-t", "child:1"]);
    assert_eq!(sh(&s, "child:1", "ls /onbuilt"), "/onbuilt\n");
    assert!(inspect(&s, "child:1")["Config"]["OnBuild"].is_null());
    s.assert_clean();
}

#[test]
fn source_date_epoch_makes_no_cache_builds_reproducible() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY f /f\nRUN echo built > /out\nLABEL x=y\n",
            ),
            ("f", "f\n"),
        ],
    );
    build_ok(
        &s,
        &ctx,
        &[
            "-t",
            "r:1",
            "--no-cache",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    build_ok(
        &s,
        &ctx,
        &["-t", "r:2", "--no-cache", "--timestamp", "1700000000"],
    );
    let (a, b) = (inspect(&s, "r:1"), inspect(&s, "r:2"));
    assert_eq!(a["Id"], b["Id"]);
    assert_eq!(a["Descriptor"]["digest"], b["Descriptor"]["digest"]);
    assert_eq!(a["Created"], "2023-11-14T22:13:20Z");
    let layer = last_layer(&s, "r:1");
    assert!(layer.iter().any(|l| l.ends_with(" out")), "{layer:?}");
    s.assert_clean();
}

#[test]
fn built_images_save_and_interoperate() {
    let Some(s) = ROOT.sandbox() else { return };
    let umoci = std::process::Command::new("umoci")
        .arg("--version")
        .output();
    if !berth_test_support::needs("umoci (scripts/test installs it)", umoci.is_ok()) {
        return;
    }
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo hi > /hi\nCMD [\"cat\", \"/hi\"]\n",
        )],
    );
    build_ok(&s, &ctx, &["-t", "io:1"]);
    assert_eq!(s.ok(&["run", "--rm", "io:1"]), "hi\n");
    let bundle = s.path().join("bundle");
    let out = s
        .tool_cmd("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:docker.io/library/io:1", s.store().display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert_success(&out, "umoci unpack");
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hi")).unwrap(),
        "hi\n"
    );
}

#[test]
fn run_mounts_cache_bind_tmpfs_and_secrets() {
    let Some(s) = ROOT.sandbox() else { return };
    let secret_value = "s3cr3t-value-0123456789";
    let secret_file = s.path().join("token.txt");
    std::fs::write(&secret_file, secret_value).unwrap();
    let ctx = s.context("ctx", &[
            (
                "Dockerfile",
                r#"FROM busybox AS tools
RUN mkdir /out && echo from-stage > /out/tool

FROM busybox
ARG ROUND=1
RUN --mount=type=cache,target=/var/cache/app echo "round $ROUND" >> /var/cache/app/log && cat /var/cache/app/log
RUN --mount=type=bind,source=conf,target=/conf cat /conf/app.conf && ! touch /conf/new 2>/dev/null
RUN --mount=type=bind,from=tools,source=/out,target=/tools,rw cat /tools/tool && touch /tools/discarded
RUN --mount=type=tmpfs,target=/scratch echo temp > /scratch/x && grep -q '/scratch tmpfs' /proc/mounts
RUN --mount=type=secret,id=token,required sha256sum /run/secrets/token | grep -q SECRET_SHA && echo secret-ok
RUN --mount=type=secret,id=token,target=/etc/tok,mode=0440 stat -c '%a' /etc/tok
"#,
            ),
            ("conf/app.conf", "setting=1\n"),
        ]);
    let dockerfile = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    let sha = berth_oci::Digest::of(secret_value.as_bytes())
        .hex()
        .to_owned();
    std::fs::write(
        ctx.join("Dockerfile"),
        dockerfile.replace("SECRET_SHA", &sha),
    )
    .unwrap();
    let secret_arg = format!("id=token,src={}", secret_file.display());
    let err = build_ok(&s, &ctx, &["-t", "m:1", "--secret", &secret_arg]);
    assert!(err.contains("round 1"), "{err}");
    assert!(
        err.contains("setting=1") && err.contains("from-stage"),
        "{err}"
    );
    assert!(err.contains("secret-ok") && err.contains("440"), "{err}");
    // The cache mount persists between builds (and its contents are in no layer).
    let err = build_ok(
        &s,
        &ctx,
        &[
            "-t",
            "m:2",
            "--secret",
            &secret_arg,
            "--build-arg",
            "ROUND=2",
        ],
    );
    assert!(err.contains("round 1"), "{err}");
    assert!(err.contains("round 2"), "{err}");
    let files = sh(
        &s,
        "m:2",
        "ls -A /var/cache/app /run/secrets /scratch /tools /conf /etc/tok 2>/dev/null | wc -l",
    );
    assert_eq!(
        files, "0\n",
        "no mount target or cache content is in the image"
    );
    // The secret is in no file berth wrote: store, layers, configs, cache records.
    for entry in walkdir::WalkDir::new(s.store()).into_iter().flatten() {
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes
                    .windows(secret_value.len())
                    .any(|w| w == secret_value.as_bytes()),
                "the secret leaked into {}",
                entry.path().display()
            );
        }
    }
    assert!(
        !String::from_utf8_lossy(&s.run(&["history", "--no-trunc", "m:2"]).stdout)
            .contains(secret_value)
    );
    // A required secret that was not given: a clear error (when the step runs: a cached
    // step needs no secret, as in BuildKit).
    let b = build(&s, &ctx, &["--no-cache"]);
    assert_eq!(b.code, 1);
    assert!(
        b.stderr.contains("secret \"token\" is required"),
        "{}",
        b.stderr
    );
    // No secret file is left in /dev/shm.
    let left = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("berth-secret-"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0);
    s.assert_clean();
}

#[test]
fn copy_link_layers_are_reused_on_any_base_and_parents_keeps_paths() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[
            ("Dockerfile", "FROM busybox\nCOPY --link f /app/f\n"),
            (
                "Dockerfile.other",
                "FROM busybox\nRUN touch /other\nCOPY --link f /app/f\nCOPY --parents a/b/c.txt d/*.txt /p/\n",
            ),
            ("f", "f\n"),
            ("a/b/c.txt", "c\n"),
            ("d/e.txt", "e\n"),
        ]);
    build_ok(&s, &ctx, &["-t", "link:1"]);
    let other = ctx.join("Dockerfile.other");
    let err = build_ok(&s, &ctx, &["-t", "link:2", "-f", other.to_str().unwrap()]);
    assert!(
        err.contains("1 cached"),
        "the --link layer is reused on another base: {err}"
    );
    assert_eq!(
        sh(
            &s,
            "link:2",
            "cat /app/f; ls /other; find /p -type f | sort"
        ),
        "f\n/other\n/p/a/b/c.txt\n/p/d/e.txt\n"
    );
    let layer = last_layer(&s, "link:1");
    assert_eq!(layer.len(), 2, "only the copied entries: {layer:?}");
    s.assert_clean();
}

#[test]
fn prune_build_cache_keeps_what_tagged_images_need() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,target=/c echo x > /c/f && echo kept > /kept\nRUN echo gone > /gone\n",
        )]);
    build_ok(&s, &ctx, &["-t", "p:1"]);
    // A recent cache survives `--filter until=24h`.
    let out = s.ok(&[
        "system",
        "prune",
        "-f",
        "--build-cache",
        "--filter",
        "until=24h",
    ]);
    assert!(out.contains("0 build cache record(s)"), "{out}");
    assert!(build_ok(&s, &ctx, &["-t", "p:1"]).contains("0 steps run"));
    let out = s.ok(&["system", "prune", "-f", "--build-cache"]);
    assert!(
        out.contains("2 build cache record(s), 1 cache mount(s)"),
        "{out}"
    );
    // The image still runs; the next build runs its steps again.
    assert_eq!(sh(&s, "p:1", "cat /kept /gone"), "kept\ngone\n");
    assert!(build_ok(&s, &ctx, &["-t", "p:1"]).contains("2 steps run"));
    s.assert_clean();
}

#[test]
fn output_writes_oci_docker_and_local_results() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mkdir /made && echo out > /made/file && chmod 4755 /made/file\n",
        )],
    );
    let oci = s.path().join("img-oci.tar");
    let docker = s.path().join("img-docker.tar");
    let local = s.path().join("rootfs-out");
    build_ok(
        &s,
        &ctx,
        &[
            "-t",
            "out:1",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            "--output",
            &format!("type=docker,dest={}", docker.display()),
            "-o",
            local.to_str().unwrap(),
        ],
    );
    let meta = std::fs::metadata(local.join("made/file")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o4755
    );
    assert!(local.join("bin/busybox").is_file());
    for (kind, file) in [("oci-archive", &oci), ("docker-archive", &docker)] {
        let out = s
            .tool_cmd("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("{kind}:{}", file.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = String::from_utf8_lossy(&out.stdout);
        if kind == "oci-archive" {
            assert!(raw.contains("tar+gzip"), "layers leave compressed: {raw}");
        }
    }
    // zstd on request: the layers leave as tar+zstd, and load back.
    let zst = s.path().join("img-zstd.tar");
    build_ok(
        &s,
        &ctx,
        &[
            "-t",
            "out:1",
            "--compression",
            "zstd",
            "-o",
            &format!("type=oci,dest={}", zst.display()),
        ],
    );
    let raw = s
        .tool_cmd("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", zst.display()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&raw.stdout).contains("tar+zstd"));
    // The archives load into another store and run.
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    other.ok(&["load", "-i", zst.to_str().unwrap()]);
    assert_eq!(
        other.ok(&["run", "--rm", "out:1", "cat", "/made/file"]),
        "out\n"
    );
    other.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(
        other.ok(&["run", "--rm", "out:1", "cat", "/made/file"]),
        "out\n"
    );
    other.assert_clean();
    s.assert_clean();
}

/// A one-file HTTP server on a free loopback port: `GET /<name>` answers `body` with a fixed
/// Last-Modified; anything else 404. Serves `count` requests, then stops.
fn http_server(body: Vec<u8>, count: usize) -> u16 {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
            }
            let found = line.contains(" /files/");
            let head = if found {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(head.as_bytes());
            if found {
                let _ = stream.write_all(&body);
            }
        }
    });
    port
}

#[test]
fn add_downloads_remote_files_with_checksums() {
    let Some(s) = ROOT.sandbox() else { return };
    // A tar, to show remote archives are never extracted.
    let mut tar_bytes = Vec::new();
    {
        let mut t = tar::Builder::new(&mut tar_bytes);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "inner", &b"x\n"[..]).unwrap();
        t.finish().unwrap();
    }
    let sha = berth_oci::Digest::of(&tar_bytes).to_string();
    let port = http_server(tar_bytes.clone(), 10);
    let ctx = s.context("ctx", &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nADD http://127.0.0.1:{port}/files/arch.tar /dl/\nADD --checksum={sha} http://127.0.0.1:{port}/files/arch.tar?x=1 /named.tar\n"
            ),
        )]);
    // Downloads are berth's own, on the host's network (under `--network none` a Dockerfile
    // may download nothing: cli/tests/entitlements.rs).
    build_ok(&s, &ctx, &["-t", "url:1"]);
    assert_eq!(
        sh(
            &s,
            "url:1",
            "stat -c '%a %u %Y %s' /dl/arch.tar /named.tar; ls /dl"
        ),
        format!(
            "600 0 1700000000 {0}\n600 0 1700000000 {0}\narch.tar\n",
            tar_bytes.len()
        )
    );
    // A wrong checksum fails the build and says so.
    let bad = s.context("bad", &[(
            "Dockerfile",
            &format!(
                "FROM busybox\nADD --checksum=sha256:{} http://127.0.0.1:{port}/files/arch.tar /x\n",
                "0".repeat(64)
            ),
        )]);
    let b = build(&s, &bad, &[]);
    assert_eq!(b.code, 1);
    assert!(b.stderr.contains("checksum mismatch"), "{}", b.stderr);
    // A missing file: the server's answer.
    let missing = s.context(
        "missing",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD http://127.0.0.1:{port}/nothing /x\n"),
        )],
    );
    let b = build(&s, &missing, &[]);
    assert!(b.stderr.contains("404"), "{}", b.stderr);
    s.assert_clean();
}

#[test]
fn labels_iidfile_log_file_no_cache_filter_exclude_heredocs_and_healthcheck_none() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[
            (
                "Dockerfile",
                "FROM busybox AS base\nHEALTHCHECK CMD true\nRUN echo base-ran\n\nFROM base\nHEALTHCHECK NONE\nCOPY --exclude=*.log --exclude=skip dir /d/\nCOPY <<EOT /made-by-heredoc\nline one\nline two\nEOT\nRUN for i in 1 2 3; do echo log-line-$i; done\n",
            ),
            ("dir/keep.txt", "k\n"),
            ("dir/noise.log", "n\n"),
            ("dir/skip/x", "x\n"),
        ]);
    let iid = s.path().join("iid");
    let log = s.path().join("build.log");
    build_ok(
        &s,
        &ctx,
        &[
            "-t",
            "misc:1",
            "--label",
            "org.example.team=infra",
            "--iidfile",
            iid.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
        ],
    );
    let info = inspect(&s, "misc:1");
    assert_eq!(info["Config"]["Labels"]["org.example.team"], "infra");
    assert_eq!(
        info["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["NONE"])
    );
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        info["Id"].as_str().unwrap()
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    for i in 1..=3 {
        assert!(logged.contains(&format!("log-line-{i}")), "{logged}");
    }
    assert_eq!(
        sh(&s, "misc:1", "find /d | sort; cat /made-by-heredoc"),
        "/d\n/d/keep.txt\nline one\nline two\n"
    );
    // --no-cache-filter reruns only the named stage's steps.
    let again = build_ok(&s, &ctx, &["-t", "misc:1", "--no-cache-filter", "base"]);
    assert!(
        again.contains("base-ran"),
        "the base stage ran again: {again}"
    );
    assert!(again.contains("1 steps run"), "{again}");
    s.assert_clean();
}

#[test]
fn platform_args_and_from_platform() {
    let Some(s) = ROOT.sandbox() else { return };
    let host = if cfg!(target_arch = "x86_64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let ctx = s.context("ctx", &[(
            "Dockerfile",
            "ARG TARGETPLATFORM\nFROM --platform=$BUILDPLATFORM busybox\nARG TARGETPLATFORM\nARG TARGETARCH\nRUN echo \"$TARGETPLATFORM $TARGETARCH\" > /platform\n",
        )]);
    build_ok(&s, &ctx, &["-t", "plat:1", "--platform", host]);
    let arch = host.split('/').nth(1).unwrap();
    assert_eq!(
        sh(&s, "plat:1", "cat /platform"),
        format!("{host} {arch}\n")
    );
    assert_eq!(inspect(&s, "plat:1")["Architecture"], arch);
}

/// The upper-cased lines of a cache mount's log, as the last step printed them.
fn logged(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|w| w.starts_with("START-") || w.starts_with("END-"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn cache_mount_sharing_modes_shared_locked_and_private() {
    let Some(s) = ROOT.sandbox() else { return };
    for mode in ["shared", "locked", "private"] {
        let step = |name: &str| {
            format!(
                "FROM busybox AS {name}\nRUN --mount=type=cache,id=c-{mode},target=/c,sharing={mode} echo start-{name} >> /c/log && sleep 1 && echo end-{name} >> /c/log && touch /done-{name}\n"
            )
        };
        let dockerfile = format!(
            "{}{}FROM busybox\nCOPY --from=a /done-a /\nCOPY --from=b /done-b /\nRUN --mount=type=cache,id=c-{mode},target=/c tr a-z A-Z < /c/log\n",
            step("a"),
            step("b")
        );
        let ctx = s.context(mode, &[("Dockerfile", &dockerfile)]);
        let err = build_ok(&s, &ctx, &["-t", &format!("share:{mode}")]);
        let log = logged(&err);
        match mode {
            // Both steps ran at once in one directory: both started before either ended.
            "shared" => {
                assert_eq!(log.len(), 4, "{err}");
                assert!(log[..2].iter().all(|l| l.starts_with("START-")), "{log:?}");
            }
            // One after the other in one directory.
            "locked" => {
                assert_eq!(log.len(), 4, "{err}");
                assert_eq!(log[0].replace("START", "END"), log[1], "{log:?}");
                assert_eq!(log[2].replace("START", "END"), log[3], "{log:?}");
            }
            // The second step found the cache busy and got a fresh directory: the kept
            // cache has one step's lines.
            _ => {
                assert_eq!(log.len(), 2, "{err}");
                assert_eq!(log[0].replace("START", "END"), log[1], "{log:?}");
            }
        }
    }
    s.assert_clean();
}

#[test]
fn from_images_and_indexes_binds_keyed_by_content_and_zstd_add() {
    let Some(s) = ROOT.sandbox() else { return };
    let other = s.context(
        "other",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo other-1 > /only-in-other\n",
        )],
    );
    build_ok(&s, &other, &["-t", "other:1"]);
    let ctx = s.context(
        "ctx",
        &[
            (
                "Dockerfile",
                r#"FROM busybox AS first
RUN echo first > /first

FROM busybox
COPY --from=0 /first /from-index
COPY --from=other:1 /only-in-other /from-image
RUN --mount=type=bind,from=other:1,target=/o cat /o/only-in-other > /bound-image
RUN --mount=type=bind,source=conf,target=/conf cat /conf/app.conf > /bound-context
ADD a.tar.zst /zst/
"#,
            ),
            ("conf/app.conf", "setting=1\n"),
        ],
    );
    {
        let f = std::fs::File::create(ctx.join("a.tar.zst")).unwrap();
        let z = zstd::stream::write::Encoder::new(f, 3).unwrap();
        let mut t = tar::Builder::new(z);
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o640);
        h.set_cksum();
        t.append_data(&mut h, "dir/zf", &b"zstd\n"[..]).unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    build_ok(&s, &ctx, &["-t", "from:1"]);
    let show = "cat /from-index /from-image /bound-image /bound-context /zst/dir/zf; stat -c %a /zst/dir/zf; ls /o /conf 2>/dev/null | wc -l";
    assert_eq!(
        sh(&s, "from:1", show),
        "first\nother-1\nother-1\nsetting=1\nzstd\n640\n0\n"
    );
    // A bind mount's source is an input of its step: a new `other:1` and a changed context
    // file re-run the steps that mount them (as BuildKit), and nothing else changes.
    std::fs::write(
        other.join("Dockerfile"),
        "FROM busybox\nRUN echo other-2 > /only-in-other\n",
    )
    .unwrap();
    build_ok(&s, &other, &["-t", "other:1"]);
    std::fs::write(ctx.join("conf/app.conf"), "setting=2\n").unwrap();
    let err = build_ok(&s, &ctx, &["-t", "from:2"]);
    assert_eq!(
        sh(&s, "from:2", show),
        "first\nother-2\nother-2\nsetting=2\nzstd\n640\n0\n"
    );
    assert!(err.contains("CACHED"), "the first stage is cached: {err}");
    let again = build_ok(&s, &ctx, &["-t", "from:3"]);
    assert_eq!(image_id(&s, "from:3"), image_id(&s, "from:2"), "{again}");
    assert!(again.contains("0 steps run"), "{again}");
    s.assert_clean();
}

#[test]
fn tty_progress_under_tmux_shows_running_steps_output_and_cached_steps() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::Tmux::needed() {
        return;
    }
    let ctx = s.context("ctx", &[(
            "Dockerfile",
            "FROM busybox\nRUN for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 0.4; done\nRUN echo second\n",
        )]);
    for round in 0..2 {
        let rc = s.path().join(format!("rc-{round}"));
        // `--progress auto` (the default): stderr is tmux's terminal, so the live view.
        let term = berth_test_support::Tmux::start(
            &format!("build-{round}"),
            &format!(
                "BERTH_ROOT={} {} build -t tty:1 {}; echo $? > {}; sleep 60",
                s.store().display(),
                env!("CARGO_BIN_EXE_berth"),
                ctx.display(),
                rc.display()
            ),
            120,
            30,
        );
        let running = term.wait(std::time::Duration::from_secs(10), |screen| {
            screen.contains("| tick-") || rc.exists()
        });
        term.wait(std::time::Duration::from_secs(10), |_| rc.exists());
        let end = term.wait(std::time::Duration::from_secs(2), |screen| {
            screen.contains("built sha256:")
        });
        assert_eq!(
            std::fs::read_to_string(&rc).unwrap_or_default().trim(),
            "0",
            "{end}"
        );
        assert!(end.contains("built sha256:"), "the closing line:\n{end}");
        if round == 0 {
            // While the step ran: its title, the running time, and its last output lines
            // under it (at most three).
            assert!(running.contains("RUN for i in"), "{running}");
            let ticks = running
                .lines()
                .filter(|l| l.trim_start().starts_with("| tick-"))
                .count();
            assert!((1..=3).contains(&ticks), "{running}");
            // Done: each step with its duration.
            let timed = end
                .lines()
                .filter(|l| l.trim_start().starts_with('=') && l.contains("s [stage-0 "))
                .count();
            assert_eq!(timed, 2, "{end}");
            assert!(!end.contains("CACHED"), "{end}");
        } else {
            assert_eq!(end.matches("CACHED").count(), 2, "{end}");
        }
    }
    s.assert_clean();
}

/// What comparing with BuildKit found (bench `compare`), kept as tests: ARG history as
/// written, valueless ARGs in the RUN prefix, a stage's ONBUILD run in its child stages, a
/// uid the image does not list running with group 0 and no other groups, and steps that
/// change nothing still making a (empty) layer.
#[test]
fn buildkit_details_found_by_comparing() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context("ctx", &[(
            "Dockerfile",
            "ARG G=1\nFROM busybox AS base\nONBUILD RUN touch /trig\n\nFROM base\nARG G\nARG UNSET\nRUN true\nUSER 1000\nRUN id > /tmp/id\nWORKDIR /tmp\n",
        )]);
    build_ok(&s, &ctx, &["-t", "bk:1", "--build-arg", "G=2"]);
    let c = inspect(&s, "bk:1");
    let created_by: Vec<&str> = c["History"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    for expected in [
        "RUN /bin/sh -c touch /trig # buildkit",
        "ARG G",
        "RUN |2 G=2 UNSET= /bin/sh -c true # buildkit",
        "WORKDIR /tmp",
    ] {
        assert!(
            created_by.contains(&expected),
            "{expected:?} in {created_by:#?}"
        );
    }
    assert!(c["Config"]["OnBuild"].is_null());
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "-u",
            "0",
            "bk:1",
            "sh",
            "-c",
            "ls /trig; cat /tmp/id"
        ]),
        "/trig\nuid=1000 gid=0(root)\n"
    );
    let layers = c["RootFS"]["Layers"].as_array().unwrap();
    // busybox, the trigger, RUN true, RUN id, WORKDIR /tmp (exists: an empty layer).
    assert_eq!(layers.len(), 5);
    assert_eq!(
        layers[4],
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    );
    s.assert_clean();
}

/// A build never makes an image berth (or Docker) would refuse to pull: on a base of 125
/// layers (the most an image may have), a layer step is refused before it runs; a config
/// step is still fine.
#[test]
fn a_build_stops_at_the_layer_limit() {
    let Some(s) = ROOT.sandbox() else { return };
    let archive = s.path().join("tall.tar");
    std::fs::write(&archive, TallImage::new(125).oci_archive("tall:125")).unwrap();
    s.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let ctx = s.context(
        "layers-126",
        &[
            ("a", "a"),
            ("Dockerfile", "FROM tall:125\nENV A=1\nCOPY a /a\n"),
        ],
    );
    let b = build(&s, &ctx, &["-t", "layers:126"]);
    assert_eq!(b.code, 1, "{}", b.stderr);
    assert!(
        b.stderr.contains("Dockerfile:3") && b.stderr.contains("more than 125 layers"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("committed"), "{}", b.stderr);
    s.assert_clean();
}
