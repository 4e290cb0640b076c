//! `berth rm CONTAINER...`: remove stopped containers (by name, ID or ID prefix).

use berth_store::Store;

use crate::commands::run::records;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove even a running container (its process is killed)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let all = records(store)?;
    let mut failed = false;
    for want in &args.containers {
        let found: Vec<_> = all
            .iter()
            .filter(|r| r.name.as_deref() == Some(want) || r.id.starts_with(want.as_str()))
            .collect();
        let record = match found.as_slice() {
            [one] => *one,
            [] => {
                eprintln!("Error: no such container: {want}");
                failed = true;
                continue;
            }
            _ => {
                eprintln!("Error: {want} matches {} containers", found.len());
                failed = true;
                continue;
            }
        };
        let alive = record.status == "running"
            && record
                .pid
                .is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if alive && !args.force {
            eprintln!("Error: container {want} is running: stop it first, or use -f");
            failed = true;
            continue;
        }
        if alive && let Some(pid) = record.pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        store.remove_container(&record.id)?;
        println!("{want}");
    }
    Ok(if failed { 1 } else { 0 })
}
