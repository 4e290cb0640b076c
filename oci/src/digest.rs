//! Content digests: `sha256:<64 lowercase hex>` in, a validated [`Digest`] out; plus the
//! streaming [`Digester`] that every verified write and read goes through.
//!
//! Only sha256 is accepted for content berth stores: it is what every registry and tool in
//! the field writes, and one algorithm keeps the store's `blobs/sha256/` layout simple.
//! Other algorithms are rejected with [`DigestError::UnsupportedAlgorithm`] rather than
//! silently mis-hashed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated sha256 content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// The 64 lowercase hex characters after `sha256:`.
    hex: String,
}

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected <algorithm>:<hex>")]
    MissingAlgorithm(String),
    #[error("invalid digest {0:?}: only sha256 is supported")]
    UnsupportedAlgorithm(String),
    #[error("invalid digest {0:?}: sha256 needs 64 lowercase hex characters")]
    BadHex(String),
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(data).as_slice())
    }

    fn from_sha256(raw: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(raw),
        }
    }

    /// Builds a digest from its hex part alone (as in `blobs/sha256/<hex>` file names).
    pub fn from_hex(hex_part: &str) -> Result<Digest, DigestError> {
        if hex_part.len() == 64
            && hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            Ok(Digest {
                hex: hex_part.to_owned(),
            })
        } else {
            Err(DigestError::BadHex(format!("sha256:{hex_part}")))
        }
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as Docker shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The algorithm name (always `sha256`).
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex_part)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(s.to_owned()));
        };
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm(s.to_owned()));
        }
        Digest::from_hex(hex_part).map_err(|_| DigestError::BadHex(s.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes bytes as they stream past and counts them.
#[derive(Clone, Default)]
pub struct Digester {
    hasher: Sha256,
    len: u64,
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester").field("len", &self.len).finish()
    }
}

impl Digester {
    pub fn new() -> Digester {
        Digester::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest::from_sha256(self.hasher.finalize().as_slice())
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A reader that hashes what is read through it.
#[derive(Debug)]
pub struct DigestingReader<R> {
    inner: R,
    digester: Digester,
}

impl<R> DigestingReader<R> {
    pub fn new(inner: R) -> Self {
        DigestingReader {
            inner,
            digester: Digester::new(),
        }
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        let len = self.digester.len();
        (self.digester.finish(), len)
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

impl<R: std::io::Read> std::io::Read for DigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_malformed_digests() {
        let cases = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:",
            "",
        ];
        for case in cases {
            assert!(case.parse::<Digest>().is_err(), "{case} should be rejected");
        }
    }

    #[test]
    fn digester_matches_one_shot() {
        let mut d = Digester::new();
        d.update(b"hello ");
        d.update(b"world");
        assert_eq!(d.len(), 11);
        assert_eq!(d.finish(), Digest::of(b"hello world"));
    }
}
