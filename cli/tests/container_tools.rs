//! `berth exec`, `top`, `cp`, `diff`, `export` and `commit` on real containers (the root
//! tier; the rootless pass runs them again as an unprivileged user). Each test checks the
//! result from inside the container and, for the hostile cases, the host afterwards.

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::time::Duration;

use berth_test_support::{Sandbox, Tier, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// Containers removed (`rm -f`) when dropped, whether the test passed or not; then, unless
/// the test is already failing, no process of the sandbox (a monitor names its store in its
/// command line) may be left.
struct Removed<'a>(&'a Sandbox, Vec<String>);

impl<'a> Removed<'a> {
    fn new(s: &'a Sandbox, names: &[&str]) -> Removed<'a> {
        Removed(s, names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        for name in &self.1 {
            let _ = self.0.run(&["rm", "-f", name]);
        }
        if std::thread::panicking() {
            return;
        }
        let mut left = processes_of(self.0);
        for _ in 0..50 {
            if left.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = processes_of(self.0);
        }
        panic!("processes of the sandbox left behind: {left:?}");
    }
}

/// The processes whose command line names the sandbox's directory.
fn processes_of(s: &Sandbox) -> Vec<String> {
    let dir = s.path().display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if entry.file_name().to_string_lossy().parse::<u32>().is_ok() && text.contains(&dir) {
            out.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    out
}

/// A detached busybox container running `sleep`, by name; removed when the guard drops.
#[must_use]
fn detached<'a>(s: &'a Sandbox, name: &str, extra: &[&str]) -> Removed<'a> {
    let removed = Removed::new(s, &[name]);
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "1000"]);
    s.ok(&args);
    removed
}

/// `kill -SIGNAL PID` (the test's own child).
fn nix_kill(pid: u32, signal: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn exec(s: &Sandbox, name: &str, script: &str) -> std::process::Output {
    s.run(&["exec", name, "sh", "-c", script])
}

fn exec_ok(s: &Sandbox, name: &str, script: &str) -> String {
    s.ok(&["exec", name, "sh", "-c", script])
}

#[test]
fn exec_runs_with_the_containers_environment_user_and_directory_and_docker_exit_codes() {
    let Some(s) = ROOT.sandbox() else { return };
    let _removed = detached(&s, "ex", &["-e", "FROM_RUN=yes", "-w", "/tmp"]);
    let out = exec_ok(&s, "ex", "echo $FROM_RUN $ADDED; pwd; id -u");
    assert_eq!(out, "yes\n/tmp\n0\n");
    let out = s.ok(&[
        "exec",
        "-e",
        "ADDED=1",
        "-w",
        "/etc",
        "-u",
        "nobody",
        "ex",
        "sh",
        "-c",
        "echo $FROM_RUN $ADDED; pwd; id -u; id -g",
    ]);
    assert_eq!(out, "yes 1\n/etc\n65534\n65534\n");
    // Its PID namespace: PID 1 is the container's command, not the host's init.
    let out = exec_ok(&s, "ex", "tr '\\0' ' ' < /proc/1/cmdline");
    assert_eq!(out.trim(), "sleep 1000");
    assert_eq!(exec(&s, "ex", "exit 3").status.code(), Some(3));
    assert_eq!(exec(&s, "ex", "kill -9 $$").status.code(), Some(137));
    let out = s.run(&["exec", "ex", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", printed(&out));
    let out = s.run(&["exec", "ex", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", printed(&out));
    let out = s.run(&["exec", "-u", "nosuchuser", "ex", "true"]);
    assert_eq!(out.status.code(), Some(126), "{}", printed(&out));
    let out = s.run(&["exec", "-w", "/nowhere", "ex", "true"]);
    assert_eq!(out.status.code(), Some(126), "{}", printed(&out));
    // Stdin only with -i.
    let mut cmd = s.cmd();
    cmd.args(["exec", "-i", "ex", "cat"]);
    let out = berth_test_support::output_with_stdin(&mut cmd, b"piped\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    let mut cmd = s.cmd();
    cmd.args(["exec", "ex", "cat"]);
    let out = berth_test_support::output_with_stdin(&mut cmd, b"piped\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // An id above 2^31 - 1 is refused (4294967295 is "no change" to setresuid: root stays
    // root), given as a number or found in the container's passwd and group.
    exec_ok(
        &s,
        "ex",
        "echo big:x:4294967295:0::/:/bin/sh >> /etc/passwd; \
         echo biggid:x:5:4294967295::/:/bin/sh >> /etc/passwd; \
         echo neg:x:4294967295: >> /etc/group",
    );
    for user in [
        "4294967295",
        "0:4294967295",
        "2147483648",
        "big",
        "biggid",
        "0:neg",
    ] {
        let out = s.run(&["exec", "-u", user, "ex", "id", "-u"]);
        assert_eq!(out.status.code(), Some(126), "{user}: {}", printed(&out));
        assert!(out.stdout.is_empty(), "{user}: {}", printed(&out));
    }
    let out = s.run(&["run", "--rm", "-u", "4294967295", "busybox", "id", "-u"]);
    assert!(!out.status.success(), "{}", printed(&out));
    assert!(out.stdout.is_empty(), "{}", printed(&out));
    // A FIFO at /etc/passwd and /etc/group: a numeric user needs neither and runs; a named
    // one is a clear failure, never a hang.
    exec_ok(
        &s,
        "ex",
        "rm /etc/passwd /etc/group; mkfifo /etc/passwd /etc/group",
    );
    // (`id` itself would read the FIFO: the kernel's word is read instead.)
    let uid = |user: Option<&str>| {
        let mut args = vec!["exec"];
        if let Some(u) = user {
            args.extend(["-u", u]);
        }
        args.extend(["ex", "grep", "^Uid:", "/proc/self/status"]);
        s.ok(&args)
    };
    assert_eq!(uid(None), "Uid:\t0\t0\t0\t0\n");
    assert_eq!(uid(Some("0:0")), "Uid:\t0\t0\t0\t0\n");
    assert_eq!(uid(Some("42")), "Uid:\t42\t42\t42\t42\n");
    let out = s.run(&["exec", "-u", "nobody", "ex", "true"]);
    assert!(!out.status.success(), "{}", printed(&out));
    s.ok(&["rm", "-f", "ex"]);
    // A stopped container: a clear error.
    s.ok(&["run", "--name", "done", "busybox", "true"]);
    let out = s.run(&["exec", "done", "true"]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("is not running"),
        "{}",
        printed(&out)
    );
    s.assert_clean();
}

/// The exec'd process has PID 1's capability sets, seccomp mode, no_new_privs, cgroup and
/// every namespace; with a memory limit too (the container then has a cgroup of its own).
#[test]
fn exec_is_confined_exactly_as_pid_1() {
    let Some(s) = ROOT.sandbox() else { return };
    for (name, extra) in [("plain", &[][..]), ("limited", &["-m", "64m"][..])] {
        let _removed = detached(&s, name, extra);
        let of = |who: &str| {
            exec_ok(
                &s,
                name,
                &format!(
                    "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/{who}/status; \
                     cat /proc/{who}/cgroup; \
                     for n in /proc/{who}/ns/*; do echo ${{n##*/}} $(readlink $n); done"
                ),
            )
        };
        let mine = of("self");
        let pid1 = of("1");
        assert_eq!(mine, pid1, "{name}");
        assert!(mine.contains("Seccomp:\t2"), "{mine}");
        assert!(
            mine.contains("mnt mnt:[") && mine.contains("pid pid:["),
            "{mine}"
        );
        // No descriptor of berth's (the store, the bundle, PID 1's /proc entry) reaches the
        // command: its shell holds its stdio alone.
        assert_eq!(
            exec_ok(&s, name, "ls /proc/$$/fd; true"),
            "0\n1\n2\n",
            "{name}"
        );
        s.ok(&["rm", "-f", name]);
    }
    s.assert_clean();
}

/// An exec while the container starts waits for PID 1 to be in its own root: joining it
/// while it still makes its mounts (here, 60 binds) would give the exec the tree it started
/// from (a copy of the host's).
#[test]
fn exec_while_the_container_starts_is_inside_its_root() {
    let Some(s) = ROOT.sandbox() else { return };
    let probe = format!("test -e {} || echo inside", s.store().display());
    let mut binds = Vec::new();
    for i in 0..60 {
        let dir = s.path().join(format!("b{i}"));
        std::fs::create_dir(&dir).unwrap();
        binds.push(format!("{}:/b{i}", dir.display()));
    }
    for round in 0..3 {
        let name = format!("early{round}");
        let _removed = Removed::new(&s, &[&name]);
        let mut run = s.cmd();
        run.args(["run", "-d", "--name", &name]);
        for b in &binds {
            run.args(["-v", b]);
        }
        let mut run = run
            .args(["busybox", "sleep", "1000"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Exec as soon as the record is there, again and again while it starts.
        let mut joined = 0;
        let started = std::time::Instant::now();
        while joined < 3 && started.elapsed() < Duration::from_secs(20) {
            let out = exec(&s, &name, &probe);
            if out.status.success() {
                assert_eq!(String::from_utf8_lossy(&out.stdout), "inside\n", "{name}");
                joined += 1;
            }
        }
        assert!(run.wait().unwrap().success());
        assert_eq!(joined, 3, "{name}");
        s.ok(&["rm", "-f", &name]);
    }
    s.assert_clean();
}

#[test]
fn exec_detached_returns_at_once_and_the_command_runs() {
    let Some(s) = ROOT.sandbox() else { return };
    let _removed = detached(&s, "bg", &[]);
    let started = std::time::Instant::now();
    s.ok(&["exec", "-d", "bg", "sh", "-c", "sleep 1; touch /tmp/ran"]);
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut ran = false;
    for _ in 0..100 {
        if exec(&s, "bg", "test -e /tmp/ran").status.success() {
            ran = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ran, "exec -d did not run its command");
    // A signal to `berth exec` reaches the command; its code is 128+N.
    let mut child = s.cmd().args(["exec", "bg", "sleep", "77"]).spawn().unwrap();
    for _ in 0..100 {
        if exec_ok(&s, "bg", "ps").contains("sleep 77") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    nix_kill(child.id(), 15);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status}");
    // top shows the container's processes and none of the host's.
    let top = s.ok(&["top", "bg"]);
    assert!(top.starts_with("UID") && top.contains("PPID"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    assert_eq!(top.lines().count(), 2, "{top}");
    let top = s.ok(&["top", "bg", "-o", "pid,comm"]);
    assert!(top.contains("sleep"), "{top}");
    // A process `exec` started is no descendant of PID 1; top shows it all the same.
    s.ok(&["exec", "-d", "bg", "sleep", "555"]);
    let mut top = String::new();
    for _ in 0..100 {
        top = s.ok(&["top", "bg"]);
        if top.contains("sleep 555") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        top.contains("sleep 555") && top.contains("sleep 1000"),
        "{top}"
    );
    assert_eq!(top.lines().count(), 3, "{top}");
    s.ok(&["rm", "-f", "bg"]);
    s.assert_clean();
}

#[test]
fn exec_it_under_tmux_gets_a_terminal_in_a_detached_container() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::Tmux::needed() {
        return;
    }
    let _removed = detached(&s, "tty", &[]);
    let rc = s.path().join("rc");
    let term = berth_test_support::Tmux::start(
        "exec-it",
        &format!(
            "BERTH_ROOT={} {} exec -it tty sh; echo $? > {}; sleep 60",
            s.store().display(),
            env!("CARGO_BIN_EXE_berth"),
            rc.display()
        ),
        100,
        30,
    );
    term.wait(Duration::from_secs(10), |screen| screen.contains("# "));
    term.keys(&["tty && echo T=$TERM && echo $((6 * 7))", "Enter"]);
    let screen = term.wait(Duration::from_secs(10), |screen| screen.contains("42"));
    assert!(screen.contains("/dev/pts/"), "{screen}");
    assert!(screen.contains("T=xterm"), "{screen}");
    assert!(screen.contains("42"), "{screen}");
    // The window size follows the user's terminal.
    term.resize(120, 40);
    std::thread::sleep(Duration::from_millis(300));
    term.keys(&["stty size", "Enter"]);
    let screen = term.wait(Duration::from_secs(10), |screen| screen.contains("40 120"));
    assert!(screen.contains("40 120"), "{screen}");
    term.keys(&["exit 5", "Enter"]);
    for _ in 0..100 {
        if rc.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap_or_default().trim(),
        "5",
        "{}",
        term.screen()
    );
    // The container runs on.
    exec_ok(&s, "tty", "true");
    s.ok(&["rm", "-f", "tty"]);
}

/// Symlinks the container planted (`/evil -> /`, `/x -> ../../../../etc`, a link into
/// `/proc/1/root`, a dangling link to a host path) are followed inside the container only,
/// in both directions; the host files they aim at are neither read nor written.
#[test]
fn cp_through_hostile_symlinks_stays_inside_the_container() {
    let Some(s) = ROOT.sandbox() else { return };
    let host = s.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("secret"), "host secret\n").unwrap();
    let host_dir = host.display().to_string();
    let _removed = detached(&s, "hostile", &[]);
    exec_ok(
        &s,
        "hostile",
        &format!(
            "ln -s / /evil; ln -s ../../../../etc /x; ln -s /proc/1/root /p; \
             ln -s {host_dir}/victim /dangle; mkdir /d; echo inside > /d/f"
        ),
    );
    let input = s.path().join("in.txt");
    std::fs::write(&input, "from the host\n").unwrap();
    let input = input.display().to_string();
    let out_dir = s.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = |name: &str| out_dir.join(name).display().to_string();

    // Out: through /evil, the container's own /; the host's secret is not there.
    let r = s.run(&["cp", &format!("hostile:/evil{host_dir}/secret"), &out("s")]);
    assert!(!r.status.success(), "{}", printed(&r));
    assert!(!out_dir.join("s").exists());
    s.ok(&["cp", "hostile:/x/passwd", &out("pw")]);
    let pw = std::fs::read_to_string(out_dir.join("pw")).unwrap();
    assert_eq!(
        pw,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    );
    s.ok(&["cp", "hostile:/evil/d", &out("")]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("d/f")).unwrap(),
        "inside\n"
    );
    // A link copied out stays a link (never followed while copying).
    s.ok(&["cp", "hostile:/x", &out("x")]);
    assert_eq!(
        std::fs::read_link(out_dir.join("x")).unwrap(),
        std::path::Path::new("../../../../etc")
    );

    // In: through /evil and /x into the container's /etc, not the host's.
    let r = s.run(&["cp", &input, &format!("hostile:/evil{host_dir}/planted")]);
    assert!(!r.status.success(), "{}", printed(&r));
    assert!(!host.join("planted").exists());
    s.ok(&["cp", &input, "hostile:/x/"]);
    assert_eq!(exec_ok(&s, "hostile", "cat /etc/in.txt"), "from the host\n");
    s.ok(&["cp", &input, "hostile:/dangle"]);
    assert!(
        !host.join("victim").exists(),
        "written through a dangling link"
    );
    assert_eq!(exec_ok(&s, "hostile", "cat /dangle"), "from the host\n");
    let r = s.run(&["cp", &input, "hostile:/p/"]);
    assert!(!std::path::Path::new("/in.txt").exists(), "{}", printed(&r));
    // What is copied in belongs to the container's root.
    assert_eq!(exec_ok(&s, "hostile", "stat -c %u:%g /etc/in.txt"), "0:0\n");
    // A tar stream both ways.
    let tar = s.cmd().args(["cp", "hostile:/d", "-"]).output().unwrap();
    assert!(tar.status.success());
    let mut cmd = s.cmd();
    cmd.args(["cp", "-", "hostile:/tmp"]);
    let r = berth_test_support::output_with_stdin(&mut cmd, &tar.stdout);
    assert!(r.status.success(), "{}", printed(&r));
    assert_eq!(exec_ok(&s, "hostile", "cat /tmp/d/f"), "inside\n");
    assert_eq!(
        std::fs::read_to_string(host.join("secret")).unwrap(),
        "host secret\n"
    );
    s.ok(&["rm", "-f", "hostile"]);
    s.assert_clean();
}

/// A stopped container: copied from and into through its overlay (the upper gets what is
/// written); `diff` shows the changes, `export` the flattened tree without whiteouts.
#[test]
fn cp_diff_and_export_of_a_stopped_container() {
    let Some(s) = ROOT.sandbox() else { return };
    let _removed = Removed::new(&s, &["st"]);
    s.ok(&[
        "run",
        "--name",
        "st",
        "busybox",
        "sh",
        "-c",
        "rm /bin/ls; mkdir /tmp/new; echo made > /tmp/new/f; ln -s / /tmp/new/evil",
    ]);
    let dest = s.path().join("f");
    s.ok(&["cp", "st:/tmp/new/f", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "made\n");
    s.ok(&["cp", dest.to_str().unwrap(), "st:/tmp/new/evil/etc/added"]);
    s.ok(&[
        "cp",
        "st:/etc/added",
        s.path().join("back").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(s.path().join("back")).unwrap(),
        "made\n"
    );
    let diff = s.ok(&["diff", "st"]);
    assert_eq!(
        diff,
        "C /bin\nD /bin/ls\nC /etc\nA /etc/added\nC /tmp\nA /tmp/new\nA /tmp/new/evil\nA /tmp/new/f\n"
    );
    let tar = s.cmd().args(["export", "st"]).output().unwrap();
    assert!(tar.status.success(), "{}", printed(&tar));
    let listing = berth_test_support::output_with_stdin(
        std::process::Command::new("tar").args(["t"]),
        &tar.stdout,
    );
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(names.lines().any(|l| l == "bin/busybox"), "{names}");
    assert!(names.lines().any(|l| l == "etc/added"), "{names}");
    assert!(names.lines().any(|l| l == "tmp/new/f"), "{names}");
    assert!(!names.lines().any(|l| l == "bin/ls"), "{names}");
    assert!(!names.contains(".wh."), "{names}");
    // -o FILE, of a running container too.
    let _removed = detached(&s, "live", &[]);
    exec_ok(&s, "live", "rm /bin/cat");
    let file = s.path().join("live.tar");
    s.ok(&["export", "-o", file.to_str().unwrap(), "live"]);
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&file)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(names.lines().any(|l| l == "bin/sh"), "{names}");
    assert!(
        !names.lines().any(|l| l == "bin/cat" || l.contains(".wh.")),
        "{names}"
    );
    s.ok(&["rm", "-f", "live", "st"]);
    s.assert_clean();
}

#[test]
fn commit_then_run_shows_the_change_and_the_config_changes() {
    let Some(s) = ROOT.sandbox() else { return };
    let _removed = Removed::new(&s, &["cm"]);
    s.ok(&[
        "run",
        "--name",
        "cm",
        "busybox",
        "sh",
        "-c",
        "echo committed > /marker; rm /bin/ls",
    ]);
    let id = s.ok(&[
        "commit",
        "-c",
        "ENV X=1",
        "-c",
        "CMD [\"cat\", \"/marker\"]",
        "-m",
        "the message",
        "-a",
        "Jane",
        "cm",
        "made:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(s.ok(&["run", "--rm", "made:1"]), "committed\n");
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "made:1",
            "sh",
            "-c",
            "echo $X; ls /bin/ls 2>&1 || true"
        ]),
        "1\nls: /bin/ls: No such file or directory\n"
    );
    let history = s.ok(&["history", "made:1"]);
    assert!(history.contains("the message"), "{history}");
    // A running container, paused meanwhile, runs on after.
    let _removed = detached(&s, "running", &[]);
    exec_ok(&s, "running", "echo live > /live");
    s.ok(&["commit", "running", "made:2"]);
    // `--pause` is a flag (its value only as `--pause=VALUE`), as Docker's.
    s.ok(&["commit", "--pause", "running", "made:3"]);
    s.ok(&["commit", "--pause=false", "running", "made:4"]);
    exec_ok(&s, "running", "true");
    assert_eq!(s.ok(&["run", "--rm", "made:2", "cat", "/live"]), "live\n");
    let state = exec_ok(&s, "running", "grep State /proc/1/status");
    assert!(!state.contains("stopped"), "{state}");
    s.ok(&["rm", "-f", "running", "cm"]);
    s.assert_clean();
}

/// Compiles `testdata/probes/ptrace_berth.rs` as a static binary into `dir` (rustc is there
/// wherever these tests are built), or copies the one `BERTH_PTRACE_PROBE` names (built
/// beforehand by scripts/test-rootless, whose user has no compiler).
fn ptrace_probe(dir: &std::path::Path) {
    let bin = dir.join("probe");
    if let Some(built) = std::env::var_os("BERTH_PTRACE_PROBE") {
        std::fs::copy(built, &bin).expect("copying the prebuilt probe");
        return;
    }
    let src = berth_test_support::workspace_root().join("testdata/probes/ptrace_berth.rs");
    let o = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("rustc");
    assert!(o.status.success(), "{}", printed(&o));
}

/// A process of the container holding CAP_SYS_PTRACE scans `/proc` and attaches to every
/// process naming berth while the test runs `berth exec` again and again and a health check
/// runs every 100 ms: none it can see, attached or not, ever holds a capability the
/// container lacks or runs without the seccomp filter, and none has the host's berth binary
/// as its `/proc/PID/exe` (the exec'd processes start from a sealed copy).
#[test]
fn no_berth_process_the_container_can_see_holds_more_than_the_container() {
    use std::os::unix::fs::MetadataExt;
    let Some(s) = ROOT.sandbox() else { return };
    let ctx = s.path().join("ctx-tracer");
    std::fs::create_dir_all(&ctx).unwrap();
    ptrace_probe(&ctx);
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY probe /probe\n").unwrap();
    s.ok(&["build", "-q", "-t", "tracer", ctx.to_str().unwrap()]);
    let host = std::fs::metadata(env!("CARGO_BIN_EXE_berth")).unwrap();
    let _removed = Removed::new(&s, &["tr"]);
    let seconds = 15;
    s.ok(&[
        "run",
        "-d",
        "--name",
        "tr",
        "--cap-add",
        "SYS_PTRACE",
        "--health-cmd",
        "true",
        "--health-interval",
        "100ms",
        "tracer",
        "sh",
        "-c",
        &format!(
            "/probe {} {} {seconds} > /tmp/report 2>&1; sleep 1000",
            host.dev(),
            host.ino()
        ),
    ]);
    let started = std::time::Instant::now();
    let mut execs = 0;
    while started.elapsed() < Duration::from_secs(seconds - 3) {
        for args in [
            &["exec", "tr", "true"][..],
            &["exec", "-u", "1000:1000", "-w", "/tmp", "tr", "true"],
        ] {
            let out = s.run(args);
            assert!(out.status.success(), "{}", printed(&out));
            execs += 1;
        }
    }
    let mut report = String::new();
    for _ in 0..100 {
        report = exec_ok(&s, "tr", "cat /tmp/report");
        if report.contains("done") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{execs} execs; the probe reported:\n{report}");
    assert!(report.contains("done"), "{report}");
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("caps") || l.starts_with("seccomp") || l.starts_with("host-exe"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}\n{report}");
    // It saw berth processes (the children of `__exec` before their exec): it did look.
    let seen: u32 = report
        .lines()
        .find_map(|l| l.strip_prefix("done "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(seen > 0, "the probe saw no berth process at all:\n{report}");
}

/// Without `-t`, the exec'd command's stdin, stdout and stderr are pipes berth copies, never
/// its own descriptors (security review F2): see `host_stdio`.
#[test]
fn exec_stdio_are_pipes_not_berths_own_descriptors() {
    let Some(s) = ROOT.sandbox() else { return };
    let _gone = detached(&s, "fds", &[]);
    berth_test_support::host_stdio::assert_out_of_reach(&s, &["exec", "-i", "fds"]);
    let out = exec_ok(&s, "fds", "readlink /proc/$$/fd/0");
    assert_eq!(out, "/dev/null\n");
    // A process left behind holding stdout and stderr open: exec returns all the same, with
    // what the command wrote.
    let started = std::time::Instant::now();
    let out = exec_ok(&s, "fds", "echo before; sleep 100 & echo after >&2");
    assert_eq!(out, "before\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exec waited for the process left behind: {:?}",
        started.elapsed()
    );
    s.ok(&["rm", "-f", "fds"]);
}

/// From a terminal, a process `exec` leaves behind cannot read what the user types at the
/// host's shell once berth has returned, nor write to the terminal: the exec'd command's
/// stdio were pipes, closed when berth returned (security review F2).
#[test]
fn a_process_left_behind_by_exec_cannot_reach_the_users_terminal() {
    let Some(s) = ROOT.sandbox() else { return };
    if !berth_test_support::Tmux::needed() {
        return;
    }
    let _gone = detached(&s, "left", &[]);
    let term = berth_test_support::Tmux::start(
        "exec-left",
        &format!(
            "BERTH_ROOT={} {} exec left sh -c 'exec 3<&2 4>&1; \
             (sleep 0.5; dd bs=1 count=20 of=/tmp/stolen <&3 2>/dev/null; \
             echo INJECTED-BY-THE-CONTAINER >&4; echo INJECTED-BY-THE-CONTAINER >&3) &'; \
             echo EXEC-RETURNED; sleep 60",
            s.store().display(),
            env!("CARGO_BIN_EXE_berth"),
        ),
        100,
        30,
    );
    let screen = term.wait(Duration::from_secs(10), |screen| {
        screen.contains("EXEC-RETURNED")
    });
    assert!(screen.contains("EXEC-RETURNED"), "{screen}");
    std::thread::sleep(Duration::from_millis(1500));
    term.keys(&["typed-at-the-host-shell", "Enter"]);
    std::thread::sleep(Duration::from_millis(1500));
    let screen = term.screen();
    assert!(
        !screen.contains("INJECTED-BY-THE-CONTAINER"),
        "a process left behind wrote to the terminal:\n{screen}"
    );
    let stolen = s.run(&["exec", "left", "cat", "/tmp/stolen"]);
    assert!(
        !String::from_utf8_lossy(&stolen.stdout).contains("typed"),
        "a process left behind read the terminal: {}",
        printed(&stolen)
    );
    s.ok(&["rm", "-f", "left"]);
}
