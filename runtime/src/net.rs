//! Bridge networks, as root: a container's attachment ([`Attachment`], carried in the spec's
//! [`ANNOTATION_NETWORK`](crate::contract::ANNOTATION_NETWORK)) in, the kernel's side of it
//! out: a Linux bridge with the gateway's address, a veth pair whose container end becomes
//! `eth0` (address, MAC derived from it, default route through the gateway), and nftables
//! rules in berth's own table `ip berth` (masquerade for the subnet's outbound traffic,
//! forward rules, DNAT for published ports).
//!
//! The init does it all at every start ([`Attachment::prepare_host`] in the host's network
//! namespace before it unshares, [`Attachment::connect`] once the container's namespace
//! exists, [`Attachment::unpublish`] when the container has ended), so `run`, `run -d`,
//! a build's RUN steps and any later start get the same. The veth goes with the container's
//! network namespace; the published ports are removed by the init, or, when the init was
//! killed, by [`Attachment::remove_stale`] at the next start that touches networks (the
//! caller finds stale leases in the store).
//!
//! Links are made by Debian's `ip` and rules by its `nft` (a script on stdin, one
//! transaction per call), not by netlink from the process: a few short programs per start
//! (about 10 ms) for much less code. Every name put into a command or a script is checked
//! first ([`check_name`]); addresses and ports are typed.
//!
//! The table's layout (each part idempotent, so concurrent starts and a start after a
//! reboot rebuild the same thing; flush and refill happen in one transaction):
//!
//! - base chains `guard` (prerouting, raw: a packet from a bridge to `127.0.0.0/8` is
//!   dropped, since `route_localnet` is on for the bridges), `prerouting` and `output`
//!   (nat: DNAT through the maps `ports_any`, proto . port → address . port, for local
//!   destinations, and `ports_ip`, host address . proto . port → address . port),
//!   `forward` (filter: jumps through the verdict maps `fwd_from`/`fwd_to` keyed by bridge),
//!   `postrouting` (nat: masquerade of loopback sources leaving through a bridge, then the
//!   map `post_from` keyed by bridge);
//! - per network `n-<bridge>-from` (same bridge: accept; other berth bridges: drop;
//!   internal: drop; else accept), `n-<bridge>-to` (established, related or DNAT'd:
//!   accept; else drop), `n-<bridge>-post` (masquerade out of the subnet unless internal,
//!   and for hairpin DNAT on the bridge).

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The nftables table berth keeps its rules in.
pub const TABLE: &str = "berth";

/// A published port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One `-p [IP:]HOST:CONTAINER[/PROTO]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The host address it is published on; `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

/// A container's place on a bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The bridge's interface name.
    pub bridge: String,
    pub gateway: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The container's address.
    pub address: Ipv4Addr,
    /// No route out of the subnet (`network create --internal`).
    pub internal: bool,
    /// The host end of the veth pair.
    pub host_veth: String,
    pub ports: Vec<Port>,
}

/// An interface name berth puts into a command: 1 to 15 characters of `[a-z0-9-]`, starting
/// with a letter (the kernel's limit is 15 bytes).
pub fn check_name(name: &str) -> Result<(), RuntimeError> {
    let ok = (1..=15).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Network(format!(
            "{name:?} is not an interface name berth makes ([a-z][a-z0-9-]{{0,14}})"
        )))
    }
}

/// The MAC address of a container's `eth0`: `02:42` then the four bytes of its address, as
/// Docker's (locally administered, so it never collides with a real card's).
pub fn mac_for(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The network address of `address/prefix`.
pub fn network_of(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(u32::from(address) & mask)
}

impl Attachment {
    /// Checks the names and addresses before any of them reaches a command.
    pub fn check(&self) -> Result<(), RuntimeError> {
        check_name(&self.bridge)?;
        check_name(&self.host_veth)?;
        if !(8..=30).contains(&self.prefix)
            || network_of(self.address, self.prefix) != network_of(self.gateway, self.prefix)
            || self.address == self.gateway
        {
            return Err(RuntimeError::Network(format!(
                "address {} is not a host of {}/{} beside the gateway {}",
                self.address,
                network_of(self.gateway, self.prefix),
                self.prefix,
                self.gateway
            )));
        }
        Ok(())
    }

    /// The subnet as `A.B.C.D/N`.
    pub fn subnet(&self) -> String {
        format!("{}/{}", network_of(self.gateway, self.prefix), self.prefix)
    }

    /// In the host's network namespace, before the container's exists: forwarding on, the
    /// bridge made if missing (gateway address, up, `route_localnet`), the table and this
    /// network's chains rebuilt, this container's ports published.
    pub fn prepare_host(&self) -> Result<(), RuntimeError> {
        self.check()?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        ensure_bridge(&self.bridge, self.gateway, self.prefix)?;
        // A published port reached on 127.0.0.1 from the host is routed out of the bridge
        // with its loopback source; `guard` drops the reverse (a container's packet to
        // 127.0.0.0/8).
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", self.bridge),
            "1",
        )?;
        let mut script = base_script();
        script.push_str(&network_script(&self.bridge, &self.subnet(), self.internal));
        script.push_str(&self.ports_script("add"));
        nft(&script, None)
    }

    /// Once the container's network namespace exists (the caller, the init, is in it, and
    /// `host` is the host's): the veth pair made from the host's side with its container end
    /// as `eth0` here, then `eth0` addressed and up, the default route through the gateway
    /// (none on an internal network).
    pub fn connect(&self, host: BorrowedFd<'_>) -> Result<(), RuntimeError> {
        self.check()?;
        let pid = std::process::id().to_string();
        let mac = mac_for(self.address);
        run(
            ip(Some(host)).args([
                "link",
                "add",
                &self.host_veth,
                "master",
                &self.bridge,
                "up",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "address",
                &mac,
                "netns",
                &pid,
            ]),
            None,
            "making the veth pair",
        )?;
        let mut batch = format!(
            "addr add {}/{} dev eth0\nlink set eth0 up\n",
            self.address, self.prefix
        );
        if !self.internal {
            batch.push_str(&format!("route add default via {}\n", self.gateway));
        }
        run(
            ip(None).args(["-batch", "-"]),
            Some(&batch),
            "configuring eth0",
        )
    }

    /// Once the container has ended: its veth removed at once (the kernel would remove it
    /// with the namespace, but later, from a work queue) and its ports unpublished.
    pub fn disconnect(&self, host: Option<BorrowedFd<'_>>) {
        let _ = run(
            ip(host).args(["link", "del", &self.host_veth]),
            None,
            "removing the veth",
        );
        let _ = self.unpublish(host);
    }

    /// Removes this container's published ports (run in the host's network namespace, or
    /// entering `host`); a port already gone is no error.
    pub fn unpublish(&self, host: Option<BorrowedFd<'_>>) -> Result<(), RuntimeError> {
        if self.ports.is_empty() {
            return Ok(());
        }
        if nft(&self.ports_script("delete"), host).is_ok() {
            return Ok(());
        }
        // One transaction fails whole when one element is missing: one at a time.
        for port in &self.ports {
            let one = Attachment {
                ports: vec![*port],
                ..self.clone()
            };
            let _ = nft(&one.ports_script("delete"), host);
        }
        Ok(())
    }

    /// What a container whose init was killed (or a reboot) may have left in the host's
    /// namespace: its published ports and the host end of its veth (gone with the
    /// container's namespace unless a process still holds it).
    pub fn remove_stale(&self) {
        // Only an interface berth names (`vb` and 12 hex digits) is ever removed this way.
        let ours = self.host_veth.len() == 14
            && self.host_veth.starts_with("vb")
            && self.host_veth[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !ours || check_name(&self.host_veth).is_err() {
            return;
        }
        let _ = self.unpublish(None);
        let _ = run(
            ip(None).args(["link", "del", &self.host_veth]),
            None,
            "removing a veth",
        );
    }

    /// The nft commands that add or delete this container's port elements.
    fn ports_script(&self, verb: &str) -> String {
        let mut s = String::new();
        for p in &self.ports {
            let value = format!(" : {} . {}", self.address, p.container_port);
            let value = if verb == "add" { value.as_str() } else { "" };
            match p.host_ip {
                None => s.push_str(&format!(
                    "{verb} element ip {TABLE} ports_any {{ {} . {}{value} }}\n",
                    p.proto.as_str(),
                    p.host_port
                )),
                Some(ip) => s.push_str(&format!(
                    "{verb} element ip {TABLE} ports_ip {{ {ip} . {} . {}{value} }}\n",
                    p.proto.as_str(),
                    p.host_port
                )),
            }
        }
        s
    }
}

/// The table, its sets and maps and its base chains (the chains flushed and refilled: the
/// same rules each time).
fn base_script() -> String {
    let t = TABLE;
    format!(
        "add table ip {t}
add set ip {t} bridges {{ type ifname; }}
add map ip {t} fwd_from {{ type ifname : verdict; }}
add map ip {t} fwd_to {{ type ifname : verdict; }}
add map ip {t} post_from {{ type ifname : verdict; }}
add map ip {t} ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {t} ports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add chain ip {t} guard {{ type filter hook prerouting priority raw; policy accept; }}
add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {t} forward {{ type filter hook forward priority filter; policy accept; }}
add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
flush chain ip {t} guard
flush chain ip {t} prerouting
flush chain ip {t} output
flush chain ip {t} forward
flush chain ip {t} postrouting
add rule ip {t} guard iifname @bridges ip daddr 127.0.0.0/8 drop
add rule ip {t} prerouting fib daddr type local dnat ip to meta l4proto . th dport map @ports_any
add rule ip {t} prerouting dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
add rule ip {t} output fib daddr type local dnat ip to meta l4proto . th dport map @ports_any
add rule ip {t} output dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
add rule ip {t} forward iifname vmap @fwd_from
add rule ip {t} forward oifname vmap @fwd_to
add rule ip {t} postrouting oifname @bridges ip saddr 127.0.0.0/8 masquerade
add rule ip {t} postrouting iifname vmap @post_from
"
    )
}

/// One network's chains, flushed and refilled, and its elements in the maps.
fn network_script(bridge: &str, subnet: &str, internal: bool) -> String {
    let t = TABLE;
    let b = bridge;
    let mut s = String::new();
    for part in ["from", "to", "post"] {
        s.push_str(&format!(
            "add chain ip {t} n-{b}-{part}\nflush chain ip {t} n-{b}-{part}\n"
        ));
    }
    s.push_str(&format!(
        "add rule ip {t} n-{b}-from oifname \"{b}\" accept
add rule ip {t} n-{b}-from oifname @bridges drop
"
    ));
    if internal {
        s.push_str(&format!("add rule ip {t} n-{b}-from drop\n"));
    } else {
        s.push_str(&format!("add rule ip {t} n-{b}-from accept\n"));
    }
    s.push_str(&format!(
        "add rule ip {t} n-{b}-to ct state established,related accept
add rule ip {t} n-{b}-to ct status dnat accept
add rule ip {t} n-{b}-to drop
add rule ip {t} n-{b}-post oifname \"{b}\" ct status dnat masquerade
"
    ));
    if !internal {
        s.push_str(&format!(
            "add rule ip {t} n-{b}-post oifname != \"{b}\" ip saddr {subnet} masquerade\n"
        ));
    }
    s.push_str(&format!(
        "add element ip {t} bridges {{ \"{b}\" }}
add element ip {t} fwd_from {{ \"{b}\" : jump n-{b}-from }}
add element ip {t} fwd_to {{ \"{b}\" : jump n-{b}-to }}
add element ip {t} post_from {{ \"{b}\" : jump n-{b}-post }}
"
    ));
    s
}

/// `network rm` (and `network prune`): the network's chains and elements, then its bridge.
/// Nothing of it left is no error.
pub fn remove_network(bridge: &str) -> Result<(), RuntimeError> {
    check_name(bridge)?;
    let t = TABLE;
    let b = bridge;
    let script = format!(
        "delete element ip {t} fwd_from {{ \"{b}\" }}
delete element ip {t} fwd_to {{ \"{b}\" }}
delete element ip {t} post_from {{ \"{b}\" }}
delete element ip {t} bridges {{ \"{b}\" }}
delete chain ip {t} n-{b}-from
delete chain ip {t} n-{b}-to
delete chain ip {t} n-{b}-post
"
    );
    let _ = nft(&script, None);
    let _ = run(
        ip(None).args(["link", "del", bridge]),
        None,
        "removing the bridge",
    );
    Ok(())
}

/// Removes berth's whole table (nothing of it left is no error).
pub fn remove_table() {
    let _ = nft(&format!("delete table ip {TABLE}\n"), None);
}

/// Makes the bridge unless it exists, then gives it the gateway's address and brings it up.
fn ensure_bridge(bridge: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(), RuntimeError> {
    let made = run(
        ip(None).args(["link", "add", bridge, "type", "bridge"]),
        None,
        "making the bridge",
    );
    if let Err(e) = made {
        // Another start made it meanwhile, or it was there.
        let exists = ip(None)
            .args(["link", "show", "dev", bridge])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !exists {
            return Err(e);
        }
    }
    run(
        ip(None).args(["-batch", "-"]),
        Some(&format!(
            "addr replace {gateway}/{prefix} dev {bridge}\nlink set {bridge} up\n"
        )),
        "configuring the bridge",
    )
}

fn write_sysctl(path: &str, value: &str) -> Result<(), RuntimeError> {
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(path, value).map_err(|source| RuntimeError::Io {
        what: format!("writing {path}"),
        source,
    })
}

/// The program `name` from the system directories (where Debian puts `ip` and `nft`),
/// else from `PATH`.
fn program(name: &str) -> std::path::PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| name.into())
}

/// An `ip` command, run in the network namespace `ns` when given.
fn ip(ns: Option<BorrowedFd<'_>>) -> Command {
    let mut c = Command::new(program("ip"));
    if let Some(ns) = ns {
        crate::sys::linux::enter_net_ns_before_exec(&mut c, ns.as_raw_fd());
    }
    c
}

/// Runs an nft script (one transaction) in the current network namespace, or in `ns`.
fn nft(script: &str, ns: Option<BorrowedFd<'_>>) -> Result<(), RuntimeError> {
    let mut c = Command::new(program("nft"));
    c.args(["-f", "-"]);
    if let Some(ns) = ns {
        crate::sys::linux::enter_net_ns_before_exec(&mut c, ns.as_raw_fd());
    }
    run(&mut c, Some(script), "applying nftables rules")
}

/// Runs a command with `input` on its stdin; its failure carries what it wrote on stderr.
fn run(command: &mut Command, input: Option<&str>, what: &str) -> Result<(), RuntimeError> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let program = command.get_program().to_owned();
    let io = |source| RuntimeError::Io {
        what: format!("{what}: running {program:?}"),
        source,
    };
    let mut child = command.spawn().map_err(io)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| RuntimeError::Io {
            what: what.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    err.truncate(2000);
    Err(RuntimeError::Network(format!("{what}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            bridge: "berth0".into(),
            gateway: "10.88.0.1".parse().unwrap(),
            prefix: 16,
            address: "10.88.0.7".parse().unwrap(),
            internal: false,
            host_veth: "vb0123456789ab".into(),
            ports: vec![
                Port {
                    host_ip: None,
                    host_port: 8080,
                    container_port: 80,
                    proto: Proto::Tcp,
                },
                Port {
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 5353,
                    container_port: 53,
                    proto: Proto::Udp,
                },
            ],
        }
    }

    #[test]
    fn names_that_could_change_a_command_are_refused() {
        for bad in [
            "",
            "Berth0",
            "0berth",
            "a b",
            "a\"b",
            "a;b",
            "a/b",
            "waytoolongname16",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["berth0", "br-0123456789ab", "vb0123456789ab"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        let mut a = attachment();
        a.address = "10.89.0.7".parse().unwrap();
        assert!(a.check().is_err(), "an address outside the subnet");
        a.address = a.gateway;
        assert!(a.check().is_err(), "the gateway's own address");
    }

    #[test]
    fn port_elements_and_addresses() {
        let a = attachment();
        assert_eq!(a.subnet(), "10.88.0.0/16");
        assert_eq!(mac_for(a.address), "02:42:0a:58:00:07");
        assert_eq!(
            a.ports_script("add"),
            "add element ip berth ports_any { tcp . 8080 : 10.88.0.7 . 80 }\n\
             add element ip berth ports_ip { 127.0.0.1 . udp . 5353 : 10.88.0.7 . 53 }\n"
        );
        assert_eq!(
            a.ports_script("delete"),
            "delete element ip berth ports_any { tcp . 8080 }\n\
             delete element ip berth ports_ip { 127.0.0.1 . udp . 5353 }\n"
        );
        let internal = network_script("br-x", "10.89.0.0/24", true);
        assert!(internal.contains("n-br-x-from drop"));
        assert!(!internal.contains("masquerade\n") || !internal.contains("!= \"br-x\""));
    }
}
