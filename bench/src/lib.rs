//! Benchmarks (run by hand, never in `cargo test`): each binary prints its figures and, where a
//! peer tool applies, the ratio against it measured in the same run. See README.md.
//! Finding the peers and running a `dockerd` of our own for BuildKit are shared with the
//! tests ([`berth_test_support::dockerd`]).

pub use berth_test_support::dockerd::{Dockerd, which};
