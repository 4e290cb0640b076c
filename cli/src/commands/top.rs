//! `berth top CONTAINER [ps OPTIONS]`: the container's processes as `docker top` shows them:
//! the host's `ps` run with the options (default `-ef`: UID PID PPID C STIME TTY TIME CMD),
//! its rows kept where the PID is one of the container's (PID 1, found through its runner
//! with pidfds and start times, and every descendant).

use berth_store::Store;

use crate::containers::{alive, find};

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// The container (name, ID or unique ID prefix)
    container: String,
    /// Options for ps (default: -ef)
    #[arg(allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let record = find(store, &args.container)?;
    let not_running = || anyhow::anyhow!("container {} is not running", args.container);
    let (true, Some(pid), Some(start)) = (alive(&record), record.pid, record.pid_start) else {
        return Err(not_running());
    };
    let target = berth_runtime::exec::ExecTarget::find(pid, start).map_err(|_| not_running())?;
    let pids: std::collections::HashSet<String> =
        target.processes().iter().map(u32::to_string).collect();
    let options = if args.ps_options.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.ps_options.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&options)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("running ps: {e}"))?;
    if !out.status.success() {
        return Err(anyhow::anyhow!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|h| h == "PID") else {
        return Err(anyhow::anyhow!(
            "ps {} shows no PID column",
            options.join(" ")
        ));
    };
    outln!("{header}");
    for line in lines {
        if line
            .split_whitespace()
            .nth(column)
            .is_some_and(|p| pids.contains(p))
        {
            outln!("{}", crate::output::terminal_safe_text(line));
        }
    }
    Ok(0)
}
