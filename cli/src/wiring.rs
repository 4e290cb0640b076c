//! What commands share: the store, registry options (TLS, certificates, mirrors) and the
//! compression of layers that leave the store. Commands never import each other; what two of
//! them need is here, in [`crate::transfer`] (image copies to and from registries) or in
//! [`crate::containers`] (container records).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_oci::Reference;
use berth_registry_client::Options;
use berth_store::Store;

use crate::UsageError;

/// Opens (creating it when missing) the store at `root`.
pub fn open_store(root: &Path) -> anyhow::Result<Arc<Store>> {
    let store = Store::open(root).map_err(|e| {
        anyhow::Error::new(e).context(format!("opening the store at {}", root.display()))
    })?;
    Ok(Arc::new(store))
}

/// Parses a reference given on the command line (a bad one is a usage error, exit 2).
pub fn parse_reference(s: &str) -> anyhow::Result<Reference> {
    Reference::parse(s).map_err(|e| anyhow::Error::new(UsageError(e.to_string())))
}

/// `--compression gzip|zstd|none`: how layers kept uncompressed in the store are compressed
/// when they leave it (push, OCI archives).
pub fn compression(name: &str) -> berth_oci::media_type::Compression {
    use berth_oci::media_type::Compression;
    match name {
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        _ => Compression::Gzip,
    }
}

/// Flags every registry command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// Verify the registry's TLS certificate (false also allows plain HTTP)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
}

impl Default for TlsArgs {
    fn default() -> TlsArgs {
        TlsArgs { tls_verify: true }
    }
}

/// The registry client's options: the environment's (mirrors, insecure registries) with the
/// command's TLS flag and the certificate directories of `BERTH_CERTS_DIR` first.
pub fn options(tls: &TlsArgs) -> Options {
    let mut o = Options::from_env();
    o.tls_verify = tls.tls_verify;
    if let Ok(dirs) = std::env::var("BERTH_CERTS_DIR") {
        let mut extra: Vec<PathBuf> = dirs
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        extra.append(&mut o.certs_dirs);
        o.certs_dirs = extra;
    }
    o
}
