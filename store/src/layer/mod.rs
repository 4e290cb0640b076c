//! Layers: tar streams in, snapshot directories out ([`unpack`]); directories in,
//! deterministic tar streams out ([`pack`]).

pub mod pack;
pub mod unpack;

use std::io::Read;

use berth_oci::media_type::Compression;

/// Wraps a layer blob reader in the decompressor its compression needs.
pub fn decompress<'a>(
    reader: impl Read + 'a,
    compression: Compression,
) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}
