//! `berth debug dockerfile` and `berth debug context`: the frontend from the command line.

use berth_test_support::{RawTar, Sandbox};

fn with_stdin(s: &Sandbox, args: &[&str], input: &[u8]) -> std::process::Output {
    berth_test_support::output_with_stdin(s.cmd().args(args), input)
}

#[test]
fn dockerfile_dump_and_errors() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    std::fs::write(
        s.path().join("Dockerfile"),
        "FROM busybox AS base\nMAINTAINER me\nCOPY --chown=1 a /b\n",
    )
    .unwrap();
    let out = s.run(&["debug", "dockerfile"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"busybox\" \"AS\" \"base\")\n(maintainer \"me\")\n(copy [\"--chown=1\"] \"a\" \"/b\")\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("WARNING: Dockerfile:2: MaintainerDeprecated")
    );

    let out = with_stdin(
        &s,
        &["debug", "dockerfile", "-f", "-"],
        b"FROM a\nRUN ok\nCOPPY x y\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:3")
            && err.contains(">>> COPPY x y")
            && err.contains("^^^^^")
            && err.contains("did you mean COPY?"),
        "{err}"
    );
}

#[test]
fn secret_looking_arg_and_env_names_warn() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    std::fs::write(
        s.path().join("Dockerfile"),
        "FROM busybox\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x PUBLIC_KEY=y\n",
    )
    .unwrap();
    let out = s.run(&["debug", "dockerfile"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING: Dockerfile:2: SecretsUsedInArgOrEnv")
            && err.contains("(ARG \"GITHUB_TOKEN\")")
            && err.contains("WARNING: Dockerfile:3: SecretsUsedInArgOrEnv")
            && err.contains("(ENV \"DB_PASSWORD\")")
            && !err.contains("PUBLIC_KEY"),
        "{err}"
    );
}

#[test]
fn context_from_a_directory_and_from_a_tar_agree() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let ctx = s.path().join("ctx");
    std::fs::create_dir_all(ctx.join("docs")).unwrap();
    std::fs::write(ctx.join("main.go"), "x").unwrap();
    std::fs::write(ctx.join("docs/a.md"), "a").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "docs\n").unwrap();
    let dir = s.ok(&["debug", "context", ctx.to_str().unwrap()]);
    assert!(
        dir.contains("main.go") && !dir.contains("docs/a.md"),
        "{dir}"
    );
    let tar = std::process::Command::new("tar")
        .args(["-C", ctx.to_str().unwrap(), "-cz", "."])
        .output()
        .unwrap()
        .stdout;
    let out = with_stdin(&s, &["debug", "context", "-q", "-"], &tar);
    assert!(out.status.success());
    let last = |s: &str| s.lines().last().unwrap().to_owned();
    assert_eq!(last(&String::from_utf8_lossy(&out.stdout)), last(&dir));
}

#[test]
fn a_hostile_context_tar_stays_inside() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let marker = s.path().join("escaped");
    let tar = RawTar::new()
        .file(&format!("../../../../../../{}", marker.display()), b"x")
        .symlink("l", s.path().to_str().unwrap())
        .file("l/escaped2", b"y")
        .finish();
    let _ = with_stdin(&s, &["debug", "context", "-"], &tar);
    assert!(!marker.exists() && !s.path().join("escaped2").exists());
}

#[test]
fn build_args_targets_and_cycles_from_the_cli() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    std::fs::write(s.path().join("Dockerfile"), "ARG BASE=busybox\nFROM $BASE AS a\nARG USED\nFROM a AS b\nFROM scratch AS c\nCOPY --from=a /x /x\n").unwrap();
    let out = s.run(&[
        "debug",
        "dockerfile",
        "--build-arg",
        "USED=1",
        "--build-arg",
        "TYPO=1",
        "--target",
        "b",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("One or more build-args [TYPO] were not consumed"),
        "{err}"
    );
    assert!(err.contains("stages to build: a, b"), "{err}");
    let out = s.run(&["debug", "dockerfile", "--target", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("target stage \"nope\" could not be found")
    );
    std::fs::write(
        s.path().join("Dockerfile"),
        "FROM a AS one\nCOPY --from=two /x /x\nFROM a AS two\nCOPY --from=one /y /y\n",
    )
    .unwrap();
    let out = s.run(&["debug", "dockerfile"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("circular dependency"));
}
