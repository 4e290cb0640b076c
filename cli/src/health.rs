//! Health checks: the image's `HEALTHCHECK` with the `--health-*` flags over it, run by a
//! detached container's monitor as Docker's daemon runs them. The check runs in the
//! container through [`berth_runtime::exec`] (as confined as the container's processes);
//! every `interval` (every `start interval` during the start period) after the container
//! starts, at most `timeout` long. Exit 0 is healthy; anything else, or a timeout, is a
//! failure; `retries` failures in a row make the container unhealthy, and failures within
//! the start period do not count. The state (`Status`, `FailingStreak` and the last five
//! results with up to 4 KiB of output each: Docker's `State.Health`) is
//! `containers/<id>/health.json`, replaced atomically after each check; `ps` and `inspect`
//! read it. A container without a check has no such file.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;
/// How much of a check's output is kept, and how many results.
const OUTPUT_LIMIT: usize = 4096;
const LOG_ENTRIES: usize = 5;
/// The shortest interval a check may have (Docker's minimum is 1 ms; berth's floor keeps a
/// typo from spinning the monitor).
const SHORTEST: Duration = Duration::from_millis(100);

/// A container's health check, settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The command: `CMD` as given, `CMD-SHELL` through the image's shell.
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

/// The `run` flags of a health check.
#[derive(clap::Args, Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Flags {
    /// Command to run to check health (through the image's shell, as HEALTHCHECK CMD-SHELL)
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between checks (`30s`, `1m`; Go durations)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_interval: Option<String>,
    /// Longest time a check may run
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_timeout: Option<String>,
    /// Failures in a row that make the container unhealthy
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start during which failures do not count
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_start_period: Option<String>,
    /// Time between checks during the start period
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub health_start_interval: Option<String>,
    /// Disable the image's HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
}

fn duration(ns: i64) -> Duration {
    Duration::from_nanos(ns.max(0) as u64)
}

/// A Go duration (`30s`, `1m30s`, `500ms`), at least [`SHORTEST`] (0 means the default).
pub fn parse_duration(s: &str) -> Result<String, String> {
    let ns = berth_builder::exec::config::go_duration(s)?;
    if ns != 0 && duration(ns) < SHORTEST {
        return Err(format!("{s:?}: at least {}ms", SHORTEST.as_millis()));
    }
    Ok(s.to_owned())
}

/// The check a container runs: the image's `Healthcheck` (`{"Test": [...], "Interval": ns,
/// ...}`) with the flags over it; `None` without a test, with `NONE`, or with
/// `--no-healthcheck`.
pub fn check(
    image: Option<&Value>,
    shell: Option<&[String]>,
    flags: &Flags,
) -> Result<Option<Check>, String> {
    if flags.no_healthcheck {
        if flags.health_cmd.is_some() {
            return Err("--no-healthcheck conflicts with --health-cmd".into());
        }
        return Ok(None);
    }
    let field = |k: &str| image.and_then(|h| h.get(k)).and_then(Value::as_i64);
    let flag = |f: &Option<String>| -> Result<Option<Duration>, String> {
        f.as_deref()
            .map(|s| berth_builder::exec::config::go_duration(s).map(duration))
            .transpose()
    };
    let or = |given: Option<Duration>, from_image: Option<i64>, default: Duration| {
        given
            .or(from_image.map(duration))
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    // An image's intervals are held to the same floor as the flags'.
    let at_least = |d: Duration| d.max(SHORTEST);
    let test: Vec<String> = match &flags.health_cmd {
        Some(cmd) => vec!["CMD-SHELL".into(), cmd.clone()],
        None => image
            .and_then(|h| h.get("Test"))
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let command = match test.split_first() {
        None => return Ok(None),
        Some((kind, _)) if kind == "NONE" => return Ok(None),
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, [line])) if kind == "CMD-SHELL" => {
            let mut c = shell
                .filter(|s| !s.is_empty())
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            c.push(line.clone());
            c
        }
        Some(_) => {
            return Err(format!(
                "a health check test Docker does not know: {test:?}"
            ));
        }
    };
    Ok(Some(Check {
        command,
        interval: at_least(or(
            flag(&flags.health_interval)?,
            field("Interval"),
            DEFAULT_INTERVAL,
        )),
        timeout: or(
            flag(&flags.health_timeout)?,
            field("Timeout"),
            DEFAULT_TIMEOUT,
        ),
        start_period: or(
            flag(&flags.health_start_period)?,
            field("StartPeriod"),
            Duration::ZERO,
        ),
        start_interval: at_least(or(
            flag(&flags.health_start_interval)?,
            field("StartInterval"),
            DEFAULT_START_INTERVAL,
        )),
        retries: flags
            .health_retries
            .or(field("Retries").map(|r| r.clamp(0, i64::from(u32::MAX)) as u32))
            .filter(|r| *r > 0)
            .unwrap_or(DEFAULT_RETRIES),
    }))
}

/// The file a container's health is kept in.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("health.json")
}

/// The status `ps` shows after "Up": ` (healthy)`, ` (unhealthy)`, ` (health: starting)`.
pub fn status_suffix(dir: &Path) -> String {
    let Ok(bytes) = std::fs::read(state_file(dir)) else {
        return String::new();
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    match v["Status"].as_str() {
        Some("healthy") => " (healthy)".into(),
        Some("unhealthy") => " (unhealthy)".into(),
        Some("starting") => " (health: starting)".into(),
        _ => String::new(),
    }
}

/// The health of one run of a container.
struct State {
    status: &'static str,
    failing_streak: u32,
    log: Vec<Value>,
}

impl State {
    fn write(&self, dir: &Path) {
        let v = json!({
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": self.log,
        });
        let tmp = dir.join("health.json.tmp");
        let written = berth_store::files::write_mode(
            &tmp,
            v.to_string().as_bytes(),
            berth_store::files::PRIVATE_FILE,
        )
        .and_then(|()| std::fs::rename(&tmp, state_file(dir)));
        if let Err(e) = written {
            errln!("berth: recording the container's health: {e}");
        }
    }
}

/// A running health checker: ends when dropped.
pub struct Checker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts checking the container in `dir`, run by this process (its monitor), from now on.
pub fn start(dir: &Path, check: Check) -> Checker {
    let stop = Arc::new(AtomicBool::new(false));
    let dir = dir.to_owned();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || run(&dir, &check, &flag));
    Checker {
        stop,
        thread: Some(thread),
    }
}

/// Sleeps `d` unless `stop` is set meanwhile; `false` then.
fn sleep(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    !stop.load(Ordering::Relaxed)
}

fn run(dir: &Path, check: &Check, stop: &AtomicBool) {
    let started = Instant::now();
    let mut state = State {
        status: "starting",
        failing_streak: 0,
        log: Vec::new(),
    };
    state.write(dir);
    loop {
        let starting = started.elapsed() < check.start_period;
        let wait = if starting {
            check.start_interval
        } else {
            check.interval
        };
        if !sleep(wait, stop) {
            return;
        }
        let begun = crate::output::now_rfc3339();
        let (code, output) = probe(dir, check);
        if stop.load(Ordering::Relaxed) {
            // The container ended meanwhile: the probe's failure is not the container's.
            return;
        }
        if code == 0 {
            state.status = "healthy";
            state.failing_streak = 0;
        } else if !(starting && state.status == "starting") {
            state.failing_streak += 1;
            if state.failing_streak >= check.retries {
                state.status = "unhealthy";
            }
        }
        state.log.push(json!({
            "Start": begun,
            "End": crate::output::now_rfc3339(),
            "ExitCode": code,
            "Output": output,
        }));
        if state.log.len() > LOG_ENTRIES {
            state.log.remove(0);
        }
        state.write(dir);
    }
}

/// Runs the check once in the container: its exit code (-1 when it timed out or could not
/// run) and its output, stdout and stderr together, at most [`OUTPUT_LIMIT`] bytes.
fn probe(dir: &Path, check: &Check) -> (i64, String) {
    let fail = |why: String| (-1, why);
    let spec = match berth_runtime::init::read_bundle(&mut berth_runtime::sys::linux::LinuxSys, dir)
    {
        Ok((spec, _)) => spec,
        Err(e) => return fail(format!("reading the container's spec: {e}")),
    };
    let me = std::process::id();
    let Some(start) = crate::containers::start_time(me) else {
        return fail("reading the monitor's start time".into());
    };
    let target = match berth_runtime::exec::ExecTarget::find(me, start) {
        Ok(t) => t,
        Err(e) => return fail(format!("finding the container's process: {e}")),
    };
    // The running binary itself, even when the file at its path was replaced since.
    let exe = std::path::Path::new("/proc/self/exe");
    let (reader, writer) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return fail(format!("making a pipe: {e}")),
    };
    let Ok(writer2) = writer.try_clone() else {
        return fail("duplicating a pipe".into());
    };
    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let done = done.clone();
        std::thread::spawn(move || collect(reader, &done))
    };
    let settings = berth_runtime::exec::ExecSettings {
        args: check.command.clone(),
        ..Default::default()
    };
    let io = berth_runtime::exec::ExecIo::Captured {
        stdout: std::process::Stdio::from(writer),
        stderr: std::process::Stdio::from(writer2),
    };
    let result =
        berth_runtime::exec::exec_in(exe, &target, &spec, &settings, io, Some(check.timeout));
    done.store(true, Ordering::Relaxed);
    let output = collector.join().unwrap_or_default();
    match result {
        Ok(Some(code)) => (i64::from(code), output),
        Ok(None) => fail(format!(
            "Health check exceeded timeout ({}s)",
            check.timeout.as_secs_f64()
        )),
        Err(e) => fail(format!("running the health check: {e}")),
    }
}

/// Reads the check's output until its end, or until `done` and nothing more is waiting (a
/// process the check left behind may hold the pipe open), keeping [`OUTPUT_LIMIT`] bytes.
fn collect(reader: OwnedFd, done: &AtomicBool) -> String {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    let mut file = std::fs::File::from(reader);
    loop {
        let ready = {
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0)
        };
        if ready == 0 {
            if done.load(Ordering::Relaxed) {
                break;
            }
            continue;
        }
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_go_over_the_images_check() {
        let image = json!({"Test": ["CMD", "/bin/check", "-q"], "Interval": 2_000_000_000i64, "Retries": 5});
        let c = check(Some(&image), None, &Flags::default())
            .unwrap()
            .unwrap();
        assert_eq!(c.command, ["/bin/check", "-q"]);
        assert_eq!((c.interval, c.retries), (Duration::from_secs(2), 5));
        assert_eq!(
            (c.timeout, c.start_period),
            (DEFAULT_TIMEOUT, Duration::ZERO)
        );
        let flags = Flags {
            health_cmd: Some("test -e /ok".into()),
            health_interval: Some("500ms".into()),
            health_retries: Some(1),
            ..Flags::default()
        };
        let shell = ["/bin/ash".to_owned(), "-c".to_owned()];
        let c = check(Some(&image), Some(&shell), &flags).unwrap().unwrap();
        assert_eq!(c.command, ["/bin/ash", "-c", "test -e /ok"]);
        assert_eq!((c.interval, c.retries), (Duration::from_millis(500), 1));
        let none = Flags {
            no_healthcheck: true,
            ..Flags::default()
        };
        assert_eq!(check(Some(&image), None, &none), Ok(None));
        assert_eq!(
            check(Some(&json!({"Test": ["NONE"]})), None, &Flags::default()),
            Ok(None)
        );
        assert_eq!(check(None, None, &Flags::default()), Ok(None));
        assert!(
            check(
                Some(&json!({"Test": ["WHAT", "x"]})),
                None,
                &Flags::default()
            )
            .is_err()
        );
        assert!(parse_duration("1ms").is_err());
        let fast = json!({"Test": ["CMD", "true"], "Interval": 1_000_000i64, "StartInterval": 1});
        let c = check(Some(&fast), None, &Flags::default())
            .unwrap()
            .unwrap();
        assert_eq!((c.interval, c.start_interval), (SHORTEST, SHORTEST));
        assert!(parse_duration("1m30s").is_ok());
    }
}
