//! A build context received as a stream (`berth build -`, a context URL): the bytes in; out,
//! either the context unpacked into a directory the caller made for it, or, when the bytes
//! are not an archive, the Dockerfile itself (Docker's rule: the context is then empty).
//!
//! An archive is a tar, plain or compressed with gzip, zstd, bzip2 or xz, whose first block
//! has the `ustar` magic once decompressed. A compressed stream that is not a tar is
//! refused (Docker treats any compressed stream as an archive, and fails to read it).
//!
//! The tar is hostile: it is unpacked by the store's layer unpacker in its build-context
//! mode ([`berth_store::layer::unpack`]), so every name is resolved inside the directory
//! (symlinks followed as if it were `/`), a name or hard-link target whose `..` climbs out is
//! refused, device nodes are skipped, ownership is not applied, `.wh.` names are plain
//! names, hard links stay hard links, and the bytes and entries are bounded by [`Limits`].

use std::io::{Cursor, Read};
use std::path::Path;

use super::ContextError;

/// How an archive is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    Tar,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// The packing a stream starting with `head` (its first 6 bytes suffice) is in.
pub fn packing_of(head: &[u8]) -> Packing {
    if head.starts_with(&[0x1f, 0x8b]) {
        Packing::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Packing::Zstd
    } else if head.starts_with(b"BZh") {
        Packing::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Packing::Xz
    } else {
        Packing::Tar
    }
}

/// Memory the xz decoder may use (its dictionary, which the stream's block headers declare):
/// `xz -9` needs 65 MiB; a header asking for more is refused before anything is allocated.
const XZ_MEMORY_LIMIT_KIB: u32 = 256 << 10;

/// The decompressed stream of `reader`, packed as `packing`. Every decoder reads as it is
/// read from, so a caller decodes no more than it asks for.
pub fn unpacked_stream<'a>(
    reader: impl Read + 'a,
    packing: Packing,
) -> std::io::Result<Box<dyn Read + 'a>> {
    let reader = std::io::BufReader::new(reader);
    Ok(match packing {
        Packing::Tar => Box::new(reader),
        Packing::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Packing::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        Packing::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
        Packing::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            reader,
            true,
            XZ_MEMORY_LIMIT_KIB,
        )),
    })
}

/// Bounds on a received context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the tar stream, decompressed (`BERTH_MAX_CONTEXT_SIZE`, default 16 GiB).
    pub bytes: u64,
    /// Entries in the tar (`BERTH_MAX_CONTEXT_ENTRIES`, default 1,000,000: the scan's own
    /// bound, [`super::Limits::entries`]).
    pub entries: u64,
}

impl Limits {
    /// The defaults, or the environment's `BERTH_MAX_CONTEXT_SIZE` and
    /// `BERTH_MAX_CONTEXT_ENTRIES`.
    pub fn from_env() -> Limits {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Limits {
            bytes: var("BERTH_MAX_CONTEXT_SIZE").unwrap_or(16 << 30),
            entries: var("BERTH_MAX_CONTEXT_ENTRIES").unwrap_or(super::Limits::default().entries),
        }
    }
}

/// What a received stream turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An archive, now unpacked into the directory given.
    Context,
    /// Not an archive: the Dockerfile's bytes (at most [`super::MAX_DOCKERFILE`]); the
    /// directory given is left empty.
    Dockerfile(Vec<u8>),
}

/// Reads `reader` to its end or a limit; `from` names it in errors ("stdin", a URL).
/// `dest` must be an empty directory private to the caller.
pub fn receive(
    reader: impl Read,
    dest: &Path,
    limits: &Limits,
    from: &str,
) -> Result<Received, ContextError> {
    let fail = |reason: String| ContextError::Archive {
        from: from.to_owned(),
        reason,
    };
    let mut reader = reader;
    let magic = read_up_to(&mut reader, 6).map_err(|e| fail(format!("reading: {e}")))?;
    let packing = packing_of(&magic);
    let mut stream = unpacked_stream(Cursor::new(magic).chain(reader), packing)
        .map_err(|e| fail(format!("decompressing: {e}")))?;
    let block = read_up_to(&mut stream, 512).map_err(|e| fail(format!("decompressing: {e}")))?;
    let is_tar = block.len() == 512 && &block[257..262] == b"ustar";
    if !is_tar {
        if packing != Packing::Tar {
            return Err(fail(format!(
                "{packing:?}-compressed, but not a tar archive"
            )));
        }
        let what = format!("the Dockerfile from {from}");
        let text = berth_oci::limits::read_limited(
            Cursor::new(block).chain(stream),
            super::MAX_DOCKERFILE,
            &what,
        )?;
        return Ok(Received::Dockerfile(text));
    }
    let options = berth_store::layer::unpack::UnpackOptions {
        max_bytes: limits.bytes,
        privileged: false,
        devices: false,
        max_entries: limits.entries,
        build_context: true,
    };
    berth_store::layer::unpack::unpack(Cursor::new(block).chain(stream), dest, &options).map_err(
        |e| match e {
            berth_store::StoreError::LayerTooLarge { limit } => fail(format!(
                "more than {limit} bytes unpacked (set BERTH_MAX_CONTEXT_SIZE to raise it)"
            )),
            e => {
                let mut reason = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    reason = format!("{reason}: {c}");
                    cause = c.source();
                }
                if reason.contains("entries in one archive") {
                    reason.push_str(" (set BERTH_MAX_CONTEXT_ENTRIES to raise it)");
                }
                fail(reason)
            }
        },
    )?;
    Ok(Received::Context)
}

/// Up to `n` bytes from `r`: fewer only at its end.
fn read_up_to(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}
