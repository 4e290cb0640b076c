//! `berth commit [-a AUTHOR] [-c INSTR]... [-m MSG] [--pause=true|false] CONTAINER [IMAGE]`:
//! the container's upper directory becomes a layer on top of its image's, as `docker commit`.
//!
//! - The layer: the upper directory packed (overlay whiteouts and opaque directories as OCI
//!   whiteouts, `berth_store::layer::pack`) straight into a blob, kept uncompressed like a
//!   built layer (its digest is its diff-id); its snapshot is then unpacked from the blob
//!   (`ensure_snapshots`), so the container keeps its upper. The packing runs on a thread
//!   whose root is the upper directory itself (`unshare(CLONE_FS)`, `chroot`): the
//!   container wrote that tree and, while it runs, may swap a directory for a symlink
//!   between two steps of the walk; any path then still resolves inside the tree.
//! - A running container is paused while its upper is packed (`--pause`, the default, as
//!   Docker): every process of its PID namespace gets SIGSTOP, then SIGCONT
//!   (`berth_runtime::exec::ExecTarget::pause`). With `--pause=false` it runs on and the
//!   layer may catch a file half-written.
//! - The config: the image's, with the `-c` instructions applied (CMD, ENTRYPOINT, ENV,
//!   EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR), `author` from `-a`, a new
//!   `created`, the layer's diff-id, and a history entry (created_by: the container's
//!   command; comment: `-m`; author: `-a`). Prints the new image ID; with IMAGE, tags it.

use berth_oci::media_type;
use berth_oci::{Descriptor, History};
use berth_store::{Expect, Store};

use crate::containers::{alive, find};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Author (e.g. "Jane Doe <jane@example.com>")
    #[arg(short = 'a', long = "author")]
    author: Option<String>,
    /// Apply a Dockerfile instruction to the image config
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
    /// Pause a running container while its changes are packed
    #[arg(short = 'p', long = "pause", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pause: bool,
    /// The container (name, ID or unique ID prefix)
    container: String,
    /// The image name to give the result
    image: Option<String>,
}

/// Packs `upper` into `writer` from a thread whose root is `upper`.
fn pack_confined(
    upper: &std::path::Path,
    writer: &mut berth_store::BlobWriter,
) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<()> {
                // This thread alone: its own root and working directory.
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .map_err(|e| anyhow::anyhow!("unsharing the thread's root: {e}"))?;
                nix::unistd::chroot(upper)
                    .map_err(|e| anyhow::anyhow!("entering {}: {e}", upper.display()))?;
                nix::unistd::chdir("/").map_err(|e| anyhow::anyhow!("chdir /: {e}"))?;
                berth_store::layer::pack::pack(
                    std::path::Path::new("/"),
                    &mut *writer,
                    &berth_store::layer::pack::PackOptions {
                        overlay_whiteouts: true,
                        clamp_mtime: None,
                    },
                )?;
                Ok(())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let record = find(store, &args.container)?;
    let name = args
        .image
        .as_deref()
        .map(crate::wiring::parse_reference)
        .transpose()?;
    let image = store.image_by_manifest(&record.image)?;
    let mut config = image.config.clone();
    for change in &args.changes {
        crate::change::apply(&mut config.config, change)?;
    }
    let (_, upper, _) = crate::container_fs::overlay_of(store, &record)?;
    let paused = match (alive(&record), args.pause, record.pid, record.pid_start) {
        (true, true, Some(pid), Some(start)) => Some(
            berth_runtime::exec::ExecTarget::find(pid, start)
                .and_then(|t| t.pause())
                .map_err(|e| anyhow::anyhow!("pausing container {}: {e}", args.container))?,
        ),
        _ => None,
    };
    let mut writer = store.blob_writer()?;
    let packed = pack_confined(&upper, &mut writer);
    drop(paused);
    packed?;
    let (diff_id, size) = writer.commit(Expect::Any)?;
    let created = crate::output::now_rfc3339();
    config.created = Some(created.clone());
    if args.author.is_some() {
        config.author = args.author.clone();
    }
    config.rootfs.diff_ids.push(diff_id.clone());
    config.history.push(History {
        created: Some(created),
        created_by: Some(record.command.join(" ")),
        author: args.author.clone(),
        comment: args.message.clone(),
        ..Default::default()
    });
    let mut layers = image.manifest_value.layers.clone();
    layers.push(Descriptor::new(media_type::OCI_LAYER_TAR, diff_id, size));
    let manifest = store.write_image(&config, layers)?;
    let new = store.load_image(&manifest.descriptor())?;
    store.ensure_snapshots(&new)?;
    if let Some(name) = &name {
        store.set_tag(name, &manifest.descriptor())?;
    }
    outln!("{}", new.id());
    Ok(0)
}
