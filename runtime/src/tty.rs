//! Terminals for `run -t`: a pseudo-terminal whose slave is the container's stdio and
//! controlling terminal (and `/dev/console`), and whose master `berth run` connects to the
//! user's terminal: raw mode while the container runs (restored after), bytes copied both
//! ways, the window size passed on at start and on every SIGWINCH. Ctrl-C is a byte like any
//! other: the container's line discipline turns it into SIGINT for its foreground group.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

use crate::RuntimeError;

/// Another descriptor for the same end of the terminal.
fn duplicate(end: &OwnedFd) -> Result<OwnedFd, RuntimeError> {
    end.try_clone().map_err(|source| RuntimeError::Io {
        what: "duplicating the terminal".into(),
        source,
    })
}

fn setup(what: &str) -> impl FnOnce(nix::Error) -> RuntimeError + '_ {
    move |errno| RuntimeError::Setup {
        what: what.to_owned(),
        errno,
    }
}

/// An open pseudo-terminal pair.
#[derive(Debug)]
pub struct Terminal {
    master: OwnedFd,
    slave: OwnedFd,
    /// The slave's path on the host (`/dev/pts/N`), bound onto the container's /dev/console.
    pub slave_path: PathBuf,
    saved: Option<Termios>,
}

impl Terminal {
    /// Opens a pty sized like the user's terminal (when stdout is one; else 24×80, as a
    /// detached `docker run -t` gets).
    pub fn open() -> Result<Terminal, RuntimeError> {
        let size =
            crate::sys::linux::window_size(std::io::stdout().as_fd()).or(Some(nix::pty::Winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }));
        let pty =
            nix::pty::openpty(size.as_ref(), None).map_err(setup("opening a pseudo-terminal"))?;
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
            .map_err(|e| RuntimeError::Io {
                what: "naming the pseudo-terminal".into(),
                source: e,
            })?;
        Ok(Terminal {
            master: pty.master,
            slave: pty.slave,
            slave_path,
            saved: None,
        })
    }

    /// Hands the terminal to another process (`run -dt` to its monitor): the master and
    /// slave descriptors are made inheritable, and their numbers and the slave's path are
    /// returned as one string for [`Terminal::inherited`].
    pub fn hand_over(&self) -> Result<String, RuntimeError> {
        for fd in [&self.master, &self.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(setup("passing the terminal on"))?;
        }
        Ok(format!(
            "{},{},{}",
            self.master.as_raw_fd(),
            self.slave.as_raw_fd(),
            self.slave_path.display()
        ))
    }

    /// The terminal a parent handed over ([`Terminal::hand_over`]); its descriptors are
    /// made close-on-exec again here.
    pub fn inherited(handed: &str) -> Result<Terminal, RuntimeError> {
        let bad = || RuntimeError::Spec(format!("a handed-over terminal {handed:?}"));
        let mut parts = handed.splitn(3, ',');
        let mut fd = || -> Result<OwnedFd, RuntimeError> {
            let n: i32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let fd = crate::sys::linux::take_inherited_fd(n).ok_or_else(bad)?;
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(|_| bad())?;
            Ok(fd)
        };
        let master = fd()?;
        let slave = fd()?;
        let slave_path = PathBuf::from(parts.next().ok_or_else(bad)?);
        // Only terminals are taken.
        if !nix::unistd::isatty(&slave).unwrap_or(false) {
            return Err(bad());
        }
        Ok(Terminal {
            master,
            slave,
            slave_path,
            saved: None,
        })
    }

    /// The container's stdin, stdout and stderr: the slave, three times.
    pub fn slave_stdio(&self) -> Result<[std::process::Stdio; 3], RuntimeError> {
        let dup = || duplicate(&self.slave).map(std::process::Stdio::from);
        Ok([dup()?, dup()?, dup()?])
    }

    /// Puts the user's terminal (stdin) in raw mode until [`Terminal::restore`].
    pub fn raw_mode(&mut self) -> Result<(), RuntimeError> {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return Ok(());
        }; // not a terminal
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).map_err(setup("setting raw mode"))?;
        self.saved = Some(saved);
        Ok(())
    }

    /// Starts copying: container output to stdout (joined at the end), and with
    /// `interactive` stdin to the container (a thread left running: it ends with the process).
    pub fn start_copying(
        &self,
        interactive: bool,
    ) -> Result<std::thread::JoinHandle<()>, RuntimeError> {
        let clone = || duplicate(&self.master).map(std::fs::File::from);
        let mut from = clone()?;
        if interactive {
            let mut to = clone()?;
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(std::thread::spawn(move || {
            let mut out = std::io::stdout();
            let mut buf = [0u8; 4096];
            // EIO once the container's side is closed: the end.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        }))
    }

    /// Drops this process's copy of the slave (the container holds its own), so reads of the
    /// master end when the container does.
    pub fn close_slave(self) -> TerminalMaster {
        TerminalMaster {
            master: self.master,
            saved: self.saved,
        }
    }
}

/// The master side after the container started.
#[derive(Debug)]
pub struct TerminalMaster {
    master: OwnedFd,
    saved: Option<Termios>,
}

impl TerminalMaster {
    pub fn resize(&self) {
        if let Some(size) = crate::sys::linux::window_size(std::io::stdout().as_fd()) {
            crate::sys::linux::set_window_size(self.master.as_fd(), &size);
        }
    }

    pub fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &saved);
        }
    }
}

impl Drop for TerminalMaster {
    fn drop(&mut self) {
        self.restore();
    }
}
