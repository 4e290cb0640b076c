//! `berth inspect CONTAINER`: a container in the shape of `docker container inspect` (Id,
//! Created, Path, Args, State, Image, Name, RestartCount, HostConfig, GraphDriver, Mounts,
//! Config, NetworkSettings), from its record, what `create` kept, and its image.

use berth_store::Store;
use berth_store::containers::ContainerRecord;
use serde_json::{Value, json};

use super::{Created, RestartPolicy};

/// The host PID of the container's main process: the runner's child is the init, whose
/// child is the container's PID 1. 0 when it is not running.
fn main_pid(r: &ContainerRecord) -> i64 {
    if !crate::containers::alive(r) {
        return 0;
    }
    r.pid
        .and_then(crate::containers::init_of)
        .and_then(|init| crate::containers::init_of(init as u32))
        .map_or(0, i64::from)
}

/// The health of a container with a health check, as `State.Health` (absent otherwise).
fn health(dir: &std::path::Path) -> Option<Value> {
    let bytes = std::fs::read(dir.join("health.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn describe(store: &Store, r: &ContainerRecord) -> anyhow::Result<Value> {
    let dir = store.container_dir(&r.id)?;
    let created = Created::read(&dir).ok();
    let image = store.image_by_manifest(&r.image).ok();
    let running = crate::containers::alive(r);
    let restarting = running && r.status == "restarting";
    let status = if restarting {
        "restarting"
    } else if running {
        "running"
    } else if r.status == "created" {
        "created"
    } else {
        "exited"
    };
    let mut state = json!({
        "Status": status,
        "Running": running,
        "Paused": false,
        "Restarting": restarting,
        "OOMKilled": r.oom_killed,
        "Dead": false,
        "Pid": main_pid(r),
        "ExitCode": if running { 0 } else { r.exit_code.unwrap_or(0) },
        "Error": "",
        "StartedAt": r.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "FinishedAt": r.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
    });
    if let Some(h) = health(&dir) {
        state["Health"] = h;
    }
    let args = created.as_ref().map(|c| &c.args);
    let image_config = image.as_ref().map(|i| &i.config.config);
    let (path, rest) = match r.command.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let policy = args
        .and_then(|a| RestartPolicy::parse(&a.restart).ok())
        .unwrap_or(RestartPolicy::No);
    let (policy_name, max_retries) = match policy {
        RestartPolicy::No => ("no", 0),
        RestartPolicy::Always => ("always", 0),
        RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        RestartPolicy::OnFailure(n) => ("on-failure", n),
    };
    let mounts: Vec<Value> = created
        .as_ref()
        .map(|c| {
            c.binds
                .iter()
                .map(|(source, dest, ro)| {
                    let volume = r
                        .volumes
                        .iter()
                        .find(|v| source.ends_with(format!("volumes/{v}/_data")));
                    json!({
                        "Type": if volume.is_some() { "volume" } else { "bind" },
                        "Name": volume.cloned().unwrap_or_default(),
                        "Source": source,
                        "Destination": dest,
                        "Driver": if volume.is_some() { "local" } else { "" },
                        "Mode": if *ro { "ro" } else { "" },
                        "RW": !ro,
                        "Propagation": "rprivate",
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let joined = store.container_network(&r.id).ok().flatten();
    let network = joined
        .as_ref()
        .map(|n| n.network.clone())
        .or_else(|| args.and_then(|a| a.network.clone()))
        .unwrap_or_else(|| "none".to_owned());
    let network_settings =
        crate::networking::inspect_settings(store, &r.id, &network, joined.as_ref());
    let hostname = args
        .and_then(|a| a.hostname.clone())
        .unwrap_or_else(|| r.id[..12].to_owned());
    let env = created.as_ref().map(|c| {
        super::bundle::environment(
            image_config
                .and_then(|i| i.env.as_deref())
                .unwrap_or_default(),
            &c.env,
            c.args.tty,
            &hostname,
        )
    });
    let config = json!({
        "Hostname": hostname,
        "Domainname": "",
        "User": args.and_then(|a| a.user.clone())
            .or_else(|| image_config.and_then(|i| i.user.clone()))
            .unwrap_or_default(),
        "AttachStdin": args.is_some_and(|a| a.interactive && !a.detach),
        "AttachStdout": args.is_some_and(|a| !a.detach),
        "AttachStderr": args.is_some_and(|a| !a.detach),
        "Tty": args.is_some_and(|a| a.tty),
        "OpenStdin": args.is_some_and(|a| a.interactive),
        "StdinOnce": args.is_some_and(|a| a.interactive && !a.detach),
        "Env": env.unwrap_or_default(),
        "Cmd": if args.is_some_and(|a| !a.command.is_empty()) {
            json!(args.map(|a| a.command.clone()))
        } else {
            json!(image_config.and_then(|i| i.cmd.clone()))
        },
        "Image": r.image_name,
        "Volumes": image_config.and_then(|i| i.volumes.clone()),
        "WorkingDir": args.and_then(|a| a.workdir.clone())
            .or_else(|| image_config.and_then(|i| i.working_dir.clone()))
            .unwrap_or_default(),
        "Entrypoint": match args.and_then(|a| a.entrypoint.clone()) {
            Some(e) if e.is_empty() => Value::Null,
            Some(e) => json!([e]),
            None => json!(image_config.and_then(|i| i.entrypoint.clone())),
        },
        "OnBuild": Value::Null,
        "Labels": image_config.and_then(|i| i.labels.clone()).unwrap_or_default(),
        "StopSignal": image_config.and_then(|i| i.stop_signal.clone()).unwrap_or_default(),
    });
    let host_config = json!({
        "Binds": created.as_ref().map(|c| c.args.volumes.clone()).unwrap_or_default(),
        "NetworkMode": network,
        "PortBindings": {},
        "RestartPolicy": { "Name": policy_name, "MaximumRetryCount": max_retries },
        "AutoRemove": r.auto_remove,
        "Privileged": args.is_some_and(|a| a.privileged),
        "ReadonlyRootfs": args.is_some_and(|a| a.read_only),
        "Init": args.is_some_and(|a| a.init),
        "Memory": args.and_then(|a| a.memory).unwrap_or(0),
        "NanoCpus": args.and_then(|a| a.cpus).map_or(0, |c| (c * 1e9).round() as i64),
        "PidsLimit": args.and_then(|a| a.pids_limit),
        "Ulimits": args.map(|a| a.ulimits.iter().map(|u| json!({
            "Name": format!("{:?}", u.kind).trim_start_matches("Rlimit").to_ascii_lowercase(),
            "Soft": u.soft,
            "Hard": u.hard,
        })).collect::<Vec<_>>()),
    });
    Ok(json!({
        "Id": r.id,
        "Created": r.created,
        "Path": path,
        "Args": rest,
        "State": state,
        "Image": image.as_ref().map(|i| i.id().to_string()).unwrap_or_default(),
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": if dir.join("log").exists() { dir.join("log").display().to_string() } else { String::new() },
        "Name": format!("/{}", r.name.clone().unwrap_or_default()),
        "RestartCount": r.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": host_config,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
                "MergedDir": dir.join("rootfs"),
            },
        },
        "Mounts": mounts,
        "Config": config,
        "NetworkSettings": network_settings,
    }))
}
