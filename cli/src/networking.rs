//! Containers on bridge networks, wired between the store (network definitions, address
//! leases, the container's `hosts` file) and the runtime (the kernel's side, done by the
//! init from the attachment in the bundle).
//!
//! At each start of a container on a bridge network ([`start`]): stale leases are found and
//! what they left in the kernel removed, an address (and the host ports of `-p`) leased for
//! the process that runs the container, the attachment written into the bundle, and on a
//! user network every member's `hosts` file rewritten so each reaches the others by name.
//! When the container ends ([`Started::finish`]) the lease is given back and the names
//! rewritten again. `launch::start`'s `execute` calls these two for `run`, `start`, `restart`
//! and the monitor's restarts.

use std::net::Ipv4Addr;
use std::path::Path;

use berth_runtime::net::{Attachment, Port, Proto};
use berth_store::Store;
use berth_store::networks::{
    ContainerNetwork, HeldLease, Lease, LeasePort, LeaseRequest, NetworkRecord,
};

/// What `run --network` names (without it, `BERTH_DEFAULT_NETWORK`, else `bridge` as root
/// and `none` rootless): a mode of the runtime, and for a bridge, the network.
pub fn mode(
    store: &Store,
    asked: Option<&str>,
) -> anyhow::Result<(berth_runtime::spec::NetworkMode, Option<NetworkRecord>)> {
    use berth_runtime::spec::NetworkMode;
    let rootless = berth_runtime::userns::rootless();
    let asked = default_or(asked);
    let asked = asked.as_str();
    match asked {
        "none" | "host" | "slirp4netns" => Ok((asked.parse().map_err(crate::UsageError)?, None)),
        name => {
            if rootless {
                return Err(crate::UsageError(format!(
                    "--network {name}: bridge networks need root; without root use \
                     --network slirp4netns (outbound access, -p published by slirp4netns)"
                ))
                .into());
            }
            let net = store
                .network(name)
                .map_err(|e| crate::UsageError(e.to_string()))?;
            Ok((NetworkMode::Bridge, Some(net)))
        }
    }
}

/// The runtime's mode for what `--network` names (see [`mode`]), without looking the
/// network up: a name that is not a built-in mode is a bridge.
pub fn runtime_mode(asked: Option<&str>) -> anyhow::Result<berth_runtime::spec::NetworkMode> {
    use berth_runtime::spec::NetworkMode;
    Ok(match default_or(asked).as_str() {
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        "slirp4netns" => NetworkMode::Slirp4netns,
        _ if berth_runtime::userns::rootless() => {
            return Err(crate::UsageError(
                "bridge networks need root; without root use --network slirp4netns".into(),
            )
            .into());
        }
        _ => NetworkMode::Bridge,
    })
}

/// What `--network` names, or the default: `BERTH_DEFAULT_NETWORK`, else `bridge` as root
/// and `none` rootless.
fn default_or(asked: Option<&str>) -> String {
    if let Some(a) = asked {
        return a.to_owned();
    }
    match std::env::var("BERTH_DEFAULT_NETWORK") {
        Ok(n) if !n.is_empty() => n,
        _ if berth_runtime::userns::rootless() => "none".into(),
        _ => "bridge".into(),
    }
}

/// `-p [IP:]HOST:CONTAINER[/tcp|/udp]` (a host port is required: berth picks none itself).
pub fn parse_publish(s: &str) -> Result<LeasePort, String> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, false),
        Some((spec, "udp")) => (spec, true),
        Some((_, p)) => return Err(format!("-p {s}: unknown protocol {p:?} (tcp or udp)")),
        None => (s, false),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [host, container] => (None, *host, *container),
        [ip, host, container] => (Some(*ip), *host, *container),
        _ => {
            return Err(format!(
                "-p {s}: expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]"
            ));
        }
    };
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("-p {s}: {p:?} is not a port (1-65535)"))
    };
    let host_ip = match ip {
        None | Some("") | Some("0.0.0.0") => None,
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| format!("-p {s}: {ip:?} is not an IPv4 address"))?,
        ),
    };
    Ok(LeasePort {
        host_ip,
        host_port: port(host)?,
        container_port: port(container)?,
        udp: proto,
    })
}

/// The host end of a container's veth: `vb` and 12 hex digits of its ID.
fn host_veth(id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("vb{hex}")
}

/// A lease on `net` as the runtime's attachment.
pub fn attachment(net: &NetworkRecord, lease: &Lease) -> Attachment {
    Attachment {
        bridge: net.bridge.clone(),
        gateway: net.gateway,
        prefix: net.prefix,
        address: lease.address,
        internal: net.internal,
        host_veth: lease.host_veth.clone(),
        ports: lease.ports.iter().map(port).collect(),
    }
}

/// A `-p` as the runtime's port.
pub fn port(p: &LeasePort) -> Port {
    Port {
        host_ip: p.host_ip,
        host_port: p.host_port,
        container_port: p.container_port,
        proto: if p.udp { Proto::Udp } else { Proto::Tcp },
    }
}

/// What a stale lease (its process killed, or a reboot) may have left in the kernel: its
/// published ports, its veth's host end.
pub fn remove_stale(lease: &Lease) {
    // Only the veth and the ports are used: the network may be gone already.
    attachment(&berth_store::networks::default_bridge(), lease).remove_stale();
}

/// A container's running attachment: the lease held while it runs.
#[derive(Debug)]
pub struct Started {
    lease: HeldLease,
    network: NetworkRecord,
}

impl Started {
    /// Once the container has ended: the address and ports given back, the other members'
    /// names rewritten.
    pub fn finish(self, store: &Store) -> anyhow::Result<()> {
        let Started { lease, network } = self;
        // The init removes these itself, unless it was killed (`rm -f`, `kill`).
        attachment(&network, &lease.lease).disconnect(None);
        lease.release()?;
        refresh_names(store, &network)?;
        Ok(())
    }
}

/// At a start of container `id` (bundle in `dir`): leases an address on the network it
/// asked for and writes the attachment into the bundle. `None` when it is on no bridge.
pub fn start(store: &Store, dir: &Path, id: &str) -> anyhow::Result<Option<Started>> {
    let Some(asked) = store.container_network(id)? else {
        return Ok(None);
    };
    let network = store.network(&asked.network)?;
    let lease = store.take_lease(
        &network,
        LeaseRequest {
            container: id,
            names: asked.names.clone(),
            host_veth: host_veth(id),
            ports: asked.ports.clone(),
        },
        &mut remove_stale,
    )?;
    let bundle = berth_runtime::Bundle {
        dir: dir.to_owned(),
    };
    bundle.set_attachment(Some(&attachment(&network, &lease.lease)))?;
    let started = Started { lease, network };
    refresh_names(store, &started.network)?;
    Ok(Some(started))
}

/// At `create`: records the bridge network `--network` names, `-p`, the names others reach
/// the container by (its name, hostname, short ID) and `--add-host`, for [`start`]. `-p`
/// without a bridge is refused, and so is a host port a running container publishes already
/// (before `run -d` hands the container to its monitor; the lease taken at start checks
/// again, under the lock).
pub fn join(
    store: &Store,
    id: &str,
    network: Option<&str>,
    ports: &[LeasePort],
    name: Option<&str>,
    hostname: &str,
    extra_hosts: &[String],
) -> anyhow::Result<()> {
    let (kind, network) = mode(store, network)?;
    let Some(network) = network else {
        // slirp4netns forwards `-p` itself (`slirp::publish`, its own error for a port in use).
        if !ports.is_empty() && kind != berth_runtime::spec::NetworkMode::Slirp4netns {
            let why = if berth_runtime::userns::rootless() {
                "-p publishes ports of a container with a network: rootless, use \
                 --network slirp4netns"
            } else {
                "-p publishes ports of a container with a network: use --network bridge, a user \
                 network or slirp4netns"
            };
            return Err(crate::UsageError(why.into()).into());
        }
        return Ok(());
    };
    let mut names: Vec<String> = name.iter().map(|n| n.to_string()).collect();
    names.push(hostname.to_owned());
    names.push(id.chars().take(12).collect());
    names.dedup();
    let ports = ports.to_vec();
    let live = store.live_leases(&mut remove_stale)?;
    for p in &ports {
        let clash = live.iter().find(|l| {
            l.ports.iter().any(|q| {
                q.host_port == p.host_port
                    && q.udp == p.udp
                    && (q.host_ip.is_none() || p.host_ip.is_none() || q.host_ip == p.host_ip)
            })
        });
        if let Some(l) = clash {
            anyhow::bail!(
                "port {}/{} is already published by container {}",
                p.host_port,
                if p.udp { "udp" } else { "tcp" },
                &l.container[..l.container.len().min(12)]
            );
        }
    }
    store.write_container_network(
        id,
        &ContainerNetwork {
            network: network.name.clone(),
            ports,
            names,
            extra_hosts: extra_hosts.to_vec(),
        },
    )?;
    Ok(())
}

/// A container's `/etc/hosts`: localhost, its own address (or `127.0.1.1`) with its names,
/// its peers with theirs, then `--add-host` entries (`HOST=IP`). Every writer of the file
/// goes through here.
pub fn hosts_file(
    names: &[String],
    own: Option<Ipv4Addr>,
    peers: &[(Ipv4Addr, &[String])],
    extra: &[String],
) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let own = own.map_or_else(|| "127.0.1.1".to_owned(), |a| a.to_string());
    if !names.is_empty() {
        s.push_str(&format!("{own}\t{}\n", names.join(" ")));
    }
    for (addr, names) in peers {
        if !names.is_empty() {
            s.push_str(&format!("{addr}\t{}\n", names.join(" ")));
        }
    }
    for entry in extra {
        if let Some((host, ip)) = entry.split_once('=') {
            s.push_str(&format!("{ip}\t{host}\n"));
        }
    }
    s
}

/// Rewrites the `hosts` file of every running member of `network`: its own address and, on
/// a user network, every other member's (the default bridge gives no names, as Docker's).
pub fn refresh_names(store: &Store, network: &NetworkRecord) -> anyhow::Result<()> {
    let live: Vec<Lease> = store
        .live_leases(&mut remove_stale)?
        .into_iter()
        .filter(|l| l.network == network.name)
        .collect();
    for member in &live {
        let peers: Vec<(Ipv4Addr, &[String])> = if network.is_default() {
            Vec::new()
        } else {
            live.iter()
                .filter(|l| l.container != member.container)
                .map(|l| (l.address, l.names.as_slice()))
                .collect()
        };
        let extra = store
            .container_dir(&member.container)
            .ok()
            .and_then(|_| store.container_network(&member.container).ok().flatten())
            .map(|n| n.extra_hosts)
            .unwrap_or_default();
        let text = hosts_file(&member.names, Some(member.address), &peers, &extra);
        // A build step's lease has no container directory: nothing to rewrite.
        if store.container_dir(&member.container).is_ok() {
            store.rewrite_hosts(&member.container, &text)?;
        }
    }
    Ok(())
}

/// `ps`'s `.Networks` (the bridge network asked for) and `.Ports` (Docker's
/// `0.0.0.0:8080->80/tcp, ...`, while it runs).
pub fn ps_fields(store: &Store, id: &str, running: bool) -> (String, String) {
    let Some(joined) = store.container_network(id).ok().flatten() else {
        return (String::new(), String::new());
    };
    let ports = if running {
        joined
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{}:{}->{}/{}",
                    p.host_ip.map_or("0.0.0.0".to_owned(), |i| i.to_string()),
                    p.host_port,
                    p.container_port,
                    if p.udp { "udp" } else { "tcp" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        String::new()
    };
    (joined.network, ports)
}

/// `NetworkSettings` of `inspect CONTAINER`, Docker's shape: the network, its published
/// ports, and while it runs its address, gateway and MAC.
pub fn inspect_settings(
    store: &Store,
    id: &str,
    network: &str,
    joined: Option<&ContainerNetwork>,
) -> serde_json::Value {
    use serde_json::json;
    let lease = joined.and_then(|_| {
        store
            .live_leases(&mut remove_stale)
            .ok()?
            .into_iter()
            .find(|l| l.container == id)
    });
    let net = joined.and_then(|j| store.network(&j.network).ok());
    let mut ports = serde_json::Map::new();
    for p in joined.map(|j| j.ports.as_slice()).unwrap_or_default() {
        let key = format!("{}/{}", p.container_port, if p.udp { "udp" } else { "tcp" });
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({
                "HostIp": p.host_ip.map_or("0.0.0.0".to_owned(), |i| i.to_string()),
                "HostPort": p.host_port.to_string(),
            }));
        }
    }
    let address = lease
        .as_ref()
        .map(|l| l.address.to_string())
        .unwrap_or_default();
    let gateway = match (&lease, &net) {
        (Some(_), Some(n)) => n.gateway.to_string(),
        _ => String::new(),
    };
    let mac = lease
        .as_ref()
        .map(|l| berth_runtime::net::mac_for(l.address))
        .unwrap_or_default();
    let prefix = match (&lease, &net) {
        (Some(_), Some(n)) => n.prefix,
        _ => 0,
    };
    json!({
        "Networks": { network: {
            "NetworkID": net.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
            "IPAddress": address,
            "IPPrefixLen": prefix,
            "Gateway": gateway,
            "MacAddress": mac,
        }},
        "Ports": ports,
        "IPAddress": address,
        "IPPrefixLen": prefix,
        "Gateway": gateway,
        "MacAddress": mac,
    })
}

/// Removes what stale leases left (berth killed, or a reboot): run by the commands that
/// touch networks.
pub fn cleanup_stale(store: &Store) -> anyhow::Result<Vec<Lease>> {
    Ok(store.live_leases(&mut remove_stale)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_as_docker() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.udp),
            (None, 8080, 80, false)
        );
        let p = parse_publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.udp),
            (Some(Ipv4Addr::LOCALHOST), 5353, 53, true)
        );
        for bad in [
            "80",
            "a:80",
            "0:80",
            "8080:80/sctp",
            "x:1:2",
            "1:2:3:4",
            "70000:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        assert_eq!(host_veth("0123456789abcdef"), "vb0123456789ab");
    }

    #[test]
    fn hosts_name_the_container_and_its_peers() {
        let me = vec!["web".to_string(), "abc".to_string()];
        let peer = vec!["db".to_string()];
        let text = hosts_file(
            &me,
            Some(Ipv4Addr::new(10, 89, 0, 2)),
            &[(Ipv4Addr::new(10, 89, 0, 3), &peer)],
            &["gw=10.0.0.1".to_string()],
        );
        assert!(
            text.ends_with("10.89.0.2\tweb abc\n10.89.0.3\tdb\n10.0.0.1\tgw\n"),
            "{text}"
        );
    }
}
