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
