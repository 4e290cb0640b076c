//! `berth save -o FILE [--format oci|docker] IMAGE...`: images to an archive. The file is
//! written under a temporary name beside FILE and renamed when complete. In an OCI archive,
//! layers kept uncompressed in the store (the ones berth built) are compressed on the way out
//! (`--compression`, gzip by default; made once and kept, so saving again compresses
//! nothing); a docker archive holds uncompressed `layer.tar`s, as `docker save` writes.

use std::path::PathBuf;

use berth_store::Store;
use berth_store::archive::{write_docker_archive, write_oci_archive};

use crate::output::Progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The archive to write (`-` or absent: stdout)
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// `oci` (an OCI image layout in a tar) or `docker` (what `docker load` reads)
    #[arg(long, default_value = "oci", value_parser = ["oci", "docker"])]
    format: String,
    /// Layer compression in an OCI archive: gzip, zstd or none
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "none"])]
    compression: String,
    /// Images by name or ID (every name given is kept in the archive)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let mut images = Vec::new();
    for name in &args.images {
        let image = store.resolve(name)?;
        let names = match berth_oci::Reference::parse(name)
            .ok()
            .filter(|r| image.tags.contains(r))
        {
            Some(r) => vec![r],
            None => image.tags.clone(),
        };
        let image = if args.format == "oci" {
            store.distribution_image(&image, crate::wiring::compression(&args.compression))?
        } else {
            image
        };
        images.push((image, names));
    }
    let write = |out: &mut dyn std::io::Write| match args.format.as_str() {
        "docker" => write_docker_archive(store, &images, out),
        _ => write_oci_archive(store, &images, out),
    };
    match args.output.as_ref().filter(|p| p.as_os_str() != "-") {
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(crate::UsageError(
                    "refusing to write an archive to a terminal: use -o FILE or redirect".into(),
                )
                .into());
            }
            let mut out = std::io::BufWriter::new(crate::stdio::Stdout);
            write(&mut out)?;
            // Its last bytes, and their error (a drop would lose it).
            std::io::Write::flush(&mut out)?;
        }
        Some(path) => {
            let progress = Progress::start(format!(
                "Saving {} image(s) to {}",
                images.len(),
                path.display()
            ));
            crate::output_file::write_atomically(path, crate::output_file::ARCHIVE_MODE, |f| {
                write(f)?;
                Ok(())
            })
            .map_err(|e| e.context(format!("writing {}", path.display())))?;
            progress.finish(format!("Saved {}", path.display()));
        }
    }
    Ok(0)
}
