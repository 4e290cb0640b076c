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

/// The largest `/etc/passwd` or `/etc/group` read to resolve `--chown`.
const MAX_ACCOUNTS_FILE: u64 = 16 << 20;

/// `--chown` / USER names resolved in the image's `/etc/passwd` and `/etc/group`.
fn resolve_owner(
    state: &StageState,
    work: &Path,
    spec: &str,
) -> Result<Option<(u32, u32)>, StepError> {
    // No `--chown` at all; `:` (what `--chown=${UNSET}:${UNSET}` expands to) is an owner,
    // 0:0, as in BuildKit.
    if spec.is_empty() {
        return Ok(None);
    }
    if !spec.split(':').any(named) {
        return chown_ids(spec, "", "").map(Some);
    }
    let spec = spec.to_owned();
    let probe = work.join("probe");
    let _ =
        berth_store::files::ensure_dir_mode(&probe.join("upper"), berth_store::files::TREE_ROOT);
    let _ = berth_store::files::create_dir_all(&probe.join("work"));
    let lookup = in_view(state, &probe, None, move |root, _| {
        let r = fsops::InRoot::open(root).map_err(|e| StepError::io_at("opening", root, e))?;
        // A file that is not there lists no one (BuildKit's rule); one that cannot be read
        // as a regular file, or is larger than any real one, fails the step.
        let read = |p: &str| -> Result<String, StepError> {
            let mut text = String::new();
            let file = match r.open_file(p) {
                Ok(f) => f,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
                {
                    return Ok(text);
                }
                Err(e) => return Err(StepError::io("reading", p, e)),
            };
            std::io::Read::read_to_string(
                &mut std::io::Read::take(file, MAX_ACCOUNTS_FILE + 1),
                &mut text,
            )
            .map_err(|e| StepError::io("reading", p, e))?;
            if text.len() as u64 > MAX_ACCOUNTS_FILE {
                return Err(StepError::Invalid(format!(
                    "/{p} is larger than {MAX_ACCOUNTS_FILE} bytes"
                )));
            }
            Ok(text)
        };
        let (passwd, group) = (read("etc/passwd")?, read("etc/group")?);
        chown_ids(&spec, &passwd, &group)
    });
    let _ = std::fs::remove_dir_all(&probe);
    lookup.map(Some)
}

/// Whether a part of `--chown=user:group` names an account to look up: neither empty, nor
/// `root`, nor a number.
fn named(part: &str) -> bool {
    !(part.is_empty() || part == "root" || part.parse::<u32>().is_ok())
}

/// `--chown=user[:group]` against the image's `/etc/passwd` and `/etc/group` text, as
/// BuildKit resolves it: a number is an id (a user id alone is also the group); an empty part
/// and `root` are id 0 (so `7:` is 7:0 and `:` is 0:0); a user name gives its uid and primary
/// group; a group name its gid; a name the files do not list (or files that are missing)
/// leaves the id as it was (0 for a user). An entry whose id is not a number is refused,
/// never read as root.
fn chown_ids(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), StepError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let find = |text: &str, name: &str, min: usize| -> Option<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.len() >= min && f[0] == name)
    };
    let id = |file: &str, f: &[String], i: usize| -> Result<u32, StepError> {
        f[i].parse().map_err(|_| {
            StepError::Invalid(format!(
                "the {file} entry of {:?} has an invalid id {:?}",
                f[0], f[i]
            ))
        })
    };
    let number = |part: &str| -> Option<u32> {
        if part.is_empty() || part == "root" {
            Some(0)
        } else {
            part.parse().ok()
        }
    };
    let (mut uid, mut gid) = (0, 0);
    if let Some(n) = number(user) {
        (uid, gid) = (n, n);
    } else if let Some(f) = find(passwd, user, 7) {
        (uid, gid) = (id("/etc/passwd", &f, 2)?, id("/etc/passwd", &f, 3)?);
    }
    if let Some(g) = grp {
        if let Some(n) = number(g) {
            gid = n;
        } else if let Some(f) = find(group, g, 4) {
            gid = id("/etc/group", &f, 2)?;
        }
    }
    Ok((uid, gid))
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
    // A git source is checked out before the tree is mounted, at the commit its key holds.
    let checkout = match (add, crate::plan::git_source(c)) {
        (true, Some(r)) => Some(git_checkout(ctx, c, r).map_err(err)?),
        _ => None,
    };
    let checkout_root = checkout.as_ref().map(|c| c.root());
    let job = copy::CopyJob {
        inst: c,
        add,
        workdir: &step.context.workdir,
        owner,
        chmod,
        scratch: &scratch,
        fetch: ctx.opts.fetch.as_deref(),
        git: checkout_root.as_deref(),
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

/// `ADD <git URL>`: the commit the plan resolved (the build's fetcher asked the remote once
/// for it), checked out in a private directory.
fn git_checkout(
    ctx: &Ctx<'_>,
    c: &crate::instructions::CopyInst,
    r: Result<crate::git::GitRef, String>,
) -> Result<crate::git::Checkout, StepError> {
    let r = r.map_err(StepError::Invalid)?;
    let git = ctx
        .opts
        .git
        .as_deref()
        .ok_or_else(|| StepError::Invalid("git sources are not available here".into()))?;
    let commit = git
        .resolve(&r, c.checksum.as_deref())
        .map_err(|e| StepError::Download(e.to_string()))?;
    let keep = c.keep_git_dir || r.keep_git_dir == Some(true);
    git.checkout(&r, &commit, keep)
        .map_err(|e| StepError::Download(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::chown_ids;

    #[test]
    fn chown_resolves_as_buildkit_unknown_names_are_id_0() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n";
        let group = "root:x:0:\nnogroup:x:65534:\nstaff:x:50:\n";
        let ids = |s: &str| chown_ids(s, passwd, group).unwrap();
        assert_eq!(ids("app"), (1000, 1001));
        assert_eq!(ids("app:staff"), (1000, 50));
        assert_eq!(ids("1234"), (1234, 1234));
        assert_eq!(ids("1234:nosuchgroup"), (1234, 1234));
        assert_eq!(ids("nosuchuser"), (0, 0));
        assert_eq!(ids("nosuchuser:nogroup"), (0, 65534));
        assert_eq!(ids("nobody:nosuchgroup"), (65534, 65534));
        assert_eq!(ids(":staff"), (0, 50));
        assert_eq!(ids("7:"), (7, 0), "an empty group is id 0");
        assert_eq!(ids("app:"), (1000, 0));
        assert_eq!(ids(":"), (0, 0));
        assert_eq!(ids("root:staff"), (0, 50));
        assert_eq!(chown_ids("app", "", "").unwrap(), (0, 0), "no passwd file");
        assert!(chown_ids("bad", "bad:x:nan:0::/:/bin/sh\n", "").is_err());
    }
}
