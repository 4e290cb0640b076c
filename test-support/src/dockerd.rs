//! Debian's `docker.io`: a `dockerd` of a test's or benchmark's own (its own socket, data
//! root and exec root, no bridge, no iptables), for BuildKit and for loading what berth makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A tool from Debian's usual directories.
pub fn which(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A `dockerd` this process started (its own socket, data root and exec root;
/// `--bridge=none --iptables=false`), stopped by its PID on drop.
#[derive(Debug)]
pub struct Dockerd {
    child: std::process::Child,
    data: PathBuf,
}

impl Dockerd {
    /// Starts one under `work`; returns it and its `DOCKER_HOST`. It has no bridge and
    /// touches no firewall rule.
    pub fn start(work: &Path) -> Option<(Dockerd, String)> {
        Dockerd::start_with(
            work,
            &["--bridge=none", "--iptables=false", "--ip6tables=false"],
        )
    }

    /// One with Docker's default bridge (`docker0`) and its iptables rules, for published
    /// ports: only for a caller that runs in a network namespace of its own making, which
    /// the bridge and the rules then live in.
    pub fn start_bridged(work: &Path) -> Option<(Dockerd, String)> {
        Dockerd::start_with(work, &["--ip6tables=false"])
    }

    fn start_with(work: &Path, network: &[&str]) -> Option<(Dockerd, String)> {
        let dockerd = which("dockerd")?;
        let data = work.join("docker-data");
        let exec = work.join("docker-exec");
        std::fs::create_dir_all(&data).ok()?;
        let sock = work.join("docker.sock");
        let child = Command::new(dockerd)
            .args(network)
            .arg(format!("--host=unix://{}", sock.display()))
            .arg(format!("--data-root={}", data.display()))
            .arg(format!("--exec-root={}", exec.display()))
            .arg(format!("--pidfile={}", work.join("docker.pid").display()))
            .stdout(std::fs::File::create(work.join("dockerd.log")).ok()?)
            .stderr(std::fs::File::create(work.join("dockerd.err")).ok()?)
            .spawn()
            .ok()?;
        let host = format!("unix://{}", sock.display());
        let d = Dockerd { child, data };
        for _ in 0..100 {
            let up = Command::new("/usr/bin/docker")
                .env("DOCKER_HOST", &host)
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if sock.exists() && up {
                return Some((d, host));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "dockerd did not start; see {}",
            work.join("dockerd.err").display()
        );
        None
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Only the dockerd we started, by its PID.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(&self.data)
            .stderr(Stdio::null())
            .status();
    }
}
