//! `berth image prune` and `berth container prune` (the `image` and `container` groups hold
//! only these; the other image and container commands are top-level, as `docker images`
//! and `docker ps` are).

use berth_store::Store;

use crate::output::human_size;
use crate::prune::{Filters, confirm, print_containers, print_images};

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Remove unused images: unnamed (dangling) ones, or with -a every image no container uses
    #[command(long_about = IMAGE_PRUNE_HELP)]
    Prune(ImagePruneArgs),
}

const IMAGE_PRUNE_HELP: &str = "\
Remove unnamed (dangling, `<none>`) images no container uses; with -a every image no
container uses, its names untagged. The blobs and snapshots nothing needs any more go
too. Asks first unless -f.

Examples:
  berth image prune -f
  berth image prune -a --filter until=24h --filter label=stage=build";

#[derive(clap::Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove every image no container uses, not only unnamed ones
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
    /// Only images that match: `until=DURATION|TIMESTAMP` (created before then; an image
    /// without a creation time is kept), `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum ContainerCommand {
    /// Remove every stopped container
    #[command(long_about = CONTAINER_PRUNE_HELP)]
    Prune(ContainerPruneArgs),
}

const CONTAINER_PRUNE_HELP: &str = "\
Remove every stopped container (a running one is never removed), with its writable layer
and log. Asks first unless -f.

Examples:
  berth container prune -f
  berth container prune --filter until=1h -f";

#[derive(clap::Args, Debug)]
pub struct ContainerPruneArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
    /// Only containers that match: `until=DURATION|TIMESTAMP` (created before then),
    /// `label=KEY[=VALUE]`, `label!=KEY[=VALUE]` (a container's labels are its image's)
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
}

const FILTERS: &[&str] = &["until", "label", "label!"];

pub fn image(store: &Store, command: ImageCommand) -> anyhow::Result<u8> {
    let ImageCommand::Prune(args) = command;
    let filters = Filters::parse(&args.filter, FILTERS)?;
    let warning = if args.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !confirm(warning, args.force)? {
        return Ok(0);
    }
    let pruned = crate::prune::prune_images(store, args.all, &filters)?;
    let report = store.gc()?;
    print_images(&pruned);
    outln!("Total reclaimed space: {}", human_size(report.bytes_freed));
    Ok(0)
}

pub fn container(store: &Store, command: ContainerCommand) -> anyhow::Result<u8> {
    let ContainerCommand::Prune(args) = command;
    let filters = Filters::parse(&args.filter, FILTERS)?;
    if !confirm(
        "WARNING! This will remove all stopped containers.",
        args.force,
    )? {
        return Ok(0);
    }
    let (removed, bytes) = crate::prune::prune_containers(store, &filters)?;
    print_containers(&removed);
    outln!("Total reclaimed space: {}", human_size(bytes));
    Ok(0)
}
