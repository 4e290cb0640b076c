//! `berth build`'s inputs and outputs beyond a context directory (the root tier): a context
//! or a Dockerfile on stdin, a context URL, the `Containerfile` fallback, `--output` to a
//! tar or to stdout, and `RUN --mount=type=secret,env=`. Each test checks the image built
//! (its files, its config) the way a user would, and the hostile-tar tests check nothing is
//! written outside the context.

use std::path::{Path, PathBuf};
use std::process::Output;

use berth_test_support::scripted::{Answer, ScriptedServer};
use berth_test_support::{RawTar, Sandbox, Tier, assert_success, output_with_stdin, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

fn with_stdin(s: &Sandbox, args: &[&str], input: &[u8]) -> Output {
    output_with_stdin(s.cmd().args(args), input)
}

fn sh(s: &Sandbox, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// `tar -c` of `dir`'s contents with `flags` (`""`, `"z"`, `"j"`, `"J"`).
fn tar_of(dir: &Path, flags: &str) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args([
            "-C",
            dir.to_str().unwrap(),
            &format!("-c{flags}f"),
            "-",
            ".",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Names under `root` outside `inside` (and not `inside`'s parents): what a hostile tar
/// must never create.
fn written_outside(root: &Path, inside: &[PathBuf]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .map(|e| e.path().to_owned())
        .filter(|p| !inside.iter().any(|i| p.starts_with(i) || i.starts_with(p)))
        .collect()
}

/// What the store's `tmp/` holds (a received context must be gone after the build).
fn store_tmp(s: &Sandbox) -> Vec<String> {
    std::fs::read_dir(s.store().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_tar_on_stdin_is_the_context_plain_gzip_bzip2_and_xz() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "tar",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /ctx/\n\
                 RUN --mount=type=bind,target=/c stat -c '%h %i' /c/a /c/sub/h > /links\n",
            ),
            ("a", "alpha"),
            ("sub/b", "beta"),
            (".dockerignore", "ignored\n"),
            ("ignored", "no"),
        ],
    );
    std::fs::hard_link(ctx.join("a"), ctx.join("sub/h")).unwrap();
    for (i, flags) in ["", "z", "j", "J"].iter().enumerate() {
        let tag = format!("fromtar{i}");
        let out = with_stdin(&s, &["build", "-t", &tag, "-"], &tar_of(&ctx, flags));
        assert_success(&out, &format!("build from a tar -c{flags}"));
        let listing = sh(
            &s,
            &tag,
            "cat /ctx/a /ctx/sub/b /ctx/sub/h; echo; ls -a /ctx; \
             stat -c '%h %i' /ctx/a /ctx/sub/h",
        );
        // COPY keeps the hard link too, as BuildKit's copy does.
        let copied: Vec<&str> = listing.lines().rev().take(2).collect();
        assert_eq!(copied[0], copied[1], "{listing}");
        assert!(copied[0].starts_with("2 "), "{listing}");
        assert!(listing.starts_with("alphabetaalpha\n"), "{listing}");
        assert!(!listing.contains("ignored"), "{listing}");
        // The hard link in the tar is one file with two names in the context (as a RUN
        // step's bind of the context shows it).
        let links = sh(&s, &tag, "cat /links");
        let lines: Vec<&str> = links.lines().collect();
        assert_eq!(lines.len(), 2, "{links}");
        assert_eq!(lines[0], lines[1], "{links}");
        assert!(lines[0].starts_with("2 "), "{links}");
    }
    assert_eq!(store_tmp(&s), Vec::<String>::new());
}

#[test]
fn a_tar_on_stdin_takes_f_as_a_path_inside_it() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "f",
        &[
            ("build/app.Dockerfile", "FROM busybox\nCOPY data /data\n"),
            ("data", "d"),
        ],
    );
    let tar = tar_of(&ctx, "z");
    let out = with_stdin(
        &s,
        &["build", "-t", "f", "-f", "build/app.Dockerfile", "-"],
        &tar,
    );
    assert_success(&out, "build -f inside the tar");
    assert_eq!(sh(&s, "f", "cat /data"), "d");
    // Missing: the error names no temporary directory of berth's.
    let out = with_stdin(&s, &["build", "-"], &tar);
    assert!(!out.status.success());
    let err = printed(&out);
    assert!(
        err.contains("neither Dockerfile nor Containerfile") && err.contains("stdin"),
        "{err}"
    );
    // stdin cannot be both; berth refuses before reading it.
    let out = with_stdin(&s, &["build", "-f", "-", "-"], &tar);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("stdin cannot be both"),
        "{}",
        printed(&out)
    );
}

#[test]
fn a_dockerfile_on_stdin_builds_with_an_empty_context() {
    let Some(s) = ROOT.sandbox() else { return };
    let df = b"FROM busybox\nRUN echo built > /x\nLABEL from=stdin\n";
    let out = with_stdin(&s, &["build", "-t", "plain", "-"], df);
    assert_success(&out, "build - < Dockerfile");
    assert_eq!(sh(&s, "plain", "cat /x"), "built\n");
    let inspect = s.ok(&["inspect", "plain"]);
    assert!(inspect.contains("\"from\": \"stdin\""), "{inspect}");
    // The context is empty: nothing to COPY.
    let out = with_stdin(&s, &["build", "-"], b"FROM busybox\nCOPY x /x\n");
    assert!(!out.status.success());
    assert!(printed(&out).contains("not found"), "{}", printed(&out));
    // -f - with a directory context is still the Dockerfile from stdin.
    let ctx = s.context("dir", &[("payload", "p")]);
    let out = with_stdin(
        &s,
        &["build", "-t", "dash-f", "-f", "-", ctx.to_str().unwrap()],
        b"FROM busybox\nCOPY payload /payload\n",
    );
    assert_success(&out, "build -f - DIR");
    assert_eq!(sh(&s, "dash-f", "cat /payload"), "p");
    assert_eq!(store_tmp(&s), Vec::<String>::new());
}

#[test]
fn a_hostile_context_tar_climbing_out_fails_and_writes_nothing_outside() {
    let Some(s) = ROOT.sandbox() else { return };
    let before = written_outside(s.path(), &[s.store()]);
    let tar = RawTar::new()
        .file("Dockerfile", b"FROM busybox\nCOPY . /ctx/\n")
        .file("../../../../../../../escaped", b"x")
        .file("a/../../escaped2", b"y")
        .finish();
    let out = with_stdin(&s, &["build", "-"], &tar);
    assert!(!out.status.success());
    let err = printed(&out);
    assert!(err.contains("climbs out"), "{err}");
    assert_eq!(written_outside(s.path(), &[s.store()]), before);
    assert!(!Path::new("/escaped").exists() && !Path::new("/escaped2").exists());
    // A hard link to a file above the root is refused the same way.
    let tar = RawTar::new()
        .file("Dockerfile", b"FROM busybox\n")
        .hardlink("h", "../../../../etc/passwd")
        .finish();
    let out = with_stdin(&s, &["build", "-"], &tar);
    assert!(!out.status.success());
    assert!(printed(&out).contains("climbs out"), "{}", printed(&out));
    assert_eq!(store_tmp(&s), Vec::<String>::new());
}

#[test]
fn a_hostile_context_tar_through_a_symlink_stays_in_the_context() {
    let Some(s) = ROOT.sandbox() else { return };
    let outside = s.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let tar = RawTar::new()
        .file("Dockerfile", b"FROM busybox\nCOPY . /ctx/\n")
        .symlink("abs", outside.to_str().unwrap())
        .file("abs/planted", b"through an absolute link")
        .symlink("rel", "../../../../../../..")
        .file("rel/tmp/planted2", b"through a climbing link")
        .char_device("dev", 1, 3)
        .finish();
    let out = with_stdin(&s, &["build", "-t", "links", "-"], &tar);
    assert_success(&out, "build from a tar with links out");
    // Nothing beside the sandbox's store, nothing at the host's paths.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!Path::new("/tmp/planted2").exists());
    // The files landed where the links point when the context is the root, as Docker's
    // chrooted untar puts them; the links are links, the device node was skipped.
    let shown = sh(
        &s,
        "links",
        &format!(
            "cat /ctx{}/planted; echo; cat /ctx/tmp/planted2; echo; readlink /ctx/abs; \
             ls /ctx/dev 2>&1 || true",
            outside.display()
        ),
    );
    assert!(
        shown.starts_with("through an absolute link\nthrough a climbing link\n"),
        "{shown}"
    );
    assert!(shown.contains(outside.to_str().unwrap()), "{shown}");
    assert!(shown.contains("No such file"), "{shown}");
}

#[test]
fn a_context_tar_past_its_entry_and_size_limits_fails_clearly() {
    let Some(s) = ROOT.sandbox() else { return };
    let mut tar = RawTar::new();
    tar.file("Dockerfile", b"FROM busybox\n");
    for i in 0..300 {
        tar.file(&format!("f{i}"), b"");
    }
    let out = output_with_stdin(
        s.cmd()
            .env("BERTH_MAX_CONTEXT_ENTRIES", "100")
            .args(["build", "-"]),
        &tar.finish(),
    );
    assert!(!out.status.success());
    let err = printed(&out);
    assert!(
        err.contains("more than 100 entries") && err.contains("BERTH_MAX_CONTEXT_ENTRIES"),
        "{err}"
    );
    let big = RawTar::new()
        .file("Dockerfile", b"FROM busybox\n")
        .file("big", &vec![7u8; 1 << 20])
        .finish();
    let out = output_with_stdin(
        s.cmd()
            .env("BERTH_MAX_CONTEXT_SIZE", "65536")
            .args(["build", "-"]),
        &big,
    );
    assert!(!out.status.success());
    let err = printed(&out);
    assert!(
        err.contains("more than 65536 bytes") && err.contains("BERTH_MAX_CONTEXT_SIZE"),
        "{err}"
    );
    assert_eq!(store_tmp(&s), Vec::<String>::new());
}

/// A loopback server answering `GET /NAME` with `files`' NAME, 404 for anything else.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> ScriptedServer {
    ScriptedServer::start(move |req| {
        match files
            .iter()
            .find(|(name, _)| req.path == format!("/{name}"))
        {
            Some((_, body)) => Answer::status(200).body(body.clone()),
            None => Answer::status(404),
        }
    })
}

#[test]
fn a_context_url_is_downloaded_and_unpacked_or_is_the_dockerfile() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "url",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            ("a", "from the url"),
            ("sub/b", "b"),
        ],
    );
    let hostile = RawTar::new()
        .file("Dockerfile", b"FROM busybox\n")
        .file("../../../../escaped-url", b"x")
        .finish();
    let server = serve(vec![
        ("ctx.tar.gz", tar_of(&ctx, "z")),
        ("ctx.tar", tar_of(&ctx, "")),
        (
            "Dockerfile",
            b"FROM busybox\nRUN echo remote > /r\n".to_vec(),
        ),
        ("hostile.tar", hostile),
    ]);
    let url = |name: &str| format!("http://{}/{name}", server.host);
    s.ok(&["build", "-t", "remote-gz", &url("ctx.tar.gz")]);
    assert_eq!(
        sh(&s, "remote-gz", "cat /ctx/a /ctx/sub/b"),
        "from the urlb"
    );
    s.ok(&["build", "-t", "remote-tar", &url("ctx.tar")]);
    assert_eq!(sh(&s, "remote-tar", "cat /ctx/a"), "from the url");
    // Not an archive: the download is the Dockerfile, the context is empty.
    s.ok(&["build", "-t", "remote-df", &url("Dockerfile")]);
    assert_eq!(sh(&s, "remote-df", "cat /r"), "remote\n");
    // A missing file, a hostile tar: clear failures, nothing written outside.
    let out = s.run(&["build", &url("missing.tar")]);
    assert!(!out.status.success());
    assert!(printed(&out).contains("404"), "{}", printed(&out));
    let out = s.run(&["build", &url("hostile.tar")]);
    assert!(!out.status.success());
    assert!(printed(&out).contains("climbs out"), "{}", printed(&out));
    assert!(!s.path().join("escaped-url").exists() && !Path::new("/escaped-url").exists());
    // A download past the size limit stops there.
    let out = s
        .cmd()
        .env("BERTH_MAX_CONTEXT_SIZE", "100")
        .args(["build", &url("ctx.tar")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("more than 100 bytes"),
        "{}",
        printed(&out)
    );
    assert_eq!(store_tmp(&s), Vec::<String>::new());
    // A git URL is a git repository, not a tarball (`git ls-remote` asks the server).
    let out = s.run(&["build", &format!("http://{}/repo.git", server.host)]);
    assert!(!out.status.success());
    assert!(printed(&out).contains("git ls-remote"), "{}", printed(&out));
    assert!(server.requests().iter().all(|r| r.path != "/repo.git"));
}

#[test]
fn containerfile_is_the_fallback_and_dockerfile_wins() {
    let Some(s) = ROOT.sandbox() else { return };
    let only = s.context(
        "containerfile",
        &[("Containerfile", "FROM busybox\nLABEL file=containerfile\n")],
    );
    s.ok(&["build", "-t", "cf", only.to_str().unwrap()]);
    assert!(
        s.ok(&["inspect", "cf"])
            .contains("\"file\": \"containerfile\"")
    );
    let both = s.context(
        "both",
        &[
            ("Containerfile", "FROM busybox\nLABEL file=containerfile\n"),
            ("Dockerfile", "FROM busybox\nLABEL file=dockerfile\n"),
        ],
    );
    s.ok(&["build", "-t", "df", both.to_str().unwrap()]);
    assert!(
        s.ok(&["inspect", "df"])
            .contains("\"file\": \"dockerfile\"")
    );
    // In a context from stdin too.
    let out = with_stdin(&s, &["build", "-t", "cf-tar", "-"], &tar_of(&only, ""));
    assert_success(&out, "build - with a Containerfile");
    assert!(
        s.ok(&["inspect", "cf-tar"])
            .contains("\"file\": \"containerfile\"")
    );
    let none = s.context("none", &[("README", "x")]);
    let out = s.run(&["build", none.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = printed(&out);
    assert!(
        err.contains("neither Dockerfile nor Containerfile") && err.contains("ctx-none"),
        "{err}"
    );
}

/// The entries of a tar stream: name → (type byte, contents).
fn tar_entries(bytes: &[u8]) -> std::collections::BTreeMap<String, (u8, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type().as_byte();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, (kind, data))
        })
        .collect()
}

fn output_context(s: &Sandbox) -> PathBuf {
    s.context(
        "out",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY hello /app/hello\nRUN chmod 0750 /app/hello && \
                 ln /app/hello /app/hard && ln -s hello /app/soft\n",
            ),
            ("hello", "hello, tar"),
        ],
    )
}

#[test]
fn output_type_tar_writes_the_files_as_a_tar() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = output_context(&s);
    let dest = s.path().join("rootfs.tar");
    s.ok(&[
        "build",
        "-o",
        &format!("type=tar,dest={}", dest.display()),
        ctx.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&dest).unwrap();
    let entries = tar_entries(&bytes);
    // The hard link stays one: the first name in order holds the file, the other links to it.
    assert_eq!(entries["app/hard"], (b'0', b"hello, tar".to_vec()));
    assert_eq!(entries["app/hello"].0, b'1', "a hard link stays a link");
    assert_eq!(entries["app/soft"].0, b'2');
    assert!(entries.contains_key("bin/busybox"), "{:?}", entries.keys());
    let mut archive = tar::Archive::new(&bytes[..]);
    let hello = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("app/hard"))
        .unwrap();
    assert_eq!(hello.header().mode().unwrap() & 0o7777, 0o750);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(store_tmp(&s), Vec::<String>::new());
}

#[test]
fn output_dash_writes_a_tar_of_the_files_to_stdout_and_nothing_else() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = output_context(&s);
    for args in [
        vec!["build", "-o", "-"],
        vec!["build", "-q", "--output", "type=tar,dest=-"],
        vec!["build", "--progress", "plain", "-o", "-"],
    ] {
        let mut all = args.clone();
        all.push(ctx.to_str().unwrap());
        let out = s.run(&all);
        assert_success(&out, &format!("{all:?}"));
        let entries = tar_entries(&out.stdout);
        assert_eq!(entries["app/hard"].1, b"hello, tar", "{all:?}");
        // The tar is all of stdout: the ID and the progress went to stderr.
        assert_eq!(
            tar::Archive::new(&out.stdout[..])
                .entries()
                .unwrap()
                .count(),
            entries.len()
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("sha256:"),
            "{all:?}"
        );
        assert!(!s.path().join("-").exists(), "a directory named - was made");
    }
    // A directory cannot go to stdout, and stdout takes one output.
    let out = s.run(&["build", "-o", "type=local,dest=-", ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("cannot go to stdout"),
        "{}",
        printed(&out)
    );
    let out = s.run(&[
        "build",
        "-o",
        "-",
        "-o",
        "type=oci,dest=-",
        ctx.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("only one --output"),
        "{}",
        printed(&out)
    );
    assert!(!s.path().join("-").exists());
}

#[test]
fn output_oci_and_docker_archives_to_stdout() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = output_context(&s);
    let out = s.run(&[
        "build",
        "-t",
        "out:1",
        "-o",
        "type=oci,dest=-",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out, "build -o type=oci,dest=-");
    let oci = tar_entries(&out.stdout);
    assert!(
        oci.contains_key("oci-layout") && oci.contains_key("index.json"),
        "{:?}",
        oci.keys()
    );
    let out = s.run(&[
        "build",
        "-t",
        "out:1",
        "-o",
        "type=docker,dest=-",
        ctx.to_str().unwrap(),
    ]);
    assert_success(&out, "build -o type=docker,dest=-");
    let docker = tar_entries(&out.stdout);
    assert!(docker.contains_key("manifest.json"), "{:?}", docker.keys());
    // What went to stdout loads back as the image.
    let archive = s.path().join("docker.tar");
    std::fs::write(&archive, &out.stdout).unwrap();
    let loaded = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    loaded.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded.image_id("out:1"), s.image_id("out:1"));
}

/// Files under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|e| e.path().to_owned())
        .collect()
}

#[test]
fn a_secret_mount_with_env_sets_the_variable_and_nothing_keeps_it() {
    let Some(s) = ROOT.sandbox() else { return };
    let value = "tok-4f1e-never-stored";
    let ctx = s.context(
        "secret-env",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=secret,id=tok,env=TOKEN \
             case \"$TOKEN\" in tok-4f1e-*) echo env-only ${#TOKEN} > /seen;; esac && \
             ls /run/secrets >> /seen 2>&1 || true\n\
             RUN --mount=type=secret,id=tok,env=TOKEN,target=/run/t \
             [\"sh\", \"-c\", \"test \\\"$TOKEN\\\" = \\\"$(cat /run/t)\\\" && echo both >> /seen\"]\n\
             RUN --mount=type=secret,id=absent,env=NOPE echo \"${NOPE-unset}\" >> /seen\n",
        )],
    );
    let log = s.path().join("build.log");
    let out = s
        .cmd()
        .env("TOKEN_SRC", value)
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            "sec",
            "--secret",
            "id=tok,env=TOKEN_SRC",
            "--log-file",
            log.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out, "build with a secret in env");
    assert!(!printed(&out).contains(value));
    let seen = sh(&s, "sec", "cat /seen");
    // In the environment only: no /run/secrets made for it.
    assert!(
        seen.starts_with(&format!("env-only {}\n", value.len())),
        "{seen}"
    );
    assert!(seen.contains("No such file"), "{seen}");
    assert!(seen.contains("both\n"), "{seen}");
    assert!(seen.ends_with("unset\n"), "{seen}");
    // Not in the image's config or history, not anywhere in the store or the log.
    let history = s.ok(&["history", "--no-trunc", "sec"]);
    assert!(
        history.contains("TOKEN") && !history.contains(value),
        "{history}"
    );
    assert!(!s.ok(&["inspect", "sec"]).contains(value));
    assert_eq!(
        files_containing(s.path(), value.as_bytes()),
        Vec::<PathBuf>::new()
    );
    // The cache key does not hold the value: another value, the same steps, cached.
    let out = s
        .cmd()
        .env("TOKEN_SRC", "another-value")
        .args([
            "build",
            "--progress",
            "plain",
            "--secret",
            "id=tok,env=TOKEN_SRC",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out, "build again");
    assert!(
        printed(&out).contains("(0 steps run, 3 cached)"),
        "{}",
        printed(&out)
    );
}
