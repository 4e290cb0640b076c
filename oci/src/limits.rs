//! Read limits for untrusted documents: a reader and a byte cap in, the bytes (or
//! [`LimitError`]) out. Every in-memory read of something that came from outside goes
//! through [`read_limited`] with one of these caps (as containers/image `iolimits` does).

use std::io::Read;

/// Manifests and indexes.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Image configs.
pub const MAX_CONFIG: u64 = 4 << 20;
/// Bearer token responses.
pub const MAX_TOKEN: u64 = 1 << 20;
/// Registry error bodies.
pub const MAX_ERROR_BODY: u64 = 1 << 20;
/// `index.json`, `manifest.json` and other small files of layouts and archives.
pub const MAX_LAYOUT_FILE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("reading {what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Reads at most `limit` bytes; more is an error, not a truncation.
pub fn read_limited(reader: impl Read, limit: u64, what: &str) -> Result<Vec<u8>, LimitError> {
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| LimitError::Io {
            what: what.to_owned(),
            source,
        })?;
    if buf.len() as u64 > limit {
        return Err(LimitError::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_reads() {
        assert_eq!(read_limited(&b"abcd"[..], 4, "x").unwrap(), b"abcd");
        assert!(matches!(
            read_limited(&b"abcde"[..], 4, "x"),
            Err(LimitError::TooLarge { .. })
        ));
    }
}
