//! Following a detached container's log until it exits, passing signals on: `attach` and
//! `start -a`.

use std::io::{Read, Seek};
use std::time::Duration;

use berth_store::Store;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::containers::{alive, find, send};

/// The signals `--sig-proxy` passes on.
const PROXIED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// `start -a`: follows the log of a container just started, from `offset` (the log's
/// length before the start), so none of its output is missed.
pub fn follow_from(store: &Store, container: &str, offset: u64) -> anyhow::Result<u8> {
    attach(store, container, true, true, Some(offset))
}

/// Follows `container`'s log from `offset` (its end when `None`) until it exits.
pub fn attach(
    store: &Store,
    container: &str,
    sig_proxy: bool,
    no_stdin: bool,
    offset: Option<u64>,
) -> anyhow::Result<u8> {
    let r = find(store, container)?;
    if !alive(&r) {
        return Err(anyhow::anyhow!(
            "you cannot attach to a stopped container, start it first"
        ));
    }
    let path = store.container_dir(&r.id)?.join("log");
    let Ok(mut log) = std::fs::File::open(&path) else {
        return Err(anyhow::anyhow!(
            "container {} is not detached: only `run -d` containers can be attached (the output of the others goes to their `berth run`)",
            container
        ));
    };
    if !no_stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        errln!(
            "note: stdin is not connected: nothing can reach a detached container's stdin (--no-stdin hides this note)"
        );
    }
    log.seek(match offset {
        Some(at) => std::io::SeekFrom::Start(at),
        None => std::io::SeekFrom::End(0),
    })?;
    // The proxied signals are blocked and read from a signalfd between reads of the log.
    let signals = if sig_proxy {
        let mut mask = SigSet::empty();
        for s in PROXIED {
            mask.add(s);
        }
        mask.thread_block()?;
        Some(SignalFd::with_flags(
            &mask,
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?)
    } else {
        None
    };
    let id = r.id.clone();
    // The store lock is not held while following: gc and volume removal go on meanwhile.
    let ended = store.unlocked(|| follow(store, &id, &r, &mut log, signals.as_ref()))??;
    if !ended {
        // Stdout's reader went away: nothing left to show; the container goes on.
        return Ok(0);
    }
    // The runner has ended: it recorded the exit just before.
    let code = store
        .container_records()?
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.exit_code);
    match code {
        Some(Some(code)) => Ok(code.clamp(0, 255) as u8),
        Some(None) => Err(anyhow::anyhow!(
            "container {} ended without recording an exit code",
            container
        )),
        None => Err(anyhow::anyhow!(
            "container {} was removed (--rm): its exit code is gone with it",
            container
        )),
    }
}

/// Copies what the log gains to stdout until the container's runner has ended (`true`) or
/// stdout's reader has gone (`false`), passing on the signals that arrive.
fn follow(
    store: &Store,
    id: &str,
    first: &berth_store::containers::ContainerRecord,
    log: &mut std::fs::File,
    signals: Option<&SignalFd>,
) -> anyhow::Result<bool> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if let Some(fd) = signals {
            while let Some(info) = fd.read_signal()? {
                if let Ok(s) = Signal::try_from(info.ssi_signo as i32) {
                    send(first, s);
                }
            }
        }
        let n = log.read(&mut buf)?;
        if n > 0 {
            crate::stdio::write_stdout(&buf[..n])?;
            continue;
        }
        let current = store.container_records()?.into_iter().find(|c| c.id == id);
        if !current.as_ref().is_some_and(alive) {
            // One last read: output written just before the end.
            loop {
                let n = log.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                crate::stdio::write_stdout(&buf[..n])?;
            }
            return Ok(true);
        }
        if crate::stdio::stdout_gone() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
