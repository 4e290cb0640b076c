//! Layers: tar streams in, snapshot directories out ([`unpack`]); directories in,
//! deterministic tar streams out ([`pack`]). Every tar berth reads passes a [`guard`] that
//! bounds what its headers can make the reader hold.

pub mod guard;
pub mod gzip;
pub mod pack;
pub mod unpack;

use std::io::Read;

use berth_oci::media_type::Compression;

/// The xattr that marks a snapshot directory opaque for overlayfs: `trusted.overlay.opaque`,
/// or, in a user namespace (rootless), where trusted xattrs are out of reach and the runtime
/// mounts overlays with `userxattr`, `user.overlay.opaque`. Both names are overlayfs's own:
/// neither is ever taken from a layer or put into one.
pub fn opaque_xattr() -> &'static str {
    if in_user_namespace() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

pub use berth_oci::xattr::is_overlay_xattr;

/// Whether this process runs in a user namespace (its `uid_map` is not the identity): no
/// trusted xattr or device node can be made there. Read once.
pub(crate) fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().ne(["0", "0", "4294967295"]))
    })
}

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
