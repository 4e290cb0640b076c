//! Image references: a user's string in (`app`, `localhost:5000/team/app:1.0`,
//! `app:1.0@sha256:…`), a normalized [`Reference`] out, with Docker's rules
//! (distribution/reference `ParseNormalizedNamed`):
//!
//! - no domain, or a first component without `.`/`:` that is not `localhost` and has no
//!   upper case, means `docker.io`; `index.docker.io` is written `docker.io`;
//! - a one-component name on `docker.io` gets `library/`;
//! - a reference with neither tag nor digest gets `:latest`.
//!
//! The grammar (hand-matched; no regex engine needed for it):
//! ```text
//! reference := name [":" tag] ["@" digest]
//! name      := [domain "/"] path-component ("/" path-component)*
//! domain    := (domain-component ("." domain-component)* | "[" ipv6 "]") [":" port]
//! path-component := [a-z0-9]+ (([._] | "__" | "-"+) [a-z0-9]+)*
//! tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! ```

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
pub const DEFAULT_TAG: &str = "latest";

/// A normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a valid reference; the message says which part is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Reference {
    /// Parses and normalizes as `docker pull` does.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason: String| ReferenceError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("the reference is empty".into()));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail(
                "a 64-character hex string is an image ID, not a repository name".into(),
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|e: DigestError| fail(e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(fail)?;
        }
        if name.is_empty() {
            return Err(fail("the repository name is empty".into()));
        }
        let (domain, path) = split_domain(name);
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(fail(format!("repository name {path:?} must be lowercase")));
        }
        check_domain(&domain).map_err(fail)?;
        for component in path.split('/') {
            check_path_component(component).map_err(fail)?;
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(fail(format!(
                "the name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The path within the registry (`library/app`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, the repository's full name.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it (`app`, `team/app`, `localhost:5000/app`).
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .unwrap_or(&self.path)
                .to_owned()
        } else {
            self.repository()
        }
    }

    /// The whole reference as Docker shows it (`app:latest`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        self.push_suffix(&mut s);
        s
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to a digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !path.contains('/') {
        path = format!("{OFFICIAL_PREFIX}{path}");
    }
    (domain, path)
}

/// Whether `tag` is a valid tag name (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
pub fn is_valid_tag(tag: &str) -> bool {
    check_tag(tag).is_ok()
}

fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ))
    }
}

fn check_domain(domain: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("registry host {domain:?} {why}"));
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((ip6, after)) = rest.split_once(']') else {
            return bad("has an unclosed '['");
        };
        if ip6.is_empty() || !ip6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad("is not a valid IPv6 address");
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => return bad("has characters after the IPv6 address"),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("has a port that is not a number");
    }
    if let Some(host) = host {
        for component in host.split('.') {
            let b = component.as_bytes();
            let ok = !b.is_empty()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-';
            if !ok {
                return bad("is not a valid host name");
            }
        }
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), String> {
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let fail = || {
        Err(format!(
            "path component {component:?} must be lowercase letters and digits, \
             separated by '.', '_', '__' or dashes, not at the start or end"
        ))
    };
    if b.is_empty() {
        return Err(
            "the name has an empty path component (two '/' in a row or a trailing '/')".into(),
        );
    }
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return fail();
        }
        if i == b.len() {
            return Ok(());
        }
        let sep_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &component[sep_start..i];
        let valid_sep = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
        if !valid_sep {
            return fail();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("app", "docker.io/library/app:latest"),
            ("debian", "docker.io/library/debian:latest"),
            ("library/debian", "docker.io/library/debian:latest"),
            ("docker/docker", "docker.io/docker/docker:latest"),
            ("docker.io/debian", "docker.io/library/debian:latest"),
            (
                "docker.io/docker/docker:latest",
                "docker.io/docker/docker:latest",
            ),
            ("index.docker.io/debian", "docker.io/library/debian:latest"),
            (
                "index.docker.io/docker/docker",
                "docker.io/docker/docker:latest",
            ),
            ("localhost/debian", "localhost/debian:latest"),
            ("localhost:5000/team/app:1.0", "localhost:5000/team/app:1.0"),
            ("127.0.0.1:5000/foo", "127.0.0.1:5000/foo:latest"),
            ("test:5000/repo", "test:5000/repo:latest"),
            ("test.com:tag", "docker.io/library/test.com:tag"),
            ("test.com:5000", "docker.io/library/test.com:5000"),
            ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"),
            (
                "lowercase:Uppercase",
                "docker.io/library/lowercase:Uppercase",
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io/test.example.com/my-app:test.example.com",
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com/myimage:xn--n3h.com",
            ),
            ("[fc00::1]:5000/repo", "[fc00::1]:5000/repo:latest"),
            ("a__b/c-----d.e_f", "docker.io/a__b/c-----d.e_f:latest"),
            ("Foo/bar", "Foo/bar:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), want, "{input}");
        }
    }

    #[test]
    fn digests_and_tags_combine() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("app@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), d);
        assert_eq!(r.familiar(), format!("app@{d}"));
        let r = Reference::parse(&format!("test:5000/repo:1.0@{d}")).unwrap();
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.to_string(), format!("test:5000/repo:1.0@{d}"));
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(Reference::parse("app").unwrap().familiar(), "app:latest");
        assert_eq!(
            Reference::parse("team/app:1")
                .unwrap()
                .familiar_repository(),
            "team/app"
        );
        assert_eq!(
            Reference::parse("localhost:5000/app")
                .unwrap()
                .familiar_repository(),
            "localhost:5000/app"
        );
    }

    #[test]
    fn rejects_invalid_references_with_a_reason() {
        let cases = [
            ("", "empty"),
            (":justtag", "empty"),
            (
                "@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "empty",
            ),
            ("repo@sha256:ffffff", "64 lowercase hex"),
            ("validname@invaliddigest:ffff", "only sha256"),
            ("Uppercase:tag", "lowercase"),
            ("docker/Docker", "lowercase"),
            ("docker.io/docker/Docker", "lowercase"),
            ("-docker", "path component"),
            ("-docker/docker", "path component"),
            ("-docker.io/docker/docker", "host name"),
            ("docker///docker", "empty path component"),
            ("aa/asdf$$^/aa", "path component"),
            ("a..b", "path component"),
            ("a___b", "path component"),
            ("a.-b", "path component"),
            ("repo:", "tag"),
            ("repo:-tag", "tag"),
            ("https://github.com/docker/docker", "port"),
            (
                "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
                "image ID",
            ),
            ("localhost:port/app", "port"),
        ];
        for (input, why) in cases {
            let err = Reference::parse(input).expect_err(input);
            assert!(
                err.to_string().contains(why),
                "{input}: {err} (want {why:?})"
            );
        }
        let long_tag = format!("repo:{}", "a".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = format!("{}/{}", "a".repeat(128), "b".repeat(128));
        assert!(
            Reference::parse(&long_name)
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
    }
}
