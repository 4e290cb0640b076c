//! Starting a container ([`launch`]: the second half of `run`, and `start`), and
//! `__monitor`, the process that runs a detached container and applies its restart policy.
//!
//! A container is made once ([`super::create()`]: a record in the `created` state and
//! `create.json`) and may start many times: every start prepares the bundle again
//! from what `create` kept and runs it in the foreground (`run` without `-d`) or under a
//! monitor (`run -d`, `start`, `restart`). The monitor runs the container, and after each
//! exit asks the restart policy whether to start it again, waiting 100 ms, then twice as long
//! after every quick exit (one that ran under 10 s), at most a minute, as Docker does. `stop`
//! and `kill` mark the container as stopped by its user first
//! ([`Store::mark_container_stopped`]), so no policy starts it again until `start` or
//! `restart`. berth has no daemon: `always` and `unless-stopped` act alike, and nothing
//! starts containers when the machine boots (a `berth start` in a boot unit does).

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use berth_runtime::Bundle;
use berth_store::Store;
use berth_store::containers::ContainerRecord;

use super::args::RestartPolicy;
use super::bundle::prepare;
use super::create::Created;
use crate::UsageError;

/// The environment variable that hands a `-dt` container's terminal to its monitor.
const MONITOR_TTY: &str = "BERTH_MONITOR_TTY";

/// Starts a created (or exited) container: in the foreground, returning its exit code, or
/// under a monitor (`detach`), returning once it runs.
pub fn launch(
    store: &std::sync::Arc<Store>,
    record: ContainerRecord,
    created: &Created,
    detach: bool,
) -> anyhow::Result<u8> {
    let store = &**store;
    let dir = store.container_dir(&record.id)?;
    store.mark_container_stopped(&record.id, false)?;
    let image = store.image_by_manifest(&record.image)?;
    let lowers = store.ensure_snapshots(&image)?;
    let terminal = if created.args.tty {
        Some(berth_runtime::tty::Terminal::open()?)
    } else {
        None
    };
    let record = ContainerRecord {
        status: "running".into(),
        exit_code: None,
        // A start by the user begins the count of restarts anew, as Docker's.
        restart_count: 0,
        pid: Some(std::process::id()),
        pid_start: crate::containers::start_time(std::process::id()),
        started_at: Some(crate::output::now_rfc3339()),
        oom_killed: false,
        ..record
    };
    store.write_container_record(&record)?;
    let console = terminal.as_ref().map(|t| t.slave_path.clone());
    let bundle = match prepare(&dir, created, &image, &lowers, console) {
        Ok(b) => b,
        Err(e) => {
            finish(store, record, berth_runtime::contract::EXIT_SETUP, false)?;
            return Err(e);
        }
    };
    if detach {
        // The monitor names itself in the record before it starts the container: written
        // here, after the spawn, the record could overwrite the end a quick container's
        // monitor had already recorded.
        let child = spawn_monitor(store, &dir, terminal.as_ref(), false)?;
        drop(terminal);
        // Return once the container has started, as `docker run -d` does.
        crate::containers::wait_for_init(child);
        return Ok(0);
    }
    let exe = std::fs::read_link("/proc/self/exe")?;
    let io = berth_runtime::RunIo {
        interactive: created.args.interactive,
        terminal,
    };
    let checker = health_check(&dir, created, &image)?.map(|c| crate::health::start(&dir, c));
    let result = store.unlocked(|| execute(store, &bundle, &exe, created.args.memory, io))?;
    drop(checker);
    let (code, oom) = match &result {
        Ok((c, oom)) => (*c, *oom),
        Err(_) => (berth_runtime::contract::EXIT_SETUP, false),
    };
    let policy = RestartPolicy::parse(&created.args.restart).map_err(UsageError)?;
    let fresh = store.container_record(&dir).unwrap_or(record);
    if policy.restarts(
        code,
        fresh.restart_count,
        store.container_stopped_by_user(&dir),
    ) {
        // As Docker's daemon restarts a container whose `run` was attached: the command
        // returns the container's code, and a monitor goes on with the policy.
        let ended = ContainerRecord {
            status: "restarting".into(),
            exit_code: Some(code),
            finished_at: Some(crate::output::now_rfc3339()),
            oom_killed: oom,
            ..fresh
        };
        store.write_container_record(&ended)?;
        spawn_monitor(store, &dir, None, true)?;
    } else {
        finish(store, fresh, code, oom)?;
    }
    result.map(|(c, _)| c.clamp(0, 255) as u8)
}

/// The container's health check, from its image and its `--health-*` flags.
fn health_check(
    dir: &std::path::Path,
    created: &Created,
    image: &berth_store::Image,
) -> anyhow::Result<Option<crate::health::Check>> {
    let _ = std::fs::remove_file(crate::health::state_file(dir));
    let cfg = &image.config.config;
    crate::health::check(
        cfg.healthcheck.as_ref(),
        cfg.shell.as_deref(),
        &created.args.health,
    )
    .map_err(|e| UsageError(e).into())
}

/// Starts `berth __monitor DIR` in a process group of its own, its output into the
/// container's log; returns its PID.
fn spawn_monitor(
    store: &Store,
    dir: &std::path::Path,
    terminal: Option<&berth_runtime::tty::Terminal>,
    restarting: bool,
) -> anyhow::Result<u32> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let log = berth_store::files::append_file(&dir.join("log"))?;
    let mut monitor = std::process::Command::new(&exe);
    // `-dt`: the terminal goes to the monitor, which copies what the container writes to
    // it into the log (with the terminal's CRLFs, as Docker's log of a `-t` container). The
    // container's stdin is the terminal, so a shell waits on it.
    if let Some(t) = terminal {
        monitor.env(MONITOR_TTY, t.hand_over()?);
    }
    monitor.arg("__monitor").arg(dir);
    if restarting {
        monitor.arg("--restarting");
    }
    let child = monitor
        .env("BERTH_ROOT", store.root())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}

/// Runs a prepared container in the foreground; says so when the OOM killer ended it.
/// Returns the exit code and whether the OOM killer ended it.
/// On a bridge network, an address is leased for the run (`crate::networking::start`) and
/// given back after it.
fn execute(
    store: &Store,
    bundle: &Bundle,
    exe: &std::path::Path,
    memory: Option<i64>,
    io: berth_runtime::RunIo,
) -> anyhow::Result<(i32, bool)> {
    let id = bundle
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let attached = crate::networking::start(store, &bundle.dir, &id)?;
    let outcome = bundle.run(exe, io);
    if let Some(a) = attached {
        a.finish(store)?;
    }
    let outcome = outcome?;
    if outcome.oom_killed {
        let limit = memory.map_or("none".into(), crate::output::human_size_binary);
        errln!("berth: the container ran out of memory (limit {limit}) and was killed");
    }
    Ok((outcome.exit_code, outcome.oom_killed))
}

/// Records how a container ended, or removes it and its anonymous volumes (`--rm`).
fn finish(store: &Store, record: ContainerRecord, code: i32, oom: bool) -> anyhow::Result<()> {
    if record.auto_remove {
        store.remove_container(&record.id)?;
        crate::containers::remove_anonymous_volumes(store, &record, false)?;
    } else {
        let done = ContainerRecord {
            status: "exited".into(),
            exit_code: Some(code),
            pid: None,
            pid_start: None,
            finished_at: Some(crate::output::now_rfc3339()),
            oom_killed: oom,
            ..record
        };
        store.write_container_record(&done)?;
    }
    Ok(())
}

/// The first wait before a restart, and the longest.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const LONGEST_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long starts the waits over from [`FIRST_DELAY`].
const STEADY_RUN: Duration = Duration::from_secs(10);

/// `berth __monitor DIR [--restarting]`: runs a detached container whose bundle its starter
/// prepared (or, with `--restarting`, one that has just exited), then applies its restart
/// policy. It holds no store lock while the container runs.
pub fn monitor(store: &Store, dir: &std::path::Path, restarting: bool) -> anyhow::Result<u8> {
    let record = store
        .container_record(dir)
        .ok_or_else(|| anyhow::anyhow!("{}: no container record", dir.display()))?;
    // From now on the monitor is the container's runner: `stop`, `kill`, `exec` and `ps`
    // find the container through it.
    let me = std::process::id();
    let record = ContainerRecord {
        pid: Some(me),
        pid_start: crate::containers::start_time(me),
        ..record
    };
    store.write_container_record(&record)?;
    let created = Created::read(dir)?;
    let policy = RestartPolicy::parse(&created.args.restart).map_err(UsageError)?;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let bundle = Bundle {
        dir: dir.to_owned(),
    };
    let image = store.image_by_manifest(&record.image)?;
    let check = health_check(dir, &created, &image)?;
    let run_once = |terminal: Option<berth_runtime::tty::Terminal>| -> (i32, bool) {
        let io = berth_runtime::RunIo {
            interactive: false,
            terminal,
        };
        let _checker = check.clone().map(|c| crate::health::start(dir, c));
        match store
            .unlocked(|| execute(store, &bundle, &exe, created.args.memory, io))
            .map_err(anyhow::Error::from)
            .and_then(|r| r)
        {
            Ok(outcome) => outcome,
            Err(e) => {
                errln!("berth: {e:#}");
                (berth_runtime::contract::EXIT_SETUP, false)
            }
        }
    };
    let (mut code, mut oom) = if restarting {
        (record.exit_code.unwrap_or(0), record.oom_killed)
    } else {
        let terminal = std::env::var(MONITOR_TTY)
            .ok()
            .map(|h| berth_runtime::tty::Terminal::inherited(&h))
            .transpose()?;
        run_once(terminal)
    };
    let mut ran = Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        let Some(fresh) = store.container_record(dir) else {
            // Removed meanwhile (`rm -f`): nothing to record or restart.
            return Ok(0);
        };
        if !policy.restarts(
            code,
            fresh.restart_count,
            store.container_stopped_by_user(dir),
        ) {
            finish(store, fresh, code, oom)?;
            return Ok(0);
        }
        if ran.elapsed() >= STEADY_RUN {
            delay = FIRST_DELAY;
        }
        let waiting = ContainerRecord {
            status: "restarting".into(),
            exit_code: Some(code),
            finished_at: Some(crate::output::now_rfc3339()),
            oom_killed: oom,
            restart_count: fresh.restart_count + 1,
            ..fresh
        };
        store.write_container_record(&waiting)?;
        if !wait_unless_stopped(store, dir, delay) {
            finish(store, waiting, code, oom)?;
            return Ok(0);
        }
        delay = (delay * 2).min(LONGEST_DELAY);
        let image = store.image_by_manifest(&waiting.image)?;
        let lowers = store.ensure_snapshots(&image)?;
        let terminal = if created.args.tty {
            Some(berth_runtime::tty::Terminal::open()?)
        } else {
            None
        };
        let console = terminal.as_ref().map(|t| t.slave_path.clone());
        if let Err(e) = prepare(dir, &created, &image, &lowers, console) {
            errln!("berth: restarting: {e:#}");
            finish(store, waiting, berth_runtime::contract::EXIT_SETUP, false)?;
            return Ok(0);
        }
        store.write_container_record(&ContainerRecord {
            status: "running".into(),
            exit_code: None,
            started_at: Some(crate::output::now_rfc3339()),
            oom_killed: false,
            ..waiting
        })?;
        ran = Instant::now();
        (code, oom) = run_once(terminal);
    }
}

/// Sleeps `delay` unless the container is stopped meanwhile (`stop`, `kill`); `false` then.
/// The signals `stop` sends the monitor are held meanwhile, so they do not end it.
fn wait_unless_stopped(store: &Store, dir: &std::path::Path, delay: Duration) -> bool {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut held = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        held.add(s);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&held), None);
    let end = Instant::now() + delay;
    let stopped = || store.container_stopped_by_user(dir) || store.container_record(dir).is_none();
    while Instant::now() < end {
        if stopped() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    !stopped()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_as_docker() {
        let p = |s| RestartPolicy::parse(s).unwrap();
        assert!(!p("no").restarts(1, 0, false));
        assert!(p("always").restarts(0, 7, false));
        assert!(!p("always").restarts(0, 7, true));
        assert!(p("unless-stopped").restarts(0, 0, false));
        assert!(p("on-failure").restarts(1, 100, false));
        assert!(!p("on-failure").restarts(0, 0, false));
        assert!(p("on-failure:2").restarts(3, 1, false));
        assert!(!p("on-failure:2").restarts(3, 2, false));
        assert!(!p("on-failure:2").restarts(3, 0, true));
        for bad in ["sometimes", "on-failure:", "on-failure:-1", "on-failure:x"] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
    }
}
