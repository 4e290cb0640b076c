//! Git sources, for `ADD <git URL>` and a git URL as the build context. In: a string that
//! may be a git URL (BuildKit's rules, [`GitRef::parse`]). Out: the commit its ref names
//! ([`Git::resolve`]) and a checkout of that commit in a private directory ([`Git::checkout`]).
//!
//! The system `git` runs with nothing of the user's: no system or global config
//! (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`, `HOME=/dev/null`), no hooks, no
//! templates, no prompts, and only the network protocols (`http`, `https`, `git`, `ssh`;
//! never `file` or `ext`, for submodules too). The repository is fetched with `--depth 1`
//! where the server allows it (a "dumb" HTTP server does not), the commit checked out, its
//! submodules fetched (as BuildKit), then `.git` removed unless kept. File modes are git's:
//! `0755` for executables and directories, `0644` otherwise, whatever the umask.
//!
//! Every run is bounded: all the git commands of one checkout share a deadline
//! (`BERTH_GIT_TIMEOUT` seconds, default 600) and the checkout's directory may not grow past
//! `BERTH_GIT_MAX_SIZE` bytes (default 4 GiB); past either, git is killed (its whole process
//! group) and the build fails saying which. The checkout lives in a `0700` directory that is
//! removed when the [`Checkout`] is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::redact::url_credentials;

/// A parsed git source: `REMOTE[#REF[:SUBDIR]]`, or with BuildKit's query form
/// (`?ref=`, `tag=`, `branch=`, `subdir=`, `checksum=`, `keep-git-dir=`, `submodules=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The URL git is given (without the fragment and query).
    pub remote: String,
    /// A branch, tag, full ref name or full commit id; empty for the remote's `HEAD`.
    pub reference: String,
    /// A directory inside the repository, cleaned (`..` cannot climb out); empty for the top.
    pub subdir: String,
    /// A commit id (or its prefix) the ref must resolve to.
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    pub submodules: Option<bool>,
    /// `github.com/owner/repo`: also a local path, so a git source only as a build context
    /// (BuildKit accepts that form nowhere else).
    pub looks_local: bool,
}

/// The schemes BuildKit accepts for git.
const SCHEMES: [&str; 4] = ["http", "https", "ssh", "git"];

impl GitRef {
    /// `None` when `s` is not a git URL by BuildKit's rules: `http(s)://` whose path ends in
    /// `.git`, `git://`, `ssh://`, `user@host:path` (scp style), `github.com/...`; `Some(Err)`
    /// when it is one but its options are wrong.
    pub fn parse(s: &str) -> Option<Result<GitRef, String>> {
        if s.starts_with("./") || s.starts_with("../") {
            return None;
        }
        let (rest, fragment) = s.split_once('#').map_or((s, ""), |(a, b)| (a, b));
        let (base, query) = rest.split_once('?').map_or((rest, ""), |(a, b)| (a, b));
        let looks_local = s.starts_with("github.com/");
        let remote = if looks_local {
            base.to_owned()
        } else if let Some((scheme, after)) = base.split_once("://") {
            if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            let scheme = scheme.to_ascii_lowercase();
            if !SCHEMES.contains(&scheme.as_str()) {
                return None;
            }
            let path = after.find('/').map_or("", |i| &after[i..]);
            if scheme.starts_with("http") && !path.ends_with(".git") {
                return None;
            }
            base.to_owned()
        } else if scp_style(base) {
            base.to_owned()
        } else {
            return None;
        };
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        let mut r = GitRef {
            remote,
            reference: reference.to_owned(),
            subdir: clean_subdir(subdir),
            checksum: None,
            keep_git_dir: None,
            submodules: None,
            looks_local,
        };
        Some(r.load_query(query).map(|()| r))
    }

    /// The query options, as BuildKit's `loadQuery`.
    fn load_query(&mut self, query: &str) -> Result<(), String> {
        let (mut tag, mut branch) = (None, None);
        let mut seen = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode(k, true)?, percent_decode(v, true)?);
            if seen.contains(&k) {
                return Err(format!("query {k:?} has multiple values"));
            }
            seen.push(k.clone());
            let flag = |v: &str| match v {
                "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                _ => Err(format!("invalid {k} value: {v:?}")),
            };
            let set = |slot: &mut String, what: &str| {
                if !slot.is_empty() && *slot != v {
                    return Err(format!("{what} conflicts: {slot:?} vs {v:?}"));
                }
                slot.clone_from(&v);
                Ok(())
            };
            match k.as_str() {
                "submodules" => self.submodules = Some(flag(&v)?),
                "keep-git-dir" => self.keep_git_dir = Some(flag(&v)?),
                _ if v.is_empty() => return Err(format!("query {k:?} has no value")),
                "ref" => set(&mut self.reference, "ref")?,
                "subdir" => {
                    let mut sub = self.subdir.clone();
                    set(&mut sub, "subdir")?;
                    self.subdir = clean_subdir(&sub);
                }
                "checksum" | "commit" => self.checksum = Some(v),
                "tag" => tag = Some(v),
                "branch" => branch = Some(v),
                _ => return Err(format!("unexpected query {k:?}")),
            }
        }
        if tag.is_some() && branch.is_some() {
            return Err("branch conflicts with tag".into());
        }
        for (name, prefix) in [(tag, "refs/tags/"), (branch, "refs/heads/")] {
            if let Some(name) = name {
                let full = match name.starts_with(prefix) {
                    true => name,
                    false => format!("{prefix}{name}"),
                };
                if !self.reference.is_empty() && self.reference != full {
                    return Err(format!("ref conflicts: {:?} vs {full:?}", self.reference));
                }
                self.reference = full;
            }
        }
        Ok(())
    }

    /// A git source for `ADD`: any form but `github.com/...` (BuildKit's rule).
    pub fn for_add(s: &str) -> Option<Result<GitRef, String>> {
        GitRef::parse(s).filter(|r| !matches!(r, Ok(r) if r.looks_local))
    }

    /// What git is given: `github.com/...` gets `https://`.
    fn url(&self) -> String {
        match self.looks_local {
            true => format!("https://{}", self.remote),
            false => self.remote.clone(),
        }
    }

    /// The remote without its credentials, for messages and a kept `.git`.
    pub fn shown(&self) -> String {
        url_credentials(&self.url()).into_owned()
    }

    /// The remote with no userinfo at all (`scheme://host/path`), for a kept `.git`'s
    /// config: a credential never enters the image, and no placeholder user either.
    fn without_credentials(&self) -> String {
        let url = self.url();
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let host = rest[..end].rsplit('@').next().unwrap_or("");
                format!("{scheme}://{host}{}", &rest[end..])
            }
            None => url,
        }
    }

    fn uses_ssh(&self) -> bool {
        let lower = self.url().to_ascii_lowercase();
        lower.starts_with("ssh://") || !lower.contains("://")
    }

    /// The URL git is given on its command line: over ssh as written (the user is a login
    /// name), otherwise without userinfo, whose credentials reach git only through
    /// [`GitRef::credentials`] (so no command line, `ps` or `.git/config` shows them).
    fn fetch_url(&self) -> String {
        match self.uses_ssh() {
            true => self.url(),
            false => self.without_credentials(),
        }
    }

    /// The `user:password@` of an http(s) or git URL (percent-decoded) and the `host[:port]`
    /// they are for.
    fn credentials(&self) -> Option<(String, String, String)> {
        if self.uses_ssh() {
            return None;
        }
        let url = self.url();
        let (_, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (userinfo, host) = rest[..end].rsplit_once('@')?;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let decode = |v: &str| percent_decode(v, false).unwrap_or_else(|_| v.to_owned());
        Some((host.to_owned(), decode(user), decode(password)))
    }
}

/// `s` in single quotes for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `user@host:path`, as BuildKit's `sshutil` regex: `^[a-zA-Z0-9-_]+@[a-zA-Z0-9-.]+:`.
fn scp_style(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else {
        return false;
    };
    let Some((host, _)) = rest.split_once(':') else {
        return false;
    };
    let ok = |t: &str, extra: &[u8]| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    ok(user, b"-_") && ok(host, b"-.")
}

/// `path.Join("/", subdir)` without the leading `/`: `.` and `..` resolved lexically.
fn clean_subdir(s: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `%XX` escapes decoded; in a query (`query`), `+` is a space.
fn percent_decode(s: &str, query: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid escape in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("query {s:?} is not UTF-8"))
}

/// A full commit id (SHA-1 or SHA-256), as BuildKit's `IsCommitSHA`.
pub fn is_commit_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a git source failed; the message names the remote without its credentials.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GitError(pub String);

/// What a ref names on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub commit: String,
    /// What to fetch: the full ref name, `HEAD`, or the commit.
    fetch: String,
}

/// The bounds of every git run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_bytes: u64,
}

impl Limits {
    /// `BERTH_GIT_TIMEOUT` (seconds) and `BERTH_GIT_MAX_SIZE` (bytes), or the defaults.
    pub fn from_env() -> Limits {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        Limits {
            timeout: Duration::from_secs(var("BERTH_GIT_TIMEOUT").unwrap_or(600)),
            max_bytes: var("BERTH_GIT_MAX_SIZE").unwrap_or(4 << 30),
        }
    }
}

/// The git fetcher of one build: refs resolved once each (so every step that names the same
/// ref checks out the same commit), checkouts made under `tmp`.
#[derive(Debug)]
pub struct Git {
    tmp: PathBuf,
    limits: Limits,
    resolved: Mutex<HashMap<(String, String), Resolved>>,
}

/// A checkout in its private directory, removed on drop.
#[derive(Debug)]
pub struct Checkout {
    dir: Scratch,
    /// The commit checked out.
    pub commit: String,
}

impl Checkout {
    /// The top of the work tree.
    pub fn root(&self) -> PathBuf {
        self.dir.0.join("repo")
    }
}

/// A private (`0700`) directory for git's work, removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Git {
    /// A fetcher whose private directories go under `tmp` (which must exist).
    pub fn new(tmp: PathBuf, limits: Limits) -> Git {
        Git {
            tmp,
            limits,
            resolved: Mutex::default(),
        }
    }

    fn scratch(&self) -> Result<Scratch, GitError> {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = self
            .tmp
            .join(format!("git-{}-{n}-{nanos:x}", std::process::id()));
        berth_store::files::create_dir_mode(&dir, 0o700)
            .map_err(|e| GitError(format!("creating {}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }

    /// The commit `r`'s ref names (a commit id names itself), asked of the remote once per
    /// build; checked against `checksum` (`r`'s own, or `ADD --checksum`).
    pub fn resolve(&self, r: &GitRef, checksum: Option<&str>) -> Result<String, GitError> {
        let key = (r.url(), r.reference.clone());
        let cached = self.lock().get(&key).cloned();
        let resolved = match cached {
            Some(found) => found,
            None => {
                let found = self.ls_remote(r)?;
                self.lock().insert(key, found.clone());
                found
            }
        };
        if let Some(want) = checksum.or(r.checksum.as_deref()) {
            let want = want.to_ascii_lowercase();
            if want.is_empty() || !resolved.commit.starts_with(&want) {
                return Err(GitError(format!(
                    "{}: expected the commit {want}, the ref {:?} is {}",
                    r.shown(),
                    r.reference,
                    resolved.commit
                )));
            }
        }
        Ok(resolved.commit)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Resolved>> {
        self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ls_remote(&self, r: &GitRef) -> Result<Resolved, GitError> {
        if is_commit_id(&r.reference) {
            let commit = r.reference.to_ascii_lowercase();
            return Ok(Resolved {
                fetch: commit.clone(),
                commit,
            });
        }
        let scratch = self.scratch()?;
        let mut run = Run::new(self, r, &scratch.0);
        let reference = if r.reference.is_empty() {
            "HEAD"
        } else {
            &r.reference
        };
        let out = run.git(
            &scratch.0,
            &[
                "ls-remote",
                "--",
                &r.fetch_url(),
                reference,
                &format!("{reference}^{{}}"),
            ],
        )?;
        pick_ref(&out, reference).ok_or_else(|| {
            GitError(format!(
                "{}: the repository has no ref {reference:?}",
                r.shown()
            ))
        })
    }

    /// Checks `commit` (as [`Git::resolve`] gave it) of `r` out into a new private
    /// directory: submodules included unless `r` says not, `.git` kept only if `keep_git_dir`.
    pub fn checkout(
        &self,
        r: &GitRef,
        commit: &str,
        keep_git_dir: bool,
    ) -> Result<Checkout, GitError> {
        let fetch = self
            .lock()
            .get(&(r.url(), r.reference.clone()))
            .map_or_else(|| commit.to_owned(), |f| f.fetch.clone());
        let checkout = Checkout {
            dir: self.scratch()?,
            commit: commit.to_owned(),
        };
        let repo = checkout.root();
        let mut run = Run::new(self, r, &checkout.dir.0);
        run.git(
            &checkout.dir.0,
            &["init", "-q", "--template=", "--", "repo"],
        )?;
        run.git(&repo, &["remote", "add", "origin", &r.fetch_url()])?;
        let fetched = run
            .git(
                &repo,
                &[
                    "fetch",
                    "-q",
                    "--depth=1",
                    "--no-tags",
                    "--",
                    "origin",
                    &fetch,
                ],
            )
            .or_else(|_| run.git(&repo, &["fetch", "-q", "--no-tags", "--", "origin", &fetch]));
        let head = |run: &mut Run<'_>| {
            run.git(
                &repo,
                &["rev-parse", "--verify", "-q", "FETCH_HEAD^{commit}"],
            )
            .map(|s| s.trim().to_owned())
        };
        if fetched.is_err() || head(&mut run).ok().as_deref() != Some(commit) {
            // The ref moved since it was resolved, or the server will not send a commit by
            // its id: everything, then the commit asked for.
            run.git(&repo, &["fetch", "-q", "--no-tags", "--", "origin", commit])
                .or_else(|_| {
                    run.git(
                        &repo,
                        &[
                            "fetch",
                            "-q",
                            "--tags",
                            "--",
                            "origin",
                            "+refs/heads/*:refs/remotes/origin/*",
                        ],
                    )
                })
                .map_err(|e| match fetched {
                    Err(first) => first,
                    Ok(_) => e,
                })?;
            run.git(&repo, &["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .map_err(|_| {
                    GitError(format!(
                        "{}: the commit {commit} is not in the repository",
                        r.shown()
                    ))
                })?;
        }
        run.git(&repo, &["checkout", "-q", "--detach", commit])?;
        if r.submodules != Some(false) && repo.join(".gitmodules").exists() {
            run.git(
                &repo,
                &[
                    "submodule",
                    "update",
                    "-q",
                    "--init",
                    "--recursive",
                    "--depth=1",
                ],
            )
            .or_else(|_| {
                run.git(
                    &repo,
                    &["submodule", "update", "-q", "--init", "--recursive"],
                )
            })?;
        }
        if keep_git_dir {
            run.git(
                &repo,
                &["remote", "set-url", "origin", &r.without_credentials()],
            )?;
        } else {
            remove_git_dirs(&repo)
                .map_err(|e| GitError(format!("{}: removing .git: {e}", r.shown())))?;
        }
        normalize_modes(&repo).map_err(|e| GitError(format!("{}: {e}", r.shown())))?;
        run.check_size()?;
        Ok(checkout)
    }
}

/// The line of `ls-remote`'s output that `reference` names, as BuildKit picks it: the exact
/// full name, else a branch, else a tag (an annotated tag peeled to its commit).
fn pick_ref(out: &str, reference: &str) -> Option<Resolved> {
    let bare = reference.strip_prefix("refs/").unwrap_or(reference);
    let exact = format!("refs/{bare}");
    let head = format!("refs/heads/{}", bare.strip_prefix("heads/").unwrap_or(bare));
    let tag = format!("refs/tags/{}", bare.strip_prefix("tags/").unwrap_or(bare));
    let peeled = format!("{tag}^{{}}");
    let mut found: HashMap<&str, &str> = HashMap::new();
    for line in out.lines() {
        if let Some((sha, name)) = line.split_once('\t') {
            found.insert(name, sha);
        }
    }
    let hit = |name: &str| {
        found
            .get(name)
            .map(|sha| (sha.to_string(), name.to_owned()))
    };
    let (commit, fetch) = if reference == "HEAD" {
        hit("HEAD")?
    } else if let Some(h) = hit(&exact).or_else(|| hit(&head)) {
        h
    } else {
        let (sha, name) = hit(&tag)?;
        (
            found.get(peeled.as_str()).map_or(sha, |s| s.to_string()),
            name,
        )
    };
    is_commit_id(&commit).then_some(Resolved {
        commit: commit.to_ascii_lowercase(),
        fetch,
    })
}

/// Every `.git` under `root` (the repository's, and each submodule's link file): git never
/// tracks a path of that name, so each is git's own.
fn remove_git_dirs(root: &Path) -> std::io::Result<()> {
    let mut found = Vec::new();
    let mut walk = walkdir::WalkDir::new(root).follow_links(false).into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(std::io::Error::other)?;
        if entry.file_name() == ".git" {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            found.push((entry.path().to_owned(), entry.file_type().is_dir()));
        }
    }
    for (path, dir) in found {
        match dir {
            true => std::fs::remove_dir_all(path)?,
            false => std::fs::remove_file(path)?,
        }
    }
    Ok(())
}

/// Modes as git records them (`0755` executables, `0644` other files, `0755` directories),
/// whatever umask berth runs under.
fn normalize_modes(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        let ft = entry.file_type();
        let mode = if ft.is_dir() {
            0o755
        } else if ft.is_file() {
            let current = entry.metadata().map_err(std::io::Error::other)?;
            match current.permissions().mode() & 0o100 {
                0 => 0o644,
                _ => 0o755,
            }
        } else {
            continue;
        };
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The git commands of one resolve or checkout, sharing a deadline and a size bound on the
/// directory `bounded`.
struct Run<'a> {
    git: &'a Git,
    r: &'a GitRef,
    bounded: PathBuf,
    deadline: Instant,
    /// Why git was stopped (a limit), so no later command runs.
    stopped: Option<String>,
}

/// The output kept of one git command (its error text is shown, its stdout parsed).
const MAX_OUTPUT: u64 = 4 << 20;

impl<'a> Run<'a> {
    fn new(git: &'a Git, r: &'a GitRef, bounded: &Path) -> Run<'a> {
        Run {
            git,
            r,
            bounded: bounded.to_owned(),
            deadline: Instant::now() + git.limits.timeout,
            stopped: None,
        }
    }

    fn command(&self, cwd: &Path) -> Command {
        let mut c = Command::new("git");
        c.current_dir(cwd).env_clear();
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        c.env("PATH", path)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C");
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "all_proxy",
        ] {
            if let Some(v) = std::env::var_os(proxy) {
                c.env(proxy, v);
            }
        }
        if self.r.uses_ssh() {
            // No identity of the host's: not its agent, its key files or its ssh config (a
            // Dockerfile must not fetch what the builder's user may read); its known hosts
            // only; no prompt.
            let known = std::env::var_os("HOME")
                .map(|h| Path::new(&h).join(".ssh/known_hosts"))
                .unwrap_or_else(|| "/dev/null".into());
            c.env(
                "GIT_SSH_COMMAND",
                format!(
                    "ssh -F /dev/null -o BatchMode=yes -o IdentityAgent=none -o IdentitiesOnly=yes -o IdentityFile=/dev/null -o UserKnownHostsFile={}",
                    shell_quote(&known.to_string_lossy())
                ),
            );
        }
        // Credentials of the URL, through the environment of this git only, to the URL's own
        // host only.
        if let Some((host, user, password)) = self.r.credentials() {
            c.env("BERTH_GIT_HOST", host)
                .env("BERTH_GIT_USERNAME", user)
                .env("BERTH_GIT_PASSWORD", password);
        }
        for setting in [
            "protocol.allow=never",
            "protocol.http.allow=always",
            "protocol.https.allow=always",
            "protocol.git.allow=always",
            "protocol.ssh.allow=always",
            "core.hooksPath=/dev/null",
            "core.fsmonitor=false",
            "core.symlinks=true",
            "credential.helper=",
            "credential.helper=!f() { test \"$1\" = get || exit 0; h=; while IFS= read -r l; do case \"$l\" in host=*) h=\"${l#host=}\";; esac; done; test -n \"$BERTH_GIT_HOST\" && test \"$h\" = \"$BERTH_GIT_HOST\" || exit 0; printf 'username=%s\\npassword=%s\\n' \"$BERTH_GIT_USERNAME\" \"$BERTH_GIT_PASSWORD\"; }; f",
            "maintenance.auto=false",
            "gc.auto=0",
            "advice.detachedHead=false",
            "init.defaultBranch=master",
            "submodule.recurse=false",
        ] {
            c.arg("-c").arg(setting);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `git ARGS` in `cwd`; its stdout, or an error with its last lines of stderr.
    fn git(&mut self, cwd: &Path, args: &[&str]) -> Result<String, GitError> {
        if let Some(why) = &self.stopped {
            return Err(GitError(why.clone()));
        }
        let shown = self.r.shown();
        let fail = |m: String| GitError(url_credentials(&format!("{shown}: {m}")).into_owned());
        let logs = self.bounded.join(".logs");
        if !logs.exists() {
            berth_store::files::create_dir(&logs).map_err(|e| fail(format!("{e}")))?;
        }
        let (out_path, err_path) = (logs.join("out"), logs.join("err"));
        let out = berth_store::files::create_file(&out_path).map_err(|e| fail(e.to_string()))?;
        let err = berth_store::files::create_file(&err_path).map_err(|e| fail(e.to_string()))?;
        let mut cmd = self.command(cwd);
        cmd.args(args).stdout(out).stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("running git (is it installed?): {e}")))?;
        let mut last_size_check = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
                break status;
            }
            let over = if Instant::now() >= self.deadline {
                Some(format!(
                    "{shown}: git {} took longer than {} s (BERTH_GIT_TIMEOUT)",
                    args[0],
                    self.git.limits.timeout.as_secs()
                ))
            } else if last_size_check.elapsed() >= Duration::from_millis(500) {
                last_size_check = Instant::now();
                self.check_size().err().map(|e| e.0)
            } else {
                None
            };
            if let Some(why) = over {
                kill_group(&mut child);
                self.stopped = Some(why.clone());
                return Err(GitError(why));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The group is gone with its leader only if nothing of it lingers: end the rest.
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_child(&child),
            rustix::process::Signal::KILL,
        );
        let read = |p: &Path| -> String {
            let mut buf = Vec::new();
            if let Ok(f) = std::fs::File::open(p) {
                let _ =
                    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_OUTPUT), &mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        };
        if !status.success() {
            let text = read(&err_path);
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(fail(format!(
                "git {} failed ({status}): {}",
                args[0],
                tail.join(" / ")
            )));
        }
        Ok(read(&out_path))
    }

    /// An error once the directory holds more than the limit.
    fn check_size(&self) -> Result<(), GitError> {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0u64;
        for entry in walkdir::WalkDir::new(&self.bounded)
            .follow_links(false)
            .into_iter()
            .flatten()
        {
            if let Ok(m) = entry.metadata() {
                total = total.saturating_add(m.blocks() * 512);
            }
            if total > self.git.limits.max_bytes {
                return Err(GitError(format!(
                    "{}: the repository is larger than {} bytes (BERTH_GIT_MAX_SIZE)",
                    self.r.shown(),
                    self.git.limits.max_bytes
                )));
            }
        }
        Ok(())
    }
}

/// Ends git and everything it started (its own process group).
fn kill_group(child: &mut std::process::Child) {
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::KILL,
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> GitRef {
        GitRef::parse(s).expect("a git URL").expect("valid")
    }

    /// The environment and arguments git would be started with for `r`.
    fn started_with(r: &GitRef) -> (Vec<(String, String)>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new(dir.path().to_owned(), Limits::from_env());
        let run = Run::new(&git, r, dir.path());
        let c = run.command(dir.path());
        let env = c
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        let args = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        (env, args)
    }

    #[test]
    fn url_credentials_reach_git_only_through_its_environment_for_their_host() {
        let r = parsed("https://u%2B1:p%40ss+word@host:8443/r.git#main");
        assert_eq!(r.fetch_url(), "https://host:8443/r.git");
        assert_eq!(
            r.credentials(),
            Some(("host:8443".into(), "u+1".into(), "p@ss+word".into()))
        );
        let (env, args) = started_with(&r);
        assert!(env.contains(&("BERTH_GIT_PASSWORD".into(), "p@ss+word".into())));
        assert!(env.contains(&("BERTH_GIT_HOST".into(), "host:8443".into())));
        assert!(
            args.iter()
                .all(|a| !a.contains("p@ss") && !a.contains("p%40ss"))
        );
        assert!(parsed("https://host/r.git").credentials().is_none());
    }

    #[test]
    fn ssh_remotes_get_no_identity_of_the_host() {
        // SAFETY: a test of this process's own environment; no other test reads it.
        unsafe { std::env::set_var("SSH_AUTH_SOCK", "/tmp/agent.sock") };
        for url in ["git@host:o/r.git", "ssh://git@host/o/r.git"] {
            let r = parsed(url);
            assert_eq!(r.fetch_url(), r.url(), "{url}: the login name stays");
            assert!(r.credentials().is_none());
            let (env, _) = started_with(&r);
            assert!(env.iter().all(|(k, _)| k != "SSH_AUTH_SOCK"), "{url}");
            let ssh = &env.iter().find(|(k, _)| k == "GIT_SSH_COMMAND").unwrap().1;
            for o in [
                "IdentityAgent=none",
                "IdentitiesOnly=yes",
                "IdentityFile=/dev/null",
                "-F /dev/null",
            ] {
                assert!(ssh.contains(o), "{ssh}");
            }
        }
    }

    #[test]
    fn git_urls_by_buildkits_rules() {
        for s in [
            "https://host/repo.git",
            "http://127.0.0.1:8080/a/repo.git#main",
            "git://host/repo",
            "ssh://git@host/repo",
            "git@github.com:moby/buildkit.git",
            "git@host:repo.git#v1:sub",
            "github.com/moby/buildkit",
            "HTTPS://host/repo.git",
        ] {
            assert!(matches!(GitRef::parse(s), Some(Ok(_))), "{s}");
        }
        for s in [
            "https://host/repo",
            "https://host/repo.git/x",
            "http://host/file.tar.gz",
            "file:///srv/repo.git",
            "ext::sh -c touch% /tmp/x",
            "./repo.git",
            "../repo.git",
            "repo.git",
            "/srv/repo.git",
            "host:repo.git",
            "us er@host:repo.git",
        ] {
            assert!(GitRef::parse(s).is_none(), "{s}");
        }
        assert!(GitRef::for_add("github.com/moby/buildkit").is_none());
    }

    #[test]
    fn fragment_and_query() {
        let r = parsed("https://u:p@host/r.git#v1.0:a/../../b/./c");
        assert_eq!(r.remote, "https://u:p@host/r.git");
        assert_eq!(r.reference, "v1.0");
        assert_eq!(r.subdir, "b/c");
        assert_eq!(r.shown(), "https://xxxxx@host/r.git");
        assert_eq!(r.without_credentials(), "https://host/r.git");
        let scp = parsed("git@host:org/r.git#main");
        assert_eq!(scp.without_credentials(), "git@host:org/r.git");
        let r = parsed("https://host/r.git#:sub");
        assert_eq!((r.reference.as_str(), r.subdir.as_str()), ("", "sub"));
        let r = parsed("https://host/r.git?tag=v2&subdir=x&keep-git-dir=true&submodules=false");
        assert_eq!(r.reference, "refs/tags/v2");
        assert_eq!(r.subdir, "x");
        assert_eq!((r.keep_git_dir, r.submodules), (Some(true), Some(false)));
        assert!(matches!(
            GitRef::parse("https://host/r.git?tag=a&branch=b"),
            Some(Err(_))
        ));
        assert!(matches!(
            GitRef::parse("https://host/r.git#x?ref=y"),
            Some(Ok(_))
        ));
        assert!(matches!(
            GitRef::parse("https://host/r.git?bogus=1"),
            Some(Err(_))
        ));
    }

    #[test]
    fn refs_picked_as_buildkit() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        let out =
            format!("{a}\trefs/heads/v1\n{b}\trefs/tags/v1\n{c}\trefs/tags/v1^{{}}\n{a}\tHEAD\n");
        assert_eq!(pick_ref(&out, "v1").unwrap().commit, a);
        assert_eq!(pick_ref(&out, "refs/tags/v1").unwrap().commit, b);
        let tags = format!("{b}\trefs/tags/v1\n{c}\trefs/tags/v1^{{}}\n");
        let r = pick_ref(&tags, "v1").unwrap();
        assert_eq!(
            (r.commit.as_str(), r.fetch.as_str()),
            (c.as_str(), "refs/tags/v1")
        );
        assert_eq!(pick_ref(&out, "HEAD").unwrap().commit, a);
        assert!(pick_ref(&out, "nope").is_none());
    }
}
