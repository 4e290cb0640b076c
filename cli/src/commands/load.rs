//! `berth load -i FILE`: images from an OCI or docker archive (plain, gzip or zstd) into the
//! store, each through `copy_image` with the archive as source; a tarball on stdin without
//! `-i`.

use std::path::PathBuf;
use std::sync::Arc;

use berth_oci::{CopyOptions, copy_image};
use berth_store::archive::{Archive, ArchiveSource};
use berth_store::{Store, StoreDestination};

use crate::output::Progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The archive to read (default: stdin)
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Print only the loaded names
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(store: Arc<Store>, args: Args) -> anyhow::Result<u8> {
    let (path, _stdin_copy) = match &args.input {
        Some(p) if p.as_os_str() != "-" => (p.clone(), None),
        _ => {
            let tmp = tempfile::NamedTempFile::new_in(store.tmp_dir())?;
            std::io::copy(&mut std::io::stdin().lock(), &mut tmp.as_file())?;
            (tmp.path().to_owned(), Some(tmp))
        }
    };
    let archive = Arc::new(
        Archive::open(&path, &store.tmp_dir())
            .map_err(|e| anyhow::Error::new(e).context(format!("reading {}", path.display())))?,
    );
    let images = archive.images()?;
    let progress = (!args.quiet).then(|| {
        Progress::start(format!(
            "Loading {} image(s) from {}",
            images.len(),
            path.display()
        ))
    });
    let mut lines = Vec::new();
    for image in images {
        let names = image.names.clone();
        let source = ArchiveSource::new(archive.clone(), image);
        let destination = StoreDestination::new(store.clone(), names.clone());
        let outcome = crate::block_on(copy_image(&source, &destination, &CopyOptions::default()))?;
        if names.is_empty() {
            let loaded = store.load_image(&outcome.root)?;
            lines.push(format!("Loaded image ID: {}", loaded.id()));
        }
        lines.extend(
            names
                .iter()
                .map(|n| format!("Loaded image: {}", n.familiar())),
        );
    }
    if let Some(p) = progress {
        p.finish("Done");
    }
    for line in lines {
        outln!("{line}");
    }
    Ok(0)
}
