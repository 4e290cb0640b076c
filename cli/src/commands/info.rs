//! `berth version` (what this binary is) and `berth info` (the store and what this machine
//! gives containers), as `docker version` and `docker info` print them: `Key: value` lines
//! under headings, one JSON object with `--format json`, or a Go template over that object.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use berth_store::Store;

#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// Output format: `table` (Docker's `Key: value` lines), `json`, or a Go template over
    /// the JSON object (`{{.Client.Version}}`, `{{.Client.GitCommit}}`)
    #[arg(short, long, default_value = "table")]
    pub format: String,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Output format: `table` (Docker's `Key: value` lines), `json`, or a Go template over
    /// the JSON object (`{{.Images}}`, `{{.CgroupVersion}}`, `{{json .Registries}}`)
    #[arg(short, long, default_value = "table")]
    pub format: String,
}

/// The version of the store's on-disk format this berth reads and writes, and of its cache
/// keys (a change of either makes older stores or caches unreadable or cold).
fn store_format() -> String {
    format!(
        "{} (OCI image layout 1.0.0; cache keys {})",
        berth_store::FORMAT_VERSION,
        berth_builder::plan::KEY_VERSION
    )
}

fn os_arch() -> String {
    let p = berth_oci::Platform::host();
    format!("{}/{}", p.os, p.architecture)
}

pub fn version(args: VersionArgs) -> anyhow::Result<u8> {
    let fields = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "GitCommit": env!("BERTH_GIT_COMMIT"),
        "RustVersion": env!("BERTH_RUSTC_VERSION"),
        "Os": berth_oci::Platform::host().os,
        "Arch": berth_oci::Platform::host().architecture,
        "StoreFormat": store_format(),
    });
    let all = json!({ "Client": fields });
    match args.format.as_str() {
        "json" => outln!("{all}"),
        "table" => {
            outln!("Client:");
            for (key, label) in [
                ("Version", "Version"),
                ("GitCommit", "Git commit"),
                ("RustVersion", "Rust version"),
                ("StoreFormat", "Store format"),
            ] {
                outln!(
                    " {:<14}{}",
                    format!("{label}:"),
                    fields[key].as_str().unwrap_or("")
                );
            }
            outln!(" {:<14}{}", "OS/Arch:", os_arch());
        }
        template => print_template(template, &all)?,
    }
    Ok(0)
}

/// `--format TEMPLATE`: the Go template rendered once over the command's JSON object (as
/// `docker version --format '{{.Client.Version}}'`, `docker info --format '{{json .}}'`).
fn print_template(format: &str, value: &Value) -> anyhow::Result<()> {
    use crate::template::Format;
    let usage = |e: String| crate::UsageError(e);
    match Format::parse(format).map_err(|e| usage(e.to_string()))? {
        Format::Template {
            template,
            table: false,
        } => {
            let text = template.render(value).map_err(|e| usage(e.to_string()))?;
            outln!("{text}");
            Ok(())
        }
        _ => Err(usage(format!("--format {format:?}: table, json or a template")).into()),
    }
}

/// Where containers' cgroups go. Rootless: the delegated cgroup v2 subtree and the limits it
/// allows, or why limits are not enforced.
fn cgroups(rootless: bool) -> String {
    use berth_runtime::cgroups;
    if !rootless {
        return "a cgroup per container with limits or device rules".into();
    }
    let sys = &mut berth_runtime::sys::linux::LinuxSys;
    match cgroups::delegation(sys, &cgroups::owned_by_caller) {
        Ok(d) if d.controllers.is_empty() => format!(
            "delegated: /{}, with none of memory, pids, cpu: limits are not enforced",
            d.rel.display()
        ),
        Ok(d) => {
            let missing: Vec<&str> = ["memory", "pids", "cpu"]
                .into_iter()
                .filter(|c| !d.controllers.iter().any(|d| d == c))
                .collect();
            let mut text = format!(
                "delegated: /{} ({})",
                d.rel.display(),
                d.controllers.join(" ")
            );
            if !missing.is_empty() {
                text.push_str(&format!("; no {}: not enforced", missing.join(", ")));
            }
            text
        }
        Err(why) => format!(
            "none delegated ({why}): limits are not enforced; run berth in a delegated cgroup \
             (systemd-run --user --scope -p Delegate=yes)"
        ),
    }
}

/// The cgroup hierarchies this machine has mounted: `2` (unified only), `1 (hybrid: ...)`
/// or `1`.
fn cgroup_version(mountinfo: &str) -> String {
    let mut v1 = false;
    let mut unified = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_whitespace().nth(4).unwrap_or_default();
        match right.split_whitespace().next() {
            Some("cgroup2") => unified = Some(mount_point.to_owned()),
            Some("cgroup") => v1 = true,
            _ => {}
        }
    }
    match (v1, unified) {
        (false, Some(_)) => "2".into(),
        (true, Some(at)) => format!("1 (hybrid: the unified hierarchy at {at})"),
        (true, None) => "1".into(),
        (false, None) => "none mounted".into(),
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Whether the kernel gives processes seccomp filters (`Seccomp:` in /proc/self/status).
fn seccomp() -> &'static str {
    match read("/proc/self/status").is_some_and(|s| s.contains("\nSeccomp:")) {
        true => "supported (berth's default profile on every container and RUN step)",
        false => "not supported by this kernel",
    }
}

/// overlayfs: loaded, and rootless, whether the kernel mounts it in a user namespace (5.11),
/// or which program mounts overlays instead (`BERTH_MOUNT_PROGRAM`, the fuse-overlayfs
/// fallback, `berth_runtime::fuse`) and why.
fn overlay(rootless: bool) -> String {
    use berth_runtime::fuse::{MountProgram, describe};
    let program = MountProgram::from_env();
    let loaded =
        read("/proc/filesystems").is_some_and(|s| s.lines().any(|l| l.ends_with("\toverlay")));
    let native = match (loaded, rootless && !native_in_user_namespace()) {
        (false, _) => Err("overlayfs is not loaded (modprobe overlay)".to_owned()),
        (true, true) => Err("Linux 5.11 or later mounts overlayfs in a user namespace".to_owned()),
        (true, false) => Ok(()),
    };
    match (&program, rootless, native) {
        (MountProgram::Fuse(_), _, native) | (_, true, native) => describe(&program, native),
        (_, false, Ok(())) => "supported".to_owned(),
        (_, false, Err(why)) => why,
    }
}

/// Whether the kernel mounts overlayfs in a user namespace (Linux 5.11).
fn native_in_user_namespace() -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    version >= (5, 11)
}

/// User namespaces: the kernel's limit, whether users without privileges may make them, and
/// why a rootless berth could not enter its own.
fn user_namespaces() -> String {
    if let Some(why) = crate::rootless::not_entered() {
        return format!("failed: {why}");
    }
    let max = read("/proc/sys/user/max_user_namespaces")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if max == 0 {
        return "disabled: user.max_user_namespaces is 0".into();
    }
    let debian = read("/proc/sys/kernel/unprivileged_userns_clone").map(|s| s.trim() == "1");
    let apparmor =
        read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").map(|s| s.trim() == "1");
    match (debian, apparmor) {
        (Some(false), _) => "disabled: kernel.unprivileged_userns_clone=0".into(),
        (_, Some(true)) => {
            "blocked by AppArmor: kernel.apparmor_restrict_unprivileged_userns=1".into()
        }
        _ => "supported, unprivileged users too".into(),
    }
}

/// The ids berth runs with: the host's as root; rootless, its namespace's map (inside id →
/// host id, count), or why only the user's own id is mapped.
fn id_mapping(rootless: bool) -> String {
    if !rootless {
        return "host ids (root)".into();
    }
    let map = read("/proc/self/uid_map").unwrap_or_default();
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| f.len() == 3)
        .collect();
    if lines.len() < 2 {
        return "single id: no range in /etc/subuid and /etc/subgid for this user (or no \
                newuidmap): a chown to another id fails"
            .into();
    }
    let ranges: Vec<String> = lines
        .iter()
        .map(|f| format!("{} → {} ({})", f[0], f[1], f[2]))
        .collect();
    format!("uids {}", ranges.join(", "))
}

/// Whether a rootless berth can mount a fresh `/proc` for its containers: the kernel refuses
/// one in a user namespace while the `/proc` it can see has mounts over its entries (a
/// container runtime's masked paths, `procMount: Default` in Kubernetes); binfmt_misc's own
/// mount point is an empty directory and harmless.
fn proc_mounts(rootless: bool, mountinfo: &str) -> String {
    if !rootless {
        return "not needed (root)".into();
    }
    let over: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let fstype = right.split_whitespace().next()?;
            (point.starts_with("/proc/") && fstype != "binfmt_misc").then(|| point.to_owned())
        })
        .collect();
    match over.as_slice() {
        [] => "unmasked: containers get a fresh /proc".into(),
        [first, rest @ ..] => format!(
            "masked ({first}{}): the kernel refuses a fresh /proc for containers \
             (Kubernetes: procMount: Unmasked)",
            if rest.is_empty() {
                String::new()
            } else {
                format!(" and {} more", rest.len())
            }
        ),
    }
}

/// The networks containers and RUN steps can have here.
fn network(rootless: bool) -> &'static str {
    match (crate::rootless::on_path("slirp4netns").is_some(), rootless) {
        (true, true) => "slirp4netns (RUN steps' default rootless), none, host",
        (true, false) => "none, host, slirp4netns",
        (false, true) => "none: only --network none and host (install slirp4netns)",
        (false, false) => "none and host",
    }
}

/// The setuid helpers that map subordinate ids.
fn newuidmap() -> String {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = crate::rootless::on_path("newuidmap") else {
        return "missing: install uidmap".into();
    };
    let setuid = std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o4000 != 0);
    let no_new_privs = read("/proc/self/status").is_some_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"]))
    });
    match (setuid, no_new_privs) {
        (false, _) => format!("not setuid: {}", path.display()),
        (true, true) => "no_new_privs is set: the setuid helper cannot gain privileges".into(),
        (true, false) => path.display().to_string(),
    }
}

/// The registries configured for this user: mirrors, TLS directories, and those with saved
/// credentials (their names only).
fn registries() -> Value {
    let options = crate::wiring::options(&Default::default());
    let logged_in: Vec<String> = berth_registry_client::creds::saved_registries()
        .iter()
        .map(|k| crate::output::terminal_safe_text(k).into_owned())
        .collect();
    // A mirror may be written with `user:password@`: only its address is shown.
    let mirrors: Vec<String> = options
        .mirrors
        .iter()
        .map(|m| match (m.contains("://"), m.rfind('@')) {
            (true, _) => berth_builder::redact::url_credentials(m).into_owned(),
            (false, Some(at)) => format!("xxxxx{}", &m[at..]),
            (false, None) => m.clone(),
        })
        .collect();
    json!({
        "Mirrors": mirrors,
        "Insecure": options.insecure,
        "CertsDirs": options.certs_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "LoggedIn": logged_in,
    })
}

pub fn info(store: &Store, args: InfoArgs) -> anyhow::Result<u8> {
    let containers = store.container_records()?;
    let running = containers
        .iter()
        .filter(|c| crate::containers::alive(c))
        .count();
    let volumes = store.volumes()?.len();
    let rootless = berth_runtime::userns::rootless() || !nix::unistd::geteuid().is_root();
    let fields = json!({
        "StoreRoot": store.root().display().to_string(),
        "StoreSize": berth_store::tree_size(store.root()),
        "Images": store.images()?.len(),
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersStopped": containers.len() - running,
        "CacheRecords": store.cache_records()?.len(),
        "Volumes": volumes,
        "CgroupVersion": cgroup_version(&read("/proc/self/mountinfo").unwrap_or_default()),
        "Rootless": rootless,
        "Seccomp": seccomp(),
        "Overlay": overlay(rootless),
        "UserNamespaces": user_namespaces(),
        "IDMapping": id_mapping(rootless),
        "Newuidmap": newuidmap(),
        "Cgroups": cgroups(rootless),
        "Network": network(rootless),
        "Proc": proc_mounts(rootless, &read("/proc/self/mountinfo").unwrap_or_default()),
        "KernelVersion": nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        "OSArch": os_arch(),
        "Registries": registries(),
    });
    match args.format.as_str() {
        "json" => outln!("{fields}"),
        "table" => print_info(&fields),
        template => print_template(template, &fields)?,
    }
    Ok(0)
}

fn print_info(f: &Value) {
    let s = |k: &str| match &f[k] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let list = |v: &Value| {
        let items: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        match items.is_empty() {
            true => "none".to_owned(),
            false => items.join(", "),
        }
    };
    let rows: BTreeMap<u8, (&str, String)> = BTreeMap::from([
        (0, ("Store root", s("StoreRoot"))),
        (
            1,
            (
                "Store size",
                crate::output::human_size(f["StoreSize"].as_u64().unwrap_or(0)),
            ),
        ),
        (2, ("Images", s("Images"))),
        (
            3,
            (
                "Containers",
                format!(
                    "{} (running {}, stopped {})",
                    s("Containers"),
                    s("ContainersRunning"),
                    s("ContainersStopped")
                ),
            ),
        ),
        (4, ("Build cache records", s("CacheRecords"))),
        (5, ("Volumes", s("Volumes"))),
        (6, ("Cgroup version", s("CgroupVersion"))),
        (7, ("Rootless", s("Rootless"))),
        (8, ("Seccomp", s("Seccomp"))),
        (9, ("Overlay", s("Overlay"))),
        (10, ("User namespaces", s("UserNamespaces"))),
        (11, ("ID mapping", s("IDMapping"))),
        (12, ("newuidmap", s("Newuidmap"))),
        (13, ("Cgroups", s("Cgroups"))),
        (14, ("Network", s("Network"))),
        (15, ("Proc", s("Proc"))),
        (16, ("Kernel version", s("KernelVersion"))),
        (17, ("OS/Arch", s("OSArch"))),
        (18, ("Registry mirrors", list(&f["Registries"]["Mirrors"]))),
        (
            19,
            ("Registry TLS dirs", list(&f["Registries"]["CertsDirs"])),
        ),
        (
            20,
            ("Insecure registries", list(&f["Registries"]["Insecure"])),
        ),
        (21, ("Logged in to", list(&f["Registries"]["LoggedIn"]))),
    ]);
    for (label, value) in rows.values() {
        outln!("{:<22}{}", format!("{label}:"), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_proc_entries_are_found() {
        let plain = "22 1 0:5 / /proc rw - proc proc rw\n\
                     40 22 0:40 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw\n";
        assert!(proc_mounts(true, plain).starts_with("unmasked"));
        let masked = format!(
            "{plain}50 22 0:6 /null /proc/kcore ro - devtmpfs udev rw\n\
             51 22 0:52 / /proc/acpi ro - tmpfs tmpfs ro\n"
        );
        assert_eq!(
            proc_mounts(true, &masked),
            "masked (/proc/kcore and 1 more): the kernel refuses a fresh /proc for containers \
             (Kubernetes: procMount: Unmasked)"
        );
        assert_eq!(proc_mounts(false, &masked), "not needed (root)");
    }

    #[test]
    fn cgroup_layouts_are_told_apart() {
        let v1 = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let unified = "41 30 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let pure = "30 25 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_version(pure), "2");
        assert_eq!(cgroup_version(v1), "1");
        assert_eq!(
            cgroup_version(&format!("{v1}{unified}")),
            "1 (hybrid: the unified hierarchy at /sys/fs/cgroup/unified)"
        );
        assert_eq!(cgroup_version(""), "none mounted");
    }
}
