//! gzip without its CRC-32, for streams whose bytes are checked by digest on both sides.
//!
//! A pulled layer's compressed bytes are checked against the manifest's digest and its tar
//! stream against the config's diff-id, both SHA-256; gzip's CRC-32 of the same tar stream
//! then adds nothing, and it was 15% of the unpacking thread's time in a pull. This reader
//! parses the gzip framing itself (RFC 1952: header fields, members one after another, the
//! trailer) around flate2's raw inflater, and still checks each member's ISIZE, which costs
//! nothing. Everything else that reads gzip (imports, archives, ADD) keeps flate2's checked
//! decoder.

use std::io::{BufRead, Read};

use flate2::bufread::DeflateDecoder;

const FTEXT_RESERVED: u8 = 0xe0;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("gzip: {what}"))
}

/// Multi-member gzip, decompressed, CRC-32 not computed (see the module's docs).
#[derive(Debug)]
pub struct UncheckedGzDecoder<R: BufRead> {
    state: State<R>,
    /// Output bytes of the current member (for its ISIZE).
    produced: u64,
}

#[derive(Debug)]
enum State<R: BufRead> {
    /// Before a member's header; `true` for the first (which must be there).
    Header(R, bool),
    Body(DeflateDecoder<R>),
    Done,
    /// Moved out for a moment.
    Empty,
}

impl<R: BufRead> UncheckedGzDecoder<R> {
    pub fn new(reader: R) -> Self {
        UncheckedGzDecoder {
            state: State::Header(reader, true),
            produced: 0,
        }
    }
}

fn read_exact_buf(r: &mut impl BufRead, out: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            invalid("the stream ends inside a member's header or trailer")
        } else {
            e
        }
    })
}

fn skip_zero_terminated(r: &mut impl BufRead) -> std::io::Result<()> {
    let mut sink = Vec::new();
    r.read_until(0, &mut sink)?;
    if sink.last() != Some(&0) {
        return Err(invalid("the stream ends inside a header field"));
    }
    Ok(())
}

/// Reads one member's header; `Ok(false)` at the end of the stream (between members).
fn header(r: &mut impl BufRead, first: bool) -> std::io::Result<bool> {
    if !first && r.fill_buf()?.is_empty() {
        return Ok(false);
    }
    let mut fixed = [0u8; 10];
    read_exact_buf(r, &mut fixed)?;
    if fixed[0] != 0x1f || fixed[1] != 0x8b {
        return Err(invalid("not a gzip member (bad magic)"));
    }
    if fixed[2] != 8 {
        return Err(invalid("unknown compression method"));
    }
    let flags = fixed[3];
    if flags & FTEXT_RESERVED != 0 {
        return Err(invalid("reserved header flags are set"));
    }
    if flags & FEXTRA != 0 {
        let mut len = [0u8; 2];
        read_exact_buf(r, &mut len)?;
        let mut extra = vec![0u8; u16::from_le_bytes(len) as usize];
        read_exact_buf(r, &mut extra)?;
    }
    if flags & FNAME != 0 {
        skip_zero_terminated(r)?;
    }
    if flags & FCOMMENT != 0 {
        skip_zero_terminated(r)?;
    }
    if flags & FHCRC != 0 {
        let mut crc16 = [0u8; 2];
        read_exact_buf(r, &mut crc16)?;
    }
    Ok(true)
}

impl<R: BufRead> Read for UncheckedGzDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, State::Empty) {
                State::Header(mut reader, first) => {
                    if header(&mut reader, first)? {
                        self.produced = 0;
                        self.state = State::Body(DeflateDecoder::new(reader));
                    } else {
                        self.state = State::Done;
                    }
                }
                State::Body(mut inflater) => {
                    let n = inflater.read(out)?;
                    if n > 0 {
                        self.produced += n as u64;
                        self.state = State::Body(inflater);
                        return Ok(n);
                    }
                    // The deflate stream ended: the trailer (CRC-32 not checked, ISIZE
                    // checked), then perhaps another member.
                    let mut reader = inflater.into_inner();
                    let mut trailer = [0u8; 8];
                    read_exact_buf(&mut reader, &mut trailer)?;
                    let isize = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
                    if isize != self.produced as u32 {
                        return Err(invalid("a member's length (ISIZE) does not match"));
                    }
                    self.state = State::Header(reader, false);
                }
                State::Done => {
                    self.state = State::Done;
                    return Ok(0);
                }
                State::Empty => return Err(invalid("an earlier error left the reader unusable")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn member(data: &[u8], level: u32, name: Option<&str>, comment: Option<&str>) -> Vec<u8> {
        let mut b = flate2::GzBuilder::new().extra(b"xx".to_vec());
        if let Some(n) = name {
            b = b.filename(n);
        }
        if let Some(c) = comment {
            b = b.comment(c);
        }
        let mut w = b.write(Vec::new(), flate2::Compression::new(level));
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn decode(bytes: &[u8], chunk: usize) -> std::io::Result<Vec<u8>> {
        let mut d = UncheckedGzDecoder::new(std::io::BufReader::with_capacity(chunk, bytes));
        let mut out = Vec::new();
        d.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_what_flate2_decodes_member_by_member() {
        let a: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let b = vec![0u8; 1 << 20];
        let mut stream = member(&a, 6, Some("a.tar"), Some("first"));
        stream.extend(member(&b, 1, None, None));
        stream.extend(member(b"", 9, Some("empty"), None));
        let mut expected = Vec::new();
        flate2::read::MultiGzDecoder::new(&stream[..])
            .read_to_end(&mut expected)
            .unwrap();
        for chunk in [1, 7, 4096, 1 << 20] {
            assert_eq!(decode(&stream, chunk).unwrap(), expected, "chunk {chunk}");
        }
        assert_eq!(
            decode(&[], 64).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn refuses_bad_framing_and_a_wrong_length() {
        let good = member(b"hello, layer", 6, Some("n"), None);
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        let mut bad_isize = good.clone();
        let at = bad_isize.len() - 1;
        bad_isize[at] ^= 1;
        let truncated = &good[..good.len() - 3];
        let mut trailing_junk = good.clone();
        trailing_junk.extend(b"junk after the member");
        for (name, bytes) in [
            ("magic", &bad_magic[..]),
            ("isize", &bad_isize[..]),
            ("truncated", truncated),
            ("junk", &trailing_junk[..]),
        ] {
            let err = decode(bytes, 4096).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ),
                "{name}: {err:?}"
            );
        }
        // A wrong CRC-32 alone is not noticed: that is the point (the digests check the bytes).
        let mut bad_crc = good.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert_eq!(decode(&bad_crc, 4096).unwrap(), b"hello, layer");
    }
}
