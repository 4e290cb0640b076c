//! `.dockerignore`: the file's text in, a [`Matcher`] out that says whether a context path
//! is excluded, with Docker's semantics (moby/patternmatcher), not gitignore's:
//!
//! - lines starting with `#` are comments; lines are trimmed; blank lines are skipped;
//! - patterns are cleaned like Go's `filepath.Clean` (`./a//b/` → `a/b`), and a leading `/`
//!   is dropped: every pattern is anchored at the context root (`*.go` does **not** match
//!   `dir/x.go`; `**/*.go` does);
//! - `*` and `?` never cross `/`; `**` crosses any number of directories; `[a-z]` classes and
//!   `\` escapes as in Go's `filepath.Match`;
//! - a pattern that matches a directory excludes everything under it;
//! - `!pattern` re-includes; patterns apply in order and the last match wins.
//!
//! Why our own: `ignore`/`globset` follow gitignore's anchoring (DEPENDENCIES.md: 73 and 75
//! of 82 patternmatcher vectors); a regex per pattern meets Docker's rules exactly.

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern (without `!`).
    text: String,
    exclusion: bool,
    regex: regex::Regex,
}

/// The compiled patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: invalid pattern {pattern:?}: {reason}")]
pub struct IgnoreError {
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

/// Go's `path.Clean`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

impl Matcher {
    /// Reads `.dockerignore` text (Docker's `ignorefile.ReadAll` then `NewPatternMatcher`).
    pub fn parse(text: &str) -> Result<Matcher, IgnoreError> {
        let mut lines = Vec::new();
        for (n, raw) in text
            .strip_prefix('\u{feff}')
            .unwrap_or(text)
            .lines()
            .enumerate()
        {
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let invert = p.starts_with('!');
            if invert {
                p = p[1..].trim();
            }
            let mut cleaned = if p.is_empty() {
                String::new()
            } else {
                clean(p)
            };
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            lines.push((
                n + 1,
                if invert {
                    format!("!{cleaned}")
                } else {
                    cleaned
                },
            ));
        }
        Matcher::from_patterns(&lines)
    }

    /// Compiles already-read patterns (`--exclude` flags use this too).
    pub fn from_patterns(lines: &[(usize, String)]) -> Result<Matcher, IgnoreError> {
        let mut patterns = Vec::new();
        for (line, p) in lines {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (exclusion, body) = match p.strip_prefix('!') {
                Some("") => {
                    return Err(IgnoreError {
                        line: *line,
                        pattern: p.into(),
                        reason: "a lone \"!\" excludes nothing".into(),
                    });
                }
                Some(rest) => (true, clean(rest)),
                None => (false, clean(p)),
            };
            let regex = compile(&body).map_err(|reason| IgnoreError {
                line: *line,
                pattern: p.into(),
                reason,
            })?;
            patterns.push(Pattern {
                text: body,
                exclusion,
                regex,
            });
        }
        Ok(Matcher { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative, `/`-separated) is excluded: the pattern or any parent
    /// directory matches, last matching pattern wins.
    pub fn excluded(&self, path: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let path = clean(path);
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.regex.is_match(&path);
            if !hit {
                for i in 1..=parents.len() {
                    if p.regex.is_match(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walk must enter an excluded directory because a `!` pattern may re-include
    /// something inside it. As BuildKit's context walk decides it: only an exception whose
    /// text starts with the directory's path (`!docs/keep.md` for `docs`) opens it; an
    /// exception that starts with a wildcard (`!*/keep`, `!**/keep`) re-includes nothing
    /// under a directory that is itself excluded.
    pub fn may_include_under(&self, dir: &str) -> bool {
        let dir_slash = format!("{}/", clean(dir));
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| format!("{}/", p.text).starts_with(&dir_slash))
    }
}

/// The pattern as an anchored regex (patternmatcher's `compile`).
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if in_class {
            match ch {
                ']' => {
                    in_class = false;
                    re.push(']');
                }
                '\\' if i < chars.len() => {
                    re.push_str(&regex::escape(&chars[i].to_string()));
                    i += 1;
                }
                '[' => re.push_str("\\["),
                c => re.push(c),
            }
            continue;
        }
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => match chars.get(i) {
                Some(&n) => {
                    re.push_str(&regex::escape(&n.to_string()));
                    i += 1;
                }
                None => re.push_str("\\\\"),
            },
            '[' => {
                in_class = true;
                re.push('[');
                if chars.get(i) == Some(&'^') {
                    re.push('^');
                    i += 1;
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if in_class {
        return Err("unterminated character class".into());
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).unwrap()
    }

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean("./a//b/"), "a/b");
        assert_eq!(clean("/a/../../b"), "/b");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn anchored_at_the_root_unlike_gitignore() {
        let x = m("*.go\n");
        assert!(x.excluded("main.go"));
        assert!(!x.excluded("dir/x.go"), "*.go is anchored");
        let x = m("**/*.go\n");
        assert!(x.excluded("main.go") && x.excluded("a/b/c.go"));
        assert!(!x.excluded("a/b/c.rs"));
    }

    #[test]
    fn leading_slash_and_dot_slash_are_the_same_as_none() {
        for p in ["/foo", "./foo", "foo", "foo/", "//foo"] {
            let x = m(p);
            assert!(x.excluded("foo") && x.excluded("foo/bar"), "{p}");
            assert!(!x.excluded("a/foo"), "{p}");
        }
    }

    #[test]
    fn exceptions_apply_in_order() {
        let x = m("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(x.excluded("CHANGES.md"));
        assert!(!x.excluded("README.md"));
        assert!(x.excluded("README-secret.md"));
        let x = m("!README*.md\n*.md\n");
        assert!(x.excluded("README.md"), "the last match wins");
    }

    #[test]
    fn directories_exclude_their_contents_unless_reincluded() {
        let x = m("node_modules\n");
        assert!(x.excluded("node_modules/a/b.js"));
        let x = m("docs\n!docs/keep.md\n");
        assert!(x.excluded("docs/other.md"));
        assert!(!x.excluded("docs/keep.md"));
        assert!(x.may_include_under("docs"));
        assert!(!m("docs\n").may_include_under("docs"));
        // An exception that starts with a wildcard does not open an excluded directory.
        let x = m("dir\n!*/sub1*\n");
        assert!(!x.may_include_under("dir"));
        assert!(!m("dir\n!**/keep\n").may_include_under("dir"));
        assert!(m("dir\n!dir/sub1/f\n").may_include_under("dir"));
        assert!(m("dir\n!dir/sub1/f\n").may_include_under("dir/sub1"));
        assert!(!m("dir\n!dir/sub1/f\n").may_include_under("dir/sub2"));
    }

    #[test]
    fn wildcards_classes_and_escapes() {
        let x = m("a?c\n[b-d]x\nlit\\*\n#comment\n  spaced  \n");
        assert!(x.excluded("abc") && !x.excluded("a/c"));
        assert!(x.excluded("cx") && !x.excluded("ex"));
        assert!(x.excluded("lit*") && !x.excluded("litx"));
        assert!(!x.excluded("#comment"));
        assert!(x.excluded("spaced"));
        assert!(m("**\n!keep\n").excluded("any/thing"));
        assert!(!m("**\n!keep\n").excluded("keep"));
        assert!(m("a/**/b\n").excluded("a/b") && m("a/**/b\n").excluded("a/x/y/b"));
        assert!(Matcher::parse("[abc\n").is_err());
        assert!(Matcher::parse("!\n").is_err());
    }
}
