//! The CLI over the store: output shapes (snapshots with redactions), exit codes, and
//! Docker's rules for tag, rmi and inspect.

use berth_test_support::{Sandbox, assert_snapshot, redact};

#[test]
fn images_table_and_json() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox:1.0");
    s.ok(&["tag", "busybox:1.0", "localhost:5000/team/app:dev"]);
    assert_snapshot("images_table", &redact(&s.ok(&["images"]), s.path()));
    let lines: Vec<serde_json::Value> = s
        .ok(&["images", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .any(|l| l["Repository"] == "localhost:5000/team/app" && l["Tag"] == "dev")
    );
    assert_eq!(s.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn inspect_has_docker_fields() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let id = s.import_busybox("busybox");
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "busybox"])).unwrap();
    let i = &v[0];
    assert_eq!(i["Id"], id);
    assert_eq!(i["RepoTags"][0], "busybox:latest");
    assert_eq!(i["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    for key in [
        "Created",
        "Architecture",
        "Os",
        "Size",
        "History",
        "RepoDigests",
    ] {
        assert!(!i[key].is_null(), "{key} missing");
    }
    // By ID prefix and full ID too.
    s.ok(&["inspect", &id[7..19]]);
    s.ok(&["inspect", &id]);
}

#[test]
fn history_lists_the_import() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    assert_snapshot(
        "history",
        &redact(&s.ok(&["history", "--no-trunc", "busybox"]), s.path()),
    );
}

#[test]
fn bad_reference_is_exit_2_with_the_reason() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    let out = s.run(&["tag", "busybox", "Bad/Name"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be lowercase"), "{err}");
    let out = s.run(&["inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such object: nosuch"));
}

#[test]
fn rmi_follows_docker_rules() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let id = s.import_busybox("busybox:a");
    s.ok(&["tag", "busybox:a", "busybox:b"]);
    // An ID with two names needs -f.
    let out = s.run(&["rmi", &id[7..19]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be forced"));
    // A name removes only that name.
    assert_eq!(s.ok(&["rmi", "busybox:a"]).trim(), "Untagged: busybox:a");
    s.ok(&["inspect", "busybox:b"]);
    // A container using the image blocks removal unless -f.
    let digest: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "busybox:b"])).unwrap();
    let digest = digest[0]["Descriptor"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = s.store().join("containers/c1");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("container.json"),
        format!(r#"{{"id":"c1","name":"web","image":"{digest}"}}"#),
    )
    .unwrap();
    let out = s.run(&["rmi", "busybox:b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("used by container web"));
    std::fs::remove_dir_all(&c).unwrap();
    let out = s.ok(&["rmi", "busybox:b"]);
    assert!(
        out.contains("Untagged: busybox:b") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(s.store().join("blobs/sha256"))
            .unwrap()
            .count(),
        0,
        "blobs reclaimed"
    );
    assert_eq!(
        std::fs::read_dir(s.store().join("snapshots"))
            .unwrap()
            .count(),
        0,
        "snapshots reclaimed"
    );
    s.assert_clean();
}

#[test]
fn system_check_reports_damage_with_exit_1() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    s.assert_clean();
    let blobs = s.store().join("blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let out = s.run(&["system", "check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("content hashes to"));
}

#[test]
fn import_tarball_with_changes_and_prune() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let rootfs = s.path().join("r");
    berth_test_support::busybox_rootfs(&rootfs);
    let tgz = s.path().join("r.tar.gz");
    let st = std::process::Command::new("tar")
        .args([
            "-czf",
            tgz.to_str().unwrap(),
            "-C",
            rootfs.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    s.ok(&[
        "import",
        "-c",
        "ENV A=1",
        "-c",
        "ENTRYPOINT [\"/bin/echo\"]",
        "-c",
        "WORKDIR /srv",
        "-m",
        "from a tarball",
        tgz.to_str().unwrap(),
        "fromtar",
    ]);
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "fromtar"])).unwrap();
    assert_eq!(v[0]["Config"]["Env"][0], "A=1");
    assert_eq!(v[0]["Config"]["Entrypoint"][0], "/bin/echo");
    assert_eq!(v[0]["Config"]["WorkingDir"], "/srv");
    assert_eq!(v[0]["Comment"], "from a tarball");
    s.ok(&["rmi", "fromtar"]);
    let out = s.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    s.assert_clean();
}
