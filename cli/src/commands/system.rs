//! `berth system df|prune|check`: the store's disk use, cleanup and consistency check.

use crate::UsageError;
use std::io::IsTerminal;

use berth_store::Store;

use crate::output::{human_size, print_table};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show disk usage
    Df,
    /// Remove unnamed images and unreferenced content
    Prune {
        /// Remove every image no container uses, not only unnamed ones
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation
        #[arg(short, long)]
        force: bool,
        /// Remove only the build cache (records and cache mounts), no images
        #[arg(long)]
        build_cache: bool,
        /// Only build cache unused for longer than this (`until=24h`, `until=90m`)
        #[arg(long)]
        filter: Option<String>,
    },
    /// Verify every blob and reference in the store (exit 1 when something is wrong)
    Check,
}

pub fn run(store: &Store, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Df => df(store),
        Command::Prune {
            all,
            force,
            build_cache,
            filter,
        } => {
            let older_than = match filter.as_deref() {
                None => None,
                Some(f) => {
                    let Some(d) = f.strip_prefix("until=") else {
                        return Err(UsageError(format!(
                            "--filter {f:?}: only until=DURATION is supported (e.g. until=24h)"
                        ))
                        .into());
                    };
                    Some(
                        humantime::parse_duration(d)
                            .map_err(|e| UsageError(format!("--filter {f:?}: {e}")))?
                            .as_secs(),
                    )
                }
            };
            prune(store, all, force, build_cache, older_than)
        }
        Command::Check => check(store),
    }
}

fn df(store: &Store) -> anyhow::Result<u8> {
    let images = store.images()?;
    let containers = store.container_records()?;
    let used: std::collections::HashSet<_> = containers.iter().map(|c| c.image.clone()).collect();
    let mut blobs: std::collections::HashMap<berth_oci::Digest, u64> = Default::default();
    let mut active_blobs: std::collections::HashSet<berth_oci::Digest> = Default::default();
    for image in &images {
        for d in std::iter::once(&image.manifest_value.config).chain(&image.manifest_value.layers) {
            blobs.insert(d.digest.clone(), d.size);
            if used.contains(&image.root.digest) {
                active_blobs.insert(d.digest.clone());
            }
        }
    }
    let total: u64 = blobs.values().sum();
    let active: u64 = blobs
        .iter()
        .filter(|(d, _)| active_blobs.contains(*d))
        .map(|(_, s)| s)
        .sum();
    let snapshots = dir_size(&store.snapshots_dir());
    let reclaimable = total - active;
    let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    print_table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &[
            vec![
                "Images".into(),
                images.len().to_string(),
                images
                    .iter()
                    .filter(|i| used.contains(&i.root.digest))
                    .count()
                    .to_string(),
                human_size(total),
                format!("{} ({}%)", human_size(reclaimable), pct(reclaimable, total)),
            ],
            vec![
                "Snapshots".into(),
                count(&store.snapshots_dir()).to_string(),
                "-".into(),
                human_size(snapshots),
                "-".into(),
            ],
            vec![
                "Containers".into(),
                containers.len().to_string(),
                containers.len().to_string(),
                human_size(dir_size(&store.containers_dir())),
                "0B (0%)".into(),
            ],
            vec![
                "Local Volumes".into(),
                count(&store.root().join("volumes")).to_string(),
                "0".into(),
                human_size(dir_size(&store.root().join("volumes"))),
                "0B".into(),
            ],
            vec![
                "Build Cache".into(),
                count(&store.root().join("cache")).to_string(),
                "0".into(),
                human_size(dir_size(&store.root().join("cache"))),
                "0B".into(),
            ],
        ],
    );
    Ok(0)
}

fn count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Docker's `system prune`: unnamed images, unreferenced content and the build cache (the
/// cache records go; the layers they named go with them unless an image needs them).
/// `--build-cache` (as `docker builder prune`) leaves images alone.
fn prune(
    store: &Store,
    all: bool,
    force: bool,
    build_cache: bool,
    older_than: Option<u64>,
) -> anyhow::Result<u8> {
    if !force && std::io::stdin().is_terminal() {
        let what = if build_cache {
            "the build cache"
        } else if all {
            "all images without at least one container associated to them"
        } else {
            "all unnamed images and unreferenced content"
        };
        err!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let records = store.cache_prune(older_than)?;
    let mounts = if older_than.is_none() {
        store.cache_mounts_prune()?
    } else {
        0
    };
    let removed_untagged = if build_cache {
        0
    } else {
        store.remove_untagged()?
    };
    let mut untagged = 0;
    if all && !build_cache {
        let used: std::collections::HashSet<_> = store
            .container_records()?
            .into_iter()
            .map(|c| c.image)
            .collect();
        for tag in store.tags()? {
            if !used.contains(&tag.manifest.digest) {
                store.remove_tag(&tag.reference)?;
                outln!("untagged: {}", tag.reference.familiar());
                untagged += 1;
            }
        }
    }
    let report = store.gc()?;
    outln!(
        "Deleted {} unnamed image(s), {} name(s), {} build cache record(s), {} cache mount(s), {} blob(s), {} snapshot(s)",
        removed_untagged,
        untagged,
        records,
        mounts,
        report.blobs_removed,
        report.snapshots_removed
    );
    outln!(
        "\nTotal reclaimed space: {}",
        human_size(report.bytes_freed)
    );
    Ok(0)
}

fn check(store: &Store) -> anyhow::Result<u8> {
    let faults = store.check()?;
    if faults.is_empty() {
        let blobs = count(&store.blobs_dir());
        let images = store.roots()?.len();
        outln!(
            "store {} is clean: {blobs} blobs and {images} image name(s) verified",
            store.root().display()
        );
        return Ok(0);
    }
    for fault in &faults {
        outln!("{fault}");
    }
    errln!(
        "{} fault(s) found in {}",
        faults.len(),
        store.root().display()
    );
    Ok(1)
}
