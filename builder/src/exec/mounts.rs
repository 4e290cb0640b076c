//! `RUN --mount=...` (parsed by [`crate::instructions::mounts`]): preparing each for the
//! container.
//!
//! - `type=cache` (`id` defaults to the target; `sharing=shared|private|locked`; `mode`,
//!   `uid`, `gid` for a new cache): a directory kept in the store (`cache-mounts/`) between
//!   builds, never part of a layer or of the cache key;
//! - `type=bind` (the default; `source`, `from=stage|image`, read-only unless `rw`): from the
//!   context, the step sees exactly the context the build has after `.dockerignore`, as under
//!   BuildKit: the source is resolved among the included entries ([`crate::context::resolve::resolve`]; a
//!   symlink is followed inside the context; an ignored or missing name is not found), and a
//!   directory is shown read-only through an overlay whose top layer whites out every
//!   ignored name below it ([`hide_ignored`]), so nothing is copied and the user's files are
//!   never written; `rw` binds, and directories holding a mount, are copies. The source is
//!   opened in the scanned context directory ([`open_bind_source`]) and mounted from that
//!   descriptor, never by path, so a name swapped for a symlink after the check mounts
//!   nothing else. From a stage or
//!   an image, the source is first copied out of that tree, so the container never sees
//!   more than the source, and `rw` writes are thrown away;
//! - `type=tmpfs` (`size`): an empty tmpfs;
//! - `type=secret` (`id`, `target` default `/run/secrets/<id>`, `required`, `mode`, `uid`,
//!   `gid`): the secret given with `--secret id=...,src=FILE|env=VAR`, written for the step
//!   only into a [`SecretDir`] (a directory on `/dev/shm`, memory, never the disk, that no
//!   other user can enter) and bind-mounted read-only. `mode` is what the step sees; on the
//!   host the file is out of every other user's reach whatever its mode. With `env=NAME` the
//!   value is also (without a `target`, only) the step's variable `NAME`: the step's init
//!   inherits the secret file open and reads the value from it, so it is never written into
//!   the bundle's spec. The secret's value never enters the cache key, the history, a layer
//!   or the logs.
//! - `type=ssh` (`id` default `default`, `target` default `/run/buildkit/ssh_agent.N`,
//!   `required`, `mode` default `0600`, `uid`, `gid`): a socket of berth's own in the same
//!   private directory as secrets, forwarding to the agent `--ssh ID` gave
//!   ([`super::ssh::Proxy`]), bound onto the target.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{Ctx, context_root, from_snapshots, fsops, step_error};
use crate::context::resolve::is_dir_in;
use crate::context::{ContextEntry, ScannedContext};
use crate::error::{BuildError, StepError};
use crate::plan::Step;

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// `id=ID,src=PATH` | `id=ID,env=VAR` | `id=ID` (the env var `ID`, as BuildKit).
    pub fn parse(spec: &str) -> Result<(String, Secret), String> {
        let mut id = None;
        let mut source = None;
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("--secret {spec:?}: expected id=ID,src=PATH or id=ID,env=VAR")
            })?;
            match k {
                "id" => id = Some(v.to_owned()),
                "src" | "source" => source = Some(Secret::File(PathBuf::from(v))),
                "env" => source = Some(Secret::Env(v.to_owned())),
                "type" if v == "file" || v == "env" => {}
                _ => return Err(format!("--secret {spec:?}: unknown key {k:?}")),
            }
        }
        let id = id.ok_or_else(|| format!("--secret {spec:?}: the id is missing"))?;
        let source = source.unwrap_or_else(|| Secret::Env(id.clone()));
        Ok((id, source))
    }

    /// The value; `None` when the file or variable does not exist.
    pub fn read(&self) -> Result<Option<Vec<u8>>, StepError> {
        match self {
            Secret::File(p) => match std::fs::read(p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StepError::io(
                    "reading secret file",
                    &p.to_string_lossy(),
                    e,
                )),
            },
            Secret::Env(v) => Ok(std::env::var_os(v).map(|s| s.into_encoded_bytes())),
        }
    }
}

/// Opens a bind mount's `source` (resolved by [`crate::context::resolve::resolve`], `""` for the root) in
/// the context directory `root` that the scan walked, for the runtime to mount from the
/// descriptor: what was resolved is what is mounted, whatever the path names by the time the
/// step starts. The resolved path has no symlink left (the scan's were followed), so any
/// symlink now on the way, or in its place, means the context changed since the scan: an
/// error (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`). A directory is opened for
/// reading ([`hide_ignored`] lists it), anything else as `O_PATH` (never opened for its data:
/// a FIFO cannot block).
pub fn open_bind_source(
    root: BorrowedFd<'_>,
    resolved: &str,
    dir: bool,
) -> Result<OwnedFd, StepError> {
    use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
    let changed = || {
        StepError::ContextChanged(format!(
            "{resolved:?}: the build context changed while it was built"
        ))
    };
    let path = if resolved.is_empty() { "." } else { resolved };
    let flags = if dir {
        OFlags::RDONLY | OFlags::DIRECTORY
    } else {
        OFlags::PATH
    };
    let fd = rustix::fs::openat2(
        root,
        path,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::NOENT => changed(),
        e => StepError::io("opening", resolved, e.into()),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| StepError::io("opening", resolved, e.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind == FileType::Symlink || (kind == FileType::Directory) != dir {
        return Err(changed());
    }
    Ok(fd)
}

/// Builds in `hide` (an empty directory) the top layer of a read-only overlay over context
/// directory `top` (opened by [`open_bind_source`]; `dir` is its resolved path in the
/// context): a whiteout (the character device 0:0 overlayfs reads as "no such entry") for
/// every name below `dir` that the context's `entries` leave out, inside directories given
/// the owner and mode of the ones they stand over. Names are read from the directories
/// themselves, through descriptors opened from `top` without following links. Returns `false`
/// when a directory below `dir` is another mount, which an overlay would not show: the caller
/// copies instead.
pub fn hide_ignored(
    top: &OwnedFd,
    dir: &str,
    entries: &BTreeMap<String, ContextEntry>,
    hide: &Path,
) -> std::io::Result<bool> {
    use rustix::fs::{Mode, OFlags};
    let open = open_dir;
    let top = top.try_clone()?;
    let hide_fd = rustix::fs::open(
        hide,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let top_st = rustix::fs::fstat(&top)?;
    let real_top = top.try_clone()?;
    // (real directory, its path in the context, its path below `dir`)
    let mut stack = vec![(top, dir.to_owned(), String::new())];
    while let Some((fd, path, below)) = stack.pop() {
        let mut names: Vec<String> = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd)? {
            let e = e?;
            let name = e.file_name().to_bytes();
            if name != b"." && name != b".." {
                // A name that is not UTF-8 never matches an entry (the scan keeps names as
                // UTF-8): hidden.
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        for name in names {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let child_below = if below.is_empty() {
                name.clone()
            } else {
                format!("{below}/{name}")
            };
            if entries.contains_key(&child) || is_dir_in(entries, &child) {
                if is_dir_in(entries, &child) {
                    let sub = open(&fd, &name)?;
                    if rustix::fs::fstat(&sub)?.st_dev != top_st.st_dev {
                        return Ok(false);
                    }
                    stack.push((sub, child, child_below));
                }
                continue;
            }
            let parent = mirror_dirs(&hide_fd, &real_top, &below)?;
            rustix::fs::mknodat(
                &parent,
                name.as_str(),
                rustix::fs::FileType::CharacterDevice,
                Mode::empty(),
                0,
            )?;
        }
    }
    // The overlay's root is its top layer's: the owner and mode of `dir` itself.
    copy_owner_and_mode(&hide_fd, &top_st)?;
    Ok(true)
}

/// The directory `name` in `at`, never through a symlink.
fn open_dir(at: &OwnedFd, name: &str) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens (creating) `below` in the whiteout layer; each directory it makes gets the owner
/// and mode of the real directory it stands over (walked from `real_top`, the bind's source).
fn mirror_dirs(hide: &OwnedFd, real_top: &OwnedFd, below: &str) -> std::io::Result<OwnedFd> {
    use rustix::fs::Mode;
    let open = open_dir;
    let mut at = hide.try_clone()?;
    let mut real = real_top.try_clone()?;
    for c in below.split('/').filter(|c| !c.is_empty()) {
        real = open(&real, c)?;
        let made = match rustix::fs::mkdirat(&at, c, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(e.into()),
        };
        at = open(&at, c)?;
        if made {
            copy_owner_and_mode(&at, &rustix::fs::fstat(&real)?)?;
        }
    }
    Ok(at)
}

fn copy_owner_and_mode(fd: &OwnedFd, st: &rustix::fs::Stat) -> std::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777))?;
    Ok(())
}

/// A directory for a step's secret files that only berth's user can enter: `mode 0700`,
/// made by `mkdir` under a fresh random name (an existing name, which another user may have
/// made first, is never used), then checked through the descriptor it was opened with (a
/// directory, not a link, owned by this user, 0700). Files are created inside it relative to
/// that descriptor, exclusively, never following a link. Removed with its files on drop.
#[derive(Debug)]
pub struct SecretDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl SecretDir {
    /// On `/dev/shm` (a tmpfs) when there is one, else under `fallback`.
    pub fn create(fallback: &Path) -> std::io::Result<SecretDir> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm } else { fallback };
        let mut tries = 0;
        loop {
            let mut random = [0u8; 16];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
            let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let path = base.join(format!("berth-secrets-{name}"));
            match rustix::fs::mkdir(&path, rustix::fs::Mode::from_raw_mode(0o700)) {
                Ok(()) => return SecretDir::open(path),
                Err(rustix::io::Errno::EXIST) if tries < 16 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn open(path: PathBuf) -> std::io::Result<SecretDir> {
        use rustix::fs::{FileType, Mode, OFlags};
        let refuse = |path: &Path| {
            let _ = std::fs::remove_dir(path);
            std::io::Error::other(format!(
                "{}: not a private directory of this user",
                path.display()
            ))
        };
        let fd = match rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => return Err(refuse(&path)),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory
            || st.st_uid != rustix::process::geteuid().as_raw()
        {
            return Err(refuse(&path));
        }
        // mkdir's mode went through the umask, which can only have taken bits away.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
        Ok(SecretDir { path, fd })
    }

    /// Writes `value` to a new file `name` in the directory, owned by `uid:gid` with `mode`;
    /// returns its path, for the bind mount.
    pub fn write(
        &self,
        name: &str,
        value: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> std::io::Result<PathBuf> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::openat(
            self.fd.as_fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        std::io::Write::write_all(&mut file, value)?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(self.path.join(name))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// What a RUN step's `--mount`s became; the secrets' directory is removed and cache locks
/// released on drop.
#[derive(Debug, Default)]
pub(super) struct PreparedMounts {
    pub(super) binds: Vec<(PathBuf, String, bool)>,
    pub(super) overlays: Vec<(Vec<PathBuf>, String)>,
    pub(super) tmpfs: Vec<berth_runtime::spec::Tmpfs>,
    pub(super) targets: Vec<String>,
    pub(super) secrets: Option<SecretDir>,
    /// The sockets of `type=ssh` mounts (in the secrets' directory), served until dropped.
    pub(super) ssh: Vec<super::ssh::Proxy>,
    _locks: Vec<berth_store::lock::FileLock>,
    /// Detached copies of the context files and directories that `binds` and `overlays` name
    /// as `/proc/thread-self/fd/N`, handed to the step's init
    /// ([`berth_runtime::Bundle::run_captured`]).
    pub(super) fds: Vec<OwnedFd>,
    /// `type=secret,env=NAME`: the variable and the descriptor in `fds` holding its value.
    pub(super) env_fds: Vec<(String, i32)>,
    /// Context paths (resolved, `""` for the root) a bind shows live, not as a copy: checked
    /// after the step against the scan ([`check_live_binds`]).
    pub(super) live: Vec<String>,
}

/// After a step that bound context paths live: every entry at and below them is still as the
/// scan found it (a file's version, a directory's, the context root's), or the step fails
/// and nothing is recorded. A file written, or renamed and put back, while the step could read
/// it moved a time the kernel keeps, so the step's output is never cached under a key that
/// describes other content.
pub(super) fn check_live_binds(context: &ScannedContext, live: &[String]) -> Result<(), StepError> {
    if live.is_empty() {
        return Ok(());
    }
    let changed = |path: &str| {
        StepError::ContextChanged(format!(
            "the build context changed while the step could read it ({}): build again",
            if path.is_empty() { "." } else { path }
        ))
    };
    let root = context_root(context).map_err(|e| e.to_string())?;
    for resolved in live {
        if resolved.is_empty() {
            let now = rustix::fs::fstat(&*context.dir).map_err(|e| e.to_string())?;
            if crate::context::StatKey::of(&now) != context.root_version {
                return Err(changed(""));
            }
        }
        for entry in crate::context::resolve::below(&context.entries, resolved) {
            let Some(version) = entry.version else {
                continue;
            };
            match root.lstat(&entry.path) {
                Ok(st) if crate::context::StatKey::of(&st) == version => {}
                _ => return Err(changed(&entry.path)),
            }
        }
    }
    Ok(())
}

pub(super) fn prepare_mounts(
    ctx: &Ctx<'_>,
    step: &Step,
    work: &Path,
    run: &crate::instructions::Run,
) -> Result<PreparedMounts, BuildError> {
    let mut p = PreparedMounts::default();
    for (n, m) in run.mounts.iter().enumerate() {
        // Made absolute by the plan.
        let target = m.target.clone();
        let own = work.join(format!("mount-{n}"));
        std::fs::create_dir_all(&own).map_err(|e| step_error(step, e))?;
        match m.kind {
            crate::instructions::mounts::Kind::Tmpfs => p
                .tmpfs
                .push(berth_runtime::spec::Tmpfs::scratch(&target, m.size)),
            crate::instructions::mounts::Kind::Cache => {
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let owner = (
                    m.mode.unwrap_or(0o755),
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                );
                // A cache mount this store has never made starts with an imported cache's
                // files for it, when one has them.
                let seed = match ctx.store.has_cache_mount(&id) {
                    true => None,
                    false => ctx
                        .opts
                        .imports
                        .iter()
                        .find_map(|i| Some((i, i.mount(&id)?)))
                        .map(|(i, m)| {
                            crate::cache::fetch_blob(ctx.store, i, &m.blob)
                                .map(|()| m.blob.digest.clone())
                                .map_err(|e| {
                                    step_error(
                                        step,
                                        format!(
                                            "--cache-from {}: cache mount {id:?}: {e}",
                                            i.source.describe()
                                        ),
                                    )
                                })
                        })
                        .transpose()?,
                };
                match ctx
                    .store
                    .cache_mount(&id, owner, m.sharing, seed.as_ref())?
                {
                    Some((dir, lock)) => {
                        p.binds.push((dir, target.clone(), m.readonly));
                        p._locks.extend(lock);
                    }
                    // `sharing=private` and the cache is in use: a fresh one for this step.
                    None => p.binds.push((own.clone(), target.clone(), m.readonly)),
                }
            }
            crate::instructions::mounts::Kind::Secret => {
                let id = m.id.clone().unwrap_or_default();
                let value = match ctx.opts.secrets.get(&id) {
                    Some(s) => s.read().map_err(|e| step_error(step, e))?,
                    None => None,
                };
                let Some(value) = value else {
                    if m.required {
                        return Err(step_error(
                            step,
                            format!(
                                "secret {id:?} is required but was not given: pass --secret id={id},src=FILE"
                            ),
                        ));
                    }
                    continue;
                };
                let secrets =
                    match &mut p.secrets {
                        Some(dir) => dir,
                        none => none.insert(SecretDir::create(work).map_err(|e| {
                            step_error(step, format!("a directory for secrets: {e}"))
                        })?),
                    };
                let file = secrets
                    .write(
                        &format!("secret-{n}"),
                        &value,
                        m.mode.unwrap_or(0o400),
                        m.uid.unwrap_or(0),
                        m.gid.unwrap_or(0),
                    )
                    .map_err(|e| step_error(step, format!("writing secret {id:?}: {e}")))?;
                if let Some(name) = &m.env {
                    // Handed to the step's init as a descriptor it reads the value from, so
                    // the value is never written into the bundle's spec.
                    let fd = std::fs::File::open(&file)
                        .map_err(|e| step_error(step, format!("opening secret {id:?}: {e}")))?;
                    let fd = OwnedFd::from(fd);
                    p.env_fds.push((name.clone(), fd.as_raw_fd()));
                    p.fds.push(fd);
                }
                if target.is_empty() {
                    continue;
                }
                p.binds.push((file, target.clone(), true));
            }
            crate::instructions::mounts::Kind::Ssh => {
                let id = m.id.as_deref().unwrap_or("default");
                let Some(agent) = ctx.opts.ssh.socket(id) else {
                    if m.required {
                        return Err(step_error(
                            step,
                            format!(
                                "no ssh agent given for id {id:?}, which is required: pass --ssh {id}[=SOCKET|KEY]"
                            ),
                        ));
                    }
                    continue;
                };
                let dir =
                    match &mut p.secrets {
                        Some(dir) => dir,
                        none => none.insert(SecretDir::create(work).map_err(|e| {
                            step_error(step, format!("a directory for secrets: {e}"))
                        })?),
                    };
                let proxy = super::ssh::Proxy::start(
                    dir.path().join(format!("ssh-{n}")),
                    agent.to_owned(),
                    m.mode.unwrap_or(0o600),
                    m.uid.unwrap_or(0),
                    m.gid.unwrap_or(0),
                )
                .map_err(|e| step_error(step, format!("the socket for ssh {id:?}: {e}")))?;
                p.binds
                    .push((proxy.path().to_owned(), target.clone(), true));
                p.ssh.push(proxy);
            }
            crate::instructions::mounts::Kind::Bind => {
                let source = m.source.clone().unwrap_or_else(|| "/".into());
                let lowers = m
                    .from
                    .as_deref()
                    .map(|from| from_snapshots(ctx, from))
                    .transpose()?;
                if lowers.is_none() {
                    let context = ctx.context;
                    let (resolved, dir) =
                        crate::context::resolve::resolve(&context.entries, &source)
                            .map_err(|e| step_error(step, e))?;
                    // Opened in the context as scanned, and mounted from a detached copy of
                    // what was opened: a name replaced by a link since the scan is refused,
                    // and one replaced after this open changes nothing.
                    let fd = open_bind_source(context.dir.as_fd(), &resolved, dir)
                        .map_err(|e| step_error(step, format!("--mount source {source:?}: {e}")))?;
                    let detached = || {
                        berth_runtime::detached_tree(fd.as_fd()).map_err(|e| {
                            step_error(step, format!("--mount source {source:?}: {e}"))
                        })
                    };
                    if m.readonly && !dir {
                        let tree = detached()?;
                        p.binds.push((
                            berth_runtime::fd_source(tree.as_fd()),
                            target.clone(),
                            true,
                        ));
                        p.targets.push(target);
                        p.fds.push(tree);
                        p.live.push(resolved);
                        continue;
                    }
                    let hide = own.join("hide");
                    let plain = |path: &Path| !path.to_string_lossy().contains([':', ',', '\\']);
                    // The overlay is the kernel's, mounted by PID 1: not where another mount
                    // program is asked for or the kernel refused overlayfs (a copy then).
                    if m.readonly
                        && berth_runtime::fuse::kernel_overlays(&own.join("probe"))
                        && plain(&hide)
                        && std::fs::create_dir(&hide).is_ok()
                        && hide_ignored(&fd, &resolved, &context.entries, &hide).map_err(|e| {
                            step_error(step, format!("--mount source {source:?}: {e}"))
                        })?
                    {
                        let tree = detached()?;
                        let lower = berth_runtime::fd_source(tree.as_fd());
                        p.overlays.push((vec![lower, hide], target.clone()));
                        p.targets.push(target);
                        p.fds.push(tree);
                        p.live.push(resolved);
                        continue;
                    }
                }
                // A copy: from a stage or an image, `rw` from the context, or a context
                // directory that an overlay cannot show (a mount inside it, or a path that
                // overlayfs's options cannot carry).
                let source = match (&lowers, ctx.context) {
                    (None, context) => {
                        let (resolved, _) =
                            crate::context::resolve::resolve(&context.entries, &source)
                                .map_err(|e| step_error(step, e))?;
                        format!("/{resolved}")
                    }
                    (Some(_), _) => source,
                };
                let host = {
                    let copy_dir = own.join("copy");
                    std::fs::create_dir_all(&copy_dir).map_err(|e| step_error(step, e))?;
                    let context = lowers.is_none().then_some(ctx.context);
                    let dir = super::output::export_tree(context, lowers, &source, &own, &copy_dir)
                        .map_err(|e| step_error(step, format!("--mount source {source:?}: {e}")))?;
                    if dir {
                        copy_dir
                    } else {
                        copy_dir.join(fsops::components(&source).last().copied().unwrap_or("file"))
                    }
                };
                p.binds.push((host, target.clone(), m.readonly));
            }
        }
        p.targets.push(target);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::EntryKind;

    #[test]
    fn bind_sources_resolve_among_the_included_entries_only() {
        let entry = |path: &str, kind: EntryKind| {
            (
                path.to_owned(),
                ContextEntry {
                    path: path.into(),
                    kind,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    digest: None,
                    version: None,
                },
            )
        };
        // `secret` and `dir` are ignored; `dir/keep` is let in again.
        let entries: BTreeMap<String, ContextEntry> = [
            entry("a", EntryKind::Dir),
            entry("a/f", EntryKind::File),
            entry("dir/keep", EntryKind::File),
            entry("to-a", EntryKind::Symlink("a".into())),
            entry("abs", EntryKind::Symlink("/a/f".into())),
            entry("up", EntryKind::Symlink("../../a".into())),
            entry("to-secret", EntryKind::Symlink("secret".into())),
            entry("loop", EntryKind::Symlink("loop".into())),
        ]
        .into_iter()
        .collect();
        let r = |s: &str| crate::context::resolve::resolve(&entries, s).map_err(|e| e.to_string());
        assert_eq!(r("/"), Ok(("".into(), true)));
        assert_eq!(r("./a/"), Ok(("a".into(), true)));
        assert_eq!(r("to-a/f"), Ok(("a/f".into(), false)));
        assert_eq!(r("abs"), Ok(("a/f".into(), false)));
        assert_eq!(r("up"), Ok(("a".into(), true)), "never above the root");
        assert_eq!(r("dir"), Ok(("dir".into(), true)));
        for missing in ["secret", "to-secret", "dir/drop", "a/f/x", "nope"] {
            assert!(r(missing).unwrap_err().contains("not found"), "{missing}");
        }
        assert!(r("loop").is_err());
        let shown: Vec<&str> = crate::context::resolve::below(&entries, "a")
            .map(|e| e.path.as_str())
            .collect();
        assert_eq!(shown, ["a", "a/f"]);
    }

    /// What is opened is what was resolved: a source swapped for a symlink, a parent
    /// swapped for one, or a file swapped for a directory (or back) is refused, and a swap
    /// after the open does not change what the descriptor names.
    #[test]
    fn a_bind_source_is_opened_as_resolved_or_refused() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let (ctx, outside) = (tmp.path().join("ctx"), tmp.path().join("outside"));
        std::fs::create_dir_all(ctx.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(ctx.join("f"), "in").unwrap();
        std::fs::write(ctx.join("d/f"), "in d").unwrap();
        std::fs::write(outside.join("f"), "OUTSIDE").unwrap();
        let root = rustix::fs::open(
            &ctx,
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let read = |fd: &OwnedFd, rel: &str| {
            let fd_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            let path = if rel.is_empty() {
                fd_path
            } else {
                format!("{fd_path}/{rel}")
            };
            std::fs::read_to_string(path).unwrap()
        };
        // Opened, then swapped: the descriptors still name the originals.
        let f = open_bind_source(root.as_fd(), "f", false).unwrap();
        let d = open_bind_source(root.as_fd(), "d", true).unwrap();
        let whole = open_bind_source(root.as_fd(), "", true).unwrap();
        std::fs::rename(ctx.join("f"), ctx.join("f.old")).unwrap();
        symlink(outside.join("f"), ctx.join("f")).unwrap();
        std::fs::rename(ctx.join("d"), ctx.join("d.old")).unwrap();
        symlink(&outside, ctx.join("d")).unwrap();
        assert_eq!(read(&f, ""), "in");
        assert_eq!(read(&d, "f"), "in d");
        assert_eq!(read(&whole, "f.old"), "in");
        // Swapped before the open: refused.
        for (path, dir) in [("f", false), ("d", true), ("d/f", false), ("f.old", true)] {
            let e = open_bind_source(root.as_fd(), path, dir).unwrap_err();
            assert!(matches!(e, StepError::ContextChanged(_)), "{path}: {e}");
        }
        assert!(open_bind_source(root.as_fd(), "d.old", false).is_err());
        assert!(open_bind_source(root.as_fd(), "../outside/f", false).is_err());
    }

    #[test]
    fn a_secret_dir_is_private_and_goes_with_its_files() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretDir::create(tmp.path()).unwrap();
        let path = dir.path().to_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o700);
        let me = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let file = dir.write("s", b"value", 0o444, me, gid).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"value");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o444);
        assert!(
            dir.write("s", b"again", 0o400, me, gid).is_err(),
            "never over an existing file"
        );
        std::os::unix::fs::symlink("/etc/passwd", path.join("l")).unwrap();
        assert!(
            dir.write("l", b"x", 0o400, me, gid).is_err(),
            "never through a link"
        );
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn secrets_parse() {
        assert_eq!(
            Secret::parse("id=a,src=/x").unwrap(),
            ("a".into(), Secret::File("/x".into()))
        );
        assert_eq!(
            Secret::parse("id=a,env=V").unwrap(),
            ("a".into(), Secret::Env("V".into()))
        );
        assert_eq!(
            Secret::parse("id=a").unwrap(),
            ("a".into(), Secret::Env("a".into()))
        );
        assert!(Secret::parse("src=/x").is_err());
    }
}
