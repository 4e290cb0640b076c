//! `berth run IMAGE [COMMAND [ARG...]]`: an image's snapshots as overlay lower dirs plus a
//! per-container upper dir, run in the foreground by the runtime. Docker's rules for the
//! command (ENTRYPOINT + CMD, `--entrypoint` resets CMD), the environment (image ENV, then
//! `--env-file`, then `-e`; `PATH` defaulted, `HOSTNAME` set, `TERM=xterm` with `-t`), the
//! image (pulled when the store does not have it, `--pull missing`) and exit codes (the
//! container's own; 125 when berth failed; 126/127 when the command cannot run).
//!
//! The default network is `none` (only `lo`): berth has no bridge network yet, and an
//! isolated container is the safe default; `--network host` shares the host's.

use std::path::PathBuf;

use berth_runtime::spec::{NetworkMode, ProcessSettings, build_spec};
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

#[derive(clap::Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Remove the container when it exits, with the anonymous volumes it made (`-v /path`)
    #[arg(long)]
    pub rm: bool,
    /// Run a small init as PID 1 that reaps zombies and forwards signals
    #[arg(long)]
    pub init: bool,
    /// Keep stdin open (without it the container reads /dev/null)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal (raw mode, window size, Ctrl-C reach it)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run in the background; print the container ID (output goes to `berth logs`)
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Name the container ([a-zA-Z0-9][a-zA-Z0-9_.-]+, as Docker)
    #[arg(long, value_parser = container_name)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network: `none` (default, only lo), `host`, or `slirp4netns` (a network of its own
    /// with outbound access and no way to the host's loopback, without root)
    #[arg(long, default_value = "none", value_parser = ["none", "host", "slirp4netns"])]
    pub network: String,
    /// Container host name (default: the short container ID)
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// All capabilities, no masked or read-only paths, no seccomp filter
    #[arg(long)]
    pub privileged: bool,
    /// Bind mount a host path or a volume: SRC:DST[:ro|rw] (SRC absolute: a host path; else
    /// a volume's name, made if missing), or DST[:ro|rw] for a new anonymous volume
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Memory limit (`32m`, `1g`; binary units)
    #[arg(short = 'm', long, value_parser = parse_memory)]
    pub memory: Option<i64>,
    /// CPUs (`0.5` is half a core)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// A resource limit, NAME=SOFT[:HARD] (`nofile=1024:2048`; -1 is unlimited); limits not
    /// given are inherited from berth, as Docker's containers inherit the daemon's
    #[arg(long = "ulimit", value_parser = berth_runtime::spec::Rlimit::parse)]
    pub ulimits: Vec<berth_runtime::spec::Rlimit>,
    /// Add a line to /etc/hosts: HOST:IP
    #[arg(long = "add-host", value_name = "HOST:IP", value_parser = crate::run_flags::parse_add_host)]
    pub add_host: Vec<String>,
    /// A DNS server for /etc/resolv.conf (in place of the network's)
    #[arg(long, value_name = "IP", value_parser = crate::run_flags::parse_dns)]
    pub dns: Vec<String>,
    /// A DNS search domain for /etc/resolv.conf
    #[arg(long, value_name = "DOMAIN", value_parser = crate::run_flags::parse_dns_word)]
    pub dns_search: Vec<String>,
    /// A resolver option for /etc/resolv.conf (`ndots:2`)
    #[arg(long, value_name = "OPTION", value_parser = crate::run_flags::parse_dns_word)]
    pub dns_option: Vec<String>,
    /// Add a capability to Docker's default set (`NET_ADMIN`, `CAP_SYS_TIME`, `ALL`); the
    /// seccomp filter lets the calls it governs through, as Docker's profile does
    #[arg(long, value_name = "CAP", value_parser = crate::run_flags::parse_cap)]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (`ALL` drops every one)
    #[arg(long, value_name = "CAP", value_parser = crate::run_flags::parse_cap)]
    pub cap_drop: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS], OPTIONS from rw, ro, exec, noexec, size=N[kmg],
    /// mode=OCTAL (noexec,nosuid,nodev unless `exec`, as Docker)
    #[arg(long, value_name = "PATH[:OPTIONS]", value_parser = crate::run_flags::check_tmpfs)]
    pub tmpfs: Vec<String>,
    /// Attach a mount: type=bind|volume|tmpfs,source=SRC,target=DST[,readonly]
    /// [,tmpfs-size=N][,tmpfs-mode=OCTAL]
    #[arg(long, value_name = "SPEC", value_parser = crate::run_flags::check_mount)]
    pub mount: Vec<String>,
    #[command(flatten)]
    pub health: crate::health::Flags,
    /// Restart policy of a detached container: `no`, `on-failure[:MAX]` (after a non-zero
    /// exit, at most MAX times), `always`, `unless-stopped` (both: after every exit, until
    /// `stop` or `kill`)
    #[arg(long, default_value = "no", value_parser = parse_restart)]
    pub restart: String,
    /// When to pull the image: `missing` (when the store does not have it), `always` or
    /// `never`
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// The image to run, by name or ID
    pub image: String,
    /// The command and its arguments (default: the image's ENTRYPOINT and CMD)
    pub command: Vec<String>,
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

/// The environment the command line gives (`--env-file`, then `-e`), with `-e KEY` taken
/// from berth's own environment: read once, when the container is created, as Docker does.
fn given_env(args: &Args) -> anyhow::Result<Vec<String>> {
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
    Ok(given
        .into_iter()
        .filter_map(|kv| {
            if kv.contains('=') {
                Some(kv)
            } else {
                std::env::var(&kv).ok().map(|v| format!("{kv}={v}"))
            }
        })
        .collect())
}

/// The container's environment: the image's, then the command line's (`given`); `PATH`
/// defaulted, `HOSTNAME` set, `TERM=xterm` with `-t`.
pub fn environment(
    image_env: &[String],
    given: &[String],
    tty: bool,
    hostname: &str,
) -> Vec<String> {
    let mut env: Vec<String> = image_env.to_vec();
    fn set(env: &mut Vec<String>, kv: String) {
        let key = kv.split('=').next().unwrap_or_default().to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    for kv in given {
        set(&mut env, kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        set(&mut env, format!("PATH={}", berth_runtime::DEFAULT_PATH));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        set(&mut env, format!("HOSTNAME={hostname}"));
    }
    // As Docker: a terminal is an xterm unless the image or the command line says otherwise.
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        set(&mut env, "TERM=xterm".to_owned());
    }
    env
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
    let detach = args.detach;
    let (record, created) = create(&store, args)?;
    let id = record.id.clone();
    let code = crate::commands::start::launch(&store, record, &created, detach)?;
    if detach {
        outln!("{id}");
    }
    Ok(code)
}

/// What `create` keeps of a container besides its record (`containers/<id>/create.json`):
/// the command line, with what it read from berth's environment and from files resolved
/// and the volumes it made named, so that every start sets the container up the same way.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Created {
    pub args: Args,
    /// ENTRYPOINT + CMD with the command line's.
    pub command: Vec<String>,
    /// The environment the command line gives ([`given_env`]).
    pub env: Vec<String>,
    /// `-v` and `--mount` binds and volumes: host source (a volume's data directory, or a
    /// host path), container destination, read-only.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// `--tmpfs` and `--mount type=tmpfs`.
    #[serde(default)]
    pub tmpfs: Vec<berth_runtime::spec::Tmpfs>,
}

const CREATED_FILE: &str = "create.json";

impl Created {
    pub fn read(dir: &std::path::Path) -> anyhow::Result<Created> {
        let path = dir.join(CREATED_FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
    }
}

/// A new container (`create`, and the first half of `run`): the image resolved (pulled as
/// `--pull` says), the command and the volumes settled, a record in the `created` state and
/// [`Created`] beside it. Nothing runs yet.
pub fn create(
    store: &std::sync::Arc<Store>,
    args: Args,
) -> anyhow::Result<(ContainerRecord, Created)> {
    if args.rm && args.restart != "no" {
        return Err(UsageError(
            "conflicting options: --restart and --rm (a removed container cannot restart)".into(),
        )
        .into());
    }
    let image = image_to_run(store, &args)?;
    let store = &**store;
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
    // The health check is settled at every start (from the image and these flags); a
    // wrong one is refused now.
    crate::health::check(
        image.config.config.healthcheck.as_ref(),
        image.config.config.shell.as_deref(),
        &args.health,
    )
    .map_err(UsageError)?;
    let env = given_env(&args)?;
    let mut mounts = args
        .volumes
        .iter()
        .map(|v| parse_volume(store, v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tmpfs = Vec::new();
    for t in &args.tmpfs {
        tmpfs.push(crate::run_flags::parse_tmpfs(t).map_err(UsageError)?);
    }
    for m in &args.mount {
        use crate::run_flags::MountFlag;
        match crate::run_flags::parse_mount(m).map_err(UsageError)? {
            MountFlag::Tmpfs(t) => tmpfs.push(t),
            MountFlag::Bind {
                source,
                target,
                read_only,
            } => {
                // Unlike `-v`, `--mount` does not make a missing source, as Docker.
                if !std::path::Path::new(&source).exists() {
                    return Err(UsageError(format!(
                        "--mount {m:?}: the bind source {source} does not exist"
                    ))
                    .into());
                }
                mounts.push(VolumeMount {
                    source: PathBuf::from(source),
                    target,
                    read_only,
                    volume: None,
                });
            }
            MountFlag::Volume {
                source,
                target,
                read_only,
            } => {
                let spec = match source {
                    Some(name) if !name.starts_with('/') => format!("{name}:{target}"),
                    Some(path) => {
                        return Err(UsageError(format!(
                            "--mount {m:?}: a volume's source is a name, not a path ({path});                              use type=bind"
                        ))
                        .into());
                    }
                    None => target,
                };
                let mut v = parse_volume(store, &spec)?;
                v.read_only = read_only;
                mounts.push(v);
            }
        }
    }
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
    let id = berth_store::containers::random_id();
    let dir = store.create_container_dir(&id)?;
    let record = ContainerRecord {
        id: id.clone(),
        name: args.name.clone(),
        image: image.root.digest.clone(),
        image_name: args.image.clone(),
        command: command.clone(),
        created: crate::output::now_rfc3339(),
        status: "created".into(),
        exit_code: None,
        pid: None,
        pid_start: None,
        auto_remove: args.rm,
        memory: args.memory,
        mounts: shown,
        volumes,
        restart_count: 0,
        started_at: None,
        finished_at: None,
        oom_killed: false,
    };
    let created = Created {
        args,
        command,
        env,
        binds,
        tmpfs,
    };
    berth_store::files::write_mode(
        &dir.join(CREATED_FILE),
        &serde_json::to_vec(&created)?,
        berth_store::files::PRIVATE_FILE,
    )?;
    store.write_container_record(&record)?;
    Ok((record, created))
}

/// `--restart`: `no`, `always`, `unless-stopped` or `on-failure[:MAX]`.
pub fn parse_restart(s: &str) -> Result<String, String> {
    RestartPolicy::parse(s).map(|_| s.to_owned())
}

/// When a detached container is started again after it exits (Docker's restart policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    /// After a non-zero exit; at most this many times (0: no limit).
    OnFailure(u32),
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        match s {
            "" | "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure(0)),
            _ => match s.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) => Ok(RestartPolicy::OnFailure(n)),
                _ => Err(format!(
                    "invalid restart policy {s:?}: no, always, unless-stopped or on-failure[:MAX]"
                )),
            },
        }
    }

    /// Whether a container that exited with `code`, restarted `count` times so far, is
    /// started again; never after its user stopped it.
    pub fn restarts(self, code: i32, count: u32, stopped_by_user: bool) -> bool {
        !stopped_by_user
            && match self {
                RestartPolicy::No => false,
                RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
                RestartPolicy::OnFailure(max) => code != 0 && (max == 0 || count < max),
            }
    }
}

/// The bundle of a container about to start: its directory's `upper`, `work`, `rootfs` and
/// `/etc` files, and the spec, from what `create` kept and the image's config. Run at every
/// start, so a restarted container gets a fresh spec (and, with `-t`, its new terminal).
pub fn prepare(
    dir: &std::path::Path,
    created: &Created,
    image: &berth_store::Image,
    lowers: &[PathBuf],
    console: Option<PathBuf>,
) -> anyhow::Result<Bundle> {
    let args = &created.args;
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| id.chars().take(12).collect());
    let command = created.command.clone();
    let (hostname, binds) = (hostname.as_str(), &created.binds[..]);
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
        crate::run_flags::hosts_file(hostname, &args.add_host).as_bytes(),
        SHOWN_FILE,
    )?;
    let network: NetworkMode = args.network.parse().map_err(UsageError)?;
    files::write_mode(
        &dir.join("resolv.conf"),
        crate::run_flags::resolv_conf(
            &network.resolv_conf(),
            &args.dns,
            &args.dns_search,
            &args.dns_option,
        )
        .as_bytes(),
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
        env: environment(
            cfg.env.as_deref().unwrap_or_default(),
            &created.env,
            args.tty,
            hostname,
        ),
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
        tmpfs: created.tmpfs.clone(),
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
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
