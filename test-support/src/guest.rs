//! A throwaway Linux guest under qemu, for what this machine cannot show on its own kernel.
//!
//! This VM binds memory, pids and cpu to cgroup v1 and will not let them go, so berth's v2
//! code could not run here for real. A guest booted with `cgroup_no_v1=all` has every
//! controller on the unified hierarchy. The guest is Debian's kernel (fetched by
//! `scripts/guest-kernel`, never from the internet at test time) with an initramfs made per
//! test: busybox-static, the binaries the test adds with the libraries `ldd` names, the
//! modules it asks for, and a script. The script's output comes back over the serial
//! console; lines starting with `@@ ` are the results, read with [`Outcome::value`].
//!
//! qemu runs under software emulation (TCG): this VM's `/dev/kvm` is a paravirtual one that
//! boots only guests built for it. A boot takes about 3 s here, a container start about 0.2 s.
//!
//! How the guest starts: the initramfs's `/init` copies itself into a tmpfs and switches root
//! to it (`pivot_root`, which container runtimes use, is refused on the initramfs's rootfs),
//! mounts `/proc`, `/sys`, `/dev`, `/tmp` and cgroup2 at `/sys/fs/cgroup`, loads the modules,
//! runs the script with `sh -e` off, prints `@@ exit N` and powers off.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{BUSYBOX, busybox_rootfs, workspace_root};

/// The uid and gid of the user [`Guest::add_rootless_user`] makes.
pub const GUEST_USER: u32 = 1000;

/// Debian's kernel image and its modules, as `scripts/guest-kernel` unpacks them.
#[derive(Debug, Clone)]
pub struct GuestKernel {
    vmlinuz: PathBuf,
    modules: PathBuf,
}

impl GuestKernel {
    /// The guest tier: the kernel [`GuestKernel::find`] finds, or `None` after saying
    /// `skipped: needs the qemu guest (<what is missing>)` (the guest needs no root);
    /// `BERTH_REQUIRE_GUEST=1` makes that a failure.
    #[track_caller]
    pub fn needed() -> Option<GuestKernel> {
        match GuestKernel::find() {
            Ok(kernel) => Some(kernel),
            Err(why) => {
                crate::tier::skip_unless_required(
                    &["BERTH_REQUIRE_GUEST"],
                    &format!("the qemu guest ({why})"),
                );
                None
            }
        }
    }

    /// The kernel under `BERTH_GUEST_KERNEL`, or else `target/guest-kernel` of the workspace;
    /// `Err` says what is missing.
    pub fn find() -> Result<GuestKernel, String> {
        let dir = std::env::var_os("BERTH_GUEST_KERNEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/guest-kernel"));
        if which("qemu-system-x86_64").is_none() {
            return Err("qemu-system-x86_64 is missing (apt-get install qemu-system-x86)".into());
        }
        let first = |d: &Path, prefix: &str| -> Option<PathBuf> {
            let mut found: Vec<PathBuf> = std::fs::read_dir(d)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .collect();
            found.sort();
            found.pop()
        };
        let vmlinuz = first(&dir.join("boot"), "vmlinuz-");
        let modules = first(&dir.join("lib/modules"), "");
        match (vmlinuz, modules) {
            (Some(vmlinuz), Some(modules)) => Ok(GuestKernel { vmlinuz, modules }),
            _ => Err(format!(
                "no guest kernel in {} (run scripts/guest-kernel)",
                dir.display()
            )),
        }
    }

    /// The path of module `name` (`overlay` → `.../fs/overlayfs/overlay.ko`).
    fn module(&self, name: &str) -> PathBuf {
        let file = format!("{name}.ko");
        walk(&self.modules)
            .into_iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(file.as_str()))
            .unwrap_or_else(|| panic!("module {name} not in {}", self.modules.display()))
    }
}

/// An initramfs being put together, then booted by [`Guest::boot`].
#[derive(Debug)]
pub struct Guest {
    kernel: GuestKernel,
    dir: tempfile::TempDir,
    modules: Vec<String>,
}

/// What a guest printed.
#[derive(Debug)]
pub struct Outcome {
    /// Everything from the serial console, `\r` removed.
    pub console: String,
}

impl Outcome {
    /// The rest of the first `@@ KEY ...` line, trimmed; panics with the console when there
    /// is none.
    pub fn value<'a>(&'a self, key: &str) -> &'a str {
        self.values(key).next().unwrap_or_else(|| {
            panic!(
                "the guest printed no `@@ {key}`; its console:\n{}",
                self.console
            )
        })
    }

    /// The rest of every `@@ KEY ...` line, in order (what comes before `@@ ` on a line is
    /// left aside).
    pub fn values<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.console.lines().filter_map(move |l| {
            // The first line shares the console with the firmware's escape codes.
            let rest = l[l.find("@@ ")? + 3..].strip_prefix(key)?;
            (rest.is_empty() || rest.starts_with(' ')).then(|| rest.trim())
        })
    }
}

impl Guest {
    pub fn new(kernel: &GuestKernel) -> Guest {
        let dir = tempfile::Builder::new()
            .prefix("berth-guest-")
            .tempdir()
            .expect("creating the initramfs directory");
        for d in [
            "bin", "proc", "sys", "dev", "tmp", "newroot", "etc", "modules",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let root = dir.path();
        std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copying busybox");
        let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        Guest {
            kernel: kernel.clone(),
            dir,
            modules: Vec::new(),
        }
    }

    /// Copies a host binary to `/bin/NAME` without its debug sections, with every library
    /// `ldd` lists at the same path.
    pub fn add_binary(&mut self, host: &Path, name: &str) -> &mut Guest {
        let to = self.dir.path().join("bin").join(name);
        let _ = std::fs::remove_file(&to);
        let stripped = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(host)
            .arg(&to)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(host, &to).expect("copying the binary");
        }
        let ldd = Command::new("ldd").arg(host).output().expect("ldd");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                let inside = self.dir.path().join(p.trim_start_matches('/'));
                std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
                std::fs::copy(p, &inside).unwrap_or_else(|e| panic!("copying {p}: {e}"));
            }
        }
        self
    }

    /// Loads kernel module `name` before the script runs.
    pub fn add_module(&mut self, name: &str) -> &mut Guest {
        let from = self.kernel.module(name);
        std::fs::copy(from, self.dir.path().join(format!("modules/{name}.ko"))).unwrap();
        self.modules.push(name.to_owned());
        self
    }

    /// Writes a file at `at` (absolute) with mode `mode`.
    pub fn add_file(&mut self, at: &str, contents: &str, mode: u32) -> &mut Guest {
        let path = self.dir.path().join(at.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
        self
    }

    /// An unprivileged user for rootless berth: uid and gid [`GUEST_USER`] (`u`, home
    /// `/tmp/u`, which the script makes), a subordinate range 100000:65536, the host's
    /// `newuidmap` and `newgidmap` (setuid root), and `/bin/as-user CMD...`, which runs a
    /// command as the user with a clean environment and a store, runtime directory and
    /// home under `/tmp/u`. util-linux's `setpriv` switches users (as `/bin/util-setpriv`:
    /// busybox's shell would run its own applet of that name).
    pub fn add_rootless_user(&mut self) -> &mut Guest {
        let tool = |name: &str| {
            ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{name} is missing on the host (util-linux, uidmap)"))
        };
        self.add_binary(&tool("setpriv"), "util-setpriv");
        for helper in ["newuidmap", "newgidmap"] {
            self.add_binary(&tool(helper), helper);
            std::fs::set_permissions(
                self.dir.path().join("bin").join(helper),
                std::os::unix::fs::PermissionsExt::from_mode(0o4755),
            )
            .unwrap();
        }
        let id = GUEST_USER;
        self.add_file(
            "/etc/passwd",
            &format!("root:x:0:0:root:/root:/bin/sh\nu:x:{id}:{id}::/tmp/u:/bin/sh\n"),
            0o644,
        )
        .add_file("/etc/group", &format!("root:x:0:\nu:x:{id}:\n"), 0o644)
        .add_file("/etc/subuid", "u:100000:65536\n", 0o644)
        .add_file("/etc/subgid", "u:100000:65536\n", 0o644)
        .add_file(
            "/bin/as-user",
            &format!(
                "#!/bin/sh\n\
                 exec /bin/util-setpriv --reuid={id} --regid={id} --init-groups \\\n  \
                 env -i HOME=/tmp/u XDG_RUNTIME_DIR=/tmp/u/run BERTH_ROOT=/tmp/u/store \
                 PATH=/bin \"$@\"\n"
            ),
            0o755,
        )
    }

    /// A busybox rootfs ([`busybox_rootfs`]) at `at`, to import as an image in the guest.
    pub fn add_busybox_rootfs(&mut self, at: &str) -> &mut Guest {
        busybox_rootfs(&self.dir.path().join(at.trim_start_matches('/')));
        self
    }

    /// Boots the guest with `script` (run by busybox sh after the set-up) and the extra
    /// kernel arguments `cmdline`; waits until it powers off, at most `timeout`.
    pub fn boot(&mut self, script: &str, cmdline: &str, timeout: Duration) -> Outcome {
        let root = self.dir.path().to_owned();
        let insmods: String = self
            .modules
            .iter()
            .map(|m| format!("insmod /modules/{m}.ko || echo '@@ insmod-failed {m}'\n"))
            .collect();
        let entries: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                !["proc", "sys", "dev", "newroot", "init", "stage2", "script"].contains(&n.as_str())
            })
            .collect();
        self.add_file(
            "/init",
            &format!(
                "#!/bin/sh\n\
                 mount -t devtmpfs dev /dev\n\
                 mount -t tmpfs -o size=75% root /newroot\n\
                 tar -cf - {} | tar -xf - -C /newroot\n\
                 mkdir -p /newroot/proc /newroot/sys /newroot/dev\n\
                 exec switch_root /newroot /stage2\n",
                entries.join(" ") + " stage2 script"
            ),
            0o755,
        );
        // The networks the suites pin for berth (`.cargo/config.toml`) hold in the guest too,
        // whose kernel has no bridge module loaded.
        let exports: String = ["BERTH_DEFAULT_NETWORK", "BERTH_DEFAULT_BUILD_NETWORK"]
            .iter()
            .filter_map(|k| {
                let v = std::env::var(k).ok()?;
                v.bytes()
                    .all(|b| b.is_ascii_alphanumeric())
                    .then(|| format!("export {k}={v}\n"))
            })
            .collect();
        self.add_file(
            "/stage2",
            &format!(
                "#!/bin/sh\n\
                 {exports}\
                 mount -t proc proc /proc\n\
                 mount -t sysfs sys /sys\n\
                 mount -t devtmpfs dev /dev\n\
                 mount -t tmpfs tmp /tmp\n\
                 mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
                 {insmods}\
                 cd /tmp\n\
                 sh /script\n\
                 echo \"@@ exit $?\"\n\
                 poweroff -f\n"
            ),
            0o755,
        );
        self.add_file("/script", script, 0o755);

        let initrd = root.with_extension("cpio");
        let made = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd '{}' && find . | {BUSYBOX} cpio -o -H newc > '{}' 2>/dev/null",
                root.display(),
                initrd.display()
            ))
            .status()
            .expect("running cpio");
        assert!(made.success(), "making the initramfs");

        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-m", "2048"])
            .args(["-smp", "2", "-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(&self.kernel.vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 quiet rdinit=/init {cmdline}"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting qemu-system-x86_64");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stdout.read_to_end(&mut all);
            all
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > timeout {
                // Our own child, by its handle.
                let _ = child.kill();
                let _ = child.wait();
                let console = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
                panic!("the guest did not power off within {timeout:?}; its console:\n{console}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = std::fs::remove_file(&initrd);
        let console = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        assert!(
            status.success(),
            "qemu failed ({status}): {stderr}\nconsole:\n{console}"
        );
        Outcome { console }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// Every file under `dir`, depth first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
