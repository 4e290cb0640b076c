//! The container runtime (issue 5): an OCI runtime spec and a rootfs in, a running, isolated
//! process out. Knows nothing of images.
//!
//! Owns: namespaces, the overlay rootfs, pivot_root, /proc /dev /sys, users, capabilities,
//! seccomp, cgroups (v2 and v1), TTYs, signals and exit codes. Raw syscalls live only here,
//! behind one trait with a recording fake for unit tests; the container's init is `berth`
//! re-executed through `/proc/self/exe`, never a fork of the multi-threaded process.
//!
//! Not written yet: this crate is a placeholder until issue 5 lands.
