//! Bounds on what a hostile tar stream can make its reader hold. In: a tar stream. Out: the
//! same bytes, unchanged, or an error as soon as the stream asks for more than its limits.
//!
//! The `tar` crate reads a GNU long name (`L`), long link name (`K`) and a PAX header (`x`)
//! whole into memory before the entry they describe, whatever size their header declares:
//! a layer of 10 MiB of gzip can declare a 10 GiB long name. [`TarGuard`] follows the
//! stream's headers as the `tar` crate does (header blocks, PAX `size` overrides, GNU sparse
//! extension blocks, data rounded to 512 bytes, the zero block that ends the archive) and
//! refuses an extension header larger than [`Limits::extension`] and an archive with more
//! than [`Limits::entries`] entries before the reader asks for their bytes.

use std::io::{self, Read};

const BLOCK: usize = 512;

/// What a tar stream may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one extension header (GNU long name or link, PAX): 1 MiB, as PATH_MAX is 4 KiB
    /// and an xattr value at most 64 KiB.
    pub extension: u64,
    /// Entries (files, directories, links, nodes) in one archive.
    pub entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            extension: 1 << 20,
            entries: 2_000_000,
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Collecting a header block (`have` bytes so far).
    Header,
    /// Collecting a GNU sparse extension block.
    SparseExtension { data: u64 },
    /// Passing an entry's data: `left` bytes of the padded data, of which the first
    /// `collect` are kept (a PAX header, parsed for its `size`).
    Data { left: u64, collect: u64 },
    /// After the zero block that ends the archive: nothing more is parsed.
    End,
}

/// A reader that passes a tar stream through unchanged while checking it (see the module).
#[derive(Debug)]
pub struct TarGuard<R> {
    inner: R,
    limits: Limits,
    phase: Phase,
    block: [u8; BLOCK],
    have: usize,
    /// The PAX header being collected, and the `size` the last one set for the next entry.
    pax: Vec<u8>,
    pax_size: Option<u64>,
    entries: u64,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R, limits: Limits) -> Self {
        TarGuard {
            inner,
            limits,
            phase: Phase::Header,
            block: [0; BLOCK],
            have: 0,
            pax: Vec::new(),
            pax_size: None,
            entries: 0,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn check(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.phase {
                Phase::End => return Ok(()),
                Phase::Header | Phase::SparseExtension { .. } => {
                    let n = (BLOCK - self.have).min(bytes.len());
                    self.block[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                    self.have += n;
                    bytes = &bytes[n..];
                    if self.have == BLOCK {
                        self.have = 0;
                        self.phase = match self.phase {
                            Phase::SparseExtension { data } => self.after_sparse_block(data)?,
                            _ => self.after_header()?,
                        };
                    }
                }
                Phase::Data { left, collect } => {
                    let n = (left.min(bytes.len() as u64)) as usize;
                    let keep = (collect.min(n as u64)) as usize;
                    self.pax.extend_from_slice(&bytes[..keep]);
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    let collect = collect - keep as u64;
                    self.phase = if left == 0 {
                        if !self.pax.is_empty() {
                            self.pax_size = pax_size(&self.pax);
                            self.pax.clear();
                        }
                        Phase::Header
                    } else {
                        Phase::Data { left, collect }
                    };
                }
            }
        }
        Ok(())
    }

    fn after_sparse_block(&self, data: u64) -> io::Result<Phase> {
        if self.block[504] == 1 {
            Ok(Phase::SparseExtension { data })
        } else {
            data_phase(data, 0)
        }
    }

    fn after_header(&mut self) -> io::Result<Phase> {
        let h = &self.block;
        if h.iter().all(|&b| b == 0) {
            return Ok(Phase::End);
        }
        let kind = h[156];
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let gnu = &h[257..265] == b"ustar  \0";
        let recognized = gnu || (&h[257..263] == b"ustar\0" && &h[263..265] == b"00");
        let mut size = size_field(&h[124..136])?;
        if !extension {
            // A PAX `size` overrides the header's for the entry it describes.
            if let Some(s) = self.pax_size.take() {
                size = s;
            }
        }
        if recognized && matches!(kind, b'L' | b'K' | b'x') {
            if size > self.limits.extension {
                return Err(invalid(format!(
                    "a tar extension header of {size} bytes, more than the limit of {}",
                    self.limits.extension
                )));
            }
            let collect = if kind == b'x' { size } else { 0 };
            return data_phase(size, collect);
        }
        self.pax_size = None;
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(invalid(format!(
                "more than {} entries in one archive",
                self.limits.entries
            )));
        }
        if kind == b'S' && gnu && h[482] == 1 {
            return Ok(Phase::SparseExtension { data: size });
        }
        data_phase(size, 0)
    }
}

fn data_phase(size: u64, collect: u64) -> io::Result<Phase> {
    let padded = size
        .checked_next_multiple_of(BLOCK as u64)
        .ok_or_else(|| invalid(format!("a tar entry of {size} bytes")))?;
    Ok(if padded == 0 {
        Phase::Header
    } else {
        Phase::Data {
            left: padded,
            collect,
        }
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A header's size field as the `tar` crate reads it: base-256 when the high bit is set
/// (its last 8 bytes), else octal text.
fn size_field(field: &[u8]) -> io::Result<u64> {
    if field[0] & 0x80 != 0 {
        let mut n = [0u8; 8];
        n.copy_from_slice(&field[field.len() - 8..]);
        return Ok(u64::from_be_bytes(n));
    }
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end])
        .map_err(|_| invalid("a tar header with a bad size field".into()))?;
    u64::from_str_radix(text.trim(), 8)
        .map_err(|_| invalid("a tar header with a bad size field".into()))
}

/// The first `size` record of a PAX header, as the `tar` crate takes it (`None` when the
/// records before it, or it, are malformed).
fn pax_size(mut records: &[u8]) -> Option<u64> {
    while !records.is_empty() {
        let space = records.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&records[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > records.len() || records[len - 1] != b'\n' {
            return None;
        }
        let record = &records[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=')?;
        if &record[..eq] == b"size" {
            return std::str::from_utf8(&record[eq + 1..]).ok()?.parse().ok();
        }
        records = &records[len..];
    }
    None
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.check(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    /// Reads `bytes` through a guard in reads of `chunk` bytes; the bytes read back.
    fn through(bytes: &[u8], limits: Limits, chunk: usize) -> io::Result<Vec<u8>> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        TarGuard::new(Chunked(bytes, chunk), limits).read_to_end(&mut out)?;
        Ok(out)
    }

    /// An archive with every kind of header the layers berth reads carry: long names and
    /// links, PAX records (a `size` among them), xattrs, a sparse file, empty files.
    fn varied_archive(seed: u64) -> (Vec<u8>, usize) {
        let mut b = tar::Builder::new(Vec::new());
        let mut count = 0;
        for i in 0..(seed % 7 + 3) {
            let long = "d/".repeat((seed * 31 + i) as usize % 200 + 1);
            let data = berth_test_support::pseudo_random_bytes(
                seed + i,
                ((seed * 97 + i * 13) % 1500) as usize,
            );
            let mut h = header(tar::EntryType::Regular, data.len() as u64);
            b.append_data(&mut h, format!("{long}f{i}"), &data[..])
                .unwrap();
            count += 1;
            if i % 2 == 0 {
                let mut h = header(tar::EntryType::Symlink, 0);
                b.append_link(&mut h, format!("l{i}"), "t/".repeat(80 + i as usize))
                    .unwrap();
                count += 1;
            }
            if i % 3 == 0 {
                let path = format!("pax/{i}");
                let records = [
                    ("SCHILY.xattr.user.a", &b"v"[..]),
                    ("path", path.as_bytes()),
                ];
                b.append_pax_extensions(records).unwrap();
                let mut h = header(tar::EntryType::Regular, 3);
                b.append_data(&mut h, "ignored", &b"abc"[..]).unwrap();
                count += 1;
            }
        }
        (b.into_inner().unwrap(), count)
    }

    #[test]
    fn any_archive_within_the_limits_passes_unchanged() {
        for seed in 0..60 {
            let (bytes, count) = varied_archive(seed);
            for chunk in [1, 7, 512, 513, 4096, usize::MAX] {
                let out = through(&bytes, Limits::default(), chunk).unwrap();
                assert_eq!(out, bytes, "seed {seed} chunk {chunk}");
            }
            let mut archive = tar::Archive::new(TarGuard::new(&bytes[..], Limits::default()));
            assert_eq!(archive.entries().unwrap().count(), count, "seed {seed}");
        }
    }

    #[test]
    fn a_pax_size_moves_the_next_header_and_is_followed() {
        // The header says 0 bytes, PAX says 1030: the data runs 3 blocks, then a long name
        // far over the limit; the guard must find that header where the tar crate does.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"1030"[..])]).unwrap();
        // Without the two zero blocks `into_inner` would end the archive with.
        let mut raw = b.get_ref().clone();
        let mut h = header(tar::EntryType::Regular, 0);
        h.set_path("f").unwrap();
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend(std::iter::repeat_n(7u8, 1536));
        let mut l = header(tar::EntryType::GNULongName, 5 << 20);
        l.set_path("././@LongLink").unwrap();
        l.set_cksum();
        raw.extend_from_slice(l.as_bytes());
        raw.extend(std::iter::repeat_n(b'a', 5 << 20));
        let e = through(&raw, Limits::default(), 4096)
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("5242880 bytes"), "{e}");
    }

    #[test]
    fn a_huge_long_name_or_pax_header_is_refused_before_it_is_read() {
        for kind in [
            tar::EntryType::GNULongName,
            tar::EntryType::GNULongLink,
            tar::EntryType::XHeader,
        ] {
            let mut raw = header(kind, 10 << 30).as_bytes().to_vec();
            raw.extend(std::iter::repeat_n(b'a', 4096));
            let e = through(&raw, Limits::default(), 1 << 16)
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("10737418240 bytes"), "{e}");
            // Through the tar crate, the error surfaces before it allocates.
            let mut archive = tar::Archive::new(TarGuard::new(&raw[..], Limits::default()));
            let first = archive.entries().unwrap().next().unwrap();
            assert!(first.is_err());
        }
    }

    #[test]
    fn mutated_archives_never_panic_and_pass_unchanged_what_they_pass() {
        let limits = Limits {
            extension: 4096,
            entries: 64,
        };
        for seed in 0..3000u64 {
            let (mut bytes, _) = varied_archive(seed % 40);
            // Flip, set and truncate bytes where headers live, the way a fuzzer would.
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..(seed % 6 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % bytes.len();
                bytes[at] = match x % 4 {
                    0 => 0xff,
                    1 => b'7',
                    2 => 0,
                    _ => bytes[at] ^ (x >> 8) as u8,
                };
            }
            if seed % 5 == 0 {
                bytes.truncate((x as usize) % bytes.len());
            }
            match through(&bytes, limits, (seed % 700 + 1) as usize) {
                Ok(out) => assert_eq!(out, bytes, "seed {seed}"),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "seed {seed}"),
            }
            let mut archive = tar::Archive::new(TarGuard::new(&bytes[..], limits));
            if let Ok(entries) = archive.entries() {
                for entry in entries.take(128) {
                    let Ok(mut entry) = entry else { break };
                    let _ = io::copy(&mut entry, &mut io::sink());
                }
            }
        }
    }

    #[test]
    fn entries_are_counted() {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..20 {
            let mut h = header(tar::EntryType::Regular, 0);
            b.append_data(&mut h, format!("f{i}"), &b""[..]).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let limits = Limits {
            entries: 19,
            ..Limits::default()
        };
        let e = through(&bytes, limits, 512).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("more than 19 entries"), "{e}");
        assert!(
            through(
                &bytes,
                Limits {
                    entries: 20,
                    ..limits
                },
                512
            )
            .is_ok()
        );
    }

    #[test]
    fn sizes_parse_as_the_tar_crate_reads_them() {
        assert_eq!(size_field(b"00000001750\0").unwrap(), 0o1750);
        assert_eq!(size_field(b" 1750 \0\0\0\0\0\0").unwrap(), 0o1750);
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(size_field(&big).unwrap(), 1 << 40);
        assert!(size_field(b"12x\0\0\0\0\0\0\0\0\0").is_err());
        assert_eq!(pax_size(b"8 a=bcd\n12 size=100\n"), Some(100));
        assert_eq!(pax_size(b"12 size=100\n11 size=42\n"), Some(100));
        assert_eq!(pax_size(b"99 size=100\n"), None);
    }
}
