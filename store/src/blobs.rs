//! Verified blob writes: bytes in, `blobs/sha256/<hex>` out, and only when size and digest
//! are right (the ocidir-rs `complete_verified_as` shape).
//!
//! A [`BlobWriter`] writes to a fresh file under `tmp/` while hashing; [`BlobWriter::commit`]
//! checks size and digest against what the caller expected, fsyncs the file, renames it into
//! `blobs/sha256/` and fsyncs the directory. A crash leaves at most a file in `tmp/`, which
//! the next start removes; nothing half-written is ever under `blobs/`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_oci::{Descriptor, Digest, Digester};

use crate::error::{IoContext, Result, StoreError};

/// A blob being written.
#[derive(Debug)]
pub struct BlobWriter {
    file: File,
    tmp_path: PathBuf,
    blobs_dir: PathBuf,
    digester: Digester,
    /// Set by the first [`BlobWriter::write_shared`]: hashing on a thread of its own.
    background: Option<berth_oci::digest::BackgroundDigester>,
    done: bool,
    /// Bytes handed to the kernel for writeback so far (see [`WRITEBACK_CHUNK`]).
    flushed: u64,
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
        let tmp_path = crate::layout::unique_tmp_path(tmp_dir, "blob");
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .ctx(|| format!("creating {}", tmp_path.display()))?;
        Ok(BlobWriter {
            file,
            tmp_path,
            blobs_dir: blobs_dir.to_owned(),
            digester: Digester::new(),
            background: None,
            done: false,
            flushed: 0,
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
    /// to its unpacker); the chunk is hashed on a thread of its own, beside the write.
    /// Everything written to this blob must then come through here.
    pub fn write_shared(&mut self, chunk: &std::sync::Arc<Vec<u8>>) -> std::io::Result<()> {
        assert!(
            self.digester.is_empty(),
            "write_shared after plain writes would hash out of order"
        );
        self.file.write_all(chunk)?;
        let background = self
            .background
            .get_or_insert_with(berth_oci::digest::BackgroundDigester::new);
        background.update(chunk.clone());
        self.start_writeback();
        Ok(())
    }

    /// Verifies, fsyncs and renames into place; returns the digest and size.
    pub fn commit(mut self, expect: Expect<'_>) -> Result<(Digest, u64)> {
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
        self.file.flush().ctx(|| "flushing blob".into())?;
        self.file
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
        let n = self.file.write(buf)?;
        self.digester.update(&buf[..n]);
        self.start_writeback();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Large blobs start their writeback every [`WRITEBACK_CHUNK`] (see there).
    fn start_writeback(&mut self) {
        let written = self.len();
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
