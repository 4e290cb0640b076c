//! Dockerfiles whose images must be BuildKit's, each checked the way `bench compare` found
//! them differing: what a strict tool (umoci) accepts, RUN and COPY heredocs, hard links,
//! wildcard sources, and the small forms BuildKit accepts (`RUN` alone, `--chown` empty after
//! expansion, `from=` empty, `.dockerignore` exceptions under an excluded directory).

use std::path::Path;

use berth_test_support::{Sandbox, Tier, assert_success, tool};
use serde_json::Value;

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

fn build_ok(s: &Sandbox, ctx: &Path, tag: &str) {
    let out = s.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        tag,
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out, "build");
}

fn sh(s: &Sandbox, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// The image's manifest and config, as the store holds them.
fn manifest_and_config(s: &Sandbox, image: &str) -> (Value, Value) {
    let image = format!("docker.io/library/{image}");
    let raw: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci:{}:{image}", s.store().display()),
        ],
        s.path(),
    ))
    .unwrap();
    let config: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci:{}:{image}", s.store().display()),
        ],
        s.path(),
    ))
    .unwrap();
    (raw, config)
}

/// `umoci unpack` of the image saved as an OCI archive: the strictest reader at hand.
fn umoci_unpacks(s: &Sandbox, image: &str) {
    let dir = s
        .path()
        .join(format!("umoci-{}", image.replace([':', '/'], "-")));
    std::fs::create_dir_all(dir.join("layout")).unwrap();
    s.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        dir.join("x.tar").to_str().unwrap(),
        image,
    ]);
    tool("tar", &["-C", "layout", "-xf", "x.tar"], &dir);
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("layout/index.json")).unwrap()).unwrap();
    let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_owned();
    tool(
        "umoci",
        &["unpack", "--image", &format!("layout:{name}"), "bundle"],
        &dir,
    );
}

#[test]
fn scratch_images_and_docker_typed_bases_make_images_umoci_accepts() {
    let Some(s) = ROOT.sandbox() else { return };
    // FROM scratch: the config's rootfs.type is "layers".
    let ctx = s.context(
        "scratch",
        &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x\n")],
    );
    build_ok(&s, &ctx, "scratch:1");
    let (manifest, config) = manifest_and_config(&s, "scratch:1");
    assert_eq!(config["rootfs"]["type"], "layers", "{config}");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    umoci_unpacks(&s, "scratch:1");

    // A base that came with Docker's media types: pushed, copied by skopeo as Docker schema 2,
    // pulled back. The image built on it lists only OCI types.
    let registry = berth_test_support::registry::TestRegistry::start(Default::default());
    let host = &registry.host;
    s.ok(&["push", "busybox", &format!("{host}/base:oci")]);
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            &format!("docker://{host}/base:oci"),
            &format!("docker://{host}/base:docker"),
        ],
        s.path(),
    );
    s.ok(&["pull", &format!("{host}/base:docker")]);
    let pulled: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/base:docker"),
        ],
        s.path(),
    ))
    .unwrap();
    assert_eq!(
        pulled["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let ctx = s.context(
        "ondocker",
        &[(
            "Dockerfile",
            &format!("FROM {host}/base:docker\nRUN echo on > /on\n"),
        )],
    );
    build_ok(&s, &ctx, "ondocker:1");
    let (manifest, _) = manifest_and_config(&s, "ondocker:1");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    for layer in manifest["layers"].as_array().unwrap() {
        let t = layer["mediaType"].as_str().unwrap();
        assert!(
            t.starts_with("application/vnd.oci.image.layer."),
            "{manifest}"
        );
    }
    umoci_unpacks(&s, "ondocker:1");
    s.ok(&["push", "ondocker:1", &format!("{host}/ondocker:1")]);
    let pushed: Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{host}/ondocker:1"),
        ],
        s.path(),
    ))
    .unwrap();
    for layer in pushed["layers"].as_array().unwrap() {
        let t = layer["mediaType"].as_str().unwrap();
        assert!(
            t.starts_with("application/vnd.oci.image.layer."),
            "{pushed}"
        );
    }
    s.assert_clean();
}

#[test]
fn run_heredocs_feed_their_commands_and_copy_heredocs_expand() {
    let Some(s) = ROOT.sandbox() else { return };
    let dockerfile = r#"FROM busybox
ARG WHO=world
ENV GREETING=hello
RUN cat <<EOF > /cat
line one
$GREETING
EOF
RUN <<'EOF' sh -s -- arg1
echo "ran with $1" > /sh-s
EOF
RUN sh <<EOF
echo sh-stdin > /sh-stdin
EOF
RUN <<EOT sh
echo eot > /eot
EOT
RUN <<A cat > /a && <<B cat > /b
from a
A
from b
B
RUN <<EOF
echo whole > /whole
EOF
RUN <<EOF
#!/bin/sh
echo "shebang $0" > /shebang
EOF
RUN <<-EOF
	echo chomped > /chomped
	EOF
COPY <<EOF /expanded
$GREETING ${WHO} "quoted" 'single' \$GREETING
EOF
COPY <<"EOF" /literal
$GREETING ${WHO}
EOF
COPY <<-EOF /copy-chomped
	$WHO
	EOF
"#;
    let ctx = s.context("heredocs", &[("Dockerfile", dockerfile)]);
    build_ok(&s, &ctx, "heredocs:1");
    let out = sh(
        &s,
        "heredocs:1",
        "for f in /cat /sh-s /sh-stdin /eot /a /b /whole /shebang /chomped /expanded /literal /copy-chomped; do echo \"$f: $(cat $f)\"; done; ls /dev/pipes 2>&1 | head -1",
    );
    assert_eq!(
        out,
        "/cat: line one
hello
/sh-s: ran with arg1
/sh-stdin: sh-stdin
/eot: eot
/a: from a
/b: from b
/whole: whole
/shebang: shebang /dev/pipes/EOF
/chomped: chomped
/expanded: hello world \"quoted\" 'single' $GREETING
/literal: $GREETING ${WHO}
/copy-chomped: world
ls: /dev/pipes: No such file or directory
"
    );
    // A build arg changes an expanded COPY heredoc, so its step runs again.
    let out = s.run(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        "WHO=there",
        "-t",
        "heredocs:2",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out, "build with WHO=there");
    assert_eq!(
        sh(&s, "heredocs:2", "cat /expanded /copy-chomped"),
        "hello there \"quoted\" 'single' $GREETING\nthere\n"
    );
    s.assert_clean();
}

#[test]
fn hard_links_stay_linked_within_a_source() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "links",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY d /cd/\nCOPY s1 s2 /two/\nCOPY . /all/\nADD arch.tar /x/\n",
            ),
            ("d/a", "hi\n"),
            ("s1", "x\n"),
        ],
    );
    std::fs::create_dir_all(ctx.join("d/sub")).unwrap();
    std::fs::hard_link(ctx.join("d/a"), ctx.join("d/sub/b")).unwrap();
    std::fs::hard_link(ctx.join("d/a"), ctx.join("top")).unwrap();
    std::fs::hard_link(ctx.join("s1"), ctx.join("s2")).unwrap();
    tool("tar", &["-cf", "arch.tar", "d"], &ctx);
    build_ok(&s, &ctx, "links:1");
    let inode = |image: &str, a: &str, b: &str| {
        let out = sh(&s, image, &format!("stat -c %i {a} {b}"));
        let v: Vec<&str> = out.lines().collect();
        v[0] == v[1]
    };
    assert!(
        inode("links:1", "/cd/a", "/cd/sub/b"),
        "COPY of a directory"
    );
    assert!(
        inode("links:1", "/all/d/a", "/all/top"),
        "COPY of the context"
    );
    assert!(inode("links:1", "/all/s1", "/all/s2"));
    assert!(
        inode("links:1", "/x/d/a", "/x/d/sub/b"),
        "ADD of a local tar"
    );
    assert!(
        !inode("links:1", "/two/s1", "/two/s2"),
        "two sources are copied apart"
    );
    s.assert_clean();
}

#[test]
fn wildcards_and_the_small_forms_buildkit_accepts() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "wild",
        &[
            (
                "Dockerfile",
                "FROM busybox
COPY *.txt /testdir
COPY *.nomatch /empty/
COPY nothing* /none
COPY d* /dd
COPY top.txt d* /m/
RUN mkdir /ex && echo x > /ex/keep
COPY *.txt /ex
RUN
COPY --chown=${UNSET}:${UNSET} a.txt /owned
RUN --mount=type=bind,from=,target=/ctx cat /ctx/a.txt > /from-context
COPY . /c/
",
            ),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            ("top.txt", "t\n"),
            ("d1/f", "1\n"),
            ("d2/g", "2\n"),
            ("dir/sub1/f", "1\n"),
            ("dir/sub2/f", "2\n"),
            ("dir/keep/f", "k\n"),
            // BuildKit enters an excluded directory only for an exception that starts with its
            // path: `*/sub1*` re-includes nothing under `dir`.
            (".dockerignore", "dir\n!*/sub1*\n"),
        ],
    );
    build_ok(&s, &ctx, "wild:1");
    let out = sh(
        &s,
        "wild:1",
        "cd /; cat testdir; ls empty none 2>&1; ls dd m ex; stat -c '%u:%g' owned; cat from-context; ls c",
    );
    // The matches of `*.txt` (a, b, top) each went to /testdir: the last one is left.
    assert_eq!(
        out,
        "t
ls: empty: No such file or directory
ls: none: No such file or directory
dd:
f
g

ex:
a.txt
b.txt
keep
top.txt

m:
f
g
top.txt
0:0
a
Dockerfile
a.txt
b.txt
d1
d2
top.txt
"
    );
    s.assert_clean();
}

#[test]
fn run_mount_values_expand_args_and_env() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "mountargs",
        &[(
            "Dockerfile",
            "FROM busybox AS src\nRUN echo from-src > /hi\nFROM busybox\nARG S=src\nENV T=/m\nRUN --mount=from=$S,target=${T} cat /m/hi > /copied\n",
        )],
    );
    build_ok(&s, &ctx, "mountargs:1");
    assert_eq!(
        sh(&s, "mountargs:1", "cat /copied; ls /m 2>&1 || true"),
        "from-src\nls: /m: No such file or directory\n"
    );
    s.assert_clean();
}

#[test]
fn chown_with_an_empty_part_is_id_0() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "chownempty",
        &[
            (
                "Dockerfile",
                "FROM busybox AS owned
RUN echo s > /s && chown 5:6 /s
FROM busybox
COPY --chown=7: f /user-empty-group
COPY --chown=:7 f /group-only
COPY --chown=7 f /user-only
COPY --from=owned --chown=${UNSET}:${UNSET} /s /both-empty
COPY --from=owned /s /kept
",
            ),
            ("f", "x\n"),
        ],
    );
    build_ok(&s, &ctx, "chownempty:1");
    let out = sh(
        &s,
        "chownempty:1",
        "cd /; stat -c '%n %u:%g' user-empty-group group-only user-only both-empty kept",
    );
    assert_eq!(
        out,
        "user-empty-group 7:0\ngroup-only 0:7\nuser-only 7:7\nboth-empty 0:0\nkept 5:6\n"
    );
    s.assert_clean();
}

#[test]
fn fifos_are_not_part_of_the_context() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "fifoctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY regular /regular\nCOPY . /ctx/\n",
            ),
            ("regular", "r\n"),
        ],
    );
    nix::unistd::mkfifo(
        &ctx.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    build_ok(&s, &ctx, "fifoctx:1");
    assert_eq!(sh(&s, "fifoctx:1", "ls -A /ctx"), "Dockerfile\nregular\n");
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY pipe /x\n").unwrap();
    let out = s.run(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        berth_test_support::printed(&out).contains("\"/pipe\": not found"),
        "{}",
        berth_test_support::printed(&out)
    );
    s.assert_clean();
}

/// COPY onto a symlink in the image follows it inside the image, as BuildKit resolves the
/// destination: a link to a file is written through (the link stays), a dangling link
/// creates its target (and the target's missing parents), a link on the way or to a
/// directory leads into that directory. A link aimed above the root stays in the image.
#[test]
fn copy_onto_a_symlink_follows_it_inside_the_image() {
    let Some(s) = ROOT.sandbox() else { return };
    let host = s.path().display().to_string();
    let dockerfile = format!(
        "FROM busybox
RUN ln -s /etc/passwd /p && ln -s /nowhere/x /q && mkdir /real && ln -s /real /d \\
 && ln -s /real /dirlink && ln -s ../../../..{host}/escaped /up && ln -s /../..{host} /uphost
COPY f /p
COPY f /q
COPY f /d/
COPY dir /dirlink
COPY f /up
COPY f /uphost/
"
    );
    let ctx = s.context(
        "ontolink",
        &[
            ("Dockerfile", dockerfile.as_str()),
            ("f", "x\n"),
            ("dir/g", "g\n"),
        ],
    );
    build_ok(&s, &ctx, "ontolink:1");
    let out = sh(
        &s,
        "ontolink:1",
        &format!(
            "for l in /p /q /up; do readlink $l; done; cat /etc/passwd /nowhere/x /real/f /real/g {host}/escaped {host}/f; test -L /d && test -L /dirlink && echo links"
        ),
    );
    assert_eq!(
        out,
        format!("/etc/passwd\n/nowhere/x\n../../../..{host}/escaped\nx\nx\nx\ng\nx\nx\nlinks\n")
    );
    assert!(!s.path().join("escaped").exists(), "written on the host");
    assert!(!s.path().join("f").exists(), "written on the host");
    s.assert_clean();
}

/// `COPY --parents`: the sources' paths kept under the destination, from a `/./` pivot on
/// when there is one; `**` matches any number of directories, none included.
#[test]
fn copy_parents_keeps_paths_from_the_pivot_and_doublestar_matches_any_depth() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "parents",
        &[
            (
                "Dockerfile",
                "FROM busybox AS st
RUN mkdir -p /src/x/y && echo a > /src/a.txt && echo b > /src/x/b.txt \\
 && echo c > /src/x/y/c.txt && echo d > /src/x/y/d.md
FROM busybox
COPY --from=st --parents /src/**/*.txt /stage/
COPY --from=st --parents /src/./x/*.txt /stagepivot/
COPY --parents x/a.txt y/a.txt /parents/
COPY --parents ./x/./y/*.txt /pivot/
COPY --parents ./x/./y/a.txt /pivot1/
COPY --parents src/ /tree/
COPY --parents ./src/**/*.txt /deep/
COPY --parents src/x/*.txt /one-level/
",
            ),
            ("x/a.txt", "x/a\n"),
            ("x/y/a.txt", "x/y/a\n"),
            ("x/y/b.txt", "x/y/b\n"),
            ("y/a.txt", "y/a\n"),
            ("src/a.txt", "a\n"),
            ("src/x/b.txt", "b\n"),
            ("src/x/y/c.txt", "c\n"),
            ("src/x/y/d.md", "d\n"),
        ],
    );
    build_ok(&s, &ctx, "parents:1");
    let out = sh(
        &s,
        "parents:1",
        "cd /; find parents pivot pivot1 tree deep one-level stage stagepivot -type f | sort",
    );
    assert_eq!(
        out,
        "deep/src/a.txt
deep/src/x/b.txt
deep/src/x/y/c.txt
one-level/src/x/b.txt
parents/x/a.txt
parents/y/a.txt
pivot/y/a.txt
pivot/y/b.txt
pivot1/y/a.txt
stage/src/a.txt
stage/src/x/b.txt
stage/src/x/y/c.txt
stagepivot/x/b.txt
tree/src/a.txt
tree/src/x/b.txt
tree/src/x/y/c.txt
tree/src/x/y/d.md
"
    );
    s.assert_clean();
}

/// The config and history BuildKit's current frontend writes: the empty image's WorkingDir
/// and PATH, an absolute WORKDIR kept as written (the step running in the cleaned one), a
/// later ARG winning over an earlier ENV for the steps (not for the config), and RUN history
/// with the process's arguments (heredoc bodies included) and the stage's ARGs.
#[test]
fn config_and_history_are_the_current_frontends() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "scratch-config",
        &[("Dockerfile", "FROM scratch\nLABEL only=config\n")],
    );
    build_ok(&s, &ctx, "scratch-config:1");
    let (_, config) = manifest_and_config(&s, "scratch-config:1");
    assert_eq!(config["config"]["WorkingDir"], "/", "{config}");
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );

    let dockerfile = "FROM busybox
ENV V=env
ARG V=arg
ENV W=$V
RUN echo $V $W > /v
WORKDIR /w/x/..
RUN pwd > /pwd
RUN <<EOF
echo one > /one
EOF
HEALTHCHECK --interval=2s --start-interval=1s --retries=3 CMD true
";
    let ctx = s.context("history", &[("Dockerfile", dockerfile)]);
    build_ok(&s, &ctx, "history:1");
    assert_eq!(
        sh(&s, "history:1", "cat /v /pwd /one"),
        "arg arg\n/w\none\n"
    );
    let (_, config) = manifest_and_config(&s, "history:1");
    let c = &config["config"];
    assert_eq!(c["WorkingDir"], "/w/x/..", "{config}");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"V=env") && env.contains(&"W=arg"), "{env:?}");
    // skopeo's config has no Healthcheck (not an OCI field): berth's inspect shows the blob's.
    let inspected: Value = serde_json::from_str(&s.ok(&["inspect", "history:1"])).unwrap();
    assert_eq!(
        inspected[0]["Config"]["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000u64,
            "StartInterval": 1_000_000_000u64, "Retries": 3})
    );
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    let ours = &history[history.len() - 8..];
    assert_eq!(
        ours,
        [
            "ENV V=env",
            "ARG V=arg",
            "ENV W=arg",
            "RUN |1 V=arg /bin/sh -c echo $V $W > /v # buildkit",
            "WORKDIR /w/x/..",
            "RUN |1 V=arg /bin/sh -c pwd > /pwd # buildkit",
            "RUN |1 V=arg /bin/sh -c echo one > /one\n # buildkit",
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:2s Timeout:0s StartPeriod:0s StartInterval:1s Retries:3}",
        ]
    );
    s.assert_clean();
}
