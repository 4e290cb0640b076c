//! `RUN --mount=type=ssh`: the build's `--ssh` sources in, for each mount a socket out that
//! forwards to one of them.
//!
//! A source (`--ssh ID[=PATH[,PATH...]]`) is an ssh agent's socket (`default` and a bare
//! `ID` mean `$SSH_AUTH_SOCK`), or private key files, which berth loads into an `ssh-agent`
//! of its own (the system's, from openssh-client) listening in a private directory, killed
//! when the build ends ([`Sources`]).
//!
//! A step never sees the agent's socket or its directory: it gets a [`Proxy`], a socket of
//! berth's own in a private directory, bound onto the mount's target. The proxy reads the
//! agent protocol one message at a time (each at most 256 KiB, as OpenSSH's agent) and
//! forwards only the requests that use keys, never those that change the agent: listing the
//! identities (`11`) and signing (`13`) reach it; adding or removing keys, locking and
//! extensions get `SSH_AGENT_FAILURE`, as BuildKit's read-only agent. Nothing of a source
//! enters the image, the history or a cache key.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// OpenSSH's `AGENT_MAX_LEN`: no message of the protocol is larger.
const MAX_MESSAGE: usize = 256 * 1024;
const REQUEST_IDENTITIES: u8 = 11;
const SIGN_REQUEST: u8 = 13;
const FAILURE: [u8; 5] = [0, 0, 0, 1, 5];

/// The `--ssh` sources of a build, by id: each an agent socket to forward to.
#[derive(Debug, Default)]
pub struct Sources {
    sockets: BTreeMap<String, PathBuf>,
    /// Agents berth started for key files (killed, their directories removed, on drop).
    agents: Vec<Agent>,
}

#[derive(Debug)]
struct Agent {
    child: Child,
    dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sources {
    /// The sources `specs` name; key files get an agent whose private directory is made
    /// under `tmp`.
    pub fn new(specs: &[String], tmp: &Path) -> Result<Sources, String> {
        let mut sources = Sources::default();
        for spec in specs {
            let (id, paths) = match spec.split_once('=') {
                Some((id, paths)) => (id, paths.split(',').map(PathBuf::from).collect()),
                None => (spec.as_str(), Vec::new()),
            };
            if id.is_empty() || sources.sockets.contains_key(id) {
                return Err(format!("--ssh {spec:?}: expected a new ID[=PATH[,PATH]]"));
            }
            let paths: Vec<PathBuf> = match paths.is_empty() {
                true => vec![
                    std::env::var_os("SSH_AUTH_SOCK")
                        .map(PathBuf::from)
                        .ok_or_else(|| {
                            format!("--ssh {spec:?}: SSH_AUTH_SOCK is not set: give ID=PATH")
                        })?,
                ],
                false => paths,
            };
            let sockets: Vec<&PathBuf> = paths
                .iter()
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
                .collect();
            let socket = match (sockets.as_slice(), paths.len()) {
                ([one], 1) => (*one).clone(),
                ([], _) => {
                    let agent = Agent::with_keys(&paths, tmp)
                        .map_err(|e| format!("--ssh {spec:?}: {e}"))?;
                    let socket = agent.dir.join("agent");
                    sources.agents.push(agent);
                    socket
                }
                _ => {
                    return Err(format!(
                        "--ssh {spec:?}: one agent socket, or key files, not both"
                    ));
                }
            };
            sources.sockets.insert(id.to_owned(), socket);
        }
        Ok(sources)
    }

    /// The agent socket of `id`, if `--ssh` gave it.
    pub fn socket(&self, id: &str) -> Option<&Path> {
        self.sockets.get(id).map(PathBuf::as_path)
    }
}

impl Agent {
    /// The system's `ssh-agent` on a socket in a new `0700` directory under `tmp`, with
    /// `keys` added (`ssh-add`, which refuses a key readable by others or one that needs a
    /// passphrase: nothing prompts).
    fn with_keys(keys: &[PathBuf], tmp: &Path) -> Result<Agent, String> {
        static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = tmp.join(format!("ssh-{}-{n}", std::process::id()));
        berth_store::files::create_dir_mode(&dir, 0o700)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let socket = dir.join("agent");
        let clean = |program: &str| {
            let mut c = Command::new(program);
            c.env_clear()
                .env(
                    "PATH",
                    std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
                )
                .env("SSH_ASKPASS_REQUIRE", "never")
                .stdin(Stdio::null());
            c
        };
        let child = clean("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let agent = match child {
            Ok(child) => Agent { child, dir },
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("running ssh-agent (openssh-client): {e}"));
            }
        };
        let started = Instant::now();
        while !socket.exists() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("ssh-agent did not start".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = clean("ssh-add")
            .env("SSH_AUTH_SOCK", &socket)
            .arg("-q")
            .arg("--")
            .args(keys)
            .output()
            .map_err(|e| format!("running ssh-add (openssh-client): {e}"))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "the key files could not be loaded: {}",
                why.trim().lines().last().unwrap_or("ssh-add failed")
            ));
        }
        Ok(agent)
    }
}

/// One mount's socket, forwarding to an agent until dropped.
#[derive(Debug)]
pub struct Proxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens at `path` (in a private directory of the caller's), the socket owned by
    /// `uid:gid` with `mode`, forwarding to `agent`.
    pub fn start(
        path: PathBuf,
        agent: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> std::io::Result<Proxy> {
        use std::os::unix::fs::PermissionsExt;
        let listener = UnixListener::bind(&path)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let agent = agent.clone();
                        std::thread::spawn(move || {
                            let _ = forward(client, &agent);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Proxy {
            path,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket, for the bind mount.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One message: its 4-byte length and body; `None` at the end of the stream.
fn read_message(from: &mut UnixStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match from.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_MESSAGE {
        return Err(std::io::Error::other("agent message of a bad length"));
    }
    let mut message = Vec::with_capacity(4 + n);
    message.extend_from_slice(&len);
    message.resize(4 + n, 0);
    from.read_exact(&mut message[4..])?;
    Ok(Some(message))
}

/// Serves one connection of the step: each request that uses keys is sent to the agent and
/// its answer relayed; any other is refused here.
fn forward(mut client: UnixStream, agent: &Path) -> std::io::Result<()> {
    let mut upstream: Option<UnixStream> = None;
    while let Some(request) = read_message(&mut client)? {
        if ![REQUEST_IDENTITIES, SIGN_REQUEST].contains(&request[4]) {
            client.write_all(&FAILURE)?;
            continue;
        }
        let up = match &mut upstream {
            Some(up) => up,
            none => {
                let up = UnixStream::connect(agent)?;
                // An agent may wait for its user to confirm a signature, not forever.
                up.set_read_timeout(Some(Duration::from_secs(300)))?;
                none.insert(up)
            }
        };
        up.write_all(&request)?;
        let answer = read_message(up)?
            .ok_or_else(|| std::io::Error::other("the agent closed the connection"))?;
        client.write_all(&answer)?;
    }
    Ok(())
}
