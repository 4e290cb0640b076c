//! The OCI distribution client: talks to registries and implements the transport traits of
//! `berth_oci::transport` for a remote repository, so `pull` is `copy_image(remote, store)`
//! and `push` the reverse, wired in `cli`. It never imports `berth-store`.
//!
//! | module | in → out |
//! |---|---|
//! | [`auth`] | `WWW-Authenticate` headers → challenges; token responses |
//! | [`creds`] | `config.json` / `auth.json` / credential helpers → credentials; login and logout writes |
//! | [`tls`] | system roots + `certs.d` → a rustls client config |
//! | [`origin`] | a URL a registry handed back → the URL followed, and whether credentials go along |
//! | [`client`] | a registry: scheme, HTTP client, the authentication flow, retries |
//! | [`remote`] | a repository: manifests, blobs, uploads, tags; [`Remote`] is an `ImageSource` and an `ImageDestination` |
//! | [`error`] | what failed, in words a user can act on |

pub mod auth;
pub mod client;
pub mod creds;
pub mod error;
pub mod origin;
pub mod remote;
pub mod tls;

pub use client::{Options, Registry};
pub use creds::Credentials;
pub use error::RegistryError;
pub use remote::Remote;

/// Connects to the registry of `registry` with the credentials saved for it (if any).
pub async fn connect(
    registry: &str,
    options: &Options,
) -> Result<std::sync::Arc<Registry>, RegistryError> {
    let creds = creds::lookup(registry)?;
    Registry::connect(registry, options, creds).await
}
