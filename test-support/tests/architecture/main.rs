//! The workspace's module structure, checked from its sources: no crate has modules in a
//! circle (`a` uses `b`, which uses `a`, directly or through others), and no CLI command
//! uses another. One test per crate, so each reports on its own.
//!
//! Each crate's files are read from its root (`lib.rs`, `main.rs`, `bin/*.rs`) along its
//! `mod` declarations ([`modules`]), with comments and literals blanked first ([`lex`]); the
//! paths modules write to each other become edges between sibling modules, and circles among
//! those fail the test, named with one `file:line` reference per edge ([`graph`]).

mod graph;
mod lex;
mod modules;

use std::path::{Path, PathBuf};

use graph::Edge;

/// The crates checked, by directory; [`every_workspace_member_is_checked`] keeps this list
/// equal to the workspace's.
const CRATES: &[&str] = &[
    "fsroot",
    "oci",
    "store",
    "registry-client",
    "runtime",
    "builder",
    "cli",
    "bench",
    "test-support",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The crate roots in a crate directory: the library, the binary, and each `bin/` target.
fn roots(dir: &str) -> Vec<PathBuf> {
    let src = workspace().join(dir).join("src");
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = bins
            .map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { p.join("main.rs") } else { p })
            .filter(|p| p.extension().is_some_and(|e| e == "rs") && p.is_file())
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    assert!(
        !roots.is_empty(),
        "{dir}: no crate root under {}",
        src.display()
    );
    roots
}

/// Every sibling edge of every crate root in `dir`.
fn edges(dir: &str) -> Vec<Edge> {
    roots(dir)
        .iter()
        .flat_map(|root| graph::edges(&modules::load(root, &workspace())))
        .collect()
}

fn assert_no_circles(dir: &str) {
    let circles = graph::circles(&edges(dir));
    let report: String = circles.iter().map(|c| graph::describe(c)).collect();
    assert!(
        circles.is_empty(),
        "{dir}: {} module circle(s); move what both sides need to the module that owns it\n{report}",
        circles.len()
    );
}

#[test]
fn fsroot_has_no_module_circles() {
    assert_no_circles("fsroot");
}

#[test]
fn oci_has_no_module_circles() {
    assert_no_circles("oci");
}

#[test]
fn store_has_no_module_circles() {
    assert_no_circles("store");
}

#[test]
fn registry_client_has_no_module_circles() {
    assert_no_circles("registry-client");
}

#[test]
fn runtime_has_no_module_circles() {
    assert_no_circles("runtime");
}

#[test]
fn builder_has_no_module_circles() {
    assert_no_circles("builder");
}

#[test]
fn cli_has_no_module_circles() {
    assert_no_circles("cli");
}

#[test]
fn bench_has_no_module_circles() {
    assert_no_circles("bench");
}

#[test]
fn test_support_has_no_module_circles() {
    assert_no_circles("test-support");
}

/// Each command is one module from clap arguments to a library call; what two commands share
/// belongs to a shared module of the CLI (`wiring`, `transfer`, `containers`) or to a
/// library, not to one of them.
#[test]
fn cli_commands_use_no_other_command() {
    let commands = vec!["commands".to_owned()];
    let uses: Vec<String> = edges("cli")
        .into_iter()
        .filter(|e| e.parent == commands)
        .map(|e| format!("    {e}\n"))
        .collect();
    assert!(
        uses.is_empty(),
        "cli: {} reference(s) from one command to another\n{}",
        uses.len(),
        uses.concat()
    );
}

/// A crate added to the workspace is checked too.
#[test]
fn every_workspace_member_is_checked() {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members"))
        .expect("a `members` line in the workspace manifest");
    let mut members: Vec<&str> = members.split('"').skip(1).step_by(2).collect();
    members.sort();
    let mut checked = CRATES.to_vec();
    checked.sort();
    assert_eq!(members, checked);
}
