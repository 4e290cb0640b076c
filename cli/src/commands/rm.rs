//! `berth rm [-f] [-v] CONTAINER...`: remove stopped containers (by name, ID or ID prefix); `-f`
//! kills a running one first; `-v` removes the anonymous volumes they made.

use std::time::Duration;

use berth_store::Store;

use crate::containers::{alive, find, stop_one};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove even a running container (it is killed)
    #[arg(short, long)]
    force: bool,
    /// Remove the anonymous volumes the container made (`run -v /path`); named ones stay
    #[arg(short, long)]
    volumes: bool,
    /// Containers by name or ID (or a unique ID prefix)
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let mut failed = false;
    for want in &args.containers {
        let record = match find(store, want) {
            Ok(r) => r,
            Err(e) => {
                errln!(
                    "Error: {}",
                    crate::output::terminal_safe_text(&format!("{e:#}"))
                );
                failed = true;
                continue;
            }
        };
        if alive(&record) {
            if !args.force {
                errln!("Error: container {want} is running: stop it first, or use -f");
                failed = true;
                continue;
            }
            stop_one(store, &record, Duration::ZERO)?;
            // What its network kept, when its monitor was killed with it.
            let _ = crate::networking::cleanup_stale(store);
        }
        store.remove_container(&record.id)?;
        if args.volumes {
            crate::containers::remove_anonymous_volumes(store, &record, true)?;
        }
        outln!("{want}");
    }
    Ok(if failed { 1 } else { 0 })
}
