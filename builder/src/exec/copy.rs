//! COPY and ADD: sources from a tree (the build context, filtered by `.dockerignore`, or
//! another stage's or image's files) copied into the image's merged tree, with BuildKit's
//! rules:
//!
//! - a relative destination is relative to WORKDIR; a destination ending in `/` (or several
//!   sources, or a wildcard) is a directory;
//! - a directory source copies its contents, not itself; a file source lands at the
//!   destination, or inside it when the destination is (or will be) a directory;
//! - a source's own symlink is followed (within its tree); symlinks inside directories are
//!   copied as symlinks;
//! - the destination's symlinks are followed inside the image, its last name included: a
//!   COPY onto a link to a file writes that file, onto a dangling link creates its target;
//! - files keep their mode and mtime; context files are owned by 0:0 and stage files keep
//!   their owner, unless `--chown`; `--chmod` (octal or symbolic) replaces the mode;
//!   directories the copy creates are 0755, owned by the `--chown` user;
//! - ADD extracts local tar archives (plain, gzip, zstd) into the destination directory,
//!   through the same safe unpacker as image layers.
//!
//! Both trees are accessed through [`InRoot`], so neither a context symlink nor an image
//! symlink can lead a read or a write outside its tree. A context source is resolved among
//! the entries the scan included ([`crate::context::resolve`]), never on the disk: a symlink
//! to a file `.dockerignore` excludes is not found, as in BuildKit. Everything copied from the
//! context is then checked against the scan (type, link target, a file's version), so what
//! enters the layer is what the cache key describes.

use crate::error::StepError;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::FileType;

use super::fsops::{
    InRoot, Meta, Resolve, components, copy_file, set_dir_time, write_dir, write_fifo,
    write_hard_link, write_symlink,
};
use crate::context::archive::{packing_of, unpacked_stream};
use crate::context::resolve::{self, glob_match, has_glob};
use crate::context::{ContextEntry, EntryKind};
use crate::dockerfile::Heredoc;
use crate::instructions::CopyInst;

/// Where sources are read from.
#[derive(Debug)]
pub struct SourceTree<'a> {
    pub root: InRoot,
    /// The build context's included entries; `None` for a stage or image (everything).
    pub filter: Option<&'a BTreeMap<String, ContextEntry>>,
}

impl SourceTree<'_> {
    /// For a build context's file, whether `file` (open for `path`) is still the version whose
    /// digest is in the cache key; an error if it is not, or if the scan found no file there,
    /// so a file changed after the scan never enters a layer recorded under a key that
    /// describes other content. `false` when there is nothing to check (a stage, an image).
    fn unchanged_since_scan(&self, path: &str, file: &std::fs::File) -> Result<bool, StepError> {
        let Some(entries) = self.filter else {
            return Ok(false);
        };
        let Some(version) = entries.get(path).and_then(|e| e.version) else {
            return Err(changed(path));
        };
        let now = rustix::fs::fstat(file).map_err(|e| io_msg("reading", path, e.into()))?;
        if crate::context::StatKey::of(&now) != version {
            return Err(changed(path));
        }
        Ok(true)
    }

    /// For a build context, that `path` (whose `lstat` is `st`) is what the scan found
    /// there: an included entry of the same type (a directory may be the parent of included
    /// entries), a symlink with the same target. Anything else appeared or changed after the
    /// scan and is refused.
    fn as_scanned(&self, path: &str, st: &rustix::fs::Stat) -> Result<(), StepError> {
        let Some(entries) = self.filter else {
            return Ok(());
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let same = match (entries.get(path).map(|e| &e.kind), ft) {
            (Some(EntryKind::Dir), FileType::Directory) => true,
            (None, FileType::Directory) => resolve::is_dir_in(entries, path),
            (Some(EntryKind::File), FileType::RegularFile) => true,
            (Some(EntryKind::Symlink(target)), FileType::Symlink) => self
                .root
                .read_link(path)
                .is_ok_and(|t| t == target.as_bytes()),
            _ => false,
        };
        if same { Ok(()) } else { Err(changed(path)) }
    }

    fn included(&self, path: &str, is_dir: bool) -> bool {
        let Some(entries) = self.filter else {
            return true;
        };
        if path.is_empty() || entries.contains_key(path) {
            return true;
        }
        is_dir && {
            let prefix = format!("{path}/");
            entries
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&prefix))
        }
    }

    fn is_context(&self) -> bool {
        self.filter.is_some()
    }
}

fn changed(path: &str) -> StepError {
    StepError::ContextChanged(format!(
        "{path:?} changed in the build context while the build ran: build again"
    ))
}

/// `--chmod`: octal, or symbolic clauses (`u+x,go-w`) applied to each source's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<(u32, char, String)>),
}

impl Chmod {
    pub fn parse(s: &str) -> Result<Chmod, String> {
        if !s.is_empty() && s.chars().all(|c| c.is_digit(8)) {
            // BuildKit applies an octal mode as Go's `os.FileMode`, whose permission bits are
            // the low nine: setuid, setgid and sticky given this way are dropped.
            return u32::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(|m| Chmod::Octal(m & 0o777))
                .ok_or_else(|| format!("invalid --chmod {s:?}"));
        }
        let mut clauses = Vec::new();
        for clause in s.split(',') {
            let op_at = clause
                .find(['+', '-', '='])
                .ok_or_else(|| format!("invalid --chmod {s:?}: expected [ugoa][+-=][rwxXst]"))?;
            let (who, rest) = clause.split_at(op_at);
            let mut mask = 0;
            for c in who.chars() {
                mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(format!("invalid --chmod {s:?}: unknown who {c:?}")),
                };
            }
            if mask == 0 {
                mask = 0o7777;
            }
            let op = rest.chars().next().expect("found an operator");
            let perms = &rest[1..];
            if let Some(c) = perms.chars().find(|c| !"rwxXst".contains(*c)) {
                return Err(format!("invalid --chmod {s:?}: unknown permission {c:?}"));
            }
            clauses.push((mask, op, perms.to_owned()));
        }
        Ok(Chmod::Symbolic(clauses))
    }

    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for (mask, op, perms) in clauses {
                    let mut bits = 0;
                    for p in perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & mask;
                    mode = match op {
                        '+' => mode | bits,
                        '-' => mode & !bits,
                        _ => (mode & !(mask & 0o777)) | bits,
                    };
                }
                mode
            }
        }
    }
}

/// What a COPY or ADD needs besides the trees.
#[derive(Debug, Clone)]
pub struct CopyJob<'a> {
    /// The source being copied (`--exclude` patterns are relative to it).
    pub exclude_base: String,
    pub inst: &'a CopyInst,
    pub add: bool,
    /// The working directory (absolute).
    pub workdir: &'a str,
    /// `--chown`, resolved.
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    /// A scratch directory (ADD extracts archives there first).
    pub scratch: &'a Path,
    /// Downloads ADD's `http(s)://` sources (cli provides it).
    pub fetch: Option<&'a dyn super::Fetch>,
    /// ADD's git source, checked out (the top of its work tree).
    pub git: Option<&'a Path>,
}

fn io_msg(what: &str, path: &str, e: std::io::Error) -> StepError {
    StepError::io(what, path, e)
}

/// Every path in a stage's or image's `tree` matching a wildcard source (a context's are
/// matched among its scanned entries, [`resolve::sources`]).
/// With `parents` (`COPY --parents`), a `**` component matches any number of directories,
/// none included, and nothing below a matched directory is listed again (see
/// [`resolve::sources_for`]).
fn expand_glob(
    tree: &SourceTree<'_>,
    pattern: &str,
    parents: bool,
) -> Result<Vec<String>, StepError> {
    let parts = components(pattern);
    let fixed = parts.iter().take_while(|c| !has_glob(c)).count();
    if parents && parts[fixed..].contains(&"**") {
        return expand_any_depth(tree, &parts[..fixed].join("/"), &parts.join("/"));
    }
    let mut found = Vec::new();
    let mut frontier = vec![parts[..fixed].join("/")];
    for depth in fixed..parts.len() {
        let mut next = Vec::new();
        for dir in &frontier {
            let Ok(names) = tree.root.list(if dir.is_empty() { "." } else { dir }) else {
                continue;
            };
            for name in names {
                let name = String::from_utf8_lossy(&name).into_owned();
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                let sub = parts[..=depth].join("/");
                if glob_match(&sub, &path) {
                    next.push(path);
                }
            }
        }
        frontier = next;
    }
    for path in frontier {
        let is_dir = tree
            .root
            .lstat(&path)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if tree.included(&path, is_dir) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The paths below `base` in a stage's or image's `tree` that `pattern` (with `**`) matches
/// as a whole; symlinks are matched, never entered, and a matched directory is not entered.
fn expand_any_depth(
    tree: &SourceTree<'_>,
    base: &str,
    pattern: &str,
) -> Result<Vec<String>, StepError> {
    let matcher = crate::context::Matcher::from_patterns(&[(0, pattern.to_owned())])
        .map_err(|e| StepError::Invalid(format!("{pattern:?}: {e}")))?;
    let mut found = Vec::new();
    let mut stack = vec![base.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(names) = tree.root.list(if dir.is_empty() { "." } else { &dir }) else {
            continue;
        };
        for name in names.into_iter().rev() {
            let name = String::from_utf8_lossy(&name).into_owned();
            let path = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            if matcher.excluded(&path) {
                found.push(path);
            } else if tree
                .root
                .lstat(&path)
                .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
            {
                stack.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Runs a COPY or ADD from `tree` into `dest` (the image's merged tree).
pub fn copy(
    job: &CopyJob<'_>,
    tree: &SourceTree<'_>,
    dest: &InRoot,
    heredocs: &[Heredoc],
) -> Result<(), StepError> {
    let inst = job.inst;
    let dest_raw = inst.dest.as_str();
    let dir_syntax = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
    let dest_path = crate::plan::resolve_workdir(job.workdir, dest_raw);
    let created_dir_meta = Meta {
        mode: 0o755,
        uid: job.owner.map_or(0, |o| o.0),
        gid: job.owner.map_or(0, |o| o.1),
        mtime: (0, 0),
    };
    enum Src {
        /// The path as written (or matched), and the path it resolves to in the tree.
        Path(String, String),
        Heredoc(String, String),
        Url(String),
        /// A git source's subdirectory in its checkout.
        Git(String, String),
    }
    if inst.checksum.is_some()
        && let Some(local) = inst
            .sources
            .iter()
            .find(|s| !(s.contains("://") || crate::git::GitRef::for_add(s).is_some()))
    {
        return Err(StepError::Invalid(format!(
            "ADD --checksum applies to remote sources only, not to {local:?}"
        )));
    }
    let mut sources = Vec::new();
    for s in &inst.sources {
        if let Some(name) = s.strip_prefix("<<") {
            let name = name.trim_start_matches('-').trim_matches(['"', '\'']);
            if let Some(h) = heredocs.iter().find(|h| h.name == name) {
                sources.push(Src::Heredoc(h.name.clone(), h.content.clone()));
                continue;
            }
        }
        if job.add
            && let Some(r) = crate::git::GitRef::for_add(s)
        {
            let r = r.map_err(|m| format!("ADD {}: {m}", crate::redact::url_credentials(s)))?;
            sources.push(Src::Git(r.shown(), r.subdir));
            continue;
        }
        if job.add && (s.starts_with("http://") || s.starts_with("https://")) {
            sources.push(Src::Url(s.clone()));
            continue;
        }
        // `--parents` keeps each source's path under the destination, from its `/./` pivot
        // on when it has one (`./x/./y/a.txt` lands at `y/a.txt`).
        let pivot = inst
            .parents
            .then(|| s.split_once("/./"))
            .flatten()
            .map(|(before, _)| components(before).join("/"));
        let kept = |name: String| -> String {
            match &pivot {
                Some(p) if name == *p => String::new(),
                Some(p) if !p.is_empty() => name
                    .strip_prefix(&format!("{p}/"))
                    .map(str::to_owned)
                    .unwrap_or(name),
                _ => name,
            }
        };
        if let Some(entries) = tree.filter {
            let found = resolve::sources_for(entries, s, inst.parents).map_err(|e| match e {
                resolve::ResolveError::NotFound(name) => {
                    format!("{:?}: not found", format!("/{name}"))
                }
                e => e.to_string(),
            })?;
            // A wildcard that matches nothing copies nothing, as in BuildKit.
            sources.extend(
                found
                    .into_iter()
                    .map(|f| Src::Path(kept(f.name), f.resolved)),
            );
            continue;
        }
        let clean = components(s).join("/");
        let names = if has_glob(s) {
            expand_glob(tree, &clean, inst.parents)?
        } else {
            if tree.root.lstat(&clean).is_err() && !clean.is_empty() {
                return Err(StepError::Invalid(format!(
                    "{:?}: not found",
                    format!("/{clean}")
                )));
            }
            vec![clean]
        };
        for path in names {
            // A stage's or image's own symlink is followed, inside its tree.
            let real = tree
                .root
                .canonical(&path)
                .map_err(|e| io_msg("resolving", &path, e))?;
            sources.push(Src::Path(kept(path), real));
        }
    }
    // The reference's rule is checked on the sources as written: the matches of one
    // wildcard are each copied as if alone (a directory's contents into the destination, a
    // file to it, or into it when it is a directory by then), as BuildKit copies them.
    if inst.sources.len() > 1 && !dir_syntax {
        return Err(
            "when using COPY with more than one source file, the destination must be a directory and end with a /"
                .into(),
        );
    }
    let dest_is_dir = |path: &str| {
        dest.stat(path)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
    };
    for src in sources {
        // The destination with every symlink in it followed inside the image, its last
        // name included (a link to a file is written through, a dangling link creates its
        // target), as BuildKit resolves it for each source.
        let dest_path = format!(
            "/{}",
            dest.follow(&dest_path)
                .map_err(|e| io_msg("resolving", &dest_path, e))?
        );
        match src {
            Src::Git(shown, subdir) => {
                let root = job
                    .git
                    .ok_or_else(|| format!("ADD {shown}: git sources are not available here"))?;
                let tree = SourceTree {
                    root: InRoot::open(root)
                        .map_err(|e| io_msg("opening the checkout of", &shown, e))?,
                    filter: None,
                };
                // The subdirectory is resolved inside the checkout: `..` and symlinks stay
                // in it.
                let top = if subdir.is_empty() {
                    "."
                } else {
                    subdir.as_str()
                };
                let real = tree.root.canonical(top).map_err(|e| {
                    format!("ADD {shown}: the subdirectory {subdir:?} of the checkout: {e}")
                })?;
                let is_dir = tree
                    .root
                    .lstat(&real)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
                if !is_dir {
                    return Err(StepError::Invalid(format!(
                        "ADD {shown}: {subdir:?} is not a directory of the repository"
                    )));
                }
                let fd = dest
                    .mkdir_all(&dest_path, Some(created_dir_meta))
                    .map_err(|e| io_msg("creating", &dest_path, e))?;
                // Files from git belong to root unless `--chown` says otherwise.
                let job = &CopyJob {
                    exclude_base: real.clone(),
                    owner: Some(job.owner.unwrap_or((0, 0))),
                    ..job.clone()
                };
                copy_contents(job, &tree, &real, &fd)?;
            }
            Src::Url(url) => {
                let shown = crate::redact::url_credentials(&url).into_owned();
                let fetch = job
                    .fetch
                    .ok_or_else(|| format!("ADD {shown}: downloads are not available here"))?;
                let file = job.scratch.join("download");
                let mut out =
                    std::fs::File::create(&file).map_err(|e| io_msg("creating", "download", e))?;
                let modified = fetch
                    .fetch(&url, &mut out)
                    .map_err(|e| StepError::Download(e.to_string()))?;
                drop(out);
                let mut data =
                    std::fs::File::open(&file).map_err(|e| io_msg("reading", "download", e))?;
                if let Some(want) = &inst.checksum {
                    let mut digester = berth_oci::Digester::new();
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = data
                            .read(&mut buf)
                            .map_err(|e| io_msg("reading", "download", e))?;
                        if n == 0 {
                            break;
                        }
                        digester.update(&buf[..n]);
                    }
                    let found = digester.finish();
                    if found.to_string() != *want {
                        return Err(StepError::Invalid(format!(
                            "ADD {shown}: checksum mismatch: expected {want}, the download is {found}"
                        )));
                    }
                    data =
                        std::fs::File::open(&file).map_err(|e| io_msg("reading", "download", e))?;
                }
                // The file name is the URL path's last segment; remote files are never
                // extracted and get mode 0600, as BuildKit.
                let name = url
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .filter(|n| !n.is_empty() && !n.contains(':'))
                    .unwrap_or("download")
                    .to_owned();
                let target = if dir_syntax || dest_is_dir(&dest_path) {
                    format!("{dest_path}/{name}")
                } else {
                    dest_path.clone()
                };
                let meta = Meta {
                    mode: job.chmod.as_ref().map_or(0o600, |c| c.apply(0o600, false)),
                    uid: job.owner.map_or(0, |o| o.0),
                    gid: job.owner.map_or(0, |o| o.1),
                    mtime: modified.map_or_else(now, |t| (t, 0)),
                };
                let (parent, file_name) = dest
                    .parent(&target, Some(created_dir_meta))
                    .map_err(|e| io_msg("creating the parent of", &target, e))?;
                super::fsops::write_file(&parent, file_name, &mut data, meta)
                    .map_err(|e| io_msg("writing", &target, e))?;
            }
            Src::Heredoc(name, content) => {
                let target = if dir_syntax || dest_is_dir(&dest_path) {
                    format!("{dest_path}/{name}")
                } else {
                    dest_path.clone()
                };
                let meta = Meta {
                    mode: job.chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false)),
                    uid: job.owner.map_or(0, |o| o.0),
                    gid: job.owner.map_or(0, |o| o.1),
                    mtime: now(),
                };
                let (parent, file) = dest
                    .parent(&target, Some(created_dir_meta))
                    .map_err(|e| io_msg("creating the parent of", &target, e))?;
                super::fsops::write_file(&parent, file, &mut content.as_bytes(), meta)
                    .map_err(|e| io_msg("writing", &target, e))?;
            }
            Src::Path(path, real) => {
                let st = tree
                    .root
                    .lstat(&real)
                    .map_err(|e| io_msg("reading", &path, e))?;
                tree.as_scanned(&real, &st)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let into = if inst.parents && !path.is_empty() {
                        format!("{dest_path}/{path}")
                    } else {
                        dest_path.clone()
                    };
                    let fd = dest
                        .mkdir_all(&into, Some(created_dir_meta))
                        .map_err(|e| io_msg("creating", &into, e))?;
                    let job = &CopyJob {
                        exclude_base: real.clone(),
                        ..job.clone()
                    };
                    copy_contents(job, tree, &real, &fd)?;
                    continue;
                }
                if job.add && inst.unpack != Some(false) && is_archive(tree, &real) {
                    let fd = dest
                        .mkdir_all(&dest_path, Some(created_dir_meta))
                        .map_err(|e| io_msg("creating", &dest_path, e))?;
                    // `extract` opens the archive by its path: the file there is checked
                    // against the scan before and after.
                    let check = |tree: &SourceTree<'_>| -> Result<bool, StepError> {
                        let file = tree
                            .root
                            .open_file(&real)
                            .map_err(|e| io_msg("opening", &path, e))?;
                        tree.unchanged_since_scan(&real, &file)
                    };
                    check(tree)?;
                    extract(job, tree, &real, &fd)?;
                    check(tree)?;
                    continue;
                }
                let base = components(&path)
                    .last()
                    .copied()
                    .unwrap_or_default()
                    .to_owned();
                let target = if inst.parents {
                    // `--parents`: the source's path is kept under the destination.
                    format!("{dest_path}/{path}")
                } else if dir_syntax || dest_is_dir(&dest_path) {
                    format!("{dest_path}/{base}")
                } else {
                    dest_path.clone()
                };
                let (parent, name) = dest
                    .parent(&target, Some(created_dir_meta))
                    .map_err(|e| io_msg("creating the parent of", &target, e))?;
                copy_entry(job, tree, &real, &parent, name)?;
            }
        }
    }
    Ok(())
}

fn now() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

fn meta_for(job: &CopyJob<'_>, tree: &SourceTree<'_>, st: &rustix::fs::Stat, is_dir: bool) -> Meta {
    let mut m = Meta::of(st);
    if tree.is_context() {
        (m.uid, m.gid) = (0, 0);
    }
    if let Some((u, g)) = job.owner {
        (m.uid, m.gid) = (u, g);
    }
    if let Some(c) = &job.chmod {
        m.mode = c.apply(m.mode, is_dir);
    }
    m
}

/// Copies one entry (not following its own symlink) to `name` in `parent`.
fn copy_entry(
    job: &CopyJob<'_>,
    tree: &SourceTree<'_>,
    src: &str,
    parent: &OwnedFd,
    name: &str,
) -> Result<(), StepError> {
    let st = tree
        .root
        .lstat(src)
        .map_err(|e| io_msg("reading", src, e))?;
    tree.as_scanned(src, &st)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let m = meta_for(job, tree, &st, true);
            let fd = write_dir(parent, name, Some(m)).map_err(|e| io_msg("creating", src, e))?;
            copy_contents(job, tree, src, &fd)?;
            set_dir_time(&fd, m).map_err(|e| io_msg("setting times of", src, e))
        }
        FileType::RegularFile => {
            let file = tree
                .root
                .open_file(src)
                .map_err(|e| io_msg("opening", src, e))?;
            let check = tree.unchanged_since_scan(src, &file)?;
            copy_file(
                parent,
                name,
                file.try_clone().map_err(|e| io_msg("opening", src, e))?,
                meta_for(job, tree, &st, false),
            )
            .map_err(|e| io_msg("copying", src, e))?;
            if check {
                tree.unchanged_since_scan(src, &file)?;
            }
            Ok(())
        }
        FileType::Symlink => {
            let target = tree
                .root
                .read_link(src)
                .map_err(|e| io_msg("reading", src, e))?;
            let mut m = meta_for(job, tree, &st, false);
            m.mode = 0o777;
            write_symlink(parent, name, &target, m).map_err(|e| io_msg("copying", src, e))
        }
        // A FIFO from a stage or an image (a context has none) is copied as a FIFO, made
        // with mknodat and never opened for its data.
        FileType::Fifo => write_fifo(parent, name, meta_for(job, tree, &st, false))
            .map_err(|e| io_msg("copying", src, e)),
        // Sockets and devices are not copied.
        _ => Ok(()),
    }
}

/// Copies the contents of directory `src` into the open directory `dest`. Subdirectories go
/// on an explicit stack, not the call stack: an image's tree may be nested about 2,000 levels
/// (paths up to PATH_MAX), deeper than a thread's stack holds in recursion.
///
/// Regular files that are hard links to each other under `src` are hard links to each other
/// under `dest` (BuildKit keeps links within one source; two sources are copied apart).
fn copy_contents(
    job: &CopyJob<'_>,
    tree: &SourceTree<'_>,
    src: &str,
    dest: &OwnedFd,
) -> Result<(), StepError> {
    /// A directory being copied: its path in the source tree, the directory written for it,
    /// its names not yet copied, and the metadata whose mtime it gets when done.
    struct Level {
        src: String,
        /// The directory's path below `dest`.
        rel: String,
        dest: OwnedFd,
        names: std::vec::IntoIter<Vec<u8>>,
        done: Option<Meta>,
    }
    let open =
        |src: String, rel: String, dest: OwnedFd, done: Option<Meta>| -> Result<Level, StepError> {
            let names = tree
                .root
                .list(if src.is_empty() { "." } else { &src })
                .map_err(|e| io_msg("listing", &src, e))?;
            Ok(Level {
                src,
                rel,
                dest,
                names: names.into_iter(),
                done,
            })
        };
    let top = dest
        .try_clone()
        .map_err(|e| io_msg("copying into", src, e))?;
    // The first copy of each multiply-linked source file, by (device, inode): its path
    // below `dest`, found again with no symlink followed.
    let written = InRoot::from_fd(
        dest.try_clone()
            .map_err(|e| io_msg("copying into", src, e))?,
        Resolve::NoSymlinks,
    );
    let mut linked: std::collections::HashMap<(u64, u64), String> = Default::default();
    let mut stack = vec![open(src.to_owned(), String::new(), top, None)?];
    while let Some(level) = stack.last_mut() {
        let Some(name) = level.names.next() else {
            let level = stack.pop().expect("not empty");
            if let Some(m) = level.done {
                set_dir_time(&level.dest, m)
                    .map_err(|e| io_msg("setting times of", &level.src, e))?;
            }
            continue;
        };
        let src = &level.src;
        let name = String::from_utf8(name).map_err(|n| {
            format!(
                "{src}/{}: names that are not UTF-8 are not supported in COPY",
                String::from_utf8_lossy(n.as_bytes())
            )
        })?;
        let path = if src.is_empty() {
            name.clone()
        } else {
            format!("{src}/{name}")
        };
        let rel = if level.rel.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", level.rel)
        };
        let st = tree
            .root
            .lstat(&path)
            .map_err(|e| io_msg("reading", &path, e))?;
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if (tree.filter.is_some() && !tree.included(&path, is_dir)) || !excluded_ok(job, &path) {
            continue;
        }
        if is_dir {
            tree.as_scanned(&path, &st)?;
            let m = meta_for(job, tree, &st, true);
            let fd =
                write_dir(&level.dest, &name, Some(m)).map_err(|e| io_msg("creating", &path, e))?;
            let next = open(path, rel, fd, Some(m))?;
            stack.push(next);
        } else if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_nlink > 1 {
            let inode = (st.st_dev, st.st_ino);
            if let Some(first) = linked.get(&inode) {
                tree.as_scanned(&path, &st)?;
                let linked_to = written.parent_of(first).and_then(|found| {
                    let (dir, from) = found.ok_or_else(|| std::io::Error::other("the root"))?;
                    write_hard_link(&level.dest, &name, &dir, from)
                });
                if linked_to.is_ok() {
                    continue;
                }
                // The first copy was replaced since (by a later entry of the same name):
                // this one is copied on its own.
            }
            copy_entry(job, tree, &path, &level.dest, &name)?;
            linked.entry(inode).or_insert(rel);
        } else {
            copy_entry(job, tree, &path, &level.dest, &name)?;
        }
    }
    Ok(())
}

/// `--exclude` patterns, matched against the path below the source being copied.
fn excluded_ok(job: &CopyJob<'_>, path: &str) -> bool {
    if job.inst.exclude.is_empty() {
        return true;
    }
    let base = job.exclude_base.trim_matches('/');
    let path = if base.is_empty() {
        path
    } else {
        path.strip_prefix(base)
            .map(|p| p.trim_start_matches('/'))
            .unwrap_or(path)
    };
    let patterns: Vec<(usize, String)> = job
        .inst
        .exclude
        .iter()
        .enumerate()
        .map(|(i, p)| (i, p.clone()))
        .collect();
    crate::context::ignore::Matcher::from_patterns(&patterns).map_or(true, |m| !m.excluded(path))
}

/// Whether an ADD source is a tar archive (plain, gzip, zstd, bzip2 or xz): its first block,
/// decompressed, has the `ustar` magic. A compressed file that is not a tar is copied as is;
/// anything but a regular file (a FIFO, a device) is never opened, so never an archive.
fn is_archive(tree: &SourceTree<'_>, path: &str) -> bool {
    let Ok(mut f) = tree.root.open_file(path) else {
        return false;
    };
    let mut magic = [0u8; 6];
    let n = f.read(&mut magic).unwrap_or(0);
    let packing = packing_of(&magic[..n]);
    let Ok(f) = tree.root.open_file(path) else {
        return false;
    };
    let Ok(mut stream) = unpacked_stream(f, packing) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    got == 512 && &head[257..262] == b"ustar"
}

/// ADD of a local archive: unpacked safely into a scratch directory, then copied in.
fn extract(
    job: &CopyJob<'_>,
    tree: &SourceTree<'_>,
    src: &str,
    dest: &OwnedFd,
) -> Result<(), StepError> {
    let file = tree
        .root
        .open_file(src)
        .map_err(|e| io_msg("opening", src, e))?;
    let mut magic = [0u8; 6];
    let n = (&file).read(&mut magic).unwrap_or(0);
    let packing = packing_of(&magic[..n]);
    let file = tree
        .root
        .open_file(src)
        .map_err(|e| io_msg("opening", src, e))?;
    let stream = unpacked_stream(file, packing).map_err(|e| io_msg("decompressing", src, e))?;
    let out = job.scratch.join("add");
    std::fs::create_dir_all(&out).map_err(|e| io_msg("creating", "scratch", e))?;
    berth_store::layer::unpack::unpack(stream, &out, &Default::default())
        .map_err(|e| format!("extracting {src}: {}", with_causes(&e)))?;
    let inner = SourceTree {
        root: InRoot::open(&out).map_err(|e| io_msg("opening", "scratch", e))?,
        filter: None,
    };
    let unpacked = CopyJob {
        inst: job.inst,
        add: true,
        workdir: job.workdir,
        owner: None,
        chmod: None,
        scratch: job.scratch,
        fetch: None,
        git: None,
        exclude_base: String::new(),
    };
    copy_contents(&unpacked, &inner, "", dest)?;
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

/// An error and the errors under it, as one line (`reading layer entry: a tar extension
/// header of ...`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        // As BuildKit: an octal mode keeps only the permission bits.
        assert_eq!(Chmod::parse("4755").unwrap().apply(0, false), 0o755);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-r").unwrap().apply(0o644, false), 0o600);
        assert_eq!(Chmod::parse("a=r").unwrap().apply(0o755, false), 0o444);
        assert_eq!(Chmod::parse("+X").unwrap().apply(0o644, true), 0o755);
        assert_eq!(Chmod::parse("+X").unwrap().apply(0o644, false), 0o644);
        assert_eq!(Chmod::parse("u+s").unwrap().apply(0o755, false), 0o4755);
        assert!(Chmod::parse("u+q").is_err());
        assert!(Chmod::parse("99").is_err());
    }

    #[test]
    fn globs_match_whole_components() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "d/a.txt"));
        assert!(glob_match("d/*.txt", "d/a.txt"));
        assert!(glob_match("f?le", "file"));
    }
}
