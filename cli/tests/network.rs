//! Bridge networks, as root: every test runs berth inside a network namespace of its own
//! (`test_support::netns::NetNs`), so the bridges, nftables rules and containers never touch
//! the host's namespace, and every client is inside it too. After each test: no veth, no
//! published port, no lease left; after the file, nothing of berth in the host's namespace.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use berth_test_support::Tier;
use berth_test_support::netns::NetNs;
use berth_test_support::{Sandbox, printed};

const ROOT: Tier = Tier::containers(env!("CARGO_BIN_EXE_berth"));
const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// A sandbox with busybox and a network namespace, when root and the tools are there
/// (`ip`, `nft`, `curl`, `python3`, `bash`: scripts/test installs them).
fn setup() -> Option<(Sandbox, NetNs)> {
    // Bridges need root (a rootless run, which `ROOT.sandbox()` allows, has none).
    if !berth_test_support::tier::needs_root("network namespaces, bridges and nftables") {
        return None;
    }
    let s = ROOT.sandbox()?;
    for tool in ["ip", "nft", "curl", "python3", "bash"] {
        let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file());
        if !berth_test_support::tier::needs(tool, found) {
            return None;
        }
    }
    Some((s, NetNs::new()))
}

fn berth(ns: &NetNs, s: &Sandbox, args: &[&str]) -> Output {
    ns.berth(Path::new(BIN), &s.store())
        .current_dir(s.path())
        .args(args)
        .output()
        .expect("running berth")
}

#[track_caller]
fn ok(ns: &NetNs, s: &Sandbox, args: &[&str]) -> String {
    let out = berth(ns, s, args);
    assert!(out.status.success(), "berth {args:?}: {}", printed(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Retries `f` for up to 10 s until it gives `Some`.
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(t) = f() {
            return Some(t);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn curl(ns: &NetNs, url: &str) -> Option<String> {
    let out = ns.run("curl", &["-s", "--max-time", "2", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Nothing of a container left in the namespace or the store: no veth, no published port,
/// no lease file, no mount under the sandbox.
#[track_caller]
fn assert_no_leftovers(ns: &NetNs, s: &Sandbox) {
    let _ = eventually(|| (!ns.links().contains(": vb")).then_some(()));
    let links = ns.links();
    assert!(
        !links.lines().any(|l| l.contains(": vb")),
        "a veth left:\n{links}"
    );
    let rules = ns.ruleset();
    for map in ["ports_any", "ports_ip"] {
        let body = rules.split(&format!("map {map} {{")).nth(1).unwrap_or("");
        let body = body.split('}').next().unwrap_or("");
        assert!(!body.contains("elements"), "a port left in {map}:\n{rules}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let sandbox = s.path().to_string_lossy().into_owned();
    assert!(
        !mounts.lines().any(|l| l.contains(&sandbox)),
        "a mount left under {sandbox}"
    );
    let leases = s.store().join("networks/leases");
    let left: Vec<_> = walk(&leases);
    assert!(left.is_empty(), "leases left: {left:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A GET of `/` with busybox's nc (Debian's static busybox's wget crashes): `{GET} HOST PORT`.
const GET: &str = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3";

const HTTPD: &str =
    "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www";

#[test]
fn a_published_httpd_is_reached_from_the_host_and_nothing_stays() {
    let Some((s, ns)) = setup() else { return };
    // An address of the namespace's own besides loopback.
    ns.ip(&[
        "-n", &ns.name, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ]);
    ns.ip(&["-n", &ns.name, "addr", "add", "192.0.2.10/24", "dev", "d0"]);
    ns.ip(&["-n", &ns.name, "link", "set", "d0", "up"]);
    let id = ok(
        &ns,
        &s,
        &[
            "run", "-d", "--name", "web", "-p", "8080:80", "busybox", "sh", "-c", HTTPD,
        ],
    );
    let id = id.trim();
    let page = eventually(|| curl(&ns, "http://127.0.0.1:8080/")).unwrap_or_else(|| {
        panic!(
            "no answer on 127.0.0.1:8080; logs: {}",
            ok(&ns, &s, &["logs", "web"])
        )
    });
    assert_eq!(page.trim(), format!("hello-from-{}", &id[..12]));
    let page = curl(&ns, "http://192.0.2.10:8080/").expect("the namespace's own address");
    assert!(page.starts_with("hello-from-"));
    // The container's address is on the default bridge, and the bridge is there.
    let inspect = ok(&ns, &s, &["network", "inspect", "bridge"]);
    assert!(inspect.contains("10.88.0."), "{inspect}");
    assert!(inspect.contains(id), "{inspect}");
    assert!(ns.links().contains("berth0"));
    // A second container cannot publish the same port.
    for mode in ["--rm", "-d"] {
        let clash = berth(&ns, &s, &["run", mode, "-p", "8080:80", "busybox", "true"]);
        assert!(!clash.status.success(), "{mode}");
        assert!(printed(&clash).contains("8080"), "{}", printed(&clash));
    }

    ok(&ns, &s, &["rm", "-f", "web"]);
    assert!(eventually(|| curl(&ns, "http://127.0.0.1:8080/").is_none().then_some(())).is_some());
    assert_no_leftovers(&ns, &s);
}

/// Debian's static busybox has no UDP server (its nc has no `-u`): the container counts
/// the datagrams its network namespace received for a port nobody listens on (`NoPorts` of
/// `/proc/net/snmp`), which only a datagram DNAT'd to its port 53 can raise.
#[test]
fn a_udp_port_is_published() {
    let Some((s, ns)) = setup() else { return };
    ok(
        &ns,
        &s,
        &[
            "run",
            "-d",
            "--name",
            "udp1",
            "-p",
            "127.0.0.1:5353:53/udp",
            "busybox",
            "sh",
            "-c",
            "while true; do grep '^Udp:' /proc/net/snmp | tail -n 1; sleep 0.2; done",
        ],
    );
    let no_ports = |logs: &str| {
        logs.lines()
            .last()
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert!(
        eventually(|| no_ports(&ok(&ns, &s, &["logs", "udp1"]))).is_some_and(|n| n == 0),
        "a datagram counted before any was sent"
    );
    // Not published: never reaches the container.
    let _ = ns.run("bash", &["-c", "echo nope > /dev/udp/127.0.0.1/5354"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(no_ports(&ok(&ns, &s, &["logs", "udp1"])), Some(0));
    let got = eventually(|| {
        let _ = ns.run("bash", &["-c", "echo hello-udp > /dev/udp/127.0.0.1/5353"]);
        no_ports(&ok(&ns, &s, &["logs", "udp1"])).filter(|n| *n > 0)
    });
    assert!(got.is_some(), "the datagram never reached the container");
    ok(&ns, &s, &["rm", "-f", "udp1"]);
    assert_no_leftovers(&ns, &s);
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_not_across() {
    let Some((s, ns)) = setup() else { return };
    ok(&ns, &s, &["network", "create", "front"]);
    ok(
        &ns,
        &s,
        &["network", "create", "--subnet", "10.90.0.0/24", "back"],
    );
    ok(
        &ns,
        &s,
        &[
            "run",
            "-d",
            "--network",
            "front",
            "--name",
            "api",
            "busybox",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    ok(
        &ns,
        &s,
        &[
            "run",
            "-d",
            "--network",
            "back",
            "--name",
            "db",
            "busybox",
            "sh",
            "-c",
            HTTPD,
        ],
    );
    let fetch = |net: &str, target: &str| {
        berth(
            &ns,
            &s,
            &[
                "run",
                "--rm",
                "--network",
                net,
                "busybox",
                "sh",
                "-c",
                &format!("{GET} {target} 80 | grep hello-from-"),
            ],
        )
    };
    let page = eventually(|| {
        let out = fetch("front", "api");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap_or_else(|| {
        panic!(
            "api not reached by name on front: {}",
            printed(&fetch("front", "api"))
        )
    });
    assert!(page.starts_with("hello-from-"), "{page}");
    // By name from another network: unknown; by address: dropped.
    assert!(!fetch("back", "api").status.success());
    let inspect = ok(&ns, &s, &["network", "inspect", "front"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let containers = v[0]["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 1, "{inspect}");
    let addr = containers.values().next().unwrap()["IPv4Address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(addr.starts_with("10.89."), "{addr}");
    assert!(
        !fetch("back", &addr).status.success(),
        "front reached from back"
    );
    // rm refuses a network in use.
    assert!(!berth(&ns, &s, &["network", "rm", "front"]).status.success());
    ok(&ns, &s, &["rm", "-f", "api", "db"]);
    ok(&ns, &s, &["network", "rm", "front", "back"]);
    let links = ns.links();
    assert!(!links.contains("br-"), "a bridge left:\n{links}");
    assert!(!ns.ruleset().contains("n-br-"), "a network's chains left");
    assert_no_leftovers(&ns, &s);
}

#[test]
fn concurrent_runs_get_distinct_addresses() {
    let Some((s, ns)) = setup() else { return };
    let children: Vec<_> = (0..4)
        .map(|_| {
            ns.berth(Path::new(BIN), &s.store())
                .current_dir(s.path())
                .args([
                    "run",
                    "--rm",
                    "busybox",
                    "sh",
                    "-c",
                    "ip -o -4 addr show eth0",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut addrs = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", printed(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let addr = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {text:?}"))
            .to_owned();
        addrs.push(addr);
    }
    let unique: std::collections::BTreeSet<_> = addrs.iter().collect();
    assert_eq!(unique.len(), 4, "{addrs:?}");
    assert_no_leftovers(&ns, &s);
}

#[test]
fn what_a_killed_berth_left_is_removed_by_the_next_command_on_networks() {
    let Some((s, ns)) = setup() else { return };
    let id = ok(
        &ns,
        &s,
        &["run", "-d", "-p", "8081:80", "busybox", "sleep", "300"],
    );
    let id = id.trim().to_owned();
    let record = s
        .store()
        .join("containers")
        .join(&id)
        .join("container.json");
    let pid = eventually(|| {
        let text = std::fs::read_to_string(&record).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_u64()
    })
    .expect("the monitor's pid");
    // The lease is taken once the monitor starts the container.
    assert!(
        eventually(|| (!walk(&s.store().join("networks/leases")).is_empty()).then_some(()))
            .is_some()
    );
    assert!(eventually(|| ns.ruleset().contains("8081").then_some(())).is_some());
    nix_kill(pid as i32);
    // The init dies with the monitor (parent-death signal); its lease and port stay until
    // the next start that touches networks.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        ns.ruleset().contains("8081"),
        "the killed init's port stays until then"
    );
    ok(&ns, &s, &["run", "--rm", "busybox", "true"]);
    assert_no_leftovers(&ns, &s);
    let _ = berth(&ns, &s, &["rm", "-f", &id]);

    // The same for a foreground `berth run` killed with -9 (`ip netns exec` execs berth,
    // so the child is berth itself).
    let mut fg = ns
        .berth(Path::new(BIN), &s.store())
        .current_dir(s.path())
        .args(["run", "--rm", "-p", "8082:80", "busybox", "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(|| ns.ruleset().contains("8082").then_some(())).is_some());
    nix_kill(fg.id() as i32);
    let _ = fg.wait();
    std::thread::sleep(Duration::from_millis(500));
    assert!(ns.ruleset().contains("8082"));
    ok(&ns, &s, &["network", "inspect", "bridge"]);
    assert_no_leftovers(&ns, &s);
}

fn nix_kill(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_build_step_reaches_out_through_nat_but_not_the_hosts_loopback() {
    let Some((s, ns)) = setup() else { return };
    // An "outside" server: a second namespace behind a veth, reached through the NAT.
    let outer = NetNs::new();
    ns.ip(&[
        "-n",
        &ns.name,
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "out0",
        "netns",
        &outer.name,
    ]);
    ns.ip(&[
        "-n",
        &ns.name,
        "addr",
        "add",
        "198.51.100.1/24",
        "dev",
        "up0",
    ]);
    ns.ip(&["-n", &ns.name, "link", "set", "up0", "up"]);
    ns.ip(&[
        "-n",
        &outer.name,
        "addr",
        "add",
        "198.51.100.2/24",
        "dev",
        "out0",
    ]);
    ns.ip(&["-n", &outer.name, "link", "set", "out0", "up"]);
    let root = s.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "outside\n").unwrap();
    let mut outside = outer
        .cmd("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "198.51.100.2",
            "80",
            "--directory",
        ])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut inside = ns
        .cmd("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "8099",
            "--directory",
        ])
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(|| curl(&ns, "http://127.0.0.1:8099/")).is_some());
    let dockerfile = format!(
        "FROM busybox\nRUN {GET} 198.51.100.2 80 | grep outside\n\
         RUN if {GET} 127.0.0.1 8099 | grep outside; then exit 1; fi; \
         if {GET} 10.88.0.1 8099 | grep outside; then exit 1; fi\n"
    );
    let ctx = s.context("nat", &[("Dockerfile", dockerfile.as_str())]);
    let out = berth(
        &ns,
        &s,
        &["build", "--no-cache", "-t", "natted", ctx.to_str().unwrap()],
    );
    let _ = outside.kill();
    let _ = outside.wait();
    let _ = inside.kill();
    let _ = inside.wait();
    assert!(out.status.success(), "{}", printed(&out));
    // RUN --network=host needs the entitlement.
    let host = s.context(
        "host",
        &[("Dockerfile", "FROM busybox\nRUN --network=host true\n")],
    );
    let refused = berth(&ns, &s, &["build", "--no-cache", host.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        printed(&refused).contains("network.host"),
        "{}",
        printed(&refused)
    );
    assert_no_leftovers(&ns, &s);
}

/// Runs last by name order in most harnesses, but checks only what the host's namespace
/// holds, whatever ran: berth never made a bridge or a table there.
#[test]
fn zz_the_hosts_namespace_has_nothing_of_berth() {
    if !berth_test_support::tier::needs_root("nftables in the host's namespace") {
        return;
    }
    let rules = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains("ip berth"),
        "a berth table in the host's namespace"
    );
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("berth0") && !links.contains(": vb"),
        "{links}"
    );
}

#[test]
fn create_start_restart_and_stop_keep_the_published_port_and_leave_nothing() {
    let Some((s, ns)) = setup() else { return };
    ok(
        &ns,
        &s,
        &[
            "create", "--name", "re", "-p", "8083:80", "busybox", "sh", "-c", HTTPD,
        ],
    );
    // Created, not started: no lease, no port.
    assert_no_leftovers(&ns, &s);
    ok(&ns, &s, &["start", "re"]);
    assert!(eventually(|| curl(&ns, "http://127.0.0.1:8083/")).is_some());
    let inspect = ok(&ns, &s, &["inspect", "re"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let settings = &v[0]["NetworkSettings"];
    assert!(
        settings["IPAddress"]
            .as_str()
            .unwrap()
            .starts_with("10.88."),
        "{settings}"
    );
    assert_eq!(
        settings["Ports"]["80/tcp"][0]["HostPort"], "8083",
        "{settings}"
    );
    assert_eq!(
        ok(&ns, &s, &["ps", "--format", "{{.Networks}} {{.Ports}}"]).trim(),
        "bridge 0.0.0.0:8083->80/tcp"
    );
    ok(&ns, &s, &["restart", "-t", "1", "re"]);
    assert!(eventually(|| curl(&ns, "http://127.0.0.1:8083/")).is_some());
    ok(&ns, &s, &["stop", "-t", "1", "re"]);
    assert_no_leftovers(&ns, &s);
    ok(&ns, &s, &["rm", "re"]);
}
