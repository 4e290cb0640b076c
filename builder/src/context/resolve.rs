//! Paths in the build context as the build sees it: only the entries `.dockerignore` lets in
//! exist (a directory left out but with included entries below it exists as their parent),
//! and a symlink among them is followed inside the context, through included entries only.
//! An ignored or missing name is "not found", as under BuildKit, which never sends an
//! excluded file. One resolver for every reader of the context: COPY and ADD sources
//! ([`sources`]), their cache keys ([`source_key`]) and `RUN --mount=type=bind` sources.
//!
//! The resolved paths hold no symlink (every one met was followed among the scanned
//! entries), so whoever opens them afterwards can refuse any symlink on the way: one found
//! there was not in the scan.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{ContextEntry, EntryKind, digest_selection};

/// Symlinks followed in one resolution at most (Linux's `MAXSYMLINKS`).
pub const MAX_HOPS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Missing, ignored, or reached only through something that is not an included directory.
    #[error("{0:?}: not found in the build context")]
    NotFound(String),
    #[error("{0:?}: too many levels of symbolic links")]
    Loop(String),
}

/// A COPY or ADD source found in the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as written (or as a wildcard matched it), cleaned: what names the copy.
    pub name: String,
    /// Where it resolves among the included entries (`""` for the root): what is copied.
    pub resolved: String,
    pub is_dir: bool,
}

fn parts(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Resolves `source` (relative to the context root; a leading `/` is the root) among the
/// included `entries`, following symlinks inside the context (an absolute target from the
/// context's root, `..` never above it; [`MAX_HOPS`] links at most). Returns the resolved
/// path (`""` for the root) and whether it is a directory.
pub fn resolve(
    entries: &BTreeMap<String, ContextEntry>,
    source: &str,
) -> Result<(String, bool), ResolveError> {
    let not_found = || ResolveError::NotFound(source.to_owned());
    let mut todo: VecDeque<String> = parts(source).map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let parent = done.join("/");
        if !parent.is_empty() && !is_dir_in(entries, &parent) {
            return Err(not_found());
        }
        done.push(c);
        let path = done.join("/");
        match entries.get(&path).map(|e| &e.kind) {
            Some(EntryKind::Symlink(target)) => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ResolveError::Loop(source.to_owned()));
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                for c in target.rsplit('/').filter(|c| !c.is_empty() && *c != ".") {
                    todo.push_front(c.to_owned());
                }
            }
            Some(_) => {}
            None if is_dir_in(entries, &path) => {}
            None => return Err(not_found()),
        }
    }
    let path = done.join("/");
    let dir = path.is_empty() || is_dir_in(entries, &path);
    Ok((path, dir))
}

/// Whether `path` is a directory of the filtered context: an included directory, or the
/// parent of included entries.
pub fn is_dir_in(entries: &BTreeMap<String, ContextEntry>, path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    match entries.get(path).map(|e| &e.kind) {
        Some(EntryKind::Dir) => true,
        Some(_) => false,
        None => {
            let prefix = format!("{path}/");
            entries
                .range(prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&prefix))
        }
    }
}

/// The entries at resolved path `resolved` (from [`resolve`]) and below it: what a copy or a
/// bind of it shows.
pub fn below<'a>(
    entries: &'a BTreeMap<String, ContextEntry>,
    resolved: &'a str,
) -> impl Iterator<Item = &'a ContextEntry> + 'a {
    entries.values().filter(move |e| {
        resolved.is_empty()
            || e.path == resolved
            || e.path
                .strip_prefix(resolved)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Whether a COPY source is a wildcard.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` on whole paths, component by component.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = parts(pattern).collect();
    let c: Vec<&str> = parts(path).collect();
    p.len() == c.len()
        && p.iter().zip(&c).all(|(p, c)| {
            super::Matcher::from_patterns(&[(0, (*p).to_owned())]).is_ok_and(|m| m.excluded(c))
        })
}

/// The context paths a COPY or ADD source names, in name order: a path, resolved; or a
/// wildcard, whose directories before the first wildcard component are resolved (symlinks
/// followed), whose wildcard components match names of included entries (symlinks not
/// followed), and each of whose matches is then resolved (a matched symlink is followed,
/// as a source's own symlink is). A wildcard matching nothing gives an empty list.
pub fn sources(
    entries: &BTreeMap<String, ContextEntry>,
    source: &str,
) -> Result<Vec<Source>, ResolveError> {
    sources_for(entries, source, false)
}

/// [`sources`], and with `parents` (`COPY --parents`, whose sources BuildKit matches as
/// include patterns) a `**` component matches any number of directories, none included
/// (`src/**/*.txt` matches `src/a.txt` and `src/x/y/c.txt`); a directory that matches
/// brings everything below it, so nothing below a match is listed again.
pub fn sources_for(
    entries: &BTreeMap<String, ContextEntry>,
    source: &str,
    parents: bool,
) -> Result<Vec<Source>, ResolveError> {
    let all: Vec<&str> = parts(source).collect();
    let clean = all.join("/");
    if !has_glob(source) {
        let (resolved, is_dir) = resolve(entries, &clean)?;
        return Ok(vec![Source {
            name: clean,
            resolved,
            is_dir,
        }]);
    }
    let fixed = all.iter().take_while(|c| !has_glob(c)).count();
    let prefix = all[..fixed].join("/");
    let pattern = all[fixed..].join("/");
    let depth = all.len() - fixed;
    let base = match resolve(entries, &prefix) {
        Ok((base, true)) => base,
        Ok((_, false)) | Err(ResolveError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let any_depth = parents && all[fixed..].contains(&"**");
    // The names `depth` levels below `base` (any depth for `**`): included entries, and the
    // directories that hold included entries.
    let mut names = BTreeSet::new();
    for e in below(entries, &base) {
        let rel = if base.is_empty() {
            e.path.as_str()
        } else {
            match e.path.strip_prefix(&base).and_then(|r| r.strip_prefix('/')) {
                Some(rel) => rel,
                None => continue,
            }
        };
        if any_depth {
            let mut at = 0;
            while let Some(i) = rel[at..].find('/') {
                names.insert(rel[..at + i].to_owned());
                at += i + 1;
            }
            names.insert(rel.to_owned());
            continue;
        }
        let mut cs = rel.split('/');
        let first: Vec<&str> = cs.by_ref().take(depth).collect();
        if first.len() == depth {
            names.insert(first.join("/"));
        }
    }
    let deep = any_depth
        .then(|| super::Matcher::from_patterns(&[(0, pattern.clone())]).ok())
        .flatten();
    let mut matched: Vec<String> = Vec::new();
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else {
            format!("{a}/{b}")
        }
    };
    let mut found = Vec::new();
    for rel in names {
        if let Some(m) = &deep {
            // Names sorted: a match's parent directory, if it matched, came before it.
            let below_a_match = matched.iter().any(|d| {
                rel.strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            });
            if below_a_match || !m.excluded(&rel) {
                continue;
            }
            matched.push(rel.clone());
        } else if !glob_match(&pattern, &rel) {
            continue;
        }
        let name = join(&prefix, &rel);
        let (resolved, is_dir) = resolve(entries, &join(&base, &rel)).map_err(|e| match e {
            ResolveError::NotFound(_) => ResolveError::NotFound(name.clone()),
            ResolveError::Loop(_) => ResolveError::Loop(name.clone()),
        })?;
        found.push(Source {
            name,
            resolved,
            is_dir,
        });
    }
    Ok(found)
}

/// What a COPY or ADD source from the context contributes to its step's cache key: for each
/// path it names, that name, where it resolves, and the digest of the entries there and
/// below (contents, modes, ownership after `chown`, link targets). The key so describes what
/// the copy writes, a symlink's target included; a source that does not resolve (a heredoc,
/// a URL, a missing name that fails the step) is keyed by what was written.
pub fn source_key(
    entries: &BTreeMap<String, ContextEntry>,
    source: &str,
    chown: Option<(u32, u32)>,
    parents: bool,
) -> String {
    match sources_for(entries, source, parents) {
        Ok(found) => {
            let mut key = format!("{source}\0found");
            for s in found {
                let digest = digest_selection(below(entries, &s.resolved), chown);
                key.push_str(&format!("\0{}\0{}\0{digest}", s.name, s.resolved));
            }
            key
        }
        Err(e) => format!("{source}\0unresolved\0{e}"),
    }
}

/// Each context entry a COPY or ADD source copies, by its path in the context, with the
/// digest of what the copy writes from it (as [`source_key`] digests them all together), added
/// to `out`: what a cache miss names when a file changed. A source that does not resolve adds
/// nothing.
pub fn source_files(
    entries: &BTreeMap<String, ContextEntry>,
    source: &str,
    chown: Option<(u32, u32)>,
    parents: bool,
    out: &mut BTreeMap<String, String>,
) {
    let Ok(found) = sources_for(entries, source, parents) else {
        return;
    };
    for s in found {
        for e in below(entries, &s.resolved) {
            let digest = digest_selection([e], chown);
            out.insert(e.path.clone(), super::short_digest(&digest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind, content: &str) -> (String, ContextEntry) {
        let digest = (kind == EntryKind::File).then(|| berth_oci::Digest::of(content.as_bytes()));
        (
            path.to_owned(),
            ContextEntry {
                path: path.into(),
                kind,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                digest,
                version: None,
            },
        )
    }

    #[test]
    fn doublestar_in_parents_sources_matches_any_depth_none_included() {
        let c: BTreeMap<_, _> = [
            entry("src/a.txt", EntryKind::File, "a"),
            entry("src/x/b.txt", EntryKind::File, "b"),
            entry("src/x/y/c.txt", EntryKind::File, "c"),
            entry("src/x/y/d.md", EntryKind::File, "d"),
        ]
        .into_iter()
        .collect();
        let names = |s: &str, parents: bool| -> Vec<String> {
            sources_for(&c, s, parents)
                .unwrap()
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        assert_eq!(
            names("./src/**/*.txt", true),
            ["src/a.txt", "src/x/b.txt", "src/x/y/c.txt"]
        );
        // A matched directory brings what is below it: nothing below it is listed again.
        assert_eq!(names("src/**", true), ["src/a.txt", "src/x"]);
        // Without `--parents`, `**` is `*`: one name.
        assert_eq!(names("src/**/*.txt", false), ["src/x/b.txt"]);
    }

    /// `.env` and `.git` are ignored (absent from the entries); `dir` is ignored but
    /// `dir/keep` let in again.
    fn context() -> BTreeMap<String, ContextEntry> {
        [
            entry("a", EntryKind::Dir, ""),
            entry("a/f", EntryKind::File, "f"),
            entry("a/l", EntryKind::Symlink("f".into()), ""),
            entry("dir/keep", EntryKind::File, "keep"),
            entry("e", EntryKind::Symlink(".env".into()), ""),
            entry("g", EntryKind::Symlink(".git/config".into()), ""),
            entry("to-a", EntryKind::Symlink("a".into()), ""),
            entry("up", EntryKind::Symlink("../../a/f".into()), ""),
            entry("x.txt", EntryKind::File, "x"),
            entry("y.txt", EntryKind::Symlink("a/f".into()), ""),
            entry("z.txt", EntryKind::Symlink(".env".into()), ""),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn sources_resolve_among_the_included_entries_only() {
        let c = context();
        let one = |s: &str| sources(&c, s).map(|v| (v[0].resolved.clone(), v[0].is_dir));
        assert_eq!(one("to-a/f"), Ok(("a/f".into(), false)));
        assert_eq!(one("./to-a/"), Ok(("a".into(), true)));
        assert_eq!(one("/"), Ok(("".into(), true)));
        assert_eq!(one("up"), Ok(("a/f".into(), false)), "never above the root");
        assert_eq!(one("dir"), Ok(("dir".into(), true)));
        for hidden in ["e", "g", ".env", ".git/config", "to-a/../.env", "dir/drop"] {
            assert!(
                matches!(sources(&c, hidden), Err(ResolveError::NotFound(_))),
                "{hidden}"
            );
        }
    }

    #[test]
    fn wildcards_match_included_names_and_follow_matched_links() {
        let c = context();
        let names = |s: &str| {
            sources(&c, s).map(|v| {
                v.into_iter()
                    .map(|s| (s.name, s.resolved))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            names("to-a/*"),
            Ok(vec![
                ("to-a/f".into(), "a/f".into()),
                ("to-a/l".into(), "a/f".into())
            ])
        );
        assert_eq!(
            names("d*/k*"),
            Ok(vec![("dir/keep".into(), "dir/keep".into())])
        );
        assert_eq!(names("nope/*"), Ok(vec![]));
        assert_eq!(names(".e*"), Ok(vec![]), "an ignored name matches nothing");
        // A match that is a link to an ignored file is not found.
        assert_eq!(
            sources(&c, "*.txt"),
            Err(ResolveError::NotFound("z.txt".into()))
        );
    }

    #[test]
    fn the_key_covers_what_a_link_points_at() {
        let mut c = context();
        let before = source_key(&c, "to-a/", None, false);
        let file_before = source_key(&c, "y.txt", None, false);
        c.insert("a/f".into(), entry("a/f", EntryKind::File, "changed").1);
        assert_ne!(source_key(&c, "to-a/", None, false), before);
        assert_ne!(source_key(&c, "y.txt", None, false), file_before);
        // Same content reached under another name is another key.
        assert_ne!(
            source_key(&c, "y.txt", None, false),
            source_key(&c, "a/f", None, false)
        );
    }
}
