//! `berth logs|stop|kill|wait CONTAINER`: acting on containers through their records. A
//! container's record names the process running it (`berth run`, or the monitor of `run -d`):
//! signals sent to that process reach the container's PID 1; SIGKILL goes to the container's
//! init (the process's child), whose death ends PID 1, so the runner still records the exit
//! and removes the cgroup.

use std::io::{Read, Seek, Write};
use std::time::{Duration, Instant};

use berth_store::Store;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::UsageError;
use crate::commands::run::{ContainerRecord, records};

/// A container by name, ID or unique ID prefix.
pub fn find(store: &Store, want: &str) -> anyhow::Result<ContainerRecord> {
    let all = records(store)?;
    let found: Vec<_> = all
        .into_iter()
        .filter(|r| r.name.as_deref() == Some(want) || r.id.starts_with(want))
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(anyhow::anyhow!("no such container: {want}")),
        n => Err(UsageError(format!("{want} matches {n} containers: use more of the ID")).into()),
    }
}

pub fn alive(r: &ContainerRecord) -> bool {
    r.status == "running"
        && r.pid
            .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
}

/// The container's init: the runner's child.
pub fn init_of(runner: u32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{runner}/task/{runner}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits (up to 2 s) for a runner to have started the container's init.
pub fn wait_for_init(runner: u32) -> Option<i32> {
    for _ in 0..200 {
        if let Some(init) = init_of(runner) {
            return Some(init);
        }
        if !std::path::Path::new(&format!("/proc/{runner}")).exists() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Sends a signal to the container: through its runner, which forwards it to PID 1; SIGKILL
/// (which cannot be forwarded) to the container's init, never to the runner, so the runner
/// still records the end.
fn send(r: &ContainerRecord, signal: Signal) {
    let Some(pid) = r.pid else { return };
    let target = if signal == Signal::SIGKILL {
        match wait_for_init(pid) {
            Some(init) => init,
            None => return, // the container has already ended
        }
    } else {
        pid as i32
    };
    let _ = nix::sys::signal::kill(Pid::from_raw(target), signal);
}

/// Waits until the runner has exited; `false` on timeout.
fn wait_exit(r: &ContainerRecord, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if !r
            .pid
            .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// SIGTERM, then SIGKILL after `grace`; returns once the runner has recorded the end.
pub fn stop_one(r: &ContainerRecord, grace: Duration) {
    if !alive(r) {
        return;
    }
    send(r, Signal::SIGTERM);
    if !wait_exit(r, grace) {
        send(r, Signal::SIGKILL);
        wait_exit(r, Duration::from_secs(10));
    }
}

pub fn stop(store: &Store, args: StopArgs) -> anyhow::Result<u8> {
    for name in &args.containers {
        stop_one(&find(store, name)?, Duration::from_secs(args.time));
        println!("{name}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal to send (name like KILL, TERM, SIGHUP, or a number)
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

fn parse_signal(s: &str) -> Result<Signal, UsageError> {
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| UsageError(format!("invalid signal {s}")));
    }
    name.parse::<Signal>()
        .map_err(|_| UsageError(format!("invalid signal {s}")))
}

pub fn kill(store: &Store, args: KillArgs) -> anyhow::Result<u8> {
    let signal = parse_signal(&args.signal)?;
    for name in &args.containers {
        let r = find(store, name)?;
        if !alive(&r) {
            return Err(anyhow::anyhow!("container {name} is not running"));
        }
        send(&r, signal);
        println!("{name}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Prints each container's exit code once it has stopped.
pub fn wait(store: &Store, args: WaitArgs) -> anyhow::Result<u8> {
    let current = |id: &str| -> anyhow::Result<Option<ContainerRecord>> {
        Ok(records(store)?.into_iter().find(|r| r.id == id))
    };
    for name in &args.containers {
        let id = find(store, name)?.id;
        let code = loop {
            let Some(r) = current(&id)? else {
                return Err(anyhow::anyhow!("container {name} was removed"));
            };
            if r.status == "exited" {
                break r.exit_code.unwrap_or(-1);
            }
            if !alive(&r) {
                // The runner is gone: it wrote the record just before exiting, so read it
                // again; a runner killed before recording leaves no code (-1).
                break current(&id)?.and_then(|r| r.exit_code).unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        println!("{code}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the container stops
    #[arg(short = 'f', long)]
    follow: bool,
    container: String,
}

pub fn logs(store: &Store, args: LogsArgs) -> anyhow::Result<u8> {
    let r = find(store, &args.container)?;
    let path = store.containers_dir().join(&r.id).join("log");
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            return Err(anyhow::anyhow!(
                "container {} has no log: only detached containers (run -d) keep one",
                args.container
            ));
        }
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !args.follow || !alive(&find(store, &r.id).unwrap_or_else(|_| r.clone())) {
            // One last read: output written just before the end.
            let pos = file.stream_position()?;
            file.seek(std::io::SeekFrom::Start(pos))?;
            let n = file.read(&mut buf)?;
            out.write_all(&buf[..n])?;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(0)
}
