//! Eight `berth build`s of overlapping Dockerfiles on one store at once, with `pull`, `rmi`
//! and `system prune` running beside them: every command succeeds, every image ID equals the
//! one a serial run in a fresh store gives, and `system check` is clean afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_test_support::{RegistryConfig, Sandbox, TestRegistry, assert_success};

const EPOCH: &str = "1700000000";

/// Dockerfile `i` of 8: a shared prefix, a step shared by half of them, its own steps, and
/// for odd `i` a second stage it copies from.
fn dockerfile(i: usize) -> String {
    let mut d = String::from(
        "FROM busybox AS base\nRUN echo common > /common && mkdir -p /opt/app\nCOPY shared.txt /opt/app/\n",
    );
    d.push_str(&format!("RUN echo group-{} > /group\n", i % 2));
    if i % 2 == 1 {
        d.push_str(&format!(
            "FROM busybox AS helper\nRUN echo helper-{i} > /helper\n\
             FROM base\nCOPY --from=helper /helper /opt/app/helper\n"
        ));
    }
    d.push_str(&format!(
        "COPY own-{i}.txt /opt/app/\nRUN --mount=type=cache,target=/cache echo {i} >> /cache/log && \
         cat /opt/app/own-{i}.txt > /opt/app/seen\nENV BUILD={i}\nCMD [\"cat\", \"/opt/app/seen\"]\n"
    ));
    d
}

fn contexts(dir: &Path) -> Vec<PathBuf> {
    (0..8)
        .map(|i| {
            let ctx = dir.join(format!("ctx{i}"));
            std::fs::create_dir_all(&ctx).unwrap();
            std::fs::write(ctx.join("Dockerfile"), dockerfile(i)).unwrap();
            std::fs::write(ctx.join("shared.txt"), "shared by all\n").unwrap();
            std::fs::write(ctx.join(format!("own-{i}.txt")), format!("own {i}\n")).unwrap();
            ctx
        })
        .collect()
}

fn berth(s: &Sandbox) -> Command {
    let mut c = s.cmd();
    c.env("SOURCE_DATE_EPOCH", EPOCH);
    c
}

fn finished(what: &str, child: Child) {
    assert_success(&child.wait_with_output().unwrap(), what);
}

#[test]
fn eight_builds_beside_pull_rmi_and_prune_match_the_serial_run() {
    if !berth_test_support::needs_root("runs containers") {
        return;
    }
    // The serial reference, in its own store.
    let serial = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let rootfs = serial.path().join("rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    let import = |s: &Sandbox| {
        let out = berth(s)
            .args(["import", rootfs.to_str().unwrap(), "busybox"])
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    import(&serial);
    let ctxs = contexts(serial.path());
    let mut expected = Vec::new();
    for (i, ctx) in ctxs.iter().enumerate() {
        let tag = format!("app{i}:1");
        let out = berth(&serial)
            .args(["build", "-q", "-t", &tag, ctx.to_str().unwrap()])
            .output()
            .unwrap();
        assert_success(&out, "the serial build");
        expected.push(serial.image_id(&tag));
    }

    // An image on a registry for the pulls beside the builds.
    let reg = TestRegistry::start(RegistryConfig::default());
    let remote = format!("{}/side/busybox:1", reg.host);
    serial.ok(&["push", "busybox", &remote]);

    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    import(&s);
    // Tags for rmi to remove while the builds run.
    for i in 0..6 {
        s.ok(&["tag", "busybox", &format!("spare:{i}")]);
    }
    let builds: Vec<Child> = ctxs
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            berth(&s)
                .args([
                    "build",
                    "-q",
                    "-t",
                    &format!("app{i}:1"),
                    ctx.to_str().unwrap(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Beside them: pull and remove the remote image, remove spare tags, prune.
    let side = format!(
        "for i in 1 2 3; do \"$B\" pull -q {remote} || exit 1; \"$B\" rmi {remote} || exit 2; done; \
         for i in 0 1 2 3 4 5; do \"$B\" rmi spare:$i || exit 3; \"$B\" system prune -f > /dev/null || exit 4; done; \
         \"$B\" pull -q {remote} || exit 5"
    );
    let side = Command::new("sh")
        .arg("-c")
        .arg(&side)
        .env("B", env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_ROOT", s.store())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for (i, b) in builds.into_iter().enumerate() {
        finished(&format!("build {i}"), b);
    }
    finished("pull/rmi/prune beside the builds", side);
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(
            &s.image_id(&format!("app{i}:1")),
            want,
            "app{i}: the concurrent build differs from the serial one"
        );
        let seen = s.ok(&["run", "--rm", &format!("app{i}:1")]);
        assert_eq!(seen, format!("own {i}\n"));
    }
    s.assert_clean();
    // A prune after everything keeps what the tags need (it drops the build cache, as
    // `docker system prune`); a rebuild gives the same images.
    s.ok(&["system", "prune", "-f"]);
    s.assert_clean();
    for (i, ctx) in ctxs.iter().enumerate().take(2) {
        let out = berth(&s)
            .args([
                "build",
                "-q",
                "-t",
                &format!("app{i}:1"),
                ctx.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_success(&out, "the rebuild after the prune");
        assert_eq!(s.image_id(&format!("app{i}:1")), expected[i]);
    }
    s.assert_clean();
}
