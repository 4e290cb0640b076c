//! Docker-style `--format` templates and `--filter` for the listing commands: images, ps,
//! inspect, history and tags, over real stores (and a real registry for tags).

use std::collections::BTreeSet;

use berth_test_support::{
    RegistryConfig, Sandbox, TestRegistry, Tier, assert_success, busybox_rootfs,
};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// Imports the busybox rootfs as `name`, created at `epoch` (seconds), with `changes`.
fn import(s: &Sandbox, name: &str, epoch: u64, changes: &[&str]) {
    let rootfs = s.path().join("busybox-rootfs");
    if !rootfs.exists() {
        busybox_rootfs(&rootfs);
    }
    let mut cmd = s.cmd();
    cmd.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .arg("import");
    for c in changes {
        cmd.args(["--change", c]);
    }
    cmd.args([rootfs.to_str().unwrap(), name]);
    assert_success(&cmd.output().unwrap(), &format!("import {name}"));
}

/// A failing command: its exit code and stderr.
fn fails(s: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let out = s.run(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_owned).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Three images: `busybox:1.0` (label a=1, created at 1000, also tagged
/// `localhost:5000/team/app:dev`), `other:2` (label b=2, created at 2000), and an untagged one
/// built from `busybox:1.0` (labels a=1 and old=yes, created at 500).
fn three_images() -> Sandbox {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    import(&s, "busybox:1.0", 1000, &["LABEL a=1"]);
    s.ok(&["tag", "busybox:1.0", "localhost:5000/team/app:dev"]);
    import(&s, "other:2", 2000, &["LABEL b=2"]);
    let ctx = s.context(
        "old",
        &[("Dockerfile", "FROM busybox:1.0\nLABEL old=yes\n")],
    );
    let built = s
        .cmd()
        .env("SOURCE_DATE_EPOCH", "500")
        .args(["build", "-q", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&built, "build without a name");
    s
}

#[test]
fn images_format_templates() {
    let s = three_images();
    assert_eq!(
        lines(&s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])),
        set(&[
            "busybox:1.0",
            "localhost:5000/team/app:dev",
            "other:2",
            "<none>:<none>"
        ])
    );
    // `table`: Docker's column names as the header, columns aligned at the tabs.
    let out = s.ok(&[
        "images",
        "--format",
        r"table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
    ]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 5, "{out}");
    assert!(
        rows[0].starts_with("REPOSITORY")
            && rows[0].contains("   TAG   ")
            && rows[0].contains("IMAGE ID"),
        "{out}"
    );
    let tag_column = rows[0].find("TAG").unwrap();
    let app = rows
        .iter()
        .find(|r| r.starts_with("localhost:5000/team/app"))
        .unwrap();
    assert_eq!(app.find("dev"), Some(tag_column), "{out}");
    let id_column = rows[0].find("IMAGE ID").unwrap();
    assert_eq!(app.chars().nth(id_column - 1), Some(' '));
    // Functions Docker's docs use.
    let json_lines: Vec<serde_json::Value> = s
        .ok(&["images", "--format", "{{json .}}"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json_lines.len(), 4);
    assert!(
        json_lines
            .iter()
            .any(|l| l["Tag"] == "dev" && l["Size"].is_string())
    );
    assert_eq!(
        lines(&s.ok(&[
            "images",
            "--format",
            "{{if eq .Tag \"dev\"}}{{upper .Repository}}{{else}}{{len .Tag}}{{end}}"
        ])),
        set(&["3", "LOCALHOST:5000/TEAM/APP", "1", "6"])
    );
    // The default table and `json` are as before.
    assert!(s.ok(&["images"]).starts_with("REPOSITORY"));
    let first = s.ok(&["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert!(v["CreatedSince"].is_string());
    // A field that does not exist: exit 2, saying which and what there is.
    let (code, err) = fails(&s, &["images", "--format", "{{.Nope}}"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("Nope") && err.contains("Repository"), "{err}");
    let (code, err) = fails(&s, &["images", "--format", "{{if .Tag}}"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn images_filters() {
    let s = three_images();
    let names = |filters: &[&str]| {
        let mut args = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        lines(&s.ok(&args))
    };
    assert_eq!(names(&["dangling=true"]), set(&["<none>:<none>"]));
    assert_eq!(
        names(&["dangling=false"]),
        set(&["busybox:1.0", "localhost:5000/team/app:dev", "other:2"])
    );
    assert_eq!(
        names(&["label=a"]),
        set(&[
            "busybox:1.0",
            "localhost:5000/team/app:dev",
            "<none>:<none>"
        ])
    );
    assert_eq!(names(&["label=old=yes"]), set(&["<none>:<none>"]));
    assert_eq!(names(&["label=b=2"]), set(&["other:2"]));
    assert_eq!(names(&["label=b=3"]), set(&[]));
    // One key's values are ORed, different keys ANDed.
    assert_eq!(
        names(&["label=old", "label=b=2"]),
        set(&["<none>:<none>", "other:2"])
    );
    assert_eq!(names(&["label=a", "reference=other*"]), set(&[]));
    assert_eq!(
        names(&["label=a", "dangling=false"]),
        set(&["busybox:1.0", "localhost:5000/team/app:dev"])
    );
    assert_eq!(names(&["reference=busy*"]), set(&["busybox:1.0"]));
    assert_eq!(names(&["reference=busybox:1.*"]), set(&["busybox:1.0"]));
    assert_eq!(
        names(&["reference=*/*/app"]),
        set(&["localhost:5000/team/app:dev"])
    );
    assert_eq!(names(&["reference=*app"]), set(&[]), "* stops at /");
    assert_eq!(
        names(&["before=other:2"]),
        set(&[
            "busybox:1.0",
            "localhost:5000/team/app:dev",
            "<none>:<none>"
        ])
    );
    assert_eq!(names(&["since=busybox:1.0"]), set(&["other:2"]));
    assert_eq!(names(&["since=busybox:1.0", "dangling=true"]), set(&[]));
    let (code, err) = fails(&s, &["images", "--filter", "colour=red"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("dangling, label, reference, before, since"),
        "{err}"
    );
    let (code, _) = fails(&s, &["images", "--filter", "dangling=maybe"]);
    assert_eq!(code, Some(2));
    let (code, _) = fails(&s, &["images", "--filter", "before=nothere:1"]);
    assert_ne!(code, Some(0));
}

#[test]
fn inspect_format_templates() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    // A label holding terminal escapes: a template never prints them raw.
    import(
        &s,
        "busybox:1.0",
        1000,
        &[
            "LABEL a=1",
            "ENV X=1",
            "LABEL evil=\u{1b}]52;c;eA==\u{7}\u{1b}[2J",
        ],
    );
    s.ok(&["tag", "busybox:1.0", "busybox:2.0"]);
    let id = s.image_id("busybox:1.0");
    let f = |t: &str| s.ok(&["inspect", "--format", t, "busybox:1.0"]);
    assert_eq!(f("{{.Id}}"), format!("{id}\n"));
    assert_eq!(f("{{index .RepoTags 0}}"), "busybox:1.0\n");
    assert_eq!(
        f("{{range .RepoTags}}{{println .}}{{end}}"),
        "busybox:1.0\nbusybox:2.0\n\n"
    );
    assert_eq!(f(r#"{{join .RepoTags ","}}"#), "busybox:1.0,busybox:2.0\n");
    assert_eq!(f(r#"{{index .Config.Labels "a"}}"#), "1\n");
    assert_eq!(f("{{.Config.Labels.a}}"), "1\n");
    assert_eq!(f("{{.Config.Labels.absent}}"), "<no value>\n");
    assert_eq!(
        f("{{.Architecture | upper}}"),
        format!(
            "{}\n",
            std::env::consts::ARCH
                .replace("x86_64", "AMD64")
                .replace("aarch64", "ARM64")
        )
    );
    assert_eq!(f("{{len .RootFS.Layers}}"), "1\n");
    let env: Vec<String> = serde_json::from_str(f("{{json .Config.Env}}").trim()).unwrap();
    assert!(env.contains(&"X=1".to_owned()), "{env:?}");
    let whole: serde_json::Value = serde_json::from_str(f("{{json .}}").trim()).unwrap();
    assert_eq!(whole["Id"], id);
    // Several images: a line each.
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.Id}}", "busybox:1.0", "busybox:2.0"]),
        format!("{id}\n{id}\n")
    );
    // `json` is the default array.
    let v: serde_json::Value =
        serde_json::from_str(&s.ok(&["inspect", "--format", "json", "busybox:1.0"])).unwrap();
    assert_eq!(v[0]["Id"], id);
    for t in [
        r#"{{index .Config.Labels "evil"}}"#,
        "{{json .Config.Labels}}",
        "{{.Config.Labels}}",
    ] {
        let out = f(t);
        assert!(
            !out.trim_end().chars().any(|c| c.is_control()),
            "{t}: {out:?}"
        );
        assert!(out.contains("52;c;"), "{t}: {out:?}");
    }
    let (code, err) = fails(
        &s,
        &["inspect", "--format", "{{.Config.Nope}}", "busybox:1.0"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(".Config.Nope"), "{err}");
    let (code, err) = fails(
        &s,
        &[
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            "busybox:1.0",
        ],
    );
    assert_eq!(code, Some(2), "no digest recorded: {err}");
    assert!(err.contains("out of range"), "{err}");
    let (code, err) = fails(&s, &["inspect", "--format", "table {{.Id}}", "busybox:1.0"]);
    assert_eq!(code, Some(2), "inspect has no table: {err}");
}

#[test]
fn history_format_templates() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    import(&s, "busybox:1.0", 1000, &[]);
    let out = s.ok(&[
        "history",
        "--format",
        "{{.CreatedBy}}|{{.CreatedAt}}",
        "busybox:1.0",
    ]);
    assert!(out.starts_with("berth import "), "{out}");
    assert!(out.trim_end().ends_with("|1970-01-01T00:16:40Z"), "{out}");
    let out = s.ok(&[
        "history",
        "--format",
        r"table {{.ID}}\t{{.CreatedBy}}\t{{.Size}}",
        "busybox:1.0",
    ]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("IMAGE") && rows[0].contains("CREATED BY") && rows[0].ends_with("SIZE"),
        "{out}"
    );
    assert_eq!(
        rows[1].find("berth import"),
        rows[0].find("CREATED BY"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(s.ok(&["history", "--format", "json", "busybox:1.0"]).trim()).unwrap();
    assert!(v["CreatedBy"].as_str().unwrap().starts_with("berth import"));
    let (code, err) = fails(&s, &["history", "--format", "{{.Created}}", "busybox:1.0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("CreatedAt"), "lists the fields: {err}");
}

#[test]
fn tags_format_templates() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    import(&s, "busybox:1.0", 1000, &[]);
    let reg = TestRegistry::start(RegistryConfig::default());
    let berth = |args: &[&str]| {
        s.cmd()
            .env("DOCKER_CONFIG", s.path().join("docker-config"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env("BERTH_CERTS_DIR", reg.certs_dir())
            .args(args)
            .output()
            .unwrap()
    };
    let repo = format!("{}/team/app", reg.host);
    for tag in ["1.0", "2.0"] {
        let name = format!("{repo}:{tag}");
        s.ok(&["tag", "busybox:1.0", &name]);
        assert_success(&berth(&["push", &name]), "push");
    }
    let ok = |args: &[&str]| assert_success(&berth(args), &format!("{args:?}"));
    // The registry's order, whatever it is, in every format.
    let plain = ok(&["tags", &repo]);
    assert_eq!(lines(&plain), set(&["1.0", "2.0"]));
    let order: Vec<&str> = plain.lines().collect();
    assert_eq!(
        ok(&["tags", "--format", "{{.Repository}}:{{.Tag}}", &repo]),
        format!("{repo}:{}\n{repo}:{}\n", order[0], order[1])
    );
    assert_eq!(
        ok(&["tags", "--format", "table {{.Tag}}", &repo]),
        format!("TAG\n{plain}")
    );
    let first = ok(&["tags", "--format", "json", &repo]);
    let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(v["Tag"], order[0]);
    let out = berth(&["tags", "--format", "{{.Digest}}", &repo]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ps_format_and_filters() {
    let Some(s) = ROOT.sandbox() else { return };
    import(&s, "other:2", 2000, &["LABEL b=2"]);
    let other_id = s.image_id("other:2");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-v",
        "webdata:/data",
        "busybox",
        "sleep",
        "100",
    ]);
    s.ok(&["run", "--name", "done", "other:2", "true"]);
    let names = |args: &[&str]| {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend(args);
        lines(&s.ok(&all))
    };
    assert_eq!(names(&[]), set(&["web"]));
    assert_eq!(names(&["-a"]), set(&["web", "done"]));
    // A status filter lists stopped containers without -a.
    assert_eq!(names(&["--filter", "status=exited"]), set(&["done"]));
    assert_eq!(names(&["--filter", "status=running"]), set(&["web"]));
    assert_eq!(
        names(&["--filter", "status=running", "--filter", "status=exited"]),
        set(&["web", "done"])
    );
    assert_eq!(names(&["-a", "--filter", "name=we"]), set(&["web"]));
    assert_eq!(names(&["-a", "--filter", "label=b=2"]), set(&["done"]));
    assert_eq!(
        names(&["-a", "--filter", "label=b", "--filter", "name=web"]),
        set(&[])
    );
    assert_eq!(
        names(&["-a", "--filter", "ancestor=other:2"]),
        set(&["done"])
    );
    assert_eq!(
        names(&["-a", "--filter", &format!("ancestor={}", &other_id[7..19])]),
        set(&["done"])
    );
    assert_eq!(
        names(&["-a", "--filter", "ancestor=busybox"]),
        set(&["web"])
    );
    assert_eq!(names(&["-a", "--filter", "ancestor=nothere:1"]), set(&[]));
    let out = s.ok(&[
        "ps",
        "-a",
        "--format",
        r#"table {{.Names}}\t{{.Image}}\t{{.State}}\t{{.Label "b"}}"#,
    ]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(
        rows[0].starts_with("NAMES") && rows[0].contains("IMAGE") && rows[0].contains("STATE"),
        "{out}"
    );
    let done = rows.iter().find(|r| r.starts_with("done")).unwrap();
    assert_eq!(done.find("other:2"), rows[0].find("IMAGE"), "{out}");
    assert_eq!(
        done.split_whitespace().collect::<Vec<_>>(),
        ["done", "other:2", "exited", "2"],
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(s.ok(&["ps", "--format", "{{json .}}"]).trim()).unwrap();
    assert_eq!(v["Names"], "web");
    assert_eq!(v["Command"], "\"sleep 100\"");
    assert_eq!(v["Mounts"], "webdata");
    assert_eq!(v["State"], "running");
    assert_eq!(v["Status"], "Up");
    let (code, err) = fails(&s, &["ps", "--format", "{{.Nope}}"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = fails(&s, &["ps", "--filter", "image=x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("status, name, label, ancestor"), "{err}");
    let (code, _) = fails(&s, &["ps", "--filter", "status=sleeping"]);
    assert_eq!(code, Some(2));
    s.ok(&["rm", "-f", "web", "done"]);
}

#[test]
fn volume_ls_and_inspect_format_templates() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.ok(&["volume", "create", "--label", "team=web", "data"]);
    s.ok(&["volume", "create", "cache"]);
    assert_eq!(
        lines(&s.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} [{{.Label \"team\"}}]"
        ])),
        set(&["data local [web]", "cache local []"])
    );
    let table = s.ok(&["volume", "ls", "--format", "table {{.Name}}\\t{{.Labels}}"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows[0].split_whitespace().collect::<Vec<_>>(),
        ["VOLUME", "NAME", "LABELS"]
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("data") && r.ends_with("team=web")),
        "{table}"
    );
    let json: Vec<serde_json::Value> = s
        .ok(&["volume", "ls", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2);
    assert!(
        json.iter()
            .all(|v| v["Driver"] == "local" && v["Scope"] == "local")
    );
    let mountpoint = s.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"]);
    assert!(
        mountpoint.trim_end().ends_with("/volumes/data/_data"),
        "{mountpoint}"
    );
    let (code, err) = fails(&s, &["volume", "ls", "--format", "{{.Nope}}"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn network_ls_lists_the_built_in_networks_with_templates_and_filters() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let table = s.ok(&["network", "ls"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"],
        "{table}"
    );
    assert_eq!(rows[1][1..], ["bridge", "bridge", "local"], "{table}");
    assert_eq!(rows[2][1..], ["host", "host", "local"], "{table}");
    assert_eq!(rows[3][1..], ["none", "null", "local"], "{table}");
    assert_eq!(
        s.ok(&[
            "network",
            "ls",
            "--format",
            "{{.Name}}/{{.Driver}}",
            "--filter",
            "driver=null"
        ]),
        "none/null\n"
    );
    assert_eq!(
        s.ok(&["network", "ls", "-q", "--filter", "name=ho"])
            .trim()
            .len(),
        12
    );
    let head = s.ok(&["network", "ls", "--format", "table {{.Name}}\\t{{.Scope}}"]);
    assert_eq!(
        head.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAME", "SCOPE"]
    );
    let (code, err) = fails(&s, &["network", "ls", "--filter", "colour=red"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn inspect_templates_see_every_field_of_dockers_struct() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    // An image whose config sets no user, environment or labels.
    import(&s, "bare:1", 1_700_000_000, &[]);
    assert_eq!(
        s.ok(&[
            "inspect",
            "-f",
            "[{{.Config.User}}] {{json .Config.Env}} [{{index .Config.Labels \"x\"}}] {{.Config.Tty}} {{len .RepoDigests}}",
            "bare:1"
        ]),
        "[] null [] false 0\n"
    );
    // A field Docker's struct does not have is still an error.
    let (code, err) = fails(&s, &["inspect", "-f", "{{.Config.Colour}}", "bare:1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("Colour"), "{err}");
}

#[test]
fn system_df_takes_dockers_documented_templates() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    import(&s, "one:1", 1_700_000_000, &[]);
    let typed = s.ok(&["system", "df", "--format", "{{.Type}}: {{.TotalCount}}"]);
    assert!(typed.lines().any(|l| l == "Images: 1"), "{typed}");
    assert!(typed.lines().any(|l| l == "Containers: 0"), "{typed}");
    let table = s.ok(&[
        "system",
        "df",
        "--format",
        "table {{.Type}}\\t{{.Size}}\\t{{.Reclaimable}}",
    ]);
    let head: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["TYPE", "SIZE", "RECLAIMABLE"], "{table}");
    let rows: Vec<serde_json::Value> = s
        .ok(&["system", "df", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter()
            .any(|r| r["Type"] == "Images" && r["TotalCount"] == "1")
    );
}
