//! `berth create`, `start` and `restart`: containers made and started through
//! [`crate::launch`].

use std::time::Duration;

use berth_store::Store;
use berth_store::containers::ContainerRecord;

use crate::UsageError;
use crate::containers::{alive, find, stop_one};
use crate::launch::Created;

/// `create`: the same flags as `run` (`-d` and `--rm` are kept for `start`).
pub fn create_command(
    store: std::sync::Arc<Store>,
    args: crate::launch::RunArgs,
) -> anyhow::Result<u8> {
    let (record, _) = crate::launch::create(&store, args)?;
    outln!("{}", record.id);
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Follow the container's output until it exits and exit with its code (as `attach`)
    #[arg(short, long)]
    attach: bool,
    /// Containers by name or ID (or a unique ID prefix)
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `start`: each container that is not running starts under a monitor, as `run -d` starts
/// one; a running one is left alone.
pub fn start(store: &std::sync::Arc<Store>, args: StartArgs) -> anyhow::Result<u8> {
    if args.attach && args.containers.len() > 1 {
        return Err(UsageError("start -a takes one container".into()).into());
    }
    for name in &args.containers {
        let record = find(store, name)?;
        let log = store.container_dir(&record.id)?.join("log");
        let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
        if !alive(&record) {
            start_detached(store, record)?;
        }
        if args.attach {
            return crate::follow::follow_from(store, name, offset);
        }
        outln!("{name}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct RestartArgs {
    /// Seconds to wait after SIGTERM before SIGKILL
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Containers by name or ID (or a unique ID prefix)
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `restart`: `stop`, then `start`.
pub fn restart(store: &std::sync::Arc<Store>, args: RestartArgs) -> anyhow::Result<u8> {
    for name in &args.containers {
        let record = find(store, name)?;
        if alive(&record) {
            stop_one(store, &record, Duration::from_secs(args.time))?;
        }
        start_detached(store, find(store, name)?)?;
        outln!("{name}");
    }
    Ok(0)
}

fn start_detached(store: &std::sync::Arc<Store>, record: ContainerRecord) -> anyhow::Result<()> {
    let dir = store.container_dir(&record.id)?;
    let created = Created::read(&dir)?;
    crate::launch::launch(store, record, &created, true).map(|_| ())
}
