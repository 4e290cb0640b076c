//! Where a build's image goes besides the store: `--output` (an OCI or Docker archive, or
//! the files in a directory) and `--push` to each `-t` name's registry. Each is a
//! [`berth_builder::Exporter`] the build runs once the image is tagged.

use std::path::PathBuf;
use std::sync::Arc;

use berth_builder::error::ExportError;
use berth_builder::{Exporter, LocalExport};
use berth_oci::Reference;
use berth_store::{Image, Store};

use crate::UsageError;

/// `--output type=oci|docker|local,dest=PATH` (a bare path is `type=local`).
pub fn parse_output(spec: &str, compression: &str) -> anyhow::Result<Box<dyn Exporter>> {
    let usage = || {
        UsageError(format!(
            "--output {spec:?}: expected type=oci|docker|local,dest=PATH"
        ))
    };
    if !spec.contains('=') {
        return Ok(Box::new(LocalExport {
            dest: PathBuf::from(spec),
        }));
    }
    let (mut kind, mut dest) = (None, None);
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_owned()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => return Err(usage().into()),
        }
    }
    if let Some(k @ ("registry" | "image")) = kind.as_deref() {
        return Err(UsageError(format!(
            "--output type={k} is not supported: use --push with -t REGISTRY/NAME:TAG"
        ))
        .into());
    }
    let (Some(kind), Some(dest)) = (kind, dest) else {
        return Err(usage().into());
    };
    Ok(match kind.as_str() {
        "local" => Box::new(LocalExport { dest }),
        "oci" => Box::new(Archive {
            docker: false,
            dest,
            compression: crate::wiring::compression(compression),
        }),
        "docker" => Box::new(Archive {
            docker: true,
            dest,
            compression: crate::wiring::compression(compression),
        }),
        _ => return Err(usage().into()),
    })
}

/// An OCI image layout or a `docker save` archive, written to a temporary file beside
/// `dest` and renamed over it when complete.
#[derive(Debug)]
struct Archive {
    docker: bool,
    dest: PathBuf,
    compression: berth_oci::media_type::Compression,
}

impl Exporter for Archive {
    fn describe(&self) -> String {
        format!("writing {}", self.dest.display())
    }

    fn export(&self, store: &Store, image: &Image, tags: &[Reference]) -> Result<(), ExportError> {
        let image = if self.docker {
            image.clone()
        } else {
            store.distribution_image(image, self.compression)?
        };
        let images = [(image, tags.to_vec())];
        crate::output_file::write_atomically(&self.dest, crate::output_file::ARCHIVE_MODE, |f| {
            match self.docker {
                true => berth_store::archive::write_docker_archive(store, &images, f)?,
                false => berth_store::archive::write_oci_archive(store, &images, f)?,
            }
            Ok(())
        })
        .map_err(|e| format!("{e:#}").into())
    }
}

/// `--push`: every tag sent to its registry.
pub struct Push {
    pub store: Arc<Store>,
    pub options: berth_registry_client::Options,
    pub compression: String,
    pub quiet: bool,
}

impl Exporter for Push {
    fn describe(&self) -> String {
        "push".into()
    }

    fn export(&self, _store: &Store, image: &Image, tags: &[Reference]) -> Result<(), ExportError> {
        for t in tags {
            let digest = crate::block_on(crate::transfer::push_image(
                self.store.clone(),
                image,
                t,
                &self.options,
                &self.compression,
                self.quiet,
            ))
            .map_err(|e| format!("{}: {e:#}", t.familiar()))?;
            if !self.quiet {
                errln!("pushed {} ({digest})", t.familiar());
            }
        }
        Ok(())
    }
}
