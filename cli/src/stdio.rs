//! Berth's own stdout and stderr. Every line the CLI prints goes through `outln!`, `errln!`
//! and `err!` (or `write_stdout` and `Stdout` for bytes), never through `println!`, which
//! panics when its reader has gone; clippy's `disallowed_macros` (`cli/clippy.toml`) keeps
//! it that way.
//!
//! A reader that went away (`EPIPE`: `berth images | head -1`) is not the command's failure:
//! from then on that stream's output is dropped and the command finishes its work and exits
//! with its own status, without a word (a half-done `rmi` or `pull` would be worse than
//! output nobody reads). Commands whose only work is output (`logs -f`, `save` to stdout)
//! stop as soon as `stdout_gone` says so, and `main` ends them with status 0. Any other
//! failure to write stdout (a full disk under `> file`) is kept, the rest of stdout is
//! dropped, and `finish` reports it when the command ends (status 1), as coreutils do.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::Mutex;

/// What became of one of the two streams.
enum State {
    Open,
    /// Its reader went away: what is written is dropped.
    ReaderGone,
    /// A write failed otherwise: what is written is dropped; the error until `finish`.
    Failed(Option<io::Error>),
}

struct Stream(Mutex<State>);

impl Stream {
    const fn new() -> Stream {
        Stream(Mutex::new(State::Open))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes with `write` unless the stream is given up. `EPIPE` gives it up as
    /// `ReaderGone` and comes back as `StdoutGone`; another error gives it up as `Failed`
    /// and comes back as it is, kept for `finish` only when `keep` says so.
    fn write(&self, keep: bool, write: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.state();
        match &*state {
            State::Open => {}
            State::ReaderGone => return Err(gone()),
            State::Failed(_) => return Err(io::Error::other("an earlier write failed")),
        }
        match write() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                *state = State::ReaderGone;
                Err(gone())
            }
            Err(e) if keep => {
                let shown = io::Error::new(e.kind(), e.to_string());
                *state = State::Failed(Some(e));
                Err(shown)
            }
            Err(e) => {
                *state = State::Failed(None);
                Err(e)
            }
        }
    }
}

static STDOUT: Stream = Stream::new();
static STDERR: Stream = Stream::new();

/// Writes formatted text to stdout (flushed: a line reaches a pipe when it is printed).
pub fn print_out(args: fmt::Arguments<'_>) {
    let _ = STDOUT.write(true, || {
        let mut out = io::stdout().lock();
        out.write_fmt(args)?;
        out.flush()
    });
}

/// Writes formatted text to stderr; a failure drops the rest of stderr, silently (there is
/// nowhere left to say so).
pub fn print_err(args: fmt::Arguments<'_>) {
    let _ = STDERR.write(false, || {
        let mut err = io::stderr().lock();
        err.write_fmt(args)?;
        err.flush()
    });
}

/// Writes bytes to stdout, for a command that streams: `StdoutGone` once the reader has
/// gone, so it can stop.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    STDOUT.write(false, || {
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    })
}

/// Whether stdout's reader has gone: a write found it gone, or, for a pipe or socket whose
/// reader closed while nothing was written, the kernel says so now.
pub fn stdout_gone() -> bool {
    let mut state = STDOUT.state();
    match &*state {
        State::ReaderGone => return true,
        State::Failed(_) => return false,
        State::Open => {}
    }
    let stdout = io::stdout();
    let mut fds = [nix::poll::PollFd::new(
        stdout.as_fd(),
        nix::poll::PollFlags::POLLOUT,
    )];
    let closed = matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0].revents().is_some_and(|r| {
            r.intersects(nix::poll::PollFlags::POLLERR | nix::poll::PollFlags::POLLHUP)
        });
    if closed {
        *state = State::ReaderGone;
    }
    closed
}

/// A writer on stdout for commands that stream (`save` to stdout); its error once the reader
/// has gone is `StdoutGone`.
#[derive(Debug)]
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = 0;
        STDOUT.write(false, || {
            n = io::stdout().lock().write(buf)?;
            Ok(())
        })?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        STDOUT.write(false, || io::stdout().lock().flush())
    }
}

/// The error of a write to stdout once its reader has gone.
fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, StdoutGone)
}

/// Stdout's reader has gone.
#[derive(Debug, thiserror::Error)]
#[error("stdout's reader has gone")]
pub struct StdoutGone;

/// Whether `e` is only a command stopping because stdout's reader went away.
pub fn is_stdout_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StdoutGone>()
            || c.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutGone>())
    })
}

/// At the end of a command: stdout flushed, and the first failure to write it other than
/// its reader going away.
pub fn finish() -> io::Result<()> {
    let _ = STDOUT.write(true, || io::stdout().lock().flush());
    match &mut *STDOUT.state() {
        State::Failed(e) => e.take().map_or(Ok(()), Err),
        _ => Ok(()),
    }
}

/// `println!` for berth's stdout.
macro_rules! outln {
    () => {
        $crate::stdio::print_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdio::print_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` for berth's stderr.
macro_rules! errln {
    () => {
        $crate::stdio::print_err(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdio::print_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` for berth's stderr.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::stdio::print_err(format_args!($($arg)*))
    };
}
