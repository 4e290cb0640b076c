//! Images of many layers: more than the lower directories' paths that fit in the one page
//! `mount(2)` takes (about 40 in a store under `/tmp`), up to the 125 layers an image may
//! have. A RUN step, a COPY step and `berth run` stack them all in one overlay.

use berth_test_support::{Sandbox, Tier};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// Builds `FROM busybox` plus `steps` layer steps (RUN or COPY, alternating) as `tag`.
fn build_tall(s: &Sandbox, tag: &str, steps: usize) {
    let mut dockerfile = String::from("FROM busybox\n");
    let mut files = Vec::new();
    for i in 0..steps {
        if i % 2 == 0 {
            dockerfile.push_str(&format!("RUN echo {i} > /layer-{i}\n"));
        } else {
            dockerfile.push_str(&format!("COPY f{i} /layer-{i}\n"));
            files.push((format!("f{i}"), format!("{i}\n")));
        }
    }
    let mut all: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    all.push(("Dockerfile", &dockerfile));
    let ctx = s.context(tag, &all);
    s.ok(&["build", "-q", "-t", tag, ctx.to_str().unwrap()]);
}

fn layer_count(s: &Sandbox, image: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", image])).unwrap();
    v[0]["RootFS"]["Layers"].as_array().unwrap().len()
}

#[test]
fn a_run_and_a_copy_step_on_a_100_layer_image_see_every_layer() {
    let Some(s) = ROOT.sandbox() else { return };
    build_tall(&s, "tall", 99);
    assert_eq!(layer_count(&s, "tall"), 100);
    let ctx = s.context(
        "on-top",
        &[
            ("top", "top\n"),
            (
                "Dockerfile",
                "FROM tall\nCOPY top /top\nRUN cat /layer-0 /layer-97 /layer-98 /top > /seen\n",
            ),
        ],
    );
    s.ok(&["build", "-q", "-t", "on-top", ctx.to_str().unwrap()]);
    assert_eq!(layer_count(&s, "on-top"), 102);
    let out = s.ok(&["run", "--rm", "on-top", "cat", "/seen"]);
    assert_eq!(out, "0\n97\n98\ntop\n");
}

/// A tar of `files` (path, contents), or of the directory `dir` when given.
fn layer_tar(dir: Option<&std::path::Path>, files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    if let Some(dir) = dir {
        tar.append_dir_all(".", dir).unwrap();
    }
    for (path, contents) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(contents.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, contents.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap()
}

/// An OCI archive of busybox plus `extra` one-file layers (`/layer-<i>`), named `name`:
/// made without a build, so `berth run` is tested on its own.
fn tall_busybox_archive(s: &Sandbox, name: &str, extra: usize) -> Vec<u8> {
    use berth_oci::Digest;
    let rootfs = s.path().join("tall-rootfs");
    berth_test_support::busybox_rootfs(&rootfs);
    let mut layers = vec![layer_tar(Some(&rootfs), &[])];
    for i in 0..extra {
        layers.push(layer_tar(
            None,
            &[(&format!("layer-{i}"), &format!("{i}\n"))],
        ));
    }
    let digests: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": berth_oci::Platform::host().architecture, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": digests},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": Digest::of(l).to_string(), "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": Digest::of(&manifest).to_string(), "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": name}}],
    }))
    .unwrap();
    let mut files = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index),
    ];
    for blob in layers.into_iter().chain([config, manifest]) {
        files.push((format!("blobs/sha256/{}", Digest::of(&blob).hex()), blob));
    }
    let mut out = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, path, &data[..]).unwrap();
    }
    out.into_inner().unwrap()
}

#[test]
fn berth_run_of_a_125_layer_image_sees_every_layer() {
    let Some(s) = ROOT.sandbox() else { return };
    let archive = s.path().join("tallest.tar");
    std::fs::write(&archive, tall_busybox_archive(&s, "tallest:1", 124)).unwrap();
    s.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(layer_count(&s, "tallest:1"), 125);
    let out = s.ok(&[
        "run",
        "--rm",
        "tallest:1",
        "sh",
        "-c",
        "ls /layer-* | wc -l; cat /layer-0 /layer-123",
    ]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["124", "0", "123"]
    );
    // A kept container too (not `volatile`).
    let out = s.ok(&["run", "--name", "kept", "tallest:1", "cat", "/layer-122"]);
    assert_eq!(out, "122\n");
    s.ok(&["rm", "kept"]);
}

#[test]
fn a_build_of_125_layers_runs() {
    let Some(s) = ROOT.sandbox() else { return };
    build_tall(&s, "built", 124);
    assert_eq!(layer_count(&s, "built"), 125);
    let out = s.ok(&["run", "--rm", "built", "cat", "/layer-0", "/layer-123"]);
    assert_eq!(out, "0\n123\n");
}
