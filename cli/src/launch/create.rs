//! A new container: the image resolved (pulled as `--pull` says), the command, the
//! environment and the volumes settled, a record in the `created` state and [`Created`]
//! beside it.

use std::path::PathBuf;

use berth_store::Store;
use berth_store::containers::ContainerRecord;

use super::args::{RunArgs as Args, VolumeMount, parse_volume};
use crate::UsageError;

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
    // berth's `--init` is berth's own code as the container's PID 1 for its whole life: a
    // container that may trace it could reach berth's binary through /proc/1/exe.
    let traces = |c: &String| {
        let c = c.to_ascii_uppercase();
        matches!(c.as_str(), "ALL" | "SYS_PTRACE" | "CAP_SYS_PTRACE")
    };
    if args.init && !args.privileged && args.cap_add.iter().any(traces) {
        return Err(UsageError(
            "--init with --cap-add SYS_PTRACE: berth's init is berth itself, which the              container could then trace; use an init from the image (tini, dumb-init) instead"
                .into(),
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
    let hostname = created
        .args
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_owned());
    let a = &created.args;
    if let Err(e) = crate::networking::join(
        store,
        &id,
        a.network.as_deref(),
        &a.publish,
        a.name.as_deref(),
        &hostname,
        &a.add_host,
    ) {
        let _ = store.remove_container(&id);
        return Err(e);
    }
    Ok((record, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
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
