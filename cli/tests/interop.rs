//! Images berth writes are read by real tools (skopeo, umoci), and what they write berth
//! reads back with unchanged digests.

use berth_test_support::{Sandbox, tool};

fn manifest_digest(s: &Sandbox, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", name])).unwrap();
    v[0]["Descriptor"]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn skopeo_reads_the_store_directly() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox:1.0");
    let digest = manifest_digest(&s, "busybox:1.0");
    let out = tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci:{}:docker.io/library/busybox:1.0", s.store().display()),
        ],
        s.path(),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], digest);
}

#[test]
fn oci_archive_is_read_by_skopeo_and_umoci_and_loads_back_with_the_same_id() {
    // skopeo unpacks an oci-archive with the owners its entries name (root).
    if !berth_test_support::needs_root("skopeo unpacks the archive as its owners") {
        return;
    }
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let id = s.import_busybox("busybox:latest");
    let digest = manifest_digest(&s, "busybox");
    s.ok(&["save", "--format", "oci", "-o", "x.tar", "busybox"]);

    let inspect = |file: &str| -> serde_json::Value {
        serde_json::from_str(&tool(
            "skopeo",
            &["inspect", &format!("oci-archive:{file}")],
            s.path(),
        ))
        .unwrap()
    };
    // The layer left compressed (gzip by default): another manifest over the same config,
    // made once: saving again gives the same bytes, and `--compression none` the store's own.
    let archived = inspect("x.tar")["Digest"].as_str().unwrap().to_owned();
    assert_ne!(archived, digest);
    let raw: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", "--raw", "oci-archive:x.tar"],
        s.path(),
    ))
    .unwrap();
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    s.ok(&["save", "-o", "again.tar", "busybox"]);
    assert_eq!(inspect("again.tar")["Digest"], archived.as_str());
    s.ok(&[
        "save",
        "--compression",
        "none",
        "-o",
        "plain.tar",
        "busybox",
    ]);
    assert_eq!(inspect("plain.tar")["Digest"], digest.as_str());

    std::fs::create_dir(s.path().join("layout")).unwrap();
    tool("tar", &["-C", "layout", "-xf", "x.tar"], s.path());
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            "layout:docker.io/library/busybox:latest",
            "bundle",
        ],
        s.path(),
    );
    assert!(s.path().join("bundle/rootfs/bin/busybox").is_file());
    assert!(s.path().join("bundle/config.json").is_file());

    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let out = other.ok(&["load", "-i", s.path().join("x.tar").to_str().unwrap()]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    assert_eq!(manifest_digest(&other, "busybox"), archived);
    let v: serde_json::Value = serde_json::from_str(&other.ok(&["inspect", "busybox"])).unwrap();
    assert_eq!(v[0]["Id"], id);
    other.assert_clean();
}

#[test]
fn docker_archive_is_read_by_skopeo_and_loads_back_unchanged() {
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let id = s.import_busybox("team/busybox:2");
    let digest = manifest_digest(&s, "team/busybox:2");
    s.ok(&[
        "save",
        "--format",
        "docker",
        "-o",
        "d.tar",
        "team/busybox:2",
    ]);
    tool(
        "skopeo",
        &["copy", "docker-archive:d.tar", "oci:copied:tag"],
        s.path(),
    );
    let v: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", "oci:copied:tag"], s.path())).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);

    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    let out = other.ok(&["load", "-i", s.path().join("d.tar").to_str().unwrap()]);
    assert!(out.contains("Loaded image: team/busybox:2"), "{out}");
    assert_eq!(
        manifest_digest(&other, "team/busybox:2"),
        digest,
        "manifest digest survives a docker-archive round trip"
    );
    let v: serde_json::Value =
        serde_json::from_str(&other.ok(&["inspect", "team/busybox:2"])).unwrap();
    assert_eq!(v[0]["Id"], id);
}

#[test]
fn skopeo_written_archives_load_and_unpack() {
    // An image another tool wrote: skopeo copies berth's store image into a docker archive
    // with gzip layers of its own; berth loads it.
    let s = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    s.import_busybox("busybox");
    let src = format!(
        "oci:{}:docker.io/library/busybox:latest",
        s.store().display()
    );
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-compress",
            &src,
            "docker-archive:sk.tar:other/bb:3",
        ],
        s.path(),
    );
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            &src,
            "oci-archive:skz.tar:docker.io/other/zstd:1",
        ],
        s.path(),
    );
    let other = Sandbox::new(env!("CARGO_BIN_EXE_berth"));
    assert!(
        other
            .ok(&["load", "-i", s.path().join("sk.tar").to_str().unwrap()])
            .contains("Loaded image: other/bb:3")
    );
    assert!(
        other
            .ok(&["load", "-i", s.path().join("skz.tar").to_str().unwrap()])
            .contains("Loaded image: other/zstd:1")
    );
    other.assert_clean();
    let snaps = std::fs::read_dir(other.store().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(snaps, 1, "both images share one unpacked layer");
    assert!(
        walkdir::WalkDir::new(other.store().join("snapshots"))
            .into_iter()
            .flatten()
            .any(|e| e.file_name() == "busybox")
    );
}
