//! The local store: everything berth keeps on disk, and the only code that touches it.
//!
//! The root is a valid OCI image layout (image-layout.md), so `skopeo inspect
//! oci:<root>:<reference>` and `umoci` read it directly.
//!
//! | on disk | module | what it does |
//! |---|---|---|
//! | `oci-layout`, the directories | [`layout`] | the store itself: [`Store`], opened ([`Store::open`]), the paths under its root, atomic file writes; cleans `tmp/` |
//! | every directory and file's mode | [`files`] | private to the user running berth; locks nobody else can open |
//! | `locks/` | [`lock`] | the lock order between processes |
//! | `blobs/sha256/<hex>` | [`blobs`], [`images`] | verified writes ([`BlobWriter`]); reading images by name or ID |
//! | `index.json` | [`index`] | tags: names → manifest descriptors |
//! | `snapshots/<chain-hex>/` | [`snapshots`], [`layer`] | layers unpacked safely; directories packed deterministically |
//! | `cache/<key>`, `tmp/` work dirs | [`cache`] | build cache records; committing an overlay upper dir as a layer |
//! | `compressed/<diff-id>.<alg>` | [`compress`] | layers compressed on the way out, once, on all cores |
//! | `containers/<id>/container.json` | [`containers`] | which images and volumes containers keep alive |
//! | `volumes/<name>/_data`, `volume.json` | [`volumes`] | volumes: made, listed, removed unless a container uses them |
//! | — | [`gc`], [`check`] | removing unreferenced content; verifying everything |
//! | `contexts/<key>` | [`contexts`] | the builder's stat → digest index of a build context |
//! | archives | [`archive`] | `oci-archive` and `docker-archive` files, read and written |
//! | another OCI image layout (`oci:DIR`) | [`oci_dir`] | that directory as an `ImageSource` / `ImageDestination` (`berth copy`); not the store |
//! | — | [`transport`] | the store as an `ImageSource` / `ImageDestination` |
//!
//! Crossing the boundary: [`Store`], [`Image`], [`StoreError`], the transport adapters and the
//! layer functions. Nothing else in berth opens a file under the store root.

pub mod archive;
pub mod blobs;
pub mod cache;
pub mod check;
pub mod compress;
pub mod containers;
pub mod contexts;
pub mod error;
pub mod files;
mod fsutil;
pub mod gc;
pub mod images;
pub mod index;
pub mod layer;
pub mod layout;
pub mod lock;
pub mod networks;
pub mod oci_dir;
pub mod snapshots;
pub mod transport;
pub mod volumes;

pub use blobs::{BlobWriter, Expect};
pub use cache::{CacheRecord, CacheSharing, CachedLayer, WorkDir};
pub use check::Fault;
pub use error::{Result, StoreError};
pub use fsutil::tree_size;
pub use gc::GcReport;
pub use images::Image;
pub use layout::{FORMAT_VERSION, Store};
pub use transport::{StoreDestination, StoreSource};

/// Default store root: `/var/lib/berth` for root, else (and for a rootless berth, root only
/// inside its user namespace) `$XDG_DATA_HOME/berth` (`~/.local/share/berth`). `BERTH_ROOT`
/// or `--root` override it (the CLI decides).
pub fn default_root(rootless: bool) -> std::path::PathBuf {
    if rustix::process::geteuid().is_root() && !rootless {
        return "/var/lib/berth".into();
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d).join("berth"),
        _ => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".local/share/berth"),
    }
}
