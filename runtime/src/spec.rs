//! Building the OCI runtime spec: plain process settings in, a [`Spec`] with Docker's
//! defaults out (mounts, masked and read-only paths, capabilities, namespaces). The runtime
//! knows nothing of images: `cli` turns an image config and `run` flags into
//! [`ProcessSettings`].

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::RuntimeError;
use crate::contract::{
    ANNOTATION_CONSOLE, ANNOTATION_ENV_FDS, ANNOTATION_INIT, ANNOTATION_NETWORK, ANNOTATION_NODEV,
    ANNOTATION_SECCOMP, ANNOTATION_SLIRP4NETNS, ANNOTATION_USER,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// A new network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with `lo` and `tap0`, whose traffic slirp4netns (on `PATH`)
    /// carries out through its own sockets on the host, without root: outbound access,
    /// never the host's loopback (`10.0.2.2` is not mapped to it), DNS at `10.0.2.3`.
    Slirp4netns,
    /// A new network namespace with `lo` and `eth0` on a bridge (root only): the
    /// [`ProcessSettings::attachment`] says which, at what address, with which ports
    /// published (see [`crate::net`]).
    Bridge,
}

impl NetworkMode {
    /// Whether the mode gives the container a network namespace of its own.
    pub fn is_private(self) -> bool {
        self != NetworkMode::Host
    }

    /// The container's `/etc/resolv.conf`: the host's on its network, slirp4netns's DNS
    /// forwarder (10.0.2.3) behind slirp4netns, nothing without a network.
    pub fn resolv_conf(self) -> String {
        match self {
            NetworkMode::Host => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            NetworkMode::Slirp4netns => "nameserver 10.0.2.3\n".to_owned(),
            // The host's, less its loopback servers (127.0.0.53...), which the container
            // cannot reach.
            NetworkMode::Bridge => std::fs::read_to_string("/etc/resolv.conf")
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    !l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| a.starts_with("127.") || a == "::1")
                        || !l.trim_start().starts_with("nameserver")
                })
                .map(|l| format!("{l}\n"))
                .collect(),
            NetworkMode::None => String::new(),
        }
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;

    /// `none`, `host` or `slirp4netns`.
    fn from_str(s: &str) -> Result<NetworkMode, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            "slirp4netns" => Ok(NetworkMode::Slirp4netns),
            "bridge" => Ok(NetworkMode::Bridge),
            other => Err(format!(
                "unknown network {other:?}: none, host, bridge or slirp4netns"
            )),
        }
    }
}

/// What to run, and how.
#[derive(Debug, Clone, Default)]
pub struct ProcessSettings {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Working directory (created if missing, as Docker).
    pub cwd: String,
    /// `USER`: `name`, `uid`, `name:group`, `uid:gid`; empty means root.
    pub user: String,
    pub hostname: String,
    pub network: NetworkMode,
    /// With [`NetworkMode::Bridge`]: the container's place on its bridge.
    pub attachment: Option<crate::net::Attachment>,
    /// With [`NetworkMode::Slirp4netns`]: ports slirp4netns forwards from the host.
    pub slirp_ports: Vec<crate::net::Port>,
    pub read_only: bool,
    /// All capabilities, no masked or read-only paths.
    pub privileged: bool,
    /// Files bind-mounted over `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    /// `--init`: PID 1 is berth's small init, with the command as its child.
    pub init: bool,
    /// `-t`: the container's stdio is a terminal whose slave is bound onto `/dev/console`.
    pub console: Option<PathBuf>,
    /// Bind mounts (recursive): host source, container destination, read-only (the whole
    /// bound tree).
    pub binds: Vec<(PathBuf, String, bool)>,
    /// Read-only `nodev` overlays: host lower directories (bottom first), container
    /// destination. The builder shows the build context so, with `.dockerignore`d names
    /// whited out in the top layer.
    pub overlays: Vec<(Vec<PathBuf>, String)>,
    /// tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// `--cap-add` and `--cap-drop`: capability names (`NET_ADMIN` or `CAP_NET_ADMIN`), or
    /// `ALL`, applied to the default set as Docker does ([`capabilities`]).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The cgroup, relative to each hierarchy (`berth/<id>`); empty: none.
    pub cgroup_path: String,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPUs (`0.5` is half a core).
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    /// `--ulimit`: resource limits set before the command runs (soft, hard); unset ones are
    /// inherited from berth, as containers inherit dockerd's.
    pub rlimits: Vec<Rlimit>,
    /// Enforce Docker's device rules through the devices cgroup (and grant CAP_MKNOD, as
    /// Docker does). Needs `cgroup_path` and [`crate::cgroups::devices_enforceable`].
    pub device_rules: bool,
    /// Environment variables set from descriptors the init inherits (name, descriptor
    /// number), read by the init before the command runs ([`ANNOTATION_ENV_FDS`]): a
    /// build secret's value reaches the process without being written into the bundle.
    pub env_fds: Vec<(String, i32)>,
}

/// A tmpfs mount: always `nosuid` and `nodev`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tmpfs {
    /// Where, in the container.
    pub dest: String,
    /// The size limit in bytes (the kernel's default, half the memory, when `None`).
    pub size: Option<u64>,
    /// The permission bits of its root.
    pub mode: u32,
    pub noexec: bool,
    pub read_only: bool,
}

impl Tmpfs {
    /// A writable, executable tmpfs open to all (mode 1777), as `RUN --mount=type=tmpfs`.
    pub fn scratch(dest: &str, size: Option<u64>) -> Tmpfs {
        Tmpfs {
            dest: dest.to_owned(),
            size,
            mode: 0o1777,
            noexec: false,
            read_only: false,
        }
    }
}

/// A capability by Docker's name (`NET_ADMIN`, `CAP_NET_ADMIN`, any case).
pub fn parse_capability(name: &str) -> Result<Capability, String> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    // The spec crate reads names with or without `CAP_` (its `Deserialize`); `CAP_ALL` and
    // the like are not capabilities.
    if bare.is_empty() || !bare.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return Err(format!("unknown capability {name:?}"));
    }
    serde_json::from_value::<Capability>(serde_json::Value::String(format!("CAP_{bare}")))
        .map_err(|_| format!("unknown capability {name:?}"))
}

/// Docker's capability arithmetic: with `ALL` added, every capability but those dropped;
/// with `ALL` dropped, only those added; otherwise `base` with the added and without the
/// dropped ones.
pub fn capabilities(
    base: &std::collections::HashSet<Capability>,
    add: &[String],
    drop: &[String],
) -> Result<std::collections::HashSet<Capability>, RuntimeError> {
    let is_all = |n: &String| n.eq_ignore_ascii_case("all") || n.eq_ignore_ascii_case("cap_all");
    let parse = |names: &[String]| -> Result<Vec<Capability>, RuntimeError> {
        names
            .iter()
            .filter(|n| !is_all(n))
            .map(|n| parse_capability(n).map_err(RuntimeError::Spec))
            .collect()
    };
    let (added, dropped) = (parse(add)?, parse(drop)?);
    let mut caps = if add.iter().any(is_all) {
        crate::caps::all_oci()
    } else if drop.iter().any(is_all) {
        std::collections::HashSet::new()
    } else {
        base.clone()
    };
    if !add.iter().any(is_all) {
        caps.extend(added);
    }
    if !drop.iter().any(is_all) {
        for c in dropped {
            caps.remove(&c);
        }
    }
    Ok(caps)
}

/// One resource limit, by Docker's `--ulimit` name (`nofile`, `nproc`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rlimit {
    pub kind: oci_spec::runtime::PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    /// `NAME=SOFT[:HARD]` (Docker's `--ulimit`): the hard limit defaults to the soft one;
    /// `-1` or `unlimited` is no limit.
    pub fn parse(spec: &str) -> Result<Rlimit, String> {
        use oci_spec::runtime::PosixRlimitType as T;
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| format!("--ulimit {spec:?}: expected NAME=SOFT[:HARD]"))?;
        let kind = match name {
            "core" => T::RlimitCore,
            "cpu" => T::RlimitCpu,
            "data" => T::RlimitData,
            "fsize" => T::RlimitFsize,
            "locks" => T::RlimitLocks,
            "memlock" => T::RlimitMemlock,
            "msgqueue" => T::RlimitMsgqueue,
            "nice" => T::RlimitNice,
            "nofile" => T::RlimitNofile,
            "nproc" => T::RlimitNproc,
            "rss" => T::RlimitRss,
            "rtprio" => T::RlimitRtprio,
            "rttime" => T::RlimitRttime,
            "sigpending" => T::RlimitSigpending,
            "stack" => T::RlimitStack,
            "as" => return Err("--ulimit as: deprecated (as Docker), not supported".into()),
            _ => return Err(format!("--ulimit {name:?}: not a limit Docker knows")),
        };
        let value = |v: &str| -> Result<u64, String> {
            match v {
                "-1" | "unlimited" => Ok(u64::MAX),
                _ => v
                    .parse()
                    .map_err(|_| format!("--ulimit {spec:?}: {v:?} is not a number")),
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(format!(
                "--ulimit {spec:?}: the soft limit is above the hard one"
            ));
        }
        Ok(Rlimit { kind, soft, hard })
    }
}

/// Docker's default capability set, less `CAP_MKNOD`, which is added only when the devices
/// cgroup enforces [`DEVICE_RULES`] ([`ProcessSettings::device_rules`]): with it alone, a
/// container could make a node for a host disk and read it. Docker relies on the same rules.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Docker's default device rules (after "deny all"): any node may be made (`m`), and only
/// the usual ones opened: null, zero, full, random, urandom, tty, console, ptmx, pts.
pub const DEVICE_RULES: &[(&str, Option<i64>, Option<i64>, &str)] = &[
    ("c", None, None, "m"),
    ("b", None, None, "m"),
    ("c", Some(1), Some(3), "rwm"),
    ("c", Some(1), Some(5), "rwm"),
    ("c", Some(1), Some(7), "rwm"),
    ("c", Some(1), Some(8), "rwm"),
    ("c", Some(1), Some(9), "rwm"),
    ("c", Some(5), Some(0), "rwm"),
    ("c", Some(5), Some(1), "rwm"),
    ("c", Some(5), Some(2), "rwm"),
    ("c", Some(136), None, "rwm"),
];

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mount(
    dest: &str,
    typ: &str,
    source: &str,
    options: &[&str],
) -> Result<oci_spec::runtime::Mount, RuntimeError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| RuntimeError::Spec(e.to_string()))
}

/// A spec for `settings` with the rootfs mounted at `root`.
pub fn build_spec(root: &Path, settings: &ProcessSettings) -> Result<Spec, RuntimeError> {
    let e = |e: oci_spec::OciSpecError| RuntimeError::Spec(e.to_string());
    let caps: std::collections::HashSet<Capability> = if settings.privileged {
        crate::caps::all_oci()
    } else {
        let mut caps: std::collections::HashSet<Capability> =
            DEFAULT_CAPABILITIES.iter().copied().collect();
        if settings.device_rules {
            caps.insert(Capability::Mknod);
        }
        capabilities(&caps, &settings.cap_add, &settings.cap_drop)?
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        // Empty, as Docker since 20.10.14 (CVE-2022-24769): with the set, a process that
        // dropped to another user regained capabilities by executing a file with
        // inheritable file capabilities.
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()
        .map_err(e)?;
    let process = ProcessBuilder::default()
        .terminal(settings.console.is_some())
        .args(settings.args.clone())
        .env(settings.env.clone())
        .cwd(if settings.cwd.is_empty() {
            "/".to_owned()
        } else {
            settings.cwd.clone()
        })
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(e)?,
        )
        .capabilities(capabilities)
        .rlimits(
            settings
                .rlimits
                .iter()
                .map(|r| {
                    oci_spec::runtime::PosixRlimitBuilder::default()
                        .typ(r.kind)
                        .soft(r.soft)
                        .hard(r.hard)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?,
        )
        .build()
        .map_err(e)?;
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    // Not privileged, no device node is opened through a bind, whatever its source holds.
    let bind_options = |ro: bool| {
        let mut options = vec!["rbind", "rprivate"];
        if ro {
            options.push("ro");
        }
        if !settings.privileged {
            options.push("nodev");
        }
        options
    };
    for (source, dest, ro) in &settings.binds {
        mounts.push(mount(
            dest,
            "bind",
            &source.display().to_string(),
            &bind_options(*ro),
        )?);
    }
    for (lowers, dest) in &settings.overlays {
        let data = crate::views::overlay_data(lowers, None, false);
        mounts.push(mount(dest, "overlay", "overlay", &["ro", "nodev", &data])?);
    }
    for t in &settings.tmpfs {
        let mut options = vec![
            "nosuid".to_owned(),
            "nodev".to_owned(),
            format!("mode={:o}", t.mode),
        ];
        if let Some(s) = t.size {
            options.push(format!("size={s}"));
        }
        if t.noexec {
            options.push("noexec".to_owned());
        }
        if t.read_only {
            options.push("ro".to_owned());
        }
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        mounts.push(mount(&t.dest, "tmpfs", "tmpfs", &options)?);
    }
    for (file, dest) in &settings.etc_files {
        mounts.push(mount(
            dest,
            "bind",
            &file.display().to_string(),
            &bind_options(false),
        )?);
    }
    let mut namespaces = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if settings.network.is_private() {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(e)?;
    let (masked, readonly): (Vec<String>, Vec<String>) = if settings.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
        )
    };
    let mut resources = oci_spec::runtime::LinuxResourcesBuilder::default();
    if let Some(m) = settings.memory {
        resources = resources.memory(
            oci_spec::runtime::LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .map_err(e)?,
        );
    }
    if let Some(c) = settings.cpus {
        let quota = (c * crate::cgroups::CPU_PERIOD as f64).round() as i64;
        resources = resources.cpu(
            oci_spec::runtime::LinuxCpuBuilder::default()
                .quota(quota)
                .period(crate::cgroups::CPU_PERIOD)
                .build()
                .map_err(e)?,
        );
    }
    if settings.device_rules && !settings.privileged {
        let mut rules = vec![
            oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .map_err(e)?,
        ];
        for (kind, major, minor, access) in DEVICE_RULES {
            let mut r = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(if *kind == "b" {
                    oci_spec::runtime::LinuxDeviceType::B
                } else {
                    oci_spec::runtime::LinuxDeviceType::C
                })
                .access(*access);
            if let Some(m) = major {
                r = r.major(*m);
            }
            if let Some(m) = minor {
                r = r.minor(*m);
            }
            rules.push(r.build().map_err(e)?);
        }
        resources = resources.devices(rules);
    }
    if let Some(p) = settings.pids_limit {
        resources = resources.pids(
            oci_spec::runtime::LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .map_err(e)?,
        );
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .resources(resources.build().map_err(e)?);
    if !settings.cgroup_path.is_empty() {
        linux = linux.cgroups_path(PathBuf::from(&settings.cgroup_path));
    }
    let linux = linux.build().map_err(e)?;
    let mut annotations = std::collections::HashMap::new();
    annotations.insert(ANNOTATION_USER.to_owned(), settings.user.clone());
    if !settings.env_fds.is_empty() {
        annotations.insert(
            ANNOTATION_ENV_FDS.to_owned(),
            serde_json::to_string(&settings.env_fds).expect("plain data"),
        );
    }
    if settings.init {
        annotations.insert(ANNOTATION_INIT.to_owned(), "1".to_owned());
    }
    if let Some(c) = &settings.console {
        annotations.insert(ANNOTATION_CONSOLE.to_owned(), c.display().to_string());
    }
    if !settings.privileged {
        annotations.insert(ANNOTATION_NODEV.to_owned(), "1".to_owned());
    }
    if settings.network == NetworkMode::Slirp4netns {
        annotations.insert(
            ANNOTATION_SLIRP4NETNS.to_owned(),
            serde_json::to_string(&settings.slirp_ports).expect("plain data"),
        );
    }
    // Without its attachment yet, the caller sets it at each start (`Bundle::set_attachment`).
    if let (NetworkMode::Bridge, Some(attachment)) = (settings.network, &settings.attachment) {
        attachment.check()?;
        annotations.insert(
            ANNOTATION_NETWORK.to_owned(),
            serde_json::to_string(attachment).expect("plain data"),
        );
    }
    annotations.insert(
        ANNOTATION_SECCOMP.to_owned(),
        if settings.privileged {
            "unconfined"
        } else {
            "default"
        }
        .to_owned(),
    );
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(root)
                .readonly(settings.read_only)
                .build()
                .map_err(e)?,
        )
        .hostname(settings.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(e)
}
