//! Locks between `berth` processes sharing one store: paths in, held locks out.
//!
//! # Lock order
//!
//! 1. `locks/store.lock` — every process that reads or writes content holds it **shared**
//!    for as long as its [`crate::Store`] lives; gc (`rmi`'s cleanup, `system prune`) and the
//!    start-up cleaning of `tmp/` take it **exclusive**. A blob or snapshot therefore never
//!    disappears under a process that might reference it.
//! 2. `locks/index.lock` — **exclusive** around every read-modify-write of `index.json`,
//!    always taken while holding (1), never the other way round.
//!
//! Converting (1) from shared to exclusive is not atomic (see [`FileLock::try_upgrade`]):
//! callers convert only at points where they have nothing in flight under `tmp/`.
//!
//! Locks are `flock(2)` on files that are never deleted, so a killed process releases its
//! locks with its file descriptors and nothing is ever stale. `flock` needs only an open
//! descriptor, read-only will do, so a lock another user could open is one they could hold
//! forever: lock files are private, in private directories, and a symlink, a non-regular
//! file or another user's file in a lock's place is refused ([`crate::files::open_lock`]).

use std::fs::File;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::error::{IoContext, Result};

/// A held `flock`; released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    fn open(path: &Path) -> Result<File> {
        crate::files::open_lock(path)
    }

    pub fn shared(path: &Path) -> Result<FileLock> {
        let file = FileLock::open(path)?;
        flock(&file, FlockOperation::LockShared).ctx(|| format!("locking {}", path.display()))?;
        Ok(FileLock { file })
    }

    pub fn exclusive(path: &Path) -> Result<FileLock> {
        let file = FileLock::open(path)?;
        flock(&file, FlockOperation::LockExclusive)
            .ctx(|| format!("locking {}", path.display()))?;
        Ok(FileLock { file })
    }

    /// An exclusive lock if nobody holds one; `None` when busy.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>> {
        let file = FileLock::open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(std::io::Error::from(e)).ctx(|| format!("locking {}", path.display())),
        }
    }

    /// Converts to exclusive without waiting; `false` when another process holds it, and
    /// then the lock is shared again.
    ///
    /// A `flock` conversion is not atomic: Linux drops the shared lock before it tries for
    /// the exclusive one, and a failed non-blocking try leaves *no* lock held. So on failure
    /// the shared lock is taken again before returning; without that, this process would go
    /// on writing while another one, finding the store free, cleans `tmp/` under it (the
    /// concurrency test caught exactly that).
    pub fn try_upgrade(&self) -> Result<bool> {
        match flock(&self.file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                flock(&self.file, FlockOperation::LockShared)
                    .ctx(|| "re-taking the store lock".into())?;
                Ok(false)
            }
            Err(e) => Err(crate::StoreError::io("upgrading the store lock", e.into())),
        }
    }

    /// Converts to exclusive, waiting for other holders.
    pub fn upgrade(&self) -> Result<()> {
        flock(&self.file, FlockOperation::LockExclusive).ctx(|| "upgrading the store lock".into())
    }

    /// Releases the lock entirely (`unlock`), to be taken again with [`FileLock::relock_shared`].
    pub fn unlock(&self) -> Result<()> {
        flock(&self.file, FlockOperation::Unlock).ctx(|| "releasing the store lock".into())
    }

    /// Takes the shared lock again after [`FileLock::unlock`].
    pub fn relock_shared(&self) -> Result<()> {
        flock(&self.file, FlockOperation::LockShared).ctx(|| "taking the store lock".into())
    }

    /// Converts back to shared.
    pub fn downgrade(&self) -> Result<()> {
        flock(&self.file, FlockOperation::LockShared).ctx(|| "downgrading the store lock".into())
    }
}
