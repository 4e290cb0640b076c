//! A container's bundle, made at every start: its directory's `upper`, `work`, `rootfs` and
//! `/etc` files, its cgroup, and the OCI spec, from what `create` kept and the image's
//! config.

use std::path::PathBuf;

use berth_runtime::spec::{NetworkMode, ProcessSettings, build_spec};
use berth_runtime::{Bundle, RootfsSource};

use super::create::Created;
use crate::UsageError;

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
    let network: NetworkMode = crate::networking::runtime_mode(args.network.as_deref())?;
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
        // Set at each start, with the address then leased (`crate::networking::start`).
        attachment: None,
        // Rootless `-p`: forwarded by slirp4netns.
        slirp_ports: if network == NetworkMode::Slirp4netns {
            args.publish.iter().map(crate::networking::port).collect()
        } else {
            Vec::new()
        },
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
