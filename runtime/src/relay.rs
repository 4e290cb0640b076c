//! The container's stdio without a terminal (`run` in the foreground, `exec` without `-t`):
//! pipes that berth copies to and from its own descriptors 0, 1 and 2, never those
//! descriptors themselves. A descriptor a container holds can be reopened through
//! `/proc/self/fd/N` with other access than it was opened with (the host file berth's
//! output is appended to, read or truncated; a read-only input file written), and a terminal
//! kept by a process left behind could read what the user types at the host's shell after
//! berth returned, or write to it. A pipe of berth's gives only the pipe, and it is closed
//! when berth is done.
//!
//! - stdout and stderr: a pipe each, copied to berth's stdout and stderr, each in order. When
//!   berth's two are the same file, terminal or pipe (`2>&1`), one pipe serves both, so their
//!   interleaving is kept as the container wrote it. Where berth's is `/dev/null`, the
//!   container gets `/dev/null` of its own and nothing is copied.
//! - stdin: with `interactive`, a pipe fed from berth's stdin until its end (then closed, so
//!   the container reads EOF); else `/dev/null`. berth's stdin is only read: a terminal is
//!   left in the mode it is in.
//! - A write to berth's stdout or stderr that fails (its reader gone: `EPIPE`) closes that
//!   pipe, so the container's next write fails the same way (SIGPIPE).
//! - When the container (or exec'd command) has ended ([`Copying::finish`]), what its pipes
//!   hold then is copied, and then what still comes until they close, for at most
//!   [`DRAIN`]: a process it left behind may hold them open forever. Then berth's ends are
//!   closed.
//!
//! The copying threads run with the forwarded signals and SIGCHLD blocked, so only the
//! supervising thread receives them.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::RuntimeError;

/// How long the copy goes on, once the container has ended, for output still coming.
pub const DRAIN: Duration = Duration::from_millis(100);

/// The largest read from a pipe.
const CHUNK: usize = 64 << 10;

/// berth's side of the pipes, before the copying starts.
#[derive(Debug)]
pub struct Relay {
    /// The write end of the container's stdin pipe (`interactive`).
    stdin: Option<OwnedFd>,
    /// Read ends, each with the descriptor of berth's it is copied to (1 or 2).
    outputs: Vec<(OwnedFd, i32)>,
}

/// The copying threads; [`Copying::finish`] (or dropping it) ends them.
#[derive(Debug)]
pub struct Copying {
    /// Dropped to tell the threads the container has ended.
    stop: Option<OwnedFd>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn setup(what: &str) -> impl FnOnce(nix::Error) -> RuntimeError + '_ {
    move |errno| RuntimeError::Setup {
        what: what.to_owned(),
        errno,
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(setup("making the container's stdio pipes"))
}

/// Makes berth's own end of a pipe non-blocking (each end is an open file of its own: the
/// container's end is untouched).
fn nonblocking(fd: &OwnedFd) -> Result<(), RuntimeError> {
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map(drop)
        .map_err(setup("making the container's stdio pipes"))
}

fn dev_null(write: bool) -> Result<OwnedFd, RuntimeError> {
    let flags = if write {
        OFlag::O_WRONLY
    } else {
        OFlag::O_RDONLY
    };
    nix::fcntl::open(
        "/dev/null",
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(setup("opening /dev/null"))
}

/// What berth's descriptor `fd` is: `None` when it is closed or `/dev/null` (nothing to
/// copy), else its device and inode.
fn destination(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: only fstat'ed for the length of this call; 1 and 2 are not closed meanwhile.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let st = nix::sys::stat::fstat(borrowed).ok()?;
    let null = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
    (!null).then_some((st.st_dev, st.st_ino))
}

impl Relay {
    /// The pipes: berth's side, and the container's stdin, stdout and stderr (close-on-exec:
    /// the caller hands them to the init under 0, 1 and 2, and drops its copies once the
    /// init has them).
    pub fn new(interactive: bool) -> Result<(Relay, [OwnedFd; 3]), RuntimeError> {
        let (stdin, container_stdin) = if interactive {
            let (read, write) = pipe()?;
            nonblocking(&write)?;
            (Some(write), read)
        } else {
            (None, dev_null(false)?)
        };
        let mut outputs = Vec::new();
        let out = destination(1);
        let err = destination(2);
        let mut output = |to: i32| -> Result<OwnedFd, RuntimeError> {
            let (read, write) = pipe()?;
            nonblocking(&read)?;
            outputs.push((read, to));
            Ok(write)
        };
        let (container_stdout, container_stderr) = match (out, err) {
            (Some(o), Some(e)) if o == e => {
                let write = output(1)?;
                let again = write.try_clone().map_err(|source| RuntimeError::Io {
                    what: "duplicating the container's stdout".into(),
                    source,
                })?;
                (write, again)
            }
            (o, e) => (
                match o {
                    Some(_) => output(1)?,
                    None => dev_null(true)?,
                },
                match e {
                    Some(_) => output(2)?,
                    None => dev_null(true)?,
                },
            ),
        };
        Ok((
            Relay { stdin, outputs },
            [container_stdin, container_stdout, container_stderr],
        ))
    }

    /// Starts copying (no thread when there is nothing to copy). Call it once the
    /// container's ends are in the init (or, for a fork, in this process only until the
    /// parent drops them).
    pub fn start(self) -> Result<Copying, RuntimeError> {
        let mut copying = Copying {
            stop: None,
            threads: Vec::new(),
        };
        if self.stdin.is_none() && self.outputs.is_empty() {
            return Ok(copying);
        }
        let (stop_read, stop_write) = pipe()?;
        copying.stop = Some(stop_write);
        let stop_read = std::sync::Arc::new(stop_read);
        // The threads inherit this thread's mask: the forwarded signals blocked while they
        // start, then restored here.
        let mut blocked = nix::sys::signal::SigSet::empty();
        for s in crate::contract::FORWARDED {
            blocked.add(*s);
        }
        blocked.add(nix::sys::signal::Signal::SIGCHLD);
        let mut old = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&blocked),
            Some(&mut old),
        )
        .map_err(setup("blocking signals"))?;
        let spawn = |name: &str, job: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(256 << 10)
                .spawn(job)
                .map_err(|source| RuntimeError::Io {
                    what: "starting the stdio copy".into(),
                    source,
                })
        };
        let mut started = Ok(());
        if let Some(to) = self.stdin {
            let stop = stop_read.clone();
            match spawn("stdin", Box::new(move || copy_in(to, stop.as_fd()))) {
                Ok(t) => copying.threads.push(t),
                Err(e) => started = Err(e),
            }
        }
        if started.is_ok() && !self.outputs.is_empty() {
            let stop = stop_read.clone();
            let outputs = self.outputs;
            match spawn("output", Box::new(move || copy_out(outputs, stop.as_fd()))) {
                Ok(t) => copying.threads.push(t),
                Err(e) => started = Err(e),
            }
        }
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&old),
            None,
        );
        started.map(|()| copying)
    }
}

impl Copying {
    /// The container has ended: copies what is left (see the module's doc), then closes
    /// berth's ends of the pipes.
    pub fn finish(self) {}
}

impl Drop for Copying {
    fn drop(&mut self) {
        self.stop = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether `fd` is readable (or closed, or failed) within `timeout`, or `stop` fired first.
enum Ready {
    Fd,
    Stop,
}

/// Waits for `events` on `fd` or for `stop` (closed by [`Copying`]).
fn wait(fd: BorrowedFd<'_>, events: PollFlags, stop: BorrowedFd<'_>) -> Ready {
    loop {
        let mut fds = [
            PollFd::new(fd, events),
            PollFd::new(stop, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(_) => return Ready::Stop,
            Ok(_) => {}
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return Ready::Stop;
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            return Ready::Fd;
        }
    }
}

/// berth's stdin into the container's stdin pipe (non-blocking, berth's end), until
/// berth's stdin ends (the pipe is then closed: EOF in the container), the container no
/// longer reads it, or `stop`.
fn copy_in(to: OwnedFd, stop: BorrowedFd<'_>) {
    // SAFETY: berth's stdin stays open for the life of the process.
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    let mut buf = vec![0u8; CHUNK];
    loop {
        if let Ready::Stop = wait(stdin, PollFlags::POLLIN, stop) {
            return;
        }
        let n = match nix::unistd::read(stdin, &mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(_) => return,
        };
        let mut at = 0;
        while at < n {
            match nix::unistd::write(&to, &buf[at..n]) {
                Ok(k) => at += k,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if let Ready::Stop = wait(to.as_fd(), PollFlags::POLLOUT, stop) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// Writes all of `bytes` to berth's descriptor `to` (waiting when it is non-blocking and
/// full); an error means the rest is not wanted.
fn write_all(to: i32, mut bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: berth's stdout and stderr stay open for the life of the process.
    let fd = unsafe { BorrowedFd::borrow_raw(to) };
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(k) => bytes = &bytes[k..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what `from` (non-blocking) holds now, at most `limit` bytes, and copies it to `to`.
/// `Err(())`: the pipe is done with (its end, an error, or `to` refused the bytes); close it.
fn copy_chunk(from: &OwnedFd, to: i32, buf: &mut [u8], limit: usize) -> Result<usize, ()> {
    let limit = limit.min(buf.len());
    match nix::unistd::read(from, &mut buf[..limit]) {
        Ok(0) => Err(()),
        Ok(n) => write_all(to, &buf[..n]).map(|()| n).map_err(drop),
        Err(Errno::EINTR | Errno::EAGAIN) => Ok(0),
        Err(_) => Err(()),
    }
}

/// The bytes a pipe holds (`FIONREAD`).
fn pending(fd: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer given.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 { 0 } else { n.max(0) as usize }
}

/// The container's stdout and stderr pipes to berth's, until they close or, once `stop`
/// fired, what they held then has been copied and [`DRAIN`] has passed.
fn copy_out(outputs: Vec<(OwnedFd, i32)>, stop: BorrowedFd<'_>) {
    let mut open: Vec<(OwnedFd, i32)> = outputs;
    let mut buf = vec![0u8; CHUNK];
    let mut deadline: Option<Instant> = None;
    while !open.is_empty() {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO)
            }
        };
        let (ready, stopped) = {
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            if deadline.is_none() {
                fds.push(PollFd::new(stop, PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Err(Errno::EINTR) => continue,
                Err(_) => return,
                Ok(_) => {}
            }
            let fired = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            let ready: Vec<bool> = fds[..open.len()].iter().map(fired).collect();
            let stopped = deadline.is_none() && fired(&fds[open.len()]);
            (ready, stopped)
        };
        let mut done = vec![false; open.len()];
        for (i, (fd, to)) in open.iter().enumerate() {
            if ready[i] && copy_chunk(fd, *to, &mut buf, CHUNK).is_err() {
                done[i] = true;
            }
        }
        if stopped {
            // The container has ended: what the pipes hold now is its own output (and what
            // a process left behind wrote so far), copied whole however slow the reader.
            for (i, (fd, to)) in open.iter().enumerate() {
                let mut left = pending(fd);
                while !done[i] && left > 0 {
                    match copy_chunk(fd, *to, &mut buf, left) {
                        Ok(0) => break,
                        Ok(n) => left = left.saturating_sub(n),
                        Err(()) => done[i] = true,
                    }
                }
            }
            deadline = Some(Instant::now() + DRAIN);
        }
        let mut i = 0;
        open.retain(|_| {
            i += 1;
            !done[i - 1]
        });
    }
}
