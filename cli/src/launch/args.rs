//! The flags of `run` and `create` ([`RunArgs`]) and what reads them: container names,
//! `-v`, `--memory`, `--restart`.

use std::path::PathBuf;

use berth_store::Store;

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
pub struct RunArgs {
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
    /// Network: `bridge` (the default as root: berth's default bridge), a user network's
    /// name, `none` (the default rootless: only lo), `host`, or `slirp4netns` (a network of
    /// its own with outbound access and no way to the host's loopback, without root)
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Publish a container's port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]
    /// (bridge networks only)
    #[arg(short = 'p', long = "publish", value_parser = crate::networking::parse_publish)]
    #[serde(default)]
    pub publish: Vec<berth_store::networks::LeasePort>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
