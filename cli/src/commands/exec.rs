//! `berth exec [-d] [-i] [-t] [-u USER] [-e K=V] [-w DIR] CONTAINER CMD...`: a command in a
//! running container, as confined as the container's own processes (`berth_runtime::exec`:
//! its namespaces, cgroup, capabilities and seccomp filter, from the bundle's spec). Exit
//! code: the command's; 126/127 when it cannot be run or is not found; 128+N for signal N.

use berth_store::Store;

use crate::UsageError;
use crate::containers::{alive, find};

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Run in the background
    #[arg(short = 'd', long = "detach")]
    detach: bool,
    /// Keep stdin open (pass it to the command)
    #[arg(short = 'i', long = "interactive")]
    interactive: bool,
    /// Give the command a terminal
    #[arg(short = 't', long = "tty")]
    tty: bool,
    /// User (name or id, optionally :group), resolved in the container's /etc/passwd
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to take berth's own)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// The container (name, ID or unique ID prefix)
    container: String,
    /// The command and its arguments
    #[arg(required = true)]
    command: Vec<String>,
}

/// The environment given with `-e`: `KEY=VALUE`, or `KEY` for berth's own value (dropped
/// when berth has none, as Docker does).
fn given_env(args: &Args) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    for kv in &args.env {
        if kv.contains('=') {
            env.push(kv.clone());
        } else if let Ok(v) = std::env::var(kv) {
            env.push(format!("{kv}={v}"));
        }
    }
    env
}

pub fn run(store: &Store, args: Args) -> anyhow::Result<u8> {
    let record = find(store, &args.container)?;
    let not_running = || anyhow::anyhow!("container {} is not running", args.container);
    if !alive(&record) {
        return Err(not_running());
    }
    if args.detach && (args.tty || args.interactive) {
        return Err(UsageError("-d cannot be combined with -i or -t".into()).into());
    }
    if args.command.first().is_none_or(|c| c.is_empty()) {
        return Err(UsageError("no command given".into()).into());
    }
    let (Some(runner), Some(start)) = (record.pid, record.pid_start) else {
        return Err(not_running());
    };
    let dir = store.container_dir(&record.id)?;
    let (spec, _) =
        berth_runtime::init::read_bundle(&mut berth_runtime::sys::linux::LinuxSys, &dir)?;
    let target = berth_runtime::exec::ExecTarget::find(runner, start)
        .map_err(|e| anyhow::anyhow!("container {}: {e}", args.container))?;
    let mut env = given_env(&args);
    if args.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let settings = berth_runtime::exec::ExecSettings {
        args: args.command.clone(),
        env,
        user: args.user.clone(),
        cwd: args.workdir.clone(),
    };
    let io = if args.detach {
        berth_runtime::exec::ExecIo::Detached
    } else if args.tty {
        berth_runtime::exec::ExecIo::Terminal {
            interactive: args.interactive,
        }
    } else {
        berth_runtime::exec::ExecIo::Inherit {
            interactive: args.interactive,
        }
    };
    let exe = std::path::Path::new("/proc/self/exe");
    let code = store
        .unlocked(|| berth_runtime::exec::exec_in(exe, &target, &spec, &settings, io, None))??;
    Ok(code
        .unwrap_or(berth_runtime::contract::EXIT_SETUP)
        .clamp(0, 255) as u8)
}
