//! `RUN --mount=type=ssh` with `--ssh`, end to end (the root tier): a real `ssh-agent` on
//! the host holding a key made with `ssh-keygen`, and Debian's `ssh-add` (with the libraries
//! it links, copied from the host) run inside the step against the forwarded socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_test_support::{Sandbox, Tier, assert_success, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// An `ssh-agent` of the test's, on `socket`; killed (by its PID) on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(socket: PathBuf) -> Agent {
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent is required (openssh-client; scripts/test installs it)");
        let started = std::time::Instant::now();
        while !socket.exists() {
            assert!(started.elapsed().as_secs() < 10, "ssh-agent did not start");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Agent { child, socket }
    }

    fn ssh_add(&self, args: &[&str]) -> std::process::Output {
        Command::new("ssh-add")
            .args(args)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new ed25519 key at `path` (no passphrase); returns its SHA256 fingerprint.
fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert_success(&out, "ssh-keygen");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(path.with_extension("pub"))
        .output()
        .unwrap();
    let line = assert_success(&out, "ssh-keygen -l");
    line.split_whitespace().nth(1).unwrap().to_owned()
}

/// `/usr/bin/ssh-add` and every library `ldd` names, under `dir` at their own paths.
fn copy_ssh_add(dir: &Path) {
    let mut files = vec![PathBuf::from("/usr/bin/ssh-add")];
    let out = Command::new("ldd")
        .arg("/usr/bin/ssh-add")
        .output()
        .unwrap();
    for line in assert_success(&out, "ldd").lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push(PathBuf::from(p));
        }
    }
    for f in files {
        let to = dir.join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&f, &to).unwrap();
    }
}

fn build(s: &Sandbox, ctx: &Path, args: &[&str], sock: &Path) -> (bool, String) {
    let out = s
        .cmd()
        .args(["build", "--progress", "plain"])
        .args(args)
        .arg(ctx)
        .env("SSH_AUTH_SOCK", sock)
        .output()
        .unwrap();
    (out.status.success(), printed(&out))
}

#[test]
fn ssh_mounts_forward_an_agent_and_nothing_else() {
    let Some(s) = ROOT.sandbox() else { return };
    let agent = Agent::start(s.path().join("agent.sock"));
    let host_key = s.path().join("host_key");
    let host_fp = keygen(&host_key);
    assert_success(
        &agent.ssh_add(&[host_key.to_str().unwrap()]),
        "ssh-add on the host",
    );
    let file_key = s.path().join("file_key");
    let file_fp = keygen(&file_key);
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             COPY tools/ /\n\
             RUN --mount=type=ssh ssh-add -l > /out-default; echo \"$SSH_AUTH_SOCK\" >> /out-default\n\
             RUN --mount=type=ssh,id=keys,target=/k.sock,mode=0666,uid=5 SSH_AUTH_SOCK=/k.sock ssh-add -l > /out-keys; stat -c '%a %u' /k.sock >> /out-keys\n\
             RUN --mount=type=ssh (ssh-add -D && echo removed || echo refused) > /out-remove 2>&1\n\
             RUN --mount=type=ssh,id=absent (test -e /run/buildkit/ssh_agent.0 && echo mounted || echo none) > /out-optional\n",
        )],
    );
    copy_ssh_add(&ctx.join("tools"));
    let keys = format!("keys={}", file_key.display());
    let (ok, out) = build(
        &s,
        &ctx,
        &["-t", "ssh:1", "--ssh", "default", "--ssh", &keys],
        &agent.socket,
    );
    assert!(ok, "{out}");
    let run = |script: &str| s.ok(&["run", "--rm", "ssh:1", "sh", "-c", script]);
    let default = run("cat /out-default");
    assert!(default.contains(&host_fp), "{default}");
    assert!(
        default.ends_with("/run/buildkit/ssh_agent.0\n"),
        "{default}"
    );
    let from_file = run("cat /out-keys");
    assert!(from_file.contains(&file_fp), "{from_file}");
    assert!(!from_file.contains(&host_fp), "{from_file}");
    assert!(from_file.ends_with("666 5\n"), "{from_file}");
    // The step cannot change the host's agent: removing keys is refused by berth's socket.
    assert!(run("cat /out-remove").contains("refused"));
    let listed = agent.ssh_add(&["-l"]);
    assert!(printed(&listed).contains(&host_fp), "{}", printed(&listed));
    assert_eq!(run("cat /out-optional"), "none\n");
    // Nothing of it in the image: no socket, no directory made for it, no SSH_AUTH_SOCK.
    assert_eq!(
        run("test -e /run/buildkit && echo dir; test -e /k.sock && echo sock; echo end"),
        "end\n"
    );
    let config: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "ssh:1"])).unwrap();
    let env = config[0]["Config"]["Env"].to_string();
    assert!(
        env.contains("PATH=") && !env.contains("SSH_AUTH_SOCK"),
        "{env}"
    );
    let history = s.ok(&["history", "--no-trunc", "ssh:1"]);
    assert!(
        !history.contains("agent.sock") && !history.contains("file_key"),
        "{history}"
    );
    // Another agent (the key file copied elsewhere) changes no cache key.
    let moved = s.path().join("moved_key");
    std::fs::copy(&file_key, &moved).unwrap();
    let keys = format!("keys={}", moved.display());
    let (ok, again) = build(
        &s,
        &ctx,
        &["-t", "ssh:1", "--ssh", "default", "--ssh", &keys],
        &agent.socket,
    );
    assert!(ok, "{again}");
    assert_eq!(again.matches("CACHED").count(), 5, "{again}");
    s.assert_clean();
}

#[test]
fn a_required_ssh_mount_needs_its_ssh_flag() {
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=ssh,id=deploy,required=true true\n",
        )],
    );
    let agent = Agent::start(s.path().join("agent.sock"));
    let (ok, out) = build(&s, &ctx, &["--ssh", "default"], &agent.socket);
    assert!(!ok, "{out}");
    assert!(
        out.contains("no ssh agent given for id \"deploy\", which is required"),
        "{out}"
    );
    // `--ssh default` without an agent in the environment, or with a missing key file.
    let out = s
        .cmd()
        .args(["build", "--ssh", "default"])
        .arg(&ctx)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert!(
        printed(&out).contains("SSH_AUTH_SOCK is not set"),
        "{}",
        printed(&out)
    );
    let (ok, out) = build(
        &s,
        &ctx,
        &["--ssh", "deploy=/nonexistent/key"],
        &agent.socket,
    );
    assert!(!ok && out.contains("could not be loaded"), "{out}");
}
