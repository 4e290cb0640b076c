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

/// A [`Digester`] on a thread of its own, fed shared chunks: hashing a large stream then
/// overlaps with what the feeding thread does with the same bytes (writing them, unpacking
/// them). A bounded channel keeps memory to a few chunks. Made with
/// [`BackgroundDigester::recycling`], it hands the chunks it is done with back through
/// [`BackgroundDigester::returned`], for reuse.
#[derive(Debug)]
pub struct BackgroundDigester {
    tx: Option<std::sync::mpsc::SyncSender<std::sync::Arc<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<Digester>>,
    returned: Option<std::sync::mpsc::Receiver<std::sync::Arc<Vec<u8>>>>,
    len: u64,
}

impl Default for BackgroundDigester {
    fn default() -> Self {
        Self::new()
    }
}

impl BackgroundDigester {
    /// Chunks are dropped once hashed.
    pub fn new() -> BackgroundDigester {
        Self::start(false)
    }

    /// Chunks come back once hashed (a few wait; the rest are freed).
    pub fn recycling() -> BackgroundDigester {
        Self::start(true)
    }

    fn start(recycle: bool) -> BackgroundDigester {
        let (tx, chunks) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<u8>>>(4);
        let (give_back, returned) = if recycle {
            let (give, back) = std::sync::mpsc::sync_channel(4);
            (Some(give), Some(back))
        } else {
            (None, None)
        };
        let thread = std::thread::Builder::new()
            .name("digest".into())
            .spawn(move || {
                let mut digester = Digester::new();
                for chunk in chunks {
                    digester.update(&chunk);
                    if let Some(give) = &give_back {
                        let _ = give.try_send(chunk);
                    }
                }
                digester
            })
            .expect("spawning the digest thread");
        BackgroundDigester {
            tx: Some(tx),
            thread: Some(thread),
            returned,
            len: 0,
        }
    }

    pub fn update(&mut self, chunk: std::sync::Arc<Vec<u8>>) {
        self.len += chunk.len() as u64;
        if let Some(tx) = &self.tx {
            tx.send(chunk)
                .expect("the digest thread runs until the sender is dropped");
        }
    }

    /// Bytes handed over so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A chunk the hasher is done with and nobody else holds, if there is one.
    pub fn returned(&self) -> Option<Vec<u8>> {
        let returned = self.returned.as_ref()?;
        while let Ok(chunk) = returned.try_recv() {
            if let Ok(buf) = std::sync::Arc::try_unwrap(chunk) {
                return Some(buf);
            }
        }
        None
    }

    /// Waits for the hasher; the digester holds everything handed over.
    pub fn finish(mut self) -> Digester {
        drop(self.tx.take());
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the digest thread does not panic")
    }
}

impl Drop for BackgroundDigester {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A reader that hashes what is read through it with a [`BackgroundDigester`], so hashing a
/// large stream overlaps with what the caller does with it. Unpacking a layer spent half
/// its thread's time on the SHA-256 of the tar stream; with two cores, moving it aside is
/// much of what makes a pull faster than the tools it is measured against.
///
/// It reads `inner` into chunks of up to 1 MiB and serves reads from them.
#[derive(Debug)]
pub struct ThreadedDigestingReader<R> {
    inner: R,
    chunk: std::sync::Arc<Vec<u8>>,
    at: usize,
    digester: BackgroundDigester,
    /// An error met after some bytes of a chunk: returned once those are served.
    pending: Option<std::io::Error>,
}

const THREADED_CHUNK: usize = 1 << 20;

impl<R> ThreadedDigestingReader<R> {
    pub fn new(inner: R) -> Self {
        ThreadedDigestingReader {
            inner,
            chunk: Default::default(),
            at: 0,
            digester: BackgroundDigester::recycling(),
            pending: None,
        }
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        let digester = self.digester.finish();
        let len = digester.len();
        (digester.finish(), len)
    }

    /// A buffer for the next chunk: one the hasher is done with, or a new one.
    fn spare(&mut self) -> Vec<u8> {
        // The current chunk is used up: let go of it, so it can come back. (Its position
        // too: were the refill to end the stream or fail, the next read must find an empty
        // chunk read to its end, not an offset into the old one.)
        self.chunk = Default::default();
        self.at = 0;
        match self.digester.returned() {
            Some(mut buf) => {
                buf.resize(THREADED_CHUNK, 0);
                buf
            }
            None => vec![0; THREADED_CHUNK],
        }
    }
}

impl<R: std::io::Read> std::io::Read for ThreadedDigestingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            if let Some(e) = self.pending.take() {
                return Err(e);
            }
            let mut buf = self.spare();
            // A full chunk (or the rest of the stream) before it is served: fewer, fuller
            // hand-overs measured faster than serving whatever one read gave.
            let mut n = 0;
            while n < THREADED_CHUNK {
                match self.inner.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if n == 0 => return Err(e),
                    // What was read before the error is served (and hashed) first.
                    Err(e) => {
                        self.pending = Some(e);
                        break;
                    }
                }
            }
            if n == 0 {
                return Ok(0);
            }
            buf.truncate(n);
            self.chunk = std::sync::Arc::new(buf);
            self.at = 0;
            self.digester.update(self.chunk.clone());
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.0` bytes of 7, then "broken" for ever.
    struct Failing(usize);

    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("broken"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }

    /// Reading again after the end (as `io::copy` after a tar reader that met the end) or
    /// after an error gives the end or the error again; it once indexed past the emptied
    /// chunk and panicked (found by the layer_unpack fuzzer).
    #[test]
    fn the_threaded_reader_reads_past_its_end_and_its_errors() {
        use std::io::Read;
        let data = vec![7u8; 1536];
        let mut r = ThreadedDigestingReader::new(&data[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        for _ in 0..3 {
            assert_eq!(r.read(&mut [0u8; 64]).unwrap(), 0);
        }
        assert_eq!(r.finish(), (Digest::of(&data), 1536));

        let mut r = ThreadedDigestingReader::new(Failing(1536));
        let mut buf = vec![0u8; 1536];
        assert_eq!(r.read(&mut buf).unwrap(), 1536);
        for _ in 0..3 {
            assert_eq!(r.read(&mut buf).unwrap_err().to_string(), "broken");
        }
    }

    #[test]
    fn the_threaded_reader_digests_like_the_plain_one() {
        use std::io::Read;
        // 3.5 chunks of varied bytes, read in odd sizes.
        let data: Vec<u8> = (0..(THREADED_CHUNK * 7 / 2))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut r = ThreadedDigestingReader::new(&data[..]);
        let mut out = Vec::new();
        let mut buf = [0u8; 4093];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
        assert_eq!(r.finish(), (Digest::of(&data), data.len() as u64));
        // Dropped unfinished, it still ends its thread.
        let mut r = ThreadedDigestingReader::new(&data[..]);
        r.read_exact(&mut buf).unwrap();
        drop(r);
    }

    #[test]
    fn the_threaded_reader_passes_errors_on() {
        use std::io::Read;
        let mut r = ThreadedDigestingReader::new(Failing(10));
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.to_string(), "broken");
        assert_eq!(out, [7; 10]);
    }

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
