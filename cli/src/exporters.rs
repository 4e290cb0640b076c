//! Where a build's image goes besides the store: `--output` (an OCI or Docker archive, the
//! files in a directory or in a tar, to a file or stdout) and `--push` to each `-t` name's
//! registry. Each is a
//! [`berth_builder::Exporter`] the build runs once the image is tagged.

use std::path::PathBuf;
use std::sync::Arc;

use berth_builder::error::ExportError;
use berth_builder::{Exporter, LocalExport};
use berth_oci::Reference;
use berth_store::{Image, Store};

use crate::UsageError;

/// Where an output's file goes: a path, or stdout for `dest=-`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    File(PathBuf),
    Stdout,
}

impl Dest {
    fn of(path: &str) -> Dest {
        match path {
            "-" => Dest::Stdout,
            p => Dest::File(PathBuf::from(p)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Dest::File(p) => p.display().to_string(),
            Dest::Stdout => "stdout".into(),
        }
    }

    /// Writes the whole output: a file at a path atomically (see [`crate::output_file`]),
    /// stdout as it comes.
    fn write(
        &self,
        write: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<()>,
    ) -> Result<(), ExportError> {
        let done = match self {
            Dest::File(path) => {
                crate::output_file::write_atomically(path, crate::output_file::ARCHIVE_MODE, |f| {
                    write(f)
                })
            }
            Dest::Stdout => {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                write(&mut out).and_then(|()| Ok(std::io::Write::flush(&mut out)?))
            }
        };
        done.map_err(|e| format!("{e:#}").into())
    }
}

/// The outputs `--output` asks for: `type=oci|docker|tar|local,dest=PATH`, a bare path
/// (`type=local`), or `-` (`type=tar` to stdout), as buildx reads them. `dest=-` writes an
/// archive (oci, docker, tar) to stdout, which must then not be a terminal; a directory
/// (`local`) cannot go there. At most one output goes to stdout; [`to_stdout`] says whether
/// one does, so the build prints nothing else there.
pub fn parse_outputs(
    specs: &[String],
    compression: &str,
) -> anyhow::Result<Vec<Box<dyn Exporter>>> {
    let mut outputs = Vec::new();
    let mut on_stdout = 0;
    for spec in specs {
        let (exporter, stdout) = parse_output(spec, compression)?;
        on_stdout += usize::from(stdout);
        outputs.push(exporter);
    }
    if on_stdout > 1 {
        return Err(UsageError("only one --output can write to stdout".into()).into());
    }
    if on_stdout == 1 && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(UsageError(
            "--output to stdout: refusing to write an archive to a terminal (redirect it, \
             or give dest=FILE)"
                .into(),
        )
        .into());
    }
    Ok(outputs)
}

/// Whether one of `specs` writes to stdout.
pub fn to_stdout(specs: &[String]) -> bool {
    specs
        .iter()
        .any(|s| s == "-" || s.split(',').any(|part| part == "dest=-"))
}

/// One `--output` spec, and whether it writes to stdout.
fn parse_output(spec: &str, compression: &str) -> anyhow::Result<(Box<dyn Exporter>, bool)> {
    let usage = || {
        UsageError(format!(
            "--output {spec:?}: expected type=oci|docker|tar|local,dest=PATH (dest=- for \
             stdout), a directory, or -"
        ))
    };
    if spec == "-" {
        return Ok((Box::new(RootfsTar { dest: Dest::Stdout }), true));
    }
    if !spec.contains('=') {
        return Ok((
            Box::new(LocalExport {
                dest: PathBuf::from(spec),
            }),
            false,
        ));
    }
    let (mut kind, mut dest) = (None, None);
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_owned()),
            Some(("dest", v)) => dest = Some(v.to_owned()),
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
    let dest = Dest::of(&dest);
    let stdout = dest == Dest::Stdout;
    let archive = |docker| {
        Box::new(Archive {
            docker,
            dest: dest.clone(),
            compression: crate::wiring::compression(compression),
        })
    };
    let exporter: Box<dyn Exporter> = match kind.as_str() {
        "local" => match &dest {
            Dest::File(dest) => Box::new(LocalExport { dest: dest.clone() }),
            Dest::Stdout => {
                return Err(UsageError(format!(
                    "--output {spec}: a directory cannot go to stdout; use -o - (or \
                     type=tar,dest=-) for a tar of the files"
                ))
                .into());
            }
        },
        "tar" => Box::new(RootfsTar { dest: dest.clone() }),
        "oci" => archive(false),
        "docker" => archive(true),
        _ => return Err(usage().into()),
    };
    Ok((exporter, stdout))
}

/// `--output type=tar`: the image's files, merged, as one tar stream (BuildKit's tar
/// exporter): exported into a private directory under the store's `tmp/` as for
/// `type=local`, then packed (sorted, hard links as links, modes, ownership and xattrs
/// kept) and the directory removed.
#[derive(Debug)]
struct RootfsTar {
    dest: Dest,
}

impl Exporter for RootfsTar {
    fn describe(&self) -> String {
        format!("writing the files as a tar to {}", self.dest.describe())
    }

    fn export(&self, store: &Store, image: &Image, _tags: &[Reference]) -> Result<(), ExportError> {
        // tempfile makes the directory 0700 whatever the umask, and removes it when dropped.
        let tree = tempfile::Builder::new()
            .prefix("export-tar-")
            .tempdir_in(store.tmp_dir())?;
        berth_builder::exec::output::export_rootfs(store, image, tree.path())?;
        self.dest.write(|out| {
            berth_store::layer::pack::pack(tree.path(), out, &Default::default())?;
            Ok(())
        })
    }
}

/// An OCI image layout or a `docker save` archive, written to a temporary file beside
/// `dest` and renamed over it when complete, or to stdout.
#[derive(Debug)]
struct Archive {
    docker: bool,
    dest: Dest,
    compression: berth_oci::media_type::Compression,
}

impl Exporter for Archive {
    fn describe(&self) -> String {
        format!("writing {}", self.dest.describe())
    }

    fn export(&self, store: &Store, image: &Image, tags: &[Reference]) -> Result<(), ExportError> {
        let image = if self.docker {
            image.clone()
        } else {
            store.distribution_image(image, self.compression)?
        };
        let images = [(image, tags.to_vec())];
        self.dest.write(|f| {
            match self.docker {
                true => berth_store::archive::write_docker_archive(store, &images, f)?,
                false => berth_store::archive::write_oci_archive(store, &images, f)?,
            }
            Ok(())
        })
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
