//! `berth build`'s CONTEXT argument: a directory, `-` (a tar, or a Dockerfile, on stdin), an
//! `http(s)://` URL of one (Docker's rules for both), or a git URL (checked out by the
//! builder's session, [`berth_builder::git`]); in, the argument; out, the directory the build
//! scans (the URL itself for git) and, where the stream was not an archive, the Dockerfile.
//!
//! A received context is unpacked into a directory of its own under the store's `tmp/`
//! (mode `0700`, removed when the build ends) by [`berth_builder::context::archive`], which
//! resolves every name inside it and bounds its size and entries.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_builder::context::archive::{self, Received};
use berth_store::Store;

use crate::UsageError;

/// The context of one build.
#[derive(Debug)]
pub struct Context {
    /// The directory the build reads.
    pub dir: PathBuf,
    /// What a received context came from (`stdin`, the URL): `None` for a directory.
    pub received_from: Option<String>,
    /// The Dockerfile, when the received stream was one instead of an archive.
    pub dockerfile: Option<Vec<u8>>,
    /// Holds a received context's directory until the build ends.
    _unpacked: Option<tempfile::TempDir>,
}

/// What CONTEXT names.
enum Kind<'a> {
    Dir(&'a Path),
    Stdin,
    Url(&'a str),
    /// Checked out by the builder.
    Git,
}

fn kind(arg: &Path) -> anyhow::Result<Kind<'_>> {
    let Some(s) = arg.to_str() else {
        return Ok(Kind::Dir(arg));
    };
    if s == "-" {
        return Ok(Kind::Stdin);
    }
    // A git URL names no local path (a path that exists is never taken for one).
    if arg.symlink_metadata().is_err() && berth_builder::git::GitRef::parse(s).is_some() {
        return Ok(Kind::Git);
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Kind::Url(s));
    }
    Ok(Kind::Dir(arg))
}

/// Opens the context `arg` names; `stdin_dockerfile` says `-f -` was given (stdin cannot be
/// both).
pub fn open(
    store: &Store,
    arg: &Path,
    stdin_dockerfile: bool,
    certs_dirs: &[PathBuf],
) -> anyhow::Result<Context> {
    let limits = archive::Limits::from_env();
    match kind(arg)? {
        Kind::Git => Ok(Context {
            dir: arg.to_owned(),
            received_from: None,
            dockerfile: None,
            _unpacked: None,
        }),
        Kind::Dir(dir) => {
            if !dir.is_dir() {
                let shown = dir.display();
                return Err(UsageError(format!("context {shown} is not a directory")).into());
            }
            Ok(Context {
                dir: dir.to_owned(),
                received_from: None,
                dockerfile: None,
                _unpacked: None,
            })
        }
        Kind::Stdin => {
            if stdin_dockerfile {
                return Err(UsageError(
                    "stdin cannot be both the context (`-`) and the Dockerfile (`-f -`)".into(),
                )
                .into());
            }
            receive(store, std::io::stdin().lock(), "stdin", &limits)
        }
        Kind::Url(url) => {
            let tmp = private_dir(store, "download")?;
            let path = tmp.path().join("context");
            download(url, &path, certs_dirs, limits.bytes)?;
            let file = std::fs::File::open(&path)?;
            let shown = berth_builder::redact::url_credentials(url).into_owned();
            receive(store, file, &shown, &limits)
        }
    }
}

/// A new directory under the store's `tmp/`, mode `0700`, removed when dropped.
fn private_dir(store: &Store, what: &str) -> anyhow::Result<tempfile::TempDir> {
    // tempfile makes directories 0700, whatever the umask.
    Ok(tempfile::Builder::new()
        .prefix(&format!("{what}-"))
        .tempdir_in(store.tmp_dir())?)
}

fn receive(
    store: &Store,
    reader: impl std::io::Read,
    from: &str,
    limits: &archive::Limits,
) -> anyhow::Result<Context> {
    let tmp = private_dir(store, "context")?;
    let dir = tmp.path().join("context");
    std::fs::create_dir(&dir)?;
    let received = archive::receive(reader, &dir, limits, from)?;
    Ok(Context {
        dir,
        received_from: Some(from.to_owned()),
        dockerfile: match received {
            Received::Context => None,
            Received::Dockerfile(text) => Some(text),
        },
        _unpacked: Some(tmp),
    })
}

/// GETs `url` into a new file at `path`, at most `limit` bytes. HTTPS trusts the system's
/// roots plus the host's certs.d CAs, as `ADD` and registries do.
fn download(url: &str, path: &Path, certs_dirs: &[PathBuf], limit: u64) -> anyhow::Result<()> {
    let shown = berth_builder::redact::url_credentials(url).into_owned();
    let redact = |m: String| berth_builder::redact::url_credentials(&m).into_owned();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    crate::block_on(async {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{e}"))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => String::new(),
        };
        let (tls, _) = berth_registry_client::tls::client_config(&host, certs_dirs, true)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            // A server that stops answering fails the build instead of holding it.
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| berth_registry_client::client::network_error(&host, &e).to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the server answered {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large(limit));
        }
        let mut written = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            written += chunk.len() as u64;
            if written > limit {
                return Err(too_large(limit));
            }
            out.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .map_err(|m: String| anyhow::anyhow!("downloading the build context {shown}: {}", redact(m)))
}

fn too_large(limit: u64) -> String {
    format!("more than {limit} bytes (set BERTH_MAX_CONTEXT_SIZE to raise it)")
}

/// `-f` for a received context: a path inside the archive (as Docker reads it), never
/// above its root.
pub fn dockerfile_in(dir: &Path, file: &Path) -> PathBuf {
    let mut out = dir.to_owned();
    let mut depth = 0usize;
    for c in file.components() {
        match c {
            std::path::Component::Normal(n) => {
                out.push(n);
                depth += 1;
            }
            std::path::Component::ParentDir if depth > 0 => {
                out.pop();
                depth -= 1;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_told_apart_from_tarball_urls() {
        for git in [
            "git://h/r",
            "git@github.com:o/r.git",
            "github.com/o/r",
            "https://h/o/r.git",
            "https://h/o/r.git#main:dir",
        ] {
            assert!(matches!(kind(Path::new(git)), Ok(Kind::Git)), "{git}");
        }
        for url in [
            "https://h/ctx.tar.gz",
            "http://127.0.0.1:8/Dockerfile",
            "https://h/a.git/x",
        ] {
            assert!(matches!(kind(Path::new(url)), Ok(Kind::Url(_))), "{url}");
        }
    }

    #[test]
    fn a_dockerfile_path_stays_in_the_received_context() {
        let d = Path::new("/t/ctx");
        assert_eq!(
            dockerfile_in(d, Path::new("sub/Df")),
            Path::new("/t/ctx/sub/Df")
        );
        assert_eq!(
            dockerfile_in(d, Path::new("/abs/Df")),
            Path::new("/t/ctx/abs/Df")
        );
        assert_eq!(
            dockerfile_in(d, Path::new("../../Df")),
            Path::new("/t/ctx/Df")
        );
        assert_eq!(
            dockerfile_in(d, Path::new("a/../../b")),
            Path::new("/t/ctx/b")
        );
    }
}
