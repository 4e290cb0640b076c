//! `berth run IMAGE [COMMAND [ARG...]]`: an image's snapshots as overlay lower dirs plus a
//! per-container upper dir, run in the foreground by the runtime. Docker's rules for the
//! command (ENTRYPOINT + CMD, `--entrypoint` resets CMD), the environment (image ENV, then
//! `--env-file`, then `-e`; `PATH` defaulted, `HOSTNAME` set, `TERM=xterm` with `-t`), the
//! image (pulled when the store does not have it, `--pull missing`) and exit codes (the
//! container's own; 125 when berth failed; 126/127 when the command cannot run).
//!
//! The default network is `bridge` as root (an address on berth's default bridge, outbound
//! access through NAT, `-p` publishing; see `crate::networking`), `none` rootless (only `lo`);
//! `--network host` shares the host's, `--network NAME` joins a user network.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use berth_runtime::spec::{ProcessSettings, build_spec};
use berth_runtime::{Bundle, RootfsSource};
use berth_store::Store;
use berth_store::containers::ContainerRecord;

use crate::UsageError;

/// A container name: Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, so a name is never a path
/// and never carries a terminal escape.
fn container_name(name: &str) -> Result<String, String> {
    let mut bytes = name.bytes();
    let valid = name.len() >= 2
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(
            "a container name is [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at least 2 characters), as in Docker"
                .into(),
        )
    }
}

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Remove the container when it exits, with the anonymous volumes it made (`-v /path`)
    #[arg(long)]
    rm: bool,
    /// Run a small init as PID 1 that reaps zombies and forwards signals
    #[arg(long)]
    init: bool,
    /// Keep stdin open (without it the container reads /dev/null)
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the container a terminal (raw mode, window size, Ctrl-C reach it)
    #[arg(short = 't', long)]
    tty: bool,
    /// Run in the background; print the container ID (output goes to `berth logs`)
    #[arg(short = 'd', long)]
    detach: bool,
    /// Name the container ([a-zA-Z0-9][a-zA-Z0-9_.-]+, as Docker)
    #[arg(long, value_parser = container_name)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long)]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User (name|uid[:group|gid])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Override the image's ENTRYPOINT
    #[arg(long)]
    entrypoint: Option<String>,
    /// Network: `bridge` (the default as root: berth's default bridge), a user network's
    /// name, `none` (the default rootless: only lo), `host`, or `slirp4netns` (a network of
    /// its own with outbound access and no way to the host's loopback, without root)
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Publish a container's port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]
    /// (bridge networks only)
    #[arg(short = 'p', long = "publish", value_parser = crate::networking::parse_publish)]
    publish: Vec<berth_store::networks::LeasePort>,
    /// Container host name (default: the short container ID)
    #[arg(long)]
    hostname: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// All capabilities, no masked or read-only paths, no seccomp filter
    #[arg(long)]
    privileged: bool,
    /// Bind mount a host path or a volume: SRC:DST[:ro|rw] (SRC absolute: a host path; else
    /// a volume's name, made if missing), or DST[:ro|rw] for a new anonymous volume
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Memory limit (`32m`, `1g`; binary units)
    #[arg(short = 'm', long, value_parser = parse_memory)]
    memory: Option<i64>,
    /// CPUs (`0.5` is half a core)
    #[arg(long)]
    cpus: Option<f64>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long)]
    pids_limit: Option<i64>,
    /// A resource limit, NAME=SOFT[:HARD] (`nofile=1024:2048`; -1 is unlimited); limits not
    /// given are inherited from berth, as Docker's containers inherit the daemon's
    #[arg(long = "ulimit", value_parser = berth_runtime::spec::Rlimit::parse)]
    ulimits: Vec<berth_runtime::spec::Rlimit>,
    /// When to pull the image: `missing` (when the store does not have it), `always` or
    /// `never`
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// The image to run, by name or ID
    image: String,
    /// The command and its arguments (default: the image's ENTRYPOINT and CMD)
    command: Vec<String>,
}

/// One `-v`: what is mounted where, and the volume it is, if it is one.
pub struct VolumeMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    pub volume: Option<String>,
}

/// `-v SRC:DST[:ro|rw]`: an absolute SRC is a host path (created as a directory if missing,
/// as Docker does); otherwise SRC names a volume kept under the store's `volumes/<name>/_data`
/// (made if missing). `-v DST[:ro|rw]` alone mounts a new anonymous volume (a random name,
/// Docker's `com.docker.volume.anonymous` label), as Docker does.
pub fn parse_volume(store: &Store, spec: &str) -> anyhow::Result<VolumeMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [dst] => (None, *dst, false),
        [dst, "ro"] if dst.starts_with('/') => (None, *dst, true),
        [dst, "rw"] if dst.starts_with('/') => (None, *dst, false),
        [src, dst] => (Some(*src), *dst, false),
        [src, dst, "ro"] => (Some(*src), *dst, true),
        [src, dst, "rw"] => (Some(*src), *dst, false),
        _ => {
            return Err(UsageError(format!(
                "invalid volume {spec:?}: expected SRC:DST[:ro|rw] or DST[:ro|rw]"
            ))
            .into());
        }
    };
    if !dst.starts_with('/') {
        return Err(UsageError(format!(
            "invalid volume {spec:?}: the destination must be an absolute path"
        ))
        .into());
    }
    let mount = |source, volume| VolumeMount {
        source,
        target: dst.to_owned(),
        read_only: ro,
        volume,
    };
    let Some(src) = src else {
        let name = berth_store::volumes::random_name();
        let labels = [(
            berth_store::volumes::ANONYMOUS_LABEL.to_owned(),
            String::new(),
        )]
        .into_iter()
        .collect();
        let (data, _, _) = store.create_volume(&name, labels)?;
        return Ok(mount(data, Some(name)));
    };
    if src.starts_with('/') {
        let p = PathBuf::from(src);
        if !p.exists() {
            std::fs::create_dir_all(&p)?;
        }
        return Ok(mount(p, None));
    }
    match store.volume(src) {
        Ok(data) => Ok(mount(data, Some(src.to_owned()))),
        Err(e @ berth_store::StoreError::InvalidName { .. }) => {
            Err(UsageError(e.to_string()).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// A size as Docker's `RAMInBytes` reads it: a number with an optional `b`, `k`, `m`, `g`,
/// `t` (binary multiples, an optional trailing `b`/`ib`); Docker's floor of 6 MiB applies.
pub fn parse_memory(s: &str) -> Result<i64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid size {s:?}: expected a number with an optional unit (k, m, g)")
    })?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    let bytes = (value * (1u64 << shift) as f64) as i64;
    if bytes < 6 << 20 {
        return Err(format!("invalid memory limit {s:?}: the minimum is 6m"));
    }
    Ok(bytes)
}

/// Docker's combination of ENTRYPOINT, CMD and the command line.
pub fn command_line(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    args: &[String],
    entrypoint_flag: Option<&str>,
) -> Vec<String> {
    let (entrypoint, cmd): (Vec<String>, Vec<String>) = match entrypoint_flag {
        Some(e) => (
            if e.is_empty() {
                vec![]
            } else {
                vec![e.to_owned()]
            },
            args.to_vec(),
        ),
        None => (
            entrypoint.unwrap_or_default().to_vec(),
            if args.is_empty() {
                cmd.unwrap_or_default().to_vec()
            } else {
                args.to_vec()
            },
        ),
    };
    entrypoint.into_iter().chain(cmd).collect()
}

fn environment(image_env: &[String], args: &Args, hostname: &str) -> anyhow::Result<Vec<String>> {
    let mut env: Vec<String> = image_env.to_vec();
    fn set(env: &mut Vec<String>, kv: String) {
        let key = kv.split('=').next().unwrap_or_default().to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    let mut given = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| UsageError(format!("reading env file {}: {e}", file.display())))?;
        given.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    given.extend(args.env.iter().cloned());
    for kv in given {
        if kv.contains('=') {
            set(&mut env, kv);
        } else if let Ok(v) = std::env::var(&kv) {
            set(&mut env, format!("{kv}={v}"));
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        set(&mut env, format!("PATH={}", berth_runtime::DEFAULT_PATH));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        set(&mut env, format!("HOSTNAME={hostname}"));
    }
    // As Docker: a terminal is an xterm unless the image or the command line says otherwise.
    if args.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        set(&mut env, "TERM=xterm".to_owned());
    }
    Ok(env)
}

/// The image to run: the store's, pulled first with `--pull always`, or when the store does
/// not have it with `--pull missing` (Docker's default).
fn image_to_run(store: &std::sync::Arc<Store>, args: &Args) -> anyhow::Result<berth_store::Image> {
    let found = match args.pull.as_str() {
        "always" => Err(berth_store::StoreError::NoSuchImage(args.image.clone())),
        _ => store.resolve(&args.image),
    };
    match found {
        Err(berth_store::StoreError::NoSuchImage(_)) if args.pull != "never" => {}
        other => return Ok(other?),
    }
    let reference = crate::wiring::parse_reference(&args.image)?;
    if args.pull == "missing" {
        errln!(
            "Unable to find image '{}' locally",
            crate::output::terminal_safe_text(&reference.familiar())
        );
    }
    crate::block_on(crate::transfer::pull_image(
        store.clone(),
        &reference,
        &crate::wiring::options(&Default::default()),
        None,
        false,
    ))
    .map_err(|e| e.context(format!("pulling {}", reference.familiar())))?;
    Ok(store.resolve(&reference.to_string())?)
}

pub fn run(store: std::sync::Arc<Store>, args: Args) -> anyhow::Result<u8> {
    let image = image_to_run(&store, &args)?;
    let store = &*store;
    let cfg = &image.config.config;
    let command = command_line(
        cfg.entrypoint.as_deref(),
        cfg.cmd.as_deref(),
        &args.command,
        args.entrypoint.as_deref(),
    );
    if command.is_empty() {
        return Err(UsageError(
            "no command specified: the image has no ENTRYPOINT or CMD; give one after the image"
                .into(),
        )
        .into());
    }
    if let Some(name) = &args.name
        && store
            .container_records()?
            .iter()
            .any(|r| r.name.as_deref() == Some(name))
    {
        return Err(UsageError(format!("the container name {name:?} is already in use; remove that container first (berth rm {name})")).into());
    }
    let mounts = args
        .volumes
        .iter()
        .map(|v| parse_volume(store, v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let volumes = mounts.iter().filter_map(|m| m.volume.clone()).collect();
    // What `ps` shows of them: a volume's name, a bind's host path.
    let shown = mounts
        .iter()
        .map(|m| {
            m.volume
                .clone()
                .unwrap_or_else(|| m.source.display().to_string())
        })
        .collect();
    let binds = mounts
        .into_iter()
        .map(|m| (m.source, m.target, m.read_only))
        .collect();
    let lowers = store.ensure_snapshots(&image)?;
    let id = berth_store::containers::random_id();
    let hostname = args.hostname.clone().unwrap_or_else(|| id[..12].to_owned());
    let dir = store.create_container_dir(&id)?;
    let record = ContainerRecord {
        id: id.clone(),
        name: args.name.clone(),
        image: image.root.digest.clone(),
        image_name: args.image.clone(),
        command: command.clone(),
        created: crate::output::now_rfc3339(),
        status: "running".into(),
        exit_code: None,
        pid: Some(std::process::id()),
        pid_start: crate::containers::start_time(std::process::id()),
        auto_remove: args.rm,
        memory: args.memory,
        mounts: shown,
        volumes,
    };
    store.write_container_record(&record)?;
    let terminal = if args.tty {
        Some(berth_runtime::tty::Terminal::open()?)
    } else {
        None
    };
    let console = terminal.as_ref().map(|t| t.slave_path.clone());
    let setup = Setup {
        lowers,
        command,
        hostname: hostname.clone(),
        binds,
        console,
    };
    let bundle = match prepare(store, &dir, &args, &image, setup)
        .and_then(|b| join_network(store, &id, &args, &hostname).map(|()| b))
    {
        Ok(b) => b,
        Err(e) => {
            finish(store, record, berth_runtime::contract::EXIT_SETUP)?;
            return Err(e);
        }
    };
    let exe = std::fs::read_link("/proc/self/exe")?;
    if args.detach {
        let log = berth_store::files::create_file(&dir.join("log"))?;
        let mut monitor = std::process::Command::new(&exe);
        // `-dt`: the terminal goes to the monitor, which copies what the container writes
        // to it into the log (with the terminal's CRLFs, as Docker's log of a `-t`
        // container). The container's stdin is the terminal, so a shell waits on it.
        if let Some(t) = &terminal {
            monitor.env(MONITOR_TTY, t.hand_over()?);
        }
        let child = monitor
            .arg("__monitor")
            .arg(&dir)
            .env("BERTH_ROOT", store.root())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()?;
        drop(terminal);
        // The monitor is our child and not yet waited for: its /proc entry stays while it
        // runs and as a zombie after.
        let running = ContainerRecord {
            pid: Some(child.id()),
            pid_start: crate::containers::start_time(child.id()),
            ..record
        };
        store.write_container_record(&running)?;
        // Return once the container has started, as `docker run -d` does.
        crate::containers::wait_for_init(child.id());
        outln!("{id}");
        return Ok(0);
    }
    let io = berth_runtime::RunIo {
        interactive: args.interactive,
        terminal,
    };
    let started = match crate::networking::start(store, &dir, &id) {
        Ok(s) => s,
        Err(e) => {
            finish(store, record, berth_runtime::contract::EXIT_SETUP)?;
            return Err(e);
        }
    };
    let result = store.unlocked(|| execute(&bundle, &exe, args.memory, io))?;
    if let Some(s) = started {
        s.finish(store)?;
    }
    finish(
        store,
        record,
        *result
            .as_ref()
            .unwrap_or(&berth_runtime::contract::EXIT_SETUP),
    )?;
    result.map(|c| c.clamp(0, 255) as u8)
}

/// Runs a prepared container in the foreground; says so when the OOM killer ended it.
fn execute(
    bundle: &Bundle,
    exe: &std::path::Path,
    memory: Option<i64>,
    io: berth_runtime::RunIo,
) -> anyhow::Result<i32> {
    let outcome = bundle.run(exe, io)?;
    if outcome.oom_killed {
        let limit = memory.map_or("none".into(), crate::output::human_size_binary);
        errln!("berth: the container ran out of memory (limit {limit}) and was killed");
    }
    Ok(outcome.exit_code)
}

/// Records how a container ended, or removes it and its anonymous volumes (`--rm`).
fn finish(store: &Store, record: ContainerRecord, code: i32) -> anyhow::Result<()> {
    if record.auto_remove {
        store.remove_container(&record.id)?;
        crate::containers::remove_anonymous_volumes(store, &record, false)?;
    } else {
        let done = ContainerRecord {
            status: "exited".into(),
            exit_code: Some(code),
            pid: None,
            pid_start: None,
            ..record
        };
        store.write_container_record(&done)?;
    }
    Ok(())
}

/// The environment variable that hands a `-dt` container's terminal to its monitor.
const MONITOR_TTY: &str = "BERTH_MONITOR_TTY";

/// `berth __monitor DIR`: runs a detached container (started by `run -d`) and records its end.
/// It holds no store lock while the container runs.
pub fn monitor(store: &Store, dir: &std::path::Path) -> anyhow::Result<u8> {
    let record = store
        .container_record(dir)
        .ok_or_else(|| anyhow::anyhow!("{}: no container record", dir.display()))?;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let bundle = Bundle {
        dir: dir.to_owned(),
    };
    let terminal = std::env::var(MONITOR_TTY)
        .ok()
        .map(|h| berth_runtime::tty::Terminal::inherited(&h))
        .transpose()?;
    let io = berth_runtime::RunIo {
        interactive: false,
        terminal,
    };
    let result = match crate::networking::start(store, dir, &record.id) {
        Ok(started) => {
            let result = store.unlocked(|| execute(&bundle, &exe, record.memory, io))?;
            if let Some(s) = started {
                s.finish(store)?;
            }
            result
        }
        Err(e) => Err(e),
    };
    let code = match &result {
        Ok(c) => *c,
        Err(e) => {
            errln!("berth: {e:#}");
            berth_runtime::contract::EXIT_SETUP
        }
    };
    let fresh = store.container_record(dir).unwrap_or(record);
    finish(store, fresh, code)?;
    Ok(0)
}

/// Records the bridge network `--network` names (and `-p`) for the container's starts; `-p`
/// without a bridge is refused.
fn join_network(store: &Store, id: &str, args: &Args, hostname: &str) -> anyhow::Result<()> {
    let (_, network) = crate::networking::mode(store, args.network.as_deref())?;
    let Some(network) = network else {
        if !args.publish.is_empty() {
            let why = if berth_runtime::userns::rootless() {
                "-p publishes ports of a bridge network, which needs root; rootless, \
                 --network slirp4netns gives outbound access but publishes no port"
            } else {
                "-p publishes ports of a bridge network: use --network bridge or a user network"
            };
            return Err(UsageError(why.into()).into());
        }
        return Ok(());
    };
    let mut names: Vec<String> = args.name.iter().cloned().collect();
    names.push(hostname.to_owned());
    names.push(id[..12].to_owned());
    names.dedup();
    crate::networking::request(store, id, &network, args.publish.clone(), names)
}

/// What a container is made of, besides the `run` flags and the image.
struct Setup {
    lowers: Vec<PathBuf>,
    command: Vec<String>,
    hostname: String,
    binds: Vec<(PathBuf, String, bool)>,
    /// The terminal's slave, for `-t`.
    console: Option<PathBuf>,
}

fn prepare(
    store: &Store,
    dir: &std::path::Path,
    args: &Args,
    image: &berth_store::Image,
    setup: Setup,
) -> anyhow::Result<Bundle> {
    let Setup {
        lowers,
        command,
        hostname,
        binds,
        console,
    } = setup;
    let (lowers, hostname, binds) = (&lowers[..], hostname.as_str(), &binds[..]);
    // The container's directory is private (the store's files.rs); below it, what the
    // container sees keeps the modes it shows inside: the upper dir is its `/`, the /etc
    // files are readable by its users.
    use berth_store::files::{self, PRIVATE_DIR, SHOWN_FILE, TREE_ROOT};
    for (sub, mode) in [
        ("upper", TREE_ROOT),
        ("work", PRIVATE_DIR),
        ("rootfs", PRIVATE_DIR),
    ] {
        files::ensure_dir_mode(&dir.join(sub), mode)?;
    }
    // The stand-in lower of an image without layers (see `RootfsSource::Overlay`); one inode
    // less per container otherwise.
    if lowers.is_empty() {
        files::ensure_dir_mode(&dir.join("empty"), TREE_ROOT)?;
    }
    files::write_mode(
        &dir.join("hostname"),
        format!("{hostname}\n").as_bytes(),
        SHOWN_FILE,
    )?;
    files::write_mode(
        &dir.join("hosts"),
        crate::networking::hosts_file(&[hostname.to_owned()], None, &[]).as_bytes(),
        SHOWN_FILE,
    )?;
    let (network, _) = crate::networking::mode(store, args.network.as_deref())?;
    files::write_mode(
        &dir.join("resolv.conf"),
        network.resolv_conf().as_bytes(),
        SHOWN_FILE,
    )?;
    let cfg = &image.config.config;
    let device_rules = !args.privileged && berth_runtime::cgroups::devices_enforceable();
    let asked: Vec<&str> = [
        ("memory", args.memory.is_some()),
        ("pids", args.pids_limit.is_some()),
        ("cpu", args.cpus.is_some()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(c, _)| c)
    .collect();
    let (cgroup_parent, granted) = cgroup_parent(&asked);
    let limits = !granted.is_empty();
    let settings = ProcessSettings {
        args: command,
        env: environment(cfg.env.as_deref().unwrap_or_default(), args, hostname)?,
        cwd: args
            .workdir
            .clone()
            .or_else(|| cfg.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
        user: args
            .user
            .clone()
            .or_else(|| cfg.user.clone())
            .unwrap_or_default(),
        hostname: hostname.to_owned(),
        network,
        attachment: None,
        read_only: args.read_only,
        privileged: args.privileged,
        etc_files: vec![
            (dir.join("hosts"), "/etc/hosts"),
            (dir.join("hostname"), "/etc/hostname"),
            (dir.join("resolv.conf"), "/etc/resolv.conf"),
        ],
        // A cgroup when there is a limit to enforce, device rules included (the PID
        // namespace already ends every process of the container with its PID 1).
        cgroup_path: if limits || device_rules {
            format!(
                "{}/{}",
                cgroup_parent.display(),
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        } else {
            String::new()
        },
        memory: args.memory.filter(|_| granted.contains(&"memory")),
        cpus: args.cpus.filter(|_| granted.contains(&"cpu")),
        pids_limit: args.pids_limit.filter(|_| granted.contains(&"pids")),
        rlimits: args.ulimits.clone(),
        device_rules,
        tmpfs: Vec::new(),
        binds: binds.to_vec(),
        overlays: Vec::new(),
        console,
        init: args.init,
        env_fds: Vec::new(),
    };
    if let Some(c) = args.cpus
        && !(c > 0.0 && c <= std::thread::available_parallelism().map_or(1, |n| n.get()) as f64)
    {
        return Err(UsageError(format!(
            "--cpus {c}: must be above 0 and at most the number of CPUs"
        ))
        .into());
    }
    if !settings.cwd.starts_with('/') {
        return Err(UsageError(format!(
            "the working directory {:?} is not absolute",
            settings.cwd
        ))
        .into());
    }
    let spec = build_spec(&dir.join("rootfs"), &settings)?;
    let source = RootfsSource::Overlay {
        lowers: lowers.to_vec(),
        upper: dir.join("upper"),
        work: dir.join("work"),
        // The upper of a `--rm` container goes with it: nothing to sync.
        volatile: args.rm,
    };
    Ok(Bundle::write(dir, &spec, &source)?)
}

/// Where a container's cgroup goes (relative to each hierarchy's mount) and which of the
/// `asked` controllers (memory, pids, cpu) it may limit with. As root: `berth`, all of them.
/// Rootless: `berth` under the cgroup v2 subtree delegated to the user
/// ([`berth_runtime::cgroups::delegation`]) with what that subtree has; a limit that cannot
/// be had is left out with a warning saying why, and the container runs all the same.
fn cgroup_parent<'a>(asked: &[&'a str]) -> (PathBuf, Vec<&'a str>) {
    use berth_runtime::cgroups;
    if !berth_runtime::userns::rootless() {
        return (PathBuf::from("berth"), asked.to_vec());
    }
    if asked.is_empty() {
        return (PathBuf::new(), Vec::new());
    }
    let flag = |c: &str| match c {
        "memory" => "--memory",
        "pids" => "--pids-limit",
        _ => "--cpus",
    };
    let flags = |cs: &[&str]| cs.iter().map(|c| flag(c)).collect::<Vec<_>>().join(", ");
    let sys = &mut berth_runtime::sys::linux::LinuxSys;
    let delegation = match cgroups::delegation(sys, &cgroups::owned_by_caller) {
        Ok(d) => d,
        Err(why) => {
            errln!(
                "berth: warning: rootless, and no cgroup is delegated to berth here ({why}): the \
                 limits are not enforced ({}); run berth in a delegated cgroup, e.g. \
                 `systemd-run --user --scope -p Delegate=yes berth run ...`",
                flags(asked)
            );
            return (PathBuf::new(), Vec::new());
        }
    };
    let (granted, refused): (Vec<&str>, Vec<&str>) = asked
        .iter()
        .partition(|c| delegation.controllers.iter().any(|d| d == *c));
    if !refused.is_empty() {
        errln!(
            "berth: warning: the delegated cgroup /{} has no {} controller: the limits are not \
             enforced ({})",
            delegation.rel.display(),
            refused.join(" or "),
            flags(&refused)
        );
    }
    if granted.is_empty() {
        return (PathBuf::new(), Vec::new());
    }
    match delegation.prepare(sys, &granted) {
        Ok(parent) => (parent, granted),
        Err(e) => {
            let why = match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            };
            errln!(
                "berth: warning: preparing the delegated cgroup /{}: {why}: the limits are not \
                 enforced ({})",
                delegation.rel.display(),
                flags(&granted)
            );
            (PathBuf::new(), Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn memory_sizes_like_docker() {
        assert_eq!(parse_memory("32m"), Ok(32 << 20));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("8MiB"), Ok(8 << 20));
        assert_eq!(parse_memory("10485760"), Ok(10 << 20));
        assert!(parse_memory("1m").unwrap_err().contains("minimum"));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("3x").is_err());
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_docker() {
        let ep = v(&["/entry"]);
        let cmd = v(&["default"]);
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), &[], None),
            v(&["/entry", "default"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), &v(&["x"]), None),
            v(&["/entry", "x"])
        );
        assert_eq!(
            command_line(None, Some(&cmd), &v(&["ls", "-l"]), None),
            v(&["ls", "-l"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), &[], Some("/other")),
            v(&["/other"])
        );
        assert_eq!(
            command_line(Some(&ep), Some(&cmd), &v(&["a"]), Some("")),
            v(&["a"])
        );
    }
}
