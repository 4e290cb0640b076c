//! Images made in code, for tests of the limits on what berth takes in: a layer count in,
//! an image's blobs ([`TallImage`]) out; blobs and a name in, an OCI archive that
//! `berth load` reads out.

use berth_oci::Digest;
use serde_json::json;

/// The blobs of an image whose `n` layers are all the same one-file layer (`/f`).
#[derive(Debug, Clone)]
pub struct TallImage {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl TallImage {
    /// An image of `n` layers, for the host's architecture.
    pub fn new(n: usize) -> TallImage {
        let layer = one_file_layer();
        let digest = Digest::of(&layer).to_string();
        let config = serde_json::to_vec(&json!({
            "architecture": berth_oci::Platform::host().architecture, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": vec![digest.clone(); n]},
        }))
        .expect("plain JSON");
        let layer_desc = json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": layer.len(),
        });
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": vec![layer_desc; n],
        }))
        .expect("plain JSON");
        TallImage {
            layer,
            config,
            manifest,
        }
    }

    /// An OCI archive of the image tagged `name` (`io.containerd.image.name`, as
    /// `docker save` writes it), for `berth load -i`.
    pub fn oci_archive(&self, name: &str) -> Vec<u8> {
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": Digest::of(&self.manifest).to_string(),
                           "size": self.manifest.len(),
                           "annotations": {"io.containerd.image.name": name}}],
        }))
        .expect("plain JSON");
        let mut out = tar::Builder::new(Vec::new());
        let mut add = |name: String, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            out.append_data(&mut h, name, data)
                .expect("writing to memory");
        };
        add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json".into(), &index);
        for blob in [&self.layer, &self.config, &self.manifest] {
            add(format!("blobs/sha256/{}", Digest::of(blob).hex()), blob);
        }
        out.into_inner().expect("writing to memory")
    }
}

/// A layer tar holding one file, `f` (`x\n`).
fn one_file_layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "f", &b"x\n"[..])
        .expect("writing to memory");
    tar.into_inner().expect("writing to memory")
}
