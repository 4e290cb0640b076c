//! `berth export [-o FILE] CONTAINER`: the container's flattened filesystem as a tar, running
//! or stopped, as `docker export`: the image's layers with the container's changes on top
//! (the overlay mounted read-only in a private mount namespace, so no whiteout, no mount of
//! the container's and no volume appears), entries sorted by name, owners and modes kept.

use std::path::PathBuf;

use berth_store::Store;

use crate::container_fs::{Access, TarOptions, builder, with_root, write_tree};
use crate::containers::find;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write to a file instead of stdout
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// The container (name, ID or unique ID prefix)
    container: String,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let record = find(store, &args.container)?;
    let write = |out: &mut (dyn std::io::Write + Send)| -> anyhow::Result<()> {
        with_root(store, &record, Access::Flat, |root| {
            let mut tar = builder(&mut *out);
            write_tree(root, "/", "", &TarOptions::default(), &mut tar)?;
            tar.into_inner()?;
            Ok(())
        })
    };
    match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(crate::UsageError(
                    "refusing to write a tar to a terminal: use -o FILE or redirect".into(),
                )
                .into());
            }
            let mut out = std::io::BufWriter::new(crate::stdio::Stdout);
            write(&mut out)?;
            std::io::Write::flush(&mut out)?;
        }
        Some(path) => {
            crate::output_file::write_atomically(path, crate::output_file::ARCHIVE_MODE, |f| {
                write(f)
            })
            .map_err(|e| e.context(format!("writing {}", path.display())))?;
        }
    }
    Ok(0)
}
