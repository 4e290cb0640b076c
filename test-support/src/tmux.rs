//! A command on a real terminal: a detached tmux session whose screen the test reads.

use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Tmux {
    session: String,
}

impl Tmux {
    /// Whether tmux is installed; when it is not, the test skips, saying so
    /// ([`crate::needs`]).
    #[track_caller]
    pub fn needed() -> bool {
        let installed = Command::new("tmux").arg("-V").output().is_ok();
        crate::needs("tmux (scripts/test installs it)", installed)
    }

    /// Runs `command` (a shell command line) on a `width`×`height` terminal.
    pub fn start(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        let session = format!("berth-{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("running tmux");
        assert!(status.success(), "tmux new-session failed");
        Tmux { session }
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("running tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types keys (tmux key names: `"Enter"`, `"C-c"`, or text).
    pub fn keys(&self, keys: &[&str]) {
        Command::new("tmux")
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .output()
            .expect("running tmux");
    }

    /// Resizes the terminal.
    pub fn resize(&self, width: u16, height: u16) {
        Command::new("tmux")
            .args(["resize-window", "-t", &self.session, "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .output()
            .expect("running tmux");
    }

    /// Waits until `done` holds for the screen, or `timeout`; returns the last screen.
    pub fn wait(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) || started.elapsed() > timeout {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .output();
    }
}
