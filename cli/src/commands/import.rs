//! `berth import SOURCE NAME`: a rootfs (a directory, or a tarball — plain, gzip or zstd —
//! or `-` for a tarball on stdin) becomes a one-layer image, as `docker import`.
//!
//! The layer is stored uncompressed (its digest is its diff-id, DESIGN.md) and unpacked into
//! its snapshot with the same safe unpacker as every other layer.

use std::io::Read;
use std::path::PathBuf;

use berth_oci::media_type::{self, Compression};
use berth_oci::{Descriptor, History, ImageConfig, Platform, RootFs};
use berth_store::{Expect, Store};

use crate::output::Progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long = "change")]
    changes: Vec<String>,
    /// Commit message kept in the image history
    #[arg(short, long)]
    message: Option<String>,
    /// Platform recorded in the image config (default: the host's)
    #[arg(long)]
    platform: Option<String>,
    /// A directory, a tarball, or `-` for a tarball on stdin
    source: PathBuf,
    /// The image name
    name: String,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let name = crate::wiring::parse_reference(&args.name)?;
    let platform = match &args.platform {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| crate::UsageError(e.to_string()))?,
        None => Platform::host(),
    };
    let mut config = ImageConfig {
        created: Some(crate::output::now_rfc3339()),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        ..Default::default()
    };
    for change in &args.changes {
        crate::change::apply(&mut config.config, change)?;
    }
    let progress = Progress::start(format!("Importing {}", args.source.display()));
    let (diff_id, size) = if args.source.is_dir() {
        let mut writer = store.blob_writer()?;
        berth_store::layer::pack::pack(&args.source, &mut writer, &Default::default())?;
        writer.commit(Expect::Any)?
    } else {
        let input: Box<dyn Read> = if args.source.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(
                std::fs::File::open(&args.source)
                    .map_err(|e| anyhow::anyhow!("opening {}: {e}", args.source.display()))?,
            )
        };
        let mut input = std::io::BufReader::with_capacity(1 << 20, input);
        let head = std::io::BufRead::fill_buf(&mut input)?;
        let compression = Compression::sniff(head);
        let reader = berth_store::layer::decompress(input, compression)?;
        store.put_reader(reader, Expect::Any)?
    };
    config.rootfs = RootFs::layers(vec![diff_id.clone()]);
    config.history = vec![History {
        created: config.created.clone(),
        created_by: Some(format!("berth import {}", args.source.display())),
        comment: args.message.clone(),
        ..Default::default()
    }];
    let layer = Descriptor::new(media_type::OCI_LAYER_TAR, diff_id, size);
    let manifest = store.write_image(&config, vec![layer])?;
    let image = store.load_image(&manifest.descriptor())?;
    store.ensure_snapshots(&image)?;
    store.set_tag(&name, &manifest.descriptor())?;
    progress.finish(format!(
        "Imported {} ({})",
        name.familiar(),
        crate::output::human_size(size)
    ));
    outln!("{}", image.id());
    Ok(0)
}
