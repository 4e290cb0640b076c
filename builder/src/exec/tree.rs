//! COPY, ADD and WORKDIR: the stage's tree mounted writable over the step's upper dir (and,
//! for `--from`, the source's snapshots read-only beside it) in a private mount namespace,
//! and written through [`fsops`](super::fsops) paths resolved inside it.

use std::path::{Path, PathBuf};

use berth_runtime::views::{View, with_views};

use super::{Ctx, StageState, context_root, copy, from_snapshots, fsops, step_error};
use crate::error::{BuildError, StepError};
use crate::plan::Step;

/// WORKDIR: `dir` (absolute) made in the tree, owned by the step's USER.
pub(super) fn make_workdir(
    state: &StageState,
    step: &Step,
    work: &Path,
    dir: &str,
) -> Result<(), BuildError> {
    let owner = resolve_owner(state, work, &step.context.user).map_err(|m| step_error(step, m))?;
    in_view(state, work, None, |root, _| {
        let dest = fsops::InRoot::open(root).map_err(|e| StepError::io_at("opening", root, e))?;
        dest.mkdir_all(
            dir,
            Some(fsops::Meta {
                mode: 0o755,
                uid: owner.map_or(0, |o| o.0),
                gid: owner.map_or(0, |o| o.1),
                mtime: (0, 0),
            }),
        )
        .map(|_| ())
        .map_err(|e| StepError::io("creating", dir, e))
    })
    .map_err(|m| step_error(step, m))
}

/// Mounts the stage's tree (writable, upper = the work dir's) and, optionally, a read-only
/// view of other snapshots, and runs `f` on their mount points.
fn in_view<T: Send>(
    state: &StageState,
    work: &Path,
    source: Option<Vec<PathBuf>>,
    f: impl FnOnce(&Path, Option<&Path>) -> Result<T, StepError> + Send,
) -> Result<T, StepError> {
    let merged = work.join("merged");
    berth_store::files::create_dir_all(&merged)
        .map_err(|e| StepError::io_at("creating", &merged, e))?;
    let mut views = vec![View {
        lowers: state.snapshots.clone(),
        upper: Some((work.join("upper"), work.join("work"))),
        target: merged,
    }];
    if let Some(lowers) = source {
        let target = work.join("source");
        berth_store::files::create_dir_all(&target)
            .map_err(|e| StepError::io_at("creating", &target, e))?;
        views.push(View {
            lowers,
            upper: None,
            target,
        });
    }
    with_views(&views, &work.join("empty"), |targets| {
        f(&targets[0], targets.get(1).map(PathBuf::as_path))
    })?
}

/// `--chown` / USER names resolved in the image's `/etc/passwd` and `/etc/group`.
fn resolve_owner(
    state: &StageState,
    work: &Path,
    spec: &str,
) -> Result<Option<(u32, u32)>, StepError> {
    if spec.is_empty() {
        return Ok(None);
    }
    let numeric = {
        let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
        u.parse::<u32>().ok().zip(if g.is_empty() {
            u.parse::<u32>().ok()
        } else {
            g.parse::<u32>().ok()
        })
    };
    if let Some(ids) = numeric {
        return Ok(Some(ids));
    }
    let spec = spec.to_owned();
    let probe = work.join("probe");
    let _ =
        berth_store::files::ensure_dir_mode(&probe.join("upper"), berth_store::files::TREE_ROOT);
    let _ = berth_store::files::create_dir_all(&probe.join("work"));
    let lookup = in_view(state, &probe, None, move |root, _| {
        let r = fsops::InRoot::open(root).map_err(|e| StepError::io_at("opening", root, e))?;
        let read = |p: &str| {
            r.open_file(p)
                .ok()
                .and_then(|mut f| {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut f, &mut s).ok()?;
                    Some(s)
                })
                .unwrap_or_default()
        };
        let (passwd, group) = (read("etc/passwd"), read("etc/group"));
        // `user` alone means that user's primary group, as Docker's --chown.
        let user =
            berth_runtime::user::resolve(&spec, &passwd, &group).map_err(|e| e.to_string())?;
        Ok((user.uid, user.gid))
    });
    let _ = std::fs::remove_dir_all(&probe);
    lookup.map(Some)
}

pub(super) fn copy_step(
    ctx: &Ctx<'_>,
    state: &StageState,
    step: &Step,
    work: &Path,
    c: &crate::instructions::CopyInst,
    add: bool,
) -> Result<(), BuildError> {
    let err = |m| step_error(step, m);
    let owner = match &c.chown {
        Some(spec) => resolve_owner(state, work, spec).map_err(err)?,
        None => None,
    };
    let chmod = c
        .chmod
        .as_deref()
        .map(copy::Chmod::parse)
        .transpose()
        .map_err(|m| step_error(step, m))?;
    // Where the sources come from: another stage, an image, or the context.
    let source = c
        .from
        .as_deref()
        .map(|from| from_snapshots(ctx, from))
        .transpose()?;
    let scratch = work.join("scratch");
    berth_store::files::create_dir_all(&scratch).map_err(|e| step_error(step, e))?;
    let links = copy::HardLinks::default();
    let job = copy::CopyJob {
        links: &links,
        inst: c,
        add,
        workdir: &step.context.workdir,
        owner,
        chmod,
        scratch: &scratch,
        fetch: ctx.opts.fetch.as_deref(),
        exclude_base: String::new(),
    };
    let context = ctx.context;
    let entries = &ctx.context.entries;
    let from_stage = source.is_some();
    in_view(state, work, source, |root, src| {
        let dest = fsops::InRoot::open(root).map_err(|e| StepError::io_at("opening", root, e))?;
        let tree = if from_stage {
            copy::SourceTree {
                root: fsops::InRoot::open(src.expect("mounted"))
                    .map_err(|e| StepError::io("opening", "the source", e))?,
                filter: None,
            }
        } else {
            copy::SourceTree {
                root: context_root(context)
                    .map_err(|e| StepError::io("opening", "the build context", e))?,
                filter: Some(entries),
            }
        };
        copy::copy(&job, &tree, &dest, &c.heredocs)
    })
    .map_err(err)
}
