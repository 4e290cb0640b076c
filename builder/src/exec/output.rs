//! Trees copied out of a build: an image's files for `--output type=local`, and the source of
//! a bind mount that must be a copy (from a stage or an image, or `rw` from the context).

use crate::error::StepError;
use std::path::{Path, PathBuf};

use berth_runtime::views::{View, with_views};
use berth_store::Store;

use super::{context_root, copy, fsops};
use crate::context::ScannedContext;

/// Copies `source` out of a tree (snapshots mounted read-only, or the build context) into
/// `dest_dir`, which must exist; says whether the source was a directory (its contents were
/// copied) or a file (copied into `dest_dir` under its name). `scratch` is a work directory.
pub fn export_tree(
    context: Option<&ScannedContext>,
    lowers: Option<Vec<PathBuf>>,
    source: &str,
    scratch: &Path,
    dest_dir: &Path,
) -> Result<bool, StepError> {
    let mount = scratch.join("tree");
    let empty = scratch.join("empty");
    for d in [&mount, &empty] {
        std::fs::create_dir_all(d).map_err(|e| StepError::io_at("creating", d, e))?;
    }
    let inst = crate::instructions::CopyInst {
        sources: vec![source.to_owned()],
        dest: "/".into(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: Vec::new(),
        keep_git_dir: false,
        checksum: None,
        unpack: Some(false),
        heredocs: Vec::new(),
    };
    let links = copy::HardLinks::default();
    let job = copy::CopyJob {
        links: &links,
        inst: &inst,
        add: false,
        workdir: "/",
        owner: None,
        chmod: None,
        scratch,
        fetch: None,
        exclude_base: String::new(),
    };
    let is_dir = |root: &fsops::InRoot| {
        // Relative: a context root takes no absolute path (`RESOLVE_BENEATH`).
        root.stat(source.trim_start_matches('/'))
            .map(|s| {
                rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory
            })
            .map_err(|e| StepError::io("reading", source, e))
    };
    let dest =
        fsops::InRoot::open(dest_dir).map_err(|e| StepError::io_at("opening", dest_dir, e))?;
    match (lowers, context) {
        (Some(lowers), _) => with_views(
            &[View {
                lowers,
                upper: None,
                target: mount.clone(),
            }],
            &empty,
            |targets| {
                let tree = copy::SourceTree {
                    root: fsops::InRoot::open(&targets[0])
                        .map_err(|e| StepError::io_at("opening", &targets[0], e))?,
                    filter: None,
                };
                let dir = is_dir(&tree.root)?;
                copy::copy(&job, &tree, &dest, &[]).map(|()| dir)
            },
        )?,
        (None, Some(context)) => {
            let tree = copy::SourceTree {
                root: context_root(context)
                    .map_err(|e| StepError::io("opening", "the build context", e))?,
                filter: Some(&context.entries),
            };
            let dir = is_dir(&tree.root)?;
            copy::copy(&job, &tree, &dest, &[])?;
            Ok(dir)
        }
        (None, None) => Err("nothing to copy from".into()),
    }
}

/// `build --output type=local,dest=DIR`: an image's files, merged, written into `dest`.
/// Files keep their modes, setuid and setgid bits included (the export is the image's
/// tree). So that no other local user can run a setuid-root file from it, every directory
/// berth makes for `dest` is `0700`; an existing `dest` keeps the mode its owner gave it.
pub fn export_rootfs(
    store: &Store,
    image: &berth_store::Image,
    dest: &Path,
) -> Result<(), StepError> {
    use std::os::unix::fs::DirBuilderExt;
    let lowers = store.ensure_snapshots(image)?;
    let work = store.work_dir("export")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dest)
        .map_err(|e| format!("creating {}: {e}", dest.display()))?;
    export_tree(None, Some(lowers), "/", &work.path, dest).map(|_| ())
}
