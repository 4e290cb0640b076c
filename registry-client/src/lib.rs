//! The OCI distribution client (issue 7): talks to registries and implements the transport
//! traits of `berth_oci::transport` for a remote repository, so `pull` is
//! `copy_image(remote, store)` and `push` the reverse, wired in `cli`.
//!
//! Owns: auth challenges and tokens, credentials (`~/.docker/config.json`, helpers), TLS
//! with per-registry CAs, manifests and blobs (streamed, verified, resumable, parallel,
//! cross-repository mounts), retries. Crossing the boundary: a `RemoteSource` /
//! `RemoteDestination` pair and typed errors that say whether a retry may help.
//!
//! Not written yet: this crate is a placeholder until issue 7 lands. It never imports
//! `berth-store`.
