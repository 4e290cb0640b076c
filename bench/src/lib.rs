//! Benchmarks (run by hand, never in `cargo test`): each binary prints its figures and, where a
//! peer tool applies, the ratio against it measured in the same run. See README.md.
