//! Layers: tar streams in, snapshot directories out ([`unpack`]); directories in,
//! deterministic tar streams out ([`pack`]).

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
