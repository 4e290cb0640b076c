//! A container's life past `run`: `create`, `start`, `restart`, restart policies, `inspect`
//! of a container, and the `run` flags that shape it (`--add-host`, `--dns*`,
//! `--cap-add/--cap-drop`, `--tmpfs`, `--mount`). Real namespaces and overlayfs (the
//! containers tier).

// A test prints through the harness; the CLI's own rule on output (cli/clippy.toml) is not
// for it.
#![allow(clippy::disallowed_macros)]

use std::time::{Duration, Instant};

use berth_test_support::{Sandbox, Tier, assert_success, printed};
use serde_json::Value;

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));

/// Removes the named containers (`rm -f`) when the test ends, failed or not, so no monitor
/// is left restarting a container.
struct Removed<'a>(&'a Sandbox, Vec<&'a str>);

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        for name in &self.1 {
            let _ = self.0.run(&["rm", "-f", name]);
        }
    }
}

fn inspect(s: &Sandbox, name: &str) -> Value {
    let out = assert_success(&s.run(&["inspect", "--type", "container", name]), "inspect");
    serde_json::from_str::<Value>(&out).expect("inspect prints JSON")[0].clone()
}

/// Waits until `check` holds of the container's inspect output, at most 20 s.
fn wait_for(s: &Sandbox, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = inspect(s, name);
        if check(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name}: waited 20 s for {what}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(v: &Value) -> &str {
    v["State"]["Status"].as_str().unwrap_or_default()
}

#[test]
fn create_then_start_runs_the_container_again_with_its_layer() {
    let Some(s) = ROOT.sandbox() else { return };
    let _gone = Removed(&s, vec!["c1"]);
    let id = assert_success(
        &s.run(&[
            "create",
            "--name",
            "c1",
            "-e",
            "WHO=berth",
            "busybox",
            "sh",
            "-c",
            "echo run $WHO; echo x >> /count; wc -l < /count; exit 3",
        ]),
        "create",
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let table = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}"]);
    assert!(table.contains("c1 created Created"), "{table}");
    let v = inspect(&s, "c1");
    assert_eq!(status(&v), "created");
    assert_eq!(v["Id"], id);
    assert_eq!(v["Name"], "/c1");
    // `start -a` follows the output and exits with the container's code.
    let out = s.run(&["start", "-a", "c1"]);
    assert_eq!(out.status.code(), Some(3), "{}", printed(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "run berth\n1\n");
    // A second start reuses the container's layer: /count has two lines now.
    assert_eq!(s.ok(&["start", "c1"]).trim(), "c1");
    let v = wait_for(&s, "c1", "the second run to end", |v| status(v) == "exited");
    assert_eq!(v["State"]["ExitCode"], 3);
    assert_eq!(s.ok(&["logs", "c1"]), "run berth\n1\nrun berth\n2\n");
    assert_ne!(v["State"]["StartedAt"], "0001-01-01T00:00:00Z");
}

#[test]
fn on_failure_2_restarts_twice_then_records_the_exit() {
    let Some(s) = ROOT.sandbox() else { return };
    let _gone = Removed(&s, vec!["r2"]);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "r2",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 4",
    ]);
    let v = wait_for(&s, "r2", "the last exit", |v| {
        status(v) == "exited" && v["RestartCount"] == 2
    });
    assert_eq!(v["State"]["ExitCode"], 4);
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    // Three runs in all: the first and two restarts; no more come.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.ok(&["logs", "r2"]), "run\nrun\nrun\n");
    // A clean exit is not a failure: on-failure does not restart it.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "r0",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    let _gone0 = Removed(&s, vec!["r0"]);
    let v = wait_for(&s, "r0", "the exit", |v| status(v) == "exited");
    assert_eq!(v["RestartCount"], 0);
}

#[test]
fn always_restarts_until_stopped_and_restart_starts_it_again() {
    let Some(s) = ROOT.sandbox() else { return };
    let _gone = Removed(&s, vec!["a1"]);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "a1",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo run; sleep 0.2",
    ]);
    wait_for(&s, "a1", "two restarts", |v| {
        v["RestartCount"].as_u64() >= Some(2)
    });
    assert_success(&s.run(&["stop", "-t", "1", "a1"]), "stop");
    let v = inspect(&s, "a1");
    assert_eq!(status(&v), "exited", "{v:#}");
    let runs = s.ok(&["logs", "a1"]).lines().count();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        s.ok(&["logs", "a1"]).lines().count(),
        runs,
        "stopped by its user, the container is not started again"
    );
    // `restart` starts it again (the count begins anew), and the policy holds again.
    assert_success(&s.run(&["restart", "a1"]), "restart");
    wait_for(&s, "a1", "a restart after `restart`", |v| {
        v["RestartCount"].as_u64() >= Some(1) && v["State"]["Running"] == true
    });
    // `kill` stops it for good too.
    assert_success(&s.run(&["kill", "a1"]), "kill");
    wait_for(&s, "a1", "the end after kill", |v| status(v) == "exited");
    let runs = s.ok(&["logs", "a1"]).lines().count();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(s.ok(&["logs", "a1"]).lines().count(), runs);
    // `rm -f` while it is between two runs ends its monitor too: nothing runs on.
    assert_success(&s.run(&["restart", "a1"]), "restart");
    let id = inspect(&s, "a1")["Id"].as_str().unwrap().to_owned();
    wait_for(&s, "a1", "a restart", |v| {
        v["State"]["Status"] == "restarting"
    });
    assert_success(&s.run(&["rm", "-f", "a1"]), "rm -f");
    std::thread::sleep(Duration::from_millis(500));
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains(&id))
        .collect();
    assert!(
        left.is_empty(),
        "processes of the removed container: {left:?}"
    );
}

#[test]
fn a_foreground_run_returns_the_code_and_its_policy_goes_on_in_the_background() {
    let Some(s) = ROOT.sandbox() else { return };
    let _gone = Removed(&s, vec!["f1"]);
    let out = s.run(&[
        "run",
        "--name",
        "f1",
        "--restart",
        "on-failure:1",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", printed(&out));
    let v = wait_for(&s, "f1", "the restart's end", |v| {
        status(v) == "exited" && v["RestartCount"] == 1
    });
    assert_eq!(v["State"]["ExitCode"], 5);
    let out = s.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        printed(&out).contains("--restart and --rm"),
        "{}",
        printed(&out)
    );
    let out = s.run(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("restart policy"),
        "{}",
        printed(&out)
    );
}

#[test]
fn a_detached_container_that_ends_at_once_keeps_its_exit_code() {
    // The monitor names itself in the record before the container starts, so the starter
    // never overwrites an end the monitor has already recorded.
    let Some(s) = ROOT.sandbox() else { return };
    let names: Vec<String> = (0..5).map(|i| format!("q{i}")).collect();
    let _gone = Removed(&s, names.iter().map(String::as_str).collect());
    for name in &names {
        s.ok(&["run", "-d", "--name", name, "busybox", "sh", "-c", "exit 7"]);
    }
    for name in &names {
        let v = wait_for(&s, name, "the end", |v| v["State"]["Status"] == "exited");
        assert_eq!(v["State"]["ExitCode"], 7, "{v:#}");
    }
}

#[test]
fn inspect_shows_a_running_container_as_docker_does() {
    let Some(s) = ROOT.sandbox() else { return };
    let _gone = Removed(&s, vec!["i1"]);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "i1",
        "-e",
        "A=1",
        "-v",
        "data:/data",
        "-w",
        "/tmp",
        "busybox",
        "sleep",
        "30",
    ]);
    let v = inspect(&s, "i1");
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["State"]["Running"], true);
    assert_eq!(v["Path"], "sleep");
    assert_eq!(v["Args"], serde_json::json!(["30"]));
    assert_eq!(v["Config"]["WorkingDir"], "/tmp");
    assert_eq!(v["Config"]["Image"], "busybox");
    let env: Vec<&str> = v["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"A=1"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert_eq!(v["Mounts"][0]["Type"], "volume");
    assert_eq!(v["Mounts"][0]["Name"], "data");
    assert_eq!(v["Mounts"][0]["Destination"], "/data");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "no");
    assert_eq!(v["Image"], s.image_id("busybox"));
    // State.Pid is the container's main process, seen from the host.
    let pid = v["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0, "{v:#}");
    // (`run -d` returns once the init runs; PID 1 execs the command a moment later.)
    let start = Instant::now();
    while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap() != b"sleep\x0030\x00" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "PID {pid} is not sleep"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A template sees the same object; `inspect` without --type finds containers first.
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "i1"])
            .trim(),
        "running /i1"
    );
    let out = s.run(&["inspect", "--type", "container", "busybox"]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("no such container"),
        "{}",
        printed(&out)
    );
    let out = s.run(&["inspect", "nothing-by-this-name"]);
    assert!(
        printed(&out).contains("no such object"),
        "{}",
        printed(&out)
    );
}

#[test]
fn add_host_and_dns_flags_shape_the_etc_files() {
    let Some(s) = ROOT.sandbox() else { return };
    let out = s.ok(&[
        "run",
        "--rm",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "v6=[fd00::1]",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "example.org",
        "--dns-option",
        "ndots:2",
        "busybox",
        "cat",
        "/etc/hosts",
        "/etc/resolv.conf",
    ]);
    assert!(out.contains("10.1.2.3\tdb\n"), "{out}");
    assert!(out.contains("fd00::1\tv6\n"), "{out}");
    assert!(
        out.ends_with("nameserver 192.0.2.53\nsearch example.org\noptions ndots:2\n"),
        "{out}"
    );
    // A value that would start another line of the file is refused.
    for bad in [
        &["--add-host", "a:1.2.3.4\n5.6.7.8 evil"][..],
        &["--dns", "1.1.1.1\nnameserver 6.6.6.6"][..],
        &["--dns-search", "a b"][..],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(bad);
        args.extend_from_slice(&["busybox", "true"]);
        let out = s.run(&args);
        assert!(!out.status.success(), "{bad:?} was taken");
    }
}

#[test]
fn capabilities_are_added_and_dropped_with_their_seccomp_calls() {
    let Some(s) = ROOT.sandbox() else { return };
    let caps = |flags: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "grep", "CapEff", "/proc/self/status"]);
        s.ok(&args)
    };
    assert_eq!(
        caps(&["--cap-drop", "ALL", "--cap-add", "chown"]),
        "CapEff:\t0000000000000001\n"
    );
    assert_eq!(caps(&["--cap-drop", "ALL"]), "CapEff:\t0000000000000000\n");
    // The inheritable set is empty, as Docker's since 20.10.14 (CVE-2022-24769): a process
    // that drops to another user cannot get capabilities back from a file's.
    let out = s.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "ALL",
        "busybox",
        "grep",
        "CapInh",
        "/proc/self/status",
    ]);
    assert_eq!(out, "CapInh:\t0000000000000000\n");
    let default = caps(&[]);
    let without_kill = caps(&["--cap-drop", "CAP_KILL"]);
    let bits = |t: &str| u64::from_str_radix(t.trim().rsplit('\t').next().unwrap(), 16).unwrap();
    assert_eq!(
        bits(&default) & !bits(&without_kill),
        1 << 5,
        "CAP_KILL is bit 5"
    );
    // SYS_ADMIN lets `mount` through the seccomp filter too (in the container's own mount
    // namespace); without it both the capability and the filter refuse.
    let mount = "mkdir -p /m && mount -t tmpfs x /m && echo MOUNTED";
    let out = s.run(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "busybox",
        "sh",
        "-c",
        mount,
    ]);
    assert_eq!(printed(&out).trim(), "MOUNTED");
    let out = s.run(&["run", "--rm", "busybox", "sh", "-c", mount]);
    assert!(!printed(&out).contains("MOUNTED"));
    let out = s.run(&[
        "run",
        "--rm",
        "--init",
        "--cap-add",
        "SYS_PTRACE",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        printed(&out).contains("--init with --cap-add SYS_PTRACE"),
        "{}",
        printed(&out)
    );
    let out = s.run(&["run", "--rm", "--cap-add", "FLY", "busybox", "true"]);
    assert!(
        printed(&out).contains("unknown capability"),
        "{}",
        printed(&out)
    );
}

#[test]
fn tmpfs_and_mount_flags_mount_what_they_say() {
    let Some(s) = ROOT.sandbox() else { return };
    let src = s.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "from the host\n").unwrap();
    let bind = format!("type=bind,source={},target=/b,readonly", src.display());
    let out = s.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m,mode=700",
        "--tmpfs",
        "/runnable:exec",
        "--mount",
        "type=tmpfs,target=/t2,tmpfs-size=2m",
        "--mount",
        &bind,
        "--mount",
        "type=volume,source=vol,target=/v",
        "busybox",
        "sh",
        "-c",
        "grep -E ' /(scratch|runnable|t2|b) ' /proc/mounts | cut -d' ' -f2,4; \
         stat -c %a /scratch; cat /b/f; touch /b/x 2>/dev/null || echo RO; \
         printf '#!/bin/sh\\necho ran\\n' > /scratch/x; chmod +x /scratch/x; \
         /scratch/x 2>/dev/null || echo NOEXEC; cp /scratch/x /runnable/x; /runnable/x; \
         echo kept > /v/k",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let opts = |dir: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{dir} ")))
            .unwrap_or_else(|| panic!("{dir} not mounted: {out}"))
            .to_string()
    };
    assert!(opts("/scratch").contains("noexec") && opts("/scratch").contains("size=1024k"));
    assert!(opts("/scratch").contains("nosuid") && opts("/scratch").contains("nodev"));
    assert!(!opts("/runnable").contains("noexec"), "{out}");
    assert!(opts("/t2").contains("size=2048k"), "{out}");
    assert!(opts("/b").starts_with("/b ro"), "{out}");
    for want in ["700", "from the host", "RO", "NOEXEC", "ran"] {
        assert!(lines.contains(&want), "{want}: {out}");
    }
    assert_eq!(
        s.ok(&["run", "--rm", "-v", "vol:/v", "busybox", "cat", "/v/k"]),
        "kept\n"
    );
    for bad in [
        "type=bind,source=/does/not/exist,target=/x",
        "type=bind,source=/tmp,target=/x,bind-propagation=shared",
        "type=volume,target=/x,volume-driver=nfs",
    ] {
        let out = s.run(&["run", "--rm", "--mount", bad, "busybox", "true"]);
        assert!(!out.status.success(), "{bad} was taken");
    }
    let out = s.run(&["run", "--rm", "--tmpfs", "/x:suid", "busybox", "true"]);
    assert!(!out.status.success());
}

#[test]
fn a_failing_healthcheck_turns_the_container_unhealthy() {
    let Some(s) = ROOT.sandbox() else { return };
    let _gone = Removed(&s, vec!["h1", "h2"]);
    // The image's HEALTHCHECK, as a build writes it.
    let ctx = s.context(
        "hc",
        &[(
            "Dockerfile",
            "FROM busybox\nHEALTHCHECK --interval=200ms --timeout=2s --retries=2 \
             CMD test -e /ok || (echo not ok; exit 1)\n",
        )],
    );
    s.ok(&["build", "-q", "-t", "hc", ctx.to_str().unwrap()]);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "h1",
        "hc",
        "sh",
        "-c",
        "touch /ok; sleep 1; rm /ok; sleep 60",
    ]);
    let v = wait_for(&s, "h1", "healthy", |v| {
        v["State"]["Health"]["Status"] == "healthy"
    });
    assert_eq!(v["State"]["Health"]["FailingStreak"], 0);
    let table = s.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(table.contains("h1 Up (healthy)"), "{table}");
    let v = wait_for(&s, "h1", "unhealthy", |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    let health = &v["State"]["Health"];
    assert!(health["FailingStreak"].as_u64() >= Some(2), "{health:#}");
    let log = health["Log"].as_array().unwrap();
    assert!(log.len() <= 5, "{health:#}");
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], 1);
    assert_eq!(last["Output"], "not ok\n");
    let table = s.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(table.contains("h1 Up (unhealthy)"), "{table}");
    // The flags go over the image's check; --no-healthcheck turns it off.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "h2",
        "--health-cmd",
        "sleep 5",
        "--health-timeout",
        "300ms",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "hc",
        "sleep",
        "60",
    ]);
    let v = wait_for(&s, "h2", "a timed-out check", |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    let out = v["State"]["Health"]["Log"][0]["Output"]
        .as_str()
        .unwrap_or_default();
    assert!(out.contains("exceeded timeout"), "{v:#}");
    let out = s.ok(&["run", "--rm", "--no-healthcheck", "hc", "echo", "plain"]);
    assert_eq!(out, "plain\n");
}
