//! Compression on the way out (DESIGN.md, "Layers and snapshots"): layers the builder made
//! are kept uncompressed in the store (digest = diff-id); `save`, `build --output` and `push`
//! ask for a *distribution* manifest whose layers are compressed. Each compressed layer is
//! made once, on up to 4 cores, and kept: `compressed/<diff-id hex>.<gzip|zstd>` records its
//! digest, so the next push or save compresses nothing and sends the same bytes (the same
//! manifest digest). Layers already compressed (pulled or loaded ones) are left as they are.
//!
//! gzip in parallel: the layer is cut into 4 MiB chunks compressed side by side, each a
//! complete gzip member, concatenated in order (RFC 1952 allows several members; Go's, zlib's
//! and flate2's readers all read them). Deterministic: fixed chunk size and level, no
//! timestamps or names in the headers. zstd uses the library's own worker threads.

use std::io::{Read, Write};

use berth_oci::media_type::{self, Compression};
use berth_oci::{Descriptor, Digest, ImageManifest, Parsed};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::images::{Image, layer_compression};
use crate::layout::{Store, atomic_write};
use crate::{BlobWriter, Expect};

const CHUNK: usize = 4 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    digest: Digest,
    size: u64,
}

fn name(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "none",
    }
}

/// gzip on `threads` cores: chunks compressed in parallel as separate members.
///
/// The input and output buffers of each slot are reused from one round to the next: fresh
/// 4 MiB buffers each round cost a zeroing, page faults and, through the allocator's
/// per-thread arenas, tens of megabytes of resident memory that a push cannot spare.
pub fn gzip_parallel(
    mut input: impl Read,
    out: &mut impl Write,
    threads: usize,
) -> std::io::Result<()> {
    let threads = threads.max(1);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    let mut outputs: Vec<Vec<u8>> = (0..threads).map(|_| Vec::new()).collect();
    let mut wrote = false;
    loop {
        let mut filled = 0;
        let mut last = false;
        while filled < threads {
            if inputs.len() == filled {
                inputs.push(vec![0u8; CHUNK]);
            }
            let buf = &mut inputs[filled];
            buf.resize(CHUNK, 0);
            let n = crate::fsutil::read_full(&mut input, buf)?;
            buf.truncate(n);
            if n > 0 {
                filled += 1;
            }
            if n < CHUNK {
                last = true;
                break;
            }
        }
        if filled == 0 && wrote {
            break;
        }
        if filled == 0 {
            filled = 1; // an empty layer is still one gzip member (its input is empty)
        }
        let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = inputs[..filled]
                .iter()
                .zip(outputs.iter_mut())
                .map(|(c, o)| {
                    s.spawn(move || {
                        o.clear();
                        if c.len() == CHUNK && all_zero(c) {
                            o.extend_from_slice(zero_member());
                            return Ok(());
                        }
                        let level = if incompressible(c) {
                            flate2::Compression::none()
                        } else {
                            flate2::Compression::default()
                        };
                        gzip_member_into(c, level, o)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for (r, o) in results.into_iter().zip(&outputs) {
            r?;
            out.write_all(o)?;
        }
        wrote = true;
        if last {
            break;
        }
    }
    Ok(())
}

/// One chunk as a gzip member at `level`, into `out` (emptied first by the caller).
fn gzip_member_into(
    chunk: &[u8],
    level: flate2::Compression,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    // Stored blocks add 5 bytes per 64 KiB: room for all of it up front, no regrowth.
    out.reserve(chunk.len() + chunk.len() / 8192 + 64);
    let mut e = flate2::GzBuilder::new().write(std::mem::take(out), level);
    e.write_all(chunk)?;
    *out = e.finish()?;
    Ok(())
}

/// The member a whole chunk of zeros compresses to, made once per process: every such
/// chunk gives the same bytes, and deflate's level-6 search over zeros runs at ~350 MB/s a
/// core, while checking a chunk for zeros runs at memory speed (a chunk of anything else
/// fails at its first non-zero block). Zero-filled files (preallocated databases, disk
/// images, W4's 0.5 GiB) otherwise cost a push a long stretch of compressing with next to
/// nothing to upload. The output is byte for byte what compressing the chunk gives.
fn zero_member() -> &'static [u8] {
    static MEMBER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    MEMBER.get_or_init(|| {
        let mut member = Vec::new();
        gzip_member_into(
            &vec![0u8; CHUNK],
            flate2::Compression::default(),
            &mut member,
        )
        .expect("compressing into memory does not fail");
        member
    })
}

/// Whether `chunk` holds only zeros (checked a block at a time, which vectorizes).
fn all_zero(chunk: &[u8]) -> bool {
    chunk
        .chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

const SAMPLE: usize = 16 << 10;

/// Whether deflate would gain nothing on `chunk`: four 16 KiB samples spread over it, deflated
/// at level 1, come out at 97% of their size or more (random or already-compressed data).
/// Such a chunk is written as stored deflate blocks, which costs a copy and a CRC instead of
/// a level-6 search that ends in stored blocks anyway; the output is the same size. zlib
/// makes the same choice block by block, after the search; zstd checks before, as here. The
/// decision depends on the bytes only, so the output stays deterministic.
fn incompressible(chunk: &[u8]) -> bool {
    if chunk.len() < 4 * SAMPLE {
        return false;
    }
    let mut out = vec![0u8; SAMPLE + 1024];
    let mut produced = 0u64;
    for i in 0..4 {
        let start = i * (chunk.len() - SAMPLE) / 3;
        let mut d = flate2::Compress::new(flate2::Compression::fast(), false);
        if d.compress(
            &chunk[start..start + SAMPLE],
            &mut out,
            flate2::FlushCompress::Finish,
        )
        .is_err()
        {
            return false;
        }
        produced += d.total_out();
    }
    produced * 100 >= (4 * SAMPLE as u64) * 97
}

/// Where a layer being compressed goes besides the store (a push's upload).
pub trait CompressTee: Write {
    /// Every compressed byte has been written: the tee can close its end now, while the
    /// store still verifies and syncs its copy.
    fn end(&mut self) {}

    /// The compressed blob's digest and size, as soon as they are known (before the
    /// store's copy is durable).
    fn compressed(&mut self, _digest: &Digest, _size: u64) {}
}

impl CompressTee for std::io::Sink {}

/// Writes to the kept blob and to a second writer.
struct Tee<'a> {
    blob: BlobWriter,
    tee: &'a mut dyn CompressTee,
}

impl Write for Tee<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.blob.write_all(data)?;
        self.tee.write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tee.flush()
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// At most this many chunks are compressed at once (zstd: this many workers): each gzip
/// chunk holds a 4 MiB input and a 4 MiB output buffer, so memory stays at 32 MiB whatever
/// the machine (on 32 cores it would be 256 MiB, far past a push's 100 MiB budget). Four
/// cores deflate ~150 MB/s of ordinary layers at level 6, more than most registries take.
const COMPRESS_THREADS: usize = 4;

impl Store {
    fn compressed_record_path(&self, diff_id: &Digest, c: Compression) -> std::path::PathBuf {
        self.root()
            .join("compressed")
            .join(format!("{}.{}", diff_id.hex(), name(c)))
    }

    /// The recorded compressed blob of a layer, if it is still in the store.
    pub fn compressed_variant(&self, diff_id: &Digest, c: Compression) -> Option<Descriptor> {
        let bytes = std::fs::read(self.compressed_record_path(diff_id, c)).ok()?;
        let r: Record = serde_json::from_slice(&bytes).ok()?;
        self.has_blob(&r.digest).then(|| {
            let mt = match c {
                Compression::Zstd => media_type::OCI_LAYER_ZSTD,
                _ => media_type::OCI_LAYER_GZIP,
            };
            Descriptor::new(mt, r.digest, r.size)
        })
    }

    /// Every recorded compressed digest of `diff_id` (gc keeps them while the layer lives).
    pub(crate) fn compressed_variants(&self, diff_id: &Digest) -> Vec<Digest> {
        [Compression::Gzip, Compression::Zstd]
            .into_iter()
            .filter_map(|c| self.compressed_variant(diff_id, c).map(|d| d.digest))
            .collect()
    }

    /// `layer` as it should leave the machine: compressed with `c` if it is an
    /// uncompressed tar (made once, then taken from the record), else unchanged.
    pub fn compressed_layer(&self, layer: &Descriptor, c: Compression) -> Result<Descriptor> {
        if c == Compression::None || layer_compression(layer) != Compression::None {
            return Ok(layer.clone());
        }
        if let Some(d) = self.compressed_variant(&layer.digest, c) {
            return Ok(d);
        }
        self.compress_layer_tee(layer, c, &mut std::io::sink())
    }

    /// Compresses an uncompressed layer with `c` (gzip or zstd), keeps the result and its
    /// record as [`Store::compressed_layer`] does, and writes every compressed byte to `tee`
    /// as it is made too, so a push can upload while compressing. A `tee` error stops the
    /// compression; nothing is kept then.
    pub fn compress_layer_tee(
        &self,
        layer: &Descriptor,
        c: Compression,
        tee: &mut dyn CompressTee,
    ) -> Result<Descriptor> {
        let input = crate::blobs::DirectReader::new(self.open_blob(&layer.digest)?);
        let blob: BlobWriter = self.blob_writer()?;
        let mut writer = Tee { blob, tee };
        match c {
            Compression::Gzip => gzip_parallel(input, &mut writer, cores().min(COMPRESS_THREADS)),
            Compression::Zstd => (|| {
                let mut e = zstd::stream::write::Encoder::new(&mut writer, 3)?;
                e.multithread(cores().min(COMPRESS_THREADS) as u32)?;
                let mut input = input;
                std::io::copy(&mut input, &mut e)?;
                e.finish().map(|_| ())
            })(),
            Compression::None => unreachable!(),
        }
        .ctx(|| format!("compressing layer {}", layer.digest))?;
        let Tee { blob, tee } = writer;
        tee.end();
        let (digest, size) =
            blob.commit_announcing(Expect::Any, |digest, size| tee.compressed(digest, size))?;
        self.record_compressed(&layer.digest, c, &digest, size)?;
        Ok(self
            .compressed_variant(&layer.digest, c)
            .unwrap_or_else(|| Descriptor::new(media_type::OCI_LAYER_GZIP, digest, size)))
    }

    /// Takes in a layer that arrived compressed (a remote cache's): `compressed` is a blob
    /// already in the store, verified by its descriptor. Decompresses it into the store's
    /// uncompressed blob `diff_id` of `size` bytes (reading no further, nor past the layer
    /// limit, so a bomb stops there; a mismatch keeps nothing), and
    /// records `compressed` as its compressed form, so the layer leaves the machine as the
    /// same blob it came as.
    pub fn adopt_compressed_layer(
        &self,
        compressed: &Descriptor,
        diff_id: &Digest,
        size: u64,
    ) -> Result<()> {
        let c = layer_compression(compressed);
        if !self.has_blob(diff_id) {
            let file = std::io::BufReader::new(self.open_blob(&compressed.digest)?);
            let tar = crate::layer::decompress_digest_checked(file, c)
                .ctx(|| format!("decompressing layer {}", compressed.digest))?;
            let limit = size.min(crate::layer::unpack::UnpackOptions::default().max_bytes);
            let mut w = self.blob_writer()?;
            let copied = std::io::copy(&mut tar.take(limit.saturating_add(1)), &mut w)
                .ctx(|| format!("decompressing layer {}", compressed.digest))?;
            if copied > limit {
                return Err(crate::error::StoreError::LayerTooLarge { limit });
            }
            let tar_desc = Descriptor::new(media_type::OCI_LAYER_TAR, diff_id.clone(), size);
            w.commit(Expect::Descriptor(&tar_desc))?;
        }
        if c == Compression::None {
            return Ok(());
        }
        self.record_compressed(diff_id, c, &compressed.digest, compressed.size)
    }

    /// Records the blob `digest` of `size` bytes as the `c`-compressed form of the layer
    /// whose tar is `diff_id`.
    fn record_compressed(
        &self,
        diff_id: &Digest,
        c: Compression,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let dir = self.root().join("compressed");
        crate::files::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        atomic_write(
            &self.compressed_record_path(diff_id, c),
            &serde_json::to_vec(&Record {
                digest: digest.clone(),
                size,
            })
            .expect("plain data"),
            &self.tmp_dir(),
        )
    }

    /// The image with its layers as they should leave the machine: a manifest (written to
    /// the store) over the same config, with uncompressed layers compressed. The image
    /// itself when nothing needs compressing.
    pub fn distribution_image(&self, image: &Image, c: Compression) -> Result<Image> {
        let layers = image
            .manifest_value
            .layers
            .iter()
            .map(|l| self.compressed_layer(l, c))
            .collect::<Result<Vec<_>>>()?;
        if layers == image.manifest_value.layers {
            return Ok(image.clone());
        }
        let mut manifest = ImageManifest::new_oci(image.manifest_value.config.clone(), layers);
        manifest.annotations = image.manifest_value.annotations.clone();
        let parsed = Parsed::from_manifest(&manifest);
        self.put_bytes(&parsed.media_type, &parsed.bytes)?;
        Ok(Image {
            root: parsed.descriptor(),
            manifest: parsed,
            manifest_value: manifest,
            ..image.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_chunks_are_stored_and_still_round_trip() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let random: Vec<u8> = (0..CHUNK + 999)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let text: Vec<u8> = b"compressible text, line after line\n"
            .iter()
            .copied()
            .cycle()
            .take(CHUNK)
            .collect();
        assert!(incompressible(&random[..CHUNK]));
        assert!(!incompressible(&text));
        let mut mixed = random.clone();
        mixed.extend_from_slice(&text);
        let mut out = Vec::new();
        gzip_parallel(&mixed[..], &mut out, 2).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, mixed);
        // The random part costs its own size and a little; the text part compresses.
        assert!(
            out.len() < random.len() + 4096 + text.len() / 10,
            "{}",
            out.len()
        );
        let mut again = Vec::new();
        gzip_parallel(&mixed[..], &mut again, 2).unwrap();
        assert_eq!(out, again, "deterministic");
    }

    #[test]
    fn chunks_of_zeros_give_the_bytes_compressing_them_gives() {
        let member = |c: &[u8]| {
            let mut e = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
            e.write_all(c).unwrap();
            e.finish().unwrap()
        };
        let text: Vec<u8> = b"a line of text\n"
            .iter()
            .copied()
            .cycle()
            .take(CHUNK)
            .collect();
        let mut nearly = vec![0u8; CHUNK];
        nearly[CHUNK - 1] = 1;
        // Zeros, text, zeros with one byte set at the very end, zeros, and a short tail of
        // zeros: members as a plain level-6 compression of each chunk makes them.
        let chunks: [&[u8]; 5] = [
            &vec![0u8; CHUNK],
            &text,
            &nearly,
            &vec![0u8; CHUNK],
            &vec![0u8; 1000],
        ];
        let input = chunks.concat();
        let want: Vec<u8> = chunks.iter().flat_map(|c| member(c)).collect();
        for threads in [1, 2, 3] {
            let mut out = Vec::new();
            gzip_parallel(&input[..], &mut out, threads).unwrap();
            assert_eq!(out, want, "{threads} threads");
        }
        assert!(all_zero(&vec![0u8; CHUNK]));
        assert!(!all_zero(&nearly));
    }

    #[test]
    fn parallel_gzip_round_trips_and_is_deterministic() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut a = Vec::new();
        gzip_parallel(&data[..], &mut a, 4).unwrap();
        let mut b = Vec::new();
        gzip_parallel(&data[..], &mut b, 2).unwrap();
        assert_eq!(a, b, "the same bytes whatever the thread count");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut empty = Vec::new();
        gzip_parallel(&[][..], &mut empty, 2).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
