//! Verified blob writes: bytes in, `blobs/sha256/<hex>` out, and only when size and digest
//! are right (the ocidir-rs `complete_verified_as` shape).
//!
//! A [`BlobWriter`] writes to a fresh file under `tmp/` while hashing; [`BlobWriter::commit`]
//! checks size and digest against what the caller expected, fsyncs the file, renames it into
//! `blobs/sha256/` and fsyncs the directory. A crash leaves at most a file in `tmp/`, which
//! the next start removes; nothing half-written is ever under `blobs/`.
//!
//! Past its first 8 MiB a blob is written with `O_DIRECT`, through an aligned 1 MiB staging
//! buffer: a blob of gigabytes (a pulled layer kept compressed, a built layer) is rarely read
//! again soon, and sending it past the page cache spares the machine a gigabyte of cache
//! pages to allocate, fill and later evict. On this VM that mattered most: a page first
//! touched after the guest had reported it free to the host cost about 2.5 us, so a pull
//! writing 2 GiB through the cache spent 3 to 5 s in the kernel instead of 1. A filesystem
//! that refuses `O_DIRECT` gets buffered writes, as before.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_oci::{Descriptor, Digest, Digester};

use crate::error::{IoContext, Result, StoreError};
use crate::layout::Store;

impl Store {
    /// A writer for a new blob.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::new(&self.tmp_dir(), &self.blobs_dir())
    }
}

/// A blob being written.
#[derive(Debug)]
pub struct BlobWriter {
    /// The file end, here while writes come through [`Write`]; on its own thread once
    /// [`BlobWriter::write_shared`] is used.
    sink: Option<Sink>,
    writer: Option<BackgroundSink>,
    tmp_path: PathBuf,
    blobs_dir: PathBuf,
    digester: Digester,
    /// Set by the first [`BlobWriter::write_shared`]: hashing on a thread of its own.
    background: Option<berth_oci::digest::BackgroundDigester>,
    done: bool,
}

/// Where a blob's bytes go and how they reach the disk.
#[derive(Debug)]
struct Sink {
    file: File,
    /// Bytes handed to the kernel for writeback so far (see [`WRITEBACK_CHUNK`]).
    flushed: u64,
    /// Bytes accepted so far: written to the file or waiting in `direct`.
    written: u64,
    /// The staging buffer once the blob is written with O_DIRECT.
    direct: Option<Staging>,
    /// O_DIRECT was refused: buffered writes to the end.
    buffered_only: bool,
}

/// A [`Sink`] on a thread of its own, fed shared chunks: a write that waits for the disk
/// (every O_DIRECT write does) then holds up neither the network reads nor the hashing
/// that feed it.
#[derive(Debug)]
struct BackgroundSink {
    tx: Option<std::sync::mpsc::SyncSender<std::sync::Arc<Vec<u8>>>>,
    thread: std::thread::JoinHandle<(Sink, std::io::Result<()>)>,
}

impl BackgroundSink {
    fn start(mut sink: Sink) -> BackgroundSink {
        let (tx, chunks) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<u8>>>(8);
        let thread = std::thread::Builder::new()
            .name("blob-write".into())
            .spawn(move || {
                for chunk in chunks {
                    if let Err(e) = sink.put(&chunk) {
                        return (sink, Err(e));
                    }
                }
                (sink, Ok(()))
            })
            .expect("spawning the blob writer thread");
        BackgroundSink {
            tx: Some(tx),
            thread,
        }
    }

    /// Hands a chunk over; `false` when the thread has stopped (a write failed).
    fn send(&self, chunk: std::sync::Arc<Vec<u8>>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(chunk).is_ok())
    }

    /// Waits for every chunk handed over to be written; the sink comes back.
    fn finish(mut self) -> std::io::Result<Sink> {
        drop(self.tx.take());
        match self.thread.join() {
            Ok((sink, Ok(()))) => Ok(sink),
            Ok((_, Err(e))) => Err(e),
            Err(_) => Err(std::io::Error::other("the blob writer thread panicked")),
        }
    }
}

/// Blobs are written with O_DIRECT from this size on (see the module's docs).
const DIRECT_ABOVE: u64 = WRITEBACK_CHUNK;
/// The alignment O_DIRECT needs of offsets, lengths and memory (a page covers every device).
const DIRECT_ALIGN: usize = 4096;
const STAGING: usize = 1 << 20;

/// An aligned buffer for O_DIRECT writes, carved out of a slightly larger vector.
#[derive(Debug)]
struct Staging {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Staging {
    fn new() -> Staging {
        let buf = vec![0u8; STAGING + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        Staging { buf, start, len: 0 }
    }

    fn area(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + STAGING]
    }
}

/// Reads a large blob once, past the page cache: `O_DIRECT` into an aligned buffer, then
/// copied out. A push compressing a built layer of gigabytes reads it once and never again
/// soon; through the cache, each page costs an allocation (dear on this VM, see the module
/// docs) and later an eviction: a 1.5 GiB layer read at 750 MB/s with 1 s of system time
/// buffered, 1.4 GB/s direct. A filesystem that refuses `O_DIRECT` (tmpfs, some FUSE) gets
/// plain reads. A blob already in the cache is read from the device all the same (finding
/// out costs more than it saves): still faster than the upload it feeds. A short read
/// before the end would leave the next offset unaligned; the kernel's EINVAL then turns
/// the reads buffered, so that is safe too.
#[derive(Debug)]
pub struct DirectReader {
    file: File,
    buf: Vec<u8>,
    /// Where the aligned area starts in `buf`.
    start: usize,
    /// The read but not yet consumed bytes: `buf[start + at .. start + len]`.
    at: usize,
    len: usize,
    /// The file offset of the next read.
    offset: u64,
    direct: bool,
}

/// Each direct read asks for this much.
const DIRECT_READ: usize = 1 << 20;

impl DirectReader {
    /// Reads `file` (open for reading, at its start) from here on past the cache.
    pub fn new(file: File) -> DirectReader {
        let direct = crate::fsutil::set_direct(&file, true).is_ok();
        let buf = vec![0u8; DIRECT_READ + DIRECT_ALIGN];
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        DirectReader {
            file,
            buf,
            start,
            at: 0,
            len: 0,
            offset: 0,
            direct,
        }
    }

    /// Refills the buffer from `offset` (always aligned while direct: every read but the
    /// last returns whole blocks).
    fn fill(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let area = &mut self.buf[self.start..self.start + DIRECT_READ];
        let n = loop {
            match self.file.read_at(area, self.offset) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    crate::fsutil::set_direct(&self.file, false)?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        };
        self.at = 0;
        self.len = n;
        self.offset += n as u64;
        Ok(())
    }
}

impl std::io::Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.len {
            self.fill()?;
        }
        let n = out.len().min(self.len - self.at);
        let from = self.start + self.at;
        out[..n].copy_from_slice(&self.buf[from..from + n]);
        self.at += n;
        Ok(n)
    }
}

/// Large blobs (built layers of gigabytes) start their writeback every this many bytes, and
/// wait for the chunk before, so the final fsync has little left to wait for and dirty
/// pages never pile up (the `sync_file_range` pattern of databases and `dd oflag=...`).
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// What the written bytes must be.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// Whatever was written; the digest is computed.
    Any,
    /// Exactly this descriptor's digest and size.
    Descriptor(&'a Descriptor),
    /// This digest, any size.
    Digest(&'a Digest),
}

impl BlobWriter {
    pub(crate) fn new(tmp_dir: &Path, blobs_dir: &Path) -> Result<BlobWriter> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp_path = crate::layout::unique_tmp_path(tmp_dir, "blob");
        let file = File::options()
            .write(true)
            .create_new(true)
            .mode(crate::files::PRIVATE_FILE)
            .open(&tmp_path)
            .ctx(|| format!("creating {}", tmp_path.display()))?;
        Ok(BlobWriter {
            sink: Some(Sink {
                file,
                flushed: 0,
                written: 0,
                direct: None,
                buffered_only: false,
            }),
            writer: None,
            tmp_path,
            blobs_dir: blobs_dir.to_owned(),
            digester: Digester::new(),
            background: None,
            done: false,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.digester.len() + self.background.as_ref().map_or(0, |b| b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes a chunk the caller shares with other readers (a pulled layer's bytes also go
    /// to its unpacker); the chunk is hashed on a thread of its own and written on another,
    /// so the caller only hands it over (it waits only when both are 8 chunks behind).
    /// Everything written to this blob must then come through here.
    pub fn write_shared(&mut self, chunk: &std::sync::Arc<Vec<u8>>) -> std::io::Result<()> {
        assert!(
            self.digester.is_empty(),
            "write_shared after plain writes would hash out of order"
        );
        if self.writer.is_none() {
            let sink = self
                .sink
                .take()
                .expect("the sink is here before the thread");
            self.writer = Some(BackgroundSink::start(sink));
        }
        let writer = self.writer.as_ref().expect("started above");
        if !writer.send(chunk.clone()) {
            let failed = self.writer.take().expect("present").finish();
            return Err(failed
                .err()
                .unwrap_or_else(|| std::io::Error::other("the blob writer stopped")));
        }
        let background = self
            .background
            .get_or_insert_with(berth_oci::digest::BackgroundDigester::new);
        background.update(chunk.clone());
        Ok(())
    }

    /// Verifies, fsyncs and renames into place; returns the digest and size.
    pub fn commit(self, expect: Expect<'_>) -> Result<(Digest, u64)> {
        self.commit_announcing(expect, |_, _| {})
    }

    /// [`BlobWriter::commit`], telling `verified` the digest and size as soon as they are
    /// known and right, before the blob is on disk and in place (a push sends the digest
    /// to the registry while the store makes its copy durable).
    pub fn commit_announcing(
        mut self,
        expect: Expect<'_>,
        verified: impl FnOnce(&Digest, u64),
    ) -> Result<(Digest, u64)> {
        let digester = match self.background.take() {
            Some(b) => b.finish(),
            None => std::mem::take(&mut self.digester),
        };
        let size = digester.len();
        let digest = digester.finish();
        let (want_digest, want_size) = match expect {
            Expect::Any => (None, None),
            Expect::Descriptor(d) => (Some(&d.digest), Some(d.size)),
            Expect::Digest(d) => (Some(d), None),
        };
        if let Some(want) = want_size
            && want != size
        {
            return Err(StoreError::SizeMismatch {
                digest: digest.clone(),
                expected: want,
                found: size,
            });
        }
        if let Some(want) = want_digest
            && *want != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: want.clone(),
                found: digest,
            });
        }
        verified(&digest, size);
        let mut sink = match (self.writer.take(), self.sink.take()) {
            (Some(writer), _) => writer
                .finish()
                .ctx(|| format!("writing {}", self.tmp_path.display()))?,
            (None, Some(sink)) => sink,
            (None, None) => unreachable!("a blob writer always has its sink or its thread"),
        };
        sink.flush_staging()
            .ctx(|| format!("writing {}", self.tmp_path.display()))?;
        if !sink.written.is_multiple_of(DIRECT_ALIGN as u64) && sink.direct.is_some() {
            // The last block went out padded.
            sink.file
                .set_len(sink.written)
                .ctx(|| format!("truncating {}", self.tmp_path.display()))?;
        }
        sink.file
            .sync_data()
            .ctx(|| format!("syncing {}", self.tmp_path.display()))?;
        let target = self.blobs_dir.join(digest.hex());
        std::fs::rename(&self.tmp_path, &target)
            .ctx(|| format!("renaming into {}", target.display()))?;
        self.done = true;
        crate::layout::sync_dir(&self.blobs_dir)?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        assert!(
            self.background.is_none(),
            "plain writes after write_shared would hash out of order"
        );
        self.sink
            .as_mut()
            .expect("plain writes keep the sink here")
            .put(buf)?;
        self.digester.update(buf);
        Ok(buf.len())
    }

    /// Data staged for O_DIRECT waits for a whole buffer or the commit.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    /// Writes `data` at the end: buffered for the first [`DIRECT_ABOVE`] bytes, then staged
    /// for O_DIRECT.
    fn put(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.direct.is_none() && !self.buffered_only {
            let end = self.written + data.len() as u64;
            if end > DIRECT_ABOVE {
                let head = (DIRECT_ABOVE - self.written) as usize;
                self.file.write_all_at(&data[..head], self.written)?;
                self.written += head as u64;
                data = &data[head..];
                if crate::fsutil::set_direct(&self.file, true).is_ok() {
                    self.direct = Some(Staging::new());
                } else {
                    self.buffered_only = true;
                }
            }
        }
        if self.direct.is_none() {
            self.file.write_all_at(data, self.written)?;
            self.written += data.len() as u64;
            self.start_writeback();
            return Ok(());
        }
        while !data.is_empty() {
            let staging = self.direct.as_mut().expect("checked above");
            let n = (STAGING - staging.len).min(data.len());
            let at = staging.len;
            staging.area()[at..at + n].copy_from_slice(&data[..n]);
            staging.len += n;
            self.written += n as u64;
            data = &data[n..];
            if staging.len == STAGING {
                self.flush_staging()?;
            }
        }
        Ok(())
    }

    /// Writes what is staged, padded to the alignment (only the last write is short); a
    /// filesystem that turns O_DIRECT down here gets it buffered, and the rest too.
    fn flush_staging(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(staging) = self.direct.as_mut() else {
            return Ok(());
        };
        let len = staging.len;
        if len == 0 {
            return Ok(());
        }
        let offset = self.written - len as u64;
        let padded = len.next_multiple_of(DIRECT_ALIGN);
        let area = staging.area();
        area[len..padded].fill(0);
        match self.file.write_all_at(&area[..padded], offset) {
            Ok(()) => {
                staging.len = 0;
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let staged = area[..len].to_vec();
                self.direct = None;
                self.buffered_only = true;
                crate::fsutil::set_direct(&self.file, false)?;
                self.file.write_all_at(&staged, offset)?;
                // A padded direct write may have gone past the end before it failed.
                self.file.set_len(self.written)
            }
            Err(e) => Err(e),
        }
    }

    /// Large blobs start their writeback every [`WRITEBACK_CHUNK`] (see there).
    fn start_writeback(&mut self) {
        let written = self.written;
        if written - self.flushed >= WRITEBACK_CHUNK {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_raw_fd();
            // SAFETY: sync_file_range on our own open file descriptor, with plain integers;
            // it only schedules and waits for writeback, touching no memory of ours.
            unsafe {
                // Start writing this chunk back...
                libc::sync_file_range(
                    fd,
                    self.flushed as i64,
                    (written - self.flushed) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
                // ...and wait for the one before it.
                if self.flushed > 0 {
                    let prev = self.flushed.saturating_sub(WRITEBACK_CHUNK);
                    libc::sync_file_range(
                        fd,
                        prev as i64,
                        (self.flushed - prev) as i64,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                }
            }
            self.flushed = written;
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}
