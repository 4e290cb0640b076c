//! `berth system df|prune|check|migrate`: the store's disk use, cleanup and consistency
//! check; `migrate` stops a rootless user's pause process (as `podman system migrate`).

use berth_store::Store;

use crate::output::{human_size, print_table};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show disk usage
    Df {
        /// Output format: `table`, `json` (an object per row), or a Go template over each
        /// row's fields .Type .TotalCount .Active .Size .Reclaimable, e.g.
        /// `--format '{{.Type}}: {{.TotalCount}}'` or
        /// `--format 'table {{.Type}}\t{{.Size}}\t{{.Reclaimable}}'`
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Remove stopped containers, unnamed images, the build cache and unreferenced content
    #[command(long_about = PRUNE_HELP)]
    Prune(PruneArgs),
    /// Verify every blob and reference in the store (exit 1 when something is wrong)
    Check,
    /// Rootless: stop the pause process that holds berth's user namespace between commands;
    /// the next command starts a new one, with the mapping /etc/subuid and /etc/subgid give
    /// then (running containers go on in the old namespace)
    Migrate,
}

pub fn run(store: &Store, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Df { format } => df(store, &format),
        Command::Prune(args) => prune(store, args),
        Command::Check => check(store),
        Command::Migrate => migrate(),
    }
}

/// Stops the user's pause process; as root, or with none running, there is nothing to do.
pub fn migrate() -> anyhow::Result<u8> {
    if berth_runtime::userns::rootless() {
        anyhow::bail!("berth system migrate stops berth's user namespace: run it outside it");
    }
    if rustix::process::getuid().is_root() {
        return Ok(0);
    }
    berth_runtime::userns::stop_pause()
        .map_err(|why| anyhow::anyhow!("no runtime directory for the pause process: {why}"))?;
    Ok(0)
}

fn df(store: &Store, format: &str) -> anyhow::Result<u8> {
    use crate::template::Format;
    let format = Format::parse(format).map_err(|e| crate::UsageError(e.to_string()))?;
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
    let header = ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"];
    let rows = [
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
        containers_row(store, &containers)?,
        volumes_row(store, &containers)?,
        vec![
            "Build Cache".into(),
            count(&store.root().join("cache")).to_string(),
            "0".into(),
            human_size(dir_size(&store.root().join("cache"))),
            "0B".into(),
        ],
    ];
    let fields = ["Type", "TotalCount", "Active", "Size", "Reclaimable"];
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let object: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .zip(row)
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::Value::Object(object)
        })
        .collect();
    match format {
        Format::Table => print_table(&header, &rows),
        Format::Json => {
            for v in &values {
                outln!("{v}");
            }
        }
        Format::Template { template, table } => {
            let headers = serde_json::Value::Object(
                fields
                    .iter()
                    .zip(header)
                    .map(|(k, h)| (k.to_string(), serde_json::Value::String(h.to_owned())))
                    .collect(),
            );
            crate::template::print_rows(&template, table, (&headers, None), &values, &[])
                .map_err(|e| crate::UsageError(e.to_string()))?;
        }
    }
    Ok(0)
}

/// Containers: how many, how many run, their size and what `container prune` would free.
fn containers_row(
    store: &Store,
    containers: &[berth_store::containers::ContainerRecord],
) -> anyhow::Result<Vec<String>> {
    let (mut size, mut stopped, mut active) = (0, 0, 0);
    for c in containers {
        let bytes = dir_size(&store.container_dir(&c.id)?);
        size += bytes;
        if crate::containers::alive(c) {
            active += 1;
        } else {
            stopped += bytes;
        }
    }
    let pct = (stopped * 100).checked_div(size).unwrap_or(0);
    Ok(vec![
        "Containers".into(),
        containers.len().to_string(),
        active.to_string(),
        human_size(size),
        format!("{} ({pct}%)", human_size(stopped)),
    ])
}

/// Volumes: how many, how many a container uses, their size and what `volume prune -a`
/// would free.
fn volumes_row(
    store: &Store,
    containers: &[berth_store::containers::ContainerRecord],
) -> anyhow::Result<Vec<String>> {
    let volumes = store.volumes()?;
    let (mut size, mut unused) = (0, 0);
    let mut active = 0;
    for v in &volumes {
        let bytes = dir_size(&store.volume_mountpoint(&v.name)?);
        size += bytes;
        if containers.iter().any(|c| c.volumes.contains(&v.name)) {
            active += 1;
        } else {
            unused += bytes;
        }
    }
    let pct = (unused * 100).checked_div(size).unwrap_or(0);
    Ok(vec![
        "Local Volumes".into(),
        volumes.len().to_string(),
        active.to_string(),
        human_size(size),
        format!("{} ({pct}%)", human_size(unused)),
    ])
}

fn count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    berth_store::tree_size(dir)
}

const PRUNE_HELP: &str = "\
Remove what nothing needs: stopped containers, unnamed (dangling) images, the build cache
and the blobs and snapshots no image uses any more; with -a every image no container uses;
with --volumes also anonymous volumes no container uses. Asks first unless -f.

Examples:
  berth system prune -f
  berth system prune -a --filter until=24h
  berth system prune --build-cache --filter until=168h";

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only unnamed ones
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
    /// Remove only the build cache (records and cache mounts): no containers or images
    #[arg(long)]
    build_cache: bool,
    /// Also remove anonymous volumes (made by `run -v /path`) no container uses
    #[arg(long)]
    volumes: bool,
    /// Only what matches: `until=DURATION|TIMESTAMP` (created, or for the build cache last
    /// used, before then), `label=KEY[=VALUE]`, `label!=KEY[=VALUE]` (images, containers,
    /// volumes; the build cache has no labels, so a label filter keeps all of it)
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
}

/// Docker's `system prune`: stopped containers, unnamed images (or with `-a` every image no
/// container uses), the build cache (the cache records go; the layers they named go with
/// them unless an image needs them), with `--volumes` anonymous volumes, then garbage.
/// `--build-cache` (as `docker builder prune`) leaves containers and images alone.
fn prune(store: &Store, args: PruneArgs) -> anyhow::Result<u8> {
    let filters = crate::prune::Filters::parse(&args.filter, &["until", "label", "label!"])?;
    let mut warning = String::from("WARNING! This will remove:");
    if !args.build_cache {
        warning.push_str("\n  - all stopped containers");
        if args.volumes {
            warning.push_str("\n  - all anonymous volumes not used by at least one container");
        }
        warning.push_str(if args.all {
            "\n  - all images without at least one container associated to them"
        } else {
            "\n  - all dangling images"
        });
    }
    warning.push_str(if filters.is_empty() {
        "\n  - all build cache"
    } else {
        "\n  - unused build cache"
    });
    if !filters.is_empty() {
        warning.push_str("\n  Items to be pruned will be filtered with:");
        for f in &args.filter {
            warning.push_str(&format!("\n  - {}", crate::output::terminal_safe(f)));
        }
    }
    if !crate::prune::confirm(&warning, args.force)? {
        return Ok(0);
    }
    let mut reclaimed = 0;
    let (containers, images, volumes) = if args.build_cache {
        (Vec::new(), Default::default(), Vec::new())
    } else {
        let (containers, bytes) = crate::prune::prune_containers(store, &filters)?;
        reclaimed += bytes;
        let volumes = if args.volumes {
            let (v, bytes) = crate::prune::prune_volumes(store, false, &filters)?;
            reclaimed += bytes;
            v
        } else {
            Vec::new()
        };
        let images = crate::prune::prune_images(store, args.all, &filters)?;
        (containers, images, volumes)
    };
    // The build cache has no labels: a label filter selects none of it.
    let (records, mounts) = if filters.labels.is_empty() && filters.not_labels.is_empty() {
        let older_than = filters.until.map(|t| {
            std::time::SystemTime::now()
                .duration_since(t)
                .map_or(0, |d| d.as_secs())
        });
        let records = store.cache_prune(older_than)?;
        let mounts = if older_than.is_none() {
            store.cache_mounts_prune()?
        } else {
            0
        };
        (records, mounts)
    } else {
        (0, 0)
    };
    let report = store.gc()?;
    reclaimed += report.bytes_freed;
    crate::prune::print_containers(&containers);
    crate::prune::print_volumes(&volumes);
    crate::prune::print_images(&images);
    outln!(
        "Deleted {} container(s), {} volume(s), {} image(s), {} name(s), {} build cache record(s), {} cache mount(s), {} blob(s), {} snapshot(s)",
        containers.len(),
        volumes.len(),
        images.deleted.len(),
        images.untagged.len(),
        records,
        mounts,
        report.blobs_removed,
        report.snapshots_removed
    );
    outln!("\nTotal reclaimed space: {}", human_size(reclaimed));
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
