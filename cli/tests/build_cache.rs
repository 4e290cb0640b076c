//! `--cache-to` and `--cache-from` (the root tier): two sandboxes with stores of their own
//! stand for two CI runners that share only a real registry (Debian's `docker-registry`) or
//! a directory. Each test checks what a CI user sees: which steps run, why the others
//! missed, what was downloaded (the registry's access log), and the image that results.

use std::path::Path;

use berth_test_support::{RegistryConfig, Sandbox, TestRegistry, Tier, assert_success, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// The app of a CI job: its base comes from the registry, as on a fresh runner.
const APP: &str = "FROM REGISTRY/busybox
COPY deps.txt /deps.txt
RUN cat /deps.txt > /installed && echo ran >> /installed
COPY src/ /src/
RUN cat /src/* > /built
";

/// Runner one's busybox, pushed where every runner's FROM finds it.
fn push_base(s: &Sandbox, reg: &TestRegistry) {
    let name = format!("{}/busybox", reg.host);
    s.ok(&["tag", "busybox", &name]);
    s.ok(&["push", "-q", &name]);
}

fn app(s: &Sandbox, reg: &TestRegistry, main: &str) -> std::path::PathBuf {
    s.context(
        "app",
        &[
            ("Dockerfile", &APP.replace("REGISTRY", &reg.host)),
            ("deps.txt", "libfoo 1.2\n"),
            ("src/main.c", main),
            ("src/util.c", "int util;\n"),
        ],
    )
}

/// `berth build ARGS CONTEXT` with plain progress; returns stderr.
fn build(s: &Sandbox, args: &[&str], context: &Path) -> String {
    let mut all = vec!["build", "--progress=plain"];
    all.extend_from_slice(args);
    all.push(context.to_str().unwrap());
    let out = s.run(&all);
    assert_success(&out, &format!("berth {all:?}"));
    printed(&out)
}

/// `N steps run, M cached` from a build's last line.
fn counts(printed: &str) -> (usize, usize) {
    let line = printed
        .lines()
        .find(|l| l.starts_with("built "))
        .unwrap_or_else(|| panic!("no summary in {printed}"));
    let inner = line.rsplit_once('(').unwrap().1;
    let n: Vec<usize> = inner
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap())
        .collect();
    (n[0], n[1])
}

/// The image ID a build printed.
fn id_of(printed: &str) -> String {
    let line = printed.lines().find(|l| l.starts_with("built ")).unwrap();
    line.split_whitespace().nth(1).unwrap().to_owned()
}

fn sh(s: &Sandbox, image: &str, script: &str) -> String {
    s.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// The blob digests the registry served with `GET` (downloads, not `HEAD` checks).
fn downloaded(reg: &TestRegistry) -> Vec<String> {
    reg.requests()
        .into_iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/blobs/sha256:"))
        .map(|r| {
            r.split("/blobs/")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_second_runner_runs_only_the_steps_after_a_one_file_change() {
    let Some(one) = ROOT.sandbox() else { return };
    let Some(two) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    let cache = format!("type=registry,ref={}/app:cache,mode=max", reg.host);
    let image = format!("{}/app:1", reg.host);
    let first = build(
        &one,
        &["-t", &image, "--push", "--cache-to", &cache],
        &app(&one, &reg, "int main;\n"),
    );
    assert_eq!(counts(&first), (4, 0), "{first}");
    assert!(first.contains("exported the build cache to"), "{first}");
    // The cache's layers are the pushed image's blobs: none was uploaded twice.
    let uploads = reg
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
        .count();
    assert_eq!(
        uploads,
        2 + 4 + 1 + 2,
        "busybox (layer, config), 4 layers of the steps, the image config, the cache's config and inputs"
    );
    // Runner two: an empty cache, one file of src/ changed.
    let ctx = app(&two, &reg, "int main(void) { return 0; }\n");
    let from = format!("type=registry,ref={}/app:cache", reg.host);
    let second = build(&two, &["-t", "app", "--cache-from", &from], &ctx);
    assert_eq!(counts(&second), (2, 2), "{second}");
    assert!(
        second.contains("cache miss: context file changed: src/main.c"),
        "{second}"
    );
    assert!(
        second.contains("cache miss: the step it builds on ran (line 4)"),
        "{second}"
    );
    assert_eq!(
        sh(&two, "app", "cat /installed /built"),
        "libfoo 1.2\nran\nint main(void) { return 0; }\nint util;\n"
    );
    // And with nothing changed, nothing runs: the image is runner one's, exactly.
    let Some(three) = ROOT.sandbox() else { return };
    let third = build(
        &three,
        &["-t", "app", "--cache-from", &from],
        &app(&three, &reg, "int main;\n"),
    );
    assert_eq!(counts(&third), (0, 4), "{third}");
    assert_eq!(id_of(&third), id_of(&first));
    assert_success(&three.run(&["system", "check"]), "system check");
}

/// A build stage with a large intermediate file, and a final stage that copies one file out.
const STAGES: &str = "FROM REGISTRY/busybox AS build
COPY src/ /src/
RUN cat /src/* > /out && dd if=/dev/urandom of=/scratch bs=1024 count=2048 2>/dev/null
FROM REGISTRY/busybox
COPY --from=build /out /out
RUN wc -c < /out > /size
";

fn stages(s: &Sandbox, reg: &TestRegistry) -> std::path::PathBuf {
    s.context(
        "stages",
        &[
            ("Dockerfile", &STAGES.replace("REGISTRY", &reg.host)),
            ("src/a.c", "int a;\n"),
        ],
    )
}

#[test]
fn mode_max_keeps_every_stage_and_what_is_not_needed_is_never_downloaded() {
    let Some(one) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    for mode in ["min", "max"] {
        let to = format!("type=registry,ref={}/stages:{mode},mode={mode}", reg.host);
        build(&one, &["--cache-to", &to], &stages(&one, &reg));
    }
    // mode=min: only the final stage's steps are in the cache. Its COPY --from is keyed by
    // the build stage's inputs, not its output, so it still hits once that stage ran again.
    let Some(two) = ROOT.sandbox() else { return };
    let from = format!("type=registry,ref={}/stages:min", reg.host);
    let out = build(
        &two,
        &["-t", "min", "--cache-from", &from],
        &stages(&two, &reg),
    );
    assert_eq!(counts(&out), (2, 2), "{out}");
    assert!(
        out.contains("cache miss: no earlier build of this step is in the cache"),
        "{out}"
    );
    // mode=max: nothing runs, and the build stage's layers (2 MiB of scratch among them)
    // are never downloaded: only the final stage's are, for the image.
    let Some(three) = ROOT.sandbox() else { return };
    let before = downloaded(&reg).len();
    let from = format!("type=registry,ref={}/stages:max", reg.host);
    let out = build(
        &three,
        &["-t", "max", "--cache-from", &from],
        &stages(&three, &reg),
    );
    assert_eq!(counts(&out), (0, 4), "{out}");
    let fetched = &downloaded(&reg)[before..];
    // busybox (config and layer) for the FROM lines, the cache's config, the final stage's
    // two layers: nothing of the build stage.
    assert_eq!(fetched.len(), 2 + 1 + 2, "{fetched:?}");
    assert_eq!(sh(&three, "max", "cat /size"), "7\n");
    assert_success(&three.run(&["system", "check"]), "system check");
}

#[test]
fn the_inline_cache_and_the_local_cache() {
    let Some(one) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    let image = format!("{}/app:inline", reg.host);
    let dir = one.path().join("local-cache");
    let local = format!("type=local,dest={}", dir.display());
    build(
        &one,
        &[
            "-t",
            &image,
            "--push",
            "--cache-to",
            "type=inline",
            "--cache-to",
            &local,
        ],
        &app(&one, &reg, "int main;\n"),
    );
    assert!(dir.join("index.json").is_file());
    // The inline cache: the pushed image itself names the cache.
    let Some(two) = ROOT.sandbox() else { return };
    let out = build(
        &two,
        &["-t", "app", "--cache-from", &image],
        &app(&two, &reg, "int main;\n"),
    );
    assert_eq!(counts(&out), (0, 4), "{out}");
    // The local cache, read from the directory.
    let Some(three) = ROOT.sandbox() else { return };
    let from = format!("type=local,src={}", dir.display());
    let out = build(
        &three,
        &["-t", "app", "--cache-from", &from],
        &app(&three, &reg, "int main(void);\n"),
    );
    assert_eq!(counts(&out), (2, 2), "{out}");
    assert_eq!(
        sh(&three, "app", "cat /built"),
        "int main(void);\nint util;\n"
    );
    // A cache that is not there is a warning; the build goes on.
    let missing = format!("{}/app:nothing-here", reg.host);
    let out = build(
        &three,
        &["--cache-from", &missing],
        &app(&three, &reg, "int x;\n"),
    );
    assert!(out.contains("warning: --cache-from"), "{out}");
}

#[test]
fn a_tampered_cache_blob_is_refused_and_the_store_stays_intact() {
    let Some(one) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    let to = format!("type=registry,ref={}/app:cache", reg.host);
    build(&one, &["--cache-to", &to], &app(&one, &reg, "int main;\n"));
    // Every blob of the registry that is a layer of the steps is replaced by other bytes of
    // the same size.
    let blobs = reg.data_dir().join("docker/registry/v2/blobs/sha256");
    let mut tampered = 0;
    for prefix in std::fs::read_dir(&blobs).unwrap() {
        for blob in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let data = blob.unwrap().path().join("data");
            let bytes = std::fs::read(&data).unwrap();
            // gzip layers: the busybox layer is the largest; leave it and the JSON blobs.
            if bytes.starts_with(&[0x1f, 0x8b]) && bytes.len() < 100_000 {
                let mut evil = bytes.clone();
                let last = evil.len() - 10;
                evil[last] ^= 0xff;
                std::fs::write(&data, evil).unwrap();
                tampered += 1;
            }
        }
    }
    assert!(tampered >= 4, "{tampered}");
    let Some(two) = ROOT.sandbox() else { return };
    let from = format!("type=registry,ref={}/app:cache", reg.host);
    let out = two.run(&[
        "build",
        "-t",
        "app",
        "--cache-from",
        &from,
        app(&two, &reg, "int main(void);\n").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = printed(&out);
    assert!(
        err.contains("--cache-from") && err.contains("digest"),
        "{err}"
    );
    assert!(two.run(&["images", "-q", "app"]).stdout.is_empty());
    assert_success(&two.run(&["system", "check"]), "system check");
}

#[test]
fn two_runners_exporting_to_one_ref_at_once_leave_one_whole_cache() {
    let Some(one) = ROOT.sandbox() else { return };
    let Some(two) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    let to = format!("type=registry,ref={}/app:shared,mode=max", reg.host);
    let (a, b) = (app(&one, &reg, "int one;\n"), app(&two, &reg, "int two;\n"));
    std::thread::scope(|scope| {
        let first = scope.spawn(|| build(&one, &["--cache-to", &to], &a));
        let second = scope.spawn(|| build(&two, &["--cache-to", &to], &b));
        first.join().unwrap();
        second.join().unwrap();
    });
    // Whichever wrote last, a third runner finds a whole cache: one of the two builds hits
    // completely, and the other hits up to its changed file.
    let from = format!("type=registry,ref={}/app:shared", reg.host);
    let mut seen = Vec::new();
    for main in ["int one;\n", "int two;\n"] {
        let Some(three) = ROOT.sandbox() else { return };
        let out = build(&three, &["--cache-from", &from], &app(&three, &reg, main));
        seen.push(counts(&out));
    }
    seen.sort();
    assert_eq!(seen, vec![(0, 4), (2, 2)]);
}

#[test]
fn a_local_miss_names_the_build_arg_or_the_file_that_changed() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "args",
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG V=1\nRUN echo $V > /v\nCOPY a.txt /a.txt\n",
            ),
            ("a.txt", "a"),
        ],
    );
    build(&s, &[], &ctx);
    let out = build(&s, &["--build-arg", "V=2"], &ctx);
    assert!(out.contains("cache miss: build arg V changed"), "{out}");
    std::fs::write(ctx.join("a.txt"), "b").unwrap();
    let out = build(&s, &["--build-arg", "V=2"], &ctx);
    assert!(
        out.contains("cache miss: context file changed: a.txt"),
        "{out}"
    );
    assert_eq!(counts(&out), (1, 1), "{out}");
}

#[test]
fn cache_mount_contents_travel_with_mounts_true() {
    let Some(one) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    let dockerfile = format!(
        "FROM {}/busybox\nCOPY deps.txt /deps.txt\n\
         RUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs \
         if [ -f /var/cache/pkgs/lib.tgz ]; then echo reused > /status; \
         else echo fetched > /var/cache/pkgs/lib.tgz; echo fetched > /status; fi\n",
        reg.host
    );
    let ctx = |s: &Sandbox, deps: &str| {
        s.context("mounts", &[("Dockerfile", &dockerfile), ("deps.txt", deps)])
    };
    let to = format!("type=registry,ref={}/app:mounts,mounts=true", reg.host);
    build(&one, &["-t", "one", "--cache-to", &to], &ctx(&one, "a 1\n"));
    assert_eq!(sh(&one, "one", "cat /status"), "fetched\n");
    // Runner two changes a dependency: the RUN runs again, and finds the package cache.
    let Some(two) = ROOT.sandbox() else { return };
    let from = format!("type=registry,ref={}/app:mounts", reg.host);
    let out = build(
        &two,
        &["-t", "two", "--cache-from", &from, "--cache-to", &to],
        &ctx(&two, "a 2\n"),
    );
    assert_eq!(counts(&out), (2, 0), "{out}");
    assert_eq!(sh(&two, "two", "cat /status"), "reused\n");
    // The same contents export as the same blob: nothing new was uploaded for it.
    let uploads = |reg: &TestRegistry| {
        reg.requests()
            .into_iter()
            .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
            .count()
    };
    let before = uploads(&reg);
    let Some(three) = ROOT.sandbox() else { return };
    build(
        &three,
        &["--cache-from", &from, "--cache-to", &to],
        &ctx(&three, "a 2\n"),
    );
    assert_eq!(uploads(&reg), before, "an unchanged cache uploads nothing");
    // Without mounts=true the cache holds no mount.
    let Some(four) = ROOT.sandbox() else { return };
    let bare = format!("type=registry,ref={}/app:bare", reg.host);
    build(&one, &["--cache-to", &bare], &ctx(&one, "a 1\n"));
    let out = build(
        &four,
        &["-t", "four", "--cache-from", &bare],
        &ctx(&four, "a 3\n"),
    );
    assert_eq!(counts(&out), (2, 0), "{out}");
    assert_eq!(sh(&four, "four", "cat /status"), "fetched\n");
}

#[test]
fn a_push_only_build_mounts_cached_layers_without_downloading_them() {
    let Some(one) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    let to = format!("type=registry,ref={}/cache/app:main", reg.host);
    build(&one, &["--cache-to", &to], &app(&one, &reg, "int main;\n"));
    let Some(two) = ROOT.sandbox() else { return };
    let before = downloaded(&reg).len();
    let dest = format!("{}/app:2", reg.host);
    let out = build(
        &two,
        &[
            "--cache-from",
            &format!("{}/cache/app:main", reg.host),
            "-o",
            &format!("type=registry,name={dest}"),
        ],
        &app(&two, &reg, "int main;\n"),
    );
    assert_eq!(counts(&out), (0, 4), "{out}");
    assert!(out.contains(&format!("pushed {dest}")), "{out}");
    // Downloaded: busybox's config (what FROM sets) and the cache's config. No layer: not
    // the base image's, nor a step's.
    let fetched = &downloaded(&reg)[before..];
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    let mounts = reg
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST ") && r.contains("mount=") && r.ends_with(" 201"))
        .count();
    assert!(mounts >= 5, "{:?}", reg.requests());
    // Nothing is named in runner two's store (its own busybox aside): not the app, not the
    // registry's busybox. The store stays whole; the pushed image runs.
    let images = two.ok(&["images"]);
    assert!(!images.contains("app"), "{images}");
    assert!(!images.contains(&reg.host), "{images}");
    assert_success(&two.run(&["system", "check"]), "system check");
    let Some(three) = ROOT.sandbox() else { return };
    three.ok(&["pull", "-q", &dest]);
    assert_eq!(
        sh(&three, &dest, "cat /installed /built"),
        "libfoo 1.2\nran\nint main;\nint util;\n"
    );
    // A change: the steps that run see the base image's tree, which is fetched for them
    // (and only then), and the pushed image is whole.
    let Some(four) = ROOT.sandbox() else { return };
    let before = downloaded(&reg).len();
    let dest = format!("{}/app:3", reg.host);
    let out = build(
        &four,
        &[
            "--cache-from",
            &format!("{}/cache/app:main", reg.host),
            "-o",
            &format!("type=registry,name={dest}"),
        ],
        &app(&four, &reg, "int main(void);\n"),
    );
    assert_eq!(counts(&out), (2, 2), "{out}");
    // Busybox's config and layer, the cache's config (and its inputs, to explain the miss),
    // and the two cached layers below the change.
    let fetched = &downloaded(&reg)[before..];
    assert!(fetched.len() >= 5, "{fetched:?}");
    assert_success(&four.run(&["system", "check"]), "system check");
    let Some(five) = ROOT.sandbox() else { return };
    five.ok(&["pull", "-q", &dest]);
    assert_eq!(
        sh(&five, &dest, "cat /installed /built; ls /bin/busybox"),
        "libfoo 1.2\nran\nint main(void);\nint util;\n/bin/busybox\n"
    );
}

#[test]
fn a_push_only_build_unpacks_a_base_whose_blobs_an_earlier_push_left() {
    let Some(one) = ROOT.sandbox() else { return };
    let Some(two) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig::default());
    push_base(&one, &reg);
    // The same registry under another name: a push there copies the base's blobs through
    // the store (no mount across names), leaving them in the store without snapshots.
    let port = reg.host.rsplit(':').next().unwrap();
    let base = format!("localhost:{port}/busybox");
    let only_env = two.context("env", &[("Dockerfile", &format!("FROM {base}\nENV A=1\n"))]);
    let dest = format!("{}/env:1", reg.host);
    build(
        &two,
        &["-o", &format!("type=registry,name={dest}")],
        &only_env,
    );
    // Then a RUN on that base: its tree must be unpacked from the blobs the store has.
    let run = two.context(
        "run",
        &[(
            "Dockerfile",
            &format!("FROM {base}\nRUN ls /bin/busybox > /seen\n"),
        )],
    );
    let dest = format!("{}/run:1", reg.host);
    let out = build(&two, &["-o", &format!("type=registry,name={dest}")], &run);
    assert_eq!(counts(&out), (1, 0), "{out}");
    assert_success(&two.run(&["system", "check"]), "system check");
    let Some(three) = ROOT.sandbox() else { return };
    three.ok(&["pull", "-q", &dest]);
    assert_eq!(sh(&three, &dest, "cat /seen"), "/bin/busybox\n");
}

#[test]
fn a_cache_on_a_registry_with_tls_and_a_password_uses_the_saved_login() {
    let Some(one) = ROOT.sandbox() else { return };
    let Some(two) = ROOT.sandbox() else { return };
    let reg = TestRegistry::start(RegistryConfig {
        htpasswd: vec![("ci".into(), "s3cret".into())],
        tls: true,
        ..Default::default()
    });
    // Each runner's own credentials and the registry's CA, as `push` and `pull` use them.
    let berth = |s: &Sandbox, args: &[&str]| {
        let mut c = s.cmd();
        c.env("DOCKER_CONFIG", s.path().join("docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env("BERTH_CERTS_DIR", reg.certs_dir())
            .args(args);
        c
    };
    let login = |s: &Sandbox, password: &str| {
        let out = berth_test_support::output_with_stdin(
            &mut berth(s, &["login", "-u", "ci", "--password-stdin", &reg.host]),
            password.as_bytes(),
        );
        assert_success(&out, "login");
    };
    login(&one, "s3cret");
    let base = format!("{}/busybox", reg.host);
    assert_success(
        &berth(&one, &["tag", "busybox", &base]).output().unwrap(),
        "tag",
    );
    assert_success(
        &berth(&one, &["push", "-q", &base]).output().unwrap(),
        "push",
    );
    let cache = format!("type=registry,ref={}/app:cache", reg.host);
    let ctx = app(&one, &reg, "int main;\n");
    let out = berth(
        &one,
        &["build", "--cache-to", &cache, ctx.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_success(&out, "build --cache-to");
    // Runner two, logged in: the cache is read through the saved login and the registry's CA.
    let ctx = app(&two, &reg, "int main;\n");
    login(&two, "s3cret");
    let out = berth(
        &two,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            &cache,
            ctx.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_success(&out, "build --cache-from");
    assert_eq!(counts(&printed(&out)), (0, 4), "{}", printed(&out));
    // Runner three, not logged in (its base is its own): the cache cannot be read, which is
    // a warning naming why, and the build goes on without it.
    let Some(three) = ROOT.sandbox() else { return };
    assert_success(
        &berth(&three, &["tag", "busybox", &base]).output().unwrap(),
        "tag",
    );
    let out = berth(
        &three,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            &cache,
            ctx.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert_success(&out, "build without credentials for the cache");
    let text = printed(&out);
    assert!(
        text.contains("warning: --cache-from") && text.contains("authentication required"),
        "{text}"
    );
    assert_eq!(counts(&text), (4, 0), "{text}");
}
