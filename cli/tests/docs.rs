//! What `scripts/install-docs` installs from the binary's own definitions: man pages that
//! `man` renders, and completion scripts that bash, zsh and fish load. Plus `berth version`
//! and `berth info`.

use std::path::Path;
use std::process::Command;

use berth_test_support::{Sandbox, needs};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn install(prefix: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-docs");
    let out = Command::new("bash")
        .arg(script)
        .arg(prefix)
        .env("BERTH", BIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn text(out: std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn man_pages_render_for_the_command_and_each_subcommand() {
    if !needs(
        "man (apt-get install man-db)",
        Path::new("/usr/bin/man").exists(),
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    install(d.path());
    // man justifies lines: spaces are compared as one.
    let man = |page: &str| {
        let out = text(
            Command::new("man")
                .arg(page)
                .env("MANPATH", d.path().join("share/man"))
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .output()
                .unwrap(),
        );
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let build = man("berth-build");
    assert!(
        build.contains("berth-build - Build an image from a Dockerfile"),
        "{build}"
    );
    assert!(build.contains("berth build"), "{build}");
    assert!(build.contains("--cache-from"), "{build}");
    let prune = man("berth-system-prune");
    assert!(prune.contains("berth system prune"), "{prune}");
    let top = man("berth");
    assert!(
        top.contains("berth-build(1)") || top.contains("build"),
        "{top}"
    );
    // Internal commands have no page.
    assert!(!d.path().join("share/man/man1/berth-__init.1").exists());
}

#[test]
fn completions_load_and_complete_in_bash_zsh_and_fish() {
    let d = tempfile::tempdir().unwrap();
    install(d.path());
    let bash = d.path().join("share/bash-completion/completions/berth");
    let script = format!(
        "source {}; complete -p berth; COMP_WORDS=(berth bu); COMP_CWORD=1; _berth berth bu berth; echo \"${{COMPREPLY[@]}}\"; COMP_WORDS=(berth build --cache-f); COMP_CWORD=2; _berth berth --cache-f build; echo \"${{COMPREPLY[@]}}\"",
        bash.display()
    );
    let out = text(Command::new("bash").arg("-c").arg(script).output().unwrap());
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("complete ") && lines[0].contains(" -F _berth "),
        "{out}"
    );
    assert!(lines[0].ends_with(" berth"), "{out}");
    assert_eq!(lines[1], "build", "{out}");
    assert!(lines[2].split(' ').any(|w| w == "--cache-from"), "{out}");
    // Internal commands are never offered.
    assert!(!out.contains("__monitor"), "{out}");

    if needs(
        "zsh (apt-get install zsh)",
        Path::new("/usr/bin/zsh").exists(),
    ) {
        let zsh = d.path().join("share/zsh/site-functions/_berth");
        text(Command::new("zsh").arg("-n").arg(&zsh).output().unwrap());
        let script = format!(
            "autoload -Uz compinit && compinit -u -d {}/zcompdump; fpath=({} $fpath); autoload -Uz _berth; whence -w _berth",
            d.path().display(),
            zsh.parent().unwrap().display()
        );
        let out = text(Command::new("zsh").arg("-fc").arg(script).output().unwrap());
        assert!(out.contains("_berth: function"), "{out}");
    }
    if needs(
        "fish (apt-get install fish)",
        Path::new("/usr/bin/fish").exists(),
    ) {
        let fish = d.path().join("share/fish/vendor_completions.d/berth.fish");
        let script = format!("source {}; complete -C 'berth bu'", fish.display());
        let out = text(
            Command::new("fish")
                .arg("--no-config")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap(),
        );
        assert!(out.lines().any(|l| l.starts_with("build")), "{out}");
    }
}

#[test]
fn version_names_the_build_and_the_store_format() {
    let s = Sandbox::new(BIN);
    let table = s.ok(&["version"]);
    for key in [
        "Version:",
        "Git commit:",
        "Rust version:",
        "Store format:",
        "OS/Arch:",
    ] {
        assert!(table.contains(key), "{table}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["version", "--format", "json"])).unwrap();
    let c = &v["Client"];
    assert_eq!(c["Version"], env!("CARGO_PKG_VERSION"));
    assert!(
        c["RustVersion"].as_str().unwrap().starts_with("rustc "),
        "{v}"
    );
    assert_eq!(c["Os"], "linux");
    let commit = c["GitCommit"].as_str().unwrap();
    // A git checkout records its commit (a source tarball says "unknown").
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .unwrap();
    if head.status.success() {
        assert!(
            String::from_utf8(head.stdout).unwrap().starts_with(commit),
            "{commit}"
        );
    }
    assert!(
        c["StoreFormat"].as_str().unwrap().contains("berth-cache-v"),
        "{v}"
    );
}

#[test]
fn info_counts_the_store_and_describes_the_machine() {
    let s = Sandbox::new(BIN);
    s.import_busybox("busybox");
    s.ok(&["tag", "busybox", "other:1"]);
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(v["Images"], 1, "{v}");
    assert_eq!(v["Containers"], 0, "{v}");
    assert!(
        v["StoreSize"].as_u64().unwrap() > 100_000,
        "busybox is in it: {v}"
    );
    assert!(
        v["StoreRoot"]
            .as_str()
            .unwrap()
            .starts_with(s.path().to_str().unwrap()),
        "{v}"
    );
    let euid = nix::unistd::geteuid();
    assert_eq!(v["Rootless"], !euid.is_root(), "{v}");
    for key in ["CgroupVersion", "Seccomp", "Overlay", "UserNamespaces"] {
        assert!(!v[key].as_str().unwrap().is_empty(), "{key}: {v}");
    }
    assert!(v["Registries"]["LoggedIn"].is_array(), "{v}");
    // Registries with saved credentials are named; their secrets never shown.
    let auth = s.path().join("auth.json");
    std::fs::write(
        &auth,
        r#"{"auths":{"https://reg.example:5000/v1/":{"auth":"Y2k6czNjcmV0"}},"credHelpers":{"helped.example":"pass"}}"#,
    )
    .unwrap();
    let out = s
        .cmd()
        .env("REGISTRY_AUTH_FILE", &auth)
        .args(["info", "--format", "{{json .Registries.LoggedIn}}"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[\"helped.example\",\"reg.example:5000\"]\n",
        "{out:?}"
    );
    // A mirror written with credentials is shown without them.
    let out = s
        .cmd()
        .env(
            "BERTH_REGISTRY_MIRRORS",
            "ci:s3cret@mirror.example:5000,plain.example",
        )
        .args(["info", "--format", "{{json .Registries.Mirrors}}"])
        .output()
        .unwrap();
    let mirrors = String::from_utf8_lossy(&out.stdout);
    assert!(!mirrors.contains("s3cret"), "{mirrors}");
    assert!(
        mirrors.contains("mirror.example:5000") && mirrors.contains("plain.example"),
        "{mirrors}"
    );
    let table = s.ok(&["info"]);
    for key in [
        "Store root:",
        "Images:",
        "Cgroup version:",
        "Rootless:",
        "Logged in to:",
    ] {
        assert!(table.contains(key), "{table}");
    }
    // Templates, as Docker's; a field that does not exist is a usage error.
    assert_eq!(
        s.ok(&["info", "--format", "{{.Images}} {{.Containers}}"]),
        "1 0\n"
    );
    let bad = s.run(&["info", "--format", "{{.NoSuchField}}"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert_eq!(
        s.ok(&["version", "--format", "{{.Client.Version}}"]),
        format!("{}\n", env!("CARGO_PKG_VERSION"))
    );
}
