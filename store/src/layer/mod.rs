//! Layers: tar streams in, snapshot directories out ([`unpack`]); directories in,
//! deterministic tar streams out ([`pack`]). Every tar berth reads passes a [`guard`] that
//! bounds what its headers can make the reader hold.

pub mod guard;
pub mod gzip;
pub mod pack;
pub mod unpack;

use std::io::Read;

use berth_oci::media_type::Compression;

/// Wraps a layer blob reader in the decompressor its compression needs.
pub fn decompress<'a>(
    reader: impl std::io::BufRead + 'a,
    compression: Compression,
) -> std::io::Result<Box<dyn Read + 'a>> {
    // The bufread decoders take their input straight from the caller's buffer (the read
    // ones would copy it once more, through a buffer of their own).
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// [`decompress`] for a layer whose compressed bytes and tar stream are both checked by
/// digest (a pulled layer): gzip's CRC-32 is not computed ([`gzip`]).
pub fn decompress_digest_checked<'a>(
    reader: impl std::io::BufRead + 'a,
    compression: Compression,
) -> std::io::Result<Box<dyn Read + 'a>> {
    match compression {
        Compression::Gzip => Ok(Box::new(gzip::UncheckedGzDecoder::new(reader))),
        other => decompress(reader, other),
    }
}
