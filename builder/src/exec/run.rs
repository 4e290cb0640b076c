//! RUN: the step's command in a container of the runtime over the stage's tree (an overlay
//! whose upper dir becomes the layer), with its `--mount`s, network and privileges; its
//! output streamed line by line to the progress view, the last lines kept for the error.

use std::io::BufRead;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_runtime::spec::{ProcessSettings, build_spec};
use berth_runtime::{Bundle, RootfsSource};

use super::mounts::{check_live_binds, prepare_mounts};
use super::{Ctx, Event, StageState, fsops, policy, step_error};
use crate::error::{BuildError, Location, StepError};
use crate::instructions::Command;
use crate::plan::Step;

/// The longest line of a step's output berth holds: a longer one is passed on in pieces of
/// this size, so a step that writes gigabytes without a newline cannot make berth hold them.
const MAX_OUTPUT_LINE: usize = 64 << 10;

/// The next line of a step's output (without its `\n`), at most [`MAX_OUTPUT_LINE`] bytes;
/// `None` at the end or on an error.
fn next_output_line(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok([]) => return (!line.is_empty()).then_some(line),
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return (!line.is_empty()).then_some(line),
        };
        let room = MAX_OUTPUT_LINE - line.len();
        let take = available.len().min(room);
        if let Some(end) = available[..take].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&available[..end]);
            reader.consume(end + 1);
            return Some(line);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if line.len() == MAX_OUTPUT_LINE {
            return Some(line);
        }
    }
}

/// The paths the runtime may create as mount points in the upper dir.
const MOUNT_STUBS: &[&str] = &[
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "proc",
    "sys",
    "dev",
    "etc",
];

/// Removes what the runtime created only to mount on (an empty file or directory that no
/// lower layer has), so it does not end up in the layer.
///
/// The upper dir and the lowers are the step's: every path is looked up in them with no
/// symlink allowed anywhere in it ([`fsops::Resolve::NoSymlinks`]) and the last component
/// removed with `unlinkat` on that resolved parent. The runtime made the stubs under real
/// directories, so a symlink on the way means the step changed the path itself (`mv /d
/// /d.moved; ln -s /host/dir /d`): what is there then is the step's, and is kept. Nothing is
/// followed, so nothing outside the upper dir can be removed.
fn remove_mount_stubs(upper: &Path, lowers: &[PathBuf], extra: &[String]) {
    use fsops::{InRoot, Resolve};
    let Ok(up) = InRoot::open_with(upper, Resolve::NoSymlinks) else {
        return;
    };
    let lowers: Vec<InRoot> = lowers
        .iter()
        .filter_map(|l| InRoot::open_with(l, Resolve::NoSymlinks).ok())
        .collect();
    let in_lowers = |rel: &str| lowers.iter().any(|l| l.lstat(rel).is_ok());
    let extra: Vec<&str> = extra.iter().map(|s| s.trim_start_matches('/')).collect();
    for rel in extra.iter().copied().chain(MOUNT_STUBS.iter().copied()) {
        if up.lstat(rel).is_err() || in_lowers(rel) {
            continue;
        }
        let _ = up.remove_empty(rel);
    }
    // Directories made only to hold a mount point (`/run/secrets` for a secret).
    for rel in &extra {
        let mut dir = Path::new(rel).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let s = d.to_string_lossy();
            if in_lowers(&s) || !up.remove_empty_dir(&s).unwrap_or(false) {
                break;
            }
            dir = d.parent();
        }
    }
    // A directory copied up only to hold a stub (`/etc` for `/etc/hosts`) and now empty, with
    // the same mode and owner as below: nothing changed in it.
    for rel in ["etc"] {
        let Ok(dir) = up.open_dir(rel) else {
            continue;
        };
        let Ok(meta) = rustix::fs::fstat(&dir) else {
            continue;
        };
        let lower = lowers.iter().rev().find_map(|l| l.lstat(rel).ok());
        let opaque =
            rustix::fs::fgetxattr(&dir, berth_store::layer::opaque_xattr(), &mut [0u8; 4]).is_ok();
        let is_dir = |mode: u32| {
            rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory
        };
        if let Some(l) = lower
            && !opaque
            && is_dir(l.st_mode)
            && (l.st_mode, l.st_uid, l.st_gid) == (meta.st_mode, meta.st_uid, meta.st_gid)
        {
            let _ = up.remove_empty_dir(rel);
        }
    }
}

/// Where a RUN heredoc that starts with `#!` is put, read-only, to be run as a program.
const SCRIPT_DIR: &str = "/dev/pipes";

/// What a RUN step runs: the process's arguments, as the current Dockerfile frontend makes
/// them (and records them in the history, so both come from here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunArgs {
    pub args: Vec<String>,
    /// A heredoc with a `#!` line, run as a program of its own: its name (the delimiter)
    /// and body, which the step puts in [`SCRIPT_DIR`].
    pub script: Option<(String, String)>,
}

/// A RUN step's process arguments, with its heredocs as the current Dockerfile frontend runs
/// them: a shell-form command that is a single heredoc runs the heredoc's body with the
/// shell (or, when the body starts with `#!`, the shell runs it as a program of its own,
/// `/dev/pipes/<delimiter>`); any other command is given to the shell with each heredoc's
/// body (as written) and delimiter after it, so the shell feeds them to the commands that
/// read them (`cat <<EOF > f`, `sh -s <<EOF`, several in one line).
pub(crate) fn run_args(
    run: &crate::instructions::Run,
    shell: &[String],
) -> Result<RunArgs, String> {
    let script = match &run.command {
        Command::Exec(args) => {
            if !run.heredocs.is_empty() {
                return Err("a RUN heredoc needs the shell form of RUN".into());
            }
            return Ok(RunArgs {
                args: args.clone(),
                script: None,
            });
        }
        Command::Shell(s) => s,
    };
    let whole = crate::dockerfile::parser::parse_heredoc(script.trim())
        .ok()
        .flatten();
    let mut program = None;
    let line = match (whole, run.heredocs.as_slice()) {
        (_, []) => script.clone(),
        (Some(_), [doc]) if doc.content.starts_with("#!") => {
            // The program is named after the delimiter, as BuildKit names it.
            let name = doc.name.clone();
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                return Err(format!("the heredoc delimiter {name:?} cannot name a file"));
            }
            let path = format!("{SCRIPT_DIR}/{name}");
            program = Some((name, doc.content.clone()));
            path
        }
        (Some(_), [doc]) => doc.content.clone(),
        (_, docs) => {
            let mut line = script.clone();
            for doc in docs {
                line.push('\n');
                line.push_str(&doc.raw);
                line.push_str(&doc.name);
            }
            line
        }
    };
    Ok(RunArgs {
        args: shell.iter().cloned().chain([line]).collect(),
        script: program,
    })
}

/// An address on the default bridge for one RUN step (the store's lease, held until it is
/// dropped) and the runtime's attachment for it; stale leases found on the way have what
/// they left in the kernel removed.
fn bridge_lease(
    store: &berth_store::Store,
) -> Result<
    (
        berth_store::networks::HeldLease,
        berth_runtime::net::Attachment,
    ),
    String,
> {
    use berth_runtime::net::{Attachment, Port, Proto};
    use berth_store::networks::{Lease, LeaseRequest, NetworkRecord, default_bridge};
    let to_attachment = |net: &NetworkRecord, l: &Lease| Attachment {
        bridge: net.bridge.clone(),
        gateway: net.gateway,
        prefix: net.prefix,
        address: l.address,
        internal: net.internal,
        host_veth: l.host_veth.clone(),
        ports: l
            .ports
            .iter()
            .map(|p| Port {
                host_ip: p.host_ip,
                host_port: p.host_port,
                container_port: p.container_port,
                proto: if p.udp { Proto::Udp } else { Proto::Tcp },
            })
            .collect(),
    };
    let net = default_bridge();
    let id = berth_store::containers::random_id();
    let lease = store
        .take_lease(
            &net,
            LeaseRequest {
                container: &id,
                names: Vec::new(),
                host_veth: format!("vb{}", &id[..12]),
                ports: Vec::new(),
            },
            &mut |stale| to_attachment(&net, stale).remove_stale(),
        )
        .map_err(|e| format!("taking an address on the default bridge: {e}"))?;
    let attachment = to_attachment(&net, &lease.lease);
    Ok((lease, attachment))
}

pub(super) fn run_step(
    ctx: &Ctx<'_>,
    state: &StageState,
    step: &Step,
    id: &str,
    work: &Path,
    run: &crate::instructions::Run,
) -> Result<(), BuildError> {
    let err = |m: StepError| step_error(step, m);
    let sc = &step.context;
    let policy::RunPolicy {
        network,
        privileged,
    } = policy::run_policy(run, ctx.opts.network, &ctx.opts.allow).map_err(err)?;
    let mut prepared = prepare_mounts(ctx, step, work, run)?;
    let RunArgs { args, script } =
        run_args(run, &sc.shell).map_err(|m| err(StepError::Invalid(m)))?;
    if let Some((name, body)) = script {
        // Readable and runnable by the step's user whatever berth's umask (the step's work
        // directory keeps everyone else out).
        let dir = work.join("pipes");
        let file = dir.join(&name);
        let mode = |p: &Path| {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        };
        std::fs::create_dir(&dir)
            .and_then(|()| mode(&dir))
            .map_err(|e| err(StepError::io_at("creating", &dir, e)))?;
        std::fs::write(&file, &body)
            .and_then(|()| mode(&file))
            .map_err(|e| err(StepError::io_at("writing", &file, e)))?;
        prepared.binds.push((dir, SCRIPT_DIR.to_owned(), true));
        prepared.targets.push(SCRIPT_DIR.to_owned());
    }
    // The plan's environment has PATH (the image's, or the default). An ssh mount's socket
    // is `SSH_AUTH_SOCK` (the first one's) unless the step sets it; only for the process,
    // never in the image or the key.
    let mut env = sc.env.clone();
    let ssh = crate::instructions::mounts::Kind::Ssh;
    if let Some(first) = run.mounts.iter().find(|m| m.kind == ssh)
        && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
    {
        env.push(format!("SSH_AUTH_SOCK={}", first.target));
    }
    let write = |name: &str, text: String| {
        std::fs::write(work.join(name), text).map_err(|e| err(StepError::io("writing", name, e)))
    };
    write("hostname", "buildkitsandbox\n".into())?;
    write(
        "hosts",
        "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
    )?;
    write("resolv.conf", network.resolv_conf())?;
    // Docker's device rules (and with them CAP_MKNOD, so a RUN step can make device nodes,
    // as under BuildKit) when the devices cgroup can enforce them.
    let device_rules = !privileged && berth_runtime::cgroups::devices_enforceable();
    // On the bridge, an address of the default network for the step's life.
    let lease = match network {
        berth_runtime::spec::NetworkMode::Bridge => {
            Some(bridge_lease(ctx.store).map_err(|m| err(StepError::Invalid(m)))?)
        }
        _ => None,
    };
    let settings = ProcessSettings {
        args: args.clone(),
        env,
        cwd: sc.workdir.clone(),
        user: sc.user.clone(),
        hostname: "buildkitsandbox".into(),
        network,
        attachment: lease.as_ref().map(|(_, a)| a.clone()),
        slirp_ports: Vec::new(),
        read_only: false,
        privileged,
        etc_files: vec![
            (work.join("hosts"), "/etc/hosts"),
            (work.join("hostname"), "/etc/hostname"),
            (work.join("resolv.conf"), "/etc/resolv.conf"),
        ],
        init: false,
        console: None,
        binds: prepared.binds.clone(),
        overlays: prepared.overlays.clone(),
        tmpfs: prepared.tmpfs.clone(),
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        cgroup_path: if device_rules {
            format!(
                "berth/{}",
                work.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        } else {
            String::new()
        },
        memory: None,
        cpus: None,
        pids_limit: None,
        rlimits: ctx.opts.ulimits.clone(),
        device_rules,
        env_fds: prepared.env_fds.clone(),
    };
    let spec = build_spec(&work.join("rootfs"), &settings).map_err(|e| step_error(step, e))?;
    let source = RootfsSource::Overlay {
        lowers: state.snapshots.clone(),
        upper: work.join("upper"),
        work: work.join("work"),
        // The upper becomes a snapshot: the sync at unmount makes it durable.
        volatile: false,
    };
    let bundle = Bundle::write(work, &spec, &source).map_err(|e| step_error(step, e))?;
    let (reader, writer) = std::io::pipe().map_err(|e| step_error(step, e))?;
    let writer2 = writer.try_clone().map_err(|e| step_error(step, e))?;
    let tail = Mutex::new(std::collections::VecDeque::<String>::new());
    let outcome = std::thread::scope(|scope| {
        let tail = &tail;
        let progress = ctx.progress;
        let id = id.to_owned();
        scope.spawn(move || {
            let mut reader = std::io::BufReader::new(reader);
            while let Some(line) = next_output_line(&mut reader) {
                let line = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned();
                {
                    let mut t = tail.lock().expect("no panics");
                    t.push_back(line.clone());
                    if t.len() > 20 {
                        t.pop_front();
                    }
                }
                progress.event(Event::Output {
                    id: id.clone(),
                    line,
                });
            }
        });
        let inherit: Vec<_> = prepared.fds.iter().map(|fd| fd.as_fd()).collect();
        bundle.run_captured(&ctx.opts.exe, writer.into(), writer2.into(), &inherit)
    })
    .map_err(|e| step_error(step, e))?;
    let live = check_live_binds(ctx.context, &prepared.live);
    remove_mount_stubs(&work.join("upper"), &state.snapshots, &prepared.targets);
    drop(prepared);
    if outcome.exit_code != 0 {
        let shown = match &run.command {
            Command::Exec(a) => serde_json::to_string(a).expect("strings"),
            Command::Shell(s) => format!("{} {s}", sc.shell.join(" ")),
        };
        return Err(BuildError::Step {
            at: Location::line(step.line),
            message: format!(
                "process \"{shown}\" did not complete successfully: exit code: {}",
                outcome.exit_code
            ),
            exit_code: Some(outcome.exit_code),
            tail: tail.into_inner().expect("no panics").into(),
        });
    }
    live.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_split_at_newlines_and_capped() {
        let long = vec![b'a'; MAX_OUTPUT_LINE * 2 + 10];
        let mut input = b"one\ntwo\r\n\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut reader = std::io::BufReader::with_capacity(1000, &input[..]);
        let mut lines = Vec::new();
        while let Some(l) = next_output_line(&mut reader) {
            lines.push(l);
        }
        let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [3, 4, 0, MAX_OUTPUT_LINE, MAX_OUTPUT_LINE, 10, 4],
            "{:?}",
            &lines[..3]
        );
        assert_eq!(lines[0], b"one");
        assert_eq!(lines[6], b"last");
    }
}
