//! `berth logs|stop|kill|wait CONTAINER`: acting on containers through their records
//! ([`crate::containers`] finds them and signals them safely).

use std::io::{Read, Seek};
use std::time::Duration;

use berth_store::Store;
use berth_store::containers::ContainerRecord;
use nix::sys::signal::Signal;

use crate::UsageError;
use crate::containers::{alive, find, send, stop_one};

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Containers by name or ID (or a unique ID prefix)
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(store: &Store, args: StopArgs) -> anyhow::Result<u8> {
    for name in &args.containers {
        let r = find(store, name)?;
        stop_one(store, &r, Duration::from_secs(args.time))?;
        outln!("{name}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal to send (name like KILL, TERM, SIGHUP, or a number)
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    /// Containers by name or ID (or a unique ID prefix)
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
        // As Docker: a killed container is not restarted by its policy.
        store.mark_container_stopped(&r.id, true)?;
        send(&r, signal);
        outln!("{name}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// Containers by name or ID (or a unique ID prefix)
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Prints each container's exit code once it has stopped.
pub fn wait(store: &Store, args: WaitArgs) -> anyhow::Result<u8> {
    let current = |id: &str| -> anyhow::Result<Option<ContainerRecord>> {
        Ok(store.container_records()?.into_iter().find(|r| r.id == id))
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
        outln!("{code}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the container stops
    #[arg(short = 'f', long)]
    follow: bool,
    /// The container by name or ID (or a unique ID prefix)
    container: String,
}

pub fn logs(store: &Store, args: LogsArgs) -> anyhow::Result<u8> {
    let r = find(store, &args.container)?;
    let path = store.container_dir(&r.id)?.join("log");
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => {
            return Err(anyhow::anyhow!(
                "container {} has no log: only detached containers (run -d) keep one",
                args.container
            ));
        }
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            crate::stdio::write_stdout(&buf[..n])?;
            continue;
        }
        if !args.follow || !alive(&find(store, &r.id).unwrap_or_else(|_| r.clone())) {
            // One last read: output written just before the end.
            let pos = file.stream_position()?;
            file.seek(std::io::SeekFrom::Start(pos))?;
            let n = file.read(&mut buf)?;
            crate::stdio::write_stdout(&buf[..n])?;
            break;
        }
        // A reader that went away while the container is quiet ends `-f` too.
        if crate::stdio::stdout_gone() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(0)
}
