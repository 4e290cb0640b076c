//! Networks and their address leases, under the store root:
//!
//! ```text
//! networks/<name>.json            a user network's definition (NetworkRecord)
//! networks/leases/<name>/<ip>     one address taken by one running container (Lease),
//!                                 flock'ed by the process that runs it
//! locks/networks.lock             exclusive around every lease taken or given back
//! ```
//!
//! The default network `bridge` is built in ([`default_bridge`]): no file, subnet
//! 10.88.0.0/16 (Podman's), bridge `berth0`.
//!
//! A lease is a file made with `O_EXCL` and held under an exclusive `flock` by the process
//! that runs its container (`run`, the `-d` monitor, a build) for as long as it runs; a
//! lease whose lock can be taken is stale (its process was killed, or the machine
//! rebooted): the next lease taken removes it, after the caller's `stale` callback has
//! removed what the kernel may still hold for it (its published ports). All of it happens
//! under `locks/networks.lock`, so two berth processes never hand out one address or one
//! host port, and a lease is given back ([`HeldLease::release`]) under the same lock.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, StoreError};
use crate::layout::Store;

/// The default network's name, as Docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Names that are not networks of the store: `host` and `none` are modes of `run`.
pub const BUILTIN_NAMES: [&str; 4] = ["bridge", "host", "none", "slirp4netns"];
/// At most this many leases are read in one scan (a bound on a hostile directory).
const MAX_LEASES: usize = 65_536;

/// `networks/<name>.json`, or the built-in `bridge`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// The bridge's interface name.
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, seconds.
    #[serde(default)]
    pub created: String,
}

impl NetworkRecord {
    /// The default bridge: containers on it reach each other by address only.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        network_of(ip, self.prefix) == self.subnet
    }
}

/// The built-in default network.
pub fn default_bridge() -> NetworkRecord {
    NetworkRecord {
        name: DEFAULT_NETWORK.into(),
        id: id_of(DEFAULT_NETWORK),
        bridge: "berth0".into(),
        subnet: Ipv4Addr::new(10, 88, 0, 0),
        prefix: 16,
        gateway: Ipv4Addr::new(10, 88, 0, 1),
        internal: false,
        labels: BTreeMap::new(),
        created: String::new(),
    }
}

/// A published port as the lease records it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeasePort {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub udp: bool,
}

/// `networks/leases/<network>/<ip>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    pub network: String,
    pub address: Ipv4Addr,
    /// The container's ID (or a build step's).
    pub container: String,
    /// The names it is reached by on a user network (name, hostname, short ID).
    #[serde(default)]
    pub names: Vec<String>,
    /// The host end of its veth pair.
    pub host_veth: String,
    #[serde(default)]
    pub ports: Vec<LeasePort>,
}

/// A lease this process holds: its file stays locked until [`HeldLease::release`] or drop.
#[derive(Debug)]
pub struct HeldLease {
    pub lease: Lease,
    path: PathBuf,
    locks: PathBuf,
    file: Option<std::fs::File>,
}

impl HeldLease {
    /// Gives the address (and ports) back: the file removed under the networks lock.
    pub fn release(mut self) -> Result<()> {
        self.give_back()
    }

    fn give_back(&mut self) -> Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let _lock = crate::lock::FileLock::exclusive(&self.locks)?;
        let removed = std::fs::remove_file(&self.path);
        drop(file);
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(
                format!("removing lease {}", self.path.display()),
                e,
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let _ = self.give_back();
    }
}

/// What a new lease asks for.
#[derive(Debug)]
pub struct LeaseRequest<'a> {
    pub container: &'a str,
    pub names: Vec<String>,
    pub host_veth: String,
    pub ports: Vec<LeasePort>,
}

/// `containers/<id>/network.json`: the network a container asked for, taken again at each
/// start (its address may change between starts, as on Docker's bridge).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerNetwork {
    pub network: String,
    #[serde(default)]
    pub ports: Vec<LeasePort>,
    /// The names others on a user network reach it by.
    #[serde(default)]
    pub names: Vec<String>,
    /// `--add-host` entries (`HOST=IP`), kept in its hosts file when it is rewritten.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
}

/// A network name: Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters, never one
/// of the built-in names.
pub fn check_network_name(name: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let ok = (1..=64).contains(&name.len())
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            what: "network",
            name: name.to_owned(),
            rule: "a network name is [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 64 characters",
        })
    }
}

fn network_of(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(u32::from(ip) & mask)
}

/// A network's ID: the default network's is the digest of its name, the same in every
/// store (as `network ls` shows `host`'s and `none`'s); a user network's is random.
fn id_of(name: &str) -> String {
    use sha2::Digest;
    if name == DEFAULT_NETWORK {
        return hex(&sha2::Sha256::digest(b"berth network bridge"));
    }
    let mut h = sha2::Sha256::new();
    h.update(b"berth network ");
    h.update(name.as_bytes());
    h.update(crate::containers::random_id().as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A small file read whole, at most 1 MiB, never through a symlink or from a FIFO.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    file.take(1 << 20).read_to_end(&mut out)?;
    Ok(out)
}

fn net_error(message: String) -> StoreError {
    StoreError::Network(message)
}

impl Store {
    fn networks_dir(&self) -> PathBuf {
        self.root().join("networks")
    }

    fn leases_dir(&self) -> PathBuf {
        self.networks_dir().join("leases")
    }

    fn networks_lock(&self) -> PathBuf {
        self.root().join("locks").join("networks.lock")
    }

    /// Every network: `bridge` first, then the user's by name.
    pub fn networks(&self) -> Result<Vec<NetworkRecord>> {
        let mut out = vec![default_bridge()];
        let dir = self.networks_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io(format!("reading {}", dir.display()), e)),
        };
        let mut user = Vec::new();
        for entry in entries.take(MAX_LEASES) {
            let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = name.strip_suffix(".json") else {
                continue;
            };
            if check_network_name(name).is_err() {
                continue;
            }
            if let Some(r) = self.read_network(name)? {
                user.push(r);
            }
        }
        user.sort_by(|a: &NetworkRecord, b| a.name.cmp(&b.name));
        out.extend(user);
        Ok(out)
    }

    fn read_network(&self, name: &str) -> Result<Option<NetworkRecord>> {
        let path = self.networks_dir().join(format!("{name}.json"));
        let bytes = match read_bounded(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Malformed {
                what: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// A network by name, or by ID or a unique ID prefix.
    pub fn network(&self, name_or_id: &str) -> Result<NetworkRecord> {
        let all = self.networks()?;
        if let Some(n) = all.iter().find(|n| n.name == name_or_id) {
            return Ok(n.clone());
        }
        let by_id: Vec<_> = all
            .iter()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id))
            .collect();
        match by_id.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(net_error(format!("network {name_or_id} not found"))),
            _ => Err(net_error(format!(
                "network ID prefix {name_or_id} is ambiguous"
            ))),
        }
    }

    /// Makes a user network. Without a subnet, the first free `10.89.N.0/24`; the gateway
    /// defaults to the subnet's first address. A subnet that overlaps another network's is
    /// refused.
    pub fn create_network(
        &self,
        name: &str,
        subnet: Option<(Ipv4Addr, u8)>,
        gateway: Option<Ipv4Addr>,
        internal: bool,
        labels: BTreeMap<String, String>,
        created: String,
    ) -> Result<NetworkRecord> {
        check_network_name(name)?;
        if BUILTIN_NAMES.contains(&name) {
            return Err(net_error(format!(
                "{name} is a built-in network; choose another name"
            )));
        }
        crate::files::create_dir_all(&self.networks_dir())
            .ctx(|| "creating networks/".to_string())?;
        let _lock = crate::lock::FileLock::exclusive(&self.networks_lock())?;
        let existing = self.networks()?;
        if existing.iter().any(|n| n.name == name) {
            return Err(net_error(format!(
                "network with name {name} already exists"
            )));
        }
        let overlaps = |net: Ipv4Addr, prefix: u8| {
            existing.iter().any(|n| {
                let p = prefix.min(n.prefix);
                network_of(net, p) == network_of(n.subnet, p)
            })
        };
        let (net, prefix) = match subnet {
            Some((ip, prefix)) => {
                if !(8..=30).contains(&prefix) {
                    return Err(net_error(format!(
                        "subnet {ip}/{prefix}: the prefix must be between 8 and 30"
                    )));
                }
                let net = network_of(ip, prefix);
                if overlaps(net, prefix) {
                    return Err(net_error(format!(
                        "subnet {net}/{prefix} overlaps another network's"
                    )));
                }
                (net, prefix)
            }
            None => (0..=255u8)
                .map(|n| (Ipv4Addr::new(10, 89, n, 0), 24))
                .find(|&(net, p)| !overlaps(net, p))
                .ok_or_else(|| net_error("no free subnet left in 10.89.0.0/16".into()))?,
        };
        let gateway = gateway.unwrap_or_else(|| Ipv4Addr::from(u32::from(net) + 1));
        let broadcast = u32::from(net) | (u32::MAX >> prefix);
        if network_of(gateway, prefix) != net || gateway == net || u32::from(gateway) == broadcast {
            return Err(net_error(format!(
                "gateway {gateway} is not a host address of {net}/{prefix}"
            )));
        }
        let id = id_of(name);
        let record = NetworkRecord {
            name: name.to_owned(),
            bridge: format!("br-{}", &id[..12]),
            id,
            subnet: net,
            prefix,
            gateway,
            internal,
            labels,
            created,
        };
        let path = self.networks_dir().join(format!("{name}.json"));
        crate::files::write(
            &path,
            &serde_json::to_vec_pretty(&record).expect("plain data"),
        )
        .ctx(|| format!("writing {}", path.display()))?;
        Ok(record)
    }

    /// Removes a user network's definition; refused while a live lease is on it. Stale
    /// leases on it are handed to `stale` and removed first.
    pub fn remove_network(&self, name: &str, stale: &mut dyn FnMut(&Lease)) -> Result<()> {
        if BUILTIN_NAMES.contains(&name) {
            return Err(net_error(format!(
                "{name} is a pre-defined network and cannot be removed"
            )));
        }
        check_network_name(name)?;
        let _lock = crate::lock::FileLock::exclusive(&self.networks_lock())?;
        let live = self.scan_leases(stale)?;
        if let Some(l) = live.iter().find(|l| l.network == name) {
            return Err(net_error(format!(
                "network {name} has active endpoints (container {})",
                &l.container[..l.container.len().min(12)]
            )));
        }
        let path = self.networks_dir().join(format!("{name}.json"));
        std::fs::remove_file(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                net_error(format!("network {name} not found"))
            } else {
                StoreError::io(format!("removing {}", path.display()), e)
            }
        })?;
        let _ = std::fs::remove_dir(self.leases_dir().join(name));
        Ok(())
    }

    /// The live leases (of every network), after the stale ones were handed to `stale` and
    /// removed.
    pub fn live_leases(&self, stale: &mut dyn FnMut(&Lease)) -> Result<Vec<Lease>> {
        if !self.networks_dir().exists() {
            return Ok(Vec::new());
        }
        let _lock = crate::lock::FileLock::exclusive(&self.networks_lock())?;
        self.scan_leases(stale)
    }

    /// Under the networks lock: every lease file, tried with a non-blocking lock; the ones
    /// nobody holds are stale.
    fn scan_leases(&self, stale: &mut dyn FnMut(&Lease)) -> Result<Vec<Lease>> {
        let mut live = Vec::new();
        let root = self.leases_dir();
        let nets = match std::fs::read_dir(&root) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(live),
            Err(e) => return Err(StoreError::io(format!("reading {}", root.display()), e)),
        };
        let mut seen = 0;
        for net in nets {
            let net = net.ctx(|| format!("reading {}", root.display()))?;
            let Ok(entries) = std::fs::read_dir(net.path()) else {
                continue;
            };
            for entry in entries {
                seen += 1;
                if seen > MAX_LEASES {
                    return Err(net_error(format!(
                        "more than {MAX_LEASES} leases under {}",
                        root.display()
                    )));
                }
                let path = entry.ctx(|| format!("reading {}", root.display()))?.path();
                let file = match std::fs::File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)
                {
                    Ok(f) => f,
                    Err(_) => continue,
                };
                let lease: Option<Lease> = read_bounded(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Err(_) => {
                        if let Some(l) = lease {
                            live.push(l);
                        }
                    }
                    Ok(()) => {
                        if let Some(l) = &lease {
                            stale(l);
                        }
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        Ok(live)
    }

    /// Takes the lowest free address of `network` for a container, with its host ports
    /// (refused when a live lease, on any network, publishes the same host address, port
    /// and protocol). Stale leases are handed to `stale` and removed first.
    pub fn take_lease(
        &self,
        network: &NetworkRecord,
        request: LeaseRequest<'_>,
        stale: &mut dyn FnMut(&Lease),
    ) -> Result<HeldLease> {
        let dir = self.leases_dir().join(&network.name);
        crate::files::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let _lock = crate::lock::FileLock::exclusive(&self.networks_lock())?;
        let live = self.scan_leases(stale)?;
        for port in &request.ports {
            let clash = live.iter().find(|l| {
                l.ports.iter().any(|p| {
                    p.host_port == port.host_port
                        && p.udp == port.udp
                        && (p.host_ip.is_none()
                            || port.host_ip.is_none()
                            || p.host_ip == port.host_ip)
                })
            });
            if let Some(l) = clash {
                return Err(net_error(format!(
                    "port {}/{} is already published by container {}",
                    port.host_port,
                    if port.udp { "udp" } else { "tcp" },
                    &l.container[..l.container.len().min(12)]
                )));
            }
        }
        let taken: std::collections::HashSet<Ipv4Addr> = live
            .iter()
            .filter(|l| l.network == network.name)
            .map(|l| l.address)
            .collect();
        let first = u32::from(network.subnet) + 1;
        let last = (u32::from(network.subnet) | (u32::MAX >> network.prefix)) - 1;
        let address = (first..=last)
            .map(Ipv4Addr::from)
            .find(|a| *a != network.gateway && !taken.contains(a) && network.contains(*a))
            .ok_or_else(|| {
                net_error(format!("no free address left on network {}", network.name))
            })?;
        let lease = Lease {
            network: network.name.clone(),
            address,
            container: request.container.to_owned(),
            names: request.names,
            host_veth: request.host_veth,
            ports: request.ports,
        };
        let path = dir.join(address.to_string());
        let mut file = crate::files::create_new_file(&path)
            .ctx(|| format!("creating lease {}", path.display()))?;
        flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(std::io::Error::from)
            .ctx(|| format!("locking lease {}", path.display()))?;
        file.write_all(&serde_json::to_vec(&lease).expect("plain data"))
            .ctx(|| format!("writing lease {}", path.display()))?;
        Ok(HeldLease {
            lease,
            path,
            locks: self.networks_lock(),
            file: Some(file),
        })
    }

    /// Records the network a container asked for.
    pub fn write_container_network(&self, container: &str, net: &ContainerNetwork) -> Result<()> {
        let path = self.container_dir(container)?.join("network.json");
        crate::files::write(&path, &serde_json::to_vec(net).expect("plain data"))
            .ctx(|| format!("writing {}", path.display()))
    }

    /// The network a container asked for; `None` without one (none, host, slirp4netns).
    pub fn container_network(&self, container: &str) -> Result<Option<ContainerNetwork>> {
        let path = self.container_dir(container)?.join("network.json");
        match read_bounded(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Malformed {
                    what: path.display().to_string(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Rewrites a container's `hosts` file in place (the same inode, so the bind in a
    /// running container sees it); a container without one is skipped.
    pub fn rewrite_hosts(&self, container: &str, content: &str) -> Result<()> {
        let path = self.container_dir(container)?.join("hosts");
        let mut file = match std::fs::File::options()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        file.set_len(0)
            .and_then(|()| file.write_all(content.as_bytes()))
            .ctx(|| format!("writing {}", path.display()))
    }
}

/// `A.B.C.D/N` → the address and the prefix length.
pub fn parse_cidr(s: &str) -> std::result::Result<(Ipv4Addr, u8), String> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a subnet in CIDR form (10.89.5.0/24)"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("{prefix:?} is not a prefix length"))?;
    Ok((ip, prefix))
}

/// The path of a lease (for tests and `inspect`).
pub fn lease_path(root: &Path, network: &str, address: Ipv4Addr) -> PathBuf {
    root.join("networks/leases")
        .join(network)
        .join(address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(c: &str) -> LeaseRequest<'_> {
        LeaseRequest {
            container: c,
            names: vec![],
            host_veth: "vbx".into(),
            ports: vec![],
        }
    }

    #[test]
    fn leases_are_distinct_given_back_and_stale_ones_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let net = store
            .create_network("n1", None, None, false, BTreeMap::new(), String::new())
            .unwrap();
        assert_eq!(net.subnet, Ipv4Addr::new(10, 89, 0, 0));
        assert_eq!(net.gateway, Ipv4Addr::new(10, 89, 0, 1));
        let a = store.take_lease(&net, request("aa"), &mut |_| {}).unwrap();
        let b = store.take_lease(&net, request("bb"), &mut |_| {}).unwrap();
        assert_eq!(a.lease.address, Ipv4Addr::new(10, 89, 0, 2));
        assert_eq!(b.lease.address, Ipv4Addr::new(10, 89, 0, 3));
        assert!(store.remove_network("n1", &mut |_| {}).is_err(), "in use");
        a.release().unwrap();
        let c = store.take_lease(&net, request("cc"), &mut |_| {}).unwrap();
        assert_eq!(c.lease.address, Ipv4Addr::new(10, 89, 0, 2));
        // A lease file nobody holds locked (its process killed) is stale.
        let stale = Lease {
            container: "dd".into(),
            address: Ipv4Addr::new(10, 89, 0, 9),
            ..b.lease.clone()
        };
        let path = lease_path(store.root(), "n1", stale.address);
        std::fs::write(&path, serde_json::to_vec(&stale).unwrap()).unwrap();
        let mut found = Vec::new();
        let live = store
            .live_leases(&mut |l| found.push(l.container.clone()))
            .unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(found, ["dd"]);
        assert!(!path.exists());
        drop((b, c));
        let overlap = store.create_network(
            "n2",
            Some((Ipv4Addr::new(10, 89, 0, 128), 25)),
            None,
            false,
            BTreeMap::new(),
            String::new(),
        );
        assert!(overlap.is_err());
        assert!(
            store
                .create_network("bridge", None, None, false, BTreeMap::new(), String::new())
                .is_err()
        );
        store.remove_network("n1", &mut |_| {}).unwrap();
        assert!(store.network("n1").is_err());
    }

    #[test]
    fn ports_are_not_published_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let net = default_bridge();
        let port = LeasePort {
            host_ip: None,
            host_port: 8080,
            container_port: 80,
            udp: false,
        };
        let _a = store
            .take_lease(
                &net,
                LeaseRequest {
                    ports: vec![port],
                    ..request("aa")
                },
                &mut |_| {},
            )
            .unwrap();
        let clash = LeasePort {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            ..port
        };
        let e = store
            .take_lease(
                &net,
                LeaseRequest {
                    ports: vec![clash],
                    ..request("bb")
                },
                &mut |_| {},
            )
            .unwrap_err();
        assert!(e.to_string().contains("8080"), "{e}");
        let udp = LeasePort { udp: true, ..port };
        assert!(
            store
                .take_lease(
                    &net,
                    LeaseRequest {
                        ports: vec![udp],
                        ..request("cc")
                    },
                    &mut |_| {}
                )
                .is_ok()
        );
    }
}
